"""Invariants over a run's trace, judged record by record (``CheckEngine``) or over a list (``run_checks``).

Record format: captures/README.md. Two views of the same run:

* the **server view** (the truth): ``event`` records of the simulated exchange
  (``OrderStatusChanged``, ``AccountTrade``, ``OrderFailed``, ``OrderProcessed``,
  ``OpenOrdersChanged``, ``CommandSubmitted``). When a trace has no order events (a capture of
  a real exchange, or a server that does not record events) the view falls back to the
  account stream's ``ORDER_STATUS_UPDATE`` / ``OPEN_ORDERS_UPDATE`` wire messages, which are
  delayed and cannot be filtered by account: the figures say which source was used.
  Server-side checks judge any connector, even one running in another process.
* the **client view**: ``client`` ``ORDER_STATE`` records of the connector under test, and
  ``strategy`` records (``CREATE`` / ``CANCEL``) of the quoting loop.

Checks (names are the API; scenario files and tests refer to them):

server-side (judge any connector, even one in another process)
  max_open_orders              the account's open orders never above the limit (the threshold, or
                               ``levels``), above it by at most ``slack`` for at most ``grace_s``;
                               figures: peak, max per refresh window
  duplicate_orders             an order accepted while another live order has its customerOrderId,
                               or opened while another order for the same strategy intent (side
                               and level of one refresh cycle: a CREATE's ``intent`` field, else
                               ``cycle``/``side``/``level``, else CREATEs < 100 ms apart are one
                               cycle) is open under another customerOrderId; figures: duplicates,
                               intent_duplicates; Failed duplicate attempts are a figure
  nothing_open_after_shutdown  the account's open orders at the last record (after SHUTDOWN_DONE,
                               so cancel-on-disconnect counts); figure: the count at SHUTDOWN_DONE
  orders_closed                every order opened during the run is closed by the end; optional
                               ``max_order_age_cycles`` bounds how long any order stayed open
client-side (need ``client`` records; false_cancels, orphans, phantom_open and final_outcome
also the server view)
  false_cancels                the client moved an order to CANCELED/FILLED/FAILED while the
                               exchange still held it open ``grace_s`` later (FAILED into the
                               ``lost`` set is "unknown, keep cancelling", not counted)
  orphans                      open on the exchange at the end, not in the client's active/lost set
  phantom_open                 an *active* order believed OPEN (from OPEN/PARTIALLY_FILLED on,
                               through PENDING_CANCEL: still on the book while being cancelled)
                               while the exchange has not held it open for longer than ``grace_s``
  final_state_exit             an ORDER_STATE leaving CANCELED/FILLED/FAILED
  final_outcome                at the end, each order's last client state (CANCELED/FILLED/FAILED;
                               not in the ``lost`` set) against the exchange's final status of its
                               order (Cancelled/Filled/Failed; an order still open is orphans'
                               business), and the executed amount when the client records carry
                               ``executed_amount_base``; figures: mismatches, by_kind (e.g.
                               "CANCELED vs Filled"), cids
  place_resolves               PENDING_CREATE reaches a known state within ``place_resolve_s``
  cancel_resolves              a cancel request (strategy CANCEL, wire cancel, PENDING_CANCEL,
                               CommandSubmitted) reaches CANCELED/FILLED within ``cancel_resolve_s``
  requote                      after each strategy cancel set, a CREATE within refresh_s +
                               requote_bound_s (cycles with a fill are exempt: PMM then waits
                               filled_order_delay; sets too close to SHUTDOWN_BEGIN are not judged)

``run_checks(records, spec)`` returns one ``CheckResult`` per check, in ``CHECK_NAMES`` order. A run
feeds a ``CheckEngine`` as records are made instead (``feed``, then ``results``): each check keeps
only what it still needs (orders not yet settled, counters, first violations, latency samples), and
with ``retire_after_s`` a settled order is judged and forgotten, so memory stays flat however many
hours are simulated. Both paths give the same results.
A violation names the first violating record (its index in ``records``) and a timeline of
the records around it (``replay.show.timeline`` when available).
A check with no threshold in ``spec.thresholds`` (the scenario's ``[expect]`` table) is judged
by ``DEFAULT_THRESHOLDS``: an absent ``[expect]`` means "everything must hold" (counts 0,
``max_open_orders`` the configured ``levels`` with the spec's slack and grace,
``nothing_open_after_shutdown`` true). A threshold ``true`` means "0 allowed", ``false``
switches the judgement off (figures only, ``held=None``), a number is the largest figure that
still holds. ``held=None`` otherwise only for a check that cannot be judged (no client records,
no exchange view, no strategy records).
"""

from __future__ import annotations

import bisect
import importlib
import inspect
import json
import math
from array import array
from dataclasses import asdict, dataclass, field, is_dataclass
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, Callable, Iterable, Sequence

CHECK_NAMES = (
    "max_open_orders",
    "duplicate_orders",
    "nothing_open_after_shutdown",
    "orders_closed",
    "false_cancels",
    "orphans",
    "phantom_open",
    "final_state_exit",
    "final_outcome",
    "place_resolves",
    "cancel_resolves",
    "requote",
)

# [expect] keys each check reads (first match wins). Any other key is refused.
THRESHOLD_KEYS: dict[str, tuple[str, ...]] = {
    "max_open_orders": ("max_open_orders",),
    "duplicate_orders": ("duplicate_orders",),
    "nothing_open_after_shutdown": ("nothing_open_after_shutdown", "open_after_shutdown"),
    "orders_closed": ("orders_closed", "unclosed_orders"),
    "false_cancels": ("false_cancels",),
    "orphans": ("orphans_at_end", "orphans"),
    "phantom_open": ("phantom_open",),
    "final_state_exit": ("final_state_exit", "final_state_exits"),
    "final_outcome": ("final_outcome", "final_outcome_mismatches"),
    "place_resolves": ("place_resolves",),
    "cancel_resolves": ("cancel_resolves",),
    "requote": ("requote", "requote_late"),
}
# Extra numeric limits on figures: key -> (check, figure, unit note).
FIGURE_LIMITS: dict[str, tuple[str, str]] = {
    "max_order_age_cycles": ("orders_closed", "max_open_cycles"),
    "place_p99_ms": ("place_resolves", "p99_ms"),
    "cancel_p99_ms": ("cancel_resolves", "p99_ms"),
}
# The threshold of a check the scenario's [expect] does not mention: an absent [expect] means
# "everything must hold". max_open_orders defaults to the configured levels (CheckSpec.levels,
# with its slack and grace); `key = false` still switches a check off.
DEFAULT_THRESHOLDS: dict[str, Any] = {name: 0 for name in CHECK_NAMES}
HARD_DEFAULTS = DEFAULT_THRESHOLDS  # the old name
KNOWN_THRESHOLDS = frozenset(k for keys in THRESHOLD_KEYS.values() for k in keys) | frozenset(FIGURE_LIMITS)

OPEN_STATUSES = {"Placed", "Partially Filled", "PartiallyFilled"}
TERMINAL_CLIENT = {"CANCELED", "FILLED", "FAILED"}
BELIEVED_OPEN = {"OPEN", "PARTIALLY_FILLED"}
# phantom_open: a stretch that starts in BELIEVED_OPEN goes on through PENDING_CANCEL (the client
# still believes the order is on the book while it is being cancelled)
STILL_ON_BOOK = BELIEVED_OPEN | {"PENDING_CANCEL"}
INTENT_GAP_NS = 100_000_000  # CREATEs closer than this (without an intent field) are one refresh cycle
TRACKED_WHERE = {"active", "lost"}
WINDOW_RECORDS = 8
WINDOW_NS = 200_000_000


@dataclass
class CheckSpec:
    account: str = "demo"
    levels: int = 2  # bid + ask levels
    slack: int = 0  # transient slack over the open-order limit (at most grace_s long)
    grace_s: float = 2.0
    place_resolve_s: float = 5.0
    cancel_resolve_s: float = 5.0
    refresh_s: float = 1.0
    requote_bound_s: float = 3.0
    thresholds: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if not isinstance(self.levels, int) or isinstance(self.levels, bool) or self.levels < 1:
            raise ValueError(f"check spec: levels must be an integer >= 1, got {self.levels!r}")
        if not isinstance(self.slack, int) or isinstance(self.slack, bool) or self.slack < 0:
            raise ValueError(f"check spec: slack must be an integer >= 0, got {self.slack!r}")
        for name in ("grace_s", "place_resolve_s", "cancel_resolve_s", "refresh_s", "requote_bound_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"check spec: {name} must be a number >= 0, got {value!r}")
        validate_thresholds(self.thresholds)


@dataclass
class CheckResult:
    name: str
    held: bool | None  # None = figures only
    figures: dict[str, Any]
    first_violation: dict[str, Any] | None  # {"index", "t_s", "record", "what"}
    message: str
    timeline: list[str] = field(default_factory=list)


def validate_thresholds(thresholds: dict[str, Any]) -> None:
    """Refuse unknown [expect] keys and values that are not booleans or numbers >= 0."""
    if not isinstance(thresholds, dict):
        raise ValueError(f"[expect]: expected a table, got {type(thresholds).__name__}")
    for key, value in thresholds.items():
        if key not in KNOWN_THRESHOLDS:
            raise ValueError(f"[expect]: unknown key {key!r}; known: {', '.join(sorted(KNOWN_THRESHOLDS))}")
        if isinstance(value, bool):
            if key in FIGURE_LIMITS and value is True:
                raise ValueError(f"[expect] {key}: expected a number >= 0 (or false), got true")
            continue
        if not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"[expect] {key}: expected true/false or a number >= 0, got {value!r}")


# ---------------------------------------------------------------------------------------
# Record access
# ---------------------------------------------------------------------------------------


