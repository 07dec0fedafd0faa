"""The fake server serving a playback over real sockets: replies, ids, divergences, handover."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from replay.auth import auth_headers
from replay.capture import TraceRecorder
from replay.clock import Clock
from replay.config import DEMO_API_KEY, DEMO_API_SECRET, default_config
from replay.playback import Playback
from replay.server.app import FakeValr

ROOT = Path(__file__).resolve().parent.parent
CAPTURE = ROOT / "captures" / "reference_session.jsonl"
WAIT = 10.0


def signed(method: str, path: str, body: str = "") -> dict[str, str]:
    return auth_headers(DEMO_API_KEY, DEMO_API_SECRET, method, path, body)


async def next_of(ws: aiohttp.ClientWebSocketResponse, type_: str) -> dict[str, Any]:
    """The next frame of ``type_`` (others skipped); fails on a close or after WAIT s."""

    async def go() -> dict[str, Any]:
        while True:
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"connection ended ({msg.type}) before {type_}")
            data = json.loads(msg.data)
            if data.get("type") == type_:
                return data

    return await asyncio.wait_for(go(), WAIT)


def place(msg_id: str, cid: str, side: str, price: str) -> str:
    return json.dumps({"type": "PLACE_LIMIT_ORDER", "clientMsgId": msg_id, "payload": {
        "pair": "BTCZAR", "side": side, "price": price, "quantity": "0.00100000", "postOnly": True,
        "customerOrderId": cid, "timeInForce": "GTC"}})


@pytest.fixture
async def served(request):
    mode = getattr(request, "param", "stop")
    clock = Clock()
    trace = TraceRecorder(clock)
    server = FakeValr(default_config(), clock=clock, trace=trace, playback=Playback.from_file(CAPTURE, speed=10.0),
                      on_divergence=mode)
    await server.start("127.0.0.1", 0)
    session = aiohttp.ClientSession()
    try:
        yield server, session, trace
    finally:
        await session.close()
        await server.stop()


async def open_account(server: FakeValr, session: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(server.ws_account_url, headers=signed("GET", "/ws/account"))
    await next_of(ws, "AUTHENTICATED")
    return ws


async def test_gets_replayed_and_a_matching_command_gets_its_recorded_replies(served):
    server, session, trace = served
    async with session.get(server.rest_url + "/v1/public/pairs") as resp:
        assert resp.status == 200
        assert "BTCZAR" in {p["symbol"] for p in await resp.json()}
    async with session.get(server.rest_url + "/v1/account/balances",
                           headers=signed("GET", "/v1/account/balances")) as resp:
        assert resp.status == 200 and {b["currency"] for b in await resp.json()} >= {"ZAR"}
    ws = await open_account(server, session)
    await ws.send_str(place("live-1", "LIVE-B1", "BUY", "1495500"))
    reply = await next_of(ws, "PLACE_LIMIT_WS_RESPONSE")
    assert reply["clientMsgId"] == "live-1"
    assert reply["data"]["customerOrderId"] == "LIVE-B1" and reply["data"]["orderId"]  # recorded id kept
    st = await next_of(ws, "ORDER_STATUS_UPDATE")
    assert st["data"]["customerOrderId"] == "LIVE-B1"
    await ws.send_str(json.dumps({"type": "PING", "clientMsgId": "p1"}))
    assert (await next_of(ws, "PONG"))["clientMsgId"] == "p1"
    trade = await session.ws_connect(server.ws_trade_url)
    await trade.send_str(json.dumps({"type": "SUBSCRIBE", "subscriptions": [
        {"event": "AGGREGATED_ORDERBOOK_UPDATE", "pairs": ["BTCZAR"]}]}))
    book = await next_of(trade, "AGGREGATED_ORDERBOOK_UPDATE")
    assert book["data"]["Asks"] and book["data"]["Bids"]
    await trade.close()
    await ws.close()
    kinds = {(r["conn"].split("-")[0], r["dir"], r["type"]) for r in trace.records}
    assert ("account", "out", "PLACE_LIMIT_ORDER") in kinds and ("account", "in", "PLACE_LIMIT_WS_RESPONSE") in kinds
    assert ("rest", "in", "GET /v1/public/pairs") in kinds
    assert server.divergence is None and server.playback is not None


async def test_stop_divergence_closes_connections_and_is_traced(served):
    server, session, trace = served
    ws = await open_account(server, session)
    await ws.send_str(place("live-1", "LIVE-B1", "BUY", "1300000"))  # the recording bid 1495500
    msg = await asyncio.wait_for(ws.receive(), WAIT)
    while msg.type == aiohttp.WSMsgType.TEXT:
        msg = await asyncio.wait_for(ws.receive(), WAIT)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    # The server's close frame carries 1011. (aiohttp's server cuts the transport right after
    # its close frame when the connection's reader is waiting, so the client's own close reply
    # may fail and aiohttp's client then reports 1006 as ``close_code``: read the frame.)
    assert (msg.data if msg.type is aiohttp.WSMsgType.CLOSE else ws.close_code) == 1011
    await asyncio.wait_for(server.diverged.wait(), WAIT)
    div = [r for r in trace.records if r["kind"] == "meta" and r["type"] == "DIVERGENCE"]
    assert len(div) == 1
    data = div[0]["data"]
    assert data["expected"]["price"] == "1495500" and data["came"]["price"] == "1300000"
    assert data["on_divergence"] == "stop"
    # the REST side now refuses with the divergence named
    body = json.dumps({"pair": "BTCZAR", "side": "SELL", "price": "1", "quantity": "1"})
    async with session.post(server.rest_url + "/v1/orders/limit", data=body,
                            headers={**signed("POST", "/v1/orders/limit", body),
                                     "Content-Type": "application/json"}) as resp:
        assert resp.status == 500 and "divergence" in (await resp.json())["message"]


async def test_unrecorded_get_in_stop_mode_is_a_divergence(served):
    server, session, trace = served
    async with session.get(server.rest_url + "/v1/orders/open", headers=signed("GET", "/v1/orders/open")) as resp:
        assert resp.status == 500
    assert server.diverged.is_set()
    assert server.divergence.came["type"] == "GET /v1/orders/open"


@pytest.mark.parametrize("served", ["simulate"], indirect=True)
async def test_simulate_hands_over_with_the_replayed_orders_open(served):
    server, session, trace = served
    ws = await open_account(server, session)
    await ws.send_str(place("live-1", "LIVE-B1", "BUY", "1495500"))
    placed = await next_of(ws, "PLACE_LIMIT_WS_RESPONSE")
    replayed_id = placed["data"]["orderId"]
    await next_of(ws, "ORDER_STATUS_UPDATE")  # Placed: the replay has the bid open now
    await ws.send_str(place("live-2", "LIVE-X", "SELL", "1600000"))  # not the recorded ask
    reply = await next_of(ws, "PLACE_LIMIT_WS_RESPONSE")
    assert reply["clientMsgId"] == "live-2" and reply["data"]["customerOrderId"] == "LIVE-X"
    assert reply["data"]["orderId"] != replayed_id
    assert server.playback is None and server.divergence is not None
    status = await next_of(ws, "ORDER_STATUS_UPDATE")
    assert status["data"]["customerOrderId"] == "LIVE-X"
    async with session.get(server.rest_url + "/v1/orders/open", headers=signed("GET", "/v1/orders/open")) as resp:
        assert resp.status == 200
        open_ids = {o["orderId"]: o.get("customerOrderId") for o in await resp.json()}
    assert open_ids.get(replayed_id) == "LIVE-B1"  # the replayed order, handed over
    assert "LIVE-X" in open_ids.values()
    meta = [r["type"] for r in trace.records if r["kind"] == "meta"]
    assert meta[:2] == ["DIVERGENCE", "HANDOVER"]
    await ws.close()
