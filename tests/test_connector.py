"""The reference connector against the real fake server (127.0.0.1, port 0), plus the adapter."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any, Callable

import pytest

from replay.capture import TraceRecorder
from replay.clock import Clock
from replay.connector.adapter import ReferenceAdapter, ServerUrls, load_connector
from replay.connector.tracker import OrderCancelled, OrderCreated, OrderFailure, OrderState
from replay.connector.valr import ValrConnector

server_app = pytest.importorskip("replay.server.app")
config = pytest.importorskip("replay.config")
from replay.schedule import DeliverySchedule  # noqa: E402

FakeValr = server_app.FakeValr
PAIR = "BTCZAR"


class SlowReplies(DeliverySchedule):
    """Delays the WS placement/cancel replies by ``delay`` seconds (the engine is not slowed)."""

    def __init__(self, delay: float, types=("PLACE_LIMIT_WS_RESPONSE",)):
        super().__init__(seed=0)
        self.delay = delay
        self.types = set(types)

    def push(self, now: float, conn: str, msg_type: str, message: Any) -> None:
        if msg_type in self.types:
            now += self.delay
        super().push(now, conn, msg_type, message)


class Waiter:
    """Resolves when a trace record or a strategy event (past or future) satisfies a predicate."""

    def __init__(self):
        self.history: list[Any] = []
        self.checks: list[tuple[Callable[[Any], bool], asyncio.Future]] = []

    def feed(self, item: Any) -> None:
        self.history.append(item)
        for pred, fut in list(self.checks):
            if not fut.done() and pred(item):
                fut.set_result(item)

    async def wait(self, pred: Callable[[Any], bool], timeout: float = 5.0) -> Any:
        for item in self.history:
            if pred(item):
                return item
        fut = asyncio.get_running_loop().create_future()
        self.checks.append((pred, fut))
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self.checks.remove((pred, fut))


def state_rec(cid: str, to: str) -> Callable[[Any], bool]:
    return lambda r: (isinstance(r, dict) and r.get("type") == "ORDER_STATE"
                      and r["data"]["client_order_id"] == cid and r["data"]["to"] == to)


@pytest.fixture
async def env():
    clock = Clock()
    trace = TraceRecorder(clock)
    waiter = Waiter()
    trace.listeners.append(waiter.feed)
    made: list[Any] = []

    async def make(schedule: DeliverySchedule | None = None, **opts: Any):
        server = FakeValr(clock=clock, seed=1, trace=trace, schedule=schedule)
        await server.start("127.0.0.1", 0)
        made.append(server)
        conn = ValrConnector(rest_url=server.rest_url, ws_account_url=server.ws_account_url,
                             ws_trade_url=server.ws_trade_url, api_key=config.DEMO_API_KEY,
                             api_secret=config.DEMO_API_SECRET, clock=clock, trace=trace, **opts)
        conn.add_listener(waiter.feed)
        made.append(conn)
        await conn.start()
        return server, conn

    yield make, trace, waiter
    for obj in reversed(made):
        await obj.stop()


async def wait_ready(conn: ValrConnector, waiter: Waiter) -> None:
    await conn.wait_ready(5.0)


def bid_price(conn: ValrConnector) -> Decimal:
    bid = conn.best_bid(PAIR)
    assert bid is not None
    return bid - 1000  # well below the book: rests, never crosses


async def test_start_place_open_cancel_cancelled(env):
    make, trace, waiter = env
    server, conn = await make(policy="ignore")
    await wait_ready(conn, waiter)
    assert conn.ready and PAIR in conn.rules and conn.balances
    cid = conn.buy(PAIR, Decimal("0.001"), bid_price(conn))
    assert cid == "HB-VR-B1"
    assert conn.tracker.active[cid].state is OrderState.PENDING_CREATE  # tracked before any I/O
    created = await waiter.wait(lambda e: isinstance(e, OrderCreated) and e.client_order_id == cid)
    assert created.exchange_order_id
    order = conn.tracker.active[cid]
    assert order.state is OrderState.OPEN and order.exchange_order_id == created.exchange_order_id
    conn.cancel(PAIR, cid)
    await waiter.wait(lambda e: isinstance(e, OrderCancelled) and e.client_order_id == cid)
    assert cid in conn.tracker.cached and conn.tracker.cached[cid].state is OrderState.CANCELED
    # the client id went out as customerOrderId, over the account WebSocket
    placed = [r for r in trace.records if r["kind"] == "ws" and r["dir"] == "out" and r["type"] == "PLACE_LIMIT_ORDER"]
    assert len(placed) == 1 and placed[0]["data"]["payload"]["customerOrderId"] == cid
    assert placed[0]["data"]["payload"]["postOnly"] is True
    assert not [r for r in trace.records if r["kind"] == "rest" and r["type"] == "POST /v1/orders/limit"]
    reasons = [r["data"]["reason"] for r in trace.records
               if r["type"] == "ORDER_STATE" and r["data"]["client_order_id"] == cid]
    # the ack and ORDER_STATUS_UPDATE "Placed" race each other; either may open the order
    assert reasons[0] == "create" and reasons[1] in ("place_ack", "ws:ORDER_STATUS_UPDATE")
    to_cancel = [r["data"]["reason"] for r in trace.records
                 if r["type"] == "ORDER_STATE" and r["data"]["client_order_id"] == cid
                 and r["data"]["to"] == "CANCELED"]
    assert to_cancel == ["ws:ORDER_STATUS_UPDATE"]


async def test_ws_timeout_asks_the_exchange_before_resending(env):
    """A WS placement whose reply is late: the connector asks the exchange by customerOrderId and,
    as the order is there, adopts it rather than re-sending the same customerOrderId over REST (a
    re-send racing a cancel of the first order would be accepted and live on untracked)."""
    make, trace, waiter = env
    server, conn = await make(schedule=SlowReplies(0.8), policy="ignore", ws_order_timeout=0.3)
    await wait_ready(conn, waiter)
    cid = conn.sell(PAIR, Decimal("0.001"), conn.best_ask(PAIR) + 1000)
    await waiter.wait(lambda r: isinstance(r, dict) and r.get("type", "").startswith("GET /v1/orders/")
                      and "customerorderid" in r.get("type", "") and r["dir"] == "in")
    await waiter.wait(state_rec(cid, "OPEN"))
    await conn.tracker.wait_idle()
    rest_out = [r for r in trace.records
                if r["kind"] == "rest" and r["type"] == "POST /v1/orders/limit" and r["dir"] == "out"]
    assert rest_out == []
    order = conn.tracker.active[cid]
    placed = [r for r in trace.records if r["kind"] == "event" and r["type"] == "CommandSubmitted"]
    assert order.state is OrderState.OPEN and len(placed) == 1
    assert order.exchange_order_id == placed[0]["data"].get("order_id")


async def test_a_cancel_during_placement_is_remembered_only_while_the_placement_runs(env):
    """The connector remembers a cancel asked for during a placement (so a late placement is not re-sent),
    and forgets it when the placement ends: over a soak run's thousands of orders its memory stays flat."""
    make, trace, waiter = env
    server, conn = await make(schedule=SlowReplies(0.3), policy="ignore")
    await wait_ready(conn, waiter)
    cid = conn.buy(PAIR, Decimal("0.001"), bid_price(conn))
    await waiter.wait(lambda r: isinstance(r, dict) and r.get("type") == "PLACE_LIMIT_ORDER" and r["dir"] == "out")
    conn.cancel(PAIR, cid)
    await waiter.wait(lambda r: isinstance(r, dict) and r.get("type") == "CANCEL_LIMIT_ORDER" and r["dir"] == "out")
    assert conn._placing == {cid} and conn._cancel_requested == {cid}
    placing = [t for t in asyncio.all_tasks() if t.get_name() == f"valr-create-{cid}"]
    assert len(placing) == 1
    await asyncio.wait_for(placing[0], 5.0)  # the placement ends when its (slow) reply comes
    assert conn._placing == set() and conn._cancel_requested == set()


