"""When each outbound message is delivered (pure, seeded).

A message's latency is the time between the moment the server *produced* it (an exchange
event, a command reply) and the moment it is *written* to the socket. VALR's reply path
and its open-orders snapshot builder are separate internal pipelines, so messages of
different types on one connection may overtake each other: that is the race under study
(a snapshot built before an order reached the book, delivered after the order's ack).
Messages of the SAME type on the same connection stay in production order
(deliver_at = max(drawn, last deliver_at of that type on that connection)); only a
``reorder`` perturbation breaks that. Ties are broken by sequence number.

Besides outbound messages the schedule decides the faults of inbound traffic: which REST
requests get an error instead of an answer (``http_fault``, the ``http_error`` action) and
which account-WebSocket commands get VALR's rate-limit reply instead of being executed
(``ws_command_fault``, the ``ws_error`` action). The ``pct`` action is a PCT-style
(probabilistic concurrency testing, as in Coyote) delivery strategy: each matching stream
(connection kind + message type) has a random priority, lower-priority streams are delivered
later, and at ``depth - 1`` random points the top stream is demoted (see :class:`Pct`).
``[[ordering]]`` constraints (:class:`Ordering`) time one message about an order exactly a gap after
another about the same order (a snapshot omitting the pending order, then its placement reply).

Everything here is driven by the caller's timestamps (loop seconds); there is no clock,
no asyncio and no socket. Every random draw comes from one ``random.Random(seed)``,
consumed in call order, so the same seed and the same sequence of calls give the same
schedule. See scenarios/README.md for the scenario spelling of all of this.
"""

from __future__ import annotations

import copy
import itertools
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, NamedTuple, Sequence

from sortedcontainers import SortedList

from .latency import (
    ZERO,
    Distribution,
    LatencyModel,
    RoutePattern,
    SpecError,
    conn_kind,
    parse_distribution,
    parse_duration,
)

__all__ = [
    "Applied",
    "Delay",
    "Delivery",
    "DeliverySchedule",
    "Disconnect",
    "Drop",
    "Duplicate",
    "HoldUntil",
    "HttpError",
    "HttpFault",
    "LatencyModel",
    "Match",
    "ORDER_MESSAGE_TYPES",
    "ORDERING_CONDITIONS",
    "ORDERING_UNMET",
    "Ordering",
    "Pct",
    "Perturbation",
    "PREDICATES",
    "Reorder",
    "ResendStale",
    "SpecError",
    "WS_COMMAND_TYPES",
    "WsCommandFault",
    "WsError",
    "check_orderings",
    "ordering_from_spec",
    "orderings_from_spec",
    "perturbation_from_spec",
]


@dataclass(frozen=True, order=True)
class Delivery:
    deliver_at: float
    seq: int
    conn: str = field(compare=False)
    kind: str = field(compare=False)  # "message" or "disconnect"
    msg_type: str = field(compare=False)
    message: Any = field(compare=False)


@dataclass(frozen=True)
class HttpFault:
    """Answer a REST request with ``status`` (429, 5xx) or, with status 0, never answer (a timeout)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WsCommandFault:
    """Answer an account-WebSocket command with VALR's rate-limit reply (status 429:
    ``RATE_LIMIT_EXCEEDED`` naming the command's type, with its ``clientMsgId``, as the server's
    own per-connection write limit answers) or, with status 0, swallow it unanswered (the client
    times out). Either way the command is not executed."""

    status: int


class Applied(NamedTuple):
    """One perturbation applied: the runner writes these into the trace."""

    now: float
    name: str
    conn: str
    msg_type: str


# --- matching ----------------------------------------------------------------------------

#: Predicates a ``match`` may name (no JSON paths: each is a fixed question about a message).
PREDICATES = {
    "mentions-order": "the message refers to at least one order id",
    "mentions-bot-order": "the message refers to an order the bot placed (an id seen in a "
    "PLACE_*_WS_RESPONSE, or passed to DeliverySchedule.note_order for REST placements)",
    "omits-pending-order": "an OPEN_ORDERS_UPDATE that lacks an order the bot placed which has "
    "been acknowledged but not yet seen in any later account message (the stale-snapshot race)",
    "book-diff": "a sequenced order-book diff (FULL_ORDERBOOK_UPDATE, OB_L1_DIFF): dropping one "
    "leaves a gap in the sequence numbers the client sees",
}
#: message types whose sequence numbers let a client detect a lost message
BOOK_DIFF_TYPES = frozenset({"FULL_ORDERBOOK_UPDATE", "OB_L1_DIFF"})

PLACE_REPLY_TYPES = frozenset({"PLACE_LIMIT_WS_RESPONSE", "PLACE_MARKET_WS_RESPONSE"})
#: the account-WebSocket write commands (the server's WS_RATE_KINDS): what ``ws_error`` matches
WS_COMMAND_TYPES = ("PLACE_LIMIT_ORDER", "PLACE_MARKET_ORDER", "CANCEL_LIMIT_ORDER", "MODIFY_ORDER", "BATCH_ORDERS")
_CONN_KINDS = ("account", "trade", "rest", "engine")


def _conn_matches(conn: str, pattern: str) -> bool:
    return conn == pattern or conn_kind(conn) == pattern


@dataclass(frozen=True)
class Match:
    """Which messages (or requests) a perturbation applies to. Empty fields match anything.

    ``nth`` counts, per perturbation and from 1, the messages that pass every other filter
    except ``probability``; ``probability`` is drawn last, only for those.
    ``from_s``/``until_s`` are seconds since the schedule's ``start``.
    """

    types: tuple[str, ...] = ()
    conns: tuple[str, ...] = ()
    nth: tuple[int, ...] = ()
    probability: float = 1.0
    from_s: float | None = None
    until_s: float | None = None
    predicate: str | None = None
    route: RoutePattern | None = None


@dataclass(frozen=True)
class Perturbation:
    match: Match = Match()
    name: str = ""
    kind: ClassVar[str] = ""
    #: message types the perturbation applies to when ``match`` names none
    default_types: ClassVar[tuple[str, ...]] = ()


@dataclass(frozen=True)
class Delay(Perturbation):
    """Add ``extra`` to the delivery time (REST: to the response; ``conn = "engine"``: to the engine)."""

    extra: Distribution = ZERO
    kind: ClassVar[str] = "delay"


@dataclass(frozen=True)
class HoldUntil(Perturbation):
    """Hold a message until a message of ``until_type`` is delivered on the same connection
    (it then follows right behind it), for at most ``max_s`` past its normal delivery time."""

    until_type: str = ""
    max_s: float = 5.0
    kind: ClassVar[str] = "hold_until"


@dataclass(frozen=True)
class Reorder(Perturbation):
    """Matching messages produced within ``window_s`` of the first (per connection) are held
    until the window closes and then delivered in a shuffled order."""

    window_s: float = 0.1
    kind: ClassVar[str] = "reorder"


@dataclass(frozen=True)
class Drop(Perturbation):
    kind: ClassVar[str] = "drop"


@dataclass(frozen=True)
class Duplicate(Perturbation):
    """Deliver the message twice, the copy ``gap`` after the original."""

    gap: Distribution = ZERO
    kind: ClassVar[str] = "duplicate"


@dataclass(frozen=True)
class ResendStale(Perturbation):
    """When a matching message is produced, also deliver the newest earlier message of the
    same type on the same connection that was produced at least ``age_s`` before, ``after``
    the triggering message's delivery."""

    age_s: float = 0.0
    after: Distribution = ZERO
    kind: ClassVar[str] = "resend_stale"
    default_types: ClassVar[tuple[str, ...]] = ("OPEN_ORDERS_UPDATE",)


