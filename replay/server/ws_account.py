"""``/ws/account``: the account stream and WebSocket order commands.

Authentication is by headers on the upgrade (signature over ts + "GET" + "/ws/account" [+ sub-
account id]); a failed check refuses the upgrade with the REST status (401/403). An upgrade with
no API key header at all is accepted and must authenticate in-band with
``{"type":"AUTHENTICATE","payload":{apiKey,signature,timestamp}}`` [C-doc3] before commands.
Every reply goes through the delivery schedule and carries the request's ``clientMsgId``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from replay import codec
from replay.exchange.model import ExchangeError

from .auth_check import AuthOk, check_payload_auth
from .ws_common import mark_authenticated, parse_frame, reply, serve_socket

if TYPE_CHECKING:
    from .app import FakeValr, WsConn

log = logging.getLogger(__name__)

PATH = "/ws/account"

# message type -> (exchange command, codec parser, invalid-request reply type)
COMMANDS = {
    "PLACE_LIMIT_ORDER": ("PLACE_LIMIT", "parse_limit", "INVALID_PLACE_LIMIT_REQUEST"),
    "PLACE_MARKET_ORDER": ("PLACE_MARKET", "parse_market", "INVALID_PLACE_MARKET_REQUEST"),
    "CANCEL_LIMIT_ORDER": ("CANCEL_ORDER", "parse_cancel", "INVALID_CANCEL_ORDER_REQUEST"),
}


async def handle(request: web.Request) -> web.StreamResponse:
    return await serve_socket(request, "account", PATH, handle_text, mark_authenticated)


def handle_text(fake: "FakeValr", conn: "WsConn", text: str) -> None:
    message = parse_frame(fake, conn, text)
    if message is None:
        return
    type_ = message.get("type")
    client_msg_id = message.get("clientMsgId")
    if not isinstance(type_, str):
        reply(fake, conn, codec.ws_error("type: a string is required"), client_msg_id)
        return
    if fake.playback is not None and _played(fake, conn, message):
        return
    if type_ == "PING":
        reply(fake, conn, codec.pong_message(), client_msg_id)
        return
    if type_ == "AUTHENTICATE":
        verdict = check_payload_auth(message.get("payload"), PATH, secrets_by_key=fake.secrets_by_key,
                                     now_ms=fake.now_ms(), window_ms=fake.timestamp_window_ms,
                                     subaccounts=fake.subaccounts)
        if isinstance(verdict, AuthOk):
            mark_authenticated(fake, conn, verdict)
        else:
            reply(fake, conn, codec.ws_error(verdict.message), client_msg_id)
        return
    if conn.account is None:
        reply(fake, conn, codec.ws_error("Unauthorized: authenticate first"), client_msg_id)
        return
    if type_ == "SUBSCRIBE":
        # The account stream pushes every event type anyway [INF]; SUBSCRIBE is acknowledged only.
        subs = message.get("subscriptions")
        if subs is not None and not isinstance(subs, list):
            reply(fake, conn, codec.ws_error("subscriptions: a list is required"), client_msg_id)
            return
        reply(fake, conn, codec.subscribed_message(subs or []), client_msg_id)
        return
    if type_ == "CANCEL_ON_DISCONNECT":
        payload = message.get("payload")
        enabled = payload.get("cancelOnDisconnect") if isinstance(payload, dict) else None
        if not isinstance(enabled, bool):
            reply(fake, conn, codec.ws_error("payload.cancelOnDisconnect: a boolean is required"), client_msg_id)
            return
        conn.cancel_on_disconnect = enabled
        fake.send(conn, codec.cancel_on_disconnect_update(client_msg_id, enabled))
        return
    if type_ in COMMANDS:
        _command(fake, conn, type_, message, client_msg_id)
        return
    reply(fake, conn, codec.ws_error(f"Unknown message type: {type_}"), client_msg_id)


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
        reply = codec.place_limit_response(client_msg_id, sub.placed_order_id, sub.customer_order_id)
    elif command == "PLACE_MARKET":
        reply = codec.place_market_response(client_msg_id, sub.placed_order_id, sub.customer_order_id)
    else:
        reply = codec.cancel_response(client_msg_id, sub.order_id, sub.customer_order_id)
    fake.send(conn, reply)
