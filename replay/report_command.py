"""``valr-replay report TRACE... --out FILE``: the HTML report (replay/report.py) of runs already made.

Each TRACE is one run's trace (``run --trace``); its checks are run again on it, judged by the scenario
given with ``--scenario`` or named in the trace header, else by the default thresholds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NoReturn

import click

EXIT_BAD_INPUT = 2


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(EXIT_BAD_INPUT)


def report_run_from_trace(path: Path, scenario: Any = None) -> Any:
    """A :class:`~replay.report.ReportRun` of one trace (CheckInputError or ValueError naming the file)."""
    from .check_command import CheckInputError, load_traces, placing_accounts
    from .checks import CheckSpec, run_checks
    from .report import ReportRun
    from .runner import check_spec, run_label

    loaded = load_traces([path])
    if not loaded.records:
        raise CheckInputError(f"{path}: no records (not a valr-replay trace?)")
    start = next((r.get("data") for r in loaded.records[:50]
                  if r.get("kind") == "meta" and r.get("type") == "RUN_START"), None)
    start = start if isinstance(start, dict) else {}
    named = loaded.header_value("scenario_path")
    if scenario is None and named and Path(named).is_file():
        from .scenario import load_scenario

        scenario = load_scenario(named)
    spec = check_spec(scenario) if scenario is not None else CheckSpec()
    placed = placing_accounts(loaded.records)
    if scenario is None and len(placed) == 1:
        spec.account = placed[0]
    try:
        checks = run_checks(loaded.records, spec)
    except ValueError as exc:
        raise CheckInputError(f"{path}: {exc}") from None
    policy = loaded.header_value("policy") or start.get("policy")
    connector = start.get("connector") or loaded.header_value("connector") or "reference"
    label = run_label(str(connector), str(policy), policy is not None) if policy else str(connector)
    seed = loaded.header_value("seed", int)
    if seed is None and isinstance(start.get("seed"), int):
        seed = start["seed"]
    name = loaded.header_value("scenario") or start.get("scenario") or (scenario.name if scenario else path.name)
    return ReportRun(scenario=str(name), seed=seed, label=label, checks=checks, records=loaded.records,
                     account=spec.account)


@click.command("report")
@click.argument("traces", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The HTML file to write (one self-contained file: no network needed to open it).")
@click.option("--scenario", "scenario_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Scenario whose check parameters judge the traces. Default: the scenario path named in a "
                   "trace header, else the default thresholds.")
def report(traces: tuple[Path, ...], out_path: Path, scenario_path: Path | None) -> None:
    """Write an HTML report of runs from their TRACE files (one run per file, written by `run --trace`):
    the verdicts, each run's open orders over time (runs of one scenario and seed side by side) and a
    sequence diagram of each first violation. Exit status: 0 when written, 2 for bad input."""
    from .check_command import CheckInputError
    from .report import build_report
    from .run_command import check_writable
    from .scenario import ScenarioError, load_scenario

    began = time.perf_counter()
    try:
        check_writable(out_path, "--out")
        scenario = load_scenario(scenario_path) if scenario_path is not None else None
    except (ValueError, ScenarioError) as exc:
        _fail(str(exc))
    runs = []
    for path in traces:
        try:
            runs.append(report_run_from_trace(path, scenario))
        except (CheckInputError, ScenarioError) as exc:
            message = str(exc)
            _fail(message if str(path) in message else f"{path}: {message}")
    out_path.write_text(build_report(runs), encoding="utf-8")
    click.echo(f"wrote {out_path} ({out_path.stat().st_size / 1024:.0f} KiB, {len(runs)} run(s)) in "
               f"{time.perf_counter() - began:.2f} s", err=True)
