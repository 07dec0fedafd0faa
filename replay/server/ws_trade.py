"""``/ws/trade``: public market data (books, summaries, trades, trade buckets).

Authentication is optional [C-doc3: unauthenticated connections are allowed]; headers, if
sent, must be valid (else the upgrade is refused like a REST call), and then the stream starts
with ``AUTHENTICATED`` [INF, as valr-api-node waits for it].
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from replay import codec
from replay.auth import API_KEY_HEADER

from .app import TRADE_EVENTS
from .app import FAKE
from .auth_check import AuthOk, check_signature

if TYPE_CHECKING:
    from .app import FakeValr, WsConn

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 2.0  # how long a close waits for the peer's close frame

PATH = "/ws/trade"


async def handle(request: web.Request) -> web.StreamResponse:
    fake: FakeValr = request.app[FAKE]
    from .app import WsConn

    auth: AuthOk | None = None
    if request.headers.get(API_KEY_HEADER) is not None:
        verdict = check_signature(request.headers, "GET", request.path_qs, b"",
                                  secrets_by_key=fake.secrets_by_key, now_ms=fake.now_ms(),
                                  window_ms=fake.timestamp_window_ms, subaccounts=fake.subaccounts)
        if not isinstance(verdict, AuthOk):
            return web.Response(status=verdict.status, content_type="application/json",
                                text=json.dumps(codec.error_json(verdict.code, verdict.message)))
        auth = verdict
    ws = web.WebSocketResponse(autoping=True, max_msg_size=fake.max_frame_bytes, timeout=CLOSE_TIMEOUT_S)
    await ws.prepare(request)
    conn = WsConn(fake.next_conn_id("trade"), "trade", PATH, ws,
                  account=auth.account if auth else None, api_key=auth.api_key if auth else None)
    fake.register(conn)
    if auth is not None:
        conn.account = auth.account
        conn.api_key = auth.api_key
        if fake.playback is None:  # in playback the capture's market feed carries it
            fake.send(conn, codec.authenticated_message())
    try:
        while True:
            try:
                msg = await ws.receive(timeout=fake.idle_timeout_s)
            except asyncio.TimeoutError:
                await ws.close(code=1000, message=b"idle timeout")
                break
            if msg.type == WSMsgType.TEXT:
                try:
                    handle_text(fake, conn, msg.data)
                except Exception:  # a bug in the fake: report it, keep the connection
                    log.exception("%s: handling a frame failed", conn.id)
                    fake.send(conn, codec.ws_error("Internal server error"))
            elif msg.type == WSMsgType.BINARY:
                fake.record(conn.id, "out", "ws", "", {"raw": f"<binary frame, {len(msg.data)} bytes>"})
                fake.send(conn, codec.ws_error("Binary frames are not supported; send JSON text"))
            else:  # CLOSE / CLOSING / CLOSED / ERROR (an oversized frame closes with 1009)
                break
    finally:
        if not ws.closed:
            await ws.close()
        fake.unregister(conn, ws.close_code)
    return ws


def _reply(fake: "FakeValr", conn: "WsConn", message: dict[str, Any], client_msg_id: Any) -> None:
    if client_msg_id is not None and "clientMsgId" not in message:
        message = {**message, "clientMsgId": client_msg_id}
    fake.send(conn, message)


def handle_text(fake: "FakeValr", conn: "WsConn", text: str) -> None:
    try:
        message = json.loads(text)
    except ValueError:
        fake.record(conn.id, "out", "ws", "", {"raw": text[:2000]})
        fake.send(conn, codec.ws_error("Invalid JSON payload", codec.INVALID_JSON))
        return
    if not isinstance(message, dict):
        fake.record(conn.id, "out", "ws", "", {"raw": text[:2000]})
        fake.send(conn, codec.ws_error("A message must be a JSON object with a type"))
        return
    type_ = message.get("type")
    fake.record(conn.id, "out", "ws", codec.message_type(message), message)
    client_msg_id = message.get("clientMsgId")
    if type_ == "PING":
        _reply(fake, conn, codec.pong_message(), client_msg_id)
    elif type_ == "SUBSCRIBE":
        _subscribe(fake, conn, message, client_msg_id)
    else:
        _reply(fake, conn, codec.ws_error(f"Unknown message type: {type_}"), client_msg_id)


def _subscribe(fake: "FakeValr", conn: "WsConn", message: dict[str, Any], client_msg_id: Any) -> None:
    subs = message.get("subscriptions")
    if not isinstance(subs, list) or not subs:
        _reply(fake, conn, codec.ws_error("subscriptions: a non-empty list is required"), client_msg_id)
        return
    known = set(fake.exchange.pairs)
    changes: list[tuple[str, set[str] | None]] = []
    for i, sub in enumerate(subs):
        if not isinstance(sub, dict) or not isinstance(sub.get("event"), str):
            _reply(fake, conn, codec.ws_error(f"subscriptions[{i}].event: a string is required"), client_msg_id)
            return
        event = sub["event"]
        if event not in TRADE_EVENTS:
            _reply(fake, conn, codec.ws_error(f"subscriptions[{i}].event: unknown event {event}"), client_msg_id)
            return
        pairs = sub.get("pairs")
        if pairs is None:
            changes.append((event, None))  # omitted pairs = every pair [C-doc3]
            continue
        if not isinstance(pairs, list) or not all(isinstance(p, str) for p in pairs):
            _reply(fake, conn, codec.ws_error(f"subscriptions[{i}].pairs: a list of strings is required"),
                   client_msg_id)
            return
        wanted = {p.upper() for p in pairs}
        unknown = sorted(wanted - known)
        if unknown:
            _reply(fake, conn, codec.ws_error(f"subscriptions[{i}].pairs: unknown pair {unknown[0]}"),
                   client_msg_id)
            return
        changes.append((event, wanted))
    # [INF] a SUBSCRIBE replaces the pair set of each event it names (VALR documents only that
    # "pairs": [] unsubscribes); events it does not name are left as they were.
    for event, pairs in changes:
        if pairs is not None and not pairs:
            conn.subscriptions.pop(event, None)  # "pairs": [] unsubscribes [C-off]
        else:
            conn.subscriptions[event] = pairs
    if fake.playback is not None:
        return  # playback: the recorded feed carries SUBSCRIBED and the market data
    _reply(fake, conn, codec.subscribed_message(subs), client_msg_id)
    # Then the current state at once, so a new subscriber need not wait for a change.
    for event, pairs in changes:
        if event not in ("AGGREGATED_ORDERBOOK_UPDATE", "MARKET_SUMMARY_UPDATE") or pairs == set():
            continue
        for pair in sorted(pairs) if pairs is not None else list(fake.exchange.pairs):
            if event == "AGGREGATED_ORDERBOOK_UPDATE":
                depth = fake.ws_book_depth
                fake.send(conn, codec.book_update_message(fake.exchange.book(pair, depth), depth))
            else:
                fake.send(conn, codec.market_summary_message(fake.exchange.market_summary(pair)))
