"""``valr-replay run``: run scenarios under one or more policies and report the checks."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NoReturn

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column, Table
from rich.text import Text

POLICY_HELP = "naive | age-guard:S | ignore | reconcile"


def _clock(seconds: float) -> str:
    """Simulated time as h:mm:ss (m:ss under an hour)."""
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _progress_reporter(progress: Progress, task: TaskID, console: Console,
                       every_s: float = 30.0) -> Callable[[Any], None]:
    """An on_progress callback bound to one run's bar (not to the loop variables of the caller). Off a
    terminal (a CI log) the bar is off: a plain line every ``every_s`` wall seconds says the same."""
    last = [time.monotonic()]

    def report(p: Any) -> None:
        violated = ", ".join(p.violated) if p.violated else "none"
        progress.update(task, completed=p.sim_s, speed=f"x{p.speed:.0f}", open=p.open_orders,
                        violated=f"{len(p.violated)} violated" + (f": {violated}" if p.violated else ""))
        if not console.is_terminal and time.monotonic() - last[0] >= every_s and p.sim_s < p.total_s:
            last[0] = time.monotonic()
            eta = (p.total_s - p.sim_s) / p.speed if p.speed > 0 else float("nan")
            console.print(f"  {_clock(p.sim_s)} / {_clock(p.total_s)} simulated, x{p.speed:.0f} real time, "
                          f"{p.open_orders} open orders, violated so far: {violated}, about {eta:.0f} s to go",
                          markup=False, highlight=False)

    return report


def _run_progress(console: Console) -> Progress:
    """The bar of a run: simulated time, speed (x real time), open orders, checks violated so far, ETA."""
    return Progress(TextColumn("  {task.description}"), BarColumn(bar_width=16),
                    _SimulatedColumn(), TextColumn("{task.fields[speed]}"), TextColumn("open {task.fields[open]}"),
                    TimeRemainingColumn(),
                    TextColumn("{task.fields[violated]}", table_column=Column(max_width=40, no_wrap=True,
                                                                              overflow="ellipsis")),
                    console=console, transient=True, disable=not console.is_terminal)


class _SimulatedColumn(ProgressColumn):
    """``1:02:03 / 6:00:00``: the simulated time of a run's bar."""

    def render(self, task: Task) -> Text:
        return Text(f"{_clock(task.completed)} / {_clock(task.total or 0)}")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _scalar_figures(figures: dict, limit: int = 2) -> str:
    """The first few numeric figures of a check, for a table cell (lists and ids are left out)."""
    shown = [f"{k}={_fmt(v)}" for k, v in figures.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return ", ".join(shown[:limit])


# Which violation's timeline to print when several checks fail: the most telling first.
TIMELINE_PREFERENCE = ("false_cancels", "duplicate_orders", "orphans", "final_state_exit", "max_open_orders")

SUMMARY_FIGURES = (
    ("peak open orders", "max_open_orders", "peak"),
    ("false cancels", "false_cancels", "false_cancels"),
    ("orphans", "orphans", "orphans"),
    ("place p50 / p99 ms", "place_resolves", ("p50_ms", "p99_ms")),
    ("cancel p50 / p99 ms", "cancel_resolves", ("p50_ms", "p99_ms")),
)


def _summary_value(result, check_name: str, keys) -> str:
    check = next((c for c in result.checks if c.name == check_name), None)
    if check is None:
        return "-"
    if isinstance(keys, tuple):
        return " / ".join(_fmt(check.figures.get(k, "-")) for k in keys)
    return _fmt(check.figures.get(keys, "-"))


def make_console(stderr: bool = False) -> Console:
    """A console for the command's output. Piped (a CI log, a file) it is full width with no wrapping,
    so table cells are never cut and a reproduce line stays one line that can be pasted."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=UNWRAPPED_WIDTH, soft_wrap=True)


UNWRAPPED_WIDTH = 10_000


def fail(console: Console, message: str, code: int = 2) -> NoReturn:
    """``error: MESSAGE`` (user text printed literally: a ``[bot.options]`` stays as written), then exit."""
    console.print(Text("error: ", style="red") + Text(message))
    sys.exit(code)


def _hand_to_hummingbot_env(specs: list[str], console: Console) -> None:
    """A Hummingbot connector in an environment without Hummingbot: re-run this very command in the
    Hummingbot environment (tools/hummingbot-env) when there is one; else a clear error, exit 2."""
    from .hummingbot.bot import (
        HummingbotError,
        hummingbot_importable,
        hummingbot_python,
        is_hummingbot_spec,
        require_hummingbot,
    )

    if not any(is_hummingbot_spec(spec) for spec in specs) or hummingbot_importable():
        return
    python = hummingbot_python()
    if python is not None:
        console.print(f"Hummingbot is not installed here; running in the Hummingbot environment ({python})",
                      markup=False, highlight=False)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(python, [python, "-m", "replay", *sys.argv[1:]])
    try:
        require_hummingbot()
    except HummingbotError as exc:
        fail(console, str(exc))


def check_connector(spec: str) -> bool:
    """Refuse a connector that cannot run (ValueError naming why); True when it takes our
    OPEN_ORDERS_UPDATE policies (the reference connector, a Hummingbot one with ``open_orders_policy``)."""
    import inspect

    from .connector.adapter import connector_factory
    from .hummingbot.bot import HummingbotError, hummingbot_importable, is_hummingbot_spec, load_class
    from .scenario import CONNECTOR_SPEC

    if spec == "reference":
        return True
    if not CONNECTOR_SPEC.match(spec) or (spec.startswith("hummingbot:") and spec.count(":") != 2):
        raise ValueError(f"--connector {spec!r}: expected 'reference', 'package.module:attr', 'hummingbot' or "
                         "'hummingbot:package.module:ClassName'")
    if is_hummingbot_spec(spec):
        if not hummingbot_importable():
            return True  # judged in the Hummingbot environment the run is handed to
        try:
            return "open_orders_policy" in inspect.signature(load_class(spec)).parameters
        except HummingbotError as exc:
            raise ValueError(str(exc)) from None
    connector_factory(spec, "--connector")
    return False


def check_multi_bot(scenarios: list, seeds: int | None) -> None:
    """Refuse a sweep of a scenario with several bots ([[bot]]): a sweep tallies one bot per column (ValueError
    naming the file)."""
    for scenario in scenarios:
        if scenario.multi_bot and seeds is not None:
            names = ", ".join(b.name for b in scenario.bots)
            raise ValueError(f"--seeds does not take {scenario.path} yet: it has several bots ({names}); run it "
                             "with --seed N for each seed")


def check_writable(path: Path | None, option: str) -> None:
    """Refuse an output file that cannot be written, before anything runs."""
    if path is None:
        return
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ValueError(f"{option} {path}: is a directory")
    if not parent.is_dir():
        raise ValueError(f"{option} {path}: no such directory {parent}")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"{option} {path}: not writable")


@dataclass
class RunFailure:
    """A run that could not be carried out (the others still run)."""

    scenario: Any
    connector: str
    policy: str
    seed: int
    error: str
    as_expected: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario.name, "path": str(self.scenario.path), "connector": self.connector,
                "policy": self.policy, "seed": self.seed, "as_expected": False, "error": self.error}


def _trace_file(trace_path: Path | None, many: bool, scenario_name: str, label: str) -> Path | None:
    if trace_path is None or not many:
        return trace_path
    stem = trace_path.name.split(".")[0]
    rest = trace_path.name[len(stem):]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)
    return trace_path.with_name(f"{stem}-{scenario_name}-{safe}{rest}")


def check_sweep_options(seeds: int | None, workers: int | None, dask: str | None, trace_path: Path | None) -> None:
    """Refuse sweep options that do not go together (ValueError), before anything runs."""
    if seeds is None:
        for given, option in ((workers is not None, "--workers"), (dask is not None, "--dask")):
            if given:
                raise ValueError(f"{option} goes with --seeds N (a sweep); a single run runs in this process")
        return
    if seeds < 1:
        raise ValueError(f"--seeds {seeds}: expected a number of seeds >= 1")
    if trace_path is not None:
        raise ValueError("--trace writes one run's trace and does not go with --seeds: re-run a failing seed's "
                         "reproduce command with --trace FILE")
    if workers is not None and workers < 1:
        raise ValueError(f"--workers {workers}: expected a number >= 1")
    if workers is not None and dask is not None:
        raise ValueError("--workers and --dask exclude each other: with --dask the cluster's workers run the sweep")
    if dask is not None and not dask.strip():
        raise ValueError("--dask: expected a scheduler address, e.g. tcp://127.0.0.1:8786")


def _duration_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--duration``: checked now (a bad value is exit 2, naming the option), applied per scenario later."""
    from .latency import SpecError
    from .scenario import parse_duration_option

    if value is None:
        return None
    try:
        parse_duration_option(value, None)
    except SpecError as exc:
        raise click.BadParameter(f"{exc.problem}; expected seconds (90) or e.g. '90s', '10m', '6h'") from None
    return value.strip()


@click.command("run")
@click.argument("scenarios", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--policy", "policies", multiple=True, metavar="P",
              help=f"OPEN_ORDERS_UPDATE handler of the reference connector and of our Hummingbot one ({POLICY_HELP}). "
                   "Repeat to run the policies side by side. Default: the scenario's bot.policy. A connector "
                   "without our policies (yours) runs once, whatever --policy says. In a scenario with several bots "
                   "([[bot]]) every bot runs P (default: each its own).")
@click.option("--connector", "connectors", multiple=True, metavar="C",
              help="Connector under test: 'reference', 'package.module:attr' (an adapter: docs/adapter.md), "
                   "'hummingbot' (our Hummingbot VALR connector) or 'hummingbot:package.module:ClassName' (yours, "
                   "under Hummingbot's PMM: docs/hummingbot.md). The current directory is importable. Repeat to "
                   "run connectors side by side, e.g. the version before a fix and the version after. "
                   "Default: the scenario's bot.connector. In a scenario with several bots ([[bot]]) every bot runs C "
                   "(default: each its own).")
@click.option("--expect-hold", is_flag=True,
              help="Judge every run by the scenario's base [expect]: every check must hold, whatever the scenario "
                   "expects of this connector or policy. The 'verify my fix' mode: exit 1 while the bug is there.")
@click.option("--seed", type=int, default=None,
              help="Seed for every random choice (latency draws, perturbations, the background market). "
                   "Default: the scenario's scenario.seed.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every run (connector, policy, seed, checks, figures, verdict, unexpected checks, the "
                   "reproduce command, perturbations applied) to this JSON file: {schema_version, runs}. With --seeds: "
                   "{schema_version, runs, sweep}, a compact row per run (README: Seed sweeps).")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the run's trace (capture format) here. With several runs, "
                   "'-<scenario>-<connector and policy>' is added before the suffix.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write an HTML report of the runs here (one self-contained file): the verdicts, each run's "
                   "open orders over time (runs of one scenario side by side) and a sequence diagram of each first "
                   "violation. Keeps the runs' records in memory. With --seeds: the failure rate per connector and "
                   "policy, and the failing seeds' reproduce commands.")
