"""``valr-replay report FILE... --out FILE``: the HTML report (replay/report.py) of runs already made.

Each FILE is told apart by its content:

* a trace (``run --trace``: JSON lines, a capture header first, or gzip): one run; its checks are run again
  on it, judged by the scenario given with ``--scenario`` or named in the trace header, else by the default
  thresholds;
* a run JSON (``run --json``: ``{"schema_version", "runs"}``): each row whose ``trace`` file is there is
  reported as from that trace; a row without one is a verdict from the JSON's own checks, with a note;
* a sweep JSON (``run --seeds N --json``: a run JSON with ``"sweep"``): the failure rate of each column;
* an explore JSON (``explore --json``): the share of schedules that violated a check, the scenario files
  found (and their traces' races).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import click

EXIT_BAD_INPUT = 2


class ReportInputError(ValueError):
    """A file ``report`` cannot read (the message names it, and the field when there is one)."""


@dataclass
class Reported:
    """What the files given to ``report`` come to: single runs and failure rates."""

    runs: list[Any] = field(default_factory=list)  # report.ReportRun
    rates: list[Any] = field(default_factory=list)  # report.FailureRate


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


#: how much of a file's first line ``input_kind`` reads to tell a trace's header from a JSON document
_SNIFF_BYTES = 1 << 20


def input_kind(path: Path) -> tuple[str, dict[str, Any] | None]:
    """What ``path`` holds, by content: ``("trace", None)``, ``("runs", doc)`` (a run or sweep JSON) or
    ``("explore", doc)``; ReportInputError for anything else."""
    try:
        with path.open("rb") as f:  # a trace may be gigabytes: look at its first line before reading it all
            first_line = f.readline(_SNIFF_BYTES)
            if first_line[:2] == b"\x1f\x8b":  # a gzip trace
                return "trace", None
            try:
                header = json.loads(first_line)
            except ValueError:
                header = None
            if isinstance(header, dict) and "format" in header:  # a trace's header line
                return "trace", None
            raw = first_line + f.read()  # a JSON document (run, sweep and explore JSON are small)
    except OSError as exc:
        raise ReportInputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ReportInputError(f"{path}: not UTF-8 text: neither a trace nor a JSON file") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        first = text.lstrip().split("\n", 1)[0]
        try:
            head = json.loads(first)
        except json.JSONDecodeError:
            head = None
        if isinstance(head, dict):  # JSON lines: a trace (its header and records are checked when it is read)
            return "trace", None
        if text.lstrip().startswith(("{", "[")):
            raise ReportInputError(f"{path}: malformed JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") \
                from None
        return "trace", None  # the trace reader says what is wrong with it
    if isinstance(doc, dict):
        if "format" in doc:  # a trace that is its header alone
            return "trace", None
        if "schema_version" in doc or ("runs" in doc and "sweep" in doc):
            return "runs", doc
        if "counterexamples" in doc and "schedules" in doc:
            return "explore", doc
        keys = ", ".join(list(doc)[:6]) or "none"
        what = f"a JSON object with the keys {keys}"
    else:
        what = f"a JSON {type(doc).__name__}"
    raise ReportInputError(f"{path}: {what}: not a run JSON (`run --json`: schema_version and runs), a sweep JSON "
                           "(`run --seeds N --json`), an explore JSON (`explore --json`) or a trace (`run --trace`)")


def _field(path: Path, row: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = row.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        got = "missing" if key not in row else f"got {json.dumps(value, default=str)[:60]}"
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ReportInputError(f"{path}: {where}\"{key}\": expected {names}, {got}")
    return value


def _list(value: Any, default: list[Any] | None = None) -> list[Any]:
    return value if isinstance(value, list) else list(default or [])


def _existing(written: Any, base: Path) -> Path | None:
    """A path named in a JSON file: as written, else relative to the JSON file's directory."""
    if not isinstance(written, str) or not written:
        return None
    for candidate in (Path(written), base / written):
        if candidate.is_file():
            return candidate
    return None


