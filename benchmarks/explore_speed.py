"""``explore_rate``, ``time_to_find_naive``, ``time_to_find_age_guard``: the schedule explorer
(``valr-replay explore``) on scenarios/explore_base.toml, 10 s schedules.

* ``explore_rate``: schedules per minute on every core here (local worker processes), strategy
  ``feedback`` under ``reconcile`` (nothing to find, so the whole budget is spent). Baseline: the
  same schedules in this process, one after the other (``--workers 1``); ratio = the speed-up.
* ``time_to_find_naive``: wall seconds from the start (workers included) until a schedule shows the
  open-orders race under ``naive`` (a false cancel on ``open_orders_update:absent``).
* ``time_to_find_age_guard``: the same under ``age-guard:5``: a stale snapshot that fools the guard.
  Median over several explorer seeds (the search is seeded; each seed is one search); ``--quick``:
  one seed, and a search gives up at the goal.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from replay.explore import Explorer
from replay.explore_command import start_search
from replay.workers import RunPool, default_workers

from .common import Figure, pick, ratio

BASE = Path(__file__).resolve().parents[1] / "scenarios" / "explore_base.toml"


def _rate(workers: int, budget: int, seed: int) -> float:
    with RunPool(workers) as pool:
        search = start_search(BASE, "reconcile", seed=seed, pool=pool)
        search.search(budget, None, False, lambda: None)
        return search.runs / (time.perf_counter() - search.t0) * 60


def race_found(explorer: Explorer) -> bool:
    """A false cancel of an order the exchange still held, on an open-orders snapshot that lacked it."""
    return any(g.check == "false_cancels" and "open_orders_update:absent" in g.shape for g in explorer.groups.values())


def time_to_find(policy: str, seed: int, limit_s: float) -> tuple[float | None, int]:
    with RunPool(default_workers()) as pool:
        search = start_search(BASE, policy, seed=seed, pool=pool)
        search.search(None, limit_s, race_found, lambda: None)
        hits = [g.found_after_s for g in search.explorer.groups.values()
                if g.check == "false_cancels" and "open_orders_update:absent" in g.shape]
        return (min(hits) if hits else None), search.runs


def measure(size: str) -> list[Figure]:
    budget = pick(size, 16, 32, 300)
    workers = default_workers()
    rate = _rate(workers, budget, 0)
    serial = _rate(1, budget, 0)  # the same schedules (same seed and budget), one at a time
    out = [Figure("explore_rate", rate, "schedules / min", serial, ratio(rate, serial), ">= 300", rate >= 300,
                  note=f"{BASE.name} under reconcile, 10 s schedules, {workers} worker processes; baseline: "
                       "in-process, one at a time",
                  details={"budget": budget, "workers": workers})]
    # --quick: one explorer seed (an age-guard search takes 3-20 s), and a search stops at the goal (one
    # slower than the goal misses it either way); full: five seeds, up to 4x the goal
    for name, policy, goal_s, quick_seeds in (("time_to_find_naive", "naive", 10.0, [0]),
                                              ("time_to_find_age_guard", "age-guard:5", 120.0, [0])):
        seeds = pick(size, [0], quick_seeds, [0, 1, 2, 3, 4])
        limit = pick(size, 6.0, goal_s, 4 * goal_s)
        found = [time_to_find(policy, s, limit) for s in seeds]
        times = [t for t, _ in found if t is not None]
        value = statistics.median(times) if len(times) == len(found) else None
        missed = "" if value is not None else f"not found by every seed within {limit:g} s; "
        out.append(Figure(name, value, "s wall", None, None, f"<= {goal_s:g}", value is not None and value <= goal_s,
                          note=f"{missed}median over explorer seeds {seeds}, --policy {policy}, all cores",
                          details={"per_seed_s": [round(t, 2) if t is not None else None for t, _ in found],
                                   "schedules": [n for _, n in found], "limit_s": limit}))
    return out