@click.option("--duration", "duration", default=None, metavar="D", callback=_duration_option,
              help="Run every scenario for D instead of its scenario.duration: seconds (90) or the scenario "
                   "file's spelling ('90s', '10m', '6h'). The reproduce command repeats it.")
@click.option("--stop-on-violation", is_flag=True,
              help="End a run at the first violation a check reports as it goes (most checks judge an order "
                   "within about 30 simulated seconds of it settling; orphans and open-after-shutdown at the "
                   "end): the bot is shut down as usual and the trace, table and --json are written. For soak "
                   "runs expected to hold.")
@click.option("--real-time", is_flag=True, help="Run on the wall clock instead of virtual time (slower).")
@click.option("--timeline/--no-timeline", default=True, help="Print the messages around each first violation.")
@click.option("--seeds", type=int, default=None, metavar="N",
              help="Sweep: run every scenario, connector and policy under N seeds (0..N-1, or S..S+N-1 with "
                   "--seed S) and report per column the runs in which a check was violated, the failure rate "
                   "with its exact one-sided 95 % upper bound (0 of 500: 'below 0.6 %'), which checks failed "
                   "and the first failing seeds with their reproduce commands. --json then holds "
                   "{schema_version, runs (a compact row per run), sweep}. Not with --trace: re-run a failing "
                   "seed's reproduce command with --trace to get its trace.")
