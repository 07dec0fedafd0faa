"""``valr-replay check TRACE...``: judge a run from its trace(s), the way ``run`` judges its own.

For a connector that ran in its own process against ``valr-replay serve --scenario``: the
server's trace gives the exchange's view (server-side checks); a trace the connector wrote
(``client`` ``ORDER_STATE`` and ``strategy`` records, captures/README.md) adds the client-side
checks. Several traces are merged by wall time: each trace's records carry ``t`` (ns since
its own start) and ``wall`` (ISO ms on the same clock), from which the trace's start is
recovered (``trace_origin_ns``) and every record placed on the earliest trace's time line.
Two processes' wall clocks read the same system clock, so the merge is good to about a
millisecond, far below the checks' grace periods.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, NoReturn

import click
from rich.console import Console

from .clock import trace_origin_ns
from .run_command import POLICY_HELP, finish, print_table

EXIT_BAD_INPUT = 2
# What a writer killed mid-line leaves behind (it flushes every line): reported, not fatal.
TOLERATED_PROBLEMS = ("truncated last line", "gzip stream truncated")
PLACE_COMMANDS = ("PLACE_LIMIT", "PLACE_MARKET")


class CheckInputError(Exception):
    """Bad input for ``check``: the message names the file (and line, or key)."""


@dataclass
class Traces:
    """Records of one or more traces merged on one time line, with where each came from."""

    paths: list[Path]
    headers: list[dict[str, Any]]
    records: list[dict[str, Any]] = field(default_factory=list)
    where: list[tuple[str, int]] = field(default_factory=list)  # (file, line) of each record
    warnings: list[str] = field(default_factory=list)

    def header_value(self, key: str, kind: type | tuple[type, ...] = str) -> Any:
        """The first header's ``key`` of type ``kind`` (None if no header has one)."""
        for header in self.headers:
            value = header.get(key)
            if isinstance(value, kind) and not isinstance(value, bool):
                return value
        return None

    @property
    def span_s(self) -> float:
        if not self.records:
            return 0.0
        return (self.records[-1]["t"] - self.records[0]["t"]) / 1e9


def load_traces(paths: list[Path]) -> Traces:
    """Read every trace (CheckInputError on a missing file, a bad header or a corrupt line)
    and merge them by time (stable: at equal times, in the order the files were given)."""
    from .capture import CaptureError, open_capture

    traces = Traces(paths=list(paths), headers=[])
    per_file: list[tuple[list[dict[str, Any]], list[tuple[str, int]], int | None]] = []
    for path in paths:
        try:
            reader = open_capture(path)
        except CaptureError as exc:
            raise CheckInputError(str(exc)) from None
        records: list[dict[str, Any]] = []
        where: list[tuple[str, int]] = []
        for line_no, rec in reader.iter_with_lines():
            records.append(rec)
            where.append((str(path), line_no))
        for problem in reader.problems:
            if problem.message.startswith(TOLERATED_PROBLEMS):
                traces.warnings.append(f"{problem} (ignored)")
            else:
                raise CheckInputError(str(problem))
        traces.headers.append(reader.header)
        per_file.append((records, where, trace_origin_ns(reader.header, records)))
    origins = [origin for _, _, origin in per_file if origin is not None]
    base = min(origins) if origins else 0
    merged: list[tuple[int, int, int, dict[str, Any], tuple[str, int]]] = []
    for file_index, (records, where, origin) in enumerate(per_file):
        if origin is None and len(paths) > 1:
            traces.warnings.append(f"{paths[file_index]}: no wall times; aligned at the start of the earliest trace")
        shift = 0 if origin is None else origin - base
        for seq, (rec, loc) in enumerate(zip(records, where, strict=True)):
            t = int(round(rec["t"])) + shift
            merged.append((t, file_index, seq, {**rec, "t": t}, loc))
    merged.sort(key=lambda m: (m[0], m[1], m[2]))
    traces.records = [m[3] for m in merged]
    traces.where = [m[4] for m in merged]
    return traces


def placing_accounts(records: Iterable[dict[str, Any]]) -> list[str]:
    """Accounts that placed orders, in order of first placement (exchange events)."""
    seen: dict[str, None] = {}
    for rec in records:
        if rec.get("kind") != "event" or rec.get("type") not in ("CommandSubmitted", "OrderStatusChanged"):
            continue
        data = rec.get("data")
        if not isinstance(data, dict):
            continue
        if rec["type"] == "CommandSubmitted" and data.get("command") not in PLACE_COMMANDS:
            continue
        account = data.get("account")
        if isinstance(account, str) and account:
            seen.setdefault(account, None)
    return list(seen)


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(EXIT_BAD_INPUT)


@click.command("check")
@click.argument("traces", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--scenario", "scenario_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Scenario whose [expect] thresholds and check parameters judge the run. Default: the "
                   "scenario named in the trace header (`serve --scenario` writes its path) when that file "
                   "exists; without one, the default thresholds: every check is judged and must hold.")
@click.option("--account", default=None, metavar="NAME",
              help="Account whose orders are judged. Default: the scenario's bot.account; without a "
                   "scenario, the only account that placed orders in the trace.")
@click.option("--policy", default=None, metavar="P",
              help=f"Expect the scenario's [expect.policy.P] verdicts ({POLICY_HELP}). Default: the policy "
                   "named in a trace header (a `run --trace` trace names one), else none: every judged "
                   "check must hold.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the checks, figures and verdict to this JSON file (the shape of `run --json`).")
