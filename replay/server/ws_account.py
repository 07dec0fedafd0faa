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
from .connection import UNSUBSCRIBABLE
from .ws_common import mark_authenticated, parse_frame, reply, serve_socket

if TYPE_CHECKING:
    from .connection import FakeServer, WsConn

log = logging.getLogger(__name__)

PATH = "/ws/account"

# message type -> (exchange command, codec parser, invalid-request reply type)
COMMANDS = {
    "PLACE_LIMIT_ORDER": ("PLACE_LIMIT", "parse_limit", "INVALID_PLACE_LIMIT_REQUEST"),
    "PLACE_MARKET_ORDER": ("PLACE_MARKET", "parse_market", "INVALID_PLACE_MARKET_REQUEST"),
    "CANCEL_LIMIT_ORDER": ("CANCEL_ORDER", "parse_cancel", "INVALID_CANCEL_ORDER_REQUEST"),
    "MODIFY_ORDER": ("MODIFY_ORDER", "parse_modify", "INVALID_MODIFY_WS_REQUEST"),
}
# a batch request type -> (exchange command, codec parser) [C-off Postman WebSocket "BATCH_ORDERS",
# REST "Batch Orders": PLACE_LIMIT, PLACE_MARKET, PLACE_STOP_LIMIT, MODIFY_ORDER, CANCEL_ORDER]
BATCH_TYPES = {
    "PLACE_LIMIT": ("PLACE_LIMIT", "parse_limit"),
    "PLACE_MARKET": ("PLACE_MARKET", "parse_market"),
    "PLACE_STOP_LIMIT": ("PLACE_STOP_LIMIT", "parse_stop_limit"),
    "MODIFY_ORDER": ("MODIFY_ORDER", "parse_modify"),
    "CANCEL_ORDER": ("CANCEL_ORDER", "parse_cancel"),
}
MAX_BATCH = 20  # [C-off] "A maximum of 20 orders may be submitted in a single Batch Orders request"


async def handle(request: web.Request) -> web.StreamResponse:
    return await serve_socket(request, "account", PATH, handle_text, authenticated)


def authenticated(fake: "FakeServer", conn: "WsConn", auth: AuthOk) -> None:
    """AUTHENTICATED, then the account's balances and open orders (``send_connect_snapshot``).
    In playback the capture's own messages are released instead."""
    at = mark_authenticated(fake, conn, auth)
    if fake.playback is None:
        fake.send_connect_snapshot(conn, after=at)


def run_batch(fake: "FakeServer", account: str, requests: Any, conn_id: str) -> list[dict]:
    """Submit a batch's requests in order; their outcomes in VALR's shape (``codec.batch_outcome``).
    Raises CodecError for a batch that is not a list of 1 to 20 requests."""
    if not isinstance(requests, list) or not requests:
        raise codec.CodecError(codec.INVALID_REQUEST, "requests: a non-empty list is required", "requests")
    if len(requests) > MAX_BATCH:
        raise codec.CodecError(codec.INVALID_REQUEST, f"requests: at most {MAX_BATCH} per batch", "requests")
    outcomes: list[dict] = []
    for i, item in enumerate(requests):
        kind = item.get("type") if isinstance(item, dict) else None
        try:
            if not isinstance(item, dict) or kind not in BATCH_TYPES:
                raise codec.CodecError(-1, f"requests[{i}].type: unsupported batch type {kind!r}", "type")
            command, parser = BATCH_TYPES[str(kind)]
            data = item.get("data")
            if not isinstance(data, dict):
                raise codec.CodecError(-1, f"requests[{i}].data: a JSON object is required", "data")
            sub = fake.submit(command, account, getattr(codec, parser)(data), conn_id)
            cid = sub.customer_order_id if command != "MODIFY_ORDER" else None
            outcomes.append(codec.batch_outcome(str(kind), sub.order_id, cid))
        except (codec.CodecError, ExchangeError) as exc:
            outcomes.append(codec.batch_outcome(str(kind), error=(exc.code, exc.message)))
    return outcomes


