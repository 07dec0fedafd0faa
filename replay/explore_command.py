"""``valr-replay explore``: search schedules of a scenario for violations, shrink what is found.

The shell around ``replay/explore.py``: runs schedules in workers (``replay/workers.py``), shows
progress, shrinks counterexamples, writes each minimal one as a scenario file with its trace, and
the whole outcome as JSON.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import click
import tomli_w
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .checks import CHECK_NAMES
from .explore import (
    STRATEGIES,
    STRATEGY_HELP,
    Context,
    Counterexample,
    Explorer,
    Outcome,
    Schedule,
    coverage_features,
    entry_label,
    representative_groups,
    scenario_doc,
    shrink_candidates,
    size,
    violation_shape,
)
from .importing import importable_from
from .latency import SpecError
from .run_command import _hand_to_hummingbot_env, check_connector, check_writable, fail, make_console
from .runner import RunError, run_label, run_scenario
from .scenario import ScenarioError, parse_duration, parse_policy_name, scenario_from_doc
from .workers import RunPool, TaskFailed, default_workers

BATCH = 16  # schedules per generation: fixed, so a seed gives the same search whatever --workers
SHRINK_RUNS = 200  # re-runs allowed per counterexample while shrinking


SCHEDULE_TIMEOUT_S = 60.0  # wall seconds one schedule may take before it is reported as an error


@dataclass(frozen=True)
class Job:
    """One schedule to run (picklable: it goes to a worker process or a Dask worker)."""

    base_doc: dict[str, Any]
    path: str
    policy: str
    connector: str
    schedule: Schedule
    trace_path: str | None = None
    timeout_s: float = SCHEDULE_TIMEOUT_S
    #: the submitter's directory: a worker started elsewhere still finds a `module:attr` connector there
    cwd: str | None = None


class ScheduleTimeout(Exception):
    pass


@contextlib.contextmanager
def _wall_limit(seconds: float) -> Iterator[None]:
    """Raise ScheduleTimeout in this thread after ``seconds`` of wall time: a run whose connector never
    lets virtual time advance must not stall the search. Needs the main thread (SIGALRM); elsewhere
    (a Dask worker's thread) there is no limit."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise ScheduleTimeout(f"no result after {seconds:g} s of wall time")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_schedule(job: Job) -> Outcome:
    """Run one schedule and keep what the explorer needs (a worker task)."""
    # thousands of runs with faults: the connector's reconnect warnings would bury the progress display
    logging.getLogger("replay.connector").setLevel(logging.ERROR)
    importable_from(job.cwd)
    doc = scenario_doc(job.base_doc, job.schedule, policy=job.policy, connector=job.connector)
    try:
        scenario = scenario_from_doc(doc, job.path)
        with _wall_limit(job.timeout_s):
            result = run_scenario(scenario, job.policy, job.schedule.seed, connector=job.connector, keep_records=True,
                                  expect_hold=True, trace_path=job.trace_path)
    except (RunError, ScenarioError, SpecError, ScheduleTimeout) as exc:
        return Outcome([], error=f"{type(exc).__name__}: {exc}" if isinstance(exc, ScheduleTimeout) else str(exc))
    first = {}
    for c in result.checks:
        if c.held is False and c.first_violation is not None:
            fv = c.first_violation
            first[c.name] = (violation_shape(fv["record"], fv["what"]), c.message, float(fv["t_s"]))
    return Outcome(result.violated, first, coverage_features(result.records), result.perturbations,
                   result.sim_seconds, result.wall_seconds)


class _Search:
    """Runs the search and the shrinking; reports through ``on_run``."""

    def __init__(self, pool: RunPool, base_doc: dict[str, Any], path: Path, policy: str, connector: str,
                 explorer: Explorer):
        self.pool = pool
        self.base_doc = base_doc
        self.path = path
        self.policy = policy
        self.connector = connector
        self.explorer = explorer
        self.base_latency: dict[str, Any] = dict(base_doc.get("latency", {}))
        self.where = pool.where  # said before the pool closes
        self.t0 = time.perf_counter()
        self.runs = 0
        self.shrink_runs = 0
        self.done_at: list[float] = []

    def job(self, s: Schedule, trace: Path | None = None) -> Job:
        return Job(self.base_doc, str(self.path.resolve()), self.policy, self.connector, s,
                   str(trace.resolve()) if trace else None, cwd=os.getcwd())

    def run_many(self, schedules: list[Schedule], on_run: Callable[[], None]) -> list[Outcome]:
        """Run schedules in the pool; outcomes in the order given (``self.done_at``: when each finished)."""
        tickets = {self.pool.submit(run_schedule, self.job(s)): i for i, s in enumerate(schedules)}
        out: list[Outcome | None] = [None] * len(schedules)
        self.done_at = [0.0] * len(schedules)
        while self.pool.pending:
            try:
                ticket, outcome = self.pool.next_done()
            except TaskFailed as exc:
                ticket, outcome = exc.ticket, Outcome([], error=f"{type(exc.error).__name__}: {exc.error}")
            out[tickets[ticket]] = outcome
            self.done_at[tickets[ticket]] = time.perf_counter() - self.t0
            self.runs += 1
            on_run()
        return [o if o is not None else Outcome([], error="lost") for o in out]

    def search(self, budget: int | None, seconds: float | None, stop_on_find: bool | Callable[[Explorer], bool],
               on_run: Callable[[], None]) -> None:
        """Run batches until the budget (schedules or seconds) is spent, or ``stop_on_find`` says stop:
        ``True`` at the first counterexample, a function of the explorer for anything else."""
        number = 0
        while True:
            elapsed = time.perf_counter() - self.t0
            if seconds is not None and elapsed >= seconds:
                break
            if budget is not None and number >= budget:
                break
            if stop_on_find is True and self.explorer.groups:
                break
            if callable(stop_on_find) and stop_on_find(self.explorer):
                break
            n = BATCH if budget is None else min(BATCH, budget - number)
            batch = self.explorer.next_batch(n)
            if not batch:
                break
            outcomes = self.run_many(batch, on_run)
            for s, o, done_at in zip(batch, outcomes, self.done_at, strict=True):
                number += 1
                self.explorer.record(number, s, o, done_at)

    def still_fails(self, outcomes: list[Outcome], check: str) -> int | None:
        return next((i for i, o in enumerate(outcomes) if o.error is None and check in o.violated), None)

    def shrink(self, group: Counterexample, on_run: Callable[[], None]) -> None:
        current = group.schedule
        runs = 0
        progress = True
        while progress and runs < SHRINK_RUNS:
            progress = False
            for _, candidates in shrink_candidates(current, self.base_latency):
                smaller = [c for c in candidates if size(c, self.base_latency) < size(current, self.base_latency)]
                smaller = smaller[: max(0, SHRINK_RUNS - runs)]
                if not smaller:
                    continue
                outcomes = self.run_many(smaller, on_run)
                runs += len(smaller)
                hit = self.still_fails(outcomes, group.check)
                if hit is not None:
                    current = smaller[hit]
                    progress = True
                    break
        group.minimal = replace(current, origin="shrunk")
        group.shrink_runs = runs
        self.shrink_runs += runs


def context_for(base: Any, duration_s: float) -> Context:
    """What the library needs to know about a scenario."""
    return Context(duration_s=duration_s, refresh_s=base.bot.order_refresh_time_s)


def start_search(path: Path, policy: str | None = None, *, connector: str | None = None, seed: int = 0,
                 strategy: str = "feedback", duration_s: float = 10.0, pool: RunPool) -> _Search:
    """A search over ``path``'s schedules on ``pool`` (for benchmarks and tests; the command adds output)."""
    base_doc = tomllib.loads(path.read_text(encoding="utf-8"))
    base = scenario_from_doc(base_doc, path)
    policy = policy or base.bot.policy
    explorer = Explorer(context_for(base, duration_s), seed, strategy, base=Schedule(seed=base.seed,
                                                                                     duration_s=duration_s))
    return _Search(pool, base_doc, path, policy, connector or base.bot.connector, explorer)


def _write_minimal(search: _Search, group: Counterexample, n: int, out_dir: Path, label: str, seed: int,
                   strategy: str, scenario_name: str, argv: str) -> dict[str, Any]:
    """Write ``NN-check.toml`` and its trace; re-run it to confirm, and say what it does."""
    assert group.minimal is not None
    stem = f"{n:02d}-{group.check}"
    toml_path = out_dir / f"{stem}.toml"
    trace_path = out_dir / f"{stem}.trace.jsonl"
    outcome = run_schedule(search.job(group.minimal, trace_path))
    group.minimal_violated = outcome.violated
    group.minimal_message = outcome.first.get(group.check, ("", group.message, 0.0))[1]
    doc = scenario_doc(search.base_doc, group.minimal, policy=search.policy,
                       connector=search.connector if search.connector != "reference" else None,
                       name=f"{scenario_name}-found-{group.check.replace('_', '-')}",
                       description=f"found by valr-replay explore: {group.check} under {label}")
    # a relative [market] capture stays pointing at the same file from the new place
    market = doc.get("market")
    if isinstance(market, dict) and isinstance(market.get("capture"), str):
        capture = (search.path.parent / market["capture"]).resolve()
        market["capture"] = str(capture)
    entries = group.minimal.entries
    reproduces = group.check in outcome.violated
    header = [
        f"# Found by `{argv}` (seed {seed}, strategy {strategy}):",
        f"# schedule {group.found_at}, {group.found_after_s:.1f} s into the search; {group.count} schedule(s) "
        f"violated {group.check} this way.",
        f"# Shrunk in {group.shrink_runs} runs from {len(group.schedule.perturb)} perturbation(s) and "
        f"{group.schedule.duration_s:g} s to {len(entries)} and {group.minimal.duration_s:g} s.",
        f"# First violation: {group.minimal_message or group.message}",
        f"# Shape: {group.shape}",
        f"# Reproduce: valr-replay run {toml_path}" + ("" if reproduces else
                                                       "   (NOTE: the re-run did not violate it again)"),
        f"# It violates: {', '.join(outcome.violated) or 'nothing'}. To keep it as a known failure of {label},",
        f"# add [expect.policy.{json.dumps(search.policy)}] violated = {json.dumps(outcome.violated)};"
        " a fixed connector holds as it is.",
        "",
    ]
    toml_path.write_text("\n".join(header) + tomli_w.dumps(doc), encoding="utf-8")
    return {"scenario": str(toml_path), "trace": str(trace_path), "reproduces": reproduces,
            "violated": outcome.violated, "perturbations": [entry_label(e) for e in entries],
            "duration_s": group.minimal.duration_s, "seed": group.minimal.seed,
            "shrink_runs": group.shrink_runs}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("scenario_path", metavar="SCENARIO", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--policy", default=None, metavar="P",
              help="OPEN_ORDERS_UPDATE policy of the connector under test (default: the scenario's bot.policy).")
@click.option("--connector", default=None, metavar="C",
              help="Connector under test: reference, hummingbot[:module:Class] or module:attr (default: the "
                   "scenario's).")
@click.option("--budget", type=click.IntRange(min=1), default=None,
              help="Schedules to try (default 200, or unlimited with --time).")
@click.option("--time", "time_budget", default=None, metavar="DURATION",
              help="Stop searching after this much wall time: 90s, 5m, 1h.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help=f"Local worker processes (default: the cores here, {default_workers()}); 1 runs in-process.")
@click.option("--dask", "dask_address", default=None, metavar="ADDRESS",
              help="Run the schedules on a Dask cluster (tcp://scheduler:8786) instead of local processes.")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="feedback", show_default=True,
              help="How schedules are chosen: " + "; ".join(f"{k}: {v}" for k, v in STRATEGY_HELP.items()) + ".")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds every choice of the search: the same seed and budget try the same schedules.")
@click.option("--duration", "duration_text", default="10s", show_default=True, metavar="DURATION",
              help="Simulated length of each schedule's run.")
@click.option("--shrink", "shrink_limit", type=click.IntRange(min=0), default=5, show_default=True,
              help="Counterexample groups to shrink and write (one per check first); 0 writes none.")
@click.option("--check", "only_checks", multiple=True, metavar="NAME",
              help="Count only violations of this check (repeatable; default: every check of the scenario).")
@click.option("--stop-on-find", is_flag=True, help="Stop searching at the first counterexample.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where minimal scenarios and traces go (default: explore-out/<scenario>-<policy>).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the whole outcome as JSON.")
def explore(scenario_path, policy, connector, budget, time_budget, workers, dask_address, strategy, seed,
            duration_text, shrink_limit, only_checks, stop_on_find, out_dir, json_path):
    """Search the schedules of SCENARIO for invariant violations, and shrink what is found.

    Each schedule is a short run of the scenario (10 s simulated) with its own seed (the latency
    draws), a random subset of a perturbation library (delays per message type, holds, stale
    re-sends, reorder windows, duplicates, drops, disconnects, engine delays, REST and WebSocket
    429s, PCT priorities) and sometimes a shutdown right after a refresh. Schedules that show a
    connector state transition or a message ordering not seen before are mutated further.

    A run that violates a check of the scenario's base [expect] (every check must hold) is a
    counterexample. Counterexamples are grouped by check and by the shape of the first violation;
    each group's simplest example is shrunk to the fewest perturbations, the smallest parameters,
    the shortest run and constant latencies that still violate the check, and written to --out as
    a scenario file with its trace: `valr-replay run FILE` reproduces it.

    Start from a scenario with benign latencies and no perturbations, e.g.
    scenarios/explore_base.toml. Exit status: 0 when nothing was found, 1 when counterexamples were
    found, 2 for bad input, 130 when interrupted (Ctrl-C: what was found so far is reported).
    """
    console = make_console()
    err = make_console(stderr=True)
    try:
        raw = scenario_path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(console, f"{scenario_path}: cannot read: {exc.strerror or exc}")
    try:
        base_doc = tomllib.loads(raw)
        base = scenario_from_doc(base_doc, scenario_path)
    except tomllib.TOMLDecodeError as exc:
        fail(console, f"{scenario_path}: invalid TOML: {exc}")
    except ScenarioError as exc:
        fail(console, str(exc))
    if base.multi_bot:  # a schedule's verdict is one bot's checks: the others' would go unjudged
        names = ", ".join(b.name for b in base.bots)
        fail(console, f"{scenario_path}: explore does not take a scenario with several bots yet ({names}): explore "
                      "a copy with the one [bot] whose races you are after")
    try:
        duration = parse_duration(duration_text, "--duration")
        if duration <= 0:
            raise SpecError("--duration", "must be more than 0")
        seconds = parse_duration(time_budget, "--time") if time_budget is not None else None
        policy = parse_policy_name(policy, "--policy") if policy is not None else base.bot.policy
    except SpecError as exc:
        fail(console, str(exc))
    try:
        check_writable(json_path, "--json")
        if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
            raise ValueError(f"--out {out_dir}: not a directory")
    except ValueError as exc:
        fail(console, str(exc))
    unknown = [c for c in only_checks if c not in CHECK_NAMES]
    if unknown:
        fail(console, f"--check {unknown[0]}: unknown check; known: {', '.join(CHECK_NAMES)}")
    connector = connector or base.bot.connector
    try:
        takes_policy = check_connector(connector)
    except ValueError as exc:
        fail(console, str(exc))
    _hand_to_hummingbot_env([connector], console)
    if base.perturb:
        err.print(f"note: {scenario_path} has {len(base.perturb)} [[perturb]] entries; the explorer replaces them "
                  "with its own (start from benign latencies and no perturbations)", markup=False, highlight=False)
    if budget is None and seconds is None:
        budget = 200
    label = run_label(connector, policy, takes_policy)
    safe_label = label.replace(" ", "-").replace(":", "-").replace("/", "-")
    out_dir = out_dir or Path("explore-out") / f"{base.name}-{safe_label}"
    argv = "valr-replay explore " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["explore"] else \
        f"valr-replay explore {scenario_path} --policy {policy} --seed {seed}"

    explorer = Explorer(context_for(base, duration), seed, strategy, base=Schedule(seed=base.seed,
                                                                                   duration_s=duration),
                        checks=only_checks)
    try:
        pool = RunPool(workers, dask_address)
    except (RuntimeError, ValueError, OSError) as exc:
        fail(console, f"--dask {dask_address}: {exc}" if dask_address else str(exc))
    budget_text = f"{budget} schedules" if budget is not None else ""
    if seconds is not None:
        budget_text += (" or " if budget_text else "") + f"{seconds:g} s"
    err.print(f"exploring {scenario_path} under {label}: seed {seed}, strategy {strategy}, {budget_text}, "
              f"{duration:g} s schedules, on {pool.where}", markup=False, highlight=False)

    search = _Search(pool, base_doc, scenario_path, policy, connector, explorer)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[status]}"), console=err, transient=False)
    with pool, progress:
        task = progress.add_task("exploring", total=budget, status="")

        def on_run() -> None:
            elapsed = max(time.perf_counter() - search.t0, 1e-9)
            transitions, orderings = explorer.coverage_counts()
            progress.update(task, advance=1, status=(
                f"{search.runs / elapsed:.1f}/s  coverage {transitions} transitions, {orderings} orderings"
                f"  counterexamples {len(explorer.groups)}"))

        interrupted = False
        try:
            search.search(budget, seconds, stop_on_find, on_run)
        except KeyboardInterrupt:
            interrupted = True  # report what was found so far; no shrinking
        search_s = time.perf_counter() - search.t0
        searched = explorer.runs
        chosen = [] if interrupted else representative_groups(explorer.groups.values(), shrink_limit)
        written: list[dict[str, Any]] = []
        if chosen:
            out_dir.mkdir(parents=True, exist_ok=True)
            shrink_task = progress.add_task("shrinking", total=len(chosen), status="")
            for n, group in enumerate(chosen, 1):
                progress.update(shrink_task, status=f"{group.check}: {group.schedule.describe()}")
                search.shrink(group, lambda: None)
                written.append(_write_minimal(search, group, n, out_dir, label, seed, strategy, base.name, argv))
                progress.update(shrink_task, advance=1)

    by_key = {id(g): w for g, w in zip(chosen, written, strict=True)}
    if interrupted:
        console.print("interrupted: what was found so far (nothing shrunk)", markup=False, highlight=False)
    _print_outcome(console, explorer, search, searched, search_s, label, by_key)
    outcome = _outcome_json(explorer, search, searched, search_s, scenario_path, label, policy, connector, seed,
                            strategy, duration, by_key)
    outcome["interrupted"] = interrupted
    if json_path is not None:
        json_path.write_text(json.dumps(outcome, indent=2, default=str) + "\n", encoding="utf-8")
    sys.exit(130 if interrupted else 1 if explorer.groups else 0)


