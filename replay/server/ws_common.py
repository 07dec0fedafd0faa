"""What both WebSocket endpoints share: upgrade authentication, the receive loop, frames.

An upgrade that carries API key headers must be correctly signed (over ts + "GET" + path
[+ sub-account id]); a failed check refuses the upgrade with the REST status and error body,
and the refusal is traced as a REST exchange. Each endpoint supplies its own text-frame
handler and what to do once a connection is authenticated.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable

from aiohttp import WSMsgType, web

from replay import codec
from replay.auth import API_KEY_HEADER

from .auth_check import MSG_BAD_SIGNATURE, AuthOk, AuthRefused, check_signature, scrub_headers
from .connection import FAKE, FakeServer, WsConn

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 2.0  # how long a close waits for the peer's close frame

TextHandler = Callable[[FakeServer, WsConn, str], None]
OnAuthenticated = Callable[[FakeServer, WsConn, AuthOk], object]


async def serve_socket(request: web.Request, kind: str, path: str, handle_text: TextHandler,
                       on_authenticated: OnAuthenticated) -> web.StreamResponse:
    """Authenticate the upgrade, register the connection and feed its frames to ``handle_text``."""
    fake = request.app[FAKE]

    auth: AuthOk | None = None
    if request.headers.get(API_KEY_HEADER) is not None:
        verdict = check_signature(request.headers, "GET", request.path_qs, b"",
                                  secrets_by_key=fake.secrets_by_key, now_ms=fake.now_ms(),
                                  window_ms=fake.timestamp_window_ms, subaccounts=fake.subaccounts)
        if isinstance(verdict, AuthOk) and verdict.query_unsigned:
            # signed without the query string: traced, or refused under server.strict_signatures
            strict = bool(getattr(fake, "strict_signatures", False))
            fake.record("run", "local", "meta", "LENIENT_SIGNATURE", {
                "conn": None, "method": "GET", "route": path, "path": request.path, "accepted": not strict})
            if strict:
                verdict = AuthRefused(401, -12, MSG_BAD_SIGNATURE)
        if not isinstance(verdict, AuthOk):
            conn_id = fake.next_conn_id("rest")
            fake.record(conn_id, "out", "rest", f"GET {request.path}", {
                "method": "GET", "path": request.path, "query": request.query_string,
                "headers": scrub_headers(request.headers), "body": None})
            fake.record(conn_id, "in", "rest", f"GET {request.path}",
                        {"status": verdict.status, "headers": {}, "body": verdict.body()})
            return web.Response(status=verdict.status, content_type="application/json",
                                text=json.dumps(codec.error_json(verdict.code, verdict.message)))
        auth = verdict
    ws = web.WebSocketResponse(autoping=True, max_msg_size=fake.max_frame_bytes, timeout=CLOSE_TIMEOUT_S)
    await ws.prepare(request)
    conn = WsConn(fake.next_conn_id(kind), kind, path, ws,
                  account=auth.account if auth else None, api_key=auth.api_key if auth else None)
    fake.register(conn)
    if auth is not None:
        on_authenticated(fake, conn, auth)
    try:
        while True:
            try:
                msg = await ws.receive(timeout=fake.idle_timeout_s)
            except asyncio.TimeoutError:
                # Optional idle timeout [LOG-ish FORK: VALR closes with 1000 after ~30 s idle].
                conn.server_close_code = 1000
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
            else:
                # CLOSE / CLOSING / CLOSED / ERROR. An oversized frame (> max_frame_bytes) arrives
                # as ERROR and aiohttp closes with 1009, as VALR would drop it: no attempt to keep it.
                break
    finally:
        if not ws.closed:
            await ws.close()
        fake.unregister(conn, ws.close_code)
    return ws


def mark_authenticated(fake: "FakeServer", conn: "WsConn", auth: AuthOk) -> float | None:
    """The connection is authenticated: remember whose it is and say so (``AUTHENTICATED``);
    returns when AUTHENTICATED is due (``FakeServer.send``).

    In playback the capture's own ``AUTHENTICATED`` is released instead.
    """
    conn.account = auth.account
    conn.api_key = auth.api_key
    if fake.playback is None:
        return fake.send(conn, codec.authenticated_message())
    return None


def parse_frame(fake: "FakeServer", conn: "WsConn", text: str) -> dict[str, Any] | None:
    """A text frame as a JSON object, traced; None (after an error reply) when it is not one."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        fake.record(conn.id, "out", "ws", "", {"raw": text[:2000]})
        fake.send(conn, codec.ws_error(codec.INVALID_JSON_MESSAGE))
        return None
    if not isinstance(message, dict):
        fake.record(conn.id, "out", "ws", "", {"raw": text[:2000]})
        fake.send(conn, codec.ws_error("A message must be a JSON object with a type"))
        return None
    fake.record(conn.id, "out", "ws", codec.message_type(message), message)
    return message


def reply(fake: "FakeServer", conn: "WsConn", message: dict[str, Any], client_msg_id: Any) -> None:
    """Send a reply carrying the request's ``clientMsgId``."""
    if client_msg_id is not None and "clientMsgId" not in message:
        message = {**message, "clientMsgId": client_msg_id}
    fake.send(conn, message)
