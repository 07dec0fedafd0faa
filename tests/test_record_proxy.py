"""The recording proxy between a client and the fake VALR, over real loopback sockets."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from typing import Any

import aiohttp
import pytest
import websockets
from aiohttp import web
from websockets.asyncio.client import connect
from yarl import URL

from replay.auth import auth_headers
from replay.capture import CaptureWriter, find_secrets, read_capture
from replay.record import RecordingProxy, split_upstream
from replay.record.proxy import parse_body, parse_frame

from conftest import MAKER_KEY, MAKER_SECRET, Records, recv, recv_raw

BID = {"side": "BUY", "quantity": "0.01", "price": "1400000", "pair": "BTCZAR", "postOnly": True}


class Via:
    """What conftest's ValrClient needs: the fake's clock for signing, the proxy's address."""

    def __init__(self, fake: Any, proxy: RecordingProxy):
        self.now_ms = fake.now_ms
        self.rest_url = proxy.rest_url
        self.host = proxy.host
        self.port = proxy.port


@pytest.fixture
async def proxied(make_server, tmp_path):
    fake = await make_server()
    out = tmp_path / "proxy.jsonl"
    writer = CaptureWriter(out, {"source": "proxy", "upstream": fake.rest_url, "pairs": ["BTCZAR"]})
    proxy = RecordingProxy(fake.rest_url, writer)
    records = Records(proxy.sink)
    await proxy.start("127.0.0.1", 0)
    yield fake, proxy, records, out
    await proxy.stop()
    writer.close()


@pytest.fixture
def maker_via(proxied, client_factory):
    fake, proxy, _records, _out = proxied
    return client_factory(Via(fake, proxy), MAKER_KEY, MAKER_SECRET)


# --- pure helpers ----------------------------------------------------------------------------
async def test_split_upstream():
    assert split_upstream("https://api.valr.com") == ("https://api.valr.com", "wss://api.valr.com")
    assert split_upstream("http://127.0.0.1:8080/") == ("http://127.0.0.1:8080", "ws://127.0.0.1:8080")
    assert split_upstream("wss://x.example/base") == ("https://x.example/base", "wss://x.example/base")
    with pytest.raises(ValueError, match="upstream"):
        split_upstream("ftp://x")
    with pytest.raises(ValueError, match="upstream"):
        split_upstream("api.valr.com")


async def test_parse_frame_and_body():
    assert parse_frame('{"type":"PONG"}') == ("PONG", {"type": "PONG"})
    assert parse_frame("not json") == ("RAW", {"raw": "not json"})
    assert parse_frame("[1]") == ("UNTYPED", [1])
    assert parse_body(b"") is None
    assert parse_body(b'{"a":1}') == {"a": 1}
    assert parse_body(b"plain") == "plain"
    import gzip

    assert parse_body(gzip.compress(b'{"a":2}'), "gzip") == {"a": 2}


