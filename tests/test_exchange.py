"""Tests of the pure exchange core: lifecycle event sequences, matching, validation, balances."""

from __future__ import annotations

import random
from collections import defaultdict
from decimal import Decimal as D

import pytest

from replay.exchange import Exchange
from replay.exchange.engine import (
    CANCEL_ALREADY_CLOSED,
    CANCEL_NOT_FOUND,
    REASON_DUPLICATE_CID,
    REASON_FOK,
    REASON_INSUFFICIENT_BALANCE,
    REASON_MIN_SIZE,
    REASON_NO_LIQUIDITY,
    REASON_POST_ONLY,
    REASON_TICK,
)
from replay.exchange.events import (
    AccountTrade,
    BookChanged,
    CancelFailed,
    OpenOrdersChanged,
    OrderStatusChanged,
    PublicTrade,
)
from replay.exchange.model import (
    CancelRequest,
    ExchangeError,
    LimitRequest,
    MarketRequest,
    OrderStatus,
    OrderType,
    PairSpec,
    Side,
    TimeInForce,
)

BTCZAR = PairSpec(
    "BTCZAR", "BTC", "ZAR", D("1"), D("0.0001"), D("4"), D("10"), D("10000000"),
    maker_fee=D("0"), taker_fee=D("0.001"),
)  # fmt: skip
ETHZAR = PairSpec("ETHZAR", "ETH", "ZAR", D("1"), D("0.001"), D("100"), D("10"), D("10000000"))
BAL = {"BTC": D("2"), "ETH": D("10"), "ZAR": D("5000000")}


def new_exchange(seed: int = 0) -> Exchange:
    ex = Exchange([BTCZAR, ETHZAR], seed=seed)
    ex.open_account("bot", BAL)
    ex.open_account("mm", BAL)
    return ex


def kinds(events) -> list[str]:
    return [type(e).__name__ for e in events]


def bal(ex: Exchange, account: str, cur: str):
    return next(b for b in ex.balances(account) if b.currency == cur)


def buy(qty, price, **kw) -> LimitRequest:
    return LimitRequest("BTCZAR", Side.BUY, D(qty), D(price), **kw)


def sell(qty, price, **kw) -> LimitRequest:
    return LimitRequest("BTCZAR", Side.SELL, D(qty), D(price), **kw)


# --- lifecycle sequences ------------------------------------------------------------------


def test_place_rest_cancel_sequence():
    ex = new_exchange()
    oid, ev = ex.place_limit(10, "bot", buy("0.01", "1000000", customer_order_id="c-1"))
    assert kinds(ev) == ["OrderProcessed", "OrderStatusChanged", "OpenOrdersChanged", "BalanceChanged", "BookChanged"]
    assert ev[0].success and ev[0].order_id == oid and ev[0].customer_order_id == "c-1"
    assert ev[1].order.status is OrderStatus.PLACED
    assert [o.order_id for o in ev[2].orders] == [oid]
    assert ev[3].balance.currency == "ZAR" and ev[3].balance.reserved == D("10000")
    assert ev[3].balance.available == D("4990000")
    assert ex.book("BTCZAR").bids[0].price == D("1000000")

    ev = ex.cancel(20, "bot", CancelRequest("BTCZAR", order_id=oid))
    assert kinds(ev) == ["OrderStatusChanged", "OpenOrdersChanged", "BalanceChanged", "BookChanged"]
    assert ev[0].order.status is OrderStatus.CANCELLED and ev[0].order.updated_ms == 20
    assert ev[1].orders == ()
    assert ev[2].balance.reserved == 0 and ev[2].balance.available == D("5000000")
    assert ex.book("BTCZAR").bids == ()
    assert ex.open_orders("bot") == []
    assert ex.order_history("bot")[0].order_id == oid


