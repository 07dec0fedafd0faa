"""``valr-replay cut``: the part of a capture that matters, a scenario that replays it, and the
same verdicts as the whole capture (replay/cut.py, replay/cut_command.py)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from replay.capture import find_secrets, open_capture, read_capture
from replay.cli import main
from replay.cut import CutError, cut_capture, infer_bot, order_index, parse_time
from replay.runner import RunResult, run_scenario
from replay.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
CAPTURE = ROOT / "captures" / "reference_session.jsonl"
FULL_SCENARIO = ROOT / "scenarios" / "replay_reference_session.toml"
POLICIES = ("naive", "reconcile")


def verdicts(result: RunResult) -> dict[str, bool | None]:
    """Per check: violated (True), held (False), figures only (None)."""
    return {c.name: (None if c.held is None else not c.held) for c in result.checks}


def falsely_cancelled(result: RunResult) -> str:
    """The customerOrderId the run's first false cancel names (what a bug report shows)."""
    check = next(c for c in result.checks if c.name == "false_cancels")
    assert check.first_violation is not None, "the full capture no longer shows the race under naive"
    return str(check.first_violation["record"]["data"]["client_order_id"])


def cut_cli(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, ["cut", *args])
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def full_runs() -> dict[str, RunResult]:
    scenario = load_scenario(FULL_SCENARIO)
    return {policy: run_scenario(scenario, policy) for policy in POLICIES}


# --------------------------------------------------------------------------- same verdicts


def test_cut_around_the_raced_order_fails_the_same_way(tmp_path: Path, full_runs: dict[str, RunResult]) -> None:
    order = falsely_cancelled(full_runs["naive"])
    out = tmp_path / "small.jsonl"
    code, stdout, stderr = cut_cli(str(CAPTURE), "--order", order, "--out", str(out),
                                   "--scenario", str(FULL_SCENARIO))
    assert code == 0, stderr
    scenario_file = tmp_path / "small.toml"
    assert scenario_file.is_file()
    doc = tomllib.loads(scenario_file.read_text())
    assert doc["market"]["capture"] == "small.jsonl"  # relative to the scenario
    assert doc["bot"] == tomllib.loads(FULL_SCENARIO.read_text())["bot"]
    # one line at the end: records kept / total, bytes, the scenario written
    total = sum(1 for _ in open_capture(CAPTURE))
    header, records, problems = read_capture(out)
    assert problems == []
    last = stdout.strip().splitlines()[-1]
    assert f"kept {len(records)}/{total} records" in last and str(scenario_file) in last
    assert f"{out.stat().st_size} of {CAPTURE.stat().st_size} bytes" in last
    assert len(records) < total and out.stat().st_size < CAPTURE.stat().st_size
    assert header["cut"]["order"] == order and order in header["cut"]["orders"]

    cut = load_scenario(scenario_file)
    for policy in POLICIES:
        got = run_scenario(cut, policy)
        assert verdicts(got) == verdicts(full_runs[policy]), policy
    # naive does fail (the race is in the cut), reconcile holds
    assert verdicts(full_runs["naive"])["false_cancels"] is True
    assert not any(verdicts(full_runs["reconcile"]).values())


def test_tightest_cut_of_the_reference_capture_and_its_size(tmp_path: Path,
                                                            full_runs: dict[str, RunResult]) -> None:
    """With --around 0 the cut is the raced orders' lifetime and the preamble the bot needs to
    start: under a tenth of the reference capture (a 30 s session), with the same verdicts."""
    order = falsely_cancelled(full_runs["naive"])
    out = tmp_path / "tight.jsonl"
    code, _, stderr = cut_cli(str(CAPTURE), "--order", order, "--around", "0", "--out", str(out),
                              "--scenario", str(FULL_SCENARIO))
    assert code == 0, stderr
    assert out.stat().st_size < 0.10 * CAPTURE.stat().st_size, (out.stat().st_size, CAPTURE.stat().st_size)
    cut = load_scenario(tmp_path / "tight.toml")
    for policy in POLICIES:
        assert verdicts(run_scenario(cut, policy)) == verdicts(full_runs[policy]), policy


LONG_SESSION = """
[scenario]
name = "long-session"
duration = "{duration}"
seed = 11

[latency]
default = "1ms..4ms"
engine = "1ms..3ms"
rest = "5ms..15ms"

[bot]
connector = "reference"
policy = "reconcile"
pair = "BTCZAR"
order_refresh_time = "1s"
bid_spread = 0.003
ask_spread = 0.003
order_amount = "0.001"
filled_order_delay = "1s"
"""


