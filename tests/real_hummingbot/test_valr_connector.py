"""The Hummingbot VALR connector (replay/hummingbot/valr/) against the fake VALR server over loopback.

Runs only where Hummingbot is installed (the .hbvenv environment). Each test starts a
``FakeValr`` on 127.0.0.1:0 on the test's own (real-time) loop, points the connector's URL
constants at it, starts the connector's network tasks and waits until it is ``ready``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, AsyncIterator, Callable

import pytest

# a submodule: "hummingbot" alone would also find this tests/real_hummingbot directory (a namespace package)
pytest.importorskip("hummingbot.connector.exchange_py_base")

from hummingbot.core.data_type.common import OrderType, PriceType, TradeType  # noqa: E402
from hummingbot.core.data_type.in_flight_order import OrderState, OrderUpdate  # noqa: E402
from hummingbot.core.event.event_logger import EventLogger  # noqa: E402
from hummingbot.core.event.events import MarketEvent  # noqa: E402
from hummingbot.core.web_assistant.connections.connections_factory import ConnectionsFactory  # noqa: E402

from replay.capture import TraceRecorder  # noqa: E402
from replay.clock import Clock  # noqa: E402
from replay.config import DEMO_API_KEY, DEMO_API_SECRET, AccountConfig, default_config  # noqa: E402
from replay.exchange.model import LimitRequest, Side  # noqa: E402
from replay.hummingbot.valr import valr_constants as CONSTANTS  # noqa: E402
from replay.hummingbot.valr.valr_exchange import ValrExchange, ValrOrderNotFound  # noqa: E402
from replay.latency import parse_distribution  # noqa: E402
from replay.schedule import Delay, DeliverySchedule, Drop, Match  # noqa: E402
from replay.server.app import FakeValr  # noqa: E402

PAIR = "BTC-ZAR"
SYMBOL = "BTCZAR"
AMOUNT = Decimal("0.001")
TAKER_KEY = "c3" * 32
TAKER_SECRET = "s3" * 32
EVENTS = (MarketEvent.OrderCancelled, MarketEvent.OrderFailure, MarketEvent.OrderFilled,
          MarketEvent.BuyOrderCreated, MarketEvent.SellOrderCreated, MarketEvent.BuyOrderCompleted)


async def wait_until(pred: Callable[[], bool], timeout: float = 5.0,
                     what: str | Callable[[], str] = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what() if callable(what) else what}")
        await asyncio.sleep(0.02)


@dataclass
class Run:
    server: FakeValr
    ex: ValrExchange
    loggers: dict

    def events(self, tag: MarketEvent) -> list:
        return list(self.loggers[tag].event_log)

    def order(self, cid: str):
        """The order wherever the tracker keeps it (active, cached, lost)."""
        return self.ex._order_tracker.all_fillable_orders.get(cid)

    def live_on_exchange(self) -> list:
        return self.server.exchange.open_orders("demo")

    def requests(self, kind: str) -> list[dict]:
        """Traced client requests: REST ``"POST /v1/orders/limit"`` or a WS ``"PLACE_LIMIT_ORDER"``."""
        return [r["data"] for r in self.server.trace.records if r["dir"] == "out" and r["type"] == kind]

    def inject(self, message: dict) -> None:
        """An account-stream message as if it had arrived on the socket."""
        self.ex._user_stream_tracker.user_stream.put_nowait(message)

    async def place(self, side: TradeType = TradeType.BUY, price: Decimal | None = None,
                    order_type: OrderType = OrderType.LIMIT_MAKER) -> str:
        mid = self.ex.get_price_by_type(PAIR, PriceType.MidPrice)
        if price is None:
            price = mid * (Decimal("0.98") if side is TradeType.BUY else Decimal("1.02"))
        place = self.ex.buy if side is TradeType.BUY else self.ex.sell
        cid = place(PAIR, AMOUNT, order_type, price)  # tracked by a task Hummingbot schedules
        await wait_until(lambda: self.order(cid) is not None, 1.0, f"{cid} to be tracked")
        return cid


async def _ticker(ex: ValrExchange) -> None:
    """What Hummingbot's Clock does for a connector: set its timestamp and tick it."""
    while True:
        now = time.time()
        ex._set_current_timestamp(now)
        ex.tick(now)
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def running(policy: str = "naive", schedule: DeliverySchedule | None = None, config: Any = None,
                  ready_timeout: float = 8.0) -> AsyncIterator[Run]:
    ConnectionsFactory._instance = None  # a fresh process-wide factory (and aiohttp session) on this loop
    clock = Clock()
    server = FakeValr(config or default_config(), clock=clock, seed=7, trace=TraceRecorder(clock),
                      schedule=schedule)
    await server.start("127.0.0.1", 0)
    saved = (CONSTANTS.REST_URL, CONSTANTS.WSS_ACCOUNT_URL, CONSTANTS.WSS_TRADE_URL)
    CONSTANTS.REST_URL = server.rest_url
    CONSTANTS.WSS_ACCOUNT_URL = server.ws_account_url
    CONSTANTS.WSS_TRADE_URL = server.ws_trade_url
    ex: ValrExchange | None = None
    ticker: asyncio.Task | None = None
    try:
        ex = ValrExchange(DEMO_API_KEY, DEMO_API_SECRET, trading_pairs=[PAIR], open_orders_policy=policy)
        loggers = {tag: EventLogger() for tag in EVENTS}
        for tag, logger in loggers.items():
            ex.add_listener(tag, logger)
        ex._set_current_timestamp(time.time())
        ticker = asyncio.create_task(_ticker(ex))
        await ex.start_network()
        await wait_until(lambda: ex.ready, ready_timeout, lambda: f"the connector to be ready ({ex.status_dict})")
        yield Run(server, ex, loggers)
    finally:
        if ticker is not None:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
        if ex is not None:
            await ex.stop_network()
        await ConnectionsFactory().close()
        ConnectionsFactory._instance = None
        await server.stop()
        CONSTANTS.REST_URL, CONSTANTS.WSS_ACCOUNT_URL, CONSTANTS.WSS_TRADE_URL = saved