def _row_label(row: dict[str, Any], multi_bot: bool) -> str:
    from .runner import run_label

    connector, policy = str(row.get("connector") or "reference"), row.get("policy")
    if multi_bot:
        return f"{row.get('bot')}: {connector if policy is None else f'{connector} {policy}'}"
    return run_label(connector, str(policy), True) if policy is not None else connector


def _row_checks(path: Path, row: dict[str, Any], where: str, keep_first: bool) -> list[Any]:
    from .checks import CheckResult

    out = []
    for k, c in enumerate(_field(path, row, "checks", list, where)):
        at = f"{where}checks[{k}]."
        if not isinstance(c, dict):
            raise ReportInputError(f"{path}: {at[:-1]}: expected an object")
        held = c.get("held")
        if held is not None and not isinstance(held, bool):
            raise ReportInputError(f"{path}: {at}\"held\": expected true, false or null")
        first = c.get("first_violation") if keep_first and isinstance(c.get("first_violation"), dict) else None
        out.append(CheckResult(name=_field(path, c, "name", str, at), held=held,
                               figures=dict(c["figures"]) if isinstance(c.get("figures"), dict) else {},
                               first_violation=first, message=str(c.get("message") or "")))
    return out


def _check_schema(path: Path, doc: dict[str, Any]) -> list[dict[str, Any]]:
    from .runner import JSON_SCHEMA_VERSION

    version = _field(path, doc, "schema_version", int, "")
    if version > JSON_SCHEMA_VERSION:
        raise ReportInputError(f"{path}: schema_version {version} is newer than this valr-replay reads "
                               f"({JSON_SCHEMA_VERSION}): report it with the valr-replay that wrote it, or upgrade")
    if version < 1:
        raise ReportInputError(f"{path}: \"schema_version\": expected 1..{JSON_SCHEMA_VERSION}, got {version}")
    rows = _field(path, doc, "runs", list, "")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ReportInputError(f"{path}: runs[{i}]: expected an object, got {json.dumps(row, default=str)[:60]}")
    return rows


def runs_from_run_json(path: Path, doc: dict[str, Any], scenario: Any = None) -> list[Any]:
    """The ReportRuns of a ``run --json`` file: a row whose trace is there, as from that trace
    (:func:`report_run_from_trace`); else from the row's own checks, with a note saying how to see the race."""
    from .report import ReportRun
    from .scenario import load_scenario

    rows = _check_schema(path, doc)
    base = path.parent
    # several bots: one run, one trace, a row per bot (the same reproduce command)
    bots: dict[tuple[Any, ...], set[Any]] = {}
    for row in rows:
        bots.setdefault((row.get("path"), row.get("seed"), row.get("reproduce")), set()).add(row.get("bot"))
    scenarios: dict[Path, Any] = {}
    traced: dict[Path, Any] = {}
    out = []
    for i, row in enumerate(rows):
        where = f"runs[{i}]."
        name = _field(path, row, "scenario", str, where)
        seed = row.get("seed") if isinstance(row.get("seed"), int) else None
        multi = len(bots[(row.get("path"), row.get("seed"), row.get("reproduce"))]) > 1
        label = _row_label(row, multi)
        if "error" in row and "checks" not in row:  # a run that could not be carried out
            out.append(ReportRun(scenario=name, seed=seed, label=label, checks=[],
                                 note=f"run failed: {row.get('error')}"))
            continue
        reproduce = _field(path, row, "reproduce", str, where)
        trace = _existing(row.get("trace"), base)
        if trace is None:
            why = "no trace" if not row.get("trace") else f"trace {row.get('trace')} not found"
            out.append(ReportRun(scenario=name, seed=seed, label=label, checks=_row_checks(path, row, where, False),
                                 note=f"{why}: re-run with `{reproduce} --trace FILE` to see the race"))
            continue
        run_scenario = scenario
        scenario_file = _existing(row.get("path"), base) if scenario is None else None
        if scenario_file is not None:
            if scenario_file not in scenarios:
                scenarios[scenario_file] = load_scenario(scenario_file)
            run_scenario = scenarios[scenario_file]
        if trace not in traced:
            traced[trace] = report_run_from_trace(trace, run_scenario)
        from_trace = traced[trace]
        if multi:  # the row's own checks of its bot, on the trace's records (their indexes point there)
            out.append(ReportRun(scenario=name, seed=seed, label=label, checks=_row_checks(path, row, where, True),
                                 records=from_trace.records, account=str(row.get("account") or "demo"),
                                 bot=str(row.get("bot"))))
        else:
            out.append(from_trace)
    return out


