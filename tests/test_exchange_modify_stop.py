"""The exchange core's order modification and stop-limit orders (VALR's PUT /v1/orders/modify,
MODIFY_ORDER, POST /v1/orders/stop/limit)."""

from __future__ import annotations

from decimal import Decimal as D

from replay.exchange import Exchange
from replay.exchange.engine import REASON_MODIFY_NOT_OPEN, REASON_MODIFY_NOTHING, REASON_STOP_IMMEDIATE
from replay.exchange.events import OpenOrdersChanged, OrderModified, OrderStatusChanged
from replay.exchange.model import (
    CancelRequest,
    LimitRequest,
    MarketRequest,
    ModifyMatchStrategy,
    ModifyRequest,
    OrderStatus,
    OrderType,
    PairSpec,
    Side,
    StopLimitRequest,
)

BTCZAR = PairSpec("BTCZAR", "BTC", "ZAR", D("1"), D("0.0001"), D("4"), D("10"), D("10000000"),
                  maker_fee=D("0"), taker_fee=D("0.001"))
BAL = {"BTC": D("2"), "ZAR": D("5000000")}


def new_exchange() -> Exchange:
    ex = Exchange([BTCZAR], seed=1)
    ex.open_account("bot", BAL)
    ex.open_account("mm", BAL)
    return ex


def modified(events) -> OrderModified:
    (m,) = [e for e in events if isinstance(e, OrderModified)]
    return m


def test_modify_price_moves_the_order_and_reports_an_outcome():
    ex = new_exchange()
    oid, _ = ex.place_limit(0, "bot", LimitRequest("BTCZAR", Side.SELL, D("0.01"), D("1500000"), customer_order_id="a"))
    sub = ex.submit_modify(1, "bot", ModifyRequest("BTCZAR", customer_order_id="a", new_price=D("1510000")))
    assert sub.order_id == oid and sub.customer_order_id == "a" and sub.request_id
    events = ex.process_all(2)
    m = modified(events)
    assert m.success and m.modify_request_id == sub.request_id and m.order.price == D("1510000")
    assert ex.book("BTCZAR").asks[0].price == D("1510000")
    assert any(isinstance(e, OpenOrdersChanged) for e in events)
    # the reservation follows the order: a sell reserves base, unchanged by a new price
    bal = {b.currency: b for b in ex.balances("bot")}
    assert bal["BTC"].reserved == D("0.01")


def test_modify_remaining_quantity_and_the_reservation():
    ex = new_exchange()
    oid, _ = ex.place_limit(0, "bot", LimitRequest("BTCZAR", Side.BUY, D("0.01"), D("1000000")))
    ex.submit_modify(1, "bot", ModifyRequest("BTCZAR", order_id=oid, new_remaining=D("0.02")))
    m = modified(ex.process_all(2))
    assert m.success and m.order.remaining_quantity == D("0.02") and m.order.original_quantity == D("0.02")
    bal = {b.currency: b for b in ex.balances("bot")}
    assert bal["ZAR"].reserved == D("20000")


def test_modify_that_changes_nothing_or_a_closed_order_fails():
    ex = new_exchange()
    oid, _ = ex.place_limit(0, "bot", LimitRequest("BTCZAR", Side.SELL, D("0.01"), D("1500000")))
    ex.submit_modify(1, "bot", ModifyRequest("BTCZAR", order_id=oid, new_price=D("1500000")))
    m = modified(ex.process_all(2))
    assert not m.success and m.failure_reason == REASON_MODIFY_NOTHING
    assert ex.open_orders("bot")  # RETAIN_ORIGINAL: the order stays
    ex.cancel(3, "bot", CancelRequest("BTCZAR", order_id=oid))
    ex.submit_modify(4, "bot", ModifyRequest("BTCZAR", order_id=oid, new_price=D("1600000")))
    m = modified(ex.process_all(5))
    assert not m.success and m.failure_reason == REASON_MODIFY_NOT_OPEN


def test_failed_modify_with_cancel_original_cancels_the_order():
    ex = new_exchange()
    oid, _ = ex.place_limit(0, "bot", LimitRequest("BTCZAR", Side.SELL, D("0.01"), D("1500000")))
    ex.submit_modify(1, "bot", ModifyRequest("BTCZAR", order_id=oid, new_price=D("1500000"),
                                             strategy=ModifyMatchStrategy.CANCEL_ORIGINAL))
    events = ex.process_all(2)
    assert not modified(events).success
    assert any(isinstance(e, OrderStatusChanged) and e.order.status is OrderStatus.CANCELLED for e in events)
    assert ex.open_orders("bot") == []


def test_stop_limit_waits_active_then_triggers_on_a_trade():
    ex = new_exchange()
    ex.place_limit(0, "mm", LimitRequest("BTCZAR", Side.BUY, D("0.01"), D("1400000")))
    ex.place_limit(0, "mm", LimitRequest("BTCZAR", Side.SELL, D("0.01"), D("1600000")))
    sub = ex.submit_stop_limit(1, "bot", StopLimitRequest("BTCZAR", Side.SELL, D("0.005"), D("1390000"), D("1450000"),
                                                          OrderType.STOP_LOSS_LIMIT, customer_order_id="stop"))
    ex.process_all(2)
    (stop,) = ex.open_orders("bot")
    assert stop.status is OrderStatus.ACTIVE and stop.stop_price == D("1450000")
    assert not ex.book("BTCZAR").asks or ex.book("BTCZAR").asks[0].price == D("1600000")  # off the book
    # no trade yet: the last price is unknown; a trade at 1400000 reaches the stop (<= 1450000)
    ex.open_account("x", BAL)
    _, events = ex.place_market(3, "x", MarketRequest("BTCZAR", Side.SELL, base_amount=D("0.001")))
    statuses = [e.order.status for e in events if isinstance(e, OrderStatusChanged)
                and e.order.order_id == sub.order_id]
    assert OrderStatus.PLACED in statuses  # triggered: a limit order now, and it sells into the bid
    order = ex.find_order("bot", "BTCZAR", order_id=sub.order_id)
    assert order is not None and order.filled_quantity == D("0.005")


def test_stop_limit_that_would_trigger_at_once_fails():
    ex = new_exchange()
    ex.place_limit(0, "mm", LimitRequest("BTCZAR", Side.BUY, D("0.01"), D("1400000")))
    ex.place_market(1, "bot", MarketRequest("BTCZAR", Side.SELL, base_amount=D("0.001")))  # last price 1400000
    sub = ex.submit_stop_limit(2, "bot", StopLimitRequest("BTCZAR", Side.SELL, D("0.005"), D("1390000"),
                                                          D("1450000"), OrderType.STOP_LOSS_LIMIT))
    ex.process_all(3)
    order = ex.find_order("bot", "BTCZAR", order_id=sub.order_id)
    assert order is not None and order.status is OrderStatus.FAILED and order.failed_reason == REASON_STOP_IMMEDIATE
