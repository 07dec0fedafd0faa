"""Streaming runs: the checks judged record by record, with settled orders retired and the timelines
read back from disk, give what the batch checks give over the whole list of records.

Every shipped scenario, under the policy that fails it and the one that holds, and one 10-minute
simulated run (long enough for orders to be retired by the hundred). Memory is measured in
``valr-replay bench --only soak_memory``, not here.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from replay.checks import CheckResult, run_checks
from replay.runner import RunProgress, RunResult, bot_record_filter, check_spec, run_scenario
from replay.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))


def _plain(checks: list[CheckResult]) -> list[dict[str, Any]]:
    out = []
    for c in checks:
        fv = c.first_violation
        out.append({
            "name": c.name, "held": c.held, "message": c.message, "timeline": c.timeline,
            "figures": json.loads(json.dumps(c.figures, default=str)),
            "first_violation": None if fv is None else {"index": fv["index"], "t_s": fv["t_s"], "what": fv["what"],
                                                        "type": fv["record"].get("type")},
        })
    return out


def _batch(result: RunResult) -> list[list[dict[str, Any]]]:
    """Each bot's checks over the kept list of records, as ``check`` judges a trace file."""
    out = []
    for bot_result in result.bots:
        bot = next(b for b in result.scenario.bots if b.name == bot_result.bot)
        belongs = bot_record_filter(bot.name, bot.account) if result.scenario.multi_bot else None
        out.append(_plain(run_checks(result.records, check_spec(result.scenario, bot), belongs=belongs)))
    return out


@pytest.mark.parametrize("policy", ["naive", "reconcile"])
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_streaming_checks_equal_batch_on_every_shipped_scenario(path: Path, policy: str) -> None:
    scenario = load_scenario(path)
    result = run_scenario(scenario, policy if not scenario.multi_bot else None, keep_records=True)
    assert result.records, "keep_records=True keeps the list"
    assert [_plain(r.checks) for r in result.bots] == _batch(result)


def test_ten_simulated_minutes_stream_to_the_batch_verdicts(tmp_path: Path) -> None:
    scenario = dataclasses.replace(load_scenario(ROOT / "scenarios" / "open_orders_race.toml"), duration_s=600.0)
    # reconcile: naive's pile-up makes every later snapshot hundreds of orders long, minutes of work for
    # the batch side alone; the shipped scenarios above compare the violations and their timelines
    result = run_scenario(scenario, "reconcile", keep_records=True, trace_path=tmp_path / "trace.jsonl.gz")
    streamed = _plain(result.checks)
    assert streamed == _batch(result)[0]
    assert result.retired_orders > 500  # orders were judged and forgotten as the run went
    assert result.late_records == 0
    assert result.as_expected and not result.violated
    placed = next(c for c in streamed if c["name"] == "orders_closed")["figures"]["placed"]
    assert placed >= 500
    assert (tmp_path / "trace.jsonl.gz").read_bytes()[:2] == b"\x1f\x8b"  # gzip by suffix


def test_without_keep_records_a_run_holds_no_list(tmp_path: Path) -> None:
    scenario = dataclasses.replace(load_scenario(ROOT / "scenarios" / "open_orders_race.toml"), duration_s=20.0)
    result = run_scenario(scenario, "naive")
    assert result.records == []
    assert "false_cancels" in result.violated
    fc = next(c for c in result.checks if c.name == "false_cancels")
    assert fc.timeline and any(">>" in line for line in fc.timeline)  # read back from the store on disk


def test_progress_reports_simulated_time_open_orders_and_violations_so_far() -> None:
    scenario = dataclasses.replace(load_scenario(ROOT / "scenarios" / "open_orders_race.toml"), duration_s=60.0)
    seen: list[RunProgress] = []
    result = run_scenario(scenario, "naive", on_progress=seen.append)
    assert len(seen) >= 50  # about once per simulated second
    assert [p.sim_s for p in seen] == sorted(p.sim_s for p in seen)
    assert seen[-1].total_s == 60.0 and all(p.speed > 0 for p in seen[1:])
    assert max(p.open_orders for p in seen) >= 3  # naive's pile-up, live
    assert "false_cancels" in seen[-1].violated and "false_cancels" in result.violated


def test_stop_on_violation_ends_the_run_early_and_still_judges_it() -> None:
    scenario = dataclasses.replace(load_scenario(ROOT / "scenarios" / "open_orders_race.toml"), duration_s=600.0)
    result = run_scenario(scenario, "naive", stop_on_violation=True, keep_records=True)
    assert result.stopped_on_violation
    assert result.sim_seconds < 120  # not the 600 s asked for
    types = [r["type"] for r in result.records if r["kind"] == "meta"]
    assert types.index("STOPPED_ON_VIOLATION") < types.index("SHUTDOWN_BEGIN") < types.index("SHUTDOWN_DONE")
    assert set(result.stopped_on_violation) <= set(result.violated)
    held = run_scenario(dataclasses.replace(scenario, duration_s=30.0), "reconcile", stop_on_violation=True)
    assert not held.stopped_on_violation and held.sim_seconds >= 30


def test_run_command_stop_on_violation_and_duration(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from replay.cli import main

    out = tmp_path / "run.json"
    got = CliRunner().invoke(main, ["run", str(ROOT / "scenarios" / "open_orders_race.toml"), "--policy", "naive",
                                    "--duration", "10m", "--stop-on-violation", "--json", str(out)])
    assert got.exit_code == 1, got.output  # expected violations, but the run stopped before all of them showed
    run = json.loads(out.read_text())["runs"][0]
    assert run["stopped_on_violation"] and run["sim_seconds"] < 120
    assert "--duration 10m" in run["reproduce"]
    assert "stopped at" in got.output
    refused = CliRunner().invoke(main, ["run", str(ROOT / "scenarios" / "open_orders_race.toml"), "--seeds", "2",
                                        "--stop-on-violation"])
    assert refused.exit_code == 2 and "--stop-on-violation" in refused.output


def test_progress_off_a_terminal_is_a_plain_line() -> None:
    import io

    from rich.console import Console

    from replay.run_command import _progress_reporter, _run_progress

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=200)
    with _run_progress(console) as progress:
        task = progress.add_task("x", total=3600.0, speed="", open=0, violated="0 violated")
        report = _progress_reporter(progress, task, console, every_s=0.0)
        report(RunProgress(sim_s=1800.0, total_s=3600.0, wall_s=12.0, open_orders=2, violated=[]))
    line = buf.getvalue()
    assert "30:00 / 1:00:00 simulated, x150 real time, 2 open orders, violated so far: none, about 12 s to go" in line