def rates_from_sweep(path: Path, doc: dict[str, Any]) -> list[Any]:
    """The FailureRates of a ``run --seeds N --json`` file: one per scenario and column (label)."""
    from .report import rate_from_tally
    from .sweep import RunSummary, Tally

    rows = _check_schema(path, doc)
    sweep = doc.get("sweep")
    if not isinstance(sweep, dict):
        raise ReportInputError(f"{path}: \"sweep\": expected an object (the sweep's summary)")
    tallies: dict[tuple[str, str], Tally] = {}
    for i, row in enumerate(rows):
        where = f"runs[{i}]."
        scenario = _field(path, row, "scenario", str, where)
        label = _field(path, row, "label", str, where)
        key = (scenario, label)
        if key not in tallies:
            policy = row.get("policy")
            tallies[key] = Tally(scenario, label, str(row.get("connector") or "reference"),
                                 None if policy is None else str(policy))
        violated = _field(path, row, "violated", list, where)
        unexpected = _list(row.get("unexpected"))
        error = row.get("error")
        tallies[key].add(RunSummary(label=label, seed=_field(path, row, "seed", int, where),
                                    violated=tuple(str(v) for v in violated),
                                    as_expected=bool(row.get("as_expected")),
                                    unexpected=tuple(str(v) for v in unexpected),
                                    reproduce=_field(path, row, "reproduce", str, where), checks=(),
                                    wall_seconds=float(row.get("wall_seconds") or 0.0),
                                    error=None if error is None else str(error)))
    rates = [rate_from_tally(t) for t in tallies.values()]
    if sweep.get("interrupted"):
        for r in rates:
            r.note = " ".join(filter(None, ["The sweep was interrupted: these are the runs done.", r.note]))
    return rates


def from_explore(path: Path, doc: dict[str, Any]) -> Reported:
    """The FailureRate of an ``explore --json`` file, and the found scenarios' runs from their traces."""
    from .check_command import CheckInputError
    from .report import FailingExample, FailureRate
    from .scenario import ScenarioError, load_scenario

    base = path.parent
    schedules = _field(path, doc, "schedules", int, "")
    groups = _field(path, doc, "counterexamples", list, "")
    by_check = _field(path, doc, "by_check", dict, "")
    errors = _list(doc.get("errors"))
    label = str(doc.get("label") or doc.get("policy") or "?")
    written = doc.get("scenario")
    name = Path(str(written)).stem if written else path.stem
    scenario_file = _existing(written, base)
    if scenario_file is not None:
        try:
            name = load_scenario(scenario_file).name
        except ScenarioError:
            pass  # the file's name will do
    counts = {str(k): v for k, v in by_check.items() if isinstance(v, int) and not isinstance(v, bool)}
    out = Reported()
    failing = []
    unshrunk = 0
    for i, g in enumerate(groups):
        if not isinstance(g, dict):
            raise ReportInputError(f"{path}: counterexamples[{i}]: expected an object")
        minimal = g.get("minimal")
        if not isinstance(minimal, dict) or not isinstance(minimal.get("scenario"), str):
            unshrunk += 1
            continue
        found = minimal["scenario"]
        violated = _list(minimal.get("violated"), [g.get("check")])
        failing.append(FailingExample(found, [str(v) for v in violated], f"valr-replay run {found}"))
        trace = _existing(minimal.get("trace"), base)
        if trace is not None:
            found_file = _existing(found, base)
            try:
                out.runs.append(report_run_from_trace(trace, load_scenario(found_file) if found_file else None))
            except (CheckInputError, ScenarioError) as exc:
                raise ReportInputError(f"{path}: counterexamples[{i}]: {exc}") from None
    failures = max(counts.values(), default=0)
    notes = [f"Schedules chosen by the {doc.get('strategy') or 'explore'} search, not at random: the share of "
             "what the search tried, not a failure rate in the field."]
    if len(counts) > 1:
        notes.append("The explore JSON counts schedules per check, and a schedule may violate several: at least "
                     f"{failures}, at most {min(schedules, sum(counts.values()))} failed.")
    if unshrunk:
        notes.append(f"{unshrunk} counterexample group(s) not shrunk into a scenario file: re-run explore with "
                     "a larger --shrink to write them.")
    if len(errors) >= 20:
        notes.append("At least 20 schedules could not run (the JSON keeps the first 20).")
    out.rates.append(FailureRate(scenario=name, label=label, runs=max(schedules - len(errors), 0),
                                 failures=failures, by_check=dict(sorted(counts.items(), key=lambda kv: -kv[1])),
                                 failing=failing, unit="schedules", at_least=len(counts) > 1, errors=len(errors),
                                 note=" ".join(notes), more=max(failures - len(failing), 0)))
    return out