@click.option("--workers", type=int, default=None, metavar="N",
              help="With --seeds: runs at a time, in local worker processes (default: the cores this process "
                   "may use; 1: one after another in this process).")
@click.option("--dask", "dask_address", default=None, metavar="ADDRESS",
              help="With --seeds: run on a Dask cluster, e.g. tcp://scheduler:8786 (needs the 'dask' extra: "
                   "pip install 'valr-replay[dask]'; every worker needs valr-replay, and your connector module, "
                   "installed).")
def run(scenarios, policies, connectors, expect_hold, seed, json_path, trace_path, report_path, duration,
        stop_on_violation, real_time, timeline, seeds, workers, dask_address):
    """Run SCENARIO files against the fake VALR server with a connector and a pure market-making
    loop (the reference connector and our loop, or a Hummingbot connector and Hummingbot's own
    PMM), then check the invariants.

    Each run prints what ran, its seed and the command that reproduces it. The table shows, per
    check and run (connectors and policies side by side), whether it held, with figures (peak
    open orders, false cancels, orphans, place and cancel latency).

    What a run is expected to violate comes from the scenario, by what ran: [expect.connector."C"]
    (and [expect.connector."C".policy.P]), then [expect.policy.P] for a connector that takes our
    policies; otherwise the base [expect], where every check must hold (also with --expect-hold).

    With --seeds N the runs are a sweep (see --seeds), in parallel (--workers, --dask), with a
    live progress bar on a terminal.

    A scenario with several bots on one exchange ([[bot]]) runs them all at once, each on its own
    account, and is judged per bot: a column (and a --json "runs" entry) per bot.

    Exit status: 0 when every run came out as expected; 1 when one did not; 2 for bad input
    (refused before anything runs) or a run that could not be carried out (the others still run,
    and --json is still written).
    """
    from .connector.policies import parse_policy
    from .runner import JSON_SCHEMA_VERSION, RunError, run_label, run_scenario
    from .scenario import ScenarioError, load_scenario

    console = make_console(stderr=True)
    out = make_console()
    try:
        loaded = [load_scenario(p) for p in scenarios]
        if duration is not None:
            loaded = [s.with_duration(duration) for s in loaded]
        for p in policies:
            parse_policy(p)
        check_writable(json_path, "--json")
        check_writable(report_path, "--report")
        specs = list(dict.fromkeys(connectors)) or list(dict.fromkeys(b.connector for s in loaded for b in s.bots))
        takes_policy = {spec: check_connector(spec) for spec in specs}
        check_sweep_options(seeds, workers, dask_address, trace_path)
        check_multi_bot(loaded, seeds)
        if stop_on_violation and seeds is not None:
            raise ValueError("--stop-on-violation ends one long run early; a sweep (--seeds) already reports "
                             "each seed's first violation")
    except (ScenarioError, ValueError, OSError) as exc:
        fail(console, str(exc))
    _hand_to_hummingbot_env(specs, console)  # the command line as given: --seeds, --workers, --dask too

    plan = []
    origin: dict[int, Any] = {id(s): s for s in loaded}  # id of what ran -> the scenario as loaded
    for scenario in loaded:
        if scenario.multi_bot:
            # several bots: --connector and --policy, when given, are what every bot runs (one run each, a
            # column per bot); else each bot runs its own, in one run
            for spec in dict.fromkeys(connectors) or (None,):
                run_policies = policies or (None,)
                for policy in run_policies if spec is None or takes_policy[spec] else run_policies[:1]:
                    variant = scenario.running(spec, policy)
                    origin[id(variant)] = scenario
                    plan.append((variant, variant.connector_override or variant.bot.connector,
                                  variant.policy_override or variant.bot.policy))
            continue
        for spec in dict.fromkeys(connectors) or (scenario.bot.connector,):
            run_policies = policies or (scenario.bot.policy,)
            for policy in run_policies if takes_policy[spec] else run_policies[:1]:
                plan.append((scenario, spec, policy))
    if seeds is not None:
        run_sweep(console, out, plan, takes_policy, first_seed=0 if seed is None else seed, count=seeds,
                  workers=workers, dask=dask_address, expect_hold=expect_hold, real_time=real_time,
                  json_path=json_path, schema_version=JSON_SCHEMA_VERSION, report_path=report_path)
    results: list[Any] = []
    reported: list[Any] = []  # whole runs (each with its records) for --report
    for scenario, spec, policy in plan:
        run_seed = scenario.seed if seed is None else seed
        label = run_label(spec, policy, takes_policy[spec])
        path = _trace_file(trace_path, len(plan) > 1, scenario.name, label)
        if scenario.multi_bot:
            console.print(Text.assemble((scenario.name, "bold"), " bots=" + ", ".join(
                f"{b.name} ({scenario.connector_override or b.connector} {scenario.policy_override or b.policy})"
                for b in scenario.bots), f" seed={run_seed}"))
        else:
            console.print(Text.assemble((scenario.name, "bold"), f" connector={spec}",
                                        f" policy={policy if takes_policy[spec] else '-'} seed={run_seed}"))
        with _run_progress(console) as progress:
            task = progress.add_task(escape(f"{scenario.name} [{label}]"), total=scenario.duration_s,
                                     speed="", open=0, violated="0 violated")
            try:
                result = run_scenario(scenario, policy, run_seed, trace_path=path, virtual=not real_time,
                                      on_progress=_progress_reporter(progress, task, console), connector=spec,
                                      expect_hold=expect_hold, stop_on_violation=stop_on_violation,
                                      keep_records=report_path is not None)
            except RunError as exc:
                console.print(Text("  run failed: ", style="red") + Text(str(exc)))
                results.append(RunFailure(scenario, spec, policy, run_seed, str(exc)))
                continue
        results.extend(result.bots)
        if report_path is not None:
            reported.append(result)
        if result.stopped_on_violation:
            console.print(Text(f"  stopped at {result.sim_seconds:.1f} s simulated, on a violation of "
                               f"{', '.join(result.stopped_on_violation)} (--stop-on-violation)", style="yellow"))
        for r in result.bots:
            verdict = Text("as expected", style="green") if r.as_expected else Text("NOT as expected", style="red")
            who = f"  {r.label}:" if r.multi_bot else " "
            console.print(Text(f"{who} {r.sim_seconds:.1f} s simulated in {r.wall_seconds:.2f} s wall; ")
                          + verdict + Text(f" (unexpected: {', '.join(r.unexpected)})" if r.unexpected else ""))
        console.print(f"  reproduce: {result.reproduce}", markup=False, highlight=False, soft_wrap=True)
        if result.trace_path:
            console.print(f"  trace: {result.trace_path}", markup=False, highlight=False)

    for scenario in loaded:  # a run of a scenario with several bots may be of a variant (Scenario.running)
        runs = [r for r in results if not isinstance(r, RunFailure) and origin.get(id(r.scenario)) is scenario]
        if runs:
            print_table(out, runs, timeline)
    if report_path is not None:
        write_report(console, reported, report_path)
    failures = [r for r in results if isinstance(r, RunFailure)]
    for f in failures:
        console.print(Text(f"{f.scenario.name} / {f.connector} / {f.policy}: run failed: ", style="red")
                      + Text(f.error))
    finish(console, results, json_path, schema_version=JSON_SCHEMA_VERSION, code=2 if failures else None)