def _is_record(rec: dict[str, Any]) -> bool:
    return "kind" in rec


def _data(rec: dict[str, Any]) -> dict[str, Any]:
    d = rec.get("data")
    if isinstance(d, dict):
        return d
    if is_dataclass(d) and not isinstance(d, type):  # an in-memory record holding an event object
        return asdict(d)
    return {}


def _status(value: Any) -> str:
    """A status string; in-memory records may hold the enum itself."""
    return str(value.value) if isinstance(value, Enum) else str(value or "")


def _s(t_ns: int) -> float:
    return t_ns / 1e9


def _pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


# ---------------------------------------------------------------------------------------
# The server's view: which orders the exchange holds open, when
# ---------------------------------------------------------------------------------------

STATUS_EVENTS = frozenset({"OrderStatusChanged", "AccountTrade", "OrderFailed", "OrderProcessed"})
WIRE_TYPES = frozenset({"ORDER_STATUS_UPDATE", "OPEN_ORDERS_UPDATE"})
_EVENTS_JUDGED = STATUS_EVENTS | {"OpenOrdersChanged", "CommandSubmitted"}


@dataclass(slots=True)
class ServerOrder:
    order_id: str
    cid: str | None
    first_index: int
    # (t_ns, index, is_open, status): one entry per change of openness
    changes: list[tuple[int, int, bool, str]] = field(default_factory=list)
    status: str = ""
    filled: str | None = None  # executed base amount at the latest status (None: not reported)
    status_index: int = -1  # the record of the latest status
    last_t: int = 0  # the latest record about it (a settled order is retired once quiet long enough)

    @property
    def is_open(self) -> bool:
        return bool(self.changes) and self.changes[-1][2]

    def open_at(self, t: int) -> bool:
        times = [c[0] for c in self.changes]
        i = bisect.bisect_right(times, t)
        return i > 0 and self.changes[i - 1][2]

    @property
    def ever_open(self) -> bool:
        return any(c[2] for c in self.changes)

    def last_open_index(self) -> int:
        for c in reversed(self.changes):
            if c[2]:
                return c[1]
        return self.first_index

    def open_intervals(self, t_end: int) -> list[tuple[int, int, int]]:
        """(start_ns, end_ns, start_index) for each stretch the order was open."""
        out = []
        start: tuple[int, int] | None = None
        for t, idx, is_open, _ in self.changes:
            if is_open and start is None:
                start = (t, idx)
            elif not is_open and start is not None:
                out.append((start[0], t, start[1]))
                start = None
        if start is not None:
            out.append((start[0], t_end, start[1]))
        return out


@dataclass
class Duplicate:
    index: int
    cid: str
    order_id: str
    other: str


class ServerListener:
    """What the checks that follow the exchange's orders as they change are told (CheckEngine)."""

    def advance(self, t: int) -> None:
        """A change at time ``t`` is about to be applied, later than every change so far."""

    def changed(self, order: ServerOrder, t: int, index: int, is_open: bool, status: str) -> None:
        """``order`` was opened or closed (its ``changes`` has the new entry)."""

    def counted(self, t: int, index: int, count: int) -> None:
        """The number of open orders after a change."""


class ServerView:
    """The exchange's orders of one account, built record by record (``apply_*``).

    ``source`` says which evidence was used: ``events`` (the simulated exchange's order events),
    ``snapshot events`` (its OpenOrdersChanged events only) or ``wire`` (the account stream's
    messages, which are delayed and cannot be filtered by account); ``CheckEngine`` picks it.
    """

    def __init__(self, account: str, listener: ServerListener | None = None):
        self.account = account
        self.listener = listener or ServerListener()
        self.orders: dict[str, ServerOrder] = {}
        self.open_now: set[str] = set()
        self.closed_ids: set[str] = set()  # orders in ``orders`` that are not open: candidates to retire
        self.duplicates: list[Duplicate] = []
        self.failed_duplicate_attempts: dict[str, int] = {}  # order id -> first record index
        self.source = "none"
        self.by_cid: dict[str, list[ServerOrder]] = {}
        self._last_change_t: int | None = None

    def own(self, data: dict[str, Any]) -> bool:
        return data.get("account", self.account) == self.account

    def apply_event(self, i: int, r: dict[str, Any], d: dict[str, Any]) -> None:
        typ = r["type"]
        t = r["t"]
        if typ in ("OrderStatusChanged", "AccountTrade"):
            o = d.get("order")
            if isinstance(o, dict) and o.get("order_id"):
                filled = o.get("filled_quantity")
                self._apply(t, i, o["order_id"], o.get("customer_order_id"), _status(o.get("status")),
                            None if filled is None else str(filled))
        elif typ == "OrderFailed" or (typ == "OrderProcessed" and d.get("success") is False):
            oid = d.get("order_id")
            cid = d.get("customer_order_id")
            reason = str(d.get("message") or d.get("failure_reason") or "")
            if oid and (oid not in self.orders or not self.orders[oid].is_open):
                self._note_failed(t, i, oid, cid, reason)

    def apply_snapshot_event(self, i: int, r: dict[str, Any], d: dict[str, Any]) -> None:
        orders = d.get("orders") or []
        self._apply_snapshot(r["t"], i, [(o.get("order_id"), o.get("customer_order_id")) for o in orders])

    def apply_wire(self, i: int, r: dict[str, Any], d: dict[str, Any]) -> None:
        payload = d.get("data")
        if r["type"] == "ORDER_STATUS_UPDATE" and isinstance(payload, dict):
            oid = payload.get("orderId")
            if oid:
                self._apply(r["t"], i, oid, payload.get("customerOrderId"),
                            str(payload.get("orderStatusType", "")), _wire_filled(payload))
        elif r["type"] == "OPEN_ORDERS_UPDATE":
            if isinstance(payload, dict):  # R3's {accountId, orders} shape
                payload = payload.get("orders")
            if isinstance(payload, list):
                listed = [(o.get("orderId"), o.get("customerOrderId")) for o in payload if isinstance(o, dict)]
                self._apply_snapshot(r["t"], i, listed)

    def _new(self, oid: str, cid: str | None, i: int) -> ServerOrder:
        order = self.orders[oid] = ServerOrder(oid, cid, i)
        if cid:
            self.by_cid.setdefault(cid, []).append(order)
        return order

    def _note_failed(self, t: int, i: int, oid: str, cid: str | None, reason: str) -> None:
        order = self.orders.get(oid)
        if order is None:
            order = self._new(oid, cid, i)
            order.changes.append((t, i, False, "Failed"))
            order.status, order.status_index = "Failed", i
            self.closed_ids.add(oid)
        else:
            order.status = "Failed"
            order.status_index = i
        order.last_t = t
        held_by_other = cid and any(self.orders[o].cid == cid for o in self.open_now if o != oid)
        if held_by_other or "duplicate" in reason.lower():
            self.failed_duplicate_attempts.setdefault(oid, i)

    def _apply(self, t: int, i: int, oid: str, cid: str | None, status: str, filled: str | None = None) -> None:
        order = self.orders.get(oid)
        if order is None:
            order = self._new(oid, cid, i)
        elif cid and not order.cid:
            order.cid = cid
            self.by_cid.setdefault(cid, []).append(order)
        order.last_t = t
        is_open = status in OPEN_STATUSES
        if status == "Failed":
            self._note_failed(t, i, oid, order.cid, "")
        if status != "absent":  # a snapshot that no longer lists it says nothing of how it ended
            order.status = status
            order.status_index = i
        if filled is not None:
            order.filled = filled
        if order.changes and order.changes[-1][2] == is_open:
            return
        if self._last_change_t is None or t > self._last_change_t:
            self.listener.advance(t)
            self._last_change_t = t
        if not order.changes and not is_open:
            order.changes.append((t, i, False, status))
            self.closed_ids.add(oid)
            self.listener.changed(order, t, i, False, status)
            return
        if is_open and order.cid:
            for other in sorted(self.open_now):
                if other != oid and self.orders[other].cid == order.cid:
                    self.duplicates.append(Duplicate(i, order.cid, oid, other))
                    break
        order.changes.append((t, i, is_open, status))
        if is_open:
            self.open_now.add(oid)
            self.closed_ids.discard(oid)
        else:
            self.open_now.discard(oid)
            self.closed_ids.add(oid)
        self.listener.changed(order, t, i, is_open, status)
        self.listener.counted(t, i, len(self.open_now))

    def _apply_snapshot(self, t: int, i: int, listed: list[tuple[str | None, str | None]]) -> None:
        ids = {oid for oid, _ in listed if oid}
        for gone in sorted(self.open_now - ids):  # closes first: a replacement is no excursion
            self._apply(t, i, gone, None, "absent")
        for oid, cid in listed:
            if oid:
                self._apply(t, i, oid, cid, "Placed")

    def orders_for(self, cid: str, exchange_ids: Iterable[str] = ()) -> list[ServerOrder]:
        """The exchange orders of client order ``cid`` (by customerOrderId or exchange order id)."""
        found = {o.order_id: o for o in self.by_cid.get(cid, ())}
        for eid in exchange_ids:
            if eid in self.orders:
                found[eid] = self.orders[eid]
        return list(found.values())

    def remove(self, order: ServerOrder) -> None:
        """Forget a settled order (its contribution to every check is already counted)."""
        self.orders.pop(order.order_id, None)
        self.closed_ids.discard(order.order_id)
        if order.cid and order.cid in self.by_cid:
            rest = [o for o in self.by_cid[order.cid] if o is not order]
            if rest:
                self.by_cid[order.cid] = rest
            else:
                del self.by_cid[order.cid]


def _wire_filled(payload: dict[str, Any]) -> str | None:
    """The executed amount an ORDER_STATUS_UPDATE implies (original - remaining), if it says both."""
    try:
        return str(Decimal(str(payload["originalQuantity"])) - Decimal(str(payload["remainingQuantity"])))
    except (KeyError, ArithmeticError, ValueError, TypeError):
        return None