def test_cancel_by_customer_order_id_and_cancel_failures():
    ex = new_exchange()
    oid, _ = ex.place_limit(1, "bot", sell("0.01", "1600000", customer_order_id="ask-1"))
    sub = ex.submit_cancel(2, "bot", CancelRequest("BTCZAR", customer_order_id="ask-1"))
    assert sub.order_id == oid
    ev = ex.process_all(2)
    assert ev[0].order.status is OrderStatus.CANCELLED
    # Again: already closed.
    ev = ex.cancel(3, "bot", CancelRequest("BTCZAR", order_id=oid))
    assert kinds(ev) == ["CancelFailed"] and ev[0].message == CANCEL_ALREADY_CLOSED
    # Unknown id, and another account's order.
    ev = ex.cancel(4, "bot", CancelRequest("BTCZAR", order_id="nope"))
    assert ev[0].message == CANCEL_NOT_FOUND
    other, _ = ex.place_limit(5, "mm", sell("0.01", "1600000"))
    ev = ex.cancel(6, "bot", CancelRequest("BTCZAR", order_id=other))
    assert isinstance(ev[0], CancelFailed) and ex.find_order("mm", order_id=other).status is OrderStatus.PLACED


def test_partial_fill_then_fill_with_counterparty():
    ex = new_exchange()
    ask, _ = ex.place_limit(1, "bot", sell("0.01", "1500000"))
    taker, ev = ex.place_limit(2, "mm", buy("0.004", "1500100"))
    assert kinds(ev) == [
        "OrderProcessed", "OrderStatusChanged",
        "AccountTrade", "BalanceChanged", "BalanceChanged", "OrderStatusChanged",  # taker
        "AccountTrade", "BalanceChanged", "BalanceChanged", "OrderStatusChanged",  # maker
        "OpenOrdersChanged", "PublicTrade", "BookChanged",
    ]  # fmt: skip
    t_trade, m_trade = ev[2], ev[6]
    assert t_trade.account == "mm" and not t_trade.is_maker and t_trade.side == "buy"
    assert m_trade.account == "bot" and m_trade.is_maker and m_trade.side == "sell"
    assert t_trade.trade.price == D("1500000") and t_trade.trade.quantity == D("0.004")
    assert t_trade.fee == D("0.000004") and t_trade.fee_currency == "BTC"  # taker 10 bps of base received
    assert m_trade.fee == 0 and m_trade.fee_currency == "ZAR"
    assert t_trade.history_id != m_trade.history_id
    assert ev[9].order.status is OrderStatus.PARTIALLY_FILLED and ev[9].order.remaining_quantity == D("0.006")
    assert ev[10].account == "bot" and ev[10].orders[0].remaining_quantity == D("0.006")
    assert ev[11].trade.taker_side is Side.BUY
    # Taker bought 0.004 at 1500000 with a 1500100 limit: the price improvement is refunded.
    assert bal(ex, "mm", "ZAR").available == D("5000000") - D("6000")
    assert bal(ex, "mm", "ZAR").reserved == 0
    assert bal(ex, "mm", "BTC").available == D("2.003996")
    assert bal(ex, "bot", "BTC").reserved == D("0.006")
    assert bal(ex, "bot", "ZAR").available == D("5006000")

    _, ev = ex.place_limit(3, "mm", buy("0.006", "1500000"))
    maker_status = [e for e in ev if isinstance(e, OrderStatusChanged) and e.account == "bot"]
    assert maker_status[-1].order.status is OrderStatus.FILLED
    assert maker_status[-1].order.filled_quantity == D("0.01")
    assert [e.orders for e in ev if isinstance(e, OpenOrdersChanged)] == [()]
    assert bal(ex, "bot", "BTC").reserved == 0 and bal(ex, "bot", "BTC").total == D("1.99")
    assert ex.find_order("bot", order_id=ask).status is OrderStatus.FILLED
    assert ex.book("BTCZAR").asks == ()
    assert [t.quantity for t in ex.recent_trades("BTCZAR")] == [D("0.006"), D("0.004")]


def test_taker_sweeps_levels_in_price_time_order_and_rests_remainder():
    ex = new_exchange()
    a1, _ = ex.place_limit(1, "mm", sell("0.01", "1500010"))
    a2, _ = ex.place_limit(2, "mm", sell("0.01", "1500000"))
    a3, _ = ex.place_limit(3, "bot", sell("0.01", "1500000"))  # same price, later
    ex.open_account("x", BAL)
    tid, ev = ex.place_limit(4, "x", buy("0.025", "1500005"))
    trades = [e.trade for e in ev if isinstance(e, PublicTrade)]
    assert [(t.maker_order_id, t.quantity) for t in trades] == [(a2, D("0.01")), (a3, D("0.01"))]
    rest = ex.find_order("x", order_id=tid)
    assert rest.status is OrderStatus.PARTIALLY_FILLED and rest.remaining_quantity == D("0.005")
    assert ex.book("BTCZAR").bids[0].price == D("1500005")
    assert bal(ex, "x", "ZAR").reserved == D("1500005") * D("0.005")
    assert ev.count(BookChanged(4, "BTCZAR")) == 1
    assert {e.account for e in ev if isinstance(e, OpenOrdersChanged)} == {"x", "mm", "bot"}
    assert [t.sequence for t in trades] == [1, 2]


