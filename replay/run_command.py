"""``valr-replay run``: run scenarios under one or more policies and report the checks."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable, NoReturn

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

POLICY_HELP = "naive | age-guard:S | ignore | reconcile"


def _progress_reporter(progress: Progress, task: TaskID) -> Callable[[float, float], None]:
    """An on_progress callback bound to one run's bar (not to the loop variables of the caller)."""

    def report(done: float, total: float) -> None:
        progress.update(task, completed=done)

    return report


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


def _hand_to_hummingbot_env(connector: str | None, scenarios: list, console: Console) -> None:
    """A Hummingbot connector in an environment without Hummingbot: re-run this very command in the
    Hummingbot environment (tools/hummingbot-env) when there is one; else a clear error, exit 2."""
    from .hummingbot.bot import (
        HummingbotError,
        hummingbot_importable,
        hummingbot_python,
        is_hummingbot_spec,
        require_hummingbot,
    )

    specs = [connector] if connector else [s.bot.connector for s in scenarios]
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
        console.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)


@click.command("run")
@click.argument("scenarios", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--policy", "policies", multiple=True, metavar="P",
              help=f"OPEN_ORDERS_UPDATE handler of the reference connector ({POLICY_HELP}). "
                   "Repeat to run the policies side by side. Default: the scenario's bot.policy.")
@click.option("--seed", type=int, default=None,
              help="Seed for every random choice (latency draws, perturbations, the background market). "
                   "Default: the scenario's scenario.seed.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every run's checks, figures and verdict to this JSON file.")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the run's trace (capture format) here. With several runs, "
                   "'-<scenario>-<policy>' is added before the suffix.")
@click.option("--connector", default=None,
              help="Connector under test: 'reference' or 'module:attr'. Default: the scenario's bot.connector.")
@click.option("--real-time", is_flag=True, help="Run on the wall clock instead of virtual time (slower).")
@click.option("--timeline/--no-timeline", default=True, help="Print the messages around each first violation.")
def run(scenarios, policies, seed, json_path, trace_path, connector, real_time, timeline):
    """Run SCENARIO files against the fake VALR server with the reference connector
    and a pure market-making loop, then check the invariants.

    Each run prints its seed and the command that reproduces it. The table shows, per
    check and policy, whether it held, with figures (peak open orders, false cancels,
    orphans, place and cancel latency).

    Exit status: 0 when every check came out as the scenario expects for that policy
    (a scenario may declare that a buggy policy is expected to violate a check), 1 when
    one did not, 2 for bad input.
    """
    from .connector.policies import parse_policy
    from .runner import RunError, reproduce_command, run_scenario
    from .scenario import ScenarioError, load_scenario

    console = Console(stderr=True)
    out = Console()
    try:
        loaded = [load_scenario(p) for p in scenarios]
        for p in policies:
            parse_policy(p)
    except (ScenarioError, ValueError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
    _hand_to_hummingbot_env(connector, loaded, console)

    results = []
    for scenario in loaded:
        if connector:
            scenario.bot.connector = connector
        run_seed = scenario.seed if seed is None else seed
        for policy in policies or (scenario.bot.policy,):
            path = None
            if trace_path is not None:
                path = trace_path
                if len(loaded) * max(1, len(policies)) > 1:
                    stem = trace_path.name.split(".")[0]
                    rest = trace_path.name[len(stem):]
                    safe = policy.replace(":", "_")
                    path = trace_path.with_name(f"{stem}-{scenario.name}-{safe}{rest}")
            named = "" if scenario.bot.connector == "reference" else f" connector={scenario.bot.connector}"
            console.print(f"[bold]{scenario.name}[/bold]{named} policy={policy} seed={run_seed}")
            with Progress(TextColumn("  {task.description}"), BarColumn(),
                          TextColumn("{task.completed:.0f}/{task.total:.0f} s simulated"),
                          TimeElapsedColumn(), console=console, transient=True) as progress:
                task = progress.add_task(f"{scenario.name} [{policy}]", total=scenario.duration_s)
                try:
                    result = run_scenario(scenario, policy, run_seed, trace_path=path, virtual=not real_time,
                                          on_progress=_progress_reporter(progress, task))
                except RunError as exc:
                    console.print(f"[red]run failed:[/red] {exc}")
                    sys.exit(2)
            results.append(result)
            verdict = "[green]as expected[/green]" if result.as_expected else "[red]NOT as expected[/red]"
            console.print(f"  {result.sim_seconds:.1f} s simulated in {result.wall_seconds:.2f} s wall; {verdict}"
                          + (f" (unexpected: {', '.join(result.unexpected)})" if result.unexpected else ""))
            console.print(f"  reproduce: {reproduce_command(scenario, policy, run_seed, connector)}")
            if result.trace_path:
                console.print(f"  trace: {result.trace_path}")

    for scenario in loaded:
        print_table(out, [r for r in results if r.scenario is scenario], timeline)
    finish(console, results, json_path)


def print_table(out: Console, runs: list, timeline: bool, title: str | None = None) -> None:
    """The table of one scenario's runs (``RunResult``s, policies side by side), then the
    first violation's timeline of each run. ``valr-replay run`` and ``valr-replay check``."""
    seed = "?" if runs[0].seed is None else runs[0].seed
    table = Table(title=title or f"{runs[0].scenario.name} (seed {seed})")
    table.add_column("check")
    for r in runs:
        table.add_column(r.policy)
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
                out.print(f"[bold]{r.policy}: first violation of {c.name}[/bold]: {c.message}")
                for line in c.timeline:
                    out.print(f"    {line}", markup=False, highlight=False)
                if len(violated) > 1:
                    out.print(f"    (also violated: {', '.join(v.name for v in violated[1:])}; "
                              "--json FILE has every timeline)")


def finish(console: Console, results: list, json_path: Path | None, json_rows: list | None = None) -> NoReturn:
    """Write the per-run JSON (``json_rows``, default each result's ``to_json()``) and exit:
    0 when every run came out as expected, else 1."""
    if json_path is not None:
        rows = json_rows if json_rows is not None else [r.to_json() for r in results]
        json_path.write_text(json.dumps(rows, indent=2, default=str))
        console.print(f"wrote {json_path}")
    sys.exit(0 if all(r.as_expected for r in results) else 1)
