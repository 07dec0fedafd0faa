"""Pure tests of the order tracker (timestamps from a fake clock)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from replay.connector.tracker import (
    ClientOrderTracker,
    InFlightOrder,
    OrderCancelled,
    OrderCompleted,
    OrderCreated,
    OrderFailure,
    OrderFilled,
    OrderState,
    OrderUpdate,
    TradeUpdate,
)


class FakeClock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeTrace:
    def __init__(self):
        self.records = []

    def record(self, conn, dir, kind, type, data):
        self.records.append({"conn": conn, "dir": dir, "kind": kind, "type": type, "data": data})


def mk(cid="HB-VR-B1", state=OrderState.PENDING_CREATE, ex=None, amount="1") -> InFlightOrder:
    return InFlightOrder(cid, "BTCZAR", "buy", Decimal("100"), Decimal(amount), 1000, exchange_order_id=ex, state=state)


def upd(state, cid="HB-VR-B1", ex=None, t=1000.0, reason="test"):
    return OrderUpdate("BTCZAR", t, state, cid, ex, reason=reason)


def setup(guarded=False):
    clock, trace, events = FakeClock(), FakeTrace(), []
    tr = ClientOrderTracker(clock, guarded=guarded, trace=trace)
    tr.add_listener(events.append)
    return tr, clock, trace, events


def test_predicates():
    o = mk()
    assert o.is_pending_create and o.is_open and not o.is_done
    o.state = OrderState.PENDING_CANCEL
    assert o.is_pending_cancel_confirmation and o.is_open
    o.state = OrderState.CANCELED
    assert o.is_done and o.is_cancelled and not o.is_open
    o = mk(state=OrderState.OPEN)
    o.executed_base = Decimal("1")
    assert o.is_done and o.is_filled


def test_unguarded_resurrects_and_guarded_refuses():
    o = mk(state=OrderState.CANCELED)
    assert o.apply(upd(OrderState.OPEN, ex="X1"), guarded=False)
    assert o.state is OrderState.OPEN and o.exchange_order_id == "X1"
    g = mk(state=OrderState.CANCELED)
    changed = g.apply(upd(OrderState.OPEN, ex="X1"), guarded=True)
    assert changed  # the exchange id was learnt
    assert g.state is OrderState.CANCELED
    assert [(r.from_state, r.to_state) for r in g.refused] == [(OrderState.CANCELED, OrderState.OPEN)]
    assert not g.apply(upd(OrderState.OPEN, ex="X1"), guarded=True)  # nothing new


def test_apply_ignores_other_orders():
    o = mk(ex="X1")
    assert not o.apply(upd(OrderState.OPEN, cid="other", ex="X2"), guarded=False)
    assert o.state is OrderState.PENDING_CREATE
    assert o.apply(upd(OrderState.OPEN, cid=None, ex="X1"), guarded=False)


async def test_process_order_update_applies_on_a_later_iteration():
    tr, clock, trace, events = setup()
    tr.start_tracking(mk())
    task = tr.process_order_update(upd(OrderState.OPEN, ex="X1", reason="place_ack"))
    assert tr.active["HB-VR-B1"].state is OrderState.PENDING_CREATE  # not inline
    await task
    assert tr.active["HB-VR-B1"].state is OrderState.OPEN
    assert [type(e) for e in events] == [OrderCreated]
    assert trace.records[-1]["data"]["from"] == "PENDING_CREATE"
    assert trace.records[-1]["data"]["to"] == "OPEN"
    assert trace.records[-1]["data"]["reason"] == "place_ack"
    assert trace.records[-1]["data"]["where"] == "active"
    assert trace.records[-1]["kind"] == "client" and trace.records[-1]["type"] == "ORDER_STATE"


async def test_false_cancel_then_late_ack_is_an_orphan_in_the_cache():
    tr, clock, trace, events = setup(guarded=False)
    tr.start_tracking(mk())
    tr.apply_order_update(upd(OrderState.CANCELED, reason="open_orders_update:absent"))
    assert "HB-VR-B1" not in tr.active and "HB-VR-B1" in tr.cached
    await tr.process_order_update(upd(OrderState.OPEN, ex="X1", reason="place_ack"))
    o = tr.cached["HB-VR-B1"]
    assert o.state is OrderState.OPEN and "HB-VR-B1" not in tr.active  # orphan
    assert [type(e) for e in events] == [OrderCancelled]  # no OrderCreated after a cancel
    last = trace.records[-1]["data"]
    assert (last["from"], last["to"], last["where"]) == ("CANCELED", "OPEN", "cached")


async def test_guarded_tracker_refuses_and_records():
    tr, clock, trace, events = setup(guarded=True)
    tr.start_tracking(mk())
    tr.apply_order_update(upd(OrderState.CANCELED))
    await tr.process_order_update(upd(OrderState.OPEN, ex="X1", reason="place_ack"))
    o = tr.cached["HB-VR-B1"]
    assert o.state is OrderState.CANCELED
    last = trace.records[-1]["data"]
    assert last["reason"] == "resurrection-refused" and last["requested"] == "OPEN"
    assert last["from"] == last["to"] == "CANCELED"


async def test_events_fire_once_and_fills_dedupe():
    tr, clock, trace, events = setup()
    tr.start_tracking(mk(amount="2"))
    tr.apply_order_update(upd(OrderState.OPEN, ex="X1"))
    tr.apply_order_update(upd(OrderState.OPEN, ex="X1"))
    t1 = TradeUpdate("T1", None, "X1", "BTCZAR", 1000, Decimal("100"), Decimal("1"), Decimal("100"))
    assert tr.process_trade_update(t1)
    assert not tr.process_trade_update(t1)
    tr.apply_order_update(upd(OrderState.PARTIALLY_FILLED))
    assert tr.process_trade_update(TradeUpdate("T2", "HB-VR-B1", None, "BTCZAR", 1000, Decimal("100"),
                                               Decimal("1"), Decimal("100")))
    await tr.process_order_update(upd(OrderState.FILLED))
    tr.apply_order_update(upd(OrderState.FILLED))
    kinds = [type(e) for e in events]
    assert kinds == [OrderCreated, OrderFilled, OrderFilled, OrderCompleted]
    o = tr.cached["HB-VR-B1"]
    assert o.executed_base == Decimal("2") and o.trade_ids == {"T1", "T2"}


async def test_filled_waits_for_fills_then_completes():
    tr, clock, trace, events = setup()
    tr.fill_wait_timeout = 5.0
    tr.start_tracking(mk(state=OrderState.OPEN, ex="X1"))
    task = tr.process_order_update(upd(OrderState.FILLED))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert tr.active["HB-VR-B1"].state is OrderState.OPEN  # waiting for the fill
    tr.process_trade_update(TradeUpdate("T1", "HB-VR-B1", "X1", "BTCZAR", 1000, Decimal("100"), Decimal("1"),
                                        Decimal("100")))
    await asyncio.wait_for(task, 1)
    assert tr.cached["HB-VR-B1"].state is OrderState.FILLED
    assert isinstance(events[-1], OrderCompleted)


def test_not_found_counter_moves_to_lost_on_the_fourth_miss():
    tr, clock, trace, events = setup()
    tr.start_tracking(mk(state=OrderState.OPEN, ex="X1"))
    for _ in range(3):
        assert not tr.process_order_not_found("HB-VR-B1")
        assert "HB-VR-B1" in tr.active
    assert tr.process_order_not_found("HB-VR-B1")
    assert "HB-VR-B1" in tr.lost and "HB-VR-B1" not in tr.active and "HB-VR-B1" not in tr.cached
    assert tr.lost["HB-VR-B1"].state is OrderState.FAILED
    assert [type(e) for e in events] == [OrderFailure]
    lost_recs = [r["data"] for r in trace.records if r["data"]["to"] == "FAILED"]
    assert [(d["from"], d["where"], d["reason"]) for d in lost_recs] == [("OPEN", "lost", "not_found")]
    assert "HB-VR-B1" in tr.all_updatable_orders and "HB-VR-B1" in tr.all_fillable_orders
    assert "HB-VR-B1" not in tr.all_orders
    # lost -> exchange says CANCELED -> leaves lost
    tr.apply_order_update(upd(OrderState.CANCELED, ex="X1"))
    assert "HB-VR-B1" not in tr.lost and tr.cached["HB-VR-B1"].state is OrderState.CANCELED
    assert [type(e) for e in events] == [OrderFailure]


def test_lost_order_not_found_again_leaves_lost():
    tr, clock, trace, events = setup()
    tr.start_tracking(mk(state=OrderState.OPEN, ex="X1"))
    for _ in range(4):
        tr.process_order_not_found("HB-VR-B1")
    assert "HB-VR-B1" in tr.lost
    tr.process_order_not_found("HB-VR-B1")
    assert "HB-VR-B1" not in tr.lost


def test_cache_expires_after_ttl_on_the_passed_clock():
    tr, clock, trace, events = setup()
    tr.start_tracking(mk(state=OrderState.OPEN, ex="X1"))
    tr.apply_order_update(upd(OrderState.CANCELED))
    assert tr.fetch_order("HB-VR-B1") is not None
    clock.t += 29.9
    assert "HB-VR-B1" in tr.cached
    clock.t += 0.2
    assert "HB-VR-B1" not in tr.cached and tr.fetch_order("HB-VR-B1") is None
    assert len(tr.cached) == 0


def test_views_and_exchange_id_lookups():
    tr, clock, trace, events = setup()
    tr.start_tracking(mk("A", state=OrderState.OPEN, ex="XA"))
    tr.start_tracking(mk("B", state=OrderState.OPEN, ex="XB"))
    tr.apply_order_update(upd(OrderState.CANCELED, cid="B"))
    assert set(tr.active_by_exchange_order_id) == {"XA"}
    assert set(tr.all_orders_by_exchange_order_id) == {"XA", "XB"}
    assert tr.fetch_order(exchange_order_id="XB").client_order_id == "B"
    assert tr.fetch_tracked_order("B") is None
    assert tr.where("A") == "active" and tr.where("B") == "cached" and tr.where("Z") is None


def test_failed_and_pending_cancel_do_not_fire_created():
    tr, clock, trace, events = setup()
    tr.start_tracking(mk("A"))
    tr.start_tracking(mk("B"))
    tr.apply_order_update(upd(OrderState.FAILED, cid="A", reason="place_error"))
    tr.apply_order_update(upd(OrderState.PENDING_CANCEL, cid="B"))
    assert [type(e) for e in events] == [OrderFailure]
    assert events[0].reason == "place_error"


def test_listener_exception_does_not_break_tracker():
    tr, clock, trace, events = setup()

    def bad(e):
        raise RuntimeError("strategy bug")

    tr.listeners.insert(0, bad)
    tr.start_tracking(mk())
    tr.apply_order_update(upd(OrderState.OPEN, ex="X"))
    assert tr.active["HB-VR-B1"].state is OrderState.OPEN
    assert isinstance(events[0], OrderCreated)
