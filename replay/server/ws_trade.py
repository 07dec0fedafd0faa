"""``/ws/trade``: public market data (books, summaries, trades, trade buckets).

Authentication is optional [C-doc3: unauthenticated connections are allowed]; headers, if
sent, must be valid (else the upgrade is refused like a REST call), and then the stream starts
with ``AUTHENTICATED`` [INF, as valr-api-node waits for it].
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from replay import codec

from .app import TRADE_EVENTS
from .ws_common import mark_authenticated, parse_frame, reply, serve_socket

if TYPE_CHECKING:
    from .app import FakeValr, WsConn

log = logging.getLogger(__name__)

PATH = "/ws/trade"


async def handle(request: web.Request) -> web.StreamResponse:
    return await serve_socket(request, "trade", PATH, handle_text, mark_authenticated)


def handle_text(fake: "FakeValr", conn: "WsConn", text: str) -> None:
    message = parse_frame(fake, conn, text)
    if message is None:
        return
    type_ = message.get("type")
    client_msg_id = message.get("clientMsgId")
    if type_ == "PING":
        reply(fake, conn, codec.pong_message(), client_msg_id)
    elif type_ == "SUBSCRIBE":
        _subscribe(fake, conn, message, client_msg_id)
    else:
        reply(fake, conn, codec.ws_error(f"Unknown message type: {type_}"), client_msg_id)


def _subscribe(fake: "FakeValr", conn: "WsConn", message: dict[str, Any], client_msg_id: Any) -> None:
    subs = message.get("subscriptions")
    if not isinstance(subs, list) or not subs:
        reply(fake, conn, codec.ws_error("subscriptions: a non-empty list is required"), client_msg_id)
        return
    known = set(fake.exchange.pairs)
    changes: list[tuple[str, set[str] | None]] = []
    for i, sub in enumerate(subs):
        if not isinstance(sub, dict) or not isinstance(sub.get("event"), str):
            reply(fake, conn, codec.ws_error(f"subscriptions[{i}].event: a string is required"), client_msg_id)
            return
        event = sub["event"]
        if event not in TRADE_EVENTS:
            reply(fake, conn, codec.ws_error(f"subscriptions[{i}].event: unknown event {event}"), client_msg_id)
            return
        pairs = sub.get("pairs")
        if pairs is None:
            changes.append((event, None))  # omitted pairs = every pair [C-doc3]
            continue
        if not isinstance(pairs, list) or not all(isinstance(p, str) for p in pairs):
            reply(fake, conn, codec.ws_error(f"subscriptions[{i}].pairs: a list of strings is required"),
                   client_msg_id)
            return
        wanted = {p.upper() for p in pairs}
        unknown = sorted(wanted - known)
        if unknown:
            reply(fake, conn, codec.ws_error(f"subscriptions[{i}].pairs: unknown pair {unknown[0]}"),
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
    reply(fake, conn, codec.subscribed_message(subs), client_msg_id)
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