async def test_naive_policy_race_leaves_an_orphan_and_reconcile_does_not(env):
    """A stale OPEN_ORDERS_UPDATE handled while the order is PENDING_CREATE."""
    make, trace, waiter = env
    server, conn = await make(schedule=SlowReplies(0.3), policy="naive", ws_order_timeout=2.0)
    await wait_ready(conn, waiter)
    cid = conn.buy(PAIR, Decimal("0.001"), bid_price(conn))
    await waiter.wait(lambda r: isinstance(r, dict) and r.get("type") == "PLACE_LIMIT_ORDER")
    # the snapshot built before the order reached the book arrives first
    conn.handle_account_message({"type": "OPEN_ORDERS_UPDATE", "data": []})
    assert cid in conn.tracker.cached and conn.tracker.cached[cid].state is OrderState.CANCELED
    await waiter.wait(state_rec(cid, "OPEN"))
    assert cid not in conn.tracker.active and conn.tracker.cached[cid].state is OrderState.OPEN  # orphan
    res = await conn.cancel_all(2.0)
    assert res == []  # cancel_all cannot see it


async def test_reconcile_keeps_the_order(env):
    make, trace, waiter = env
    server, conn = await make(schedule=SlowReplies(0.3), policy="reconcile", ws_order_timeout=2.0)
    await wait_ready(conn, waiter)
    cid = conn.buy(PAIR, Decimal("0.001"), bid_price(conn))
    await waiter.wait(lambda r: isinstance(r, dict) and r.get("type") == "PLACE_LIMIT_ORDER")
    conn.handle_account_message({"type": "OPEN_ORDERS_UPDATE", "data": []})
    await waiter.wait(lambda e: isinstance(e, OrderCreated) and e.client_order_id == cid)
    assert conn.tracker.active[cid].state is OrderState.OPEN
    res = await conn.cancel_all(2.0)
    assert res == [(cid, True)]
    await waiter.wait(lambda e: isinstance(e, OrderCancelled) and e.client_order_id == cid)


