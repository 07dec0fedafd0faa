"""What the connector does with an OPEN_ORDERS_UPDATE (VALR's full list of open orders).

A setting, parsed by ``parse_policy``:

``naive``
    Every tracked, not-done active order missing from the list (matched on exchange id or
    customerOrderId) is marked CANCELED at once, PENDING_CREATE included. This is the
    behaviour that shipped with the bug: a snapshot built before a just-placed order
    reached the book cancels it locally, and the late placement ack resurrects it in the
    cache, where nothing will ever cancel it.
``age-guard:S``
    The same, but orders younger than S seconds (``creation_timestamp`` against the
    tracker clock) are skipped. A half fix: a snapshot delayed by more than S still kills.
``ignore``
    Do nothing; rely on ORDER_STATUS_UPDATE and polling.
``reconcile``
    The proper fix, see ``ReconcilePolicy``. The tracker runs guarded under it.

Policies apply state changes synchronously (``tracker.apply_order_update``), inside the
account-stream consumer, exactly when the snapshot is processed. That is what the buggy
handler did, and it is why the tracker's extra loop hop for the placement ack matters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from .tracker import ClientOrderTracker, InFlightOrder, OrderState, OrderUpdate


def snapshot_ids(orders: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """(exchange order ids, customer order ids) present in a snapshot."""
    ex_ids: set[str] = set()
    cids: set[str] = set()
    for o in orders:
        if not isinstance(o, dict):
            continue
        if o.get("orderId"):
            ex_ids.add(str(o["orderId"]))
        if o.get("customerOrderId"):
            cids.add(str(o["customerOrderId"]))
    return ex_ids, cids


def in_snapshot(order: InFlightOrder, ex_ids: set[str], cids: set[str]) -> bool:
    return order.client_order_id in cids or (
        order.exchange_order_id is not None and order.exchange_order_id in ex_ids
    )


def parse_valr_time(value: Any) -> float | None:
    """VALR's ISO 8601 timestamp (``2024-05-08T11:51:29.169Z``) or epoch ms -> epoch seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return value / 1000.0 if value > 1e11 else float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def snapshot_exchange_time(orders: list[dict[str, Any]]) -> float | None:
    """The newest createdAt/updatedAt in the snapshot (epoch s), or None for an empty list."""
    newest: float | None = None
    for o in orders:
        if not isinstance(o, dict):
            continue
        for key in ("updatedAt", "createdAt"):
            t = parse_valr_time(o.get(key))
            if t is not None and (newest is None or t > newest):
                newest = t
    return newest


@dataclass
class SnapshotResult:
    """What a policy did with one snapshot: ids marked CANCELED, moved to OPEN, to verify."""

    cancelled: list[str] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)
    verify: list[str] = field(default_factory=list)


class OpenOrdersPolicy(Protocol):
    name: str
    guarded: bool  # whether the tracker should refuse transitions out of final states

    def on_snapshot(self, orders: list[dict[str, Any]], tracker: ClientOrderTracker,
                    received_at: float) -> SnapshotResult:
        """Handle one OPEN_ORDERS_UPDATE. ``received_at`` is the tracker clock (s).

        ``SnapshotResult.verify`` lists client order ids whose status the connector must
        now query (REST GET by customerOrderId); the answer goes through the normal
        order-update / not-found paths.
        """
        ...


class NaivePolicy:
    name = "naive"
    guarded = False

    def _skip(self, order: InFlightOrder, now: float) -> bool:
        return False

    def on_snapshot(self, orders: list[dict[str, Any]], tracker: ClientOrderTracker,
                    received_at: float) -> SnapshotResult:
        result = SnapshotResult()
        ex_ids, cids = snapshot_ids(orders)
        for order in list(tracker.active.values()):
            if order.is_done or in_snapshot(order, ex_ids, cids) or self._skip(order, received_at):
                continue
            tracker.apply_order_update(
                OrderUpdate(order.pair, received_at, OrderState.CANCELED, order.client_order_id,
                            order.exchange_order_id, reason="open_orders_update:absent")
            )
            result.cancelled.append(order.client_order_id)
        return result


class AgeGuardPolicy(NaivePolicy):
    guarded = False

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.name = f"age-guard:{seconds:g}"

    def _skip(self, order: InFlightOrder, now: float) -> bool:
        return now - order.creation_timestamp < self.seconds


class IgnorePolicy:
    name = "ignore"
    guarded = False

    def on_snapshot(self, orders: list[dict[str, Any]], tracker: ClientOrderTracker,
                    received_at: float) -> SnapshotResult:
        return SnapshotResult()


@dataclass
class _Absence:
    count: int
    first_at: float


