"""The schedule explorer's pure core: which schedules to try, what they covered, how to shrink one.

A *schedule* is everything that decides the order of events in a run of one scenario: the seed
(every latency draw), a set of ``[[perturb]]`` entries, the duration (when the shutdown falls) and,
while shrinking, the ``[latency]`` table. The explorer (``replay/explore_command.py``, the shell)
runs schedules in workers and feeds the outcomes back here; nothing in this module runs a scenario,
touches a file or reads a clock: every choice comes from one ``random.Random`` seeded by the user's
``--seed``, and candidates are generated a batch at a time from the state at the batch's start, so
one seed gives the same schedules whatever the number of workers.

Ideas, and where they come from:

* **Swarm testing** (FoundationDB's simulator, Groce et al.): each fresh schedule enables a random
  subset of the perturbation library, so faults that mask each other are also tried apart.
* **PCT** (probabilistic concurrency testing, as in Microsoft Coyote): the ``pct`` entry gives each
  message stream a random priority, with a few change points; low-priority streams are delivered
  later, so which deliverable message goes next is searched, not left to the latency draws.
* **Coverage feedback** (as in fuzzers): a schedule whose run showed a connector state transition
  (from, to, reason) or an ordering of two account-stream message types never seen before joins the
  corpus, and later schedules are mostly mutations of corpus members.
* **Shrinking** (as in QuickCheck and Erlang's PULSE): a counterexample is reduced, one deterministic
  re-run per step, to the fewest perturbations, the smallest parameters, the shortest duration and
  constant latencies that still violate the same check.

The library's parameters are bounded so that a correct connector can meet every check's default
threshold (placements and cancels resolved within 5 s, re-quotes within the refresh + 3 s): a
violation found inside those bounds is a bug in the connector, not a fault too large to survive.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

# --- schedules -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """One point of the search space. ``perturb`` entries are ``[[perturb]]`` tables, as JSON text
    (hashable, and exactly what is written back to a scenario file)."""

    seed: int
    perturb: tuple[str, ...] = ()
    duration_s: float = 10.0
    #: a replacement ``[latency]`` table (JSON), or None for the scenario's own
    latency: str | None = None
    #: how the schedule was made: ``base``, ``swarm``, ``mutate:add``, ``shrink:drop`` ...
    origin: str = "base"

    @property
    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(p) for p in self.perturb]

    def with_entries(self, entries: Iterable[dict[str, Any]], **changes: Any) -> "Schedule":
        return replace(self, perturb=tuple(_dump(e) for e in entries), **changes)

    def describe(self) -> str:
        """One line: the seed, duration and the perturbations' names."""
        names = ", ".join(entry_label(e) for e in self.entries) or "no perturbations"
        return f"seed {self.seed}, {self.duration_s:g} s, {names}"


