"""Seed sweeps (``valr-replay run --seeds N``): "a number for the fix works".

One scenario under one connector and policy, run under N seeds, gives a count of runs in which a
check was violated, and from it the failure rate with an exact one-sided 95 % upper confidence bound
(Clopper-Pearson): zero failures in 500 runs means the rate is below 0.6 %, with 95 % confidence.

The pure parts live here (no I/O): the binomial bound, the tally of run summaries per label and the
wording of the numbers. :func:`run_one` is the task a worker runs (in this process, in a local worker
process or on a Dask cluster: replay/workers.py): one run, returned as a small picklable
:class:`RunSummary` rather than the run's records.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

#: the confidence of the bound: one-sided 95 %
CONFIDENCE = 0.95


# --- the bound --------------------------------------------------------------------------------------


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (no overflow for large n)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    lg_n = math.lgamma(n + 1)
    terms = [lg_n - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
             for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * math.fsum(math.exp(t - top) for t in terms))


def upper_bound(failures: int, n: int, confidence: float = CONFIDENCE) -> float:
    """The exact (Clopper-Pearson) one-sided upper confidence bound of a failure rate: the p at which
    seeing ``failures`` or fewer in ``n`` runs has probability ``1 - confidence``.

    0 failures: ``1 - alpha**(1/n)`` (0/500: 0.00597); n failures: 1. Otherwise by bisection on the
    binomial CDF, which falls as p rises."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0 <= failures <= n:
        raise ValueError(f"failures must be in 0..{n}, got {failures}")
    alpha = 1.0 - confidence
    if failures == n:
        return 1.0
    if failures == 0:
        return 1.0 - alpha ** (1.0 / n)
    lo, hi = failures / n, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if binom_cdf(failures, n, mid) > alpha:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15:
            break
    return hi


# --- wording ----------------------------------------------------------------------------------------


def _percent(fraction: float, *, round_up: bool = False) -> str:
    """``0.00597 -> "0.6"`` (two significant figures, no exponent); ``round_up`` for a bound, so the
    figure shown is never below the bound it stands for."""
    value = fraction * 100
    if value <= 0:
        return "0"
    if value >= 10:
        shown = math.ceil(value - 1e-9) if round_up else round(value)
        return f"{shown:.0f}"
    scale = 10 ** (1 - math.floor(math.log10(value)))  # two significant figures
    shown = math.ceil(value * scale - 1e-9) / scale if round_up else round(value * scale) / scale
    text = f"{shown:.{max(0, int(round(math.log10(scale))))}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def describe_rate(failures: int, n: int, confidence: float = CONFIDENCE) -> str:
    """The failure rate in words: ``"below 0.6 %"`` for 0/500, ``"1.2 % (95 % bound 2.5 %)"`` otherwise."""
    if n < 1:
        return "-"
    bound = _percent(upper_bound(failures, n, confidence), round_up=True)
    if failures == 0:
        return f"below {bound} %"
    return f"{_percent(failures / n)} % ({confidence * 100:.0f} % bound {bound} %)"


# --- one run ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    held: bool | None
    message: str
    #: the record index and run time (s) of the first violation, when there was one
    first_index: int | None = None
    first_t_s: float | None = None


@dataclass(frozen=True)
class RunSummary:
    """One run of a sweep, small enough to send back from a worker."""

    label: str
    seed: int
    violated: tuple[str, ...]
    as_expected: bool
    unexpected: tuple[str, ...]
    reproduce: str
    checks: tuple[CheckOutcome, ...]
    wall_seconds: float
    #: why the run could not be carried out (then there are no checks)
    error: str | None = None

    @property
    def failed(self) -> bool:
        """A check was violated (whatever the scenario expects)."""
        return bool(self.violated)

    def row(self) -> dict[str, Any]:
        """The run as a compact JSON row of a sweep."""
        out: dict[str, Any] = {"seed": self.seed, "violated": list(self.violated), "as_expected": self.as_expected,
                               "unexpected": list(self.unexpected), "wall_seconds": round(self.wall_seconds, 3)}
        if self.error is not None:
            out["error"] = self.error
        return out


