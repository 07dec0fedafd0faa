"""Pure tests of the OPEN_ORDERS_UPDATE policies."""

from __future__ import annotations

from decimal import Decimal

import pytest

from replay.connector.policies import (
    AgeGuardPolicy,
    IgnorePolicy,
    NaivePolicy,
    ReconcilePolicy,
    parse_policy,
    snapshot_exchange_time,
)
from replay.connector.tracker import ClientOrderTracker, InFlightOrder, OrderCancelled, OrderState, OrderUpdate

T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def tracker_for(policy, clock=None):
    clock = clock or FakeClock()
    tr = ClientOrderTracker(clock, guarded=policy.guarded)
    events = []
    tr.add_listener(events.append)
    return tr, clock, events


def place(tr, cid, created=T0):
    tr.start_tracking(InFlightOrder(cid, "BTCZAR", "buy", Decimal("100"), Decimal("1"), int(created)))


def ack(tr, cid, ex, clock):
    tr.apply_order_update(OrderUpdate("BTCZAR", clock(), OrderState.OPEN, cid, ex, reason="place_ack"))


def wire(ex, cid, created="2023-11-14T22:13:20.000Z"):
    return {"orderId": ex, "customerOrderId": cid, "side": "buy", "price": "100", "currencyPair": "BTCZAR",
            "createdAt": created, "updatedAt": created, "status": "Placed"}


def test_parse_policy():
    assert isinstance(parse_policy("naive"), NaivePolicy)
    assert isinstance(parse_policy("ignore"), IgnorePolicy)
    assert isinstance(parse_policy(" Reconcile "), ReconcilePolicy)
    p = parse_policy("age-guard:5")
    assert isinstance(p, AgeGuardPolicy) and p.seconds == 5 and p.name == "age-guard:5"
    assert parse_policy("age-guard:0.5").seconds == 0.5
    assert parse_policy("age-guard:2s").seconds == 2
    assert parse_policy("age-guard:500ms").seconds == 0.5
    assert parse_policy("age-guard:1m").seconds == 60
    assert parse_policy("reconcile").guarded and not parse_policy("naive").guarded
    for bad in ("nave", "age-guard", "age-guard:", "age-guard:x", "age-guard:-1", "age-guard:0", "age-guard:2h", ""):
        with pytest.raises(ValueError) as ei:
            parse_policy(bad)
        assert repr(bad) in str(ei.value)


async def test_naive_cancels_pending_create_and_late_ack_resurrects_an_orphan():
    policy = parse_policy("naive")
    tr, clock, events = tracker_for(policy)
    place(tr, "B1")
    place(tr, "B2")
    ack(tr, "B2", "X2", clock)
    res = policy.on_snapshot([wire("X2", "B2")], tr, clock())
    assert res.cancelled == ["B1"]
    assert "B1" in tr.cached and tr.cached["B1"].state is OrderState.CANCELED
    assert tr.active["B2"].state is OrderState.OPEN
    assert [type(e) for e in events if isinstance(e, OrderCancelled)] == [OrderCancelled]
    # the placement ack arrives after the snapshot
    await tr.process_order_update(OrderUpdate("BTCZAR", clock(), OrderState.OPEN, "B1", "X1", reason="place_ack"))
    assert tr.cached["B1"].state is OrderState.OPEN and "B1" not in tr.active  # an orphan


def test_naive_matches_on_exchange_id_or_customer_id():
    policy = parse_policy("naive")
    tr, clock, events = tracker_for(policy)
    for cid, ex in (("B1", "X1"), ("B2", "X2")):
        place(tr, cid)
        ack(tr, cid, ex, clock)
    res = policy.on_snapshot([{"orderId": "X1"}, {"customerOrderId": "B2"}], tr, clock())
    assert res.cancelled == [] and set(tr.active) == {"B1", "B2"}


def test_age_guard_skips_young_orders():
    policy = parse_policy("age-guard:5")
    clock = FakeClock()
    tr, _, events = tracker_for(policy, clock)
    place(tr, "OLD", created=T0 - 10)
    place(tr, "YOUNG", created=T0 - 2)
    res = policy.on_snapshot([], tr, clock())
    assert res.cancelled == ["OLD"]
    assert "YOUNG" in tr.active and tr.active["YOUNG"].state is OrderState.PENDING_CREATE
    clock.t += 4
    assert policy.on_snapshot([], tr, clock()).cancelled == ["YOUNG"]