# --- validation at processing --------------------------------------------------------------


def failed(ev):
    assert kinds(ev) == ["OrderProcessed", "OrderFailed", "OrderStatusChanged"], kinds(ev)
    assert ev[0].success is False
    assert ev[2].order.status is OrderStatus.FAILED
    assert ev[0].failure_reason == ev[1].message == ev[2].order.failed_reason
    return ev[0].failure_reason


def test_post_only_rejected_when_it_would_match():
    ex = new_exchange()
    ex.place_limit(1, "mm", sell("0.01", "1500000"))
    oid, ev = ex.place_limit(2, "bot", buy("0.01", "1500000", post_only=True))
    assert failed(ev) == REASON_POST_ONLY
    assert ex.find_order("bot", order_id=oid).status is OrderStatus.FAILED
    assert ex.open_orders("bot") == [] and bal(ex, "bot", "ZAR").reserved == 0
    oid, ev = ex.place_limit(3, "bot", buy("0.01", "1499999", post_only=True))
    assert ev[0].success and ex.find_order("bot", order_id=oid).order_type is OrderType.POST_ONLY_LIMIT


def test_duplicate_customer_order_id_rejected_while_open_and_reusable_after_close():
    ex = new_exchange()
    first, _ = ex.place_limit(1, "bot", buy("0.01", "1000000", customer_order_id="q1"))
    dup, ev = ex.place_limit(2, "bot", buy("0.01", "1000001", customer_order_id="q1"))
    assert failed(ev) == REASON_DUPLICATE_CID
    assert [o.order_id for o in ex.open_orders("bot")] == [first]
    # By customer id, the open order is preferred over the newer failed one.
    assert ex.find_order("bot", customer_order_id="q1").order_id == first
    # Another account may use the same id.
    _, ev = ex.place_limit(3, "mm", buy("0.01", "1000000", customer_order_id="q1"))
    assert ev[0].success
    ex.cancel(4, "bot", CancelRequest("BTCZAR", customer_order_id="q1"))
    again, ev = ex.place_limit(5, "bot", buy("0.01", "1000000", customer_order_id="q1"))
    assert ev[0].success
    assert ex.find_order("bot", customer_order_id="q1").order_id == again
    ex.cancel(6, "bot", CancelRequest("BTCZAR", customer_order_id="q1"))
    # No open one now: the most recent.
    assert ex.find_order("bot", customer_order_id="q1").order_id == again


@pytest.mark.parametrize(
    "req, reason",
    [
        (buy("0.00009", "1000000"), REASON_MIN_SIZE),  # below min base
        (buy("0.0001", "50000"), REASON_MIN_SIZE),  # 5 ZAR < min quote 10
        (buy("0.01", "1000000.5"), REASON_TICK),
        (buy("3", "1000000"), REASON_INSUFFICIENT_BALANCE),  # 3m ZAR fine, but see below
    ],
)
def test_validation_failures(req, reason):
    ex = new_exchange()
    if reason == REASON_INSUFFICIENT_BALANCE:
        req = buy("3", "2000000")  # needs 6m ZAR, has 5m
    _, ev = ex.place_limit(1, "bot", req)
    assert failed(ev).startswith(reason)
    assert ex.open_orders("bot") == [] and bal(ex, "bot", "ZAR").reserved == 0


def test_min_size_message_names_the_minimums():
    ex = new_exchange()
    _, ev = ex.place_limit(1, "bot", buy("0.00001", "1000000"))
    assert failed(ev) == "Minimum order size not met . Minimum amount: 0.0001 BTC, minimum total: 10 ZAR"


