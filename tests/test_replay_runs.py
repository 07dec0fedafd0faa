"""Record a reference-connector run through the proxy, replay it reactively, compare.

Real sockets on 127.0.0.1, virtual time (replay.runner.run_scenario uses looptime).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from replay.capture import read_capture
from replay.runner import run_scenario
from replay.scenario import load_scenario, loads_scenario

ROOT = Path(__file__).resolve().parent.parent

BOT = """
[bot]
connector = "reference"
policy = "{policy}"
order_refresh_time = "1s"
bid_spread = 0.003
ask_spread = 0.003
order_amount = "0.001"
filled_order_delay = "1s"

[expect]
max_open_orders = 2
open_orders_slack = 2
false_cancels = 0
orphans_at_end = 0
nothing_open_after_shutdown = true
"""

LIVE = """
[scenario]
name = "live"
duration = "{duration}"
seed = {seed}

[latency]
{latency}
""" + BOT

REPLAY = """
[scenario]
name = "replay"
duration = "{duration}"
seed = {seed}

[market]
capture = "{capture}"
""" + BOT

CALM = 'default = "1ms..4ms"\nengine = "1ms..3ms"\nrest = "5ms..15ms"'
# The race, every cycle: the snapshot without the ask is delivered 5 ms before the ask's reply.
RACY = 'default = "1ms"\nengine = "1ms"\nOPEN_ORDERS_UPDATE = "2ms"\nPLACE_LIMIT_WS_RESPONSE = "8ms"\nrest = "5ms"'


def per_order_types(records: list[dict]) -> dict[str, list[str]]:
    """customerOrderId -> the account stream's message types about that order, in order."""
    cid_of: dict[str, str] = {}
    for r in records:
        if r["kind"] != "ws":
            continue
        d = r["data"].get("data") if isinstance(r["data"], dict) else None
        if isinstance(d, dict) and d.get("orderId") and d.get("customerOrderId"):
            cid_of[d["orderId"]] = d["customerOrderId"]
    out: dict[str, list[str]] = {}
    for r in records:
        if r["kind"] != "ws" or not r["conn"].startswith("account-") or r["dir"] not in ("in", "out"):
            continue
        body = r["data"].get("payload") if r["dir"] == "out" else r["data"].get("data")
        if not isinstance(body, dict):
            continue
        cid = body.get("customerOrderId") or cid_of.get(body.get("orderId") or "")
        if cid:
            out.setdefault(cid, []).append(f"{r['dir']}:{r['type']}")
    return out


def verdicts(result) -> dict[str, bool | None]:
    return {c.name: c.held for c in result.checks}


def meta(records: list[dict], type_: str) -> list[dict]:
    return [r for r in records if r["kind"] == "meta" and r["type"] == type_]


def _live_then_replay(tmp_path: Path, policy: str, latency: str, seed: int = 11, duration: str = "3s"):
    capture = tmp_path / f"{policy}.jsonl"
    live = run_scenario(loads_scenario(LIVE.format(duration=duration, seed=seed, latency=latency, policy=policy),
                                       tmp_path / "live.toml"), record_proxy=capture, keep_records=True)
    replayed = run_scenario(loads_scenario(REPLAY.format(duration=duration, seed=seed, capture=capture, policy=policy),
                                           tmp_path / "replay.toml"), keep_records=True)
    return capture, live, replayed


def test_proxy_recording_replayed_same_messages_per_order(tmp_path):
    capture, live, replayed = _live_then_replay(tmp_path, "reconcile", CALM)
    header, recorded, problems = read_capture(capture)
    assert problems == []
    assert header["source"] == "proxy" and header["upstream"].startswith("http://127.0.0.1:")
    assert not meta(replayed.records, "DIVERGENCE")
    summary = meta(replayed.records, "PLAYBACK")[0]["data"]
    assert summary["requests"] >= 4 and summary["pending"] == 0 and summary["matched"] == summary["requests"]
    want = per_order_types(recorded)
    got = per_order_types(replayed.records)
    assert len(want) >= 2
    assert got == want
    # the replay's trace holds what the playback server sent and received, like any run's
    assert {r["type"] for r in replayed.records if r["kind"] == "ws" and r["dir"] == "out"} >= {
        "PLACE_LIMIT_ORDER", "CANCEL_LIMIT_ORDER"}