def _delays(*items: tuple[Match, str]) -> DeliverySchedule:
    return DeliverySchedule(seed=7, perturbations=[
        Delay(match=m, extra=parse_distribution(d), name=f"delay-{i}") for i, (m, d) in enumerate(items)])


# --- readiness, placement, cancel ----------------------------------------------------------------

async def test_ready_with_rules_balances_book_and_mid_price():
    async with running() as run:
        ex = run.ex
        assert await ex.exchange_symbol_associated_to_pair(PAIR) == SYMBOL
        rule = ex.trading_rules[PAIR]
        assert rule.min_price_increment == Decimal("1")
        assert rule.min_order_size == Decimal("0.0001")
        assert rule.min_notional_size == Decimal("10")
        assert rule.min_base_amount_increment == Decimal("1e-8")
        assert ex.get_balance("ZAR") == Decimal("10000000")
        mid = ex.get_price_by_type(PAIR, PriceType.MidPrice)
        assert mid.is_finite() and abs(mid - Decimal("1500000")) < Decimal("50000")
        assert ex._user_stream_data_source.authenticated


@pytest.mark.parametrize("side", [TradeType.BUY, TradeType.SELL])
async def test_limit_maker_order_opens_over_the_websocket(side):
    async with running(policy="ignore") as run:
        cid = await run.place(side)
        await wait_until(lambda: run.order(cid) is not None and run.order(cid).current_state == OrderState.OPEN,
                         what="OPEN")
        order = run.order(cid)
        assert order.exchange_order_id
        live = [o for o in run.live_on_exchange() if o.customer_order_id == cid]
        assert [o.order_id for o in live] == [order.exchange_order_id]
        assert live[0].side.value == ("buy" if side is TradeType.BUY else "sell")
        assert live[0].order_type.value == "post-only limit"
        assert (run.ex.ws_placements, run.ex.rest_placements) == (1, 0)
        sent = run.requests("PLACE_LIMIT_ORDER")
        assert len(sent) == 1 and sent[0]["payload"]["customerOrderId"] == cid and sent[0]["payload"]["postOnly"]
        assert run.ex.last_update_reason[cid] in ("place_ack", "ws:ORDER_STATUS_UPDATE")
        created = run.events(MarketEvent.BuyOrderCreated if side is TradeType.BUY else MarketEvent.SellOrderCreated)
        assert [e.order_id for e in created] == [cid]