def test_insufficient_balance_sell_and_reserved_funds_count():
    ex = new_exchange()
    _, ev = ex.place_limit(1, "bot", sell("1.5", "1600000"))
    assert ev[0].success
    _, ev = ex.place_limit(2, "bot", sell("0.6", "1600000"))  # 2 - 1.5 reserved = 0.5 available
    assert failed(ev) == REASON_INSUFFICIENT_BALANCE
    assert bal(ex, "bot", "BTC").available == D("0.5") and bal(ex, "bot", "BTC").reserved == D("1.5")


def test_synchronous_refusals():
    ex = new_exchange()
    with pytest.raises(ExchangeError) as e:
        ex.submit_limit(1, "bot", LimitRequest("XYZZAR", Side.BUY, D("1"), D("1")))
    assert e.value.field == "pair" and e.value.code == -1
    with pytest.raises(ExchangeError) as e:
        ex.submit_limit(1, "ghost", buy("1", "1"))
    assert e.value.field == "account"
    with pytest.raises(ExchangeError) as e:
        ex.submit_limit(1, "bot", buy("0", "1"))
    assert e.value.field == "quantity"
    with pytest.raises(ExchangeError) as e:
        ex.submit_limit(1, "bot", buy("1", "-5"))
    assert e.value.field == "price"
    with pytest.raises(ExchangeError) as e:
        ex.submit_limit(1, "bot", LimitRequest("BTCZAR", "up", D("1"), D("1")))  # type: ignore[arg-type]
    assert e.value.field == "side"
    with pytest.raises(ExchangeError):
        ex.submit_market(1, "bot", MarketRequest("BTCZAR", Side.BUY))
    with pytest.raises(ExchangeError):
        ex.submit_cancel(1, "bot", CancelRequest("BTCZAR"))
    with pytest.raises(ExchangeError) as e:
        ex.submit_limit(1, "bot", buy("1", "1", customer_order_id="bad id!"))
    assert e.value.field == "customerOrderId"
    assert ex.pending == 0


# --- two-stage processing --------------------------------------------------------------------


def test_process_next_is_fifo_and_orders_are_unknown_until_processed():
    ex = new_exchange()
    s1 = ex.submit_limit(1, "bot", buy("0.01", "1000000", customer_order_id="a"))
    s2 = ex.submit_limit(2, "bot", sell("0.01", "1600000", customer_order_id="b"))
    s3 = ex.submit_cancel(3, "bot", CancelRequest("BTCZAR", customer_order_id="a"))
    assert s3.order_id == s1.order_id  # the named order is known while still queued
    assert s1.ticket < s2.ticket < s3.ticket and s1.order_id != s2.order_id
    assert ex.pending == 3
    assert ex.find_order("bot", order_id=s1.order_id) is None
    assert ex.open_orders("bot") == []

    ev = ex.process_next(4)
    assert ev[0].order_id == s1.order_id and ex.pending == 2
    assert ex.find_order("bot", order_id=s1.order_id).created_ms == 1  # created at submit
    assert ex.find_order("bot", order_id=s1.order_id).updated_ms == 4
    ev = ex.process_next(5)
    assert ev[0].order_id == s2.order_id
    # The open-orders snapshot is taken now: both orders, oldest first.
    snap = next(e for e in ev if isinstance(e, OpenOrdersChanged))
    assert [o.order_id for o in snap.orders] == [s1.order_id, s2.order_id]
    ev = ex.process_next(6)
    assert ev[0].order.order_id == s1.order_id and ev[0].order.status is OrderStatus.CANCELLED
    assert ex.pending == 0 and ex.process_next(7) == []


def test_cancel_processed_before_its_placement_fails():
    ex = new_exchange()
    ex.submit_cancel(1, "bot", CancelRequest("BTCZAR", order_id="will-not-exist"))
    sub = ex.submit_limit(2, "bot", buy("0.01", "1000000"))
    ev = ex.process_all(3)
    assert isinstance(ev[0], CancelFailed)
    assert ex.find_order("bot", order_id=sub.order_id).status is OrderStatus.PLACED


def test_execute_bypasses_the_queue():
    ex = new_exchange()
    queued = ex.submit_limit(1, "bot", buy("0.01", "1000000"))
    oid, ev = ex.execute(2, "mm", sell("0.01", "1600000"))
    assert ev[0].order_id == oid and ex.pending == 1
    assert ex.find_order("bot", order_id=queued.order_id) is None