@dataclass(frozen=True)
class Disconnect(Perturbation):
    """Close matching connections: at ``at_s`` since start, ``after_open_s`` after each opens,
    or (neither given) ``gap_s`` after each matching message is delivered."""

    at_s: float | None = None
    after_open_s: float | None = None
    gap_s: float = 0.0
    code: int | None = None  # WebSocket close code; None = the server's default
    kind: ClassVar[str] = "disconnect"

    def message(self) -> dict[str, int] | None:
        return None if self.code is None else {"code": self.code}

    @property
    def timed(self) -> bool:
        return self.at_s is not None or self.after_open_s is not None


@dataclass(frozen=True)
class HttpError(Perturbation):
    """Answer matching REST requests with ``status``: 429 (with ``x-valr-ratelimited``), 4xx/5xx,
    or 0 = never answer (a timeout)."""

    status: int = 429
    route: RoutePattern | None = None
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    kind: ClassVar[str] = "http_error"

    def fault(self) -> HttpFault:
        if self.status == 0:
            return HttpFault(0)
        headers = dict(self.headers)
        body = self.body
        if self.status == 429:
            # [INF] valr-protocol.md: 429 with `x-valr-ratelimited: true`; the body text is not
            # documented, so this one is a guess in VALR's {"code","message"} error shape.
            # Same spelling as replay.server.ratelimit's own 429.
            headers.setdefault("x-valr-ratelimited", "true")
            headers.setdefault("Retry-After", "1")
            if body is None:
                body = {"code": -1, "message": "Rate limit exceeded"}
        elif body is None:
            # [INF] VALR's 5xx/4xx bodies are undocumented; use its usual error shape.
            body = {"code": -1, "message": "Internal server error" if self.status >= 500 else "Bad request"}
        return HttpFault(self.status, body, headers)


@dataclass(frozen=True)
class WsError(Perturbation):
    """Answer matching account-WebSocket commands (``match.type`` names the inbound command:
    PLACE_LIMIT_ORDER, CANCEL_LIMIT_ORDER, ...; none = every write command) with VALR's
    rate-limit reply instead of executing them (status 429), or swallow them unanswered
    (status 0). See :class:`WsCommandFault`."""

    status: int = 429
    kind: ClassVar[str] = "ws_error"
    default_types: ClassVar[tuple[str, ...]] = WS_COMMAND_TYPES

    def fault(self) -> WsCommandFault:
        return WsCommandFault(self.status)


@dataclass(frozen=True)
class Pct(Perturbation):
    """PCT-style delivery (probabilistic concurrency testing, as in Microsoft Coyote).

    A *stream* is a connection kind and a message type (``account``/``ORDER_STATUS_UPDATE``),
    over every connection of that kind. Each matching stream is given a random place in a
    priority list when its first matching message is seen (inserted at a uniformly drawn
    position). A matching message gets ``window * rank / n`` of extra delivery delay, where
    ``rank`` is its stream's place in the list (0 = highest priority) and ``n`` the number of
    streams seen so far: messages of higher-priority streams overtake those of lower-priority
    ones. ``depth - 1`` change points are drawn when the schedule is built, distinct, uniformly
    from 1..``horizon`` (counted in matching messages); at each, before that message's delay is
    decided, the highest-priority stream is demoted to the lowest priority. Same-type FIFO per
    connection still holds: the reordering is between streams.

    Applied records: each change point as ``(now, name, <demoted stream's connection kind>,
    "PCT_CHANGE_POINT <its type>")``; each message that gets a non-zero extra delay as
    ``(now, name, conn, msg_type)``, like ``delay``.
    """

    depth: int = 3
    window_s: float = 0.05
    horizon: int = 200
    kind: ClassVar[str] = "pct"


KINDS: dict[str, type[Perturbation]] = {
    cls.kind: cls
    for cls in (Delay, HoldUntil, Reorder, Drop, Duplicate, ResendStale, Disconnect, HttpError, WsError, Pct)
}


# --- ordering constraints ----------------------------------------------------------------

#: Account-stream message types that refer to an order (``data.orderId``, ``data[*].orderId``,
#: ``data.additionalInfo.orderId``): what an ``[[ordering]]`` constraint's ``first`` and ``then`` may name.
ORDER_MESSAGE_TYPES = (
    "OPEN_ORDERS_UPDATE", "ORDER_STATUS_UPDATE", "ORDER_PROCESSED", "FAILED_ORDER", "FAILED_CANCEL_ORDER",
    "NEW_ACCOUNT_TRADE", "NEW_ACCOUNT_HISTORY_RECORD", "PLACE_LIMIT_WS_RESPONSE", "PLACE_MARKET_WS_RESPONSE",
    "CANCEL_ORDER_WS_RESPONSE", "MODIFY_ORDER_WS_RESPONSE", "MODIFY_ORDER_OUTCOME",
)
#: What an ordering's ``first_when`` may say about its first message A and an order X.
ORDERING_CONDITIONS = {
    "mentions-order": "A refers to X (data.orderId, data[*].orderId, data.additionalInfo.orderId)",
    "omits-order": "A is an OPEN_ORDERS_UPDATE whose list lacks X while X is acknowledged but not yet seen in any "
    "later account message (a snapshot built before X reached the book)",
}
#: The mark of an ordering's Applied record when its message went out without its first message
ORDERING_UNMET = "ORDERING_UNMET"


@dataclass(frozen=True)
class Ordering:
    """An ``[[ordering]]`` constraint: for each of the bot's orders X (or the ``orders``-th ones, counted from 1
    in placement order), the first message of type ``then`` about X on an account connection is delivered
    exactly ``gap_s`` after the message of type ``first`` for X (``first_when``: it refers to X, or, for
    OPEN_ORDERS_UPDATE, it omits X while X is pending) on that connection. A ``then`` message pushed before its
    ``first`` is held (without holding back later messages of its type) for at most ``max_wait_s`` past its own
    delivery time. See scenarios/README.md, ``[[ordering]]``."""

    first: str
    then: str
    first_when: str = "mentions-order"
    gap_s: float = 0.0
    orders: tuple[int, ...] = ()  # () = every order
    max_wait_s: float = 2.0
    name: str = ""

    def applies_to(self, number: int) -> bool:
        return not self.orders or number in self.orders


# --- the schedule ------------------------------------------------------------------------


@dataclass
class _Hold:
    conn: str
    awaited: str
    normal_at: float
    delivery: Delivery


@dataclass
class _Group:
    window_end: float
    conn: str
    items: list[tuple[float, int, float, str, Any]] = field(default_factory=list)  # key, seq, normal, type, msg


@dataclass
class _OrderingHold:
    """A message B held by ordering ``key[0]`` until its message A about order ``key[2]`` comes."""

    key: tuple[int, str, str]
    normal_at: float
    not_before: float
    delivery: Delivery
    firsts: list[tuple[int, str, str]]  # the constraints this message is the A of: settled with it


@dataclass
class _PctState:
    change_points: frozenset[int]
    order: list[tuple[str, str]] = field(default_factory=list)  # streams, highest priority first
    count: int = 0


_HISTORY_LIMIT = 4096
#: the bot's latest order ids the ``mentions-bot-order`` predicate knows (an order placed this many bot
#: placements ago is forgotten, as the ``[[ordering]]`` constraints forget it: half an hour at two
#: placements a second; a soak run's memory stays flat)
_BOT_ORDERS_KEPT = _HISTORY_LIMIT