def run_one(scenario: Any, policy: str, seed: int, connector: str, expect_hold: bool, virtual: bool = True,
            label: str = "", cwd: str | None = None) -> RunSummary:
    """The worker task: run ``scenario`` once (``replay.runner.run_scenario``) and summarise it.

    ``cwd`` is the submitter's directory: a worker process may have been started elsewhere, and a
    connector ``module:attr`` and a relative scenario path mean what they mean where the sweep was
    started (the reproduce command keeps the path as given)."""
    from .importing import importable_from
    from .runner import RunError, run_scenario

    run_as = scenario
    importable_from(cwd)
    if cwd is not None:
        if not Path(scenario.path).is_absolute() and os.getcwd() != cwd:
            run_as = dataclasses.replace(scenario, path=Path(cwd) / scenario.path)
    try:
        result = run_scenario(run_as, policy, seed, virtual=virtual, connector=connector, expect_hold=expect_hold)
    except RunError as exc:
        return not_run(scenario, policy, seed, connector, expect_hold, label, str(exc))
    result = dataclasses.replace(result, scenario=scenario, records=[])
    checks = tuple(
        CheckOutcome(c.name, c.held, c.message,
                     (c.first_violation or {}).get("index"), (c.first_violation or {}).get("t_s"))
        for c in result.checks)
    return RunSummary(label=label or result.label, seed=seed, violated=tuple(result.violated),
                      as_expected=result.as_expected, unexpected=tuple(result.unexpected),
                      reproduce=result.reproduce, checks=checks, wall_seconds=result.wall_seconds)


def not_run(scenario: Any, policy: str, seed: int, connector: str, expect_hold: bool, label: str,
            error: str) -> RunSummary:
    """The summary of a run that could not be carried out (no checks), with its reproduce command."""
    from .runner import reproduce_command

    return RunSummary(label=label, seed=seed, violated=(), as_expected=False, unexpected=(),
                      reproduce=reproduce_command(scenario, policy, seed,
                                                  connector if connector != scenario.bot.connector else None,
                                                  expect_hold=expect_hold),
                      checks=(), wall_seconds=0.0, error=error)


# --- tallies ----------------------------------------------------------------------------------------


@dataclass
class Tally:
    """The runs of one scenario under one connector and policy (a label), whatever order they came in."""

    scenario: str
    label: str
    connector: str
    policy: str | None
    runs: list[RunSummary] = field(default_factory=list)

    def add(self, summary: RunSummary) -> None:
        bisect.insort(self.runs, summary, key=lambda r: r.seed)

    @property
    def errors(self) -> list[RunSummary]:
        """Runs that could not be carried out."""
        return [r for r in self.runs if r.error is not None]

    @property
    def n(self) -> int:
        """Runs carried out (the denominator of the rate)."""
        return len(self.runs) - len(self.errors)

    @property
    def failing(self) -> list[RunSummary]:
        return [r for r in self.runs if r.failed]

    @property
    def failures(self) -> int:
        return len(self.failing)

    @property
    def as_expected(self) -> int:
        return sum(r.as_expected for r in self.runs)

    @property
    def rate(self) -> float | None:
        return self.failures / self.n if self.n else None

    @property
    def upper_95(self) -> float | None:
        return upper_bound(self.failures, self.n) if self.n else None

    @property
    def by_check(self) -> dict[str, int]:
        """Violated checks and in how many runs, most frequent first."""
        counts = Counter(name for r in self.runs for name in r.violated)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    @property
    def described(self) -> str:
        return describe_rate(self.failures, self.n)

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "label": self.label, "connector": self.connector, "policy": self.policy,
                "n": self.n, "failures": self.failures, "as_expected": self.as_expected,
                "not_as_expected": len(self.runs) - self.as_expected, "errors": len(self.errors),
                "rate": self.rate, "upper_95": self.upper_95, "rate_text": self.described,
                "by_check": self.by_check, "failing_seeds": [r.seed for r in self.failing],
                "not_as_expected_seeds": [r.seed for r in self.runs if not r.as_expected]}

    def rows(self) -> list[dict[str, Any]]:
        """Every run as a compact row naming its scenario and label (the sweep's ``runs`` in the JSON)."""
        head = {"scenario": self.scenario, "label": self.label, "connector": self.connector, "policy": self.policy}
        return [{**head, **r.row(), "reproduce": r.reproduce} for r in self.runs]


def tally(keyed: Iterable[tuple[Any, RunSummary]], tallies: dict[Any, Tally]) -> dict[Any, Tally]:
    """Add ``(key, summary)`` pairs to the tallies named by key (made beforehand, in display order)."""
    for key, summary in keyed:
        tallies[key].add(summary)
    return tallies