async def test_cancel_is_acknowledged_then_confirmed_by_the_stream():
    async with running(policy="ignore") as run:
        cid = await run.place()
        await wait_until(lambda: run.order(cid).current_state == OrderState.OPEN, what="OPEN")
        run.ex.cancel(PAIR, cid)
        await wait_until(lambda: run.order(cid).current_state == OrderState.CANCELED, what="CANCELED")
        assert cid not in run.ex.in_flight_orders  # done: moved to the cache
        assert run.live_on_exchange() == []
        assert run.ex.ws_cancels == 1 and run.ex.rest_cancels == 0
        assert run.requests("CANCEL_LIMIT_ORDER")[0]["payload"]["customerOrderId"] == cid
        assert run.ex.last_update_reason[cid] == "ws:ORDER_STATUS_UPDATE"
        assert [e.order_id for e in run.events(MarketEvent.OrderCancelled)] == [cid]


# --- the REST fallback ------------------------------------------------------------------------------

async def test_no_account_socket_places_over_rest_at_once(monkeypatch):
    async with running(policy="ignore") as run:
        ds = run.ex._user_stream_data_source
        monkeypatch.setattr(type(ds), "can_send_commands", property(lambda self: False))
        started = time.monotonic()
        cid = await run.place()
        await wait_until(lambda: run.order(cid).current_state == OrderState.OPEN, what="OPEN")
        assert time.monotonic() - started < CONSTANTS.WS_ORDER_TIMEOUT  # no wait for a WS reply
        assert (run.ex.ws_placements, run.ex.rest_placements) == (0, 1)
        posts = run.requests("POST /v1/orders/limit")
        assert [p["body"]["customerOrderId"] for p in posts] == [cid]
        assert [o.order_id for o in run.live_on_exchange()] == [run.order(cid).exchange_order_id]


async def test_lost_ws_reply_falls_back_to_rest_once_and_keeps_the_live_order():
    # The WS command reaches the exchange but its reply is dropped, and the engine is slow (1.5 s),
    # so the stream says nothing within the 1 s timeout: the connector re-sends over REST with the
    # same customerOrderId. VALR accepts that (202) and refuses it later as a duplicate.
    schedule = DeliverySchedule(seed=7, perturbations=[
        Drop(match=Match(types=("PLACE_LIMIT_WS_RESPONSE",)), name="drop-place-reply"),
        Delay(match=Match(conns=("engine",)), extra=parse_distribution("1.5s"), name="slow-engine"),
    ])
    async with running(policy="reconcile", schedule=schedule) as run:
        cid = await run.place()
        await wait_until(lambda: len(run.requests("POST /v1/orders/limit")) == 1, 3.0, "the REST fallback")
        await wait_until(lambda: any(o.status.value == "Failed" for o in run.server.exchange.order_history("demo")),
                         5.0, "the duplicate to be refused")
        await asyncio.sleep(0.3)
        order = run.order(cid)
        live = run.live_on_exchange()
        assert len(live) == 1 and live[0].customer_order_id == cid
        assert order.current_state == OrderState.OPEN and cid in run.ex.in_flight_orders
        assert order.exchange_order_id == live[0].order_id  # the WS order's id, not the duplicate's
        assert run.ex.rest_placements == 1
        posts = run.requests("POST /v1/orders/limit")
        assert [p["body"]["customerOrderId"] for p in posts] == [cid]
        assert run.requests("PLACE_LIMIT_ORDER")[0]["payload"]["customerOrderId"] == cid
        assert run.events(MarketEvent.OrderFailure) == []


# --- OPEN_ORDERS_UPDATE policies ---------------------------------------------------------------------

def _slow_placement() -> DeliverySchedule:
    """The placement reply comes after 0.6 s and the engine processes after 0.8 s: a placed order
    stays PENDING_CREATE for ~0.6 s, with nothing about it on the account stream meanwhile."""
    return _delays((Match(types=("PLACE_LIMIT_WS_RESPONSE",)), "600ms"), (Match(conns=("engine",)), "800ms"))


@pytest.mark.parametrize("policy, cancelled", [
    ("naive", True), ("age-guard:5", False), ("ignore", False), ("reconcile", False)])