def _print_outcome(console: Console, explorer: Explorer, search: _Search, searched: int, search_s: float,
                   label: str, written: dict[int, dict[str, Any]]) -> None:
    transitions, orderings = explorer.coverage_counts()
    rate = searched / search_s * 60 if search_s > 0 else 0.0
    console.print(f"{searched} schedules in {search_s:.1f} s ({rate:.0f}/min) under {label}; coverage: "
                  f"{transitions} connector transitions, {orderings} message orderings; corpus "
                  f"{len(explorer.corpus)}; errors {len(explorer.errors)}", markup=False, highlight=False)
    if explorer.errors:
        schedule, why = explorer.errors[0]
        console.print(f"first error ({schedule.describe()}): {why}", markup=False, highlight=False)
    if not explorer.groups:
        console.print("no counterexample: every check held on every schedule", markup=False, highlight=False)
        return
    table = Table(title=f"counterexamples: {len(explorer.groups)} groups", title_justify="left")
    for col in ("check", "first violation", "runs", "found", "minimal"):
        table.add_column(col, overflow="fold")
    for g in sorted(explorer.groups.values(), key=lambda g: g.found_at):
        w = written.get(id(g))
        minimal = "-"
        if w is not None:
            minimal = (f"{', '.join(w['perturbations']) or 'no perturbations'}; {w['duration_s']:g} s; "
                       f"{w['scenario']}" + ("" if w["reproduces"] else " (did not reproduce)"))
        table.add_row(g.check, g.shape, str(g.count), f"#{g.found_at} at {g.found_after_s:.1f} s", minimal)
    console.print(table)