# --- REST ------------------------------------------------------------------------------------
async def test_signed_rest_passes_intact_and_is_recorded_scrubbed(proxied, maker_via):
    fake, proxy, records, out = proxied
    ts = fake.now_ms() - 1237  # an odd offset: its digits appear nowhere else
    sent = []
    balances = await maker_via.call("GET", "/v1/account/balances", ts=ts)
    sent.append(maker_via.sign("GET", "/v1/account/balances", "", ts))
    assert balances.status == 200, balances.text  # the upstream verified the signature
    body = json.dumps(BID)
    placed = await maker_via.call("POST", "/v1/orders/limit", raw=body, ts=ts)
    sent.append(maker_via.sign("POST", "/v1/orders/limit", body, ts))
    assert placed.status == 202, placed.text
    history = await maker_via.call("GET", "/v1/orders/history?skip=0&limit=20", ts=ts)
    sent.append(maker_via.sign("GET", "/v1/orders/history?skip=0&limit=20", "", ts))
    assert history.status == 200, history.text  # the query string was forwarded as signed
    spoiled = await maker_via.call("GET", "/v1/account/balances", headers={"X-VALR-SIGNATURE": "0" * 128})
    assert spoiled.status == 401  # the upstream does check what it receives

    await records.wait(lambda r: r["conn"] == "rest-4" and r["dir"] == "in")
    header, recs, problems = read_capture(out)
    assert problems == [] and header["source"] == "proxy"
    rest = [r for r in recs if r["kind"] == "rest"]
    assert [(r["conn"], r["dir"], r["type"]) for r in rest] == [
        ("rest-1", "out", "GET /v1/account/balances"), ("rest-1", "in", "GET /v1/account/balances"),
        ("rest-2", "out", "POST /v1/orders/limit"), ("rest-2", "in", "POST /v1/orders/limit"),
        ("rest-3", "out", "GET /v1/orders/history"), ("rest-3", "in", "GET /v1/orders/history"),
        ("rest-4", "out", "GET /v1/account/balances"), ("rest-4", "in", "GET /v1/account/balances"),
    ]
    req, resp = rest[2]["data"], rest[3]["data"]
    assert req["method"] == "POST" and req["path"] == "/v1/orders/limit" and req["body"] == BID
    assert resp["status"] == 202 and resp["body"] == {"id": placed.body["id"]}
    assert rest[4]["data"]["query"] == "skip=0&limit=20"
    hdrs = {k.lower(): v for k, v in rest[0]["data"]["headers"].items()}
    assert hdrs["x-valr-api-key"] == hdrs["x-valr-signature"] == hdrs["x-valr-timestamp"] == "<scrubbed>"
    assert rest[1]["data"]["status"] == 200 and isinstance(rest[1]["data"]["body"], list)
    assert rest[7]["data"]["status"] == 401

    text = out.read_text()
    assert MAKER_KEY not in text and MAKER_SECRET not in text
    for headers in sent:
        assert headers["X-VALR-SIGNATURE"] not in text
    assert f'"{ts}"' not in text
    assert find_secrets(out) == []
    assert proxy.stats["rest-1"].out == 4 and proxy.stats["rest-1"].in_ == 4