def test_cancel_all():
    ex = new_exchange()
    ids = [ex.place_limit(i, "bot", buy("0.01", str(1000000 + i)))[0] for i in range(3)]
    eth, _ = ex.place_limit(4, "bot", LimitRequest("ETHZAR", Side.BUY, D("0.1"), D("50000")))
    cancelled, ev = ex.cancel_all(5, "bot", "BTCZAR")
    assert cancelled == ids
    assert kinds(ev) == ["OrderStatusChanged"] * 3 + ["OpenOrdersChanged", "BalanceChanged", "BookChanged"]
    assert [o.order_id for o in ev[3].orders] == [eth]
    cancelled, _ = ex.cancel_all(6, "bot")
    assert cancelled == [eth] and ex.open_orders("bot") == []
    assert bal(ex, "bot", "ZAR").reserved == 0


# --- IOC / FOK / market --------------------------------------------------------------------


def test_ioc_fills_what_it_can_and_cancels_the_rest():
    ex = new_exchange()
    ex.place_limit(1, "mm", sell("0.01", "1500000"))
    oid, ev = ex.place_limit(2, "bot", buy("0.03", "1500000", time_in_force=TimeInForce.IOC))
    last = [e for e in ev if isinstance(e, OrderStatusChanged) and e.account == "bot"][-1]
    assert last.order.status is OrderStatus.CANCELLED and last.order.filled_quantity == D("0.01")
    assert ex.open_orders("bot") == [] and bal(ex, "bot", "ZAR").reserved == 0
    assert ex.book("BTCZAR").bids == ()
    assert not [e for e in ev if isinstance(e, OpenOrdersChanged) and e.account == "bot"]


def test_fok_fails_without_full_liquidity_and_fills_with_it():
    ex = new_exchange()
    ex.place_limit(1, "mm", sell("0.01", "1500000"))
    _, ev = ex.place_limit(2, "bot", buy("0.02", "1500000", time_in_force=TimeInForce.FOK))
    assert failed(ev) == REASON_FOK
    assert ex.book("BTCZAR").asks[0].quantity == D("0.01")
    _, ev = ex.place_limit(3, "bot", buy("0.01", "1500000", time_in_force=TimeInForce.FOK))
    assert [e.order.status for e in ev if isinstance(e, OrderStatusChanged) and e.account == "bot"][-1] is (
        OrderStatus.FILLED
    )


def test_market_orders_by_base_and_by_quote():
    ex = new_exchange()
    ex.place_limit(1, "mm", sell("0.01", "1500000"))
    ex.place_limit(2, "mm", sell("0.01", "1510000"))
    oid, ev = ex.place_market(3, "bot", MarketRequest("BTCZAR", Side.BUY, base_amount=D("0.015")))
    assert kinds(ev)[0] == "OrderProcessed" and "OrderStatusChanged" in kinds(ev)
    order = ex.find_order("bot", order_id=oid)
    assert order.status is OrderStatus.FILLED and order.price is None and order.order_type is OrderType.MARKET
    assert order.filled_quote == D("15000") + D("7550")
    assert bal(ex, "bot", "ZAR").available == D("5000000") - D("22550") and bal(ex, "bot", "ZAR").reserved == 0

    # Sell by quote amount into a bid.
    ex.place_limit(4, "mm", buy("0.02", "1400000"))
    oid, ev = ex.place_market(5, "bot", MarketRequest("BTCZAR", Side.SELL, quote_amount=D("14000")))
    order = ex.find_order("bot", order_id=oid)
    assert order.status is OrderStatus.FILLED and order.filled_quantity == D("0.01")
    assert order.filled_quote == D("14000")
    assert bal(ex, "bot", "BTC").reserved == 0

    # Buy by quote with less liquidity than asked: the quantity is what the book offered.
    oid, ev = ex.place_market(6, "bot", MarketRequest("BTCZAR", Side.BUY, quote_amount=D("100000")))
    order = ex.find_order("bot", order_id=oid)
    assert order.status is OrderStatus.FILLED
    assert order.filled_quantity == D("0.005")  # all that was left at 1510000
    assert bal(ex, "bot", "ZAR").reserved == 0

    # Buy by base with less liquidity than asked: the remainder is cancelled.
    ex.place_limit(7, "mm", sell("0.01", "1520000"))
    oid, ev = ex.place_market(8, "bot", MarketRequest("BTCZAR", Side.BUY, base_amount=D("0.02")))
    order = ex.find_order("bot", order_id=oid)
    assert order.status is OrderStatus.CANCELLED and order.filled_quantity == D("0.01")
    assert order.remaining_quantity == D("0.01") and bal(ex, "bot", "ZAR").reserved == 0

    # Nothing left on the ask side.
    _, ev = ex.place_market(9, "bot", MarketRequest("BTCZAR", Side.BUY, base_amount=D("0.01")))
    assert failed(ev) == REASON_NO_LIQUIDITY