def test_cut_of_a_long_capture_is_under_a_tenth_and_fails_the_same_way(tmp_path: Path) -> None:
    """A 60 s session recorded through the proxy as the reference capture was (same seed and
    latencies, twice as long): the cut around the order naive falsely cancels is under 10 %
    of it and, run as long as the full scenario (--duration 60s: past the cut the replay hands
    over to the simulated exchange, as the full replay does after naive diverges), gives the same
    verdicts under naive and reconcile. With the cut's own duration (2 s) naive shows the race's
    own violations, without those that 56 s of naive quoting on the simulated exchange add."""
    from replay.scenario import loads_scenario

    capture = tmp_path / "long.jsonl"
    recorded = run_scenario(loads_scenario(LONG_SESSION.format(duration="60s"), "long"), record_proxy=capture)
    assert recorded.violated == []
    full_text = FULL_SCENARIO.read_text().replace('"../captures/reference_session.jsonl"', '"long.jsonl"')
    full_text = full_text.replace('duration = "4s"', 'duration = "60s"')
    (tmp_path / "full.toml").write_text(full_text)
    full = load_scenario(tmp_path / "full.toml")
    runs = {policy: run_scenario(full, policy) for policy in POLICIES}
    order = falsely_cancelled(runs["naive"])

    out = tmp_path / "bug" / "small.jsonl"
    code, _, stderr = cut_cli(str(capture), "--order", order, "--out", str(out), "--scenario",
                              str(tmp_path / "full.toml"), "--duration", "60s")
    assert code == 0, stderr
    assert out.stat().st_size < 0.10 * capture.stat().st_size, (out.stat().st_size, capture.stat().st_size)
    cut = load_scenario(tmp_path / "bug" / "small.toml")
    assert cut.duration_s == 60
    for policy in POLICIES:
        assert verdicts(run_scenario(cut, policy)) == verdicts(runs[policy]), policy

    short = tmp_path / "bug" / "short.jsonl"
    code, _, stderr = cut_cli(str(capture), "--order", order, "--out", str(short), "--scenario",
                              str(tmp_path / "full.toml"))
    assert code == 0, stderr
    assert short.read_bytes() == out.read_bytes()  # the same capture; only the scenario's duration differs
    race = {"false_cancels", "orphans", "nothing_open_after_shutdown", "orders_closed"}
    got = run_scenario(load_scenario(tmp_path / "bug" / "short.toml"), "naive")
    assert set(got.violated) == race and race <= set(runs["naive"].violated)
    assert run_scenario(load_scenario(tmp_path / "bug" / "short.toml"), "reconcile").violated == []


# --------------------------------------------------------------------------- secrets


def test_the_cut_is_scrubbed_like_any_capture(tmp_path: Path) -> None:
    # a capture written by hand, bypassing the writer: a key and a signature in the clear
    key, sig = "a1" * 32, "b2" * 64
    lines = CAPTURE.read_text().splitlines()
    leaky = []
    for line in lines[1:]:
        rec = json.loads(line)
        if rec["kind"] == "ws" and rec["dir"] == "out" and rec["type"] == "PLACE_LIMIT_ORDER":
            rec["data"]["headers"] = {"X-VALR-API-KEY": key, "X-VALR-SIGNATURE": sig}
            rec["data"]["payload"]["accountId"] = "12345"
        leaky.append(json.dumps(rec))
    src = tmp_path / "leaky.jsonl"
    src.write_text("\n".join([lines[0], *leaky]) + "\n")
    assert find_secrets(src) != []
    out = tmp_path / "clean.jsonl"
    code, _, stderr = cut_cli(str(src), "--order", "HB-VR-S4", "--out", str(out))
    assert code == 0, stderr
    assert find_secrets(out) == []
    assert find_secrets(tmp_path / "clean.toml") == []
    text = out.read_text()
    assert key not in text and sig not in text and '"accountId":"12345"' not in text
    header = json.loads(text.splitlines()[0])
    assert header["format"] == "valr-replay-capture" and "X-VALR-API-KEY" in header["scrubbed"]
    assert "<scrubbed>" in text


# --------------------------------------------------------------------------- windows, pure


def test_from_until_keeps_the_orders_alive_in_the_window() -> None:
    header, records, _ = read_capture(CAPTURE)
    res = cut_capture(header, records, start=parse_time("2.5", "--from", records),
                      end=parse_time("4.5s", "--until", records), source="reference_session.jsonl")
    assert sorted(o.customer_order_id or "" for o in res.orders) == ["HB-VR-B3", "HB-VR-S4"]
    # an ISO time is placed through the records' wall times: the same window
    iso = cut_capture(header, records, start=parse_time("2026-01-01T00:00:02.500Z", "--from", records),
                      end=parse_time("2026-01-01T00:00:04.500Z", "--until", records))
    assert [r["type"] for r in iso.records] == [r["type"] for r in res.records]
    # the first kept request comes where the capture's first one was; nothing of HB-VR-B1/S2 is left
    first_request = next(r for r in res.records if r["dir"] == "out" and r["conn"].startswith("account-"))
    assert first_request["t"] == 1_000_000_000
    assert "HB-VR-S2" not in json.dumps(res.records)
    # times only go forward, and the market data of the window is there
    ts = [r["t"] for r in res.records]
    assert ts == sorted(ts)
    assert res.market_kept >= 3