# ---------------------------------------------------------------------------------------
# The client's view: ORDER_STATE transitions per client order id
# ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class ClientState:
    t: int
    index: int
    frm: str | None
    to: str
    where: str | None
    reason: str | None
    executed: str | None = None  # executed_amount_base, when the producer records it
    lost_resolved: bool = False


@dataclass(slots=True)
class ClientOrder:
    cid: str
    states: list[ClientState] = field(default_factory=list)
    exchange_ids: set[str] = field(default_factory=set)
    #: executed amounts the connector's ORDER_FILL records reported
    fill_executed: list[str] = field(default_factory=list)
    last_t: int = 0
    fc_cursor: int = 0  # false_cancels: the states judged so far (a final state is judged grace_s after it)
    fc_done: bool = False

    def state_before(self, t: int, index: int) -> ClientState | None:
        last = None
        for s in self.states:
            if (s.t, s.index) > (t, index):
                break
            last = s
        return last


class ClientView:
    """The connector's client ORDER_STATE and ORDER_FILL records, per client order id, record by record."""

    def __init__(self) -> None:
        self.orders: dict[str, ClientOrder] = {}
        self.cid_by_eid: dict[str, str] = {}
        self.final_ids: set[str] = set()  # client orders whose latest state is final: candidates to retire
        self.present = False
        self._early_fills: dict[str, list[str]] = {}  # ORDER_FILLs of a client order before its first ORDER_STATE

    def add_state(self, i: int, r: dict[str, Any], d: dict[str, Any]) -> ClientOrder:
        cid = d.get("client_order_id")
        to = d.get("to")
        if not isinstance(cid, str) or not cid:
            raise ValueError(f"record {i} (client ORDER_STATE): field 'client_order_id' missing or empty")
        if not isinstance(to, str) or not to:
            raise ValueError(f"record {i} (client ORDER_STATE): field 'to' missing or empty")
        order = self.orders.get(cid)
        if order is None:
            order = self.orders[cid] = ClientOrder(cid, fill_executed=self._early_fills.pop(cid, []))
        executed = d.get("executed_amount_base")
        state = ClientState(r["t"], i, d.get("from"), to, d.get("where"), d.get("reason"),
                            None if executed is None else str(executed), bool(d.get("lost_resolved")))
        states = order.states
        if states and (states[-1].t, states[-1].index) > (state.t, i):  # a trace out of time order
            states.append(state)
            states.sort(key=lambda s: (s.t, s.index))
        else:
            states.append(state)
        if d.get("exchange_order_id"):
            eid = str(d["exchange_order_id"])
            order.exchange_ids.add(eid)
            self.cid_by_eid[eid] = cid
        order.last_t = max(order.last_t, r["t"])
        if order.states[-1].to in TERMINAL_CLIENT:
            self.final_ids.add(cid)
        else:
            self.final_ids.discard(cid)
        self.present = True
        return order

    def add_fill(self, r: dict[str, Any], d: dict[str, Any]) -> None:
        """A fill the connector applied (also after the order's end, which no ORDER_STATE shows)."""
        if d.get("executed_amount_base") in (None, ""):
            return
        cid = str(d.get("client_order_id"))
        order = self.orders.get(cid)
        if order is None:
            self._early_fills.setdefault(cid, []).append(str(d["executed_amount_base"]))
        else:
            order.fill_executed.append(str(d["executed_amount_base"]))
            order.last_t = max(order.last_t, r["t"])

    def remove(self, order: ClientOrder) -> None:
        self.orders.pop(order.cid, None)
        self.final_ids.discard(order.cid)
        for eid in order.exchange_ids:
            if self.cid_by_eid.get(eid) == order.cid:
                del self.cid_by_eid[eid]


# ---------------------------------------------------------------------------------------
# Timelines
# ---------------------------------------------------------------------------------------


def _summary(rec: dict[str, Any]) -> str:
    d = _data(rec)
    kind, typ = rec.get("kind"), rec.get("type")
    if kind == "event" and isinstance(d.get("order"), dict):
        o = d["order"]
        return f"order={o.get('order_id')} cid={o.get('customer_order_id')} {o.get('status')}"
    if kind == "event" and typ == "OpenOrdersChanged":
        ids = [o.get("customer_order_id") or o.get("order_id") for o in d.get("orders") or []]
        return f"open={ids}"
    if kind == "client" and typ == "ORDER_STATE":
        return (
            f"{d.get('client_order_id')} {d.get('from')}->{d.get('to')} where={d.get('where')}"
            + (f" ({d.get('reason')})" if d.get("reason") else "")
        )
    text = json.dumps(rec.get("data"), separators=(",", ":"), default=str)
    return text if len(text) <= 140 else text[:137] + "..."


def format_record(index: int, rec: dict[str, Any], mark: bool = False) -> str:
    return (
        f"{'>>' if mark else '  '}{index:>6} {_s(rec.get('t', 0)):>10.3f}s "
        f"{str(rec.get('conn', '')):<10} {str(rec.get('dir', '')):<5} {str(rec.get('kind', '')):<8} "
        f"{rec.get('type', '')} {_summary(rec)}"
    )


def _mentions(rec: dict[str, Any], ids: set[str]) -> bool:
    if not ids:
        return False
    text = json.dumps(rec.get("data"), default=str)
    return any(i in text for i in ids)


class _Show:
    """replay.show's timeline and formatter, if that module offers them (another engineer
    writes it); order labels are assigned once over the whole trace, as ``show`` does."""

    def __init__(self, records: Sequence[dict[str, Any]]):
        self.records = records
        self.timeline = None
        self.format = None
        self.labels: Any = None
        try:
            mod = importlib.import_module("replay.show")
        except Exception:
            return
        tl = getattr(mod, "timeline", None)
        if callable(tl):
            self.timeline = tl
        self._mod = mod
        self._labels_tried = False

    def _get_labels(self) -> Any:
        if not self._labels_tried:
            self._labels_tried = True
            try:
                labels = self._mod.OrderLabels()
                for rec in self.records:
                    labels.observe(rec)
                labels.compact()
                self.labels = labels
            except Exception:
                self.labels = None
        return self.labels

    def lines(self, center: int) -> list[str] | None:
        if self.timeline is None:
            return None
        try:
            try:
                accepts_labels = "labels" in inspect.signature(self.timeline).parameters
            except (TypeError, ValueError):
                accepts_labels = False
            if accepts_labels and self._get_labels() is not None:
                got = self.timeline(self.records, center, WINDOW_RECORDS, WINDOW_RECORDS, labels=self.labels)
            else:
                got = self.timeline(self.records, center, WINDOW_RECORDS, WINDOW_RECORDS)
            return got.splitlines() if isinstance(got, str) else [str(x) for x in got]
        except Exception:  # incompatible: fall back to the local formatter
            return None

    def line(self, index: int) -> str:
        fmt = getattr(getattr(self, "_mod", None), "format_record", None)
        if self.timeline is not None and callable(fmt):
            try:
                return "   " + fmt(self.records[index], self._get_labels())
            except Exception:
                pass
        return format_record(index, self.records[index])


def _near(records: Sequence[dict[str, Any]], center: int, t0: int) -> list[tuple[int, dict[str, Any]]]:
    """The records within ±200 ms of ``t0`` around ``center``, in order (a trace is in time order, so
    this reads only the neighbourhood, also of a trace on disk)."""
    before: list[tuple[int, dict[str, Any]]] = []
    i = center - 1
    while i >= 0:
        r = records[i]
        if _is_record(r):
            if t0 - r["t"] > WINDOW_NS:
                break
            before.append((i, r))
        i -= 1
    after: list[tuple[int, dict[str, Any]]] = []
    i = center + 1
    while i < len(records):
        r = records[i]
        if _is_record(r):
            if r["t"] - t0 > WINDOW_NS:
                break
            after.append((i, r))
        i += 1
    return before[::-1] + [(center, records[center])] + after


def build_timeline(
    records: Sequence[dict[str, Any]], center: int, ids: Iterable[str] = (), show: _Show | None = None
) -> list[str]:
    """The ±8 records around ``center``, plus records within ±200 ms that mention ``ids``.

    Uses ``replay.show.timeline`` when it exists, else a local one-line formatter.
    """
    show = show or _Show(records)
    ids = {i for i in ids if isinstance(i, str) and i}
    lo, hi = max(0, center - WINDOW_RECORDS), min(len(records) - 1, center + WINDOW_RECORDS)
    lines = show.lines(center)
    local = lines is None
    if lines is None:
        lines = [format_record(i, records[i], i == center) for i in range(lo, hi + 1) if _is_record(records[i])]
    t0 = records[center].get("t", 0)
    extra = [
        format_record(i, r) if local else show.line(i)
        for i, r in _near(records, center, t0)
        if (i < lo or i > hi) and _mentions(r, ids)
    ]
    if extra:
        lines = lines + ["  ... same order within ±200 ms:"] + extra
    return lines


# ---------------------------------------------------------------------------------------
# Judging: one engine fed record by record
# ---------------------------------------------------------------------------------------


class _First:
    """A count of findings, the smallest ``keep`` of them by key (the first is a check's first violation)."""

    __slots__ = ("count", "keep", "items")

    def __init__(self, keep: int = 20):
        self.count = 0
        self.keep = keep
        self.items: list[tuple[Any, Any]] = []  # (key, finding), ascending

    def add(self, key: Any, finding: Any) -> None:
        self.count += 1
        if len(self.items) < self.keep or key < self.items[-1][0]:
            bisect.insort(self.items, (key, finding), key=lambda kf: kf[0])
            del self.items[self.keep:]

    @property
    def first(self) -> Any:
        return self.items[0][1] if self.items else None

    def findings(self) -> list[Any]:
        return [f for _, f in self.items]


