"""Bad input to the fake VALR: VALR-shaped errors that name the field, connection kept up, no crash."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from conftest import make_config, recv, recv_raw

ASK = {"side": "SELL", "quantity": "0.02", "price": "1500000", "pair": "BTCZAR"}


async def still_up(ws) -> None:
    await ws.send(json.dumps({"type": "PING", "clientMsgId": "alive"}))
    pong = await recv(ws, "PONG")
    # a trade stream with nothing subscribed says so in its PONG
    assert pong in ({"type": "PONG", "clientMsgId": "alive"},
                    {"type": "PONG", "message": "NO_SUBSCRIPTIONS", "clientMsgId": "alive"})


async def authenticated(ws) -> None:
    """AUTHENTICATED, then the account's state VALR sends on connect (one BALANCE_UPDATE per
    asset held, one OPEN_ORDERS_UPDATE), all consumed."""
    await recv(ws, "AUTHENTICATED")
    await recv(ws, "OPEN_ORDERS_UPDATE")


@pytest.fixture
async def account_ws(maker):
    ws = await maker.ws()
    await authenticated(ws)
    return ws


# --- /ws/account ---------------------------------------------------------------------------------
@pytest.mark.parametrize("frame, words", [
    ("{not json", "Invalid JSON"),
    ("[1, 2]", "object"),
    ('"PING"', "object"),
    ("42", "object"),
    ('{"clientMsgId": "x"}', "type"),
    ('{"type": 7}', "type"),
    ('{"type": "DO_SOMETHING", "clientMsgId": "u"}', "DO_SOMETHING"),
    ('{"type": "CANCEL_ON_DISCONNECT", "payload": {"cancelOnDisconnect": "yes"}}', "cancelOnDisconnect"),
])
async def test_account_ws_generic_errors(account_ws, frame, words):
    await account_ws.send(frame)
    reply = await recv_raw(account_ws)
    assert reply["type"] == "ERROR" and words in reply["message"]
    if '"clientMsgId": "u"' in frame:
        assert reply["clientMsgId"] == "u"
    await still_up(account_ws)


@pytest.mark.parametrize("msg_type, payload, reply_type, field", [
    ("PLACE_LIMIT_ORDER", {k: v for k, v in ASK.items() if k != "price"}, "INVALID_PLACE_LIMIT_REQUEST", "price"),
    ("PLACE_LIMIT_ORDER", dict(ASK, quantity=["1"]), "INVALID_PLACE_LIMIT_REQUEST", "quantity"),
    ("PLACE_LIMIT_ORDER", dict(ASK, side="UP"), "INVALID_PLACE_LIMIT_REQUEST", "side"),
    ("PLACE_LIMIT_ORDER", dict(ASK, pair="NOPE"), "INVALID_PLACE_LIMIT_REQUEST", "pair"),
    ("PLACE_LIMIT_ORDER", "not an object", "INVALID_PLACE_LIMIT_REQUEST", "payload"),
    ("PLACE_MARKET_ORDER", {"side": "BUY", "pair": "BTCZAR", "baseAmount": "1", "quoteAmount": "1"},
     "INVALID_PLACE_MARKET_REQUEST", None),
    ("CANCEL_LIMIT_ORDER", {"pair": "BTCZAR"}, "INVALID_CANCEL_ORDER_REQUEST", None),
    ("CANCEL_LIMIT_ORDER", {"orderId": "x", "pair": "NOPE"}, "INVALID_CANCEL_ORDER_REQUEST", "pair"),
])
async def test_account_ws_invalid_commands(account_ws, fake_server, msg_type, payload, reply_type, field):
    await account_ws.send(json.dumps({"type": msg_type, "clientMsgId": "bad-1", "payload": payload}))
    reply = await recv_raw(account_ws)
    assert reply["type"] == reply_type and reply["clientMsgId"] == "bad-1"
    assert reply["error"]["message"]
    if field is not None:
        assert field in reply["error"]["validationErrors"]
    await still_up(account_ws)
    assert fake_server.exchange.pending == 0  # nothing was submitted


async def test_binary_frame_gets_an_error_and_keeps_the_connection(account_ws):
    await account_ws.send(b"\x00\x01binary")
    reply = await recv_raw(account_ws)
    assert reply["type"] == "ERROR" and "Binary" in reply["message"]
    await still_up(account_ws)


async def test_oversized_frame_closes_1009(make_server, client_factory):
    server = await make_server(make_config(server={"max_frame_bytes": 1024}))
    ws = await client_factory(server).ws(max_size=None)
    await authenticated(ws)
    await ws.send(json.dumps({"type": "PING", "pad": "x" * 2000}))
    with pytest.raises(websockets.exceptions.ConnectionClosed) as info:
        await recv_raw(ws)
    assert info.value.rcvd.code == 1009
    await _wait_no_conns(server)


async def test_idle_timeout_closes(make_server, client_factory):
    server = await make_server(make_config(server={"idle_timeout_s": 0.2}))
    ws = await client_factory(server).ws(ping_interval=None)
    await authenticated(ws)
    with pytest.raises(websockets.exceptions.ConnectionClosed) as info:
        await recv_raw(ws)
    assert info.value.rcvd.code == 1000
    await _wait_no_conns(server)


async def _wait_no_conns(server) -> None:
    async def poll() -> None:
        while server.conns:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), 5)


async def test_abrupt_client_disconnect_does_not_crash(maker, fake_server):
    ws = await maker.ws()
    await recv(ws, "AUTHENTICATED")
    ws.transport.abort()  # no close frame
    await _wait_no_conns(fake_server)
    assert (await maker.call("GET", "/v1/public/time", signed=False)).status == 200
    ws2 = await maker.ws()
    assert await recv_raw(ws2) == {"type": "AUTHENTICATED"}


# --- /ws/trade -----------------------------------------------------------------------------------
@pytest.mark.parametrize("message, words", [
    ({"type": "SUBSCRIBE"}, "subscriptions"),
    ({"type": "SUBSCRIBE", "subscriptions": [{"event": "NOPE"}]}, "NOPE"),
    ({"type": "SUBSCRIBE", "subscriptions": [{"event": "NEW_TRADE", "pairs": ["XXXYYY"]}]}, "XXXYYY"),
    ({"type": "SUBSCRIBE", "subscriptions": [{"event": "NEW_TRADE", "pairs": "BTCZAR"}]}, "pairs"),
    ({"type": "PLACE_LIMIT_ORDER", "payload": ASK}, "PLACE_LIMIT_ORDER"),
])
async def test_trade_ws_errors(maker, message, words):
    ws = await maker.ws("/ws/trade", signed=False)
    await ws.send(json.dumps(message))
    reply = await recv_raw(ws)
    assert reply["type"] == "ERROR" and words in reply["message"]
    await ws.send("{oops")
    assert (await recv_raw(ws))["type"] == "ERROR"
    await still_up(ws)


# --- REST ----------------------------------------------------------------------------------------
async def test_rest_malformed_json(maker):
    r = await maker.call("POST", "/v1/orders/limit", raw="{not json")
    assert r.status == 400 and r.body == {"code": -113, "message": "Invalid JSON payload"}


async def test_rest_body_not_an_object(maker):
    r = await maker.call("POST", "/v1/orders/limit", raw="[1]")
    assert r.status == 400 and isinstance(r.body["code"], int)


async def test_rest_content_type_required(maker):
    body = json.dumps(ASK)
    headers = maker.sign("POST", "/v1/orders/limit", body)
    headers["Content-Type"] = "text/plain"
    r = await maker.call("POST", "/v1/orders/limit", raw=body, signed=False, headers=headers)
    assert r.status == 400 and "Content-Type" in r.body["message"]


@pytest.mark.parametrize("body, field", [
    ({k: v for k, v in ASK.items() if k != "price"}, "price"),
    (dict(ASK, quantity="lots"), "quantity"),
    (dict(ASK, pair="NOPE"), "NOPE"),
    (dict(ASK, customerOrderId="has spaces!"), "customerOrderId"),
])
async def test_rest_bad_fields_name_the_field(maker, fake_server, body, field):
    r = await maker.call("POST", "/v1/orders/limit", body)
    assert r.status == 400 and field in r.body["message"]
    assert fake_server.exchange.pending == 0


async def test_rest_unknown_route_and_method(maker):
    r = await maker.call("GET", "/v1/nothing/here", signed=False)
    assert r.status == 404 and set(r.body) == {"code", "message"}
    # a method the path is not served with is an unknown route too (test_server_rest.py)
    r = await maker.call("PATCH", "/v1/orders/limit", signed=False)
    assert r.status == 404 and set(r.body) == {"code", "message"}


async def test_rest_bad_query(maker):
    r = await maker.call("GET", "/v1/orders/history?limit=many")
    assert r.status == 400 and "limit" in r.body["message"]
    r = await maker.call("GET", "/v1/orders/history?skip=-1")
    assert r.status == 400 and "skip" in r.body["message"]


async def test_rest_cancel_without_ids(maker):
    r = await maker.call("DELETE", "/v1/orders/order", {"pair": "BTCZAR"})
    assert r.status == 400 and ("orderId" in r.body["message"] or "customerOrderId" in r.body["message"])


async def test_stop_closes_sockets_and_leaves_no_tasks(client_factory):
    from replay.server import FakeValr

    server = FakeValr(make_config(market={"BTCZAR": {"mid": "1500000", "step_interval_s": 0.05}}))
    await server.start()
    client = client_factory(server)
    ws = await client.ws()
    await recv(ws, "AUTHENTICATED")
    trade = await client.ws("/ws/trade", signed=False)
    await trade.send(json.dumps({"type": "SUBSCRIBE", "subscriptions": [{"event": "AGGREGATED_ORDERBOOK_UPDATE"}]}))
    await recv(trade, "AGGREGATED_ORDERBOOK_UPDATE")
    await client.call("POST", "/v1/orders/limit", ASK)
    await server.stop()
    for sock in (ws, trade):
        with pytest.raises(websockets.exceptions.ConnectionClosed) as info:
            while True:
                await recv_raw(sock)
        assert info.value.rcvd.code == 1001
    assert not server.conns
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert not others, others


async def test_internal_error_is_reported_not_fatal(account_ws, monkeypatch):
    from replay import codec

    def boom():
        raise RuntimeError("bug")

    monkeypatch.setattr(codec, "pong_message", boom)
    await account_ws.send(json.dumps({"type": "PING"}))
    reply = await recv_raw(account_ws)
    assert reply["type"] == "ERROR" and "Internal" in reply["message"]
    monkeypatch.undo()
    await still_up(account_ws)


def test_the_rate_limiters_memory_is_bounded_by_one_minutes_callers() -> None:
    from replay.server.ratelimit import MAX_KEY_CHARS, RateLimiter

    limiter = RateLimiter()
    for i in range(3000):  # distinct long keys within one minute
        limiter.check(60_000 + i, method="GET", path="/v1/account/balances", api_key=f"{i:08d}" + "k" * 8000)
    assert len(limiter._minute_counts) == 3000
    assert all(len(who) <= MAX_KEY_CHARS for _scope, who in limiter._minute_counts)
    limiter.check(120_000, method="GET", path="/v1/account/balances", ip="127.0.0.1", api_key="x" * 64)
    assert len(limiter._minute_counts) == 2  # the next minute: only its own callers