class ReconcilePolicy:
    """A snapshot may prompt a status query; it never ends an order by itself.

    "Snapshot time". VALR puts no sequence number on account-stream events, so a snapshot's
    age can only be bounded:
    * its exchange time is the newest ``createdAt``/``updatedAt`` among the orders it lists
      (a lower bound on when it was built; unknown for an empty list);
    * its receive time is the tracker clock when the connector processed it.
    For an order X, a snapshot lacking X counts as an *absence observation* only if
    1. X is acknowledged: its exchange id is known and OPEN was confirmed
       (``open_confirmed_at`` set), so PENDING_CREATE orders are never considered;
    2. it was received after X's confirmation (received_at > open_confirmed_at);
    3. its exchange time, when known, is not older than X's exchange creation time, when
       known (a snapshot built before X existed proves nothing about X).
    An absence becomes a *suspicion* after ``min_snapshots`` consecutive observations
    spanning at least ``min_seconds``; a suspected order is returned in
    ``SnapshotResult.verify`` and the connector asks the exchange (REST GET by
    customerOrderId). Its answer is applied through the ordinary paths: a final status
    via an order update, "not found" via ``process_order_not_found`` (the lost set).
    Seeing X in a snapshot clears its absence record; a snapshot listing an order we still
    believe PENDING_CREATE moves it to OPEN (and learns its exchange id).
    """

    name = "reconcile"
    guarded = True

    def __init__(self, min_snapshots: int = 2, min_seconds: float = 1.0):
        self.min_snapshots = min_snapshots
        self.min_seconds = min_seconds
        self.absent: dict[str, _Absence] = {}

    def on_snapshot(self, orders: list[dict[str, Any]], tracker: ClientOrderTracker,
                    received_at: float) -> SnapshotResult:
        result = SnapshotResult()
        ex_ids, cids = snapshot_ids(orders)
        snap_time = snapshot_exchange_time(orders)
        by_cid = {str(o["customerOrderId"]): o for o in orders if isinstance(o, dict) and o.get("customerOrderId")}
        by_ex = {str(o["orderId"]): o for o in orders if isinstance(o, dict) and o.get("orderId")}
        for cid in [c for c in self.absent if c not in tracker.active]:
            del self.absent[cid]
        for order in list(tracker.active.values()):
            if order.is_done:
                continue
            if in_snapshot(order, ex_ids, cids):
                self.absent.pop(order.client_order_id, None)
                wire = by_cid.get(order.client_order_id) or by_ex.get(order.exchange_order_id or "")
                if wire is not None and order.exchange_created_at is None:
                    order.exchange_created_at = parse_valr_time(wire.get("createdAt"))
                if order.is_pending_create:
                    tracker.apply_order_update(
                        OrderUpdate(order.pair, received_at, OrderState.OPEN, order.client_order_id,
                                    str(wire["orderId"]) if wire and wire.get("orderId") else None,
                                    reason="open_orders_update:present")
                    )
                    result.opened.append(order.client_order_id)
                continue
            if not self._is_evidence(order, received_at, snap_time):
                continue
            rec = self.absent.get(order.client_order_id)
            if rec is None:
                rec = self.absent[order.client_order_id] = _Absence(0, received_at)
            rec.count += 1
            if rec.count >= self.min_snapshots and received_at - rec.first_at >= self.min_seconds:
                result.verify.append(order.client_order_id)
                del self.absent[order.client_order_id]  # start over if the order proves alive
        return result

    @staticmethod
    def _is_evidence(order: InFlightOrder, received_at: float, snap_time: float | None) -> bool:
        if order.exchange_order_id is None or order.open_confirmed_at is None:
            return False
        if received_at <= order.open_confirmed_at:
            return False
        if snap_time is not None and order.exchange_created_at is not None and snap_time < order.exchange_created_at:
            return False
        return True


POLICY_NAMES = ("naive", "age-guard:S", "ignore", "reconcile")
_DURATION = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}


def parse_policy(text: str) -> OpenOrdersPolicy:
    """``naive`` | ``age-guard:S`` | ``ignore`` | ``reconcile``; S is seconds (``5``, ``2.5``)
    or a duration as scenarios write it (``2s``, ``500ms``, ``1m``)."""
    if not isinstance(text, str):
        raise ValueError(f"policy must be a string, one of {', '.join(POLICY_NAMES)}; got {text!r}")
    t = text.strip().lower()
    if t == "naive":
        return NaivePolicy()
    if t == "ignore":
        return IgnorePolicy()
    if t == "reconcile":
        return ReconcilePolicy()
    if t.startswith("age-guard"):
        _, sep, arg = t.partition(":")
        m = _DURATION.match(arg.strip()) if sep else None
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"] if m else 0.0
        if not seconds > 0:
            raise ValueError(
                f"bad policy {text!r}: age-guard needs a positive age, e.g. 'age-guard:5' or 'age-guard:2s'"
            )
        return AgeGuardPolicy(seconds)
    raise ValueError(f"unknown policy {text!r}: expected one of {', '.join(POLICY_NAMES)}")