def test_ignore_does_nothing():
    policy = parse_policy("ignore")
    tr, clock, events = tracker_for(policy)
    place(tr, "B1")
    assert policy.on_snapshot([], tr, clock()).cancelled == []
    assert tr.active["B1"].state is OrderState.PENDING_CREATE and events == []


def test_reconcile_never_cancels_an_unacknowledged_order():
    policy = parse_policy("reconcile")
    tr, clock, events = tracker_for(policy)
    place(tr, "B1")
    for _ in range(5):
        clock.t += 1
        res = policy.on_snapshot([], tr, clock())
        assert res.cancelled == [] and res.verify == []
    assert tr.active["B1"].state is OrderState.PENDING_CREATE and events == []


def test_reconcile_needs_two_snapshots_and_a_second_then_asks_for_confirmation():
    policy = parse_policy("reconcile")
    tr, clock, events = tracker_for(policy)
    place(tr, "B1")
    ack(tr, "B1", "X1", clock)
    # received at the ack time: not evidence
    assert policy.on_snapshot([], tr, clock()).verify == []
    clock.t += 0.1
    assert policy.on_snapshot([], tr, clock()).verify == []  # 1st absence
    clock.t += 0.2
    assert policy.on_snapshot([], tr, clock()).verify == []  # 2nd, but < 1 s
    clock.t += 1.0
    res = policy.on_snapshot([], tr, clock())
    assert res.verify == ["B1"] and res.cancelled == []
    assert tr.active["B1"].state is OrderState.OPEN  # only verification, never CANCELED here
    assert events and not any(isinstance(e, OrderCancelled) for e in events)


def test_reconcile_presence_resets_absence():
    policy = parse_policy("reconcile")
    tr, clock, events = tracker_for(policy)
    place(tr, "B1")
    ack(tr, "B1", "X1", clock)
    clock.t += 0.5
    policy.on_snapshot([], tr, clock())
    clock.t += 0.5
    policy.on_snapshot([wire("X1", "B1")], tr, clock())
    clock.t += 1.5
    assert policy.on_snapshot([], tr, clock()).verify == []  # counting starts over


def test_reconcile_ignores_snapshot_built_before_the_order_existed():
    policy = parse_policy("reconcile")
    tr, clock, events = tracker_for(policy)
    place(tr, "B1")
    ack(tr, "B1", "X1", clock)
    tr.active["B1"].exchange_created_at = T0 + 5
    # snapshots listing another order whose newest timestamp is T0 (older than B1's creation)
    stale = [wire("X9", "OTHER", created="2023-11-14T22:13:20.000Z")]
    assert snapshot_exchange_time(stale) == pytest.approx(T0)
    for _ in range(4):
        clock.t += 1
        assert policy.on_snapshot(stale, tr, clock()).verify == []


def test_reconcile_moves_a_listed_pending_create_order_to_open():
    policy = parse_policy("reconcile")
    tr, clock, events = tracker_for(policy)
    place(tr, "B1")
    res = policy.on_snapshot([wire("X1", "B1")], tr, clock())
    assert res.opened == ["B1"]
    o = tr.active["B1"]
    assert o.state is OrderState.OPEN and o.exchange_order_id == "X1"
    assert o.exchange_created_at == pytest.approx(T0)


async def test_reconcile_unknown_goes_to_lost_via_not_found():
    policy = parse_policy("reconcile")
    tr, clock, events = tracker_for(policy)
    place(tr, "B1")
    ack(tr, "B1", "X1", clock)
    # the connector's verification says "not found" each time
    for _ in range(4):
        tr.process_order_not_found("B1")
    assert "B1" in tr.lost and tr.lost["B1"].state is OrderState.FAILED
    assert not any(isinstance(e, OrderCancelled) for e in events)


async def test_reconcile_tracker_is_guarded():
    policy = parse_policy("reconcile")
    tr, clock, events = tracker_for(policy)
    assert tr.guarded
    place(tr, "B1")
    ack(tr, "B1", "X1", clock)
    tr.apply_order_update(OrderUpdate("BTCZAR", clock(), OrderState.CANCELED, "B1", "X1", reason="ws"))
    await tr.process_order_update(OrderUpdate("BTCZAR", clock(), OrderState.OPEN, "B1", "X1"))
    assert tr.cached["B1"].state is OrderState.CANCELED