def test_a_client_replayed_against_its_own_session_passes_as_it_did_live(tmp_path):
    # naive, recorded while the race happens every cycle: it fails live, and exactly the
    # same checks fail when it is replayed against its own capture (which it never leaves).
    _capture, live, replayed = _live_then_replay(tmp_path, "naive", RACY, seed=5)
    assert live.violated, "the racy latencies must make naive fail live"
    assert not meta(replayed.records, "DIVERGENCE")
    assert replayed.violated == live.violated
    assert verdicts(replayed) == verdicts(live)


def test_reconcile_own_session_holds_live_and_replayed(tmp_path):
    _capture, live, replayed = _live_then_replay(tmp_path, "reconcile", RACY, seed=5)
    assert live.violated == [] and replayed.violated == []
    assert verdicts(replayed) == verdicts(live)


@pytest.mark.parametrize("policy", ["naive", "reconcile"])
def test_seed_log_naive_fails_reconcile_holds(policy):
    scenario = load_scenario(ROOT / "scenarios" / "replay_seed_log.toml")
    result = run_scenario(scenario, policy, keep_records=True)
    assert result.as_expected, result.unexpected
    if policy == "reconcile":
        assert result.violated == []
        assert not meta(result.records, "DIVERGENCE")
    else:
        assert {"false_cancels", "orphans"} <= set(result.violated)
        # naive never cancels the ask it forgot: it leaves the capture there
        div = meta(result.records, "DIVERGENCE")[0]["data"]
        assert div["expected"]["type"] == "CANCEL_LIMIT_ORDER"
        assert div["on_divergence"] == "simulate"
        assert meta(result.records, "HANDOVER")[0]["data"]["seeded_orders"] >= 1


def test_reference_session_scenario_as_expected():
    scenario = load_scenario(ROOT / "scenarios" / "replay_reference_session.toml")
    for policy in ("reconcile", "naive"):
        result = run_scenario(scenario, policy, keep_records=True)
        assert result.as_expected, (policy, result.unexpected)


def test_shipped_seed_log_has_the_5ms_race():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_captures", ROOT / "tools" / "make_captures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    header, records, problems = read_capture(ROOT / "captures" / "seed_log.jsonl")
    assert problems == [] and header["pairs"] == ["BTCZAR"]
    gaps = mod.race_gaps_ms(records)
    assert any(4.5 <= g <= 5.5 for g in gaps), gaps
    proxy_header = json.loads((ROOT / "captures" / "reference_session.jsonl").read_text().splitlines()[0])
    assert proxy_header["source"] == "proxy" and proxy_header["upstream"].startswith("http://127.0.0.1")


def test_scenario_perturbations_apply_on_top_of_playback(tmp_path):
    text = REPLAY.format(duration="4s", seed=5, capture=ROOT / "captures" / "seed_log.jsonl", policy="reconcile")
    text = text.replace("[bot]", '[[perturb]]\nmatch = { type = "OPEN_ORDERS_UPDATE" }\ndrop = true\n\n'
                                 '[[perturb]]\nmatch = { type = "PLACE_LIMIT_WS_RESPONSE" }\ndelay = "300ms"\n\n[bot]')
    result = run_scenario(loads_scenario(text, tmp_path / "perturbed.toml"), keep_records=True)
    inbound = [r for r in result.records if r["kind"] == "ws" and r["dir"] == "in"]
    assert inbound and not [r for r in inbound if r["type"] == "OPEN_ORDERS_UPDATE"]
    applied = {r["data"]["name"] for r in meta(result.records, "PERTURBATION")}
    assert applied == {"drop[0]", "delay[1]"}
    # each placement reply went out 300 ms after its request (recorded 8 ms + the delay)
    sent = {r["data"]["clientMsgId"]: r["t"] for r in result.records
            if r["kind"] == "ws" and r["dir"] == "out" and r["type"] == "PLACE_LIMIT_ORDER"}
    for r in inbound:
        if r["type"] == "PLACE_LIMIT_WS_RESPONSE":
            assert (r["t"] - sent[r["data"]["clientMsgId"]]) / 1e6 == pytest.approx(308, abs=1)