def _dump(entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"))


def entry_label(entry: dict[str, Any]) -> str:
    """``delay PLACE_LIMIT_WS_RESPONSE``, ``resend_stale OPEN_ORDERS_UPDATE``, ``disconnect account``."""
    action = next((k for k in entry if k not in ("match", "name")), "?")
    match = entry.get("match", {})
    what = match.get("type") or match.get("route") or match.get("conn") or ""
    if isinstance(what, list):
        what = "/".join(what)
    return f"{action} {what}".strip()


# --- the perturbation library ----------------------------------------------------------------------

#: account-stream messages a perturbation may target (what a connector's order tracking reads)
ACCOUNT_TYPES = (
    "PLACE_LIMIT_WS_RESPONSE",
    "CANCEL_ORDER_WS_RESPONSE",
    "OPEN_ORDERS_UPDATE",
    "ORDER_STATUS_UPDATE",
    "ORDER_PROCESSED",
    "NEW_ACCOUNT_TRADE",
    "BALANCE_UPDATE",
)
#: the message types a place or cancel outcome can be learnt from (drops are limited to these + snapshots)
PLACE_ROUTE = "POST /v1/orders/limit"
CANCEL_ROUTE = "DELETE /v1/orders/order"


def _ms(value: float) -> str:
    """A duration as the scenario spelling, to the millisecond: ``"250ms"``."""
    return f"{max(0, round(value * 1000))}ms"


def _pick(rng: random.Random, options: tuple[Any, ...] | list[Any]) -> Any:
    return options[rng.randrange(len(options))]


@dataclass(frozen=True)
class Context:
    """What the generators need to know about the scenario under exploration."""

    duration_s: float = 10.0
    refresh_s: float = 1.0


def _delay_type(rng: random.Random, ctx: Context) -> dict[str, Any]:
    lo = rng.uniform(0.0, 0.3)
    hi = lo + rng.uniform(0.0, 0.6)
    entry: dict[str, Any] = {"match": {"type": _pick(rng, ACCOUNT_TYPES)}, "delay": {"by": f"{_ms(lo)}..{_ms(hi)}"}}
    if rng.random() < 0.5:
        entry["match"]["probability"] = _pick(rng, (0.2, 0.5))
    return entry


def _account_lag(rng: random.Random, ctx: Context) -> dict[str, Any]:
    # the whole account stream late by more than a 1 s reply timeout, for a while
    start = rng.uniform(0.0, max(0.5, ctx.duration_s - 1.0))
    lag = rng.uniform(1.05, 1.3)
    return {"match": {"conn": "account", "from": _ms(start), "until": _ms(start + rng.uniform(0.2, 3.0))},
            "delay": _ms(lag)}


def _hold_until(rng: random.Random, ctx: Context) -> dict[str, Any]:
    held = _pick(rng, ("PLACE_LIMIT_WS_RESPONSE", "ORDER_STATUS_UPDATE", "CANCEL_ORDER_WS_RESPONSE",
                       "ORDER_PROCESSED"))
    until = _pick(rng, tuple(t for t in ("OPEN_ORDERS_UPDATE", "ORDER_STATUS_UPDATE", "BALANCE_UPDATE",
                                         "ORDER_PROCESSED") if t != held))
    return {"match": {"type": held}, "hold_until": {"type": until, "max": _ms(rng.uniform(0.05, 0.9))}}


def _resend_stale(rng: random.Random, ctx: Context) -> dict[str, Any]:
    kind = "OPEN_ORDERS_UPDATE" if rng.random() < 0.8 else "ORDER_STATUS_UPDATE"
    # Half of the copies come soon after the fresh snapshot; half late, late in the life of the orders
    # it omits (a stalled pipeline): a copy that comes when they are old enough to pass any guard on
    # age, but before the refresh replaces them, is the dangerous one.
    if rng.random() < 0.5:
        after = rng.uniform(0.0, 1.0)
    else:
        after = rng.uniform(0.7, 1.0) * min(ctx.refresh_s, max(1.0, ctx.duration_s - 2.0))
    age = 0.0 if rng.random() < 0.5 else rng.uniform(0.0, 2.0)  # the newest older copy, or an older one
    table: dict[str, Any] = {"age": _ms(round(age, 1)), "after": _ms(round(after, 1))}
    if rng.random() < 0.5:
        table["probability"] = _pick(rng, (0.3, 0.5))
    return {"match": {"type": kind}, "resend_stale": table}


def _reorder(rng: random.Random, ctx: Context) -> dict[str, Any]:
    return {"match": {"conn": "account"}, "reorder": {"window": _ms(rng.uniform(0.01, 0.4))}}


def _duplicate(rng: random.Random, ctx: Context) -> dict[str, Any]:
    kind = _pick(rng, ("ORDER_STATUS_UPDATE", "OPEN_ORDERS_UPDATE", "NEW_ACCOUNT_TRADE", "PLACE_LIMIT_WS_RESPONSE",
                       "CANCEL_ORDER_WS_RESPONSE"))
    return {"match": {"type": kind, "probability": _pick(rng, (0.3, 1.0))},
            "duplicate": {"gap": _ms(rng.uniform(0.0, 0.5))}}


def _drop(rng: random.Random, ctx: Context) -> dict[str, Any]:
    kind = _pick(rng, ("OPEN_ORDERS_UPDATE", "ORDER_STATUS_UPDATE", "PLACE_LIMIT_WS_RESPONSE",
                       "CANCEL_ORDER_WS_RESPONSE", "ORDER_PROCESSED", "BALANCE_UPDATE"))
    return {"match": {"type": kind, "nth": rng.randint(1, 6)}, "drop": True}


def _disconnect(rng: random.Random, ctx: Context) -> dict[str, Any]:
    return {"match": {"conn": _pick(rng, ("account", "account", "trade"))},
            "disconnect": {"at": _ms(rng.uniform(0.5, max(1.0, ctx.duration_s - 0.5)))}}


def _engine_delay(rng: random.Random, ctx: Context) -> dict[str, Any]:
    entry: dict[str, Any] = {"match": {"conn": "engine", "type": _pick(rng, ("PLACE_LIMIT", "CANCEL_ORDER"))},
                             "delay": {"by": _ms(rng.uniform(0.005, 1.2))}}
    if rng.random() < 0.5:
        entry["match"]["probability"] = _pick(rng, (0.3, 0.5))
    return entry


def _http_error(rng: random.Random, ctx: Context) -> dict[str, Any]:
    return {"match": {"route": _pick(rng, (PLACE_ROUTE, CANCEL_ROUTE)), "nth": rng.randint(1, 4)},
            "http_error": _pick(rng, (429, 429, 500, 503))}


def _ws_error(rng: random.Random, ctx: Context) -> dict[str, Any]:
    # 429: refused for the write limit; 0: swallowed, never answered (the connector's reply timeout)
    return {"match": {"type": _pick(rng, ("PLACE_LIMIT_ORDER", "CANCEL_LIMIT_ORDER")), "nth": rng.randint(1, 4)},
            "ws_error": _pick(rng, (429, 429, 0))}


def _pct(rng: random.Random, ctx: Context) -> dict[str, Any]:
    return {"match": {"conn": "account"}, "pct": {"depth": rng.randint(1, 3), "window": _ms(rng.uniform(0.005, 0.1))}}


@dataclass(frozen=True)
class Kind:
    name: str
    make: Callable[[random.Random, Context], dict[str, Any]]


#: The perturbation library: what a swarm schedule draws from. ``shutdown`` is not an entry: it moves
#: the end of the run (the duration) next to a refresh, so the shutdown meets placements in flight.
LIBRARY: tuple[Kind, ...] = (
    Kind("delay", _delay_type),
    Kind("account_lag", _account_lag),
    Kind("hold_until", _hold_until),
    Kind("resend_stale", _resend_stale),
    Kind("reorder", _reorder),
    Kind("duplicate", _duplicate),
    Kind("drop", _drop),
    Kind("disconnect", _disconnect),
    Kind("engine_delay", _engine_delay),
    Kind("http_error", _http_error),
    Kind("ws_error", _ws_error),
    Kind("pct", _pct),
)
KINDS = {k.name: k for k in LIBRARY}
STRATEGIES = ("feedback", "swarm", "pct", "seeds")
STRATEGY_HELP = {
    "feedback": "swarm schedules and PCT, then mostly mutations of schedules that covered something new (default)",
    "swarm": "every schedule a fresh random subset of the library, no feedback",
    "pct": "PCT priorities only (with fresh seeds): which deliverable message goes next",
    "seeds": "fresh seeds only, no perturbations: the latency draws alone",
}
MAX_ENTRIES = 4
SWARM_P = 0.3  # about 3 of the 12 kinds per fresh schedule


def available(ctx: Context) -> list[Kind]:
    return list(LIBRARY)


def _shutdown_duration(rng: random.Random, ctx: Context) -> float:
    """A run that ends just after a refresh: quoting starts about a second in, then every refresh_s."""
    cycles = max(1, int((ctx.duration_s - 1.0) // max(ctx.refresh_s, 0.001)))
    k = rng.randint(1, cycles)
    return round(min(ctx.duration_s, 1.0 + k * ctx.refresh_s + rng.uniform(0.0, 0.03)), 3)


def make_entry(kind: Kind, rng: random.Random, ctx: Context) -> dict[str, Any]:
    """A library entry, named after its kind (the name shows in the trace's PERTURBATION records)."""
    return {"name": kind.name, **kind.make(rng, ctx)}


def swarm_schedule(rng: random.Random, ctx: Context, origin: str = "swarm") -> Schedule:
    """A fresh seed and a random subset of the library (each kind on with probability SWARM_P), at
    most MAX_ENTRIES entries; one time in five the run ends right after a refresh."""
    kinds = [k for k in available(ctx) if rng.random() < SWARM_P]
    rng.shuffle(kinds)
    entries = [make_entry(k, rng, ctx) for k in kinds[:MAX_ENTRIES]]
    duration = _shutdown_duration(rng, ctx) if rng.random() < 0.2 else ctx.duration_s
    return Schedule(seed=rng.randrange(1 << 31), duration_s=duration, origin=origin).with_entries(entries)


def pct_schedule(rng: random.Random, ctx: Context) -> Schedule:
    return Schedule(seed=rng.randrange(1 << 31), duration_s=ctx.duration_s, origin="pct").with_entries(
        [make_entry(KINDS["pct"], rng, ctx)])


def seed_schedule(rng: random.Random, ctx: Context) -> Schedule:
    return Schedule(seed=rng.randrange(1 << 31), duration_s=ctx.duration_s, origin="seed")


def mutate(rng: random.Random, ctx: Context, parent: Schedule) -> Schedule:
    """One small change to ``parent``: a new seed, one entry re-drawn, added or removed, or a new end."""
    entries = parent.entries
    ops = ["seed", "add", "duration"]
    if entries:
        ops += ["redraw", "remove"]
    if len(entries) >= MAX_ENTRIES:
        ops.remove("add")
    op = _pick(rng, ops)
    kinds = {k.name: k for k in available(ctx)}
    if op == "seed":
        return replace(parent, seed=rng.randrange(1 << 31), origin="mutate:seed")
    if op == "duration":
        duration = _shutdown_duration(rng, ctx) if rng.random() < 0.7 else ctx.duration_s
        return replace(parent, duration_s=duration, origin="mutate:duration")
    if op == "add":
        entries.append(make_entry(_pick(rng, list(kinds.values())), rng, ctx))
        return parent.with_entries(entries, origin="mutate:add")
    i = rng.randrange(len(entries))
    if op == "remove":
        del entries[i]
        return parent.with_entries(entries, origin="mutate:remove")
    kind = kinds.get(str(entries[i].get("name"))) or _pick(rng, list(kinds.values()))
    entries[i] = make_entry(kind, rng, ctx)
    return parent.with_entries(entries, seed=rng.randrange(1 << 31) if rng.random() < 0.3 else parent.seed,
                               origin="mutate:redraw")


# --- outcomes, coverage and counterexamples --------------------------------------------------------


@dataclass
class Outcome:
    """What the explorer keeps of one run (small and picklable: it comes back from a worker)."""

    violated: list[str]
    #: check -> (shape, message, time of the first violation in s)
    first: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    features: frozenset[str] = frozenset()
    perturbations: dict[str, int] = field(default_factory=dict)
    sim_seconds: float = 0.0
    wall_seconds: float = 0.0
    #: the run could not be carried out (a bad generated entry, a connector that did not start)
    error: str | None = None


# an id: a uuid, a hex run, or any token of 8+ letters, digits and hyphens with a digit in it
_ID = re.compile(r"…[0-9a-f]+|\b(?=[A-Za-z-]*\d)[A-Za-z0-9-]{8,}\b")
_NUMBER = re.compile(r"\d+(\.\d+)?")


def violation_shape(record: dict[str, Any], what: str) -> str:
    """What a first violation looks like, without ids or numbers: the record that violated (a
    client transition with its reason, or the message type) and the check's sentence."""
    raw = record.get("data")
    data = raw if isinstance(raw, dict) else {}
    kind, rtype = record.get("kind", "?"), record.get("type", "?")
    if kind == "client" and rtype == "ORDER_STATE":
        head = f"client {data.get('from')}->{data.get('to')} ({data.get('reason')})"
    else:
        head = f"{kind} {rtype}"
    text = _NUMBER.sub("N", _ID.sub("<id>", what))
    return f"{head}: {text}"


def coverage_features(records: Iterable[dict[str, Any]]) -> frozenset[str]:
    """Connector state transitions ``T from>to (reason)`` and orderings of two consecutive messages
    delivered on one account connection ``O A>B``."""
    out: set[str] = set()
    last: dict[str, str] = {}
    for r in records:
        kind = r.get("kind")
        if kind == "client" and r.get("type") == "ORDER_STATE":
            d = r.get("data") or {}
            reason = _ID.sub("<id>", str(d.get("reason") or ""))
            out.add(f"T {d.get('from')}>{d.get('to')} ({reason})")
        elif kind == "ws" and r.get("dir") == "in":
            conn = str(r.get("conn", ""))
            stream = conn.split("-")[0]
            if stream != "account":
                continue
            t = str(r.get("type"))
            prev = last.get(conn)
            if prev is not None:
                out.add(f"O {prev}>{t}")
            last[conn] = t
    return frozenset(out)


@dataclass
class Counterexample:
    """Every schedule that violated ``check`` with the same first-violation shape."""

    check: str
    shape: str
    message: str
    schedule: Schedule
    found_at: int  # schedule number (1-based)
    found_after_s: float
    count: int = 1
    #: set once shrunk
    minimal: Schedule | None = None
    minimal_violated: list[str] = field(default_factory=list)
    minimal_message: str = ""
    shrink_runs: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.check, self.shape)


class Explorer:
    """The search state: feed it outcomes, ask it for the next batch of schedules."""

    def __init__(self, ctx: Context, seed: int, strategy: str = "feedback", base: Schedule | None = None,
                 checks: Iterable[str] = ()):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
        self.ctx = ctx
        self.seed = seed
        self.strategy = strategy
        self.rng = random.Random(seed)
        self.base = base or Schedule(seed=0, duration_s=ctx.duration_s)
        self.corpus: list[Schedule] = []
        self.coverage: set[str] = set()
        self.groups: dict[tuple[str, str], Counterexample] = {}
        self.tried: set[Schedule] = set()
        self.runs = 0
        self.errors: list[tuple[Schedule, str]] = []
        #: only violations of these checks are counterexamples (empty: every check)
        self.checks = frozenset(checks)
        self._started = False

    # candidates
    def next_batch(self, n: int) -> list[Schedule]:
        out: list[Schedule] = []
        if not self._started:
            self._started = True
            out.append(self.base)
        attempts = 0
        while len(out) < n and attempts < 50 * n:
            attempts += 1
            s = self._one()
            if s in self.tried or s in out:
                continue
            out.append(s)
        self.tried.update(out)
        return out

    def _one(self) -> Schedule:
        rng, ctx = self.rng, self.ctx
        if self.strategy == "seeds":
            return seed_schedule(rng, ctx)
        if self.strategy == "pct":
            return pct_schedule(rng, ctx)
        if self.strategy == "swarm" or not self.corpus or rng.random() < 0.3:
            return pct_schedule(rng, ctx) if rng.random() < 0.15 else swarm_schedule(rng, ctx)
        # favour recent corpus entries: they found the newest behaviour
        k = len(self.corpus)
        i = min(k - 1, int(k * math.sqrt(rng.random())))
        return mutate(rng, ctx, self.corpus[i])

    # feedback
    def record(self, number: int, schedule: Schedule, outcome: Outcome, elapsed_s: float) -> list[Counterexample]:
        """Take one run's outcome (in schedule order); returns counterexample groups it opened."""
        self.runs += 1
        if outcome.error is not None:
            self.errors.append((schedule, outcome.error))
            return []
        new = outcome.features - self.coverage
        if new:
            self.coverage |= new
            self.corpus.append(schedule)
        opened = []
        for check in outcome.violated:
            if self.checks and check not in self.checks:
                continue
            shape, message, _ = outcome.first.get(check, ("?", "", 0.0))
            key = (check, shape)
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = Counterexample(check, shape, message, schedule, number, elapsed_s)
                opened.append(group)
            else:
                group.count += 1
                # keep the simplest example: fewest entries, then the shortest
                if (len(schedule.perturb), schedule.duration_s) < (len(group.schedule.perturb),
                                                                   group.schedule.duration_s):
                    group.schedule = schedule
        return opened

    def coverage_counts(self) -> tuple[int, int]:
        """(connector transitions, message orderings) seen so far."""
        transitions = sum(1 for f in self.coverage if f.startswith("T "))
        return transitions, len(self.coverage) - transitions

    def by_check(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for g in self.groups.values():
            out[g.check] = out.get(g.check, 0) + g.count
        return out


def representative_groups(groups: Iterable[Counterexample], limit: int) -> list[Counterexample]:
    """The groups worth shrinking: one per check first (the earliest found), then the rest by count."""
    ordered = sorted(groups, key=lambda g: g.found_at)
    chosen: list[Counterexample] = []
    seen: set[str] = set()
    for g in ordered:
        if g.check not in seen:
            chosen.append(g)
            seen.add(g.check)
    for g in sorted(ordered, key=lambda g: -g.count):
        if g not in chosen:
            chosen.append(g)
    return chosen[:limit]


# --- shrinking -----------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m)?\s*$")
_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, None: 1.0}
#: action-table keys whose value is an amount of time a shrink step may make smaller
_TIME_KEYS = ("by", "max", "age", "after", "gap", "window", "at", "until", "from")
RESEEDS = 4  # other seeds tried with each dropped perturbation
SHRINK_DURATIONS = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0)


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNIT[m.group(2)]
    return None


def _range(value: Any) -> tuple[float, float] | None:
    if isinstance(value, str) and ".." in value:
        lo, hi = value.split("..", 1)
        a, b = _seconds(lo), _seconds(hi)
        if a is not None and b is not None:
            unit = _DURATION.match(hi)
            if unit and not _DURATION.match(lo).group(2) and unit.group(2):  # type: ignore[union-attr]
                a = float(lo) * _UNIT[unit.group(2)]
            return a, b
    return None


def _smaller_times(value: Any) -> list[Any]:
    """Simpler spellings of a time value, simplest first: a range's bounds as constants, then
    zero, a quarter, a half and a round tenth of a second below a constant."""
    r = _range(value)
    if r is not None:
        lo, hi = r
        return [_ms(lo), _ms((lo + hi) / 2), _ms(hi)]
    s = _seconds(value)
    if s is None or s <= 0:
        return []
    out = []
    for c in (0.0, s / 4, s / 2, math.floor(s * 10) / 10):
        c = round(c, 3)
        if c < s and _ms(c) not in out:
            out.append(_ms(c))
    return out


def entry_simplifications(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Each entry one step simpler: each time parameter smaller, a range made constant.

    ``match`` is left alone: dropping its ``nth``, ``probability`` or time window would make the
    fault *broader* (every cancel refused instead of the third), a different and often hopeless
    schedule, not a smaller version of the one that failed."""
    out: list[dict[str, Any]] = []
    action = next((k for k in entry if k not in ("match", "name")), None)
    if action is None:
        return out
    value = entry[action]
    if isinstance(value, dict):
        for key in _TIME_KEYS:
            if key in value:
                for smaller in _smaller_times(value[key]):
                    e = copy.deepcopy(entry)
                    e[action][key] = smaller
                    out.append(e)
    elif action in ("delay", "reorder"):  # a bare duration (ws_error = 429 or drop = true is not one)
        for smaller in _smaller_times(value):
            e = copy.deepcopy(entry)
            e[action] = smaller
            out.append(e)
    return out


def latency_simplifications(latency: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``[latency]`` one key at a time with a range made constant (its lower bound, then its middle)."""
    out: list[tuple[str, dict[str, Any]]] = []
    for key, value in latency.items():
        targets: list[tuple[str | None, Any]] = []
        if isinstance(value, dict):
            targets = [(sub, v) for sub, v in value.items()]
        else:
            targets = [(None, value)]
        for sub, v in targets:
            r = _range(v)
            if r is None:
                continue
            for const in (_ms(r[0]), _ms((r[0] + r[1]) / 2)):
                new = copy.deepcopy(latency)
                if sub is None:
                    new[key] = const
                else:
                    new[key][sub] = const
                out.append((f"latency.{key}{'.' + sub if sub else ''} = {const}", new))
    return out


def shrink_candidates(s: Schedule, base_latency: dict[str, Any]) -> list[tuple[str, list[Schedule]]]:
    """The shrink passes, in order; within a pass the first candidate that still fails wins.

    1. drop one perturbation; 2. the same with another seed; 3. a shorter run; 4. a latency range made
    constant; 5. one entry's parameters simpler. The driver restarts from the
    first pass after each step that made progress, until none does (or its run budget is spent)."""
    entries = s.entries
    passes: list[tuple[str, list[Schedule]]] = []
    passes.append(("drop a perturbation", [
        s.with_entries(entries[:i] + entries[i + 1:], origin="shrink:drop") for i in range(len(entries))]))
    # Every random draw comes from one generator: without an entry the later draws fall differently,
    # and the race may need other latencies to show. So also try each drop with a few other seeds.
    passes.append(("drop a perturbation, other seeds", [
        s.with_entries(entries[:i] + entries[i + 1:], seed=random.Random(s.seed * 1_000_003 + i * 31 + k)
                       .randrange(1 << 31), origin="shrink:drop-reseed")
        for i in range(len(entries)) for k in range(1, RESEEDS + 1)]))
    passes.append(("shorter", [replace(s, duration_s=d, origin="shrink:duration")
                               for d in SHRINK_DURATIONS if d < s.duration_s]))
    latency = json.loads(s.latency) if s.latency is not None else base_latency
    passes.append(("constant latency", [
        replace(s, latency=_dump(new), origin="shrink:latency") for _, new in latency_simplifications(latency)]))
    simpler: list[Schedule] = []
    for i, e in enumerate(entries):
        for e2 in entry_simplifications(e):
            simpler.append(s.with_entries(entries[:i] + [e2] + entries[i + 1:], origin="shrink:params"))
    passes.append(("simpler parameters", simpler))
    return passes


def _keys_and_time(value: Any) -> tuple[int, float]:
    """Parameters in an entry, and the seconds its time values add up to (a range counts as its
    upper bound plus its width, so either bound or the middle as a constant is smaller)."""
    if isinstance(value, dict):
        keys, total = 0, 0.0
        for v in value.values():
            k, t = _keys_and_time(v)
            keys, total = keys + 1 + k, total + t
        return keys, total
    r = _range(value)
    if r is not None:
        return 0, r[1] + (r[1] - r[0])
    return 0, _seconds(value) or 0.0 if isinstance(value, str) else 0.0


def size(s: Schedule, base_latency: dict[str, Any]) -> tuple[int, int, float, int, float]:
    """How big a schedule is, for "did shrinking make progress": entries, parameters, duration,
    latency ranges, then the total of its time parameters."""
    latency = json.loads(s.latency) if s.latency is not None else base_latency
    keys, total = 0, 0.0
    for e in s.entries:
        k, t = _keys_and_time(e)
        keys, total = keys + k, total + t
    ranges = len(latency_simplifications(latency))
    return (len(s.perturb), keys, s.duration_s, ranges, round(total, 6))


# --- the written reproduction ----------------------------------------------------------------------


def scenario_doc(base_doc: dict[str, Any], s: Schedule, *, policy: str | None, connector: str | None,
                 name: str | None = None, description: str | None = None) -> dict[str, Any]:
    """The base scenario's document with this schedule in it: a file ``valr-replay run`` takes."""
    doc = copy.deepcopy(base_doc)
    head = doc.setdefault("scenario", {})
    if name is not None:
        head["name"] = name
    if description is not None:
        head["description"] = description
    head["seed"] = s.seed
    head["duration"] = _ms(s.duration_s) if s.duration_s < 10 and s.duration_s != int(s.duration_s) \
        else f"{s.duration_s:g}s"
    if s.latency is not None:
        doc["latency"] = json.loads(s.latency)
    entries = s.entries
    if entries:
        doc["perturb"] = entries
    else:
        doc.pop("perturb", None)
    bot = doc.setdefault("bot", {})
    if policy is not None:
        bot["policy"] = policy
    if connector is not None:
        bot["connector"] = connector
    expect = doc.get("expect")
    if isinstance(expect, dict):
        # the exploration judges by the base [expect]: every check must hold
        expect.pop("policy", None)
        expect.pop("connector", None)
    return doc