def handle_text(fake: "FakeServer", conn: "WsConn", text: str) -> None:
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
            authenticated(fake, conn, verdict)
        else:
            reply(fake, conn, codec.ws_error(verdict.message), client_msg_id)
        return
    if conn.account is None:
        reply(fake, conn, codec.ws_error("Unauthorized: authenticate first"), client_msg_id)
        return
    if type_ in ("SUBSCRIBE", "UNSUBSCRIBE"):
        _subscription(fake, conn, type_, message, client_msg_id)
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
    if type_ in COMMANDS or type_ == "BATCH_ORDERS":
        fault = fake.schedule.ws_command_fault(fake.now(), conn.id, type_)
        if fault is not None:
            # An injected fault (the ``ws_error`` perturbation, recorded by the schedule): the
            # command is not executed, and is answered as the write limit below answers it, or
            # (status 0) not at all. It does not count against the connection's write limit.
            if fault.status != 0:
                fake.send(conn, codec.rate_limit_exceeded(type_, client_msg_id))
            return
        if not fake.ws_rate_ok(conn, type_):
            fake.send(conn, codec.rate_limit_exceeded(type_, client_msg_id))
            return
        if type_ == "BATCH_ORDERS":
            _batch(fake, conn, message, client_msg_id)
        else:
            _command(fake, conn, type_, message, client_msg_id)
        return
    reply(fake, conn, codec.ws_error(f"Unknown message type: {type_}"), client_msg_id)


def _subscription(fake: "FakeServer", conn: "WsConn", type_: str, message: dict[str, Any], client_msg_id: Any) -> None:
    """SUBSCRIBE ``{"subscriptions": [{"event"}]}`` and UNSUBSCRIBE ``{"requests": [{"event"}]}``
    [C-off Postman WebSocket "Account / Read"]. Every account event is pushed without asking; an
    UNSUBSCRIBE stops BALANCE_UPDATE, OPEN_ORDERS_UPDATE (and MARGIN_INFO, not modelled) on this
    connection, a SUBSCRIBE starts them again. Each event is acknowledged with SUBSCRIBED /
    UNSUBSCRIBED ``{"message": EVENT}`` [INF: the trade stream's acknowledgement shape]."""
    key = "subscriptions" if type_ == "SUBSCRIBE" else "requests"
    items = message.get(key)
    if items is None:
        items = []
    if not isinstance(items, list):
        reply(fake, conn, codec.ws_error(f"{key}: a list is required"), client_msg_id)
        return
    events = []
    for i, item in enumerate(items):
        event = item.get("event") if isinstance(item, dict) else None
        if not isinstance(event, str):
            reply(fake, conn, codec.ws_error(f"{key}[{i}].event: a string is required"), client_msg_id)
            return
        if type_ == "UNSUBSCRIBE" and event not in UNSUBSCRIBABLE:
            reply(fake, conn, codec.ws_error(f"{key}[{i}].event: cannot unsubscribe from {event}"), client_msg_id)
            return
        events.append(event)
    for event in events:
        if type_ == "UNSUBSCRIBE":
            conn.unsubscribed.add(event)
            reply(fake, conn, codec.unsubscribed_message(event), client_msg_id)
        else:
            conn.unsubscribed.discard(event)
            reply(fake, conn, codec.subscribed_message(event), client_msg_id)


def _batch(fake: "FakeServer", conn: "WsConn", message: dict[str, Any], client_msg_id: Any) -> None:
    """BATCH_ORDERS ``{"payload": {"requests": [...]}}`` [C-off Postman WebSocket]: the requests
    are submitted in order; the reply carries their outcomes in the REST batch's shape [INF:
    VALR documents no success reply]."""
    payload = message.get("payload")
    try:
        if not isinstance(payload, dict):
            raise codec.CodecError(codec.INVALID_REQUEST, "payload: a JSON object is required", "payload")
        outcomes = run_batch(fake, conn.account or "", payload.get("requests"), conn.id)
    except codec.CodecError as exc:
        fake.send(conn, codec.invalid_request("BATCH_ORDERS", client_msg_id, exc.message, exc.validation_errors))
        return
    fake.send(conn, codec.batch_ws_response(client_msg_id, outcomes, fake.next_batch_id()))


def _played(fake: "FakeServer", conn: "WsConn", message: dict[str, Any]) -> bool:
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


def _command(fake: "FakeServer", conn: "WsConn", type_: str, message: dict[str, Any], client_msg_id: Any) -> None:
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
    elif command == "MODIFY_ORDER":
        reply = codec.modify_response(client_msg_id, sub.request_id or "", sub.order_id, sub.customer_order_id)
    else:
        reply = codec.cancel_response(client_msg_id, sub.order_id, sub.customer_order_id)
    fake.send(conn, reply)