async def test_account_stream_reconnects(env):
    make, trace, waiter = env
    server, conn = await make(policy="ignore")
    await wait_ready(conn, waiter)
    assert conn.account_connects == 1
    for c in list(server.conns.values()):
        if c.kind == "account":
            await c.ws.close(code=1011)
    await waiter.wait(lambda r: isinstance(r, dict) and r.get("type") == "CONNECT" and r["conn"] == "account-2")
    await conn.wait_ready(5.0)  # AUTHENTICATED follows the CONNECT
    assert conn.ready and conn.account_connects == 2


async def test_reference_adapter_roundtrip(env):
    make, trace, waiter = env
    server = FakeValr(seed=2)
    await server.start("127.0.0.1", 0)
    ad = load_connector("reference", policy="reconcile", seed=3)
    assert isinstance(ad, ReferenceAdapter)
    events: list[Any] = []
    created = asyncio.Event()
    ad.add_listener(lambda e: (events.append(e), isinstance(e, OrderCreated) and created.set()))
    try:
        await ad.start(ServerUrls(server.rest_url, server.ws_account_url, server.ws_trade_url),
                       config.DEMO_API_KEY, config.DEMO_API_SECRET)
        await ad.wait_ready(5.0)
        assert ad.ready and ad.mid_price(PAIR) is not None
        cid = ad.place(PAIR, "buy", ad.mid_price(PAIR) * Decimal("0.9"), Decimal("0.001"))
        await asyncio.wait_for(created.wait(), 5)
        [b] = ad.believed_orders()
        assert (b.client_order_id, b.state, b.where, b.side) == (cid, "OPEN", "active", "buy")
        await ad.cancel_all(2.0)
    finally:
        await ad.stop()
        await server.stop()


def test_load_connector_errors_name_the_target():
    with pytest.raises(ValueError, match="nosuchmodule"):
        load_connector("nosuchmodule:Thing")
    with pytest.raises(ValueError, match="'Nope'"):
        load_connector("replay.connector.adapter:Nope")
    with pytest.raises(ValueError, match="expected 'reference'"):
        load_connector("whatever")
    with pytest.raises(ValueError, match="lacks"):
        load_connector("replay.connector.adapter:ServerUrls", rest_url="a", ws_account_url="b", ws_trade_url="c")
    assert isinstance(load_connector("replay.connector.adapter:ReferenceAdapter"), ReferenceAdapter)