async def test_rest_forwarding_is_byte_exact(tmp_path):
    """Raw path, query encoding, body bytes and headers reach the upstream as the client sent them."""
    seen: dict[str, Any] = {}

    async def echo(request: web.Request) -> web.Response:
        seen["raw_path"] = request.raw_path
        seen["body"] = await request.read()
        seen["headers"] = list(request.headers.items())
        return web.Response(status=418, body=b'{"ok": true}', content_type="application/json",
                            headers={"X-Upstream": "yes"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    writer = CaptureWriter(tmp_path / "c.jsonl", {"source": "proxy"})
    proxy = RecordingProxy(f"http://127.0.0.1:{port}", writer)
    await proxy.start()
    try:
        body = b'{"b": 1,   "a":"x/y"}'
        headers = auth_headers(MAKER_KEY, MAKER_SECRET, "PUT", "/v1/x%2Fy?b=2&a=%2F&c=", body)
        headers.update({"Content-Type": "application/json", "X-Custom": "  spaced  value",
                        "Connection": "keep-alive"})
        async with aiohttp.ClientSession() as session:
            url = URL(proxy.rest_url + "/v1/x%2Fy?b=2&a=%2F&c=", encoded=True)
            async with session.put(url, data=body, headers=headers) as resp:
                assert resp.status == 418
                assert resp.headers["X-Upstream"] == "yes"
                assert await resp.read() == b'{"ok": true}'
    finally:
        await proxy.stop()
        writer.close()
        await runner.cleanup()
    assert seen["raw_path"] == "/v1/x%2Fy?b=2&a=%2F&c="
    assert seen["body"] == body
    got = dict(seen["headers"])
    for name in ("X-VALR-API-KEY", "X-VALR-SIGNATURE", "X-VALR-TIMESTAMP", "Content-Type"):
        assert got[name] == headers[name]
    assert got["X-Custom"] == "spaced  value"  # HTTP strips outer whitespace; the inner is kept
    assert got["Host"] == f"127.0.0.1:{port}"
    _h, recs, problems = read_capture(tmp_path / "c.jsonl")
    assert problems == [] and [r["data"].get("status") for r in recs] == [None, 418]
    assert recs[0]["data"]["path"] == "/v1/x%2Fy" and recs[0]["data"]["query"] == "b=2&a=%2F&c="
    assert find_secrets(tmp_path / "c.jsonl") == []


def _dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def test_unreachable_upstream_is_502_with_valr_error(tmp_path):
    out = tmp_path / "c.jsonl"
    writer = CaptureWriter(out, {"source": "proxy"})
    proxy = RecordingProxy(f"http://127.0.0.1:{_dead_port()}", writer)
    await proxy.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(proxy.rest_url + "/v1/public/time") as resp:
                assert resp.status == 502
                body = await resp.json()
        assert body["code"] == -1 and "unreachable" in body["message"]
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:
            await connect(proxy.ws_trade_url, open_timeout=5)
        assert info.value.response.status_code == 502
    finally:
        await proxy.stop()
        writer.close()
    _h, recs, problems = read_capture(out)
    assert problems == []
    assert [(r["conn"], r["dir"], r["type"]) for r in recs[:2]] == [
        ("rest-1", "out", "GET /v1/public/time"), ("rest-1", "in", "GET /v1/public/time")]
    assert recs[1]["data"]["status"] == 502 and recs[1]["data"]["body"]["code"] == -1
    gap = [r for r in recs if r["type"] == "GAP"]
    assert gap and gap[0]["kind"] == "meta" and gap[0]["data"]["stream"] == "trade"
    assert gap[0]["data"]["conn"] is None and gap[0]["data"]["path"] == "/ws/trade"
    assert ("rest-2", "in", "GET /ws/trade") in [(r["conn"], r["dir"], r["type"]) for r in recs]


# --- WebSockets ------------------------------------------------------------------------------
async def test_ws_place_limit_reply_and_events_recorded_in_order(proxied, maker_via):
    fake, proxy, records, out = proxied
    ws = await maker_via.ws("/ws/account")  # signed upgrade through the proxy
    assert await recv_raw(ws) == {"type": "AUTHENTICATED"}
    snapshot = [await recv_raw(ws) for _ in range(3)]  # the account's state on connect
    assert [m["type"] for m in snapshot] == ["BALANCE_UPDATE", "BALANCE_UPDATE", "OPEN_ORDERS_UPDATE"]
    await ws.send(json.dumps({"type": "PLACE_LIMIT_ORDER", "clientMsgId": "m-1",
                              "payload": dict(BID, customerOrderId="c-1")}))
    got = []
    while True:
        msg = await recv_raw(ws)
        got.append(msg)
        if msg["type"] == "OPEN_ORDERS_UPDATE" and msg["data"]:
            break
    assert got[0]["type"] == "PLACE_LIMIT_WS_RESPONSE" and got[0]["clientMsgId"] == "m-1"
    oid = got[0]["data"]["orderId"]
    assert any(m["type"] == "ORDER_STATUS_UPDATE" and m["data"]["orderId"] == oid for m in got)

    last = got[-1]
    await records.wait(lambda r: r["conn"] == "account-1" and r["dir"] == "in" and r["data"] == last)
    _h, recs, problems = read_capture(out)
    assert problems == []
    acct = [r for r in recs if r["conn"] == "account-1"]
    assert acct[0]["type"] == "CONNECT" and acct[0]["data"]["path"] == "/ws/account"
    frames = [r for r in acct if r["kind"] == "ws" and r["dir"] != "local"]
    assert [(r["dir"], r["type"]) for r in frames[:6]] == [
        ("in", "AUTHENTICATED"), ("in", "BALANCE_UPDATE"), ("in", "BALANCE_UPDATE"), ("in", "OPEN_ORDERS_UPDATE"),
        ("out", "PLACE_LIMIT_ORDER"), ("in", "PLACE_LIMIT_WS_RESPONSE")]
    assert frames[4]["data"]["payload"]["customerOrderId"] == "c-1"
    recorded_in = [r["data"] for r in frames if r["dir"] == "in"]
    assert recorded_in[4:len(got) + 4] == got  # the very frames the client got, in order
    ts = [r["t"] for r in acct]
    assert all(a < b for a, b in itertools.pairwise(ts)), ts
    assert proxy.stats["account-1"].out == 1 and proxy.stats["account-1"].in_ >= len(got) + 4


async def test_trade_subscribe_recorded(proxied):
    fake, proxy, records, out = proxied
    sub = {"type": "SUBSCRIBE", "subscriptions": [{"event": "AGGREGATED_ORDERBOOK_UPDATE", "pairs": ["BTCZAR"]}]}
    async with connect(proxy.ws_trade_url, open_timeout=5) as ws:
        await ws.send(json.dumps(sub))
        assert (await recv(ws, "SUBSCRIBED"))["message"] == "AGGREGATED_ORDERBOOK_UPDATE:BTCZAR"
        book = await recv(ws, "AGGREGATED_ORDERBOOK_UPDATE")
        assert book["currencyPairSymbol"] == "BTCZAR"
    await records.wait(lambda r: r["conn"] == "trade-1" and r["type"] == "DISCONNECT")
    _h, recs, _p = read_capture(out)
    trade = [(r["dir"], r["type"]) for r in recs if r["conn"] == "trade-1"]
    assert trade[:2] == [("local", "CONNECT"), ("out", "SUBSCRIBE")]
    assert ("in", "SUBSCRIBED") in trade and ("in", "AGGREGATED_ORDERBOOK_UPDATE") in trade
    assert trade[-1] == ("local", "DISCONNECT")
    assert [r["data"] for r in recs if r["type"] == "SUBSCRIBE"] == [sub]
    disc = [r for r in recs if r["conn"] == "trade-1" and r["type"] == "DISCONNECT"][0]
    assert disc["data"]["by"] == "client"
    assert not [r for r in recs if r["type"] == "GAP"]  # a client close is no gap
    assert "BTCZAR" in proxy.sink.pairs_seen


async def test_upstream_close_closes_client_with_its_code_and_records_gap(proxied, maker_via):
    fake, proxy, records, out = proxied
    ws = await maker_via.ws("/ws/account")
    assert await recv_raw(ws) == {"type": "AUTHENTICATED"}
    (conn,) = [c for c in fake.conns.values() if c.kind == "account"]
    fake.disconnect_later(conn, 4001)
    await asyncio.wait_for(ws.wait_closed(), 5)
    assert ws.close_code == 4001
    gap = await records.wait(lambda r: r["type"] == "GAP")
    assert gap["kind"] == "meta" and gap["dir"] == "local"
    assert gap["data"]["conn"] == "account-1" and gap["data"]["code"] == 4001 and "4001" in gap["data"]["reason"]
    disc = await records.wait(lambda r: r["type"] == "DISCONNECT")
    assert disc["conn"] == "account-1" and disc["data"]["by"] == "upstream"
    # the client reconnects through the proxy: a new connection id
    ws2 = await maker_via.ws("/ws/account")
    assert await recv_raw(ws2) == {"type": "AUTHENTICATED"}
    await records.wait(lambda r: r["conn"] == "account-2" and r["type"] == "AUTHENTICATED")


async def test_client_close_closes_upstream(proxied, maker_via):
    fake, proxy, records, out = proxied
    upstream_gone = asyncio.Event()
    fake.trace.listeners.append(lambda r: upstream_gone.set() if r["type"] == "DISCONNECT" else None)
    ws = await maker_via.ws("/ws/account")
    assert await recv_raw(ws) == {"type": "AUTHENTICATED"}
    await ws.close(code=1000)
    await asyncio.wait_for(upstream_gone.wait(), 5)
    assert not fake.conns
    disc = await records.wait(lambda r: r["type"] == "DISCONNECT")
    assert disc["data"]["by"] == "client" and disc["data"]["code"] == 1000


async def test_refused_upgrade_status_passes_through(proxied):
    fake, proxy, records, out = proxied
    headers = auth_headers(MAKER_KEY, MAKER_SECRET, "GET", "/ws/trade", timestamp_ms=fake.now_ms())  # wrong path
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        await connect(proxy.ws_account_url, additional_headers=headers, open_timeout=5)
    assert info.value.response.status_code == 401
    rec = await records.wait(lambda r: r["dir"] == "in" and r["kind"] == "rest")
    assert rec["data"]["status"] == 401 and rec["type"] == "GET /ws/account" and rec["conn"] == "rest-1"
    assert find_secrets(out) == []


async def test_protocol_ping_is_forwarded_and_answered(proxied, maker_via):
    fake, proxy, records, out = proxied
    ws = await maker_via.ws("/ws/account")
    assert await recv_raw(ws) == {"type": "AUTHENTICATED"}
    pong = await ws.ping(b"hello")
    await asyncio.wait_for(pong, 5)  # answered by the upstream through the proxy
    await ws.send(json.dumps({"type": "PING", "clientMsgId": "p"}))
    assert await recv(ws, "PONG") == {"type": "PONG", "clientMsgId": "p"}


async def test_stop_closes_open_connections(make_server, tmp_path):
    fake = await make_server()
    out = tmp_path / "c.jsonl"
    writer = CaptureWriter(out, {"source": "proxy"})
    proxy = RecordingProxy(fake.rest_url, writer)
    await proxy.start()
    ws = await connect(proxy.ws_trade_url, open_timeout=5)
    try:
        await ws.send(json.dumps({"type": "PING"}))
        await recv(ws, "PONG")
        await asyncio.wait_for(proxy.stop(), 10)
        await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == 1001
    finally:
        await ws.close()
        writer.close()
    _h, recs, problems = read_capture(out)
    assert problems == [] and recs[-1]["type"] == "DISCONNECT" and recs[-1]["data"]["by"] == "proxy"


async def test_sink_writes_exactly_what_the_scrubbing_writer_would(tmp_path):
    from replay.capture import dumps, scrub_record
    from replay.record import RecordSink

    book = {"type": "AGGREGATED_ORDERBOOK_UPDATE", "currencyPairSymbol": "BTCZAR",
            "data": {"Asks": [{"price": "1500001", "quantity": "0.1"}], "Bids": [], "SequenceNumber": 3}}
    auth = {"type": "AUTHENTICATE", "payload": {"apiKey": MAKER_KEY, "signature": "ab" * 64, "timestamp": 1}}
    rest = {"method": "GET", "headers": {"x-valr-api-key": MAKER_KEY, "Accept": "*/*"}}
    bal = {"type": "BALANCE_UPDATE", "data": {"currency": {"shortName": "ZAR"}, "available": "5", "total": "7"}}
    for balances in (False, True):
        out = tmp_path / f"sink-{balances}.jsonl"
        writer = CaptureWriter(out, {"source": "proxy"}, scrub_balances=balances)
        sink = RecordSink(writer)
        recs = [sink.record("account-1", "in", "ws", m.get("type", "X"), m) for m in (book, auth, rest, bal)]
        writer.close()
        lines = out.read_text().splitlines()[1:]
        assert lines == [dumps(scrub_record(r, balances=balances)) for r in recs]
        assert MAKER_KEY not in out.read_text() and find_secrets(out) == []
        assert ('"available":"<scrubbed>"' in lines[3]) is balances
        assert lines[0] == dumps(recs[0])  # nothing to scrub: written as is