def write_report(console: Console, results: list, path: Path, tallies: list | None = None) -> None:
    """``run --report``: the HTML report (replay/report.py) of the runs, or of a sweep's ``tallies`` (its failure
    rates), with the time it took."""
    from .report import build_report, rate_from_tally, report_runs

    began = time.perf_counter()
    rates = [rate_from_tally(t) for t in tallies or []]
    path.write_text(build_report(report_runs(results), rates=rates), encoding="utf-8")
    console.print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB) in {time.perf_counter() - began:.2f} s",
                  markup=False, highlight=False)


def print_table(out: Console, runs: list, timeline: bool, title: str | None = None) -> None:
    """The table of one scenario's runs (``RunResult``s, policies side by side), then the
    first violation's timeline of each run. ``valr-replay run`` and ``valr-replay check``."""
    seed = "?" if runs[0].seed is None else runs[0].seed
    table = Table(title=title or f"{runs[0].scenario.name} (seed {seed})")
    table.add_column("check")
    for r in runs:
        table.add_column(escape(getattr(r, "label", r.policy)))
    for i, check in enumerate(runs[0].checks):
        row = [check.name]
        for r in runs:
            c = r.checks[i]
            status = {True: "[green]held[/green]", False: "[red]violated[/red]", None: "[dim]-[/dim]"}[c.held]
            if c.held is False and c.name in r.expected_violations:
                status = "[yellow]violated (expected)[/yellow]"
            row.append(f"{status} {_scalar_figures(c.figures)}".strip())
        table.add_row(*row)
    table.add_section()
    for label, check_name, keys in SUMMARY_FIGURES:
        table.add_row(label, *[_summary_value(r, check_name, keys) for r in runs])
    table.add_row("wall s / simulated s", *[f"{r.wall_seconds:.1f} / {r.sim_seconds:.0f}" for r in runs])
    table.add_section()
    verdicts = ["[green]as expected[/green]" if r.as_expected else "[red]NOT as expected[/red]" for r in runs]
    table.add_row("[bold]verdict[/bold]", *verdicts)
    out.print(table)
    if timeline:
        for r in runs:
            violated = [c for c in r.checks if c.held is False and c.timeline]
            violated.sort(key=lambda c: TIMELINE_PREFERENCE.index(c.name) if c.name in TIMELINE_PREFERENCE
                          else len(TIMELINE_PREFERENCE))
            for c in violated[:1]:
                out.print(Text.assemble((f"{getattr(r, 'label', r.policy)}: first violation of {c.name}", "bold"),
                                        f": {c.message}"))
                for line in c.timeline:
                    out.print(f"    {line}", markup=False, highlight=False)
                if len(violated) > 1:
                    out.print(f"    (also violated: {', '.join(v.name for v in violated[1:])}; "
                              "--json FILE has every timeline)")