async def test_start_without_credentials_fails_clearly(monkeypatch):
    monkeypatch.delenv("VALR_API_KEY", raising=False)
    monkeypatch.delenv("VALR_API_SECRET", raising=False)
    conn = ValrConnector(rest_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="VALR_API_KEY"):
        await conn.start()


def test_client_id_prefix_must_leave_room_for_the_counter():
    conn = ValrConnector(api_key="k", api_secret="s")
    assert conn.client_id_prefix == "HB-VR-"
    with pytest.raises(ValueError, match="client_id_prefix"):
        ValrConnector(api_key="k", api_secret="s", client_id_prefix="X" * 30)


async def test_polling_not_found_makes_an_order_lost_then_the_lost_loop_drops_it(env):
    from replay.connector.tracker import InFlightOrder

    make, trace, waiter = env
    server, conn = await make(policy="ignore", status_poll_interval=0.05, lost_order_poll_interval=0.05)
    await wait_ready(conn, waiter)
    # an order the exchange never had (e.g. a placement that never arrived)
    ghost = InFlightOrder("HB-VR-B999", PAIR, "buy", Decimal("100"), Decimal("0.001"), 0,
                          exchange_order_id="00000000-0000-4000-8000-000000000000", state=OrderState.OPEN)
    conn.tracker.start_tracking(ghost)
    lost = await waiter.wait(lambda r: isinstance(r, dict) and r.get("type") == "ORDER_STATE"
                             and r["data"]["client_order_id"] == "HB-VR-B999" and r["data"]["where"] == "lost")
    assert lost["data"]["to"] == "FAILED" and lost["data"]["reason"] == "not_found"
    polls = [r for r in trace.records if r["kind"] == "rest" and r["dir"] == "out"
             and r["type"].startswith("GET /v1/orders/BTCZAR/orderid/")]
    assert len(polls) >= 4
    assert any(isinstance(e, OrderFailure) and e.client_order_id == "HB-VR-B999" for e in waiter.history)
    # the lost loop tries to cancel it; "not found" again means it is gone
    await waiter.wait(lambda r: isinstance(r, dict) and r.get("type") == "ORDER_STATE"
                      and r["data"]["client_order_id"] == "HB-VR-B999" and r["data"].get("lost_resolved"))
    assert "HB-VR-B999" not in conn.tracker.lost
    cancels = [r for r in trace.records
               if r["kind"] == "ws" and r["dir"] == "out" and r["type"] == "CANCEL_LIMIT_ORDER"]
    assert cancels and cancels[0]["data"]["payload"]["customerOrderId"] == "HB-VR-B999"


async def test_reconcile_verifies_a_long_absence_by_status_query(env):
    from replay.connector.policies import ReconcilePolicy

    make, trace, waiter = env
    server, conn = await make(policy=ReconcilePolicy(min_snapshots=2, min_seconds=0.05))
    await wait_ready(conn, waiter)
    cid = conn.buy(PAIR, Decimal("0.001"), bid_price(conn))
    await waiter.wait(lambda e: isinstance(e, OrderCreated) and e.client_order_id == cid)
    # two stale, empty snapshots 0.1 s apart: a suspicion, never a cancel
    for _ in range(2):
        await asyncio.sleep(0.06)  # the policy needs time to pass between snapshots (not a wait for a condition)
        conn.handle_account_message({"type": "OPEN_ORDERS_UPDATE", "data": []})
    req = await waiter.wait(lambda r: isinstance(r, dict) and r.get("kind") == "rest" and r["dir"] == "in"
                            and r["type"] == f"GET /v1/orders/{PAIR}/customerorderid/{cid}")
    assert req["data"]["status"] == 200 and req["data"]["body"]["orderStatusType"] == "Placed"
    await conn.tracker.wait_idle()
    assert conn.tracker.active[cid].state is OrderState.OPEN
    assert not any(isinstance(e, OrderCancelled) for e in waiter.history)