class _IntentNamer:
    """The strategy intent of each ``strategy`` ``CREATE``, record by record (see ``strategy_intents``)."""

    def __init__(self) -> None:
        self.cycle = -1
        self.last_t: int | None = None
        self.per_side: dict[str, int] = {}

    def name(self, t: int, d: dict[str, Any]) -> str | None:
        if self.last_t is None or t - self.last_t > INTENT_GAP_NS:
            self.cycle += 1
            self.per_side = {}
        self.last_t = t
        side = str(d.get("side") or "")
        level = self.per_side.get(side, 0)
        self.per_side[side] = level + 1
        cid = d.get("client_order_id")
        if not isinstance(cid, str) or not cid:
            return None
        if isinstance(d.get("intent"), str) and d["intent"]:
            return str(d["intent"])
        if "cycle" in d and "side" in d and "level" in d:
            return f"c{d['cycle']}/{d['side']}/{d['level']}"
        if side:
            return f"c{self.cycle}/{side}/{level}"
        return None


def strategy_intents(records: list[dict[str, Any]]) -> dict[str, str]:
    """client order id -> the strategy intent its ``strategy`` ``CREATE`` was for.

    A CREATE's ``intent`` field when it has one (the reference loop writes ``c<cycle>/<side>/<level>``);
    else ``cycle``/``side``/``level`` fields; else derived: CREATEs less than 100 ms apart are one
    refresh cycle, and the level is the order's position among that cycle's CREATEs of its side."""
    namer = _IntentNamer()
    out: dict[str, str] = {}
    for r in records:
        if _is_record(r) and r["kind"] == "strategy" and r["type"] == "CREATE":
            d = _data(r)
            intent = namer.name(r["t"], d)
            if intent is not None:
                out[d["client_order_id"]] = intent
    return out


class _Span:
    __slots__ = ("start", "index", "order", "end")

    def __init__(self, start: int, index: int, order: ServerOrder):
        self.start, self.index, self.order = start, index, order
        self.end: int | None = None


#: retired ids remembered to notice a record about one after it was judged (a late record); hours later none comes
RETIRED_KEPT = 5_000