@click.option("--timeline/--no-timeline", default=True, help="Print the messages around the first violation.")
def check(traces: tuple[Path, ...], scenario_path: Path | None, account: str | None, policy: str | None,
          json_path: Path | None, timeline: bool) -> None:
    """Judge a run from its TRACE files: e.g. `valr-replay serve --scenario S --trace T` driven by
    a connector in its own process.

    The server's trace gives the exchange's view: the server-side checks (open orders,
    duplicate customerOrderIds, nothing open after shutdown) judge any connector. A trace the
    connector wrote with client ORDER_STATE records (the reference connector's `trace`
    option) adds the client-side checks (false cancels, orphans, ...); give both files, they
    are merged by wall time. Without client records those checks are not judged.

    Prints the same table as `run`. Exit status: 0 when every check came out as the
    scenario expects (for --policy P, its expected violations), 1 when one did not, 2 for
    bad input (a missing or corrupt trace, named with its line; a bad scenario).
    """
    from .checks import CheckSpec, run_checks
    from .connector.policies import parse_policy
    from .runner import RunResult, check_spec
    from .scenario import Scenario, ScenarioError, load_scenario

    console = Console(stderr=True, highlight=False)
    out = Console()
    began = time.perf_counter()
    try:
        loaded = load_traces(list(traces))
    except CheckInputError as exc:
        _fail(str(exc))
    for warning in loaded.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", markup=True)

    named = loaded.header_value("scenario_path")
    scenario: Scenario | None = None
    try:
        if scenario_path is not None:
            scenario = load_scenario(scenario_path)
        elif named and Path(named).is_file():
            scenario = load_scenario(named)
            console.print(f"scenario from the trace header: {named}")
    except ScenarioError as exc:
        _fail(str(exc))
    if scenario is None:
        if named:
            console.print(f"[yellow]the trace names scenario {named}, which does not exist here[/yellow]")
        console.print("no scenario: default thresholds (every check is judged and must hold). "
                      "Pass --scenario FILE to judge against its [expect].")

    policy = policy or loaded.header_value("policy")
    if policy is not None:
        try:
            parse_policy(policy)
        except ValueError as exc:
            _fail(f"--policy: {exc}")

    placed = placing_accounts(loaded.records)
    if account is None:
        if scenario is not None:
            account = scenario.bot.account
        elif len(placed) == 1:
            account = placed[0]
        elif len(placed) > 1:
            _fail(f"{', '.join(map(str, traces))}: several accounts placed orders ({', '.join(placed)}); "
                  "pick one with --account NAME")
        else:
            account = CheckSpec().account
            console.print(f"no account placed an order in the trace; judging account {account!r}")
    if placed and account not in placed:
        console.print(f"[yellow]account {account!r} placed no order in the trace "
                      f"(accounts that did: {', '.join(placed)})[/yellow]")

    spec = check_spec(scenario) if scenario is not None else CheckSpec()
    spec.account = account
    try:
        results = run_checks(loaded.records, spec)
    except ValueError as exc:
        message = str(exc)
        found = re.match(r"record (\d+)\b", message)
        if found and int(found.group(1)) < len(loaded.where):
            file, line = loaded.where[int(found.group(1))]
            message = f"{file}:{line}: {message}"
        _fail(message)

    name = scenario.name if scenario is not None else (loaded.header_value("scenario") or traces[0].name)
    seed = loaded.header_value("seed", int)
    if seed is None and scenario is not None:
        seed = scenario.seed
    expected = list(scenario.expected_violations.get(policy, [])) if scenario is not None and policy else []
    result = RunResult(
        scenario=scenario if scenario is not None else Scenario(path=traces[0], name=name),
        policy=policy or "(no policy)",
        seed=seed if seed is not None else 0,
        checks=results,
        expected_violations=expected,
        sim_seconds=loaded.span_s,
        wall_seconds=time.perf_counter() - began,
        trace_path=traces[0],
        connector=loaded.header_value("connector") or "(from the trace)",
        policy_applies=policy is not None,
    )
    client = sum(1 for r in loaded.records if r.get("kind") == "client" and r.get("type") == "ORDER_STATE")
    verdict = "[green]as expected[/green]" if result.as_expected else "[red]NOT as expected[/red]"
    shown_seed = seed if seed is not None else "?"
    console.print(f"[bold]{name}[/bold] account={account} policy={policy or '-'} seed={shown_seed}", markup=True)
    console.print(f"  {len(traces)} trace(s), {len(loaded.records)} records over {loaded.span_s:.1f} s; "
                  + ("client-side checks judged" if client else
                     "client-side checks not judged (no client ORDER_STATE records: give the connector's trace too)"))
    console.print(f"  {verdict}" + (f" (unexpected: {', '.join(result.unexpected)})" if result.unexpected else ""),
                  markup=True)
    print_table(out, [result], timeline, title=f"{name} (seed {shown_seed})")
    row = result.to_json()
    again = ["valr-replay check", *(shlex.quote(str(t)) for t in traces), "--account", shlex.quote(account)]
    if scenario is not None:
        again += ["--scenario", shlex.quote(str(scenario.path))]
    if policy is not None:
        again += ["--policy", shlex.quote(policy)]
    row.update(path=str(scenario.path) if scenario is not None else None, policy=policy, seed=seed,
               account=account, traces=[str(p) for p in traces], reproduce=" ".join(again))
    finish(console, [result], json_path, [row])