def finish(console: Console, results: list, json_path: Path | None, json_rows: list | None = None, *,
           schema_version: int | None = None, code: int | None = None,
           extra: dict[str, Any] | None = None) -> NoReturn:
    """Write the JSON (``{"schema_version", "runs"}``, plus ``extra``'s keys; ``json_rows`` default each
    result's ``to_json()``) and exit: ``code`` when given, else 0 when every run came out as expected, else 1."""
    if schema_version is None:
        from .runner import JSON_SCHEMA_VERSION as schema_version
    if json_path is not None:
        rows = json_rows if json_rows is not None else [r.to_json() for r in results]
        doc = {"schema_version": schema_version, "runs": rows, **(extra or {})}
        json_path.write_text(json.dumps(doc, indent=2, default=str))
        console.print(f"wrote {json_path}", markup=False, highlight=False)
    sys.exit(code if code is not None else (0 if all(r.as_expected for r in results) else 1))


# --- seed sweeps (run --seeds) ------------------------------------------------------------------------

#: failing seeds shown per column (--json has them all)
SHOWN_SEEDS = 3


class _RunsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        return Text(f"{task.completed / elapsed:.1f} runs/s" if elapsed > 0 and task.completed else "- runs/s")


def run_sweep(console: Console, out: Console, plan: list, takes_policy: dict[str, bool], *, first_seed: int,
              count: int, workers: int | None, dask: str | None, expect_hold: bool, real_time: bool,
              json_path: Path | None, schema_version: int, report_path: Path | None = None) -> NoReturn:
    """``run --seeds``: every (scenario, connector, policy) of ``plan`` under seeds first_seed.. (count of
    them), on a :class:`~replay.workers.RunPool`; a table of failure rates per scenario, then exit."""
    from .runner import run_label
    from .sweep import Tally, not_run, run_one
    from .workers import RunPool, TaskFailed

    tallies: dict[int, Tally] = {}
    for i, (scenario, spec, policy) in enumerate(plan):
        tallies[i] = Tally(scenario.name, run_label(spec, policy, takes_policy[spec]), spec,
                           policy if takes_policy[spec] else None)
    jobs = [(i, s) for s in range(first_seed, first_seed + count) for i in range(len(plan))]
    try:
        pool = RunPool(workers=workers, dask=dask)
    except RuntimeError as exc:
        fail(console, str(exc))
    except Exception as exc:  # noqa: BLE001 - whatever distributed raises for an address it cannot reach
        fail(console, f"--dask {dask}: cannot use the scheduler: {type(exc).__name__}: {exc}")
    where = pool.where
    last = first_seed + count - 1
    console.print(Text.assemble(("sweep", "bold"), f": seeds {first_seed}..{last}, {len(plan)} "
                                f"column{'s' if len(plan) > 1 else ''}, {len(jobs)} runs on {where}"))
    # in this process a run happens at submit: one at a time keeps the progress live; else two per worker
    window = 1 if pool.workers == 1 and dask is None else 2 * pool.workers
    cwd = os.getcwd()
    submitted: dict[int, tuple[int, int]] = {}
    done = 0
    interrupted = False
    started = time.perf_counter()
    with pool, Progress(TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), _RunsPerSecond(),
                        TextColumn("{task.fields[failures]} failed"), TimeElapsedColumn(), console=console,
                        transient=True, disable=not console.is_terminal) as progress:
        overall = progress.add_task("all", total=len(jobs), failures=0)
        bars = {i: progress.add_task(escape(f"{t.scenario} [{t.label}]"), total=count, failures=0)
                for i, t in tallies.items()}
        try:
            while done < len(jobs):
                while len(submitted) < window and len(submitted) + done < len(jobs):
                    i, run_seed = jobs[len(submitted) + done]
                    scenario, spec, policy = plan[i]
                    ticket = pool.submit(run_one, scenario, policy, run_seed, spec, expect_hold, not real_time,
                                         tallies[i].label, cwd)
                    submitted[ticket] = (i, run_seed)
                try:
                    ticket, summary = pool.next_done()
                except TaskFailed as exc:  # a bug, or a lost worker: that run is reported as not carried out
                    ticket = exc.ticket
                    i, run_seed = submitted[ticket]
                    scenario, spec, policy = plan[i]
                    summary = not_run(scenario, policy, run_seed, spec, expect_hold, tallies[i].label,
                                      f"{type(exc.error).__name__}: {exc.error}")
                i, _ = submitted.pop(ticket)
                done += 1
                tallies[i].add(summary)
                progress.update(bars[i], advance=1, failures=tallies[i].failures)
                progress.update(overall, advance=1, failures=sum(t.failures for t in tallies.values()))
        except KeyboardInterrupt:
            interrupted = True
    elapsed = time.perf_counter() - started
    console.print(f"{done} runs in {elapsed:.1f} s ({done / elapsed if elapsed else 0:.1f} runs/s) on {where}"
                  + (f"; interrupted: {len(jobs) - done} runs not done" if interrupted else ""),
                  markup=False, highlight=False)

    for name in dict.fromkeys(t.scenario for t in tallies.values()):
        print_sweep_table(out, [t for t in tallies.values() if t.scenario == name], first_seed, last)
    errors = [r for t in tallies.values() for r in t.errors]
    for t in tallies.values():
        for r in t.errors[:SHOWN_SEEDS]:
            console.print(Text(f"{t.scenario} / {t.label} / seed {r.seed}: run failed: ", style="red")
                          + Text(r.error or ""))
    summaries = [r for t in tallies.values() for r in t.runs]
    extra = {"sweep": {"first_seed": first_seed, "seeds": count, "where": where, "expect_hold": expect_hold,
                       "interrupted": interrupted, "wall_seconds": round(elapsed, 3),
                       "labels": [t.to_json() for t in tallies.values()]}}
    rows = [row for t in tallies.values() for row in t.rows()]
    if report_path is not None:
        write_report(console, [], report_path, list(tallies.values()))
    code = 130 if interrupted else (2 if errors else None)
    finish(console, summaries, json_path, rows, schema_version=schema_version, code=code, extra=extra)