class CheckEngine(ServerListener):
    """Every check, fed one record at a time (``feed``), judged at the end (``results``).

    Each check keeps only what it still needs: the orders that are not settled, counters, the
    first violations so far, percentiles' samples. With ``retire_after_s`` an order that is final
    for the client, closed on the exchange and untouched for that long is judged for every check
    there and then and forgotten, so the state stays flat however long the run; without it
    (``run_checks``) every order is judged at the end. The two give the same results as long as
    no record touches an order after it was retired (``late_records`` counts those that did).

    A violation names the first violating record by its index in the stream; ``results(records)``
    takes the records again (a list, or a ``RecordStore`` on disk) only to show the timelines.
    """

    RETIRE_SCAN_NS = 5_000_000_000

    def __init__(self, spec: CheckSpec | None = None, *, retire_after_s: float | None = None):
        self.spec = spec = spec or CheckSpec()
        spec.validate()
        self.n = 0  # index of the next record
        self.t_end = 0
        self.meta: dict[str, tuple[int, int]] = {}
        self.server = ServerView(spec.account, self)
        self.client = ClientView()
        self._undecided: list[tuple[int, dict[str, Any], dict[str, Any]]] | None = []  # before the source is known
        # ids of orders judged and forgotten, the latest RETIRED_KEPT (to count records that come too late)
        self.retired: dict[str, None] = {}
        self.retired_orders = 0
        self.late_records = 0
        if retire_after_s is not None:
            windows = (spec.grace_s, spec.place_resolve_s, spec.cancel_resolve_s, spec.refresh_s + spec.requote_bound_s)
            retire_after_s = max(retire_after_s, 3 * max(windows))
        self._retire_ns = None if retire_after_s is None else int(retire_after_s * 1e9)
        self._next_scan = self.RETIRE_SCAN_NS
        self._grace_ns = int(spec.grace_s * 1e9)
        # max_open_orders
        key, threshold = _limit(spec, "max_open_orders")
        if spec.thresholds.get("max_open_orders") is True or key == "(default)":
            threshold = spec.levels  # `true` or no key: no more than the configured levels
        self.mo_threshold = threshold
        self.mo_limit = spec.levels if threshold is None else threshold
        self.mo_peak = self.mo_peak_t = self.mo_final = 0
        self.mo_batch: list[tuple[int, int, int]] = []  # series entries at the latest change time
        self.mo_violation: tuple[int, str] | None = None
        self.mo_violation_t: int | None = None
        self.mo_excursion: tuple[int, int] | None = None
        self.mo_ids: set[str] | None = None  # orders open at the violation's time
        self.mo_snap_at: int | None = None  # snapshot the open set once time passes this
        self.mo_snap: set[str] = set()
        self.mo_width = int(spec.refresh_s * 1e9) if spec.refresh_s > 0 else 0
        self.mo_cycles = array("l")
        self.mo_window_max = 0
        self.mo_count = 0
        # duplicate_orders (per-strategy-intent part)
        self.namer = _IntentNamer()
        self.intents: dict[str, str] = {}
        self.spans: dict[str, list[_Span]] = {}
        self.open_spans: dict[str, _Span] = {}  # order id -> its open span
        self.pending_opens: list[_Span] = []
        self.intent_dups: _First = _First()
        self.dup_cids: set[str] = set()
        # orders_closed
        self.oc_placed = 0
        self.oc_max_age = 0
        self.oc_old: _First = _First(1)
        self.oc_age_limit_ns: float | None = None
        age_limit = spec.thresholds.get("max_order_age_cycles")
        if age_limit not in (None, False) and spec.refresh_s:
            self.oc_age_limit_ns = age_limit * spec.refresh_s * 1e9
        # false_cancels
        self.fc: _First = _First()
        self.fc_by_state: dict[str, int] = {}
        self.fc_lost = 0
        self.fc_due: set[str] = set()  # client orders with a final state not judged yet
        # phantom_open
        self.ph: _First = _First()
        # final_state_exit
        self.fx: _First = _First(1)
        self.fx_kinds: dict[str, int] = {}
        self.fx_refused = 0
        # final_outcome
        self.fo: _First = _First()
        self.fo_by_kind: dict[str, int] = {}
        self.fo_judged = self.fo_not_final = self.fo_lost = self.fo_unknown = 0
        # place_resolves
        self.pl: _First = _First(1)
        self.pl_started = self.pl_pending = 0
        self.pl_latencies = array("d")
        # cancel_resolves
        self.cancel_first: dict[str, tuple[int, int]] = {}  # cid -> earliest (t, index) a cancel was asked for
        self.cancel_deferred: dict[str, list[tuple[int, int]]] = {}  # order id -> signs not yet tied to a cid
        self.cr: _First = _First(1)
        self.cr_keys = self.cr_pending = self.cr_noop = 0
        self.cr_latencies = array("d")
        # requote
        self.has_strategy = False
        self.quoted: dict[str, int] = {}  # cid -> time of its CREATE
        self.rq_prev_type: str | None = None
        self.rq_last_set_t: int | None = None
        self.rq_latest_create = 0
        self.rq_pending: list[tuple[int, int, int]] = []  # (t, index, latest CREATE before it) awaiting a CREATE
        self.rq_fills: list[int] = []
        self.rq_sets = self.rq_exempt = 0
        self.rq_late: _First = _First(1)
        self.rq_gaps = array("d")
        self.rq_bound = int((spec.refresh_s + spec.requote_bound_s) * 1e9)

    # --- feeding ---------------------------------------------------------------------------

    def feed(self, rec: dict[str, Any], index: int | None = None) -> None:
        """Judge one more record. ``index``: its place in the whole trace, when the engine is fed only some
        records (one bot's of several); violations name records by it. Default: the next one."""
        i = self.n if index is None else index
        self.n = i + 1
        if type(rec) is dict:  # market data and balances, most of a run's records: no check reads them
            t, typ = rec.get("t"), rec.get("type")
            if type(t) is int and type(typ) is str and typ not in _EVENTS_JUDGED and rec.get("kind") == "event":
                self._advance_to(t)
                return
        if not isinstance(rec, dict):
            raise ValueError(f"record {i}: expected an object, got {type(rec).__name__}")
        kind = rec.get("kind")
        if kind is None and "format" in rec:
            return  # a capture header line
        typ = rec.get("type")
        if not isinstance(kind, str):
            raise ValueError(f"record {i}: field 'kind' missing or not a string")
        if not isinstance(typ, str):
            raise ValueError(f"record {i}: field 'type' missing or not a string")
        t = rec.get("t")
        if isinstance(t, bool) or not isinstance(t, int):
            raise ValueError(f"record {i}: field 't' must be integer nanoseconds, got {t!r}")
        self._advance_to(t)
        if kind == "event":
            if typ not in _EVENTS_JUDGED:
                return  # market data and balances: no check reads them
            d = _data(rec)
            if not self.server.own(d):
                return
            if typ == "CommandSubmitted" and "cancel" in str(d.get("command", "")).lower():
                self._cancel_sign(d.get("customer_order_id"), d.get("order_id"), t, i)
            if self._undecided is None:
                if self.server.source == "events":
                    self._touch(d)
                    self.server.apply_event(i, rec, d)
            else:
                self._undecided.append((i, rec, d))
                if typ in STATUS_EVENTS:
                    self._decide("events")
        elif kind == "client":
            if typ == "ORDER_STATE":
                d = _data(rec)
                cid = d.get("client_order_id")
                if cid in self.retired:
                    self.late_records += 1
                co = self.client.add_state(i, rec, d)
                frm, to = d.get("from"), d.get("to")
                if frm in TERMINAL_CLIENT:
                    if to != frm:
                        kind_ = f"{frm}->{to}"
                        self.fx_kinds[kind_] = self.fx_kinds.get(kind_, 0) + 1
                        self.fx.add(i, (i, f"{cid} left final state {frm} for {to}", {cid or ""}))
                    else:
                        self.fx_refused += 1
                if to == "PENDING_CANCEL":
                    self._cancel_sign(cid, d.get("exchange_order_id"), t, i)
                if to == "FILLED" and cid in self.quoted:
                    self.rq_fills.append(t)
                if to in TERMINAL_CLIENT:
                    self.fc_due.add(co.cid)
            elif typ == "ORDER_FILL":
                self.client.add_fill(rec, _data(rec))
        elif kind == "strategy":
            if typ == "CREATE" or typ == "CANCEL":
                self._strategy(i, t, typ, _data(rec))
        elif kind == "meta":
            if typ not in self.meta:
                self.meta[typ] = (t, i)
        elif kind == "ws":
            if rec.get("dir") == "in":
                if typ in WIRE_TYPES and self._undecided is not None:
                    self._undecided.append((i, rec, _data(rec)))
            elif rec.get("dir") == "out" and typ == "CANCEL_LIMIT_ORDER":
                p = payload if isinstance(payload := _data(rec).get("payload"), dict) else {}
                self._cancel_sign(p.get("customerOrderId"), p.get("orderId"), t, i)
        elif kind == "rest":
            if rec.get("dir") == "out" and typ.startswith("DELETE /v1/orders/order"):
                body = raw if isinstance(raw := _data(rec).get("body"), dict) else {}
                self._cancel_sign(body.get("customerOrderId"), body.get("orderId"), t, i)

    def _advance_to(self, t: int) -> None:
        """A record at ``t``: the run's end so far, and every RETIRE_SCAN_NS the due judgements and retirements."""
        if t > self.t_end:
            self.t_end = t
        if self._retire_ns is not None and t >= self._next_scan:
            self._next_scan = t + self.RETIRE_SCAN_NS
            self._judge_due(t)
            self._retire(t)

    def _touch(self, d: dict[str, Any]) -> None:
        o = d.get("order")
        oid = o.get("order_id") if isinstance(o, dict) else d.get("order_id")
        if oid in self.retired:
            self.late_records += 1

    def _decide(self, source: str) -> None:
        """The exchange's evidence is known: apply what was held back, in order."""
        pending, self._undecided = self._undecided or [], None
        self.server.source = source
        for i, r, d in pending:
            if source == "events" and r["kind"] == "event":
                self.server.apply_event(i, r, d)
            elif source == "snapshot events" and r["kind"] == "event" and r["type"] == "OpenOrdersChanged":
                self.server.apply_snapshot_event(i, r, d)
            elif source == "wire" and r["kind"] == "ws":
                self.server.apply_wire(i, r, d)

    def _strategy(self, i: int, t: int, typ: str, d: dict[str, Any]) -> None:
        self.has_strategy = True
        cid = d.get("client_order_id")
        if typ == "CREATE":
            intent = self.namer.name(t, d)
            if isinstance(cid, str) and cid:
                if intent is not None:
                    self.intents[cid] = intent
                self.quoted[cid] = t
            for st, si, prev in self.rq_pending:
                self._judge_set(st, si, prev, t)
            self.rq_pending.clear()
            self.rq_latest_create = t
            if len(self.rq_fills) > 256:
                k = bisect.bisect_left(self.rq_fills, t)
                del self.rq_fills[:k]
        else:
            if self.rq_prev_type != "CANCEL" or t - (self.rq_last_set_t or 0) > 100_000_000:
                self.rq_sets += 1
                self.rq_last_set_t = t
                self.rq_pending.append((t, i, self.rq_latest_create))
            self._cancel_sign(cid, None, t, i)
        self.rq_prev_type = typ

    def _judge_set(self, t: int, i: int, prev_create: int, create_t: int | None, cutoff: int = 0) -> None:
        bound = self.rq_bound
        if create_t is None or create_t - t > bound:
            k = bisect.bisect_left(self.rq_fills, prev_create)
            if k < len(self.rq_fills) and self.rq_fills[k] <= t + bound:
                self.rq_exempt += 1
                return
        if create_t is not None:
            self.rq_gaps.append(_s(create_t - t))
            if create_t - t > bound:
                self.rq_late.add(i, (i, f"fresh quotes {_s(create_t - t):.3f}s after the cancel set "
                                        f"(bound {_s(bound):.3f}s)", set()))
        elif t + bound < cutoff:
            self.rq_late.add(i, (i, f"no fresh quotes after the cancel set (bound {_s(bound):.3f}s)", set()))

    def _cid_for_oid(self, oid: str) -> str | None:
        o = self.server.orders.get(oid)
        cid = (o.cid or self.client.cid_by_eid.get(oid)) if o is not None else None
        return cid or self.client.cid_by_eid.get(oid)

    def _cancel_sign(self, cid: Any, oid: Any, t: int, i: int) -> None:
        if not cid and oid:
            cid = self._cid_for_oid(oid)
            if cid is None:
                self.cancel_deferred.setdefault(oid, []).append((t, i))
                return
        if cid:
            first = self.cancel_first.get(cid)
            if first is None or (t, i) < first:
                self.cancel_first[cid] = (t, i)

    def _resolve_deferred(self, oids: Iterable[str]) -> None:
        for oid in oids:
            signs = self.cancel_deferred.pop(oid, None)
            cid = self._cid_for_oid(oid) if signs else None
            if signs and cid:
                for t, i in signs:
                    self._cancel_sign(cid, None, t, i)

    # --- the exchange's orders as they change (ServerListener) -----------------------------

    def advance(self, t: int) -> None:
        self._flush_series(t)
        if self.mo_snap_at is not None and t > self.mo_snap_at:
            self.mo_snap = set(self.server.open_now)
            self.mo_snap_at = None
        if self.pending_opens:
            self._judge_opens()

    def changed(self, order: ServerOrder, t: int, index: int, is_open: bool, status: str) -> None:
        if order.order_id in self.retired:
            self.late_records += 1
        if status == "Filled" and order.cid in self.quoted:
            self.rq_fills.append(t)
        if is_open:
            cid = self._cid_of(order)
            intent = self.intents.get(cid) if cid else None
            if intent is not None:
                span = _Span(t, index, order)
                self.spans.setdefault(intent, []).append(span)
                self.open_spans[order.order_id] = span
                self.pending_opens.append(span)
        else:
            closing = self.open_spans.pop(order.order_id, None)
            if closing is not None:
                closing.end = t

    def counted(self, t: int, index: int, count: int) -> None:
        self.mo_batch.append((t, index, count))

    def _cid_of(self, order: ServerOrder) -> str | None:
        return order.cid or self.client.cid_by_eid.get(order.order_id)

    def _judge_opens(self) -> None:
        for span in self.pending_opens:
            o = span.order
            cid = self._cid_of(o)
            intent = self.intents.get(cid) if cid else None
            if intent is None:
                continue
            for p in self.spans.get(intent, ()):
                if p is span:
                    break
                if p.order is not o and p.order.cid != o.cid and (p.end is None or span.start < p.end):
                    self.intent_dups.add(span.index, Duplicate(span.index, intent, o.order_id, p.order.order_id))
                    break
        self.pending_opens.clear()

    def _flush_series(self, until_next: int) -> None:
        """Judge the series entries of the latest change time, now that the next change time is known."""
        batch = self.mo_batch
        if not batch:
            return
        spec = self.spec
        limit = self.mo_limit
        for n, (t, i, count) in enumerate(batch):
            until = batch[n + 1][0] if n + 1 < len(batch) else until_next
            if count > self.mo_peak:
                self.mo_peak, self.mo_peak_t = count, t
            self.mo_final = count
            self._cycle_entry(t, count)
            if self.mo_violation is not None:
                continue
            if count > limit + spec.slack:
                self.mo_violation = (i, f"{count} open orders, above {limit} + slack {spec.slack}")
                self.mo_violation_t = t
                self.mo_snap_at = t
            elif count > limit:
                if self.mo_excursion is None:
                    self.mo_excursion = (t, i)
                    self.mo_snap_at = t
                if until - self.mo_excursion[0] > self._grace_ns:
                    self.mo_violation = (self.mo_excursion[1], f"above {limit} open orders for longer than "
                                                               f"{spec.grace_s}s")
                    self.mo_violation_t = self.mo_excursion[0]
            else:
                self.mo_excursion = None
        batch.clear()
        if self.mo_violation is not None and self.mo_ids is None:
            if self.mo_snap_at is not None and until_next > self.mo_snap_at:
                self.mo_snap = set(self.server.open_now)
                self.mo_snap_at = None
            if self.mo_snap_at is None:
                self.mo_ids = self.mo_snap

    def _cycle_entry(self, t: int, count: int) -> None:
        """The largest open count in each refresh window [k*refresh_s, (k+1)*refresh_s)."""
        if not self.mo_width:
            return
        w = t // self.mo_width
        while len(self.mo_cycles) < min(w, 100_000):
            self.mo_cycles.append(self.mo_window_max)
            self.mo_window_max = self.mo_count
        self.mo_count = count
        self.mo_window_max = max(self.mo_window_max, count)

    # --- settled orders --------------------------------------------------------------------

    def _retire(self, now: int) -> None:
        """Judge and forget the orders nothing more can happen to: final for the client, closed on the
        exchange, nothing about them for ``retire_after_s``."""
        horizon = now - (self._retire_ns or 0)
        server, client = self.server, self.client
        for cid in list(client.final_ids):
            co = client.orders[cid]
            sos = server.orders_for(cid, co.exchange_ids)
            if any(o.is_open for o in sos):
                continue
            last = max([co.last_t, self.quoted.get(cid, 0), self.cancel_first.get(cid, (0, 0))[0]]
                       + [o.last_t for o in sos])
            if last > horizon:
                continue
            self._resolve_deferred([*co.exchange_ids, *(o.order_id for o in sos)])
            self._judge_client(cid, co, sos, now)
            self._judge_cancel(cid, now)
            for o in sos:
                self._judge_server(o, now)
                self._forget_server(o)
            client.remove(co)
            self._forget_cid(cid)
        for oid in list(server.closed_ids):
            o = server.orders[oid]
            owner = self._cid_of(o)
            if o.last_t > horizon or (owner and owner in client.orders):
                continue
            self._resolve_deferred([oid])
            self._judge_server(o, now)
            self._forget_server(o)
            if owner and owner not in server.by_cid and self.cancel_first.get(owner, (now, 0))[0] <= horizon:
                self._judge_cancel(owner, now)
                self._forget_cid(owner)
        for cid, (t0, _) in list(self.cancel_first.items()):
            if t0 <= horizon and cid not in client.orders and cid not in server.by_cid:
                self._judge_cancel(cid, now)
                self._forget_cid(cid)
        for cid, t in list(self.quoted.items()):
            if t <= horizon and cid not in client.orders and cid not in server.by_cid and cid not in self.cancel_first:
                self._forget_cid(cid)

    def _retired(self, ident: str) -> None:
        self.retired[ident] = None
        if len(self.retired) > RETIRED_KEPT:
            del self.retired[next(iter(self.retired))]

    def _forget_server(self, o: ServerOrder) -> None:
        self.server.remove(o)
        self._retired(o.order_id)
        self.retired_orders += 1
        self.open_spans.pop(o.order_id, None)
        for intent in [k for k, spans in self.spans.items() if any(s.order is o for s in spans)]:
            rest = [s for s in self.spans[intent] if s.order is not o]
            if rest:
                self.spans[intent] = rest
            else:
                del self.spans[intent]

    def _forget_cid(self, cid: str) -> None:
        self._retired(cid)
        self.cancel_first.pop(cid, None)
        self.quoted.pop(cid, None)
        self.intents.pop(cid, None)

    def _judge_server(self, o: ServerOrder, t_end: int) -> None:
        """orders_closed's part of one exchange order (closed ones at retirement, all at the end)."""
        if not o.ever_open:
            return
        self.oc_placed += 1
        for start, end, idx in o.open_intervals(t_end):
            age = end - start
            self.oc_max_age = max(self.oc_max_age, age)
            if self.oc_age_limit_ns is not None and age > self.oc_age_limit_ns:
                self.oc_old.add((idx, o.order_id), o)

    def _judge_client(self, cid: str, co: ClientOrder, sos: list[ServerOrder], t_end: int) -> None:
        """false_cancels, phantom_open, final_outcome and place_resolves for one client order."""
        if sos:
            self._false_cancel(cid, co, sos, t_end)
            self._phantom(cid, co, sos, t_end)
        self._outcome(cid, co, sos)
        self._placement(cid, co, t_end)

    def _judge_due(self, now: int) -> None:
        """false_cancels as the run goes: a final state is judged once grace_s has passed (what the exchange
        held open then is known for good), not when its order settles; a false cancel's order never does."""
        for cid in list(self.fc_due):
            co = self.client.orders.get(cid)
            if co is None or co.fc_done or co.fc_cursor >= len(co.states):
                self.fc_due.discard(cid)
                continue
            sos = self.server.orders_for(cid, co.exchange_ids)
            if sos:
                self._false_cancel(cid, co, sos, now, decided_by=now)

    def _false_cancel(self, cid: str, co: ClientOrder, sos: list[ServerOrder], t_end: int,
                      decided_by: int | None = None) -> None:
        """Judge the client's final states from where the last call stopped; ``decided_by``: only those whose
        moment of judgement (grace_s after them) has passed by then."""
        states = co.states
        while not co.fc_done and co.fc_cursor < len(states):
            st = states[co.fc_cursor]
            if st.to in TERMINAL_CLIENT:
                check_at = min(st.t + self._grace_ns, t_end)
                if decided_by is not None and check_at >= decided_by:
                    return
                live = [o for o in sos if o.open_at(check_at)]
                if live:
                    if st.where == "lost":
                        # The lost set means "unknown, keep cancelling": not a belief that it is done.
                        self.fc_lost += 1
                    else:
                        self.fc_by_state[st.to] = self.fc_by_state.get(st.to, 0) + 1
                        self.fc.add((st.index, cid), (st.index, cid, st.to, {cid, *(o.order_id for o in live)}))
                        co.fc_done = True
            co.fc_cursor += 1

    def _phantom(self, cid: str, co: ClientOrder, sos: list[ServerOrder], t_end: int) -> None:
        changes = sorted((c[0], c[1]) for o in sos for c in o.changes)
        states = co.states
        n = 0
        while n < len(states):
            st = states[n]
            # I3 judges the tracker's active orders; an OPEN in the cache (a resurrection)
            # is final_state_exit's business. No `where` at all (a foreign adapter): judged.
            # A stretch starts at OPEN/PARTIALLY_FILLED and goes on through PENDING_CANCEL: the
            # order is still believed on the book while it is being cancelled.
            if st.to not in BELIEVED_OPEN or st.where not in ("active", None):
                n += 1
                continue
            m = n + 1
            while m < len(states) and states[m].to in STILL_ON_BOOK and states[m].where in ("active", None):
                m += 1
            b = states[m].t if m < len(states) else t_end
            hit = _mismatch(sos, changes, st.t, st.index, b, self._grace_ns)
            if hit is not None:
                self.ph.add((hit[0], hit[1], cid), (hit[0], hit[1], cid))
                return
            n = m

    def _outcome(self, cid: str, co: ClientOrder, sos: list[ServerOrder]) -> None:
        last = co.states[-1]
        if last.to not in TERMINAL_CLIENT:
            return  # the client does not believe it final: nothing to compare
        if last.where == "lost" or last.lost_resolved:
            self.fo_lost += 1  # "unknown, keep cancelling" (or dropped once resolved): not a belief
            return
        if any(o.is_open for o in sos):
            self.fo_not_final += 1  # orphans' business
            return
        # the record where the client declared its final state (the start of the last stretch in it)
        k = len(co.states) - 1
        while k > 0 and co.states[k - 1].to == last.to:
            k -= 1
        declared = co.states[k]
        self.fo_judged += 1
        if not sos:
            if last.to == "FILLED":  # nothing was ever on the exchange to fill
                self._mismatch_found("FILLED vs absent", declared.index, cid,
                                     f"client declared {cid} FILLED but the exchange never had it", {cid})
            return
        # an order that was on the book (not a refused duplicate attempt under the same
        # customerOrderId); the one the client knows, else the most advanced outcome among them
        lived = [o for o in sos if o.ever_open] or sos
        known = [o for o in lived if o.order_id in co.exchange_ids] or lived
        rank = {"Filled": 3, "Cancelled": 2, "Failed": 1}
        order = max(known, key=lambda o: (rank.get(o.status, 0), o.status_index))
        if order.status not in rank:
            self.fo_unknown += 1  # closed by a snapshot that no longer lists it: how it ended is unknown
            self.fo_judged -= 1
            return
        ids = {cid, order.order_id}
        if order.status not in _OUTCOME_AGREES[last.to]:
            self._mismatch_found(f"{last.to} vs {order.status or 'unknown'}", declared.index, cid,
                                 f"client declared {cid} {last.to} but the exchange ended it "
                                 f"{order.status or 'unknown'} (order {order.order_id})", ids)
            return
        if last.to == "FILLED":
            return  # Filled on both sides: the whole amount executed
        client_exec = max((a for e in [s.executed for s in co.states] + co.fill_executed
                           if (a := _amount(e)) is not None), default=None)
        server_exec = _amount(order.filled)
        if client_exec is not None and server_exec is not None and client_exec != server_exec:
            self._mismatch_found(f"{last.to} executed {client_exec} vs {server_exec}", declared.index, cid,
                                 f"client declared {cid} {last.to} having executed {client_exec}, "
                                 f"the exchange executed {server_exec} (order {order.order_id})", ids)

    def _mismatch_found(self, kind: str, index: int, cid: str, what: str, ids: set[str]) -> None:
        self.fo_by_kind[kind] = self.fo_by_kind.get(kind, 0) + 1
        self.fo.add((index, cid), (index, cid, what, ids))

    def _placement(self, cid: str, co: ClientOrder, t_end: int) -> None:
        bound = int(self.spec.place_resolve_s * 1e9)
        start = next((s for s in co.states if s.to == "PENDING_CREATE"), None)
        if start is None:
            return
        self.pl_started += 1
        end = next((s for s in co.states if (s.t, s.index) > (start.t, start.index) and s.to in _RESOLVING), None)
        if end is not None:
            lat = end.t - start.t
            self.pl_latencies.append(_s(lat))
            if lat > bound:
                self.pl.add((start.t + bound, start.index, cid),
                            (start.index, f"placement of {cid} took {_s(lat):.3f}s ({end.to})", {cid}))
        elif t_end - start.t > bound:
            self.pl.add((start.t + bound, start.index, cid), (start.index, f"placement of {cid} never resolved", {cid}))
        else:
            self.pl_pending += 1

    def _judge_cancel(self, cid: str, t_end: int) -> None:
        first = self.cancel_first.get(cid)
        if first is None:
            return
        bound = int(self.spec.cancel_resolve_s * 1e9)
        self.cr_keys += 1
        co = self.client.orders.get(cid)
        states = co.states if co else []
        t0, i0 = first
        before = co.state_before(t0, i0) if co else None
        if before is not None and before.to in TERMINAL_CLIENT and before.where != "lost":
            self.cr_noop += 1  # already final when the cancel was asked for: nothing to resolve
            return
        end = next((s for s in states if (s.t, s.index) >= (t0, i0) and s.to in ("CANCELED", "FILLED")), None)
        if end is not None:
            lat = end.t - t0
            self.cr_latencies.append(_s(lat))
            if lat > bound:
                self.cr.add((t0 + bound, i0, cid), (i0, f"cancel of {cid} took {_s(lat):.3f}s", {cid}))
        elif t_end - t0 > bound:
            last = states[-1].to if states else "unknown to the client"
            self.cr.add((t0 + bound, i0, cid), (i0, f"cancel of {cid} never resolved (client state {last})", {cid}))
        else:
            self.cr_pending += 1

    # --- progress ----------------------------------------------------------------------------

    @property
    def open_orders(self) -> int:
        """The account's open orders on the exchange now (as far as the records told)."""
        return len(self.server.open_now)

    def violated_so_far(self) -> list[str]:
        """Checks already beyond their threshold, of those judged as the run goes (the others, e.g.
        orphans, are judged at the end; a settled order's checks once it is retired)."""
        counts = {
            "max_open_orders": 1 if self.mo_violation is not None and self.mo_threshold is not None else 0,
            "duplicate_orders": len(self.server.duplicates) + self.intent_dups.count,
            "false_cancels": self.fc.count,
            "phantom_open": self.ph.count,
            "final_state_exit": self.fx.count,
            "final_outcome": self.fo.count,
            "place_resolves": self.pl.count,
            "cancel_resolves": self.cr.count,
            "requote": self.rq_late.count,
        }
        out = []
        for name, value in counts.items():
            if name == "max_open_orders":
                if value:
                    out.append(name)
                continue
            _, limit = _limit(self.spec, name)
            if limit is not None and value > limit:
                out.append(name)
        return out

    # --- the end -----------------------------------------------------------------------------

    def results(self, records: Sequence[dict[str, Any]] | None = None) -> list[CheckResult]:
        """Every check, in CHECK_NAMES order, once the last record is fed (call it once: it judges what is
        left). ``records`` (the same records, by index) gives the violations' records and timelines;
        without it they have none."""
        if self._undecided is not None:
            pending = self._undecided
            if any(r["kind"] == "event" and r["type"] == "OpenOrdersChanged" for _, r, _ in pending):
                self._decide("snapshot events")
            elif any(r["kind"] == "ws" for _, r, _ in pending):
                self._decide("wire")
            else:
                self._decide("none")
        t_end = self.t_end
        self._flush_series(t_end)
        if self.mo_snap_at is not None:
            self.mo_snap = set(self.server.open_now)
            self.mo_snap_at = None
        if self.mo_violation is not None and self.mo_ids is None:
            self.mo_ids = self.mo_snap
        self._judge_opens()
        if self.mo_width:
            while len(self.mo_cycles) < min(t_end // self.mo_width + 1, 100_000):
                self.mo_cycles.append(self.mo_window_max)
                self.mo_window_max = self.mo_count
        self._resolve_deferred(list(self.cancel_deferred))
        for cid, co in self.client.orders.items():
            self._judge_client(cid, co, self.server.orders_for(cid, co.exchange_ids), t_end)
        for o in self.server.orders.values():
            self._judge_server(o, t_end)
        for cid in self.cancel_first:
            self._judge_cancel(cid, t_end)
        cutoff = self.meta.get("SHUTDOWN_BEGIN", (t_end, 0))[0]  # cancel sets with no CREATE after them
        for t, i, prev in self.rq_pending:
            self._judge_set(t, i, prev, None, cutoff)
        self.rq_pending.clear()
        return _Results(self, records).all()


_RESOLVING = frozenset({"OPEN", "PARTIALLY_FILLED", "FILLED", "FAILED", "CANCELED"})


def _sorted_counts(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items()))