def _outcome_json(explorer: Explorer, search: _Search, searched: int, search_s: float, path: Path, label: str,
                  policy: str, connector: str, seed: int, strategy: str, duration: float,
                  written: dict[int, dict[str, Any]]) -> dict[str, Any]:
    return {
        "scenario": str(path),
        "label": label,
        "policy": policy,
        "connector": connector,
        "seed": seed,
        "strategy": strategy,
        "schedule_seconds": duration,
        "schedules": searched,
        "search_seconds": round(search_s, 3),
        "schedules_per_minute": round(searched / search_s * 60, 1) if search_s > 0 else None,
        "shrink_runs": search.shrink_runs,
        "where": search.where,
        "coverage": {"transitions": sorted(f for f in explorer.coverage if f.startswith("T ")),
                     "orderings": len([f for f in explorer.coverage if f.startswith("O ")]),
                     "corpus": len(explorer.corpus)},
        "errors": [{"schedule": s.describe(), "error": e} for s, e in explorer.errors[:20]],
        "by_check": explorer.by_check(),
        "counterexamples": [
            {"check": g.check, "shape": g.shape, "message": g.message, "count": g.count,
             "found_at": g.found_at, "found_after_s": round(g.found_after_s, 3),
             "schedule": {"seed": g.schedule.seed, "duration_s": g.schedule.duration_s,
                          "perturb": g.schedule.entries, "origin": g.schedule.origin},
             "minimal": written.get(id(g))}
            for g in sorted(explorer.groups.values(), key=lambda g: g.found_at)
        ],
    }