async def test_snapshot_lacking_a_pending_create_order(policy, cancelled):
    async with running(policy=policy, schedule=_slow_placement()) as run:
        cid = await run.place()
        await wait_until(lambda: run.order(cid) is not None, what="tracking")
        await asyncio.sleep(0.1)
        assert run.order(cid).current_state == OrderState.PENDING_CREATE
        run.inject({"type": "OPEN_ORDERS_UPDATE", "data": []})  # built before the order reached the book
        await asyncio.sleep(0.1)
        cancels = [e.order_id for e in run.events(MarketEvent.OrderCancelled)]
        if cancelled:
            assert run.order(cid).current_state == OrderState.CANCELED and cancels == [cid]
            assert run.ex.last_update_reason[cid] == "open_orders_update:absent"
            assert cid not in run.ex.in_flight_orders
        else:
            assert run.order(cid).current_state == OrderState.PENDING_CREATE and cancels == []
        # then the placement ack arrives and the engine books the order
        await wait_until(lambda: len(run.live_on_exchange()) == 1, 3.0, "the order on the exchange")
        await wait_until(lambda: run.order(cid).current_state == OrderState.OPEN, 3.0, "OPEN")
        if cancelled:
            # the bug: OPEN again, but in the cache: nothing will ever cancel it (an orphan)
            assert cid not in run.ex.in_flight_orders and len(run.live_on_exchange()) == 1
        else:
            assert cid in run.ex.in_flight_orders


async def test_age_guard_cancels_an_older_order_missing_from_a_snapshot():
    async with running(policy="age-guard:5") as run:
        cid = await run.place()
        await wait_until(lambda: run.order(cid).current_state == OrderState.OPEN, what="OPEN")
        run.order(cid).creation_timestamp -= 10
        run.inject({"type": "OPEN_ORDERS_UPDATE", "data": []})
        await wait_until(lambda: run.order(cid).current_state == OrderState.CANCELED, 2.0, "CANCELED")
        assert run.ex.last_update_reason[cid] == "open_orders_update:absent"
        assert len(run.live_on_exchange()) == 1  # a false cancel: still live on the exchange


async def test_reconcile_opens_a_pending_create_order_listed_in_a_snapshot():
    async with running(policy="reconcile", schedule=_slow_placement()) as run:
        cid = await run.place()
        await wait_until(lambda: run.order(cid) is not None, what="tracking")
        await asyncio.sleep(0.1)
        order_id = next(oid for oid, cmd in run.server.exchange._pending_orders.items()
                        if cmd.req.customer_order_id == cid)
        run.inject({"type": "OPEN_ORDERS_UPDATE", "data": [{
            "orderId": order_id, "customerOrderId": cid, "side": "buy", "currencyPair": SYMBOL,
            "status": "Placed", "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z"}]})
        await wait_until(lambda: run.order(cid).current_state == OrderState.OPEN, 0.5, "OPEN")
        assert run.order(cid).exchange_order_id == order_id
        assert run.ex.last_update_reason[cid] == "open_orders_update:present"


async def test_reconcile_verifies_an_acknowledged_order_absent_from_two_snapshots():
    async with running(policy="reconcile") as run:
        cid = await run.place()
        await wait_until(lambda: run.order(cid).current_state == OrderState.OPEN, what="OPEN")
        await asyncio.sleep(0.05)
        run.inject({"type": "OPEN_ORDERS_UPDATE", "data": []})
        await asyncio.sleep(0.2)
        assert run.order(cid).current_state == OrderState.OPEN and cid not in run.ex._verifying
        assert run.ex.last_update_reason[cid] != "verify"
        await asyncio.sleep(CONSTANTS.RECONCILE_MIN_SECONDS)
        run.inject({"type": "OPEN_ORDERS_UPDATE", "data": []})
        await wait_until(lambda: run.ex.last_update_reason.get(cid) == "verify", 2.0, "the status query")
        await asyncio.sleep(0.1)
        # the exchange says Placed: the order stays OPEN and active; nothing was cancelled
        assert run.order(cid).current_state == OrderState.OPEN and cid in run.ex.in_flight_orders
        assert run.events(MarketEvent.OrderCancelled) == []
        assert any(r["type"] == f"GET /v1/orders/{SYMBOL}/customerorderid/{cid}"
                   for r in run.server.trace.records if r["dir"] == "out")