def print_sweep_table(out: Console, tallies: list, first_seed: int, last_seed: int) -> None:
    """One scenario's sweep: per column the runs, the failures and their rate, the verdicts and the
    checks that failed; then the first failing seeds of each column with their reproduce commands."""
    table = Table(title=f"{tallies[0].scenario} (seeds {first_seed}..{last_seed})")
    for heading in ("", "runs", "failed", "failure rate", "as expected", "violated checks (runs)"):
        table.add_column(heading)
    for t in tallies:
        verdict = f"{t.as_expected}/{len(t.runs)}"
        table.add_row(escape(t.label), str(t.n), str(t.failures), t.described,
                      f"[green]{verdict}[/green]" if t.as_expected == len(t.runs) else f"[red]{verdict}[/red]",
                      escape(", ".join(f"{name} {n}" for name, n in t.by_check.items())) or "-")
    out.print(table)
    for t in tallies:
        # the runs that set the exit status first; then the failing ones, when they are not the same runs
        unexpected = [r for r in t.runs if not r.as_expected and r.error is None]
        failing = t.failing if t.failing != unexpected else []
        for runs, what in ((unexpected, "seeds not as expected"), (failing, "failing seeds")):
            if not runs:
                continue
            more = f" (of {len(runs)}; --json has them all)" if len(runs) > SHOWN_SEEDS else ""
            out.print(Text.assemble((f"{t.label}: {what}", "bold"), more))
            for r in runs[:SHOWN_SEEDS]:
                note = "" if r.as_expected else f"; NOT as expected (unexpected: {', '.join(r.unexpected)})"
                out.print(f"  seed {r.seed}: {', '.join(r.violated) or 'no check violated'}{note}",
                          markup=False, highlight=False)
                out.print(f"    {r.reproduce}", markup=False, highlight=False, soft_wrap=True)