def test_the_whole_window_keeps_every_order_and_request() -> None:
    header, records, _ = read_capture(CAPTURE)
    res = cut_capture(header, records, start=0, end=records[-1]["t"] + 1)
    assert len(res.orders) == len(order_index(records)) == 30
    assert res.shift_ns == 0 and res.duration_ns == 30 * 10**9  # the recorded session's quoting time
    assert sum(1 for r in res.records if r["dir"] == "out" and r["conn"].startswith("account-")) == 60


def test_bot_inferred_from_the_capture_matches_the_scenario_that_made_it(tmp_path: Path) -> None:
    header, records, _ = read_capture(CAPTURE)
    bot = infer_bot(records, header)
    made = tomllib.loads(FULL_SCENARIO.read_text())["bot"]
    for key in ("pair", "order_refresh_time", "bid_spread", "ask_spread", "policy", "connector"):
        assert bot[key] == made[key], key
    assert float(bot["order_amount"]) == float(made["order_amount"])
    # and the scenario written without --scenario loads and names the cut capture
    out = tmp_path / "x.jsonl"
    code, _, stderr = cut_cli(str(CAPTURE), "--order", "HB-VR-B1", "--out", str(out))
    assert code == 0, stderr
    sc = load_scenario(tmp_path / "x.toml")
    assert sc.resolve(sc.market["capture"]).resolve() == out.resolve()


def test_pure_errors() -> None:
    header, records, _ = read_capture(CAPTURE)
    with pytest.raises(CutError, match="--order"):
        cut_capture(header, records, order="HB-VR-B1", start=0, end=1)
    with pytest.raises(CutError, match="until <= from"):
        cut_capture(header, records, start=3 * 10**9, end=2 * 10**9)


# --------------------------------------------------------------------------- bad input


def test_unknown_order_names_the_ids_there_are(tmp_path: Path) -> None:
    code, stdout, stderr = cut_cli(str(CAPTURE), "--order", "HB-NOPE", "--out", str(tmp_path / "o.jsonl"))
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1
    assert "--order HB-NOPE" in stderr and "reference_session.jsonl" in stderr
    assert "HB-VR-B1" in stderr and "HB-VR-S4" in stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_window_outside_the_capture(tmp_path: Path) -> None:
    code, _, stderr = cut_cli(str(CAPTURE), "--from", "100", "--until", "120", "--out", str(tmp_path / "o.jsonl"))
    assert code == 2
    assert "outside the capture" in stderr and "--from 100.000 s" in stderr and "33.037 s" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_not_a_capture_names_the_file_and_line(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    code, _, stderr = cut_cli(str(notes), "--order", "x", "--out", str(tmp_path / "o.jsonl"))
    assert code == 2 and str(notes) in stderr and "line 1" in stderr
    broken = tmp_path / "broken.jsonl"
    lines = CAPTURE.read_text().splitlines()
    broken.write_text("\n".join([lines[0], lines[1], "{not json", *lines[2:]]) + "\n")
    code, _, stderr = cut_cli(str(broken), "--order", "HB-VR-S4", "--out", str(tmp_path / "o.jsonl"))
    assert code == 2 and f"{broken}:3:" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_order_with_a_window_and_missing_out(tmp_path: Path) -> None:
    code, _, stderr = cut_cli(str(CAPTURE), "--order", "HB-VR-S4", "--from", "1", "--until", "2",
                              "--out", str(tmp_path / "o.jsonl"))
    assert code == 2 and "--order" in stderr and "--from/--until" in stderr
    code, _, stderr = cut_cli(str(CAPTURE), "--order", "HB-VR-S4")
    assert code == 2 and "--out" in stderr
    code, _, stderr = cut_cli(str(CAPTURE), "--from", "1", "--out", str(tmp_path / "o.jsonl"))
    assert code == 2 and "--until" in stderr
    code, _, stderr = cut_cli(str(CAPTURE), "--order", "HB-VR-S4", "--around", "soon",
                              "--out", str(tmp_path / "o.jsonl"))
    assert code == 2 and "--around soon" in stderr
    code, _, stderr = cut_cli(str(CAPTURE), "--from", "1", "--until", "2", "--around", "1s",
                              "--out", str(tmp_path / "o.jsonl"))
    assert code == 2 and "--around goes with --order only" in stderr
    code, _, stderr = cut_cli(str(CAPTURE), "--order", "HB-VR-S4", "--out", str(CAPTURE))
    assert code == 2 and "is the capture being cut" in stderr
    code, _, stderr = cut_cli(str(tmp_path / "missing.jsonl"), "--order", "HB-VR-S4", "--out", str(tmp_path / "o"))
    assert code == 2 and "missing.jsonl: no such file" in stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_help_says_what_is_kept_and_how_the_window_is_chosen() -> None:
    res = CliRunner().invoke(main, ["cut", "--help"])
    assert res.exit_code == 0
    text = res.output
    for words in ("What is kept", "How the window is chosen", "--around", "preamble", "market data",
                  "account segments", "seconds since the capture's start", "ISO"):
        assert words in text, words