class DeliverySchedule:
    """Holds outbound messages until their delivery time. Times are loop seconds.

    ``start`` anchors the perturbations' time windows and timed disconnects; if not given
    (or left ``None`` until the first call) it is the ``now`` of the first call.
    """

    def __init__(
        self,
        seed: int = 0,
        latency: LatencyModel | None = None,
        perturbations: Sequence[Perturbation] = (),
        start: float | None = None,
        orderings: Sequence[Ordering] = (),
    ):
        self.seed = seed
        self.latency = latency if latency is not None else LatencyModel()
        self.perturbations: tuple[Perturbation, ...] = tuple(perturbations)
        self.start = start
        self.applied: list[Applied] = []
        #: called with each Applied as it happens (the runner writes them into the trace); its result is ignored
        self.on_applied: Callable[[Applied], object] | None = None
        self._rng = random.Random(seed)
        self._queue: SortedList = SortedList()
        self._seq = itertools.count()
        self._last: dict[tuple[str, str], float] = {}
        self._counts = [0] * len(self.perturbations)
        self._held: dict[int, _Hold] = {}
        self._groups: dict[tuple[int, str], _Group] = {}
        self._history: dict[tuple[str, str], deque[tuple[float, Any]]] = {}
        self._keep_history = any(isinstance(p, ResendStale) for p in self.perturbations)
        self._disconnect_names: dict[int, str] = {}
        # timed ``at`` disconnects: delivery seq -> perturbation index; the indices already fired
        self._at_disconnects: dict[int, int] = {}
        self._at_fired: set[int] = set()
        self._bot_orders: dict[str, None] = {}  # insertion order: the oldest first
        self._pending_orders: dict[str, float] = {}
        # pct perturbations' state by index; their change points are drawn here, up front, in
        # perturbation order (a schedule without pct draws nothing here)
        self._pct: dict[int, _PctState] = {}
        for i, p in enumerate(self.perturbations):
            if isinstance(p, Pct):
                k = min(max(p.depth - 1, 0), p.horizon)
                self._pct[i] = _PctState(frozenset(self._rng.sample(range(1, p.horizon + 1), k)))
        # [[ordering]] constraints (no random draws: a schedule's draws do not depend on them)
        check_orderings(orderings)
        self.orderings: tuple[Ordering, ...] = tuple(orderings)
        self._order_numbers: dict[str, int] = {}  # the bot's orders, numbered from 1 in placement order
        self._order_count = 0
        self._order_conns: dict[str, str] = {}  # the account connection an order's placement reply went to
        # keys (constraint index, conn, order id):
        self._ord_first_at: dict[tuple[int, str, str], float] = {}  # when its first message A is delivered
        self._ord_coming: set[tuple[int, str, str]] = set()  # A pushed, but held by a constraint itself
        self._ord_done: set[tuple[int, str, str]] = set()  # its message B was pushed: the constraint is spent
        self._ord_waiting: dict[tuple[int, str, str], int] = {}  # B held for A: the held delivery's seq
        self._ord_held: dict[int, _OrderingHold] = {}  # by delivery seq

    @classmethod
    def from_spec(
        cls,
        latency: Mapping[str, Any] | None,
        perturb: Sequence[Mapping[str, Any]] | None,
        seed: int = 0,
        start: float | None = None,
        ordering: Sequence[Mapping[str, Any]] | None = None,
    ) -> "DeliverySchedule":
        """Build from a scenario's ``[latency]`` table, ``[[perturb]]`` array and ``[[ordering]]`` array.

        Raises :class:`SpecError` whose message names the key (``perturb[2].match.type``, ``ordering[1].then``).
        """
        model = LatencyModel.from_spec(latency, "latency")
        if perturb is None:
            perturb = []
        if not isinstance(perturb, (list, tuple)):
            raise SpecError("perturb", f"expected an array of tables ([[perturb]]), got {type(perturb).__name__}")
        perturbations = [perturbation_from_spec(p, f"perturb[{i}]", i) for i, p in enumerate(perturb)]
        orderings = orderings_from_spec(ordering)
        return cls(seed=seed, latency=model, perturbations=perturbations, start=start, orderings=orderings)

    # --- outbound WebSocket messages -------------------------------------------------
    def _note_applied(self, applied: Applied) -> None:
        self.applied.append(applied)
        if self.on_applied is not None:
            self.on_applied(applied)

    def push(self, now: float, conn: str, msg_type: str, message: Any, not_before: float | None = None) -> float | None:
        """The server produced ``message`` for ``conn`` at ``now``: decide when it goes out.

        ``not_before`` keeps a message behind another one already scheduled (a sequence the
        server writes in one go, e.g. AUTHENTICATED then the account's state): the message goes
        out no earlier than that time, whatever its latency. Returns when the message is due
        (for a held or reordered message, its normal time), or None when it was dropped.
        """
        self._ensure_start(now)
        self._flush_groups(now)
        self._track_orders(conn, msg_type, message, now)
        ordered = bool(self.orderings) and conn_kind(conn) == "account"
        firsts: list[tuple[int, str, str]] = []
        if ordered:
            if self._ord_waiting:
                self._ordering_release_unmeetable(now)
            firsts = self._ordering_firsts(conn, msg_type, message)
        deliver_at = now + self.latency.message(self._rng, conn, msg_type)
        hold: HoldUntil | None = None
        reorder: tuple[int, Reorder, float] | None = None
        copies: list[float] = []  # gaps after delivery
        stale: list[tuple[float, Any]] = []  # (gap after delivery, message)
        disconnects: list[Disconnect] = []
        history_key = (conn, msg_type)
        for i, p in enumerate(self.perturbations):
            if isinstance(p, (HttpError, WsError)) or (isinstance(p, Disconnect) and p.timed):
                continue
            if isinstance(p, Delay) and "engine" in p.match.conns:
                continue
            if not self._fires(i, p, now, conn, msg_type, message):
                continue
            if isinstance(p, Pct):
                deliver_at += self._pct_extra(i, p, now, conn, msg_type)
                continue
            if isinstance(p, (HoldUntil, Reorder)) and (hold is not None or reorder is not None):
                continue  # a message sits in at most one hold or reorder window
            if isinstance(p, ResendStale):
                old = self._stale_candidate(history_key, now - p.age_s)
                if old is None:
                    continue
                stale.append((p.after.sample(self._rng), old))
            self._note_applied(Applied(now, p.name, conn, msg_type))
            if isinstance(p, Drop):
                self._remember(history_key, now, message)
                return None
            if isinstance(p, Delay):
                deliver_at += p.extra.sample(self._rng)
            elif isinstance(p, HoldUntil):
                hold = p
            elif isinstance(p, Reorder):
                reorder = (i, p, self._rng.random())
            elif isinstance(p, Duplicate):
                copies.append(p.gap.sample(self._rng))
            elif isinstance(p, Disconnect):
                disconnects.append(p)
        self._remember(history_key, now, message)
        if not_before is not None:
            deliver_at = max(deliver_at, not_before)

        if reorder is not None:
            index, p, key = reorder
            group_key = (index, conn)
            group = self._groups.get(group_key)
            if group is not None and now >= group.window_end:
                self._flush_group(group_key)
                group = None
            if group is None:
                group = self._groups[group_key] = _Group(now + p.window_s, conn)
            group.items.append((key, next(self._seq), deliver_at, msg_type, message))
            deliver_at = max(deliver_at, group.window_end)  # provisional, for copies below
        elif hold is not None:
            normal_at = max(deliver_at, self._last.get(history_key, deliver_at))
            delivery = Delivery(normal_at + hold.max_s, next(self._seq), conn, "message", msg_type, message)
            self._held[delivery.seq] = _Hold(conn, hold.until_type, normal_at, delivery)
            self._queue.add(delivery)
            deliver_at = normal_at
        else:
            deliver_at = max(deliver_at, self._last.get(history_key, deliver_at))
            timed = self._ordering_then(now, conn, msg_type, message, deliver_at, not_before, firsts) \
                if ordered else None
            if timed is None:
                self._last[history_key] = deliver_at
                self._queue.add(Delivery(deliver_at, next(self._seq), conn, "message", msg_type, message))
            else:
                deliver_at, held = timed
                if held:
                    self._ord_coming.update(firsts)
                    firsts = []  # settled when the message is
        if firsts:
            self._ordering_settle(now, firsts, deliver_at)

        # Copies are injected traffic, not produced messages: they do not hold back later
        # messages of their type (a stale snapshot 6 s late must not delay the fresh ones).
        for gap in copies:
            self._queue.add(Delivery(deliver_at + gap, next(self._seq), conn, "message", msg_type,
                                     copy.deepcopy(message)))
        for gap, old in stale:
            self._queue.add(Delivery(deliver_at + gap, next(self._seq), conn, "message", msg_type, copy.deepcopy(old)))
        for p in disconnects:
            d = Delivery(deliver_at + p.gap_s, next(self._seq), conn, "disconnect", "DISCONNECT", p.message())
            self._disconnect_names[d.seq] = p.name
            self._queue.add(d)
        return deliver_at

    def pop_due(self, now: float) -> list[Delivery]:
        """Everything due at ``now``, in delivery order."""
        self._flush_groups(now)
        due: list[Delivery] = []
        while self._queue and self._queue[0].deliver_at <= now:
            d = self._queue.pop(0)
            self._held.pop(d.seq, None)  # a hold that ran to its maximum
            if self._ord_held:
                ord_hold = self._ord_held.pop(d.seq, None)
                if ord_hold is not None:  # an ordering whose first message did not come in max_wait
                    self._ordering_unmet(d.deliver_at, ord_hold, d)
            if d.kind == "disconnect":
                fired = self._at_disconnects.pop(d.seq, None)
                if fired is not None:
                    self._at_fired.add(fired)
                name = self._disconnect_names.pop(d.seq, None)
                if name is not None:
                    self._note_applied(Applied(d.deliver_at, name, d.conn, "DISCONNECT"))
            else:
                self._release_holds(d)
            due.append(d)
        return due

    def next_at(self) -> float | None:
        """When the next delivery (or reorder window close) is due; None if nothing is queued."""
        times = [g.window_end for g in self._groups.values()]
        if self._queue:
            times.append(self._queue[0].deliver_at)
        return min(times) if times else None

    def connection_opened(self, now: float, conn: str) -> None:
        """A WebSocket connection started: queue the timed disconnects that apply to it."""
        self._ensure_start(now)
        assert self.start is not None
        for i, p in enumerate(self.perturbations):
            if not (isinstance(p, Disconnect) and p.timed):
                continue
            m = p.match
            if m.conns and not any(_conn_matches(conn, c) for c in m.conns):
                continue
            at = self.start + p.at_s if p.at_s is not None else now + (p.after_open_s or 0.0)
            if at < now or (p.at_s is not None and i in self._at_fired):
                # An ``at`` disconnect closes the connections open at that time, once: a client
                # that reconnects at once (in the same instant) is not closed again, and again.
                continue
            self._counts[i] += 1
            if m.nth and self._counts[i] not in m.nth:
                continue
            if m.probability < 1.0 and self._rng.random() >= m.probability:
                continue
            d = Delivery(at, next(self._seq), conn, "disconnect", "DISCONNECT", p.message())
            self._disconnect_names[d.seq] = p.name
            if p.at_s is not None:
                self._at_disconnects[d.seq] = i
            self._queue.add(d)

    def connection_closed(self, conn: str) -> None:
        """Forget what is still queued for a closed connection."""
        gone = [d for d in self._queue if d.conn == conn]
        for d in gone:
            self._queue.remove(d)
            self._held.pop(d.seq, None)
            self._disconnect_names.pop(d.seq, None)
            self._at_disconnects.pop(d.seq, None)
            self._ord_held.pop(d.seq, None)
        if self.orderings:
            for key in [k for k in self._ord_waiting if k[1] == conn]:
                del self._ord_waiting[key]
            for key in [k for k in self._ord_first_at if k[1] == conn]:
                del self._ord_first_at[key]
            self._ord_coming = {k for k in self._ord_coming if k[1] != conn}
            self._ord_done = {k for k in self._ord_done if k[1] != conn}
        for group_key in [k for k in self._groups if k[1] == conn]:
            del self._groups[group_key]
        for last_key in [k for k in self._last if k[0] == conn]:
            del self._last[last_key]
        for history_key in [k for k in self._history if k[0] == conn]:
            del self._history[history_key]

    def note_order(self, now: float, order_id: str, conn: str | None = None) -> None:
        """Tell the schedule the bot placed ``order_id`` (REST placements, whose replies do not
        pass through :meth:`push`), for the ``mentions-bot-order``/``omits-pending-order`` predicates
        and the ``[[ordering]]`` constraints (which number the bot's orders in the order they are noted;
        ``conn``: the account connection its placement reply goes to, when known)."""
        if order_id not in self._bot_orders:
            self._bot_orders[order_id] = None
            if len(self._bot_orders) > _BOT_ORDERS_KEPT:
                del self._bot_orders[next(iter(self._bot_orders))]
        self._pending_orders[order_id] = now
        if self.orderings:
            if order_id not in self._order_numbers:
                self._order_count += 1
                self._order_numbers[order_id] = self._order_count
                if self._order_count % _HISTORY_LIMIT == 0:
                    self._ordering_forget_old()
            if conn is not None:
                self._order_conns.setdefault(order_id, conn)

    def pending(self) -> int:
        """How many messages are queued (held and reorder-window messages included)."""
        return len(self._queue) + sum(len(g.items) for g in self._groups.values())

    def ws_command_fault(self, now: float, conn: str, command: str) -> WsCommandFault | None:
        """The fault to answer this account-WebSocket command (its ``type``, e.g.
        ``PLACE_LIMIT_ORDER``) with, or None to execute it normally (``ws_error``)."""
        self._ensure_start(now)
        for i, p in enumerate(self.perturbations):
            if isinstance(p, WsError) and self._fires(i, p, now, conn, command, None):
                self._note_applied(Applied(now, p.name, conn, command))
                return p.fault()
        return None

    # --- REST and the matching engine -------------------------------------------------
    def http_fault(self, now: float, method: str, route: str) -> HttpFault | None:
        """The fault to answer this request with, or None to handle it normally."""
        self._ensure_start(now)
        for i, p in enumerate(self.perturbations):
            if isinstance(p, HttpError) and self._fires_http(i, p, now, method, route, p.route):
                self._note_applied(Applied(now, p.name, "rest", f"{method.upper()} {route}"))
                return p.fault()
        return None

    def http_delay(self, now: float, method: str, route: str) -> float:
        """Seconds between a REST request's handling and its response being written."""
        self._ensure_start(now)
        delay = self.latency.http(self._rng, method, route)
        for i, p in enumerate(self.perturbations):
            if not isinstance(p, Delay):
                continue
            m = p.match
            if m.route is None and "rest" not in m.conns:
                continue
            if self._fires_http(i, p, now, method, route, None):
                self._note_applied(Applied(now, p.name, "rest", f"{method.upper()} {route}"))
                delay += p.extra.sample(self._rng)
        return delay

    def engine_delay(self, now: float, command: str) -> float:
        """Seconds between a command's acceptance and its processing by the engine."""
        self._ensure_start(now)
        delay = self.latency.engine(self._rng, command)
        for i, p in enumerate(self.perturbations):
            if isinstance(p, Delay) and "engine" in p.match.conns and self._fires(i, p, now, "engine", command, None):
                self._note_applied(Applied(now, p.name, "engine", command))
                delay += p.extra.sample(self._rng)
        return delay

    # --- ordering constraints ---------------------------------------------------------
    def _ordering_applies(self, c: Ordering, conn: str, oid: str) -> bool:
        """Whether constraint ``c`` is about order ``oid`` on ``conn``: one of the bot's orders, among
        ``c.orders``, whose placement reply went to ``conn`` (or to no connection the schedule knows of)."""
        number = self._order_numbers.get(oid)
        if number is None or not c.applies_to(number):
            return False
        owner = self._order_conns.get(oid)
        return owner is None or owner == conn

    def _ordering_firsts(self, conn: str, msg_type: str, message: Any) -> list[tuple[int, str, str]]:
        """The (constraint, conn, order) keys this message is the first message A of, not yet met."""
        out: list[tuple[int, str, str]] = []
        for i, c in enumerate(self.orderings):
            if c.first != msg_type:
                continue
            if c.first_when == "omits-order":
                # tracking has already removed the orders this snapshot lists: the pending rest are omitted
                ids = list(self._pending_orders) if isinstance(_data(message), list) else []
            else:
                ids = _order_ids(message)
            for oid in ids:
                key = (i, conn, oid)
                if key in self._ord_first_at or key in self._ord_coming:
                    continue  # only the first A counts
                if key in self._ord_done and key not in self._ord_waiting:
                    continue  # B already went its way
                if self._ordering_applies(c, conn, oid):
                    out.append(key)
        return out

    def _ordering_then(self, now: float, conn: str, msg_type: str, message: Any, normal_at: float,
                       not_before: float | None, firsts: list[tuple[int, str, str]]) -> tuple[float, bool] | None:
        """If this message is a constraint's B (the first of its type about an order the constraint is
        about), queue it: at its A's delivery + gap when A came first, else held for A. Returns (when it is due
        (for a held one, its normal time), whether it is held), or None when no constraint applies."""
        for i, c in enumerate(self.orderings):
            if c.then != msg_type:
                continue
            for oid in _order_ids(message):
                key = (i, conn, oid)
                if key in self._ord_done or not self._ordering_applies(c, conn, oid):
                    continue
                # spent for every constraint on this type (an entry given twice acts once)
                self._ord_done.update((j, conn, oid) for j, o in enumerate(self.orderings) if o.then == msg_type)
                floor = now if not_before is None else max(now, not_before)
                first_at = self._ord_first_at.pop(key, None)
                if first_at is not None:
                    at = max(first_at + c.gap_s, floor)
                    self._queue.add(Delivery(at, next(self._seq), conn, "message", msg_type, message))
                    self._note_applied(Applied(now, c.name, conn, msg_type))
                    return at, False
                if key in self._ord_coming or c.first_when != "omits-order" or oid in self._pending_orders:
                    d = Delivery(normal_at + c.max_wait_s, next(self._seq), conn, "message", msg_type, message)
                    self._ord_held[d.seq] = _OrderingHold(key, normal_at, floor, d, firsts)
                    self._ord_waiting[key] = d.seq
                    self._queue.add(d)
                    return normal_at, True
                # an omits-order A can no longer come for an order already seen: nothing changes
        return None

    def _ordering_settle(self, now: float, firsts: list[tuple[int, str, str]], at: float) -> None:
        """A message delivered at ``at`` is the A of ``firsts``: place the Bs held for it ``gap`` after it,
        or remember ``at`` for the Bs to come."""
        for key in firsts:
            self._ord_coming.discard(key)
            seq = self._ord_waiting.pop(key, None)
            if seq is None:
                if key not in self._ord_done and key not in self._ord_first_at:
                    self._ord_first_at[key] = at
                continue
            hold = self._ord_held.pop(seq)
            c = self.orderings[key[0]]
            self._move_held(hold, max(at + c.gap_s, hold.not_before))
            self._note_applied(Applied(now, c.name, hold.delivery.conn, hold.delivery.msg_type))
            if hold.firsts:
                self._ordering_settle(now, hold.firsts, max(at + c.gap_s, hold.not_before))

    def _move_held(self, hold: _OrderingHold, at: float) -> None:
        d = hold.delivery
        self._queue.remove(d)
        self._queue.add(Delivery(at, next(self._seq), d.conn, d.kind, d.msg_type, d.message))

    def _ordering_release_unmeetable(self, now: float) -> None:
        """Release the Bs held for an ``omits-order`` A about an order that has since been seen: no
        snapshot can omit it any more. Each goes at its normal time (or now, if that has passed)."""
        for key, seq in list(self._ord_waiting.items()):
            c = self.orderings[key[0]]
            if c.first_when != "omits-order" or key[2] in self._pending_orders or key in self._ord_coming:
                continue
            del self._ord_waiting[key]
            hold = self._ord_held.pop(seq)
            at = max(hold.normal_at, min(now, hold.delivery.deliver_at))
            self._move_held(hold, at)
            self._note_applied(Applied(now, c.name, hold.delivery.conn, f"{ORDERING_UNMET} {hold.delivery.msg_type}"))
            if hold.firsts:
                self._ordering_settle(now, hold.firsts, at)

    def _ordering_unmet(self, now: float, hold: _OrderingHold, d: Delivery) -> None:
        """A held B reached its max_wait without its A: it goes now (being delivered)."""
        self._ord_waiting.pop(hold.key, None)
        c = self.orderings[hold.key[0]]
        self._note_applied(Applied(now, c.name, d.conn, f"{ORDERING_UNMET} {d.msg_type}"))
        if hold.firsts:
            self._ordering_settle(now, hold.firsts, d.deliver_at)

    def _ordering_forget_old(self) -> None:
        """Bound the constraints' memory: forget orders placed more than _HISTORY_LIMIT orders ago (unless
        a message is held for them)."""
        oldest = self._order_count - _HISTORY_LIMIT
        held = {k[2] for k in self._ord_waiting}
        old = {oid for oid, n in self._order_numbers.items() if n <= oldest and oid not in held}
        if not old:
            return
        for oid in old:
            del self._order_numbers[oid]
            self._order_conns.pop(oid, None)
        self._ord_first_at = {k: v for k, v in self._ord_first_at.items() if k[2] not in old}
        self._ord_coming = {k for k in self._ord_coming if k[2] not in old}
        self._ord_done = {k for k in self._ord_done if k[2] not in old}

    # --- internals --------------------------------------------------------------------
    def _pct_extra(self, i: int, p: Pct, now: float, conn: str, msg_type: str) -> float:
        """A matching message's extra delay under pct ``i`` (see :class:`Pct`)."""
        state = self._pct[i]
        stream = (conn_kind(conn), msg_type)
        if stream not in state.order:
            state.order.insert(self._rng.randint(0, len(state.order)), stream)
        state.count += 1
        if state.count in state.change_points:
            demoted = state.order.pop(0)
            state.order.append(demoted)
            self._note_applied(Applied(now, p.name, demoted[0], f"PCT_CHANGE_POINT {demoted[1]}"))
        extra = p.window_s * state.order.index(stream) / len(state.order)
        if extra > 0:
            self._note_applied(Applied(now, p.name, conn, msg_type))
        return extra

    def _ensure_start(self, now: float) -> None:
        if self.start is None:
            self.start = now

    def _in_window(self, m: Match, now: float) -> bool:
        t = now - (self.start or 0.0)
        if m.from_s is not None and t < m.from_s:
            return False
        if m.until_s is not None and t > m.until_s:
            return False
        return True

    def _draw(self, i: int, m: Match) -> bool:
        """Count an occurrence for perturbation ``i``; apply nth, then the probability draw."""
        self._counts[i] += 1
        if m.nth and self._counts[i] not in m.nth:
            return False
        if m.probability < 1.0 and self._rng.random() >= m.probability:
            return False
        return True

    def _fires(self, i: int, p: Perturbation, now: float, conn: str, msg_type: str, message: Any) -> bool:
        m = p.match
        if m.route is not None:
            return False  # a route only matches REST requests
        types = m.types or p.default_types
        if types and msg_type not in types:
            return False
        if m.conns and not any(_conn_matches(conn, c) for c in m.conns):
            return False
        if not self._in_window(m, now):
            return False
        if m.predicate is not None and not self._predicate(m.predicate, msg_type, message):
            return False
        return self._draw(i, m)

    def _fires_http(
        self, i: int, p: Perturbation, now: float, method: str, route: str, own_route: RoutePattern | None
    ) -> bool:
        m = p.match
        if m.conns and "rest" not in m.conns:
            return False
        for pattern in (own_route, m.route):
            if pattern is not None and not pattern.matches(method, route):
                return False
        if not self._in_window(m, now):
            return False
        return self._draw(i, m)

    def _predicate(self, name: str, msg_type: str, message: Any) -> bool:
        ids = _order_ids(message)
        if name == "mentions-order":
            return bool(ids)
        if name == "mentions-bot-order":
            return any(i in self._bot_orders for i in ids)
        if name == "book-diff":
            return msg_type in BOOK_DIFF_TYPES
        if name == "omits-pending-order":
            # Tracking has already removed the orders this snapshot lists.
            return isinstance(_data(message), list) and bool(self._pending_orders)
        raise AssertionError(f"unknown predicate {name!r}")  # from_spec validates names

    def _track_orders(self, conn: str, msg_type: str, message: Any, now: float) -> None:
        if conn_kind(conn) != "account":
            return
        data = _data(message)
        if msg_type in PLACE_REPLY_TYPES:
            if isinstance(message, dict) and message.get("error"):
                return
            if isinstance(data, dict):
                oid = data.get("orderId") or data.get("id")
                if isinstance(oid, str) and oid:
                    self.note_order(now, oid, conn)
            return
        for oid in _order_ids(message):
            self._pending_orders.pop(oid, None)

    def _remember(self, key: tuple[str, str], now: float, message: Any) -> None:
        if not self._keep_history:
            return
        hist = self._history.get(key)
        if hist is None:
            hist = self._history[key] = deque(maxlen=_HISTORY_LIMIT)
        hist.append((now, message))

    def _stale_candidate(self, key: tuple[str, str], produced_by: float) -> Any | None:
        for produced, message in reversed(self._history.get(key, ())):
            if produced <= produced_by:
                return message
        return None

    def _add_late(self, at: float, conn: str, msg_type: str, message: Any) -> None:
        key = (conn, msg_type)
        self._last[key] = max(at, self._last.get(key, at))
        self._queue.add(Delivery(at, next(self._seq), conn, "message", msg_type, message))

    def _flush_groups(self, now: float) -> None:
        for key in sorted(k for k, g in self._groups.items() if g.window_end <= now):
            self._flush_group(key)

    def _flush_group(self, key: tuple[int, str]) -> None:
        group = self._groups.pop(key)
        shuffled = sorted(group.items, key=lambda item: (item[0], item[1]))
        times = sorted(max(item[2], group.window_end) for item in group.items)
        for at, (_, _, _, msg_type, message) in zip(times, shuffled, strict=True):
            self._add_late(at, group.conn, msg_type, message)

    def _release_holds(self, delivered: Delivery) -> None:
        for seq, hold in list(self._held.items()):
            if hold.conn != delivered.conn or hold.awaited != delivered.msg_type:
                continue
            del self._held[seq]
            self._queue.remove(hold.delivery)
            d = hold.delivery
            self._queue.add(
                Delivery(max(delivered.deliver_at, hold.normal_at), next(self._seq), d.conn, d.kind, d.msg_type,
                         d.message)
            )


