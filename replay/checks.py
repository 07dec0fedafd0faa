"""Invariants over a run's trace: pure functions over a list of record dicts.

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

``run_checks(records, spec)`` returns one ``CheckResult`` per check, in ``CHECK_NAMES`` order.
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
from dataclasses import asdict, dataclass, field, is_dataclass
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, Iterable

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


def _normalise(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    out = list(records)
    for i, rec in enumerate(out):
        if not isinstance(rec, dict):
            raise ValueError(f"record {i}: expected an object, got {type(rec).__name__}")
        if "format" in rec and "kind" not in rec:
            continue  # a capture header line
        for name in ("kind", "type"):
            if not isinstance(rec.get(name), str):
                raise ValueError(f"record {i}: field {name!r} missing or not a string")
        t = rec.get("t")
        if isinstance(t, bool) or not isinstance(t, int):
            raise ValueError(f"record {i}: field 't' must be integer nanoseconds, got {t!r}")
    return out


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


@dataclass
class ServerOrder:
    order_id: str
    cid: str | None
    first_index: int
    # (t_ns, index, is_open, status): one entry per change of openness
    changes: list[tuple[int, int, bool, str]] = field(default_factory=list)
    status: str = ""
    filled: str | None = None  # executed base amount at the latest status (None: not reported)
    status_index: int = -1  # the record of the latest status

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


class ServerView:
    def __init__(self, records: list[dict[str, Any]], account: str):
        self.account = account
        self.orders: dict[str, ServerOrder] = {}
        self.open_now: set[str] = set()
        self.series: list[tuple[int, int, int]] = []  # (t, index, open count) after each change
        self.duplicates: list[Duplicate] = []
        self.failed_duplicate_attempts: dict[str, int] = {}  # order id -> first record index
        self.source = "none"
        self._by_cid: dict[str, list[ServerOrder]] | None = None  # built on first use
        self.cancel_commands: list[tuple[int, int, str | None, str | None]] = []  # t, idx, oid, cid
        self._build(records)

    def _own(self, data: dict[str, Any]) -> bool:
        return data.get("account", self.account) == self.account

    def _build(self, records: list[dict[str, Any]]) -> None:
        events = [
            (i, r)
            for i, r in enumerate(records)
            if _is_record(r) and r["kind"] == "event" and self._own(_data(r))
        ]
        events.sort(key=lambda x: (x[1]["t"], x[0]))  # a trace is in time order; be safe anyway
        status_types = {"OrderStatusChanged", "AccountTrade", "OrderFailed", "OrderProcessed"}
        has_status = any(r["type"] in status_types for _, r in events)
        has_snapshots = any(r["type"] == "OpenOrdersChanged" for _, r in events)
        for i, r in events:
            d = _data(r)
            if r["type"] == "CommandSubmitted" and "cancel" in str(d.get("command", "")).lower():
                self.cancel_commands.append((r["t"], i, d.get("order_id"), d.get("customer_order_id")))
        if has_status:
            self.source = "events"
            for i, r in events:
                self._apply_event(i, r)
        elif has_snapshots:
            self.source = "snapshot events"
            for i, r in events:
                if r["type"] == "OpenOrdersChanged":
                    orders = _data(r).get("orders") or []
                    self._apply_snapshot(r["t"], i, [(o.get("order_id"), o.get("customer_order_id")) for o in orders])
        else:
            wire = [
                (i, r)
                for i, r in enumerate(records)
                if _is_record(r)
                and r["kind"] == "ws"
                and r.get("dir") == "in"
                and r["type"] in ("ORDER_STATUS_UPDATE", "OPEN_ORDERS_UPDATE")
            ]
            wire.sort(key=lambda x: (x[1]["t"], x[0]))
            if wire:
                # No exchange events recorded: the account stream is the best evidence we
                # have. It is delayed and cannot be filtered by account.
                self.source = "wire"
            for i, r in wire:
                payload = _data(r).get("data")
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

    def _apply_event(self, i: int, r: dict[str, Any]) -> None:
        d = _data(r)
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

    def _note_failed(self, t: int, i: int, oid: str, cid: str | None, reason: str) -> None:
        if oid not in self.orders:
            self.orders[oid] = ServerOrder(oid, cid, i, [(t, i, False, "Failed")], "Failed", status_index=i)
        else:
            self.orders[oid].status = "Failed"
            self.orders[oid].status_index = i
        held_by_other = cid and any(self.orders[o].cid == cid for o in self.open_now if o != oid)
        if held_by_other or "duplicate" in reason.lower():
            self.failed_duplicate_attempts.setdefault(oid, i)

    def _apply(self, t: int, i: int, oid: str, cid: str | None, status: str, filled: str | None = None) -> None:
        order = self.orders.get(oid)
        if order is None:
            order = self.orders[oid] = ServerOrder(oid, cid, i)
        elif cid and not order.cid:
            order.cid = cid
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
        if not order.changes and not is_open:
            order.changes.append((t, i, False, status))
            return
        if is_open and order.cid:
            for other in sorted(self.open_now):
                if other != oid and self.orders[other].cid == order.cid:
                    self.duplicates.append(Duplicate(i, order.cid, oid, other))
                    break
        order.changes.append((t, i, is_open, status))
        if is_open:
            self.open_now.add(oid)
        else:
            self.open_now.discard(oid)
        self.series.append((t, i, len(self.open_now)))

    def _apply_snapshot(self, t: int, i: int, listed: list[tuple[str | None, str | None]]) -> None:
        ids = {oid for oid, _ in listed if oid}
        for gone in sorted(self.open_now - ids):  # closes first: a replacement is no excursion
            self._apply(t, i, gone, None, "absent")
        for oid, cid in listed:
            if oid:
                self._apply(t, i, oid, cid, "Placed")

    def orders_for(self, cid: str, exchange_ids: Iterable[str] = ()) -> list[ServerOrder]:
        """The exchange orders of client order ``cid`` (by customerOrderId or exchange order id)."""
        if self._by_cid is None:
            self._by_cid = {}
            for o in self.orders.values():
                if o.cid:
                    self._by_cid.setdefault(o.cid, []).append(o)
        found = {o.order_id: o for o in self._by_cid.get(cid, [])}
        for eid in exchange_ids:
            if eid in self.orders:
                found[eid] = self.orders[eid]
        return list(found.values())


def _wire_filled(payload: dict[str, Any]) -> str | None:
    """The executed amount an ORDER_STATUS_UPDATE implies (original - remaining), if it says both."""
    try:
        return str(Decimal(str(payload["originalQuantity"])) - Decimal(str(payload["remainingQuantity"])))
    except (KeyError, ArithmeticError, ValueError, TypeError):
        return None


# ---------------------------------------------------------------------------------------
# The client's view: ORDER_STATE transitions per client order id
# ---------------------------------------------------------------------------------------


@dataclass
class ClientState:
    t: int
    index: int
    frm: str | None
    to: str
    where: str | None
    reason: str | None
    executed: str | None = None  # executed_amount_base, when the producer records it
    lost_resolved: bool = False


@dataclass
class ClientOrder:
    cid: str
    states: list[ClientState] = field(default_factory=list)
    exchange_ids: set[str] = field(default_factory=set)
    #: executed amounts the connector's ORDER_FILL records reported
    fill_executed: list[str] = field(default_factory=list)

    def state_before(self, t: int, index: int) -> ClientState | None:
        last = None
        for s in self.states:
            if (s.t, s.index) > (t, index):
                break
            last = s
        return last


class ClientView:
    def __init__(self, records: list[dict[str, Any]]):
        self.orders: dict[str, ClientOrder] = {}
        self.transitions: list[tuple[int, dict[str, Any]]] = []
        for i, r in enumerate(records):
            if not _is_record(r) or r["kind"] != "client" or r["type"] != "ORDER_STATE":
                continue
            d = _data(r)
            cid = d.get("client_order_id")
            to = d.get("to")
            if not isinstance(cid, str) or not cid:
                raise ValueError(f"record {i} (client ORDER_STATE): field 'client_order_id' missing or empty")
            if not isinstance(to, str) or not to:
                raise ValueError(f"record {i} (client ORDER_STATE): field 'to' missing or empty")
            order = self.orders.setdefault(cid, ClientOrder(cid))
            executed = d.get("executed_amount_base")
            order.states.append(ClientState(r["t"], i, d.get("from"), to, d.get("where"), d.get("reason"),
                                            None if executed is None else str(executed),
                                            bool(d.get("lost_resolved"))))
            if d.get("exchange_order_id"):
                order.exchange_ids.add(str(d["exchange_order_id"]))
            self.transitions.append((i, r))
        # ORDER_FILL: a fill the connector applied (also after the order's end, which no ORDER_STATE shows)
        for r in records:
            if _is_record(r) and r["kind"] == "client" and r["type"] == "ORDER_FILL":
                d = _data(r)
                co = self.orders.get(str(d.get("client_order_id")))
                if co is not None and d.get("executed_amount_base") not in (None, ""):
                    co.fill_executed.append(str(d["executed_amount_base"]))
        for order in self.orders.values():
            order.states.sort(key=lambda s: (s.t, s.index))

    @property
    def present(self) -> bool:
        return bool(self.transitions)


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

    def __init__(self, records: list[dict[str, Any]]):
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


def build_timeline(
    records: list[dict[str, Any]], center: int, ids: Iterable[str] = (), show: _Show | None = None
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
        for i, r in enumerate(records)
        if (i < lo or i > hi) and _is_record(r) and abs(r["t"] - t0) <= WINDOW_NS and _mentions(r, ids)
    ]
    if extra:
        lines = lines + ["  ... same order within ±200 ms:"] + extra
    return lines


# ---------------------------------------------------------------------------------------
# Judging
# ---------------------------------------------------------------------------------------


class _Ctx:
    def __init__(self, records: list[dict[str, Any]], spec: CheckSpec):
        self.records = records
        self.spec = spec
        self.server = ServerView(records, spec.account)
        self.client = ClientView(records)
        recs = [r for r in records if _is_record(r)]
        self.t_end = max((r["t"] for r in recs), default=0)
        self.meta: dict[str, tuple[int, int]] = {}
        self._cid_by_eid: dict[str, str] | None = None
        self._show: _Show | None = None
        for i, r in enumerate(records):
            if _is_record(r) and r["kind"] == "meta" and r["type"] not in self.meta:
                self.meta[r["type"]] = (r["t"], i)

    def violation(self, index: int, what: str) -> dict[str, Any]:
        rec = self.records[index]
        return {"index": index, "t_s": _s(rec.get("t", 0)), "record": rec, "what": what}

    def timeline(self, index: int, ids: Iterable[str] = ()) -> list[str]:
        if self._show is None:
            self._show = _Show(self.records)
        return build_timeline(self.records, index, ids, self._show)

    def cid_of(self, order: ServerOrder) -> str | None:
        if order.cid:
            return order.cid
        if self._cid_by_eid is None:
            self._cid_by_eid = {e: c.cid for c in self.client.orders.values() for e in c.exchange_ids}
        return self._cid_by_eid.get(order.order_id)


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



def _judge(
    ctx: _Ctx,
    name: str,
    value: float,
    figures: dict[str, Any],
    violation: tuple[int, str, set[str]] | None,
    what: str,
) -> CheckResult:
    """Compare ``value`` with the check's threshold (and any figure limits)."""
    key, limit = _limit(ctx.spec, name)
    held: bool | None = None
    notes = []
    if limit is not None:
        held = value <= limit
        notes.append(f"{what} {value} (allowed {limit})")
    else:
        notes.append(f"{what} {value} (switched off)")
    for fkey, (check, figure) in FIGURE_LIMITS.items():
        if check != name or fkey not in ctx.spec.thresholds or ctx.spec.thresholds[fkey] is False:
            continue
        flimit = ctx.spec.thresholds[fkey]
        fvalue = figures.get(figure)
        ok = fvalue is None or fvalue <= flimit
        notes.append(f"{figure} {fvalue} (allowed {flimit})")
        held = ok if held is None else (held and ok)
    return _result(ctx, name, held, figures, violation, "; ".join(notes))


