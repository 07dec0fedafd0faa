"""The fake VALR's WebSockets (/ws/account, /ws/trade) with the `websockets` client."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from websockets.asyncio.client import connect

from replay.auth import auth_headers, sign
from replay.schedule import DeliverySchedule

from conftest import MAKER_KEY, MAKER_SECRET, make_config, recv, recv_raw

ASK = {"side": "SELL", "quantity": "0.02", "price": "1500000", "pair": "BTCZAR"}


def is_status(oid: str, status: str):
    return lambda m: (m["type"] == "ORDER_STATUS_UPDATE" and m["data"]["orderId"] == oid
                      and m["data"]["orderStatusType"] == status)


# --- authentication ------------------------------------------------------------------------------
async def test_header_auth_sends_authenticated_first(maker):
    ws = await maker.ws()
    assert await recv_raw(ws) == {"type": "AUTHENTICATED"}


@pytest.mark.parametrize("spoil, status", [
    ("signature", 401), ("key", 401), ("stale", 401),
])
async def test_bad_upgrade_is_refused(fake_server, spoil, status):
    ts = fake_server.now_ms() - (120_000 if spoil == "stale" else 0)
    headers = auth_headers(MAKER_KEY, MAKER_SECRET, "GET", "/ws/account", timestamp_ms=ts)
    if spoil == "signature":
        headers["X-VALR-SIGNATURE"] = sign(MAKER_SECRET, ts, "GET", "/ws/trade")
    if spoil == "key":
        headers["X-VALR-API-KEY"] = "c" * 64
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        await connect(fake_server.ws_account_url, additional_headers=headers, open_timeout=5)
    assert info.value.response.status_code == status
    assert json.loads(info.value.response.body)["message"]


async def test_in_band_authenticate(fake_server, maker):
    ws = await maker.ws(signed=False)
    await ws.send(json.dumps({"type": "PLACE_LIMIT_ORDER", "clientMsgId": "early", "payload": ASK}))
    refused = await recv_raw(ws)
    assert refused["type"] == "ERROR" and refused["clientMsgId"] == "early"
    ts = fake_server.now_ms()
    await ws.send(json.dumps({"type": "AUTHENTICATE", "payload": {
        "apiKey": MAKER_KEY, "signature": sign(MAKER_SECRET, ts, "GET", "/ws/account"), "timestamp": ts}}))
    assert await recv_raw(ws) == {"type": "AUTHENTICATED"}
    await recv(ws, "OPEN_ORDERS_UPDATE")  # the account's state follows an in-band authentication too
    await ws.send(json.dumps({"type": "PING", "clientMsgId": "p1"}))
    assert await recv_raw(ws) == {"type": "PONG", "clientMsgId": "p1"}
    records = fake_server.trace.records
    auth = [r for r in records if r["type"] == "AUTHENTICATE"]
    assert auth and auth[0]["dir"] == "out"


# --- commands over /ws/account -------------------------------------------------------------------
async def test_ws_place_and_cancel_replies_carry_client_msg_id(maker):
    ws = await maker.ws()
    await recv(ws, "AUTHENTICATED")
    assert (await recv(ws, "OPEN_ORDERS_UPDATE"))["data"] == []  # the connect-time snapshot
    await ws.send(json.dumps({"type": "PLACE_LIMIT_ORDER", "clientMsgId": "m-1",
                              "payload": dict(ASK, customerOrderId="c-1", postOnly=True)}))
    ack = await recv_raw(ws)  # the ack comes before any processing outcome
    assert ack["type"] == "PLACE_LIMIT_WS_RESPONSE" and ack["clientMsgId"] == "m-1"
    oid = ack["data"]["orderId"]
    assert ack["data"]["customerOrderId"] == "c-1"
    await recv(ws, is_status(oid, "Placed"))
    await ws.send(json.dumps({"type": "CANCEL_LIMIT_ORDER", "clientMsgId": "m-2",
                              "payload": {"customerOrderId": "c-1", "pair": "BTCZAR"}}))
    cancel = await recv(ws, "CANCEL_ORDER_WS_RESPONSE")
    assert cancel["clientMsgId"] == "m-2" and cancel["data"]["requested"] is True
    await recv(ws, is_status(oid, "Cancelled"))
    oou = await recv(ws, "OPEN_ORDERS_UPDATE")
    assert oou["data"] == []


async def test_ws_market_order_and_subscribe(maker, taker):
    await maker.call("POST", "/v1/orders/limit", ASK)
    ws = await taker.ws()
    await recv(ws, "AUTHENTICATED")
    await recv(ws, "OPEN_ORDERS_UPDATE")
    await ws.send(json.dumps({"type": "SUBSCRIBE", "clientMsgId": "s",
                              "subscriptions": [{"event": "ORDER_STATUS_UPDATE"}]}))
    subscribed = await recv_raw(ws)
    assert subscribed == {"type": "SUBSCRIBED", "message": "ORDER_STATUS_UPDATE", "clientMsgId": "s"}
    await ws.send(json.dumps({"type": "PLACE_MARKET_ORDER", "clientMsgId": "mk",
                              "payload": {"side": "BUY", "baseAmount": "0.01", "pair": "BTCZAR"}}))
    ack = await recv(ws, "PLACE_MARKET_WS_RESPONSE")
    assert ack["clientMsgId"] == "mk"
    trade = await recv(ws, "NEW_ACCOUNT_TRADE")
    assert trade["data"]["orderId"] == ack["data"]["orderId"] and trade["data"]["side"] == "buy"


async def test_cancel_on_disconnect(maker, client_factory, fake_server):
    watcher = await maker.ws()
    await recv(watcher, "AUTHENTICATED")
    ws = await maker.ws()
    await recv(ws, "AUTHENTICATED")
    await recv(ws, "OPEN_ORDERS_UPDATE")
    await ws.send(json.dumps({"type": "CANCEL_ON_DISCONNECT", "clientMsgId": "cod",
                              "payload": {"cancelOnDisconnect": True}}))
    update = await recv_raw(ws)
    assert update == {"type": "CANCEL_ON_DISCONNECT_UPDATE", "clientMsgId": "cod",
                      "data": {"cancelOnDisconnect": True}}
    await ws.send(json.dumps({"type": "PLACE_LIMIT_ORDER", "clientMsgId": "p", "payload": ASK}))
    oid = (await recv(ws, "PLACE_LIMIT_WS_RESPONSE"))["data"]["orderId"]
    await recv(watcher, is_status(oid, "Placed"))
    await ws.close()
    await recv(watcher, is_status(oid, "Cancelled"))
    # a connection that did not ask for it leaves its orders alone
    await watcher.send(json.dumps({"type": "PLACE_LIMIT_ORDER", "payload": ASK}))
    oid2 = (await recv(watcher, "PLACE_LIMIT_WS_RESPONSE"))["data"]["orderId"]
    await recv(watcher, is_status(oid2, "Placed"))
    await watcher.close()
    r = await maker.call("GET", "/v1/orders/open")
    assert [o["orderId"] for o in r.body] == [oid2]
    disconnects = [r for r in fake_server.trace.records if r["type"] == "DISCONNECT"]
    assert len(disconnects) == 2 and all(r["conn"].startswith("account-") for r in disconnects)


async def test_protocol_ping_is_answered(maker):
    ws = await maker.ws()
    await recv(ws, "AUTHENTICATED")
    pong = await ws.ping(b"hi")
    await asyncio.wait_for(pong, 5)


# --- /ws/trade -----------------------------------------------------------------------------------
def subscribe(event: str, pairs: list[str] | None, client_msg_id: str | None = None) -> str:
    sub: dict = {"event": event}
    if pairs is not None:
        sub["pairs"] = pairs
    msg: dict = {"type": "SUBSCRIBE", "subscriptions": [sub]}
    if client_msg_id:
        msg["clientMsgId"] = client_msg_id
    return json.dumps(msg)


async def test_trade_subscribe_book_and_unsubscribe(maker, fake_server):
    account = await maker.ws()
    await recv(account, "AUTHENTICATED")
    ws = await maker.ws("/ws/trade", signed=False)
    await ws.send(subscribe("AGGREGATED_ORDERBOOK_UPDATE", ["BTCZAR"]))
    assert await recv_raw(ws) == {"type": "SUBSCRIBED", "message": "AGGREGATED_ORDERBOOK_UPDATE:BTCZAR"}
    snapshot = await recv_raw(ws)
    assert snapshot["type"] == "AGGREGATED_ORDERBOOK_UPDATE" and snapshot["currencyPairSymbol"] == "BTCZAR"
    assert snapshot["data"]["Asks"] == [] and snapshot["data"]["Bids"] == []
    await maker.call("POST", "/v1/orders/limit", ASK)
    update = await recv_raw(ws)
    assert update["type"] == "AGGREGATED_ORDERBOOK_UPDATE"
    assert [(a["price"], a["quantity"]) for a in update["data"]["Asks"]] == [("1500000", "0.02")]
    # an order on another pair changes nothing here
    await maker.call("POST", "/v1/orders/limit", dict(ASK, pair="ETHZAR", price="60000"))
    await ws.send(json.dumps({"type": "PING"}))
    assert await recv_raw(ws) == {"type": "PONG"}
    # unsubscribe: nothing more for BTCZAR
    await ws.send(subscribe("AGGREGATED_ORDERBOOK_UPDATE", []))
    assert await recv_raw(ws) == {"type": "UNSUBSCRIBED", "message": "AGGREGATED_ORDERBOOK_UPDATE:BTCZAR"}
    oid = (await maker.call("POST", "/v1/orders/limit", dict(ASK, price="1600000"))).body["id"]
    await recv(account, is_status(oid, "Placed"))  # the book changed and was published by now
    await ws.send(json.dumps({"type": "PING"}))
    assert await recv_raw(ws) == {"type": "PONG", "message": "NO_SUBSCRIPTIONS"}


async def test_trade_all_pairs_summary_trades_buckets(maker, taker):
    ws = await maker.ws("/ws/trade")  # signed: AUTHENTICATED first
    assert await recv_raw(ws) == {"type": "AUTHENTICATED"}
    await ws.send(json.dumps({"type": "SUBSCRIBE", "subscriptions": [
        {"event": "AGGREGATED_ORDERBOOK_UPDATE"}, {"event": "NEW_TRADE"}, {"event": "MARKET_SUMMARY_UPDATE"},
        {"event": "NEW_TRADE_BUCKET", "pairs": ["BTCZAR"]}]}))
    acks = [await recv_raw(ws) for _ in range(7)]  # one per event and pair
    assert {a["type"] for a in acks} == {"SUBSCRIBED"}
    assert sorted(a["message"] for a in acks) == [
        "AGGREGATED_ORDERBOOK_UPDATE:BTCZAR", "AGGREGATED_ORDERBOOK_UPDATE:ETHZAR", "MARKET_SUMMARY_UPDATE:BTCZAR",
        "MARKET_SUMMARY_UPDATE:ETHZAR", "NEW_TRADE:BTCZAR", "NEW_TRADE:ETHZAR", "NEW_TRADE_BUCKET:BTCZAR"]
    first = [await recv_raw(ws) for _ in range(4)]  # book + summary for both pairs
    assert sorted((m["type"], m["currencyPairSymbol"]) for m in first) == [
        ("AGGREGATED_ORDERBOOK_UPDATE", "BTCZAR"), ("AGGREGATED_ORDERBOOK_UPDATE", "ETHZAR"),
        ("MARKET_SUMMARY_UPDATE", "BTCZAR"), ("MARKET_SUMMARY_UPDATE", "ETHZAR")]
    await maker.call("POST", "/v1/orders/limit", ASK)
    await taker.call("POST", "/v1/orders/limit", {"side": "BUY", "quantity": "0.01", "price": "1500000",
                                                   "pair": "BTCZAR"})
    trade = await recv(ws, "NEW_TRADE")
    assert trade["data"]["price"] == "1500000" and trade["data"]["takerSide"] == "buy"
    bucket = await recv(ws, "NEW_TRADE_BUCKET")
    assert bucket["data"]["bucketPeriodInSeconds"] == 60 and bucket["data"]["volume"] == "0.01"
    summary = await recv(ws, lambda m: m["type"] == "MARKET_SUMMARY_UPDATE" and m["data"]["lastTradedPrice"] != "0")
    assert summary["data"]["lastTradedPrice"] == "1500000"


# --- the delivery schedule -----------------------------------------------------------------------
class PongThenDisconnect(DeliverySchedule):
    """Delays every OPEN_ORDERS_UPDATE by 50 ms and closes a connection after a PONG."""

    def push(self, now, conn, msg_type, message):
        super().push(now + (0.05 if msg_type == "OPEN_ORDERS_UPDATE" else 0.0), conn, msg_type, message)
        if msg_type == "PONG":
            from replay.schedule import Delivery

            self._queue.add(Delivery(now, next(self._seq), conn, "disconnect", "DISCONNECT", {"code": 4000}))


async def test_schedule_delays_and_disconnects(make_server, client_factory):
    server = await make_server(make_config(), schedule=PongThenDisconnect())
    maker = client_factory(server)
    ws = await maker.ws()
    await recv(ws, "AUTHENTICATED")
    await recv(ws, "OPEN_ORDERS_UPDATE")  # the connect-time snapshot, 50 ms late like any other
    await maker.call("POST", "/v1/orders/limit", ASK)
    types = [(await recv_raw(ws))["type"] for _ in range(4)]
    # OPEN_ORDERS_UPDATE was produced before BALANCE_UPDATE but delivered after it
    assert types == ["ORDER_PROCESSED", "ORDER_STATUS_UPDATE", "BALANCE_UPDATE", "OPEN_ORDERS_UPDATE"]
    await ws.send(json.dumps({"type": "PING"}))
    assert await recv_raw(ws) == {"type": "PONG"}
    with pytest.raises(websockets.exceptions.ConnectionClosed) as info:
        await recv_raw(ws)
    assert info.value.rcvd.code == 4000


async def test_background_market_publishes_books(make_server, client_factory):
    server = await make_server(make_config(market={"BTCZAR": {"mid": "1500000", "step_interval_s": 0.05}}))
    ws = await client_factory(server).ws("/ws/trade", signed=False)
    await ws.send(subscribe("AGGREGATED_ORDERBOOK_UPDATE", ["BTCZAR"]))
    assert (await recv_raw(ws))["type"] == "SUBSCRIBED"
    snapshot = await recv_raw(ws)
    assert snapshot["data"]["Asks"] and snapshot["data"]["Bids"]  # the ladder placed at start
    best_ask = float(snapshot["data"]["Asks"][0]["price"])
    assert 1_500_000 < best_ask < 1_510_000
    update = await recv(ws, "AGGREGATED_ORDERBOOK_UPDATE")  # a later step republishes
    assert update["data"]["SequenceNumber"] >= snapshot["data"]["SequenceNumber"]