def _data(message: Any) -> Any:
    return message.get("data") if isinstance(message, dict) else None


def _order_ids(message: Any) -> list[str]:
    """Order ids a VALR account message refers to (``data.orderId``, ``data[*].orderId``,
    ``data.additionalInfo.orderId``)."""
    data = _data(message)
    out: list[str] = []
    items = data if isinstance(data, list) else [data]
    for item in items:
        if not isinstance(item, dict):
            continue
        oid = item.get("orderId")
        if oid is None and isinstance(item.get("additionalInfo"), dict):
            oid = item["additionalInfo"].get("orderId")
        if isinstance(oid, str) and oid:
            out.append(oid)
    return out


# --- building perturbations from a scenario ------------------------------------------------

_COMMON = ("probability", "nth")


def _as_str_list(value: Any, key: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    out = []
    for j, item in enumerate(items):
        if not isinstance(item, str) or not item:
            where = f"{key}[{j}]" if isinstance(value, list) else key
            raise SpecError(where, f"expected a non-empty string, got {item!r}")
        out.append(item)
    return tuple(out)


def _parse_nth(value: Any, key: str) -> tuple[int, ...]:
    items = value if isinstance(value, list) else [value]
    out = []
    for j, item in enumerate(items):
        where = f"{key}[{j}]" if isinstance(value, list) else key
        if isinstance(item, bool) or not isinstance(item, int) or item < 1:
            raise SpecError(where, f"expected an occurrence number >= 1, got {item!r}")
        out.append(item)
    return tuple(out)


def _parse_probability(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise SpecError(key, f"expected a probability between 0 and 1, got {value!r}")
    return float(value)


def _parse_match(table: Any, key: str, common: dict[str, tuple[Any, str]]) -> Match:
    if table is None:
        table = {}
    if not isinstance(table, Mapping):
        raise SpecError(key, f"expected a table like {{ type = \"OPEN_ORDERS_UPDATE\" }}, got {type(table).__name__}")
    fields: dict[str, Any] = {}
    for name, value in table.items():
        k = f"{key}.{name}"
        if name == "type":
            types = _as_str_list(value, k)
            for j, t in enumerate(types):
                if not t.replace("_", "").isalnum() or t.upper() != t:
                    where = f"{k}[{j}]" if isinstance(value, list) else k
                    raise SpecError(where, f"bad message type {t!r}: VALR types are capitals, e.g. OPEN_ORDERS_UPDATE")
            fields["types"] = types
        elif name == "conn":
            conns = _as_str_list(value, k)
            for j, c in enumerate(conns):
                if conn_kind(c) not in _CONN_KINDS:
                    where = f"{k}[{j}]" if isinstance(value, list) else k
                    raise SpecError(where, f"bad connection {c!r}: expected account, trade, rest, engine "
                                    "or a connection name like account-1")
            fields["conns"] = conns
        elif name == "nth":
            fields["nth"] = _parse_nth(value, k)
        elif name == "probability":
            fields["probability"] = _parse_probability(value, k)
        elif name == "from":
            fields["from_s"] = parse_duration(value, k)
        elif name == "until":
            fields["until_s"] = parse_duration(value, k)
        elif name == "predicate":
            if not isinstance(value, str) or value.replace("_", "-") not in PREDICATES:
                raise SpecError(k, f"unknown predicate {value!r}: expected one of {', '.join(sorted(PREDICATES))}")
            fields["predicate"] = value.replace("_", "-")
        elif name == "route":
            fields["route"] = RoutePattern.parse(value, k)
        else:
            raise SpecError(k, "unknown key: expected type, conn, nth, probability, from, until, predicate, route")
    for name, (value, k) in common.items():
        if name in table:
            raise SpecError(k, f"{name} is given both here and in {key}; give it once")
        fields["nth" if name == "nth" else "probability"] = (
            _parse_nth(value, k) if name == "nth" else _parse_probability(value, k)
        )
    if fields.get("from_s") is not None and fields.get("until_s") is not None and fields["from_s"] > fields["until_s"]:
        raise SpecError(f"{key}.until", "the window ends before it starts (until < from)")
    return Match(**fields)


def _action_table(value: Any, key: str, allowed: Sequence[str], shorthand: str | None) -> dict[str, Any]:
    """Normalise an action's value to a table; ``shorthand`` names the key a bare value fills."""
    if value is True:
        return {}
    if isinstance(value, Mapping):
        for name in value:
            if name not in allowed and name not in _COMMON:
                raise SpecError(f"{key}.{name}", f"unknown key: expected {', '.join([*allowed, *_COMMON])}")
        return dict(value)
    if shorthand is not None and not isinstance(value, bool):
        return {shorthand: value}
    raise SpecError(key, "expected true or a table" + (f", or a value for {shorthand}" if shorthand else ""))


def _close_code(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1000 <= value <= 4999:
        raise SpecError(key, f"expected a WebSocket close code (1000..4999), got {value!r}")
    return value


def perturbation_from_spec(spec: Any, key: str, index: int = 0) -> Perturbation:
    """One ``[[perturb]]`` entry: a ``match`` table, exactly one action key, optionally ``name``."""
    if not isinstance(spec, Mapping):
        raise SpecError(key, f"expected a table, got {type(spec).__name__}")
    actions = [k for k in spec if k in KINDS]
    for name in spec:
        if name not in KINDS and name not in ("match", "name"):
            raise SpecError(f"{key}.{name}", f"unknown key: expected match, name or one of {', '.join(KINDS)}")
    if len(actions) != 1:
        raise SpecError(key, f"expected exactly one action ({', '.join(KINDS)}), got "
                        + (", ".join(actions) if actions else "none"))
    kind = actions[0]
    akey = f"{key}.{kind}"
    name = spec.get("name", f"{kind}[{index}]")
    if not isinstance(name, str) or not name:
        raise SpecError(f"{key}.name", f"expected a non-empty string, got {name!r}")
    value = spec[kind]

    if kind == "drop":
        table = _action_table(value, akey, (), None)
    elif kind == "delay":
        table = _action_table(value, akey, ("by",), "by")
    elif kind == "hold_until":
        table = _action_table(value, akey, ("type", "max"), "type")
    elif kind == "reorder":
        table = _action_table(value, akey, ("window",), "window")
    elif kind == "duplicate":
        table = _action_table(value, akey, ("gap",), "gap")
    elif kind == "resend_stale":
        table = _action_table(value, akey, ("age", "after"), None)
    elif kind == "disconnect":
        table = _action_table(value, akey, ("at", "after_open", "gap", "code"), None)
    elif kind == "ws_error":
        table = _action_table(value, akey, ("status",), "status")
    elif kind == "pct":
        table = _action_table(value, akey, ("depth", "window", "horizon"), "depth")
    else:
        table = _action_table(value, akey, ("status", "route", "body", "headers"), "status")

    common = {n: (table.pop(n), f"{akey}.{n}") for n in _COMMON if n in table}
    match = _parse_match(spec.get("match"), f"{key}.match", common)

    if kind == "drop":
        return Drop(match, name)
    if kind == "delay":
        if "by" not in table:
            raise SpecError(f"{akey}.by", "missing: how much to delay, e.g. by = \"200ms\"")
        return Delay(match, name, extra=parse_distribution(table["by"], f"{akey}.by"))
    if kind == "hold_until":
        until = table.get("type")
        if not isinstance(until, str) or not until:
            raise SpecError(f"{akey}.type", "missing: the message type whose delivery releases the hold")
        if until in match.types:
            raise SpecError(f"{akey}.type", "must name another type than the held messages")
        max_s = parse_duration(table.get("max", 5.0), f"{akey}.max")
        return HoldUntil(match, name, until_type=until, max_s=max_s)
    if kind == "reorder":
        if "window" not in table:
            raise SpecError(f"{akey}.window", "missing: the window within which to shuffle, e.g. \"200ms\"")
        window = parse_duration(table["window"], f"{akey}.window")
        if window <= 0:
            raise SpecError(f"{akey}.window", "must be more than 0")
        return Reorder(match, name, window_s=window)
    if kind == "duplicate":
        return Duplicate(match, name, gap=parse_distribution(table.get("gap", 0), f"{akey}.gap"))
    if kind == "resend_stale":
        return ResendStale(
            match,
            name,
            age_s=parse_duration(table.get("age", 0), f"{akey}.age"),
            after=parse_distribution(table.get("after", 0), f"{akey}.after"),
        )
    if kind == "disconnect":
        if "at" in table and "after_open" in table:
            raise SpecError(f"{akey}.after_open", "give either at or after_open, not both")
        if match.types and ("at" in table or "after_open" in table):
            raise SpecError(f"{key}.match.type", "a timed disconnect matches connections, not message types")
        return Disconnect(
            match,
            name,
            at_s=parse_duration(table["at"], f"{akey}.at") if "at" in table else None,
            after_open_s=parse_duration(table["after_open"], f"{akey}.after_open") if "after_open" in table else None,
            gap_s=parse_duration(table.get("gap", 0), f"{akey}.gap"),
            code=_close_code(table["code"], f"{akey}.code") if "code" in table else None,
        )
    if kind == "ws_error":
        return _ws_error(match, name, table, key, akey)
    if kind == "pct":
        return _pct(match, name, table, key, akey)
    # http_error
    status = table.get("status", 429)
    if isinstance(status, bool) or not isinstance(status, int) or not (status == 0 or 400 <= status <= 599):
        raise SpecError(f"{akey}.status", f"expected 429, another 4xx/5xx status, or 0 (timeout), got {status!r}")
    if match.types:
        raise SpecError(f"{key}.match.type", "http_error matches REST requests: use a route, not a message type")
    route = RoutePattern.parse(table["route"], f"{akey}.route") if "route" in table else None
    headers = table.get("headers", {})
    if not isinstance(headers, Mapping) or not all(isinstance(v, str) for v in headers.values()):
        raise SpecError(f"{akey}.headers", "expected a table of header name -> string")
    return HttpError(match, name, status=status, route=route, body=table.get("body"), headers=dict(headers))


def _ws_error(match: Match, name: str, table: Mapping[str, Any], key: str, akey: str) -> WsError:
    status = table.get("status", 429)
    if isinstance(status, bool) or status not in (429, 0):
        raise SpecError(f"{akey}.status", f"expected 429 (RATE_LIMIT_EXCEEDED) or 0 (never answered), got {status!r}")
    for j, t in enumerate(match.types):
        if t not in WS_COMMAND_TYPES:
            where = f"{key}.match.type" + (f"[{j}]" if len(match.types) > 1 else "")
            raise SpecError(where, f"ws_error matches account WebSocket commands, not {t!r}: expected one of "
                            f"{', '.join(WS_COMMAND_TYPES)}")
    for c in match.conns:
        if conn_kind(c) != "account":
            raise SpecError(f"{key}.match.conn", f"ws_error matches account WebSocket commands: expected account "
                            f"or a connection name like account-1, got {c!r}")
    if match.route is not None:
        raise SpecError(f"{key}.match.route", "ws_error matches WebSocket commands: use http_error for REST routes")
    if match.predicate is not None:
        raise SpecError(f"{key}.match.predicate", "ws_error matches commands by type; predicates ask about messages")
    return WsError(match, name, status=status)


def _positive_int(value: Any, key: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(key, f"expected {what} (an integer >= 1), got {value!r}")
    return value


def _pct(match: Match, name: str, table: Mapping[str, Any], key: str, akey: str) -> Pct:
    depth = _positive_int(table.get("depth", 3), f"{akey}.depth", "the bug depth: 1 + the number of change points")
    horizon = _positive_int(table.get("horizon", 200), f"{akey}.horizon",
                            "how many matching messages the change points are drawn over")
    window = parse_duration(table.get("window", "50ms"), f"{akey}.window")
    if window <= 0:
        raise SpecError(f"{akey}.window", "must be more than 0")
    for c in match.conns:
        if conn_kind(c) not in ("account", "trade"):
            raise SpecError(f"{key}.match.conn", f"pct orders WebSocket message streams: expected account, trade or "
                            f"a connection name like account-1, got {c!r}")
    if match.route is not None:
        raise SpecError(f"{key}.match.route", "pct orders WebSocket message streams, not REST responses")
    return Pct(match, name, depth=depth, window_s=window, horizon=horizon)


# --- building ordering constraints from a scenario -----------------------------------------

ORDERING_KEYS = ("name", "first", "first_when", "then", "gap", "orders", "max_wait")


def _ordering_duration(value: Any, key: str, what: str) -> float:
    if (isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0) or (
            isinstance(value, str) and value.strip().startswith("-")):
        raise SpecError(key, f"a negative {what} ({value!r}): it must be 0 or more")
    return parse_duration(value, key)


def _ordering_type(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise SpecError(key, f"expected a message type, e.g. \"OPEN_ORDERS_UPDATE\", got {value!r}")
    if value not in ORDER_MESSAGE_TYPES:
        raise SpecError(key, f"{value!r} is not an account-stream message type that refers to an order: expected "
                        f"one of {', '.join(ORDER_MESSAGE_TYPES)}")
    return value


def _ordering_orders(value: Any, key: str) -> tuple[int, ...]:
    if value == "every":
        return ()
    if isinstance(value, list):
        if not value:
            raise SpecError(key, "an empty list: give \"every\", a number (3) or a list of numbers ([3, 7])")
        return tuple(sorted(set(_parse_nth(value, key))))
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(key, f"expected \"every\", the bot's nth order (a number >= 1, counted from 1 in placement "
                        f"order) or a list of them, got {value!r}")
    return (value,)


def ordering_from_spec(spec: Any, key: str, index: int = 0) -> Ordering:
    """One ``[[ordering]]`` entry (see :class:`Ordering`); :class:`SpecError` naming the key for a bad one."""
    if not isinstance(spec, Mapping):
        raise SpecError(key, f"expected a table ([[ordering]]), got {type(spec).__name__}")
    for name in spec:
        if name not in ORDERING_KEYS:
            raise SpecError(f"{key}.{name}", f"unknown key: expected one of {', '.join(ORDERING_KEYS)}")
    name = spec.get("name", f"ordering[{index}]")
    if not isinstance(name, str) or not name:
        raise SpecError(f"{key}.name", f"expected a non-empty string, got {name!r}")
    for required in ("first", "then"):
        if required not in spec:
            what = "the message delivered first (A)" if required == "first" else "the message delivered after it (B)"
            raise SpecError(f"{key}.{required}", f"missing: {what}, e.g. {required} = \"OPEN_ORDERS_UPDATE\"")
    first = _ordering_type(spec["first"], f"{key}.first")
    then = _ordering_type(spec["then"], f"{key}.then")
    first_when = spec.get("first_when", "mentions-order")
    if first_when not in ORDERING_CONDITIONS:
        raise SpecError(f"{key}.first_when", f"unknown condition {first_when!r}: expected "
                        f"{' or '.join(ORDERING_CONDITIONS)}")
    if first_when == "omits-order" and first != "OPEN_ORDERS_UPDATE":
        raise SpecError(f"{key}.first_when", f"omits-order is about a snapshot's list of open orders: first must be "
                        f"OPEN_ORDERS_UPDATE, not {first}")
    if first == then and first_when == "mentions-order":
        raise SpecError(f"{key}.then", f"the same message as first ({first} that mentions the order): a message "
                        "cannot be delivered before itself")
    return Ordering(
        first=first,
        then=then,
        first_when=first_when,
        gap_s=_ordering_duration(spec.get("gap", 0), f"{key}.gap", "gap"),
        orders=_ordering_orders(spec.get("orders", "every"), f"{key}.orders"),
        max_wait_s=_ordering_duration(spec.get("max_wait", "2s"), f"{key}.max_wait", "max_wait"),
        name=name,
    )


def orderings_from_spec(specs: Any, key: str = "ordering") -> tuple[Ordering, ...]:
    """A scenario's ``[[ordering]]`` array, each entry checked, then the whole checked for contradictions
    (:func:`check_orderings`)."""
    if specs is None:
        return ()
    if not isinstance(specs, (list, tuple)):
        raise SpecError(key, f"expected an array of tables: write [[{key}]] for each entry, got "
                        f"{type(specs).__name__}")
    orderings = tuple(ordering_from_spec(s, f"{key}[{i}]", i) for i, s in enumerate(specs))
    check_orderings(orderings, key)
    return orderings


def _orders_text(orders: tuple[int, ...]) -> str:
    if not orders:
        return "every order"
    return ("order " if len(orders) == 1 else "orders ") + ", ".join(map(str, orders))


def _overlap(a: Ordering, b: Ordering) -> bool:
    return not a.orders or not b.orders or bool(set(a.orders) & set(b.orders))


def check_orderings(orderings: Sequence[Ordering], key: str = "ordering") -> None:
    """Refuse constraints that contradict each other over an order they share: two that time the same message
    B differently (the same first, first_when and then with another gap; or another first: a message is
    timed by one constraint only), and any cycle (A before B, B before C, C before A)."""
    for j, b in enumerate(orderings):
        for i in range(j):
            a = orderings[i]
            if a.then != b.then or not _overlap(a, b):
                continue
            if (a.first, a.first_when) == (b.first, b.first_when):
                if a.gap_s != b.gap_s:
                    raise SpecError(f"{key}[{j}].gap", f"contradicts {key}[{i}]: {b.then} {b.gap_s * 1000:g}ms after "
                                    f"{b.first} ({b.first_when}) here, {a.gap_s * 1000:g}ms there, for "
                                    f"{_orders_text(b.orders if b.orders else a.orders)}")
                continue  # the same constraint twice: the first one does it
            raise SpecError(f"{key}[{j}].then", f"{key}[{i}] already times {b.then} for "
                            f"{_orders_text(b.orders if b.orders else a.orders)} (after {a.first} ({a.first_when})): "
                            "a message is timed by one constraint only")
    # cycles: nodes are (type, condition) of a message about an order; a B is (then, mentions-order)
    classes = sorted({n for o in orderings for n in o.orders}) + [0]  # 0: an order no constraint names
    for n in classes:
        edges: dict[tuple[str, str], list[tuple[tuple[str, str], int]]] = {}
        for j, o in enumerate(orderings):
            if n and not o.applies_to(n) or not n and o.orders:
                continue
            src, dst = (o.first, o.first_when), (o.then, "mentions-order")
            path = _path(edges, dst, src)
            if path is not None:
                chain = " -> ".join(f"{key}[{i}] ({orderings[i].first} before {orderings[i].then})"
                                    for i in [*path, j])
                where = f"order {n}" if n else "every order"
                raise SpecError(f"{key}[{j}].then", f"a cycle of constraints for {where}: {chain}: no delivery order "
                                "satisfies them all")
            edges.setdefault(src, []).append((dst, j))


def _path(edges: Mapping[tuple[str, str], list[tuple[tuple[str, str], int]]], start: tuple[str, str],
          goal: tuple[str, str]) -> list[int] | None:
    """The constraint indices of a path start -> ... -> goal in ``edges``, or None."""
    if start == goal:
        return []
    seen = {start}
    todo: deque[tuple[tuple[str, str], list[int]]] = deque([(start, [])])
    while todo:
        node, path = todo.popleft()
        for nxt, j in edges.get(node, ()):
            if nxt == goal:
                return [*path, j]
            if nxt not in seen:
                seen.add(nxt)
                todo.append((nxt, [*path, j]))
    return None