async def test_reconcile_never_cancels_from_snapshots_an_order_the_exchange_does_not_know():
    async with running(policy="reconcile") as run:
        ex = run.ex
        cid = "HBOT-GHOST-RECONCILE-1"
        ex.start_tracking_order(order_id=cid, exchange_order_id="00000000-0000-4000-8000-000000000001",
                                trading_pair=PAIR, trade_type=TradeType.BUY, price=Decimal("1000000"),
                                amount=AMOUNT, order_type=OrderType.LIMIT_MAKER)
        ex._emit(OrderUpdate(trading_pair=PAIR, update_timestamp=time.time(), new_state=OrderState.OPEN,
                             client_order_id=cid, exchange_order_id="00000000-0000-4000-8000-000000000001"),
                 "place_ack")  # as if placed: an acknowledged order the exchange has never heard of
        await wait_until(lambda: run.order(cid).current_state == OrderState.OPEN, what="OPEN")
        await asyncio.sleep(0.05)
        misses = ex._order_tracker._order_not_found_records.get(cid, 0)  # status polling may have asked too
        run.inject({"type": "OPEN_ORDERS_UPDATE", "data": []})
        await asyncio.sleep(CONSTANTS.RECONCILE_MIN_SECONDS + 0.05)
        assert ex._order_tracker._order_not_found_records.get(cid, 0) == misses  # one snapshot: no query
        run.inject({"type": "OPEN_ORDERS_UPDATE", "data": []})
        await wait_until(lambda: ex._order_tracker._order_not_found_records.get(cid, 0) == misses + 1, 2.0,
                         "a not-found count from the status query")
        assert run.order(cid).current_state == OrderState.OPEN and cid in ex.in_flight_orders
        assert run.events(MarketEvent.OrderCancelled) == []


# --- polling, lost orders, fills -----------------------------------------------------------------------

async def test_status_polling_not_found_leads_to_the_lost_path():
    async with running(policy="ignore") as run:
        ex = run.ex
        cid = "HBOT-GHOST-POLL-1"
        ex.start_tracking_order(order_id=cid, exchange_order_id=None, trading_pair=PAIR, trade_type=TradeType.BUY,
                                price=Decimal("1000000"), amount=AMOUNT, order_type=OrderType.LIMIT_MAKER)
        with pytest.raises(ValrOrderNotFound) as info:
            await ex._request_order_status(ex.in_flight_orders[cid])
        assert ex._is_order_not_found_during_status_update_error(info.value)
        assert "Invalid Order" in str(info.value)
        limit = ex._order_tracker.lost_order_count_limit
        for _ in range(limit):
            await ex._update_orders()
        assert cid in ex.in_flight_orders and cid not in ex._order_tracker.lost_orders
        await ex._update_orders()  # one more than the limit
        await asyncio.sleep(0)
        assert cid not in ex.in_flight_orders
        assert ex._order_tracker.lost_orders[cid].current_state == OrderState.FAILED
        assert [e.order_id for e in run.events(MarketEvent.OrderFailure)] == [cid]
        assert run.events(MarketEvent.OrderCancelled) == []
        # the lost order is cancelled again; VALR answers FAILED_CANCEL_ORDER "Order does not exist",
        # which takes it out of the lost set
        await ex._cancel_lost_orders()
        await wait_until(lambda: cid not in ex._order_tracker.lost_orders, 3.0, "the lost order to be dropped")


def _config_with_taker_and_no_background_market():
    config = default_config()
    config.market = {}
    config.accounts.append(AccountConfig("taker", TAKER_KEY, TAKER_SECRET,
                                         {"BTC": Decimal("10"), "ZAR": Decimal("100000000")}))
    return config


async def test_fill_from_the_stream_is_not_counted_twice_by_trade_history():
    config = _config_with_taker_and_no_background_market()
    # liquidity from the taker account, so the book has a mid price
    async with running(policy="ignore", config=config) as run:
        server = run.server
        for side, price in ((Side.BUY, "1490000"), (Side.SELL, "1510000")):
            _, events = server.exchange.execute(server.now_ms(), "taker",
                                                LimitRequest(SYMBOL, side, Decimal("0.5"), Decimal(price)))
            server.route(events)
        await wait_until(lambda: run.ex.get_price_by_type(PAIR, PriceType.MidPrice) == Decimal("1500000"),
                         3.0, "the seeded book")
        cid = run.ex.buy(PAIR, AMOUNT, OrderType.LIMIT_MAKER, Decimal("1500000"))
        await wait_until(lambda: run.order(cid) is not None and run.order(cid).current_state == OrderState.OPEN,
                         what="OPEN")
        _, events = server.exchange.execute(server.now_ms(), "taker",
                                            LimitRequest(SYMBOL, Side.SELL, AMOUNT, Decimal("1500000")))
        server.route(events)
        await wait_until(lambda: run.order(cid).current_state == OrderState.FILLED, 6.0, "FILLED")
        order = run.order(cid)
        assert order.executed_amount_base == AMOUNT and len(order.order_fills) == 1
        from_history = await run.ex._all_trade_updates_for_order(order)  # /v1/account/{pair}/tradehistory
        assert [u.trade_id for u in from_history] == list(order.order_fills)
        assert from_history[0].fill_base_amount == AMOUNT and from_history[0].fill_price == Decimal("1500000")
        await run.ex._update_orders_fills([order])  # the same fill again, through Hummingbot's path
        assert order.executed_amount_base == AMOUNT and len(order.order_fills) == 1
        assert [e.order_id for e in run.events(MarketEvent.OrderFilled)] == [cid]
        assert [e.order_id for e in run.events(MarketEvent.BuyOrderCompleted)] == [cid]