def test_market_order_insufficient_balance():
    ex = new_exchange()
    _, ev = ex.place_limit(1, "mm", sell("1.9", "3000000"))
    assert ev[0].success
    # 1.9 BTC at 3,000,000 costs 5.7m ZAR; the bot has 5m.
    _, ev = ex.place_market(2, "bot", MarketRequest("BTCZAR", Side.BUY, base_amount=D("1.9")))
    assert failed(ev) == REASON_INSUFFICIENT_BALANCE


def test_self_trade_prevention_cancels_the_resting_order():
    ex = new_exchange()
    own, _ = ex.place_limit(1, "bot", sell("0.01", "1500000"))
    other, _ = ex.place_limit(2, "mm", sell("0.01", "1500000"))
    _, ev = ex.place_limit(3, "bot", buy("0.01", "1500000"))
    assert ex.find_order("bot", order_id=own).status is OrderStatus.CANCELLED
    trades = [e.trade for e in ev if isinstance(e, PublicTrade)]
    assert [t.maker_order_id for t in trades] == [other]
    assert bal(ex, "bot", "BTC").reserved == 0


# --- balances ------------------------------------------------------------------------------


def test_balances_reserved_and_released_and_order_history():
    ex = new_exchange()
    oid, _ = ex.place_limit(1, "bot", sell("0.5", "1600000"))
    assert bal(ex, "bot", "BTC").reserved == D("0.5") and bal(ex, "bot", "BTC").available == D("1.5")
    ex.cancel(2, "bot", CancelRequest("BTCZAR", order_id=oid))
    assert bal(ex, "bot", "BTC").reserved == 0 and bal(ex, "bot", "BTC").available == D("2")
    hist = ex.order_history("bot")
    assert [h.order_id for h in hist] == [oid]
    assert ex.order_history("bot", skip=1) == []


def test_random_sequences_keep_balances_consistent():
    """Property over random command sequences: reserved == what open orders hold, nothing
    negative, and every currency's total is conserved up to the fees paid."""
    rng = random.Random(1234)
    n_trades = n_partial = 0
    for run in range(15):
        ex = Exchange([BTCZAR], seed=run)
        accounts = ["a", "b", "c"]
        start = {"BTC": D("3"), "ZAR": D("5000000")}
        for a in accounts:
            ex.open_account(a, start)
        fees = defaultdict(lambda: D(0))
        open_ids: list[tuple[str, str]] = []
        for step in range(120):
            a = rng.choice(accounts)
            r = rng.random()
            if r < 0.55:
                side = rng.choice([Side.BUY, Side.SELL])
                price = D(1500000 + rng.randint(-30, 30) * 100)
                qty = D(rng.randint(1, 400)) / 1000
                tif = rng.choice([TimeInForce.GTC] * 4 + [TimeInForce.IOC, TimeInForce.FOK])
                sub = ex.submit_limit(step, a, LimitRequest("BTCZAR", side, qty, price, rng.random() < 0.2, tif))
                open_ids.append((a, sub.order_id))
            elif r < 0.65:
                side = rng.choice([Side.BUY, Side.SELL])
                if rng.random() < 0.5:
                    req = MarketRequest("BTCZAR", side, base_amount=D(rng.randint(1, 300)) / 1000)
                else:
                    req = MarketRequest("BTCZAR", side, quote_amount=D(rng.randint(100, 400000)))
                ex.submit_market(step, a, req)
            elif r < 0.85 and open_ids:
                acct, oid = open_ids.pop(rng.randrange(len(open_ids)))
                ex.submit_cancel(step, acct, CancelRequest("BTCZAR", order_id=oid))
            if rng.random() < 0.6:
                for ev in ex.process_all(step):
                    if isinstance(ev, AccountTrade):
                        fees[ev.fee_currency] += ev.fee
                        n_trades += 1
                        n_partial += ev.order.status is OrderStatus.PARTIALLY_FILLED
        for ev in ex.process_all(10_000):
            if isinstance(ev, AccountTrade):
                fees[ev.fee_currency] += ev.fee

        for cur in ("BTC", "ZAR"):
            total = sum((bal(ex, a, cur).total for a in accounts), D(0))
            assert total + fees[cur] == start[cur] * len(accounts), (run, cur)
        for a in accounts:
            held = defaultdict(lambda: D(0))
            for o in ex.open_orders(a):
                if o.side is Side.BUY:
                    held["ZAR"] += o.price * o.remaining_quantity
                else:
                    held["BTC"] += o.remaining_quantity
            for b in ex.balances(a):
                assert b.available >= 0 and b.reserved >= 0, (run, a, b)
                assert b.reserved == held[b.currency], (run, a, b)
                assert b.available + b.reserved == b.total
        # The book holds exactly the open orders, and it never stays crossed.
        book = ex.book("BTCZAR", depth=1000)
        assert sum((level.quantity for level in book.asks + book.bids), D(0)) == sum(
            (o.remaining_quantity for a in accounts for o in ex.open_orders(a)), D(0)
        )
        if book.asks and book.bids:
            assert book.bids[0].price < book.asks[0].price
    assert n_trades > 100 and n_partial > 20  # the sequences did exercise matching


