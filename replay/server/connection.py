"""What the server's parts share: one WebSocket connection, the stream vocabulary, and the face the
fake exchange shows its endpoints.

The server reads top-down: ``app`` (``FakeValr``: the exchange, the schedule, the dispatcher) imports
the endpoint modules (``rest``, ``ws_account``, ``ws_trade``, ``ws_common``), and they import only
this module, never ``app``. An endpoint reaches the running server as ``request.app[FAKE]``, typed by
:class:`FakeServer`: the members an endpoint may use. ``FakeValr`` satisfies it (mypy checks that
where ``app`` stores itself under ``FAKE``).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Iterable, Protocol

from aiohttp import web

if TYPE_CHECKING:
    from replay.config import ExchangeConfig
    from replay.exchange import Exchange
    from replay.exchange.events import AccountTrade
    from replay.exchange.model import Submitted
    from replay.playback import Playback
    from replay.schedule import DeliverySchedule

    from .ratelimit import RateLimiter

#: trade-stream events a client can subscribe to
TRADE_EVENTS = ("AGGREGATED_ORDERBOOK_UPDATE", "MARKET_SUMMARY_UPDATE", "NEW_TRADE", "NEW_TRADE_BUCKET",
                "FULL_ORDERBOOK_UPDATE", "OB_L1_DIFF", "MARK_PRICE_UPDATE")
#: account events a connection may unsubscribe from [C-off Postman WebSocket "Account / Read", and
#: the changelog of 30 October 2025]; MARGIN_INFO is not modelled (spot only)
UNSUBSCRIBABLE = ("BALANCE_UPDATE", "OPEN_ORDERS_UPDATE", "MARGIN_INFO")
#: account WebSocket command -> its kind of write limit (ServerParams.ws_rate_limits_per_second)
WS_RATE_KINDS = {"PLACE_LIMIT_ORDER": "place", "PLACE_MARKET_ORDER": "place", "CANCEL_LIMIT_ORDER": "cancel",
                 "BATCH_ORDERS": "batch", "MODIFY_ORDER": "modify"}


@dataclasses.dataclass(eq=False)
class WsConn:
    """One open WebSocket connection."""

    id: str  # "account-N" / "trade-N"
    kind: str  # "account" or "trade"
    path: str
    ws: web.WebSocketResponse
    account: str | None = None
    api_key: str | None = None
    # trade stream: event -> subscribed pairs (None = every pair)
    subscriptions: dict[str, set[str] | None] = dataclasses.field(default_factory=dict)
    cancel_on_disconnect: bool = False
    # account stream: events this connection unsubscribed from (UNSUBSCRIBE)
    unsubscribed: set[str] = dataclasses.field(default_factory=set)
    # account stream: write-limit kind -> (second, commands counted in it)
    rate_counts: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    closed: bool = False
    # the close code the server sent, when the server closed the connection
    server_close_code: int | None = None


class FakeServer(Protocol):
    """The running fake exchange as its endpoints see it (``request.app[FAKE]``)."""

    config: ExchangeConfig
    exchange: Exchange
    schedule: DeliverySchedule
    playback: Playback | None
    ratelimiter: RateLimiter
    secrets_by_key: dict[str, tuple[str, str]]
    subaccounts: dict[str, set[str]]
    account_trades: dict[str, collections.deque[AccountTrade]]
    timestamp_window_ms: int
    max_frame_bytes: int
    idle_timeout_s: float | None
    book_depth: int
    ws_book_depth: int

    @property
    def stopping(self) -> asyncio.Event: ...

    def now(self) -> float: ...

    def now_ms(self) -> int: ...

    def record(self, conn: str, dir: str, kind: str, type: str, data: Any) -> None: ...

    def next_conn_id(self, kind: str) -> str: ...

    def next_batch_id(self) -> int: ...

    def register(self, conn: WsConn) -> None: ...

    def unregister(self, conn: WsConn, code: int | None) -> None: ...

    def send(self, conn: WsConn, message: dict[str, Any], not_before: float | None = None) -> float | None: ...

    def submit(self, command: str, account: str, request: Any, conn_id: str) -> Submitted: ...

    def route(self, events: Iterable[Any]) -> None: ...

    def release(self, releases: Iterable[Any]) -> None: ...

    def diverge(self, divergence: Any) -> bool: ...

    def ws_rate_ok(self, conn: WsConn, command: str) -> bool: ...

    def valuation(self, currency: str) -> tuple[str, Decimal | None]: ...

    def send_connect_snapshot(self, conn: WsConn, after: float | None = None) -> None: ...

    def send_full_snapshot(self, conn: WsConn, pair: str) -> None: ...

    def send_l1_snapshot(self, conn: WsConn, pair: str) -> None: ...

    def send_mark_price(self, pair: str, conn: WsConn | None = None) -> None: ...

    def mark_price_subscribed(self) -> None: ...


FAKE: web.AppKey[FakeServer] = web.AppKey("fake_valr")
