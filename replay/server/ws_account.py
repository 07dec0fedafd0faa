"""``/ws/account``: the account stream and WebSocket order commands.

Authentication is by headers on the upgrade (signature over ts + "GET" + "/ws/account" [+ sub-
account id]); a failed check refuses the upgrade with the REST status (401/403). An upgrade with
no API key header at all is accepted and must authenticate in-band with
``{"type":"AUTHENTICATE","payload":{apiKey,signature,timestamp}}`` [C-doc3] before commands.
Every reply goes through the delivery schedule and carries the request's ``clientMsgId``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from replay import codec
from replay.auth import API_KEY_HEADER
from replay.exchange.model import ExchangeError

from .app import FAKE
from .auth_check import AuthOk, check_payload_auth, check_signature, scrub_headers

if TYPE_CHECKING:
    from .app import FakeValr, WsConn

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 2.0  # how long a close waits for the peer's close frame

PATH = "/ws/account"

# message type -> (command, codec parser, invalid-request type, reply builder)
COMMANDS = {
    "PLACE_LIMIT_ORDER": ("PLACE_LIMIT", "parse_limit", "INVALID_PLACE_LIMIT_REQUEST"),
    "PLACE_MARKET_ORDER": ("PLACE_MARKET", "parse_market", "INVALID_PLACE_MARKET_REQUEST"),
    "CANCEL_LIMIT_ORDER": ("CANCEL_ORDER", "parse_cancel", "INVALID_CANCEL_ORDER_REQUEST"),
}


async def refuse(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


async def handle(request: web.Request) -> web.StreamResponse:
    fake: FakeValr = request.app[FAKE]
    from .app import WsConn

    auth: AuthOk | None = None
    if request.headers.get(API_KEY_HEADER) is not None:
        verdict = check_signature(request.headers, "GET", request.path_qs, b"",
                                  secrets_by_key=fake.secrets_by_key, now_ms=fake.now_ms(),
                                  window_ms=fake.timestamp_window_ms, subaccounts=fake.subaccounts)
        if not isinstance(verdict, AuthOk):
            conn_id = fake.next_conn_id("rest")
            fake.record(conn_id, "out", "rest", f"GET {request.path}", {
                "method": "GET", "path": request.path, "query": request.query_string,
                "headers": scrub_headers(request.headers), "body": None})
            fake.record(conn_id, "in", "rest", f"GET {request.path}",
                        {"status": verdict.status, "headers": {}, "body": verdict.body()})
            return await refuse(verdict.status, codec.error_json(verdict.code, verdict.message))
        auth = verdict
    ws = web.WebSocketResponse(autoping=True, max_msg_size=fake.max_frame_bytes, timeout=CLOSE_TIMEOUT_S)
    await ws.prepare(request)
    conn = WsConn(fake.next_conn_id("account"), "account", PATH, ws,
                  account=auth.account if auth else None, api_key=auth.api_key if auth else None)
    fake.register(conn)
    if auth is not None:
        _authenticated(fake, conn, auth)
    close_code: int | None = None
    try:
        while True:
            try:
                msg = await ws.receive(timeout=fake.idle_timeout_s)
            except asyncio.TimeoutError:
                # Optional idle timeout [LOG-ish FORK: VALR closes with 1000 after ~30 s idle].
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
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                # An oversized frame (> max_frame_bytes) arrives as ERROR and aiohttp closes the
                # connection with 1009, as VALR would drop it: we do not try to keep it up.
                break
    finally:
        close_code = ws.close_code
        if not ws.closed:
            await ws.close()
            close_code = ws.close_code
        fake.unregister(conn, close_code)
    return ws


def _authenticated(fake: "FakeValr", conn: "WsConn", auth: AuthOk) -> None:
    conn.account = auth.account
    conn.api_key = auth.api_key
    if fake.playback is None:  # in playback the capture's own AUTHENTICATED is released
        fake.send(conn, codec.authenticated_message())


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
    if not isinstance(type_, str):
        _reply(fake, conn, codec.ws_error("type: a string is required"), client_msg_id)
        return
    if fake.playback is not None and _played(fake, conn, message):
        return
    if type_ == "PING":
        _reply(fake, conn, codec.pong_message(), client_msg_id)
        return
    if type_ == "AUTHENTICATE":
        verdict = check_payload_auth(message.get("payload"), PATH, secrets_by_key=fake.secrets_by_key,
                                     now_ms=fake.now_ms(), window_ms=fake.timestamp_window_ms,
                                     subaccounts=fake.subaccounts)
        if isinstance(verdict, AuthOk):
            _authenticated(fake, conn, verdict)
        else:
            _reply(fake, conn, codec.ws_error(verdict.message), client_msg_id)
        return
    if conn.account is None:
        _reply(fake, conn, codec.ws_error("Unauthorized: authenticate first"), client_msg_id)
        return
    if type_ == "SUBSCRIBE":
        # The account stream pushes every event type anyway [INF]; SUBSCRIBE is acknowledged only.
        subs = message.get("subscriptions")
        if subs is not None and not isinstance(subs, list):
            _reply(fake, conn, codec.ws_error("subscriptions: a list is required"), client_msg_id)
            return
        _reply(fake, conn, codec.subscribed_message(subs or []), client_msg_id)
        return
    if type_ == "CANCEL_ON_DISCONNECT":
        payload = message.get("payload")
        enabled = payload.get("cancelOnDisconnect") if isinstance(payload, dict) else None
        if not isinstance(enabled, bool):
            _reply(fake, conn, codec.ws_error("payload.cancelOnDisconnect: a boolean is required"), client_msg_id)
            return
        conn.cancel_on_disconnect = enabled
        fake.send(conn, codec.cancel_on_disconnect_update(client_msg_id, enabled))
        return
    if type_ in COMMANDS:
        _command(fake, conn, type_, message, client_msg_id)
        return
    _reply(fake, conn, codec.ws_error(f"Unknown message type: {type_}"), client_msg_id)


def _played(fake: "FakeValr", conn: "WsConn", message: dict[str, Any]) -> bool:
    """Playback mode: the capture answers. False when a divergence handed over to the simulated
    exchange (the caller then handles the frame as ``serve`` would)."""
    from replay.playback import Diverged

    if message.get("type") == "AUTHENTICATE":
        # Verify as VALR would (the account must be known after a handover); the reply is the
        # capture's.
        verdict = check_payload_auth(message.get("payload"), PATH, secrets_by_key=fake.secrets_by_key,
                                     now_ms=fake.now_ms(), window_ms=fake.timestamp_window_ms,
                                     subaccounts=fake.subaccounts)
        if isinstance(verdict, AuthOk):
            conn.account, conn.api_key = verdict.account, verdict.api_key
    try:
        fake.release(fake.playback.on_request(fake.now(), "account", message))  # type: ignore[union-attr]
    except Diverged as exc:
        return not fake.diverge(exc.divergence)
    return True


def _command(fake: "FakeValr", conn: "WsConn", type_: str, message: dict[str, Any], client_msg_id: Any) -> None:
    command, parser, invalid_type = COMMANDS[type_]
    payload = message.get("payload")
    if not isinstance(payload, dict):
        fake.send(conn, codec.invalid_request(invalid_type, client_msg_id, "payload: a JSON object is required",
                                              {"payload": "a JSON object is required"}))
        return
    try:
        request = getattr(codec, parser)(payload)
    except codec.CodecError as exc:
        fake.send(conn, codec.invalid_request(invalid_type, client_msg_id, exc.message, exc.validation_errors))
        return
    try:
        sub = fake.submit(command, conn.account or "", request, conn.id)
    except ExchangeError as exc:
        # A synchronous refusal (unknown pair, bad id format...): the malformed-request reply,
        # naming the field [C-doc3 INVALID_*_REQUEST].
        errors = {exc.field: exc.message} if exc.field else None
        fake.send(conn, codec.invalid_request(invalid_type, client_msg_id, exc.message, errors))
        return
    if command == "PLACE_LIMIT":
        reply = codec.place_limit_response(client_msg_id, sub.order_id, sub.customer_order_id)
    elif command == "PLACE_MARKET":
        reply = codec.place_market_response(client_msg_id, sub.order_id, sub.customer_order_id)
    else:
        reply = codec.cancel_response(client_msg_id, sub.order_id, sub.customer_order_id)
    fake.send(conn, reply)
