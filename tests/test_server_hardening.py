"""The fake server probed as an attacker and a careless client would (issue 10, "Hardening"):
every refusal in VALR's JSON error shape with a 4xx, no acknowledged order lost, no quota burnt
by someone who cannot sign, the lenient signature form visible."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from replay.auth import auth_headers

from conftest import MAKER_KEY, MAKER_SECRET, TAKER_KEY, make_config, recv, recv_raw

ASK = {"side": "SELL", "quantity": "0.02", "price": "1500000", "pair": "BTCZAR"}
DEEP = "[" * 5000 + "]" * 5000
FIFTY_ONE_DIGITS = "1" * 51


def is_error_body(body: Any) -> bool:
    return (isinstance(body, dict) and set(body) == {"code", "message"} and isinstance(body["code"], int)
            and isinstance(body["message"], str) and body["message"] != "")


async def raw_http(server: Any, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP/1.1 exchange on a fresh connection: (status, headers, body)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(data)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 5)
        return status, headers, body
    finally:
        writer.close()


async def still_serves(client: Any) -> None:
    r = await client.call("GET", "/v1/account/balances")
    assert r.status == 200 and isinstance(r.body, list)


# --- the first part's fixes, end to end ------------------------------------------------------------
def _bad_auth_headers(kind: str, method: str, path: str, body: bytes = b"") -> dict[str, str]:
    headers = auth_headers(MAKER_KEY, MAKER_SECRET, method, path, body)
    if kind == "timestamp-arabic-digits":
        headers["X-VALR-TIMESTAMP"] = "١٧٠٠٠٠٠٠٠٠٠٠٠"
    elif kind == "timestamp-superscript":
        headers["X-VALR-TIMESTAMP"] = "¹²³"
    elif kind == "timestamp-4301-digits":
        headers["X-VALR-TIMESTAMP"] = "9" * 4301
    elif kind == "signature-non-ascii":
        headers["X-VALR-SIGNATURE"] = "é" * 128
    return headers


BAD_AUTH = ["timestamp-arabic-digits", "timestamp-superscript", "timestamp-4301-digits", "signature-non-ascii"]


def _encode_headers(headers: dict[str, str]) -> bytes:
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())


@pytest.mark.parametrize("kind", BAD_AUTH)
async def test_bad_auth_headers_get_401_on_rest(fake_server, maker, kind):
    headers = _bad_auth_headers(kind, "GET", "/v1/account/balances")
    # raw HTTP: header values as UTF-8 bytes, which a client library may refuse to send
    status, hdrs, body = await raw_http(fake_server, b"GET /v1/account/balances HTTP/1.1\r\nHost: x\r\n"
                                        + _encode_headers(headers) + b"\r\n")
    assert status == 401 and hdrs["content-type"].startswith("application/json")
    assert is_error_body(json.loads(body))
    await still_serves(maker)


@pytest.mark.parametrize("kind", BAD_AUTH)
async def test_bad_auth_headers_get_401_on_the_account_upgrade(fake_server, maker, kind):
    headers = _bad_auth_headers(kind, "GET", "/ws/account")
    status, hdrs, body = await raw_http(fake_server, (
        b"GET /ws/account HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        + _encode_headers(headers) + b"\r\n"))
    assert status == 401 and hdrs["content-type"].startswith("application/json")
    assert is_error_body(json.loads(body))
    assert not fake_server.conns
    await still_serves(maker)


@pytest.mark.parametrize("method, path", [("POST", "/v1/orders/limit"), ("DELETE", "/v1/orders/order")])
async def test_a_signed_body_that_is_not_utf8_gets_400(fake_server, maker, method, path):
    body = b"\xff\xfe\x00{\"pair\": \"BTCZAR\"}"
    headers = {**auth_headers(MAKER_KEY, MAKER_SECRET, method, path, body, timestamp_ms=fake_server.now_ms()),
               "Content-Type": "application/json"}
    async with maker.session.request(method, fake_server.rest_url + path, data=body, headers=headers) as resp:
        assert resp.status == 400
        assert await resp.json() == {"code": -113, "message": "Invalid JSON payload"}
    assert fake_server.exchange.pending == 0
    await still_serves(maker)


# --- 3: deeply nested JSON ------------------------------------------------------------------------
async def test_deeply_nested_json_body_gets_400_invalid_json(fake_server, maker):
    r = await maker.call("POST", "/v1/orders/limit", raw=DEEP)
    assert r.status == 400 and r.body == {"code": -113, "message": "Invalid JSON payload"}
    # unsigned too: the trace's parse of the body runs before any check
    r = await maker.call("POST", "/v1/orders/limit", raw=DEEP, signed=False)
    assert r.status == 403 and is_error_body(r.body)
    await still_serves(maker)


@pytest.mark.parametrize("path", ["/ws/account", "/ws/trade"])
async def test_deeply_nested_json_frame_gets_invalid_json(maker, path):
    ws = await maker.ws(path)
    await recv(ws, "AUTHENTICATED")
    await ws.send(DEEP)
    reply = await recv(ws, "ERROR")
    assert "Invalid JSON" in reply["message"]
    await ws.send(json.dumps({"type": "PING", "clientMsgId": "alive"}))
    assert (await recv(ws, "PONG"))["clientMsgId"] == "alive"


# --- 4: amounts the engine cannot compute are refused at the door -----------------------------------
HUGE_OR_TINY = [
    ("price", "1e60"), ("price", "1e999999"), ("price", FIFTY_ONE_DIGITS), ("quantity", "1e60"),
    ("quantity", "1e-999999999"), ("price", 1e60),
]


@pytest.mark.parametrize("field, value", HUGE_OR_TINY)
async def test_rest_limit_order_with_an_unworkable_amount_is_refused(fake_server, maker, field, value):
    r = await maker.call("POST", "/v1/orders/limit", dict(ASK, **{field: value}))
    assert r.status == 400 and is_error_body(r.body) and field in r.body["message"]
    assert fake_server.exchange.pending == 0


@pytest.mark.parametrize("field, value", HUGE_OR_TINY)
async def test_ws_limit_order_with_an_unworkable_amount_is_refused(fake_server, maker, field, value):
    ws = await maker.ws()
    await recv(ws, "OPEN_ORDERS_UPDATE")
    await ws.send(json.dumps({"type": "PLACE_LIMIT_ORDER", "clientMsgId": "m1",
                              "payload": dict(ASK, **{field: value})}))
    reply = await recv_raw(ws)
    assert reply["type"] == "INVALID_PLACE_LIMIT_REQUEST" and field in reply["error"]["validationErrors"]
    assert fake_server.exchange.pending == 0


async def test_modify_stop_limit_and_batch_refuse_unworkable_amounts(fake_server, maker):
    r = await maker.call("PUT", "/v1/orders/modify", {
        "pair": "BTCZAR", "orderId": "x", "newPrice": "1e60", "modifyMatchStrategy": "RETAIN_ORIGINAL"})
    assert r.status == 400 and "newPrice" in r.body["message"]
    r = await maker.call("POST", "/v1/orders/stop/limit", dict(ASK, stopPrice="1e-999999999", type="STOP_LOSS_LIMIT"))
    assert r.status == 400 and "stopPrice" in r.body["message"]
    r = await maker.call("POST", "/v1/batch/orders", {"requests": [
        {"type": "PLACE_LIMIT", "data": dict(ASK, price=FIFTY_ONE_DIGITS)}]})
    assert r.status == 200 and r.body["outcomes"][0]["accepted"] is False
    assert fake_server.exchange.pending == 0


async def test_an_order_at_the_bounds_is_processed_not_lost(fake_server, maker):
    """The largest and finest amounts the door lets through are processed to an outcome."""
    ws = await maker.ws()
    await recv(ws, "OPEN_ORDERS_UPDATE")
    r = await maker.call("POST", "/v1/orders/limit", dict(ASK, price="9" * 20, customerOrderId="big"))
    assert r.status == 202
    r2 = await maker.call("POST", "/v1/orders/limit", dict(ASK, quantity="0." + "0" * 19 + "1",
                                                          customerOrderId="tiny"))
    assert r2.status == 202
    outcomes = {}
    while len(outcomes) < 2:
        msg = await recv(ws, lambda m: m.get("type") in ("ORDER_PROCESSED", "FAILED_ORDER"))
        outcomes[msg["data"].get("orderId")] = msg["type"]
    assert set(outcomes) == {r.body["id"], r2.body["id"]}


def test_the_exchange_refuses_unworkable_amounts_itself():
    from decimal import Decimal

    from replay.config import default_config
    from replay.exchange import Exchange
    from replay.exchange.model import ExchangeError, LimitRequest, Side

    ex = Exchange(default_config().pairs)
    ex.open_account("a", {"BTC": Decimal(1)})
    for qty, price in ((Decimal("0.01"), Decimal("1e60")), (Decimal("1e-999999999"), Decimal("1500000"))):
        with pytest.raises(ExchangeError):
            ex.submit_limit(0, "a", LimitRequest("BTCZAR", Side.SELL, qty, price, post_only=False))
    assert ex.pending == 0


# --- 6: no quota burnt by a bad signature -----------------------------------------------------------
async def test_bad_signatures_charge_no_quota_to_the_key(make_server, client_factory):
    server = await make_server(make_config(server={"rate_limit_per_minute_key": 5,
                                                   "rate_limit_per_minute_ip": 1000}))
    victim = client_factory(server)
    for _ in range(20):  # another account's key, a signature the caller cannot make
        headers = {"X-VALR-API-KEY": MAKER_KEY, "X-VALR-SIGNATURE": "0" * 128,
                   "X-VALR-TIMESTAMP": str(server.now_ms())}
        r = await victim.call("GET", "/v1/account/balances", signed=False, headers=headers)
        assert r.status == 401 and is_error_body(r.body)
    for _ in range(5):  # the key's whole quota is still there
        await still_serves(victim)
    r = await victim.call("GET", "/v1/account/balances")
    assert r.status == 429 and r.headers["x-valr-ratelimited"] == "true"


async def test_refused_requests_count_against_their_ip(make_server, client_factory):
    server = await make_server(make_config(server={"rate_limit_per_minute_ip": 5}))
    client = client_factory(server)
    for _ in range(5):
        r = await client.call("GET", "/v1/account/balances", signed=False,
                              headers={"X-VALR-API-KEY": TAKER_KEY, "X-VALR-SIGNATURE": "0" * 128,
                                       "X-VALR-TIMESTAMP": str(server.now_ms())})
        assert r.status == 401
    r = await client.call("GET", "/v1/account/balances")
    assert r.status == 429 and "ip" in r.body["message"]


# --- 9: every error answer in VALR's JSON shape -------------------------------------------------------
async def test_a_body_over_the_limit_gets_a_json_413(fake_server):
    body = b"a" * (1024 * 1024 + 10)
    status, hdrs, out = await raw_http(fake_server, (
        b"POST /v1/orders/limit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode() + body))
    assert status == 413 and hdrs["content-type"].startswith("application/json") and is_error_body(json.loads(out))


@pytest.mark.parametrize("request_line, status", [
    (b"GET /ws/account HTTP/1.1", 400),  # no Upgrade header
    (b"GET /ws/trade HTTP/1.1", 400),
    (b"GET /ws/../v1/account/balances HTTP/1.1", 404),
    (b"GET * HTTP/1.1", 400),
    (b"OPTIONS * HTTP/1.1", 404),
    (b"BREW /v1/public/time HTTP/1.1", 400),  # a method the HTTP parser does not know
    (b"G@T / HTTP/1.1", 400),
    (b"GET /v1/public/time HTTP/9.9", 400),
    (b"GET /v1/public/time HTTP/1.1\r\nExpect: tea", 417),  # aiohttp answers it before the middleware
    (b"GET /ws/account HTTP/1.1\r\nExpect: tea", 417),
])
async def test_protocol_level_errors_are_json(fake_server, maker, request_line, status):
    got, hdrs, body = await raw_http(fake_server, request_line + b"\r\nHost: x\r\n\r\n")
    assert got == status and hdrs["content-type"].startswith("application/json")
    assert is_error_body(json.loads(body))
    await still_serves(maker)


# --- the lenient signature form, visible -------------------------------------------------------------
async def _get_signed_without_query(server: Any, client: Any) -> Any:
    path = "/v1/orders/history"
    headers = auth_headers(MAKER_KEY, MAKER_SECRET, "GET", path, timestamp_ms=server.now_ms())
    return await client.call("GET", path + "?skip=0&limit=5", signed=False, headers=headers)


async def test_a_get_signed_without_its_query_is_accepted_and_traced(fake_server, maker):
    r = await _get_signed_without_query(fake_server, maker)
    assert r.status == 200
    lenient = [rec for rec in fake_server.trace.records if rec["type"] == "LENIENT_SIGNATURE"]
    assert len(lenient) == 1 and lenient[0]["kind"] == "meta"
    assert lenient[0]["data"]["route"] == "/v1/orders/history" and lenient[0]["data"]["accepted"] is True
    r = await maker.call("GET", "/v1/orders/history?skip=0&limit=5")  # signed as documented: no record
    assert r.status == 200
    assert len([rec for rec in fake_server.trace.records if rec["type"] == "LENIENT_SIGNATURE"]) == 1


async def test_strict_signatures_refuse_a_get_signed_without_its_query(make_server, client_factory):
    server = await make_server(make_config(server={"strict_signatures": True}))
    client = client_factory(server)
    r = await _get_signed_without_query(server, client)
    assert r.status == 401 and is_error_body(r.body)
    assert [rec["data"]["accepted"] for rec in server.trace.records if rec["type"] == "LENIENT_SIGNATURE"] == [False]
    r = await client.call("GET", "/v1/orders/history?skip=0&limit=5")
    assert r.status == 200
