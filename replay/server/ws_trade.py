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

from .connection import TRADE_EVENTS
from .ws_common import mark_authenticated, parse_frame, reply, serve_socket

if TYPE_CHECKING:
    from .connection import FakeServer, WsConn

log = logging.getLogger(__name__)

PATH = "/ws/trade"
# feeds whose first message is a snapshot and whose later messages are diffs with sequence numbers:
# a re-subscription that keeps a pair does not restart it [INF]
_SEQUENCED = ("FULL_ORDERBOOK_UPDATE", "OB_L1_DIFF")


async def handle(request: web.Request) -> web.StreamResponse:
    return await serve_socket(request, "trade", PATH, handle_text, mark_authenticated)


def handle_text(fake: "FakeServer", conn: "WsConn", text: str) -> None:
    message = parse_frame(fake, conn, text)
    if message is None:
        return
    type_ = message.get("type")
    client_msg_id = message.get("clientMsgId")
    if type_ == "PING":
        # "NO_SUBSCRIPTIONS" in the PONG while nothing is subscribed [C-off, and a capture]
        reply(fake, conn, codec.pong_message(no_subscriptions=not conn.subscriptions), client_msg_id)
    elif type_ == "SUBSCRIBE":
        _subscribe(fake, conn, message, client_msg_id)
    else:
        reply(fake, conn, codec.ws_error(f"Unknown message type: {type_}"), client_msg_id)


def _subscribe(fake: "FakeServer", conn: "WsConn", message: dict[str, Any], client_msg_id: Any) -> None:
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
    # A SUBSCRIBE replaces the pair set of each event it names, and "pairs": [] unsubscribes
    # [C-off]; events it does not name are left as they were. The live stream acknowledges each
    # event and pair with SUBSCRIBED {"message": "EVENT:PAIR"} and each pair a replacement drops
    # with UNSUBSCRIBED in the same shape [C-capture].
    acks: list[dict] = []
    started: list[tuple[str, list[str]]] = []
    for event, pairs in changes:
        before = conn.subscriptions.get(event, set())
        before_pairs = set(fake.exchange.pairs) if before is None else set(before)
        after_pairs = set(fake.exchange.pairs) if pairs is None else set(pairs)
        if pairs is not None and not pairs:
            conn.subscriptions.pop(event, None)
        else:
            conn.subscriptions[event] = pairs
        acks += [codec.unsubscribed_message(event, p) for p in sorted(before_pairs - after_pairs)]
        acks += [codec.subscribed_message(event, p) for p in sorted(after_pairs)]
        started.append((event, sorted(after_pairs - before_pairs) if event in _SEQUENCED else sorted(after_pairs)))
    if fake.playback is not None:
        return  # playback: the recorded feed carries SUBSCRIBED and the market data
    for ack in acks:
        reply(fake, conn, ack, client_msg_id)
    # Then the current state at once, so a new subscriber need not wait for a change ("On
    # subscription the latest update is sent immediately"; the sequenced feeds begin with a
    # snapshot [C-off]).
    for event, pairs_now in started:
        for pair in pairs_now:
            if event == "AGGREGATED_ORDERBOOK_UPDATE":
                depth = fake.ws_book_depth
                fake.send(conn, codec.book_update_message(fake.exchange.book(pair, depth), depth))
            elif event == "MARKET_SUMMARY_UPDATE":
                fake.send(conn, codec.market_summary_message(fake.exchange.market_summary(pair)))
            elif event == "FULL_ORDERBOOK_UPDATE":
                fake.send_full_snapshot(conn, pair)
            elif event == "OB_L1_DIFF":
                fake.send_l1_snapshot(conn, pair)
            elif event == "MARK_PRICE_UPDATE":
                fake.send_mark_price(pair, conn)
        if event == "MARK_PRICE_UPDATE" and pairs_now:
            fake.mark_price_subscribed()