async def test_requests_are_signed_and_every_update_carries_a_reason():
    known = {"place_ack", "cancel_ack", "ws:ORDER_STATUS_UPDATE", "poll", "verify"}
    async with running(policy="ignore") as run:
        tracker = run.ex._order_tracker
        applied: list[tuple[str, str]] = []
        original = tracker._process_order_update

        async def process(update: OrderUpdate):
            applied.append((update.new_state.name, (update.misc_updates or {}).get("reason")))
            return await original(update)

        tracker._process_order_update = process
        cid = await run.place()
        await wait_until(lambda: run.order(cid).current_state == OrderState.OPEN, what="OPEN")
        run.ex.cancel(PAIR, cid)
        await wait_until(lambda: run.order(cid).current_state == OrderState.CANCELED, what="CANCELED")
        await asyncio.sleep(0.1)
        assert applied and all(reason in known for _, reason in applied), applied
        assert ("CANCELED", "ws:ORDER_STATUS_UPDATE") in applied
        assert json.dumps(run.ex.last_update_reason)  # plain strings, for a trace
        # every signed REST call and both WebSocket upgrades passed the fake's signature check
        refused = [r for r in run.server.trace.records
                   if r["dir"] == "in" and r["kind"] == "rest" and r["data"].get("status") in (401, 403)]
        assert refused == []


async def test_account_socket_drop_fails_the_waiting_placement_over_to_rest_and_reconnects():
    # The first placement reply is late (2 s) and the engine slow (0.5 s); the server drops the
    # account socket 0.1 s after the order is sent: the waiting command fails at once (no 1 s wait),
    # the order goes over REST with the same customerOrderId, the stream reconnects.
    schedule = DeliverySchedule(seed=7, perturbations=[
        Delay(match=Match(types=("PLACE_LIMIT_WS_RESPONSE",), nth=(1,)), extra=parse_distribution("2s"),
              name="late-reply"),
        Delay(match=Match(conns=("engine",)), extra=parse_distribution("500ms"), name="slow-engine"),
    ])
    async with running(policy="reconcile", schedule=schedule) as run:
        ds = run.ex._user_stream_data_source
        assert ds.connects == 1
        cid = await run.place()
        await wait_until(lambda: len(run.requests("PLACE_LIMIT_ORDER")) == 1, 1.0, "the WS command")
        await asyncio.sleep(0.1)
        dropped_at = time.monotonic()
        account = next(c for c in run.server.conns.values() if c.kind == "account")
        run.server.disconnect_later(account, 1011)
        await wait_until(lambda: len(run.requests("POST /v1/orders/limit")) == 1, 1.0, "the REST fallback")
        assert time.monotonic() - dropped_at < CONSTANTS.WS_ORDER_TIMEOUT
        await wait_until(lambda: ds.connects == 2 and ds.can_send_commands, 3.0, "the reconnect")
        await wait_until(lambda: any(o.status.value == "Failed" for o in run.server.exchange.order_history("demo")),
                         3.0, "the duplicate to be refused")
        await asyncio.sleep(0.2)
        live = run.live_on_exchange()
        assert [o.customer_order_id for o in live] == [cid]
        assert run.order(cid).current_state == OrderState.OPEN
        assert run.order(cid).exchange_order_id == live[0].order_id
        # the next order goes over the new socket
        cid2 = await run.place(TradeType.SELL)
        await wait_until(lambda: run.order(cid2).current_state == OrderState.OPEN, what="OPEN")
        assert (run.ex.ws_placements, run.ex.rest_placements) == (1, 1)