class _Results:
    """Turns a fed engine's state into CheckResults (thresholds, figures, messages, timelines)."""

    def __init__(self, engine: CheckEngine, records: Sequence[dict[str, Any]] | None):
        self.e = engine
        self.spec = engine.spec
        self.records = records
        self._show: _Show | None = None

    def all(self) -> list[CheckResult]:
        e = self.e
        results = []
        no_server = e.server.source == "none"
        makers = {
            "max_open_orders": self.max_open_orders,
            "duplicate_orders": self.duplicate_orders,
            "nothing_open_after_shutdown": self.nothing_open_after_shutdown,
            "orders_closed": self.orders_closed,
            "false_cancels": self.false_cancels,
            "orphans": self.orphans,
            "phantom_open": self.phantom_open,
            "final_state_exit": self.final_state_exit,
            "final_outcome": self.final_outcome,
            "place_resolves": self.place_resolves,
            "cancel_resolves": self.cancel_resolves,
            "requote": self.requote,
        }
        for name in CHECK_NAMES:
            if name in _CLIENT_CHECKS and not e.client.present:
                results.append(_skipped(name, "no client ORDER_STATE records in the trace"))
            elif name in _NEEDS_SERVER and no_server:
                results.append(_skipped(name, "no exchange order events or account-stream order messages in the "
                                              "trace"))
            else:
                results.append(makers[name]())
        return results

    # --- judging helpers

    def violation(self, index: int, what: str) -> dict[str, Any]:
        rec = self.records[index] if self.records is not None else {}
        return {"index": index, "t_s": _s(rec.get("t", 0)), "record": rec, "what": what}

    def timeline(self, index: int, ids: Iterable[str] = ()) -> list[str]:
        if self.records is None:
            return []
        if self._show is None:
            self._show = _Show(self.records)
        return build_timeline(self.records, index, ids, self._show)

    def judge(self, name: str, value: float, figures: dict[str, Any], violation: tuple[int, str, set[str]] | None,
              what: str) -> CheckResult:
        """Compare ``value`` with the check's threshold (and any figure limits)."""
        key, limit = _limit(self.spec, name)
        held: bool | None = None
        notes = []
        if limit is not None:
            held = value <= limit
            notes.append(f"{what} {value} (allowed {limit})")
        else:
            notes.append(f"{what} {value} (switched off)")
        for fkey, (check, figure) in FIGURE_LIMITS.items():
            if check != name or fkey not in self.spec.thresholds or self.spec.thresholds[fkey] is False:
                continue
            flimit = self.spec.thresholds[fkey]
            fvalue = figures.get(figure)
            ok = fvalue is None or fvalue <= flimit
            notes.append(f"{figure} {fvalue} (allowed {flimit})")
            held = ok if held is None else (held and ok)
        return self.result(name, held, figures, violation, "; ".join(notes))

    def result(self, name: str, held: bool | None, figures: dict[str, Any],
               violation: tuple[int, str, set[str]] | None, core: str) -> CheckResult:
        """With held=None a violation is still named (for information), never when held=True."""
        fv = None
        timeline: list[str] = []
        if violation is not None and held is not True:
            index, text, ids = violation
            fv = self.violation(index, text)
            timeline = self.timeline(index, ids)
            core += f"; first: record {index} at {fv['t_s']:.3f}s: {text}"
        verdict = {True: "held", False: "FAILED", None: "figures only"}[held]
        return CheckResult(name, held, figures, fv, f"{name} {verdict}: {core}", timeline)

    def first_open(self, orders: list[ServerOrder], what: str) -> tuple[int, str, set[str]] | None:
        if not orders:
            return None
        first = min(orders, key=lambda o: o.last_open_index())
        cid = self.e._cid_of(first)
        return (first.last_open_index(), f"order {first.order_id} (cid {cid}) {what}", {first.order_id, cid or ""})

    # --- server-side

    def max_open_orders(self) -> CheckResult:
        e, spec = self.e, self.spec
        cycles = list(e.mo_cycles)
        figures = {
            "peak": e.mo_peak,
            "peak_t_s": _s(e.mo_peak_t),
            "final": e.mo_final,
            "limit": e.mo_limit,
            "slack": spec.slack,
            "per_cycle_max": cycles,
            "cycles_above_limit": sum(1 for c in cycles if c > e.mo_limit),
            "source": e.server.source,
        }
        held = None if e.mo_threshold is None else e.mo_violation is None
        core = (f"peak {e.mo_peak} (limit {e.mo_limit}, slack {spec.slack}"
                + (", switched off)" if e.mo_threshold is None else ")"))
        violation = None
        if e.mo_violation is not None:
            violation = (e.mo_violation[0], e.mo_violation[1], set(e.mo_ids or ()))
        return self.result("max_open_orders", held, figures, violation, core)

    def duplicate_orders(self) -> CheckResult:
        e = self.e
        dups = e.server.duplicates
        intent_dups = e.intent_dups
        figures = {
            "duplicates": len(dups),
            "intent_duplicates": intent_dups.count,
            "failed_duplicate_attempts": len(e.server.failed_duplicate_attempts),
            "cids": sorted({d.cid for d in dups})[:20],
            "intents": [d.cid for d in intent_dups.findings()][:20],
            "source": e.server.source,
        }
        violation = None
        if dups:
            d = dups[0]
            violation = (d.index, f"order {d.order_id} accepted with customerOrderId {d.cid} while {d.other} is open",
                         {d.cid, d.order_id, d.other})
        first = intent_dups.first
        if first is not None and (violation is None or first.index < violation[0]):
            d = first
            violation = (d.index, f"order {d.order_id} open for strategy intent {d.cid} while {d.other} (same "
                                  "intent, another customerOrderId) is open", {d.order_id, d.other})
        return self.judge("duplicate_orders", len(dups) + intent_dups.count, figures, violation,
                          "accepted duplicates")

    def nothing_open_after_shutdown(self) -> CheckResult:
        e = self.e
        left = [e.server.orders[o] for o in sorted(e.server.open_now)]
        done = "SHUTDOWN_DONE" in e.meta
        figures: dict[str, Any] = {
            "open_at_end": len(left),
            "order_ids": [o.order_id for o in left][:20],
            "shutdown_done": done,
            "source": e.server.source,
        }
        if done:
            t_done = e.meta["SHUTDOWN_DONE"][0]
            figures["open_at_shutdown_done"] = sum(1 for o in e.server.orders.values() if o.open_at(t_done))
        violation = self.first_open(left, "still open at the end"
                                    + ("" if done else " (no SHUTDOWN_DONE in the trace)"))
        return self.judge("nothing_open_after_shutdown", len(left), figures, violation, "open after shutdown")

    def orders_closed(self) -> CheckResult:
        e, spec = self.e, self.spec
        unclosed = [o for o in e.server.orders.values() if o.is_open]
        figures = {
            "placed": e.oc_placed,
            "unclosed": len(unclosed),
            "unclosed_ids": [o.order_id for o in unclosed][:20],
            "max_open_s": round(_s(e.oc_max_age), 6),
            "max_open_cycles": round(_s(e.oc_max_age) / spec.refresh_s, 3) if spec.refresh_s else None,
            "source": e.server.source,
        }
        violation = self.first_open(unclosed, "never closed")
        age_limit = spec.thresholds.get("max_order_age_cycles")
        if violation is None and e.oc_old.first is not None:
            (idx, _), o = e.oc_old.items[0]
            violation = (idx, f"order {o.order_id} open longer than {age_limit} cycles", {o.order_id})
        return self.judge("orders_closed", len(unclosed), figures, violation, "unclosed orders")

    # --- client-side

    def false_cancels(self) -> CheckResult:
        e = self.e
        found = e.fc.findings()
        figures = {
            "false_cancels": e.fc.count,
            "by_state": _sorted_counts(e.fc_by_state),
            "cids": [f[1] for f in found][:20],
            "lost_while_open": e.fc_lost,
        }
        violation = None
        if found:
            idx, cid, to, ids = found[0]
            violation = (idx, f"client marked {cid} {to} but the exchange still holds it open {self.spec.grace_s}s "
                              "later", ids)
        return self.judge("false_cancels", e.fc.count, figures, violation, "false cancels")

    def orphans(self) -> CheckResult:
        e = self.e
        orphans: list[tuple[int, ServerOrder, str | None, str]] = []
        for oid in sorted(e.server.open_now):
            o = e.server.orders[oid]
            cid = e._cid_of(o)
            co = e.client.orders.get(cid) if cid else None
            if co is None:
                orphans.append((o.last_open_index(), o, cid, "unknown to the client"))
                continue
            last = co.states[-1]
            if last.where in TRACKED_WHERE:
                continue
            # the record where the client stopped tracking it (left active/lost for good)
            idx = last.index
            for st in reversed(co.states):
                if st.where in TRACKED_WHERE:
                    break
                idx = st.index
            orphans.append((idx, o, cid, f"open on the exchange, client has it {last.to} in {last.where}"))
        orphans.sort(key=lambda x: x[0])
        figures = {
            "orphans": len(orphans),
            "unknown_to_client": sum(1 for x in orphans if x[3] == "unknown to the client"),
            "order_ids": [x[1].order_id for x in orphans][:20],
        }
        violation = None
        if orphans:
            idx, o, cid, why = orphans[0]
            violation = (idx, f"order {o.order_id} (cid {cid}): {why}", {o.order_id, cid or ""})
        return self.judge("orphans", len(orphans), figures, violation, "orphans at end")

    def phantom_open(self) -> CheckResult:
        e = self.e
        found = e.ph.findings()
        figures = {"phantom_open": e.ph.count, "cids": [f[2] for f in found][:20]}
        violation = None
        if found:
            _, idx, cid = found[0]
            violation = (idx, f"client believes {cid} OPEN (or being cancelled) but the exchange has not held it "
                              f"open for {self.spec.grace_s}s", {cid})
        return self.judge("phantom_open", e.ph.count, figures, violation, "phantom open orders")

    def final_state_exit(self) -> CheckResult:
        # A refused transition is traced with from == to (the order stayed final, the refused
        # state is in "requested"): the guard did its job, so it is not an exit.
        e = self.e
        figures = {"exits": e.fx.count, "transitions": _sorted_counts(e.fx_kinds), "refused": e.fx_refused}
        return self.judge("final_state_exit", e.fx.count, figures, e.fx.first, "exits from a final state")

    def final_outcome(self) -> CheckResult:
        """Each order's last client ORDER_STATE against the exchange's final status at the end of the run."""
        e = self.e
        found = e.fo.findings()
        figures = {
            "mismatches": e.fo.count,
            "by_kind": _sorted_counts(e.fo_by_kind),
            "cids": [f[1] for f in found][:20],
            "judged": e.fo_judged,
            "not_final_on_exchange": e.fo_not_final,
            "unknown_outcome": e.fo_unknown,
            "lost": e.fo_lost,
        }
        violation = (found[0][0], found[0][2], found[0][3]) if found else None
        return self.judge("final_outcome", e.fo.count, figures, violation, "final outcome mismatches")

    def place_resolves(self) -> CheckResult:
        e = self.e
        lat = list(e.pl_latencies)
        figures = {
            "placements": e.pl_started,
            "late_or_unresolved": e.pl.count,
            "pending_at_end": e.pl_pending,
            "p50_ms": _ms(_pct(lat, 50)),
            "p99_ms": _ms(_pct(lat, 99)),
            "max_ms": _ms(max(lat, default=None) if lat else None),
        }
        return self.judge("place_resolves", e.pl.count, figures, e.pl.first, "placements not resolved in time")

    def cancel_resolves(self) -> CheckResult:
        e = self.e
        lat = list(e.cr_latencies)
        figures = {
            "cancels": e.cr_keys,
            "late_or_unresolved": e.cr.count,
            "pending_at_end": e.cr_pending,
            "already_final": e.cr_noop,
            "p50_ms": _ms(_pct(lat, 50)),
            "p99_ms": _ms(_pct(lat, 99)),
            "max_ms": _ms(max(lat) if lat else None),
        }
        return self.judge("cancel_resolves", e.cr.count, figures, e.cr.first, "cancels not resolved in time")

    def requote(self) -> CheckResult:
        e = self.e
        if not e.has_strategy:
            return _skipped("requote", "no strategy records in the trace")
        gaps = list(e.rq_gaps)
        figures = {
            "cancel_sets": e.rq_sets,
            "late": e.rq_late.count,
            "exempt_after_fill": e.rq_exempt,
            "p50_gap_ms": _ms(_pct(gaps, 50)),
            "max_gap_ms": _ms(max(gaps) if gaps else None),
        }
        return self.judge("requote", e.rq_late.count, figures, e.rq_late.first, "late requotes")


