"""`valr-replay check`: judging a run from its traces.

The end-to-end test: `valr-replay serve --scenario scenarios/open_orders_race.toml` in a
subprocess, the reference connector and the quoting loop in this process on the real clock
(its own trace in a second file), then `valr-replay check` in a subprocess. Under `naive` the
race is certain, whatever the timing: the loop places a bid and an ask in one tick, the
exchange builds an OPEN_ORDERS_UPDATE when the first of them reaches the book, and that
snapshot lacks the second, which the connector already tracks, so `naive` marks it cancelled
and never cancels it. `reconcile` holds.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from replay.capture import CaptureWriter, TraceRecorder
from replay.check_command import load_traces, placing_accounts, trace_origin_ns
from replay.cli import main
from replay.clock import Clock, iso_ms
from replay.connector.adapter import ServerUrls, load_connector
from replay.strategy import PureMarketMaking

from conftest import ROOT, first_line, interrupt, replay_command

RACE = ROOT / "scenarios" / "open_orders_race.toml"
PAIR = "BTCZAR"
QUOTING_S = 4.0  # two create/cancel cycles at the scenario's 1 s refresh


# --- the end-to-end run ---------------------------------------------------------------------------
async def _quote(info: dict[str, Any], policy: str, client_trace: Path) -> None:
    """The reference connector and the quoting loop against a served scenario, on the real clock,
    then a shutdown: cancel everything it tracks and wait until the exchange confirmed it."""
    clock = Clock()
    trace = TraceRecorder(clock, CaptureWriter(client_trace, {"source": "simulated", "pairs": [PAIR],
                                                              "connector": "reference"}), keep=False)
    connector: Any = load_connector("reference", policy=policy, clock=clock, trace=trace, seed=7, pairs=(PAIR,))
    settled = asyncio.Event()
    shutting_down = False

    def on_event(_event: Any) -> None:
        if shutting_down and not [o for o in connector.believed_orders() if o.where in ("active", "lost")]:
            settled.set()

    connector.add_listener(on_event)
    try:
        await connector.start(ServerUrls(info["rest_url"], info["ws_account_url"], info["ws_trade_url"]),
                              info["api_key"], info["api_secret"])
        await connector.wait_ready(10)
        strategy = PureMarketMaking(connector, PAIR, bid_spread=Decimal("0.003"), ask_spread=Decimal("0.003"),
                                    order_amount=Decimal("0.001"), order_refresh_time=1.0,
                                    filled_order_delay=1.0, trace=trace)
        await strategy.run(clock.monotonic() + QUOTING_S)
        trace.record("run", "local", "meta", "SHUTDOWN_BEGIN", {})
        shutting_down = True
        await connector.cancel_all(5)
        on_event(None)
        await asyncio.wait_for(settled.wait(), 5)  # every cancel confirmed by the exchange
        trace.record("run", "local", "meta", "SHUTDOWN_DONE", {})
    finally:
        await connector.stop()
        trace.close()


async def _served_session(tmp_path: Path, policy: str) -> tuple[Path, Path]:
    server_trace, client_trace = tmp_path / f"server-{policy}.jsonl", tmp_path / f"client-{policy}.jsonl"
    async with replay_command("serve", "--scenario", str(RACE), "--trace", str(server_trace)) as proc:
        info = await first_line(proc)
        assert info["seed"] == 7
        await _quote(info, policy, client_trace)
        code, err = await interrupt(proc)
        assert code == 0, err
    return server_trace, client_trace


async def _check(*args: str) -> tuple[int, str, str]:
    async with replay_command("check", *args) as proc:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()


def _held(json_path: Path) -> dict[str, bool | None]:
    [row] = json.loads(json_path.read_text())["runs"]
    return {c["name"]: c["held"] for c in row["checks"]}


async def test_served_race_judged_by_check(tmp_path):
    # naive and reconcile, each against its own server, at the same time (the test stays short)
    (naive_server, naive_client), (rec_server, rec_client) = await asyncio.gather(
        _served_session(tmp_path, "naive"), _served_session(tmp_path, "reconcile"))
    header = json.loads(naive_server.read_text().splitlines()[0])
    assert header["scenario"] == "open-orders-race" and Path(header["scenario_path"]) == RACE.resolve()

    j = {name: tmp_path / f"{name}.json" for name in ("rec", "rec_server", "naive", "naive_server")}
    rec, naive = await asyncio.gather(  # as a user would: in subprocesses
        _check(str(rec_server), str(rec_client), "--scenario", str(RACE), "--policy", "reconcile",
               "--json", str(j["rec"])),
        _check(str(naive_server), str(naive_client), "--scenario", str(RACE), "--json", str(j["naive"])),
    )
    # the server's traces alone (in this process: the same command, quicker); the scenario
    # comes from the trace header
    rec_only, naive_only = ((r.exit_code, r.stdout, r.stderr) for r in (
        CliRunner().invoke(main, ["check", str(rec_server), "--json", str(j["rec_server"])]),
        CliRunner().invoke(main, ["check", str(naive_server), "--json", str(j["naive_server"])])))

    # reconcile, both traces: every expectation of the scenario holds, client-side checks judged
    code, out, err = rec
    assert code == 0, out + err
    held = _held(j["rec"])
    for name in ("max_open_orders", "duplicate_orders", "nothing_open_after_shutdown", "false_cancels", "orphans",
                 "final_state_exit"):
        assert held[name] is True, (name, out)
    assert "client-side checks judged" in err and "as expected" in out and "reconcile" in out
    [row] = json.loads(j["rec"].read_text())["runs"]
    assert row["policy"] == "reconcile" and row["account"] == "demo" and row["seed"] == 7
    assert row["traces"] == [str(rec_server), str(rec_client)] and row["as_expected"] is True
    assert next(c for c in row["checks"] if c["name"] == "false_cancels")["figures"]["false_cancels"] == 0

    # reconcile, the server's trace alone: server-side checks hold; client-side ones are not judged
    code, out, err = rec_only
    assert code == 0, out + err
    assert "scenario from the trace header" in err and "client-side checks not judged" in err
    held = _held(j["rec_server"])
    assert held["max_open_orders"] is True and held["nothing_open_after_shutdown"] is True
    assert held["false_cancels"] is None and held["orphans"] is None

    # naive, both traces: the race leaked orders: false cancels, orphans, left open
    code, out, err = naive
    assert code == 1, out + err
    held = _held(j["naive"])
    assert held["false_cancels"] is False and held["orphans"] is False
    assert held["nothing_open_after_shutdown"] is False
    assert "first violation of false_cancels" in out and "NOT as expected" in out
    [row] = json.loads(j["naive"].read_text())["runs"]
    false_cancels = next(c for c in row["checks"] if c["name"] == "false_cancels")
    assert false_cancels["figures"]["false_cancels"] >= 1
    assert "OPEN_ORDERS_UPDATE" in "\n".join(false_cancels["timeline"])  # the snapshot that did it

    # naive, the server's trace alone: the server-side view still sees what was left open
    code, out, err = naive_only
    assert code == 1, out + err
    held = _held(j["naive_server"])
    assert held["nothing_open_after_shutdown"] is False and held["false_cancels"] is None


# --- check of a `run` trace gives run's verdict ------------------------------------------------------
def test_check_of_a_run_trace_agrees_with_run(tmp_path):
    from replay.runner import run_scenario
    from replay.scenario import load_scenario

    trace = tmp_path / "run.jsonl"
    result = run_scenario(load_scenario(RACE), "naive", trace_path=trace)
    out = tmp_path / "check.json"
    cli = CliRunner().invoke(main, ["check", str(trace), "--scenario", str(RACE), "--json", str(out)])
    # the trace header names the policy (naive): its expected violations apply, as in run
    assert cli.exit_code == (0 if result.as_expected else 1), cli.output
    [row] = json.loads(out.read_text())["runs"]
    assert row["policy"] == "naive" and row["seed"] == result.seed
    assert {c["name"]: c["held"] for c in row["checks"]} == {c.name: c.held for c in result.checks}
    assert row["violated"] == result.violated and row["violated"]  # naive violates checks here
    run_json = result.to_json()
    assert set(run_json) <= set(row)  # run's per-run JSON shape


# --- merging traces -------------------------------------------------------------------------------
def _write_trace(path: Path, origin_ms: int, records: list[tuple[int, str, str, str, Any]],
                 header: dict[str, Any] | None = None) -> None:
    """records: (t_ns, conn, kind, type, data); wall derived from origin_ms as a clock would."""
    with CaptureWriter(path, {"source": "simulated", **(header or {})}) as w:
        for t, conn, kind, type_, data in records:
            w.write({"t": t, "wall": iso_ms(origin_ms + t // 1_000_000), "conn": conn, "dir": "local",
                     "kind": kind, "type": type_, "data": data})


def test_traces_merge_on_the_wall_clock(tmp_path):
    server, client = tmp_path / "server.jsonl", tmp_path / "client.jsonl"
    origin = 1_800_000_000_000
    # the client started 250 ms after the server; its t counts from its own start
    _write_trace(server, origin, [(0, "run", "meta", "A", {}), (100_400_000, "run", "meta", "C", {}),
                                  (300_000_000, "run", "meta", "E", {})])
    _write_trace(client, origin + 250, [(1_000_000, "client", "meta", "D", {}),
                                        (2_000_000_000, "client", "meta", "F", {})])
    assert trace_origin_ns({}, [{"t": 100_400_000, "wall": iso_ms(origin + 100)}]) == origin * 1_000_000 - 400_000
    merged = load_traces([server, client])
    assert [r["type"] for r in merged.records] == ["A", "C", "D", "E", "F"]
    assert [r["t"] for r in merged.records] == [0, 100_400_000, 251_000_000, 300_000_000, 2_250_000_000]
    assert merged.where[2] == (str(client), 2) and merged.where[3] == (str(server), 4)
    assert merged.span_s == 2.25


def test_placing_accounts():
    recs = [{"kind": "event", "type": "CommandSubmitted", "data": {"account": "a", "command": "PLACE_LIMIT"}},
            {"kind": "event", "type": "CommandSubmitted", "data": {"account": "b", "command": "CANCEL_ORDER"}},
            {"kind": "event", "type": "OrderStatusChanged", "data": {"account": "c", "order": {}}},
            {"kind": "event", "type": "CommandSubmitted", "data": {"account": "a", "command": "PLACE_MARKET"}}]
    assert placing_accounts(recs) == ["a", "c"]


# --- bad input ------------------------------------------------------------------------------------
def test_check_missing_trace_exits_2(tmp_path):
    missing = tmp_path / "nope.jsonl"
    result = CliRunner().invoke(main, ["check", str(missing)])
    assert result.exit_code == 2 and str(missing) in result.output and "no such file" in result.output


def test_check_corrupt_line_names_file_and_line(tmp_path):
    trace = tmp_path / "t.jsonl"
    _write_trace(trace, 1_800_000_000_000, [(0, "run", "meta", "A", {}), (1, "run", "meta", "B", {})])
    lines = trace.read_text().splitlines()
    lines.insert(2, '{"t": 5, "conn": "run", "dir": "local", "kind": "meta", "type": "X", "data": {')  # line 3
    trace.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(main, ["check", str(trace)])
    assert result.exit_code == 2
    assert f"{trace}:3:" in result.output and "corrupt line" in result.output


def test_check_truncated_last_line_is_a_warning(tmp_path):
    trace = tmp_path / "t.jsonl"
    _write_trace(trace, 1_800_000_000_000, [(0, "run", "meta", "A", {})])
    with open(trace, "a") as fh:
        fh.write('{"t": 5, "conn": "run"')  # a writer killed mid-line
    result = CliRunner().invoke(main, ["check", str(trace)])
    assert result.exit_code == 0, result.output
    assert "truncated last line" in result.output and "default thresholds" in result.output


def test_check_bad_header_and_bad_record_exit_2(tmp_path):
    not_a_trace = tmp_path / "x.jsonl"
    not_a_trace.write_text('{"hello": 1}\n')
    result = CliRunner().invoke(main, ["check", str(not_a_trace)])
    assert result.exit_code == 2 and str(not_a_trace) in result.output and "line 1" in result.output
    bad_state = tmp_path / "bad_state.jsonl"
    _write_trace(bad_state, 1_800_000_000_000, [(0, "run", "meta", "A", {}),
                                                (7, "client", "client", "ORDER_STATE", {"to": "OPEN"})])
    result = CliRunner().invoke(main, ["check", str(bad_state)])
    assert result.exit_code == 2 and f"{bad_state}:3:" in result.output and "client_order_id" in result.output


def test_check_bad_scenario_and_policy_exit_2(tmp_path):
    trace = tmp_path / "t.jsonl"
    _write_trace(trace, 1_800_000_000_000, [(0, "run", "meta", "A", {})])
    bad = tmp_path / "bad.toml"
    bad.write_text("[expect]\nfalse_cancels = -1\n")
    result = CliRunner().invoke(main, ["check", str(trace), "--scenario", str(bad)])
    assert result.exit_code == 2 and str(bad) in result.output and "false_cancels" in result.output
    result = CliRunner().invoke(main, ["check", str(trace), "--policy", "sloppy"])
    assert result.exit_code == 2 and "--policy" in result.output


def test_check_without_scenario_needs_one_placing_account(tmp_path):
    trace = tmp_path / "t.jsonl"
    placed = [(i, "exchange", "event", "CommandSubmitted",
               {"ts_ms": 0, "account": acct, "command": "PLACE_LIMIT", "order_id": f"o{i}",
                "customer_order_id": None, "conn": "rest-1"}) for i, acct in enumerate(["alice", "bob"])]
    _write_trace(trace, 1_800_000_000_000, placed)
    result = CliRunner().invoke(main, ["check", str(trace)])
    assert result.exit_code == 2 and "alice" in result.output and "bob" in result.output
    assert "--account" in result.output
    result = CliRunner().invoke(main, ["check", str(trace), "--account", "bob"])
    assert result.exit_code == 0, result.output  # nothing failed under default thresholds


def test_check_help():
    result = CliRunner().invoke(main, ["check", "--help"])
    assert result.exit_code == 0
    for words in ("--scenario", "--account", "--policy", "--json", "ORDER_STATE", "Exit status"):
        assert words in result.output
    assert "check" in CliRunner().invoke(main, ["--help"]).output