def _result(
    ctx: _Ctx,
    name: str,
    held: bool | None,
    figures: dict[str, Any],
    violation: tuple[int, str, set[str]] | None,
    core: str,
) -> CheckResult:
    """With held=None a violation is still named (for information), never when held=True."""
    fv = None
    timeline: list[str] = []
    if violation is not None and held is not True:
        index, text, ids = violation
        fv = ctx.violation(index, text)
        timeline = ctx.timeline(index, ids)
        core += f"; first: record {index} at {fv['t_s']:.3f}s: {text}"
    verdict = {True: "held", False: "FAILED", None: "figures only"}[held]
    return CheckResult(name, held, figures, fv, f"{name} {verdict}: {core}", timeline)


def _skipped(name: str, why: str) -> CheckResult:
    return CheckResult(name, None, {}, None, f"{name}: not judged: {why}", [])


# --- server-side -------------------------------------------------------------------------


def check_max_open_orders(ctx: _Ctx) -> CheckResult:
    spec = ctx.spec
    series = ctx.server.series
    key, threshold = _limit(spec, "max_open_orders")
    if spec.thresholds.get("max_open_orders") is True or key == "(default)":
        threshold = spec.levels  # `true` or no key: no more than the configured levels
    limit = spec.levels if threshold is None else threshold
    grace_ns = int(spec.grace_s * 1e9)
    peak, peak_t = 0, 0
    violation: tuple[int, str] | None = None
    excursion: tuple[int, int] | None = None  # (t, index) where the count first went above limit
    for n, (t, i, count) in enumerate(series):
        if count > peak:
            peak, peak_t = count, t
        if violation is not None:
            continue
        if count > limit + spec.slack:
            violation = (i, f"{count} open orders, above {limit} + slack {spec.slack}")
        elif count > limit:
            if excursion is None:
                excursion = (t, i)
            until = series[n + 1][0] if n + 1 < len(series) else ctx.t_end
            if until - excursion[0] > grace_ns:
                violation = (excursion[1], f"above {limit} open orders for longer than {spec.grace_s}s")
        else:
            excursion = None
    # the largest open count in each refresh window [k*refresh_s, (k+1)*refresh_s)
    per_cycle: list[int] = []
    if spec.refresh_s > 0:
        width = int(spec.refresh_s * 1e9)
        count, j = 0, 0
        for w in range(min(ctx.t_end // width + 1, 100_000)):
            mx = count
            while j < len(series) and series[j][0] < (w + 1) * width:
                count = series[j][2]
                mx = max(mx, count)
                j += 1
            per_cycle.append(mx)
    figures = {
        "peak": peak,
        "peak_t_s": _s(peak_t),
        "final": series[-1][2] if series else 0,
        "limit": limit,
        "slack": spec.slack,
        "per_cycle_max": per_cycle,
        "cycles_above_limit": sum(1 for c in per_cycle if c > limit),
        "source": ctx.server.source,
    }
    held = None if threshold is None else violation is None
    core = f"peak {peak} (limit {limit}, slack {spec.slack}" + (", switched off)" if threshold is None else ")")
    ids: set[str] = set()
    if violation is not None:
        t_v = ctx.records[violation[0]]["t"]
        ids = {o.order_id for o in ctx.server.orders.values() if o.open_at(t_v)}
    return _result(ctx, "max_open_orders", held, figures, violation and (violation[0], violation[1], ids), core)


def strategy_intents(records: list[dict[str, Any]]) -> dict[str, str]:
    """client order id -> the strategy intent its ``strategy`` ``CREATE`` was for.

    A CREATE's ``intent`` field when it has one (the reference loop writes ``c<cycle>/<side>/<level>``);
    else ``cycle``/``side``/``level`` fields; else derived: CREATEs less than 100 ms apart are one
    refresh cycle, and the level is the order's position among that cycle's CREATEs of its side."""
    out: dict[str, str] = {}
    cycle = -1
    last_t: int | None = None
    per_side: dict[str, int] = {}
    for r in records:
        if not _is_record(r) or r["kind"] != "strategy" or r["type"] != "CREATE":
            continue
        d = _data(r)
        cid = d.get("client_order_id")
        if last_t is None or r["t"] - last_t > INTENT_GAP_NS:
            cycle += 1
            per_side = {}
        last_t = r["t"]
        side = str(d.get("side") or "")
        level = per_side.get(side, 0)
        per_side[side] = level + 1
        if not isinstance(cid, str) or not cid:
            continue
        if isinstance(d.get("intent"), str) and d["intent"]:
            out[cid] = d["intent"]
        elif "cycle" in d and "side" in d and "level" in d:
            out[cid] = f"c{d['cycle']}/{d['side']}/{d['level']}"
        elif side:
            out[cid] = f"c{cycle}/{side}/{level}"
    return out


def _intent_duplicates(ctx: _Ctx) -> list[Duplicate]:
    """Orders opened on the exchange while another order of the same strategy intent is open."""
    intents = strategy_intents(ctx.records)
    if not intents:
        return []
    groups: dict[str, list[tuple[int, int, int, ServerOrder]]] = {}  # intent -> open intervals
    for o in ctx.server.orders.values():
        cid = ctx.cid_of(o)
        intent = intents.get(cid) if cid else None
        if intent is None:
            continue
        for start, end, idx in o.open_intervals(ctx.t_end):
            groups.setdefault(intent, []).append((start, idx, end, o))
    found: list[Duplicate] = []
    for intent, spans in groups.items():
        spans.sort(key=lambda x: (x[0], x[1]))
        for n, (start, idx, _end, o) in enumerate(spans):
            other = next((p for p in spans[:n] if p[3] is not o and p[3].cid != o.cid and p[0] <= start < p[2]),
                         None)
            if other is not None:  # the same customerOrderId twice is the per-cid check's
                found.append(Duplicate(idx, intent, o.order_id, other[3].order_id))
    found.sort(key=lambda d: d.index)
    return found


def check_duplicate_orders(ctx: _Ctx) -> CheckResult:
    dups = ctx.server.duplicates
    intent_dups = _intent_duplicates(ctx)
    figures = {
        "duplicates": len(dups),
        "intent_duplicates": len(intent_dups),
        "failed_duplicate_attempts": len(ctx.server.failed_duplicate_attempts),
        "cids": sorted({d.cid for d in dups})[:20],
        "intents": [d.cid for d in intent_dups][:20],
        "source": ctx.server.source,
    }
    violation = None
    if dups:
        d = dups[0]
        violation = (d.index, f"order {d.order_id} accepted with customerOrderId {d.cid} while {d.other} is open",
                     {d.cid, d.order_id, d.other})
    if intent_dups and (violation is None or intent_dups[0].index < violation[0]):
        d = intent_dups[0]
        violation = (d.index, f"order {d.order_id} open for strategy intent {d.cid} while {d.other} (same intent, "
                              "another customerOrderId) is open", {d.order_id, d.other})
    return _judge(ctx, "duplicate_orders", len(dups) + len(intent_dups), figures, violation,
                  "accepted duplicates")


def _first_open_violation(ctx: _Ctx, orders: list[ServerOrder], what: str) -> tuple[int, str, set[str]] | None:
    if not orders:
        return None
    first = min(orders, key=lambda o: o.last_open_index())
    cid = ctx.cid_of(first)
    return (first.last_open_index(), f"order {first.order_id} (cid {cid}) {what}", {first.order_id, cid or ""})


def check_nothing_open_after_shutdown(ctx: _Ctx) -> CheckResult:
    left = [ctx.server.orders[o] for o in sorted(ctx.server.open_now)]
    figures: dict[str, Any] = {
        "open_at_end": len(left),
        "order_ids": [o.order_id for o in left][:20],
        "shutdown_done": "SHUTDOWN_DONE" in ctx.meta,
        "source": ctx.server.source,
    }
    if "SHUTDOWN_DONE" in ctx.meta:
        t_done = ctx.meta["SHUTDOWN_DONE"][0]
        figures["open_at_shutdown_done"] = sum(1 for o in ctx.server.orders.values() if o.open_at(t_done))
    violation = _first_open_violation(
        ctx, left, "still open at the end" + ("" if "SHUTDOWN_DONE" in ctx.meta else " (no SHUTDOWN_DONE in the trace)")
    )
    return _judge(ctx, "nothing_open_after_shutdown", len(left), figures, violation, "open after shutdown")


def check_orders_closed(ctx: _Ctx) -> CheckResult:
    placed = [o for o in ctx.server.orders.values() if o.ever_open]
    unclosed = [o for o in placed if o.is_open]
    ages = [(end - start, idx, o) for o in placed for start, end, idx in o.open_intervals(ctx.t_end)]
    max_age = max((a for a, _, _ in ages), default=0)
    figures = {
        "placed": len(placed),
        "unclosed": len(unclosed),
        "unclosed_ids": [o.order_id for o in unclosed][:20],
        "max_open_s": round(_s(max_age), 6),
        "max_open_cycles": round(_s(max_age) / ctx.spec.refresh_s, 3) if ctx.spec.refresh_s else None,
        "source": ctx.server.source,
    }
    violation = _first_open_violation(ctx, unclosed, "never closed")
    age_limit = ctx.spec.thresholds.get("max_order_age_cycles")
    if violation is None and age_limit not in (None, False) and ctx.spec.refresh_s:
        limit_ns = age_limit * ctx.spec.refresh_s * 1e9
        old = sorted((idx, o) for a, idx, o in ages if a > limit_ns)
        if old:
            idx, o = old[0]
            violation = (idx, f"order {o.order_id} open longer than {age_limit} cycles", {o.order_id})
    return _judge(ctx, "orders_closed", len(unclosed), figures, violation, "unclosed orders")


# --- client-side -------------------------------------------------------------------------


def check_false_cancels(ctx: _Ctx) -> CheckResult:
    grace_ns = int(ctx.spec.grace_s * 1e9)
    found: list[tuple[int, str, str, set[str]]] = []
    by_state: dict[str, int] = {}
    lost_while_open = 0
    for cid, co in ctx.client.orders.items():
        server_orders = ctx.server.orders_for(cid, co.exchange_ids)
        if not server_orders:
            continue
        for st in co.states:
            if st.to not in TERMINAL_CLIENT:
                continue
            check_at = min(st.t + grace_ns, ctx.t_end)
            live = [o for o in server_orders if o.open_at(check_at)]
            if not live:
                continue
            if st.where == "lost":
                # The lost set means "unknown, keep cancelling": not a belief that it is done.
                lost_while_open += 1
                continue
            by_state[st.to] = by_state.get(st.to, 0) + 1
            ids = {cid, *(o.order_id for o in live)}
            found.append((st.index, cid, st.to, ids))
            break
    found.sort()
    figures = {
        "false_cancels": len(found),
        "by_state": by_state,
        "cids": [f[1] for f in found][:20],
        "lost_while_open": lost_while_open,
    }
    violation = None
    if found:
        idx, cid, to, ids = found[0]
        violation = (idx, f"client marked {cid} {to} but the exchange still holds it open {ctx.spec.grace_s}s later",
                     ids)
    return _judge(ctx, "false_cancels", len(found), figures, violation, "false cancels")


def check_orphans(ctx: _Ctx) -> CheckResult:
    orphans: list[tuple[int, ServerOrder, str | None, str]] = []
    for oid in sorted(ctx.server.open_now):
        o = ctx.server.orders[oid]
        cid = ctx.cid_of(o)
        co = ctx.client.orders.get(cid) if cid else None
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
    return _judge(ctx, "orphans", len(orphans), figures, violation, "orphans at end")


def check_phantom_open(ctx: _Ctx) -> CheckResult:
    grace_ns = int(ctx.spec.grace_s * 1e9)
    found: list[tuple[int, int, str]] = []  # (violation time, start index, cid)
    for cid, co in ctx.client.orders.items():
        server_orders = ctx.server.orders_for(cid, co.exchange_ids)
        changes = sorted((c[0], c[1]) for o in server_orders for c in o.changes)
        n = 0
        while n < len(co.states):
            st = co.states[n]
            # I3 judges the tracker's active orders; an OPEN in the cache (a resurrection)
            # is final_state_exit's business. No `where` at all (a foreign adapter): judged.
            # A stretch starts at OPEN/PARTIALLY_FILLED and goes on through PENDING_CANCEL: the
            # order is still believed on the book while it is being cancelled.
            if st.to not in BELIEVED_OPEN or st.where not in ("active", None):
                n += 1
                continue
            m = n + 1
            while m < len(co.states) and co.states[m].to in STILL_ON_BOOK and co.states[m].where in ("active", None):
                m += 1
            a = st.t
            b = co.states[m].t if m < len(co.states) else ctx.t_end
            hit = _mismatch(server_orders, changes, a, st.index, b, grace_ns)
            if hit is not None:
                found.append((hit[0], hit[1], cid))
                break
            n = m
    found.sort()
    figures = {"phantom_open": len(found), "cids": [f[2] for f in found][:20]}
    violation = None
    if found:
        _, idx, cid = found[0]
        violation = (idx, f"client believes {cid} OPEN (or being cancelled) but the exchange has not held it "
                          f"open for {ctx.spec.grace_s}s",
                     {cid})
    return _judge(ctx, "phantom_open", len(found), figures, violation, "phantom open orders")


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


def check_final_state_exit(ctx: _Ctx) -> CheckResult:
    # A refused transition is traced with from == to (the order stayed final, the refused
    # state is in "requested"): the guard did its job, so it is not an exit.
    exits = [
        (i, r)
        for i, r in ctx.client.transitions
        if _data(r).get("from") in TERMINAL_CLIENT and _data(r).get("to") != _data(r).get("from")
    ]
    kinds: dict[str, int] = {}
    for _, r in exits:
        d = _data(r)
        k = f"{d.get('from')}->{d.get('to')}"
        kinds[k] = kinds.get(k, 0) + 1
    refused = sum(
        1 for _, r in ctx.client.transitions
        if _data(r).get("from") in TERMINAL_CLIENT and _data(r).get("to") == _data(r).get("from")
    )
    figures = {"exits": len(exits), "transitions": kinds, "refused": refused}
    violation = None
    if exits:
        i, r = exits[0]
        d = _data(r)
        violation = (i, f"{d.get('client_order_id')} left final state {d.get('from')} for {d.get('to')}",
                     {d.get("client_order_id") or ""})
    return _judge(ctx, "final_state_exit", len(exits), figures, violation, "exits from a final state")


# The client's final state -> the exchange statuses that agree with it.
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


def check_final_outcome(ctx: _Ctx) -> CheckResult:
    """Each order's last client ORDER_STATE against the exchange's final status at the end of the run."""
    found: list[tuple[int, str, str, set[str]]] = []  # (index, cid, what, ids)
    by_kind: dict[str, int] = {}
    judged = not_final_on_exchange = lost = unknown_outcome = 0
    for cid, co in ctx.client.orders.items():
        last = co.states[-1]
        if last.to not in TERMINAL_CLIENT:
            continue  # the client does not believe it final: nothing to compare
        if last.where == "lost" or last.lost_resolved:
            lost += 1  # "unknown, keep cancelling" (or dropped once resolved): not a belief
            continue
        server_orders = ctx.server.orders_for(cid, co.exchange_ids)
        if any(o.is_open for o in server_orders):
            not_final_on_exchange += 1  # orphans' business
            continue
        # the record where the client declared its final state (the start of the last stretch in it)
        k = len(co.states) - 1
        while k > 0 and co.states[k - 1].to == last.to:
            k -= 1
        declared = co.states[k]
        judged += 1
        if not server_orders:
            if last.to == "FILLED":  # nothing was ever on the exchange to fill
                kind = "FILLED vs absent"
                by_kind[kind] = by_kind.get(kind, 0) + 1
                found.append((declared.index, cid, f"client declared {cid} FILLED but the exchange never had it",
                              {cid}))
            continue
        # an order that was on the book (not a refused duplicate attempt under the same
        # customerOrderId); the one the client knows, else the most advanced outcome among them
        lived = [o for o in server_orders if o.ever_open] or server_orders
        known = [o for o in lived if o.order_id in co.exchange_ids] or lived
        rank = {"Filled": 3, "Cancelled": 2, "Failed": 1}
        order = max(known, key=lambda o: (rank.get(o.status, 0), o.status_index))
        if order.status not in rank:
            unknown_outcome += 1  # closed by a snapshot that no longer lists it: how it ended is unknown
            judged -= 1
            continue
        ids = {cid, order.order_id}
        if order.status not in _OUTCOME_AGREES[last.to]:
            kind = f"{last.to} vs {order.status or 'unknown'}"
            by_kind[kind] = by_kind.get(kind, 0) + 1
            found.append((declared.index, cid, f"client declared {cid} {last.to} but the exchange ended it "
                                               f"{order.status or 'unknown'} (order {order.order_id})", ids))
            continue
        if last.to == "FILLED":
            continue  # Filled on both sides: the whole amount executed
        client_exec = max((a for e in [s.executed for s in co.states] + co.fill_executed
                           if (a := _amount(e)) is not None), default=None)
        server_exec = _amount(order.filled)
        if client_exec is not None and server_exec is not None and client_exec != server_exec:
            kind = f"{last.to} executed {client_exec} vs {server_exec}"
            by_kind[kind] = by_kind.get(kind, 0) + 1
            found.append((declared.index, cid, f"client declared {cid} {last.to} having executed {client_exec}, "
                                               f"the exchange executed {server_exec} (order {order.order_id})", ids))
    found.sort(key=lambda f: f[0])
    figures = {
        "mismatches": len(found),
        "by_kind": by_kind,
        "cids": [f[1] for f in found][:20],
        "judged": judged,
        "not_final_on_exchange": not_final_on_exchange,
        "unknown_outcome": unknown_outcome,
        "lost": lost,
    }
    violation = (found[0][0], found[0][2], found[0][3]) if found else None
    return _judge(ctx, "final_outcome", len(found), figures, violation, "final outcome mismatches")


def check_place_resolves(ctx: _Ctx) -> CheckResult:
    bound = int(ctx.spec.place_resolve_s * 1e9)
    latencies: list[float] = []
    bad: list[tuple[int, int, str, str]] = []  # (deadline, index, cid, what)
    pending_at_end = 0
    started = 0
    resolving = {"OPEN", "PARTIALLY_FILLED", "FILLED", "FAILED", "CANCELED"}
    for cid, co in ctx.client.orders.items():
        start = next((s for s in co.states if s.to == "PENDING_CREATE"), None)
        if start is None:
            continue
        started += 1
        end = next((s for s in co.states if (s.t, s.index) > (start.t, start.index) and s.to in resolving), None)
        if end is not None:
            lat = end.t - start.t
            latencies.append(_s(lat))
            if lat > bound:
                bad.append((start.t + bound, start.index, cid, f"placement of {cid} took {_s(lat):.3f}s ({end.to})"))
        elif ctx.t_end - start.t > bound:
            bad.append((start.t + bound, start.index, cid, f"placement of {cid} never resolved"))
        else:
            pending_at_end += 1
    bad.sort()
    figures = {
        "placements": started,
        "late_or_unresolved": len(bad),
        "pending_at_end": pending_at_end,
        "p50_ms": _ms(_pct(latencies, 50)),
        "p99_ms": _ms(_pct(latencies, 99)),
        "max_ms": _ms(max(latencies, default=None) if latencies else None),
    }
    violation = (bad[0][1], bad[0][3], {bad[0][2]}) if bad else None
    return _judge(ctx, "place_resolves", len(bad), figures, violation, "placements not resolved in time")


def _cancel_requests(ctx: _Ctx) -> dict[str, list[tuple[int, int]]]:
    """client order id -> [(t, index)] of every sign that a cancel was requested."""
    by_oid: dict[str, str] = {}
    for o in ctx.server.orders.values():
        cid = ctx.cid_of(o)
        if cid:
            by_oid[o.order_id] = cid
    for co in ctx.client.orders.values():
        for eid in co.exchange_ids:
            by_oid.setdefault(eid, co.cid)
    out: dict[str, list[tuple[int, int]]] = {}

    def add(cid: str | None, oid: str | None, t: int, i: int) -> None:
        cid = cid or (by_oid.get(oid) if oid else None)
        if cid:
            out.setdefault(cid, []).append((t, i))

    for i, r in enumerate(ctx.records):
        if not _is_record(r):
            continue
        d = _data(r)
        if r["kind"] == "strategy" and r["type"] == "CANCEL":
            add(d.get("client_order_id"), None, r["t"], i)
        elif r["kind"] == "client" and r["type"] == "ORDER_STATE" and d.get("to") == "PENDING_CANCEL":
            add(d.get("client_order_id"), d.get("exchange_order_id"), r["t"], i)
        elif r["kind"] == "ws" and r.get("dir") == "out" and r["type"] == "CANCEL_LIMIT_ORDER":
            p = payload if isinstance(payload := d.get("payload"), dict) else {}
            add(p.get("customerOrderId"), p.get("orderId"), r["t"], i)
        elif r["kind"] == "rest" and r.get("dir") == "out" and r["type"].startswith("DELETE /v1/orders/order"):
            body = raw if isinstance(raw := d.get("body"), dict) else {}
            add(body.get("customerOrderId"), body.get("orderId"), r["t"], i)
    for t, i, oid, cid in ctx.server.cancel_commands:
        add(cid, oid, t, i)
    for reqs in out.values():
        reqs.sort()
    return out


def check_cancel_resolves(ctx: _Ctx) -> CheckResult:
    bound = int(ctx.spec.cancel_resolve_s * 1e9)
    latencies: list[float] = []
    bad: list[tuple[int, int, str, str]] = []
    pending_at_end = 0
    noop = 0
    requests = _cancel_requests(ctx)
    for cid, reqs in requests.items():
        co = ctx.client.orders.get(cid)
        states = co.states if co else []
        t0, i0 = reqs[0]
        before = co.state_before(t0, i0) if co else None
        if before is not None and before.to in TERMINAL_CLIENT and before.where != "lost":
            noop += 1  # already final when the cancel was asked for: nothing to resolve
            continue
        end = next((s for s in states if (s.t, s.index) >= (t0, i0) and s.to in ("CANCELED", "FILLED")), None)
        if end is not None:
            lat = end.t - t0
            latencies.append(_s(lat))
            if lat > bound:
                bad.append((t0 + bound, i0, cid, f"cancel of {cid} took {_s(lat):.3f}s"))
        elif ctx.t_end - t0 > bound:
            last = states[-1].to if states else "unknown to the client"
            bad.append((t0 + bound, i0, cid, f"cancel of {cid} never resolved (client state {last})"))
        else:
            pending_at_end += 1
    bad.sort()
    figures = {
        "cancels": len(requests),
        "late_or_unresolved": len(bad),
        "pending_at_end": pending_at_end,
        "already_final": noop,
        "p50_ms": _ms(_pct(latencies, 50)),
        "p99_ms": _ms(_pct(latencies, 99)),
        "max_ms": _ms(max(latencies) if latencies else None),
    }
    violation = (bad[0][1], bad[0][3], {bad[0][2]}) if bad else None
    return _judge(ctx, "cancel_resolves", len(bad), figures, violation, "cancels not resolved in time")


def check_requote(ctx: _Ctx) -> CheckResult:
    spec = ctx.spec
    strat = [(i, r) for i, r in enumerate(ctx.records)
             if _is_record(r) and r["kind"] == "strategy" and r["type"] in ("CREATE", "CANCEL")]
    if not strat:
        return _skipped("requote", "no strategy records in the trace")
    bound = int((spec.refresh_s + spec.requote_bound_s) * 1e9)
    cutoff = ctx.meta.get("SHUTDOWN_BEGIN", (ctx.t_end, 0))[0]
    sets: list[tuple[int, int, int]] = []  # (t, index, position in strat)
    prev_type = None
    for n, (i, r) in enumerate(strat):
        if r["type"] == "CANCEL" and (prev_type != "CANCEL" or r["t"] - sets[-1][0] > 100_000_000):
            sets.append((r["t"], i, n))
        prev_type = r["type"]
    next_create: list[tuple[int, dict[str, Any]] | None] = [None] * (len(strat) + 1)
    for n in range(len(strat) - 1, -1, -1):
        next_create[n] = strat[n] if strat[n][1]["type"] == "CREATE" else next_create[n + 1]
    last_create: list[int] = []  # time of the latest CREATE before each strategy record
    latest = 0
    for _, r in strat:
        last_create.append(latest)
        if r["type"] == "CREATE":
            latest = r["t"]
    # PMM waits filled_order_delay (60 s by default) after one of its orders completes: a
    # cancel set whose cycle saw a fill is exempt. Fills: client FILLED, else exchange Filled.
    quoted = {_data(r).get("client_order_id") for _, r in strat if r["type"] == "CREATE"}
    fills = sorted(
        [st.t for cid in quoted if cid in ctx.client.orders
         for st in ctx.client.orders[cid].states if st.to == "FILLED"]
        + [c[0] for o in ctx.server.orders.values() if o.cid in quoted for c in o.changes if c[3] == "Filled"]
    )
    gaps: list[float] = []
    late: list[tuple[int, str]] = []
    exempt = 0
    for t, i, n in sets:
        create = next_create[n + 1]
        prev_create = last_create[n]
        if create is None or create[1]["t"] - t > bound:
            k = bisect.bisect_left(fills, prev_create)
            if k < len(fills) and fills[k] <= t + bound:
                exempt += 1
                continue
        if create is not None and create[1]["t"] - t <= bound:
            gaps.append(_s(create[1]["t"] - t))
        elif create is not None:
            gaps.append(_s(create[1]["t"] - t))
            late.append((i, f"fresh quotes {_s(create[1]['t'] - t):.3f}s after the cancel set "
                            f"(bound {_s(bound):.3f}s)"))
        elif t + bound < cutoff:
            late.append((i, f"no fresh quotes after the cancel set (bound {_s(bound):.3f}s)"))
    figures = {
        "cancel_sets": len(sets),
        "late": len(late),
        "exempt_after_fill": exempt,
        "p50_gap_ms": _ms(_pct(gaps, 50)),
        "max_gap_ms": _ms(max(gaps) if gaps else None),
    }
    violation: tuple[int, str, set[str]] | None = (late[0][0], late[0][1], set()) if late else None
    return _judge(ctx, "requote", len(late), figures, violation, "late requotes")


_SERVER_CHECKS = {
    "max_open_orders": check_max_open_orders,
    "duplicate_orders": check_duplicate_orders,
    "nothing_open_after_shutdown": check_nothing_open_after_shutdown,
    "orders_closed": check_orders_closed,
}
_CLIENT_CHECKS = {
    "false_cancels": check_false_cancels,
    "orphans": check_orphans,
    "phantom_open": check_phantom_open,
    "final_state_exit": check_final_state_exit,
    "final_outcome": check_final_outcome,
    "place_resolves": check_place_resolves,
    "cancel_resolves": check_cancel_resolves,
}


_CHECKS = {**_SERVER_CHECKS, **_CLIENT_CHECKS, "requote": check_requote}
_NEEDS_SERVER = {*_SERVER_CHECKS, "false_cancels", "orphans", "phantom_open", "final_outcome"}


def run_checks(records: Iterable[dict[str, Any]], spec: CheckSpec | None = None) -> list[CheckResult]:
    """Every check over one run's records (capture header line allowed), in CHECK_NAMES order."""
    spec = spec or CheckSpec()
    spec.validate()
    ctx = _Ctx(_normalise(records), spec)
    results = []
    no_server = ctx.server.source == "none"
    for name in CHECK_NAMES:
        if name in _CLIENT_CHECKS and not ctx.client.present:
            results.append(_skipped(name, "no client ORDER_STATE records in the trace"))
        elif name in _NEEDS_SERVER and no_server:
            results.append(_skipped(name, "no exchange order events or account-stream order messages in the trace"))
        else:
            results.append(_CHECKS[name](ctx))
    return results