# --- determinism ---------------------------------------------------------------------------


def script(seed: int) -> list:
    ex = new_exchange(seed)
    out = []
    out += ex.place_limit(1, "mm", sell("0.01", "1500000"))[1]
    out += ex.place_limit(2, "bot", buy("0.004", "1500000"))[1]
    out += ex.cancel_all(3, "mm")[1]
    out += ex.place_market(4, "bot", MarketRequest("BTCZAR", Side.SELL, base_amount=D("0.001")))[1]
    return out


def test_same_seed_same_events_and_ids():
    assert script(7) == script(7)
    a, b = script(7), script(8)
    assert a != b
    assert [type(e) for e in a] == [type(e) for e in b]


def test_book_and_summary_queries():
    ex = new_exchange()
    seq0 = ex.book("BTCZAR").sequence
    ex.place_limit(1, "mm", sell("0.01", "1500000"))
    ex.place_limit(2, "mm", sell("0.02", "1500000"))
    ex.place_limit(3, "mm", buy("0.01", "1400000"))
    view = ex.book("BTCZAR")
    assert view.sequence == seq0 + 3 and view.last_change_ms == 3
    assert view.asks[0].quantity == D("0.03") and view.asks[0].order_count == 2
    ex.place_limit(4, "bot", buy("0.01", "1500000"))
    s = ex.market_summary("BTCZAR")
    assert s.ask_price == D("1500000") and s.bid_price == D("1400000")
    assert s.last_traded_price == D("1500000") and s.base_volume == D("0.01")
    assert ex.book("BTCZAR", depth=0).asks == ()
    assert set(ex.accounts) == {"bot", "mm"}
    with pytest.raises(ExchangeError):
        ex.book("NOPE")


def test_adopt_limit_keeps_the_given_id_and_leaves_the_queue_alone():
    ex = Exchange([BTCZAR], seed=3)
    ex.open_account("a", {"ZAR": D("100000"), "BTC": D("1")})
    queued = ex.submit_limit(0, "a", LimitRequest("BTCZAR", Side.BUY, D("0.001"), D("900000")))
    events = ex.adopt_limit(1, "a", LimitRequest("BTCZAR", Side.SELL, D("0.001"), D("1100000"),
                                                 customer_order_id="carried-1"), "recorded-id-1")
    assert ex.pending == 1  # the queued placement was not processed along the way
    assert any(isinstance(e, OrderStatusChanged) and e.order.order_id == "recorded-id-1" for e in events)
    assert ex.find_order("a", order_id="recorded-id-1").customer_order_id == "carried-1"
    with pytest.raises(ExchangeError):
        ex.adopt_limit(2, "a", LimitRequest("BTCZAR", Side.SELL, D("0.001"), D("1100000")), "recorded-id-1")
    with pytest.raises(ExchangeError):  # an id still waiting in the queue
        ex.adopt_limit(2, "a", LimitRequest("BTCZAR", Side.SELL, D("0.001"), D("1100000")), queued.order_id)