def _mismatch(
    orders: list[ServerOrder], changes: list[tuple[int, int]], a: int, a_index: int, b: int, grace_ns: int
) -> tuple[int, int] | None:
    """First stretch inside [a, b) longer than grace during which no order is open on the exchange."""

    def any_open(t: int) -> bool:
        return any(o.open_at(t) for o in orders)

    start: tuple[int, int] | None = None if any_open(a) else (a, a_index)
    for t, idx in changes:
        if t <= a:
            continue
        if t >= b:
            break
        if start is not None and t - start[0] > grace_ns:
            return (start[0] + grace_ns, start[1])
        is_open = any_open(t)
        if is_open:
            start = None
        elif start is None:
            start = (t, idx)
    if start is not None and b - start[0] > grace_ns:
        return (start[0] + grace_ns, start[1])
    return None


# The outcomes a client's final state agrees with. CANCELED and FAILED both say "off the book, and no
# more will fill": which one it was does not change the position (the executed amount is compared too).
_OUTCOME_AGREES = {
    "FILLED": {"Filled"},
    "CANCELED": {"Cancelled", "Failed"},
    "FAILED": {"Failed", "Cancelled"},
}


def _amount(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(value)
    except (InvalidOperation, ValueError):
        return None


def _limit(spec: CheckSpec, name: str) -> tuple[str | None, float | None]:
    for key in THRESHOLD_KEYS[name]:
        if key in spec.thresholds:
            value = spec.thresholds[key]
            if value is True:
                return key, 0
            if value is False:
                return key, None
            return key, value
    if name in DEFAULT_THRESHOLDS:
        return "(default)", DEFAULT_THRESHOLDS[name]
    return None, None


def _skipped(name: str, why: str) -> CheckResult:
    return CheckResult(name, None, {}, None, f"{name}: not judged: {why}", [])


_SERVER_CHECKS = ("max_open_orders", "duplicate_orders", "nothing_open_after_shutdown", "orders_closed")
_CLIENT_CHECKS = ("false_cancels", "orphans", "phantom_open", "final_state_exit", "final_outcome",
                  "place_resolves", "cancel_resolves")
_NEEDS_SERVER = {*_SERVER_CHECKS, "false_cancels", "orphans", "phantom_open", "final_outcome"}


def run_checks(records: Iterable[dict[str, Any]], spec: CheckSpec | None = None, *,
               belongs: Callable[[dict[str, Any]], bool] | None = None) -> list[CheckResult]:
    """Every check over one run's records (capture header line allowed), in CHECK_NAMES order.

    ``belongs``: judge only the records it accepts (one bot's of several on one exchange); violations
    still name records by their index in ``records``, and timelines show all of them."""
    records = records if isinstance(records, list) else list(records)
    engine = CheckEngine(spec)
    for i, rec in enumerate(records):
        if belongs is None or belongs(rec):
            engine.feed(rec, i)
    return engine.results(records)