def read_inputs(paths: list[Path], scenario: Any = None) -> Reported:
    """Every file given to ``report``, whatever it is (ReportInputError, CheckInputError or ScenarioError)."""
    out = Reported()
    for path in paths:
        kind, doc = input_kind(path)
        if kind == "trace":
            out.runs.append(report_run_from_trace(path, scenario))
        elif kind == "explore":
            assert doc is not None
            found = from_explore(path, doc)
            out.runs += found.runs
            out.rates += found.rates
        else:
            assert doc is not None
            if "sweep" in doc:
                out.rates += rates_from_sweep(path, doc)
            else:
                out.runs += runs_from_run_json(path, doc, scenario)
    return out


@click.command("report")
@click.argument("traces", nargs=-1, required=True, metavar="TRACE|JSON...",
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The HTML file to write (one self-contained file: no network needed to open it).")
@click.option("--scenario", "scenario_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Scenario whose check parameters judge the traces. Default: the scenario path named in a "
                   "trace header (for a run JSON's row: the row's path), else the default thresholds.")
def report(traces: tuple[Path, ...], out_path: Path, scenario_path: Path | None) -> None:
    """Write an HTML report of runs already made, from TRACE files (one run per file, written by
    `run --trace`) and run, sweep and explore JSON files (`run --json`, `run --seeds N --json`,
    `explore --json`), told apart by their content and mixed freely: the verdicts, each run's open
    orders over time (runs of one scenario and seed side by side) and a sequence diagram of each first
    violation; a run JSON's rows are reported from their traces when these are there (else from the
    JSON's checks, with no chart); sweeps and explorations give a failure-rate table per connector and
    policy, with the failing seeds' (or found scenarios') reproduce commands. Exit status: 0 when
    written, 2 for bad input."""
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
    reported = Reported()
    for path in traces:
        try:
            found = read_inputs([path], scenario)
        except (ReportInputError, CheckInputError, ScenarioError) as exc:
            message = str(exc)
            _fail(message if str(path) in message else f"{path}: {message}")
        reported.runs += found.runs
        reported.rates += found.rates
    out_path.write_text(build_report(reported.runs, rates=reported.rates), encoding="utf-8")
    rates = f", {len(reported.rates)} failure rate(s)" if reported.rates else ""
    click.echo(f"wrote {out_path} ({out_path.stat().st_size / 1024:.0f} KiB, {len(reported.runs)} run(s){rates}) "
               f"in {time.perf_counter() - began:.2f} s", err=True)
