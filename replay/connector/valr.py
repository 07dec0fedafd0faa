"""The reference VALR connector: REST + account/trade WebSockets + the order tracker.

Shaped like a Hummingbot ``ExchangePyBase`` connector (hummingbot-notes.md §3) so that the
OPEN_ORDERS_UPDATE race happens for the same reasons:

* ``buy``/``sell`` return the client id at once; the order is tracked PENDING_CREATE
  before any network I/O, then a task places it;
* the placement goes over the account WebSocket (PLACE_LIMIT_ORDER with a ``clientMsgId``)
  and falls back to REST ``POST /v1/orders/limit`` with the *same* customerOrderId when no
  reply comes within ``ws_order_timeout`` (the duplicate-placement hazard);
* OPEN is applied through ``tracker.process_order_update`` (one more loop hop);
* account-stream messages go reader -> queue -> consumer; OPEN_ORDERS_UPDATE is handed to
  the configured policy (``policies.py``);
* cancels, status polling and ``cancel_all`` only look at the tracker's active orders;
  lost orders are re-cancelled every ``lost_order_poll_interval`` seconds.

All timing runs on the event loop (``asyncio.sleep``, ``Clock``), never ``time.time()``,
so the connector runs unchanged under a virtual-time loop.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import random
import uuid
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any, Callable
from urllib.parse import urlparse

import aiohttp

from ..auth import auth_headers
from ..capture import TraceRecorder
from ..clock import Clock
from .policies import OpenOrdersPolicy, parse_policy, parse_valr_time
from .tracker import (
    ClientOrderTracker,
    InFlightOrder,
    OrderEvent,
    OrderState,
    OrderUpdate,
    TradeUpdate,
)

log = logging.getLogger(__name__)

ORDER_STATE: dict[str, OrderState] = {
    "Placed": OrderState.OPEN,
    "Partially Filled": OrderState.PARTIALLY_FILLED,
    "PartiallyFilled": OrderState.PARTIALLY_FILLED,
    "Filled": OrderState.FILLED,
    "Cancelled": OrderState.CANCELED,
    "Failed": OrderState.FAILED,
}

PING_INTERVAL = 20.0
AUTH_TIMEOUT = 10.0
REST_TIMEOUT = 10.0
MAX_CLIENT_ID_LEN = 32
RECONNECT_BACKOFF = (0.5, 30.0)  # first delay, cap (doubling)
PLACE_CONFIRM_TRIES = 3  # a placement without a reply: ask the exchange this often ...
PLACE_CONFIRM_S = 1.0  # ... this far apart, before placing it again over REST
CANCEL_CONFIRM_S = 0.5  # ask the exchange about a cancelled order whose final status has not come by then
RATE_LIMIT_RETRIES = 3  # a rate-limited command (RATE_LIMIT_EXCEEDED, HTTP 429) is sent again this often ...
RATE_LIMIT_BACKOFF = 1.0  # ... this many seconds later (a 429's Retry-After wins)


class ConnectorError(Exception):
    pass


class OrderNotFound(ConnectorError):
    pass


class OrderRejected(ConnectorError):
    pass


class RateLimited(ConnectorError):
    pass


class NotSent(ConnectionError):
    """The account stream was down: the command never left."""


class RestError(ConnectorError):
    def __init__(self, method: str, path: str, status: int, body: Any):
        super().__init__(f"{method} {path} -> HTTP {status}: {body!r}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class PairRules:
    symbol: str
    base: str
    quote: str
    tick_size: Decimal
    min_base: Decimal
    max_base: Decimal
    min_quote: Decimal
    base_decimals: int


def _dec(value: Any, default: str = "0") -> Decimal:
    try:
        return Decimal(str(value)) if value not in (None, "") else Decimal(default)
    except InvalidOperation:
        return Decimal(default)


def _error_text(body: Any) -> str:
    if isinstance(body, dict):
        err = inner if isinstance(inner := body.get("error"), dict) else body
        return str(err.get("message", "")) + " " + str(err.get("code", ""))
    return str(body)


def _is_not_found(status: int, body: Any) -> bool:
    if status == 404:
        return True
    code = body.get("code") if isinstance(body, dict) else None
    if str(code) == "-1":
        return True
    text = _error_text(body).lower()
    return "invalid order" in text or "not found" in text or "does not exist" in text


def _is_duplicate(body: Any) -> bool:
    code = body.get("code") if isinstance(body, dict) else None
    return str(code) == "-11502" or "duplicate" in _error_text(body).lower()


class ValrConnector:
    def __init__(
        self,
        *,
        rest_url: str = "https://api.valr.com",
        ws_account_url: str = "wss://api.valr.com/ws/account",
        ws_trade_url: str = "wss://api.valr.com/ws/trade",
        api_key: str | None = None,
        api_secret: str | None = None,
        pairs: tuple[str, ...] | list[str] = ("BTCZAR",),
        policy: str | OpenOrdersPolicy = "naive",
        clock: Clock | None = None,
        trace: TraceRecorder | None = None,
        ws_order_timeout: float = 1.0,
        use_ws_orders: bool = True,
        status_poll_interval: float = 10.0,
        lost_order_poll_interval: float = 5.0,
        client_id_prefix: str = "HB-VR-",
        seed: int = 0,
        fill_source: str = "trade",
    ):
        self.rest_url = rest_url.rstrip("/")
        self.ws_account_url = ws_account_url
        self.ws_trade_url = ws_trade_url
        self.api_key = api_key if api_key is not None else os.environ.get("VALR_API_KEY")
        self.api_secret = api_secret if api_secret is not None else os.environ.get("VALR_API_SECRET")
        self.pairs = tuple(pairs)
        self.policy: OpenOrdersPolicy = parse_policy(policy) if isinstance(policy, str) else policy
        self.clock = clock or Clock()
        self.trace = trace
        self.ws_order_timeout = ws_order_timeout
        self.use_ws_orders = use_ws_orders
        self.status_poll_interval = status_poll_interval
        self.lost_order_poll_interval = lost_order_poll_interval
        if len(client_id_prefix) > MAX_CLIENT_ID_LEN - 8:
            raise ValueError(f"client_id_prefix {client_id_prefix!r} is too long (max {MAX_CLIENT_ID_LEN - 8} chars)")
        self.client_id_prefix = client_id_prefix
        if fill_source not in ("trade", "history"):
            raise ValueError(f"fill_source must be 'trade' or 'history', got {fill_source!r}")
        # NEW_ACCOUNT_TRADE and NEW_ACCOUNT_HISTORY_RECORD describe the same fill with
        # different ids; counting both would double the fill, so one source is used.
        self.fill_source = fill_source
        self.tracker = ClientOrderTracker(self._now, guarded=self.policy.guarded, trace=trace)

        self._rng = random.Random(seed)
        self._counter = itertools.count(1)
        self.rules: dict[str, PairRules] = {}
        self.balances: dict[str, tuple[Decimal, Decimal]] = {}  # currency -> (available, total)
        self.books: dict[str, tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]] = {}
        self.last_pong: float | None = None
        self.account_connects = 0
        # called with each account-stream message after the connector has handled it
        self.message_listeners: list[Callable[[dict[str, Any]], None]] = []

        self._session: aiohttp.ClientSession | None = None
        self._account_ws: aiohttp.ClientWebSocketResponse | None = None
        self._trade_ws: aiohttp.ClientWebSocketResponse | None = None
        self._authenticated = asyncio.Event()
        self._ready_event = asyncio.Event()
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pending: dict[str, asyncio.Future] = {}
        self._tasks: set[asyncio.Task] = set()
        self._verifying: set[str] = set()
        # client order id -> the order id a REST fallback's 202 handed out while the order's
        # own id was still unknown. That id is provisional: if the WebSocket attempt did reach
        # the exchange, the re-send is failed as a duplicate and the live order has another id.
        self._provisional_ids: dict[str, str] = {}
        #: client order ids a cancel was sent for (a placement without its reply is then not sent again)
        # client ids whose placement is still running, and those of them a cancel was asked for (both
        # emptied when the placement ends, so a long run's memory stays flat)
        self._placing: set[str] = set()
        self._cancel_requested: set[str] = set()
        self._started = False
        self._stopping = False

    # --- time ------------------------------------------------------------------------------
    def _now(self) -> float:
        """Epoch seconds on the run's clock (tracker time)."""
        return self.clock.epoch_ms() / 1000.0

    def _new_msg_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _spawn(self, coro: Any, name: str | None = None) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("connector task %s failed", task.get_name(), exc_info=task.exception())

    # --- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            raise RuntimeError("ValrConnector.start() called twice")
        if not self.api_key or not self.api_secret:
            raise ValueError(
                "VALR API key/secret missing: pass api_key=/api_secret= or set VALR_API_KEY and VALR_API_SECRET"
            )
        self._started = True
        self._session = aiohttp.ClientSession()
        try:
            await self._load_rules()
            await self._load_balances()
            for pair in self.pairs:
                await self._load_book_snapshot(pair)
            self._spawn(self._account_stream_loop(), "valr-account-stream")
            self._spawn(self._user_stream_consumer(), "valr-user-stream-consumer")
            self._spawn(self._trade_stream_loop(), "valr-trade-stream")
            self._spawn(self._status_polling_loop(), "valr-status-poll")
            self._spawn(self._lost_orders_loop(), "valr-lost-orders")
            self._spawn(self._ping_loop(), "valr-ping")
            try:
                await asyncio.wait_for(self._authenticated.wait(), AUTH_TIMEOUT)
            except asyncio.TimeoutError:
                raise ConnectionError(f"{self.ws_account_url}: no AUTHENTICATED within {AUTH_TIMEOUT:g} s") from None
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        self._stopping = True
        # Close the streams one after the other before cancelling their tasks, so that the
        # server sees them go in a fixed order (a trace must not depend on which of two
        # simultaneous closes it notices first).
        for ws in (self._account_ws, self._trade_ws):
            if ws is not None and not ws.closed:
                await ws.close()
        tasks = [t for t in self._tasks if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.tracker.cancel_pending()
        await self.tracker.wait_idle()
        for fut in self._pending.values():
            if not fut.done():
                fut.cancel()
        self._pending.clear()
        for ws in (self._account_ws, self._trade_ws):
            if ws is not None and not ws.closed:
                await ws.close()
        self._account_ws = self._trade_ws = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._authenticated.clear()

    @property
    def ready(self) -> bool:
        return (
            all(p in self.rules for p in self.pairs)
            and bool(self.balances)
            and all(self.best_bid(p) is not None or self.best_ask(p) is not None for p in self.pairs)
            and self._authenticated.is_set()
        )

    def _update_ready(self) -> None:
        if self.ready:
            self._ready_event.set()
        else:
            self._ready_event.clear()

    async def wait_ready(self, timeout: float) -> None:
        """Wait until ``ready`` (rules, balances, a book per pair, authenticated account stream)."""
        try:
            await asyncio.wait_for(self._ready_event.wait(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"connector not ready after {timeout:g} s: rules={sorted(self.rules)} balances={bool(self.balances)} "
                f"books={[p for p in self.pairs if self.best_bid(p) or self.best_ask(p)]} "
                f"authenticated={self._authenticated.is_set()}") from None

    def add_listener(self, callback: Callable[[OrderEvent], None]) -> None:
        self.tracker.add_listener(callback)

    # --- REST ---------------------------------------------------------------------------------
    async def _rest(self, method: str, path: str, body: Any = None, *, signed: bool = True) -> tuple[int, Any]:
        if self._session is None:
            raise ConnectorError("connector not started")
        text = "" if body is None else json.dumps(body, separators=(",", ":"))
        headers = {"Content-Type": "application/json"}
        # a 429 on a read or a cancel is retried; a placement is not (see _ws_request)
        retries = 0 if method.upper() == "POST" else RATE_LIMIT_RETRIES
        for attempt in range(retries + 1):
            if signed:
                headers.update(auth_headers(self.api_key or "", self.api_secret or "", method, path, text,
                                            timestamp_ms=self.clock.epoch_ms()))
            async with self._session.request(
                method, self.rest_url + path, data=text.encode() if text else None, headers=headers,
                timeout=aiohttp.ClientTimeout(total=REST_TIMEOUT),
            ) as resp:
                raw = await resp.text()
                try:
                    parsed: Any = json.loads(raw) if raw else None
                except ValueError:
                    parsed = raw
                retry_after = resp.headers.get("Retry-After")
                if resp.status != 429 or attempt == retries:
                    return resp.status, parsed
            # 429: nothing was done; VALR says when to come back (Retry-After, seconds)
            try:
                wait = min(5.0, float(retry_after)) if retry_after else RATE_LIMIT_BACKOFF
            except ValueError:
                wait = RATE_LIMIT_BACKOFF
            log.info("%s %s: 429 (attempt %d); retrying in %g s", method, path, attempt + 1, wait)
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    async def _rest_ok(self, method: str, path: str, body: Any = None, *, signed: bool = True) -> Any:
        status, parsed = await self._rest(method, path, body, signed=signed)
        if status >= 300:
            if _is_not_found(status, parsed):
                raise OrderNotFound(f"{method} {path}: {parsed!r}")
            raise RestError(method, path, status, parsed)
        return parsed

    async def _load_rules(self) -> None:
        pairs = await self._rest_ok("GET", "/v1/public/pairs", signed=False)
        if not isinstance(pairs, list):
            raise ConnectorError(f"GET /v1/public/pairs: expected a list, got {pairs!r}")
        for p in pairs:
            sym = p.get("symbol")
            if sym not in self.pairs:
                continue
            self.rules[sym] = PairRules(
                symbol=sym, base=p.get("baseCurrency", ""), quote=p.get("quoteCurrency", ""),
                tick_size=_dec(p.get("tickSize"), "0.00000001"), min_base=_dec(p.get("minBaseAmount")),
                max_base=_dec(p.get("maxBaseAmount"), "Infinity"), min_quote=_dec(p.get("minQuoteAmount")),
                base_decimals=int(p.get("baseDecimalPlaces") or 8),
            )
        missing = [p for p in self.pairs if p not in self.rules]
        if missing:
            raise ConnectorError(f"GET /v1/public/pairs: unknown pair(s) {', '.join(missing)}")

    async def _load_balances(self) -> None:
        rows = await self._rest_ok("GET", "/v1/account/balances")
        if isinstance(rows, list):
            for row in rows:
                cur = row.get("currency")
                if isinstance(cur, dict):
                    cur = cur.get("shortName") or cur.get("symbol")
                if cur:
                    self.balances[str(cur)] = (_dec(row.get("available")), _dec(row.get("total")))
            if not self.balances:
                self.balances["_loaded"] = (Decimal(0), Decimal(0))  # an empty account is still "loaded"
            self._update_ready()

    async def _load_book_snapshot(self, pair: str) -> None:
        try:
            book = await self._rest_ok("GET", f"/v1/public/{pair}/orderbook", signed=False)
        except (ConnectorError, aiohttp.ClientError, asyncio.TimeoutError) as e:
            log.info("order book snapshot for %s unavailable: %s", pair, e)
            return
        if isinstance(book, dict):
            self._set_book(pair, book)

    # --- market data ------------------------------------------------------------------------------
    def _set_book(self, pair: str, data: dict[str, Any]) -> None:
        def levels(rows: Any) -> list[tuple[Decimal, Decimal]]:
            out = []
            for r in rows or []:
                if isinstance(r, dict) and r.get("price") is not None:
                    out.append((_dec(r["price"]), _dec(r.get("quantity"))))
            return out

        bids = sorted(levels(data.get("Bids")), key=lambda x: -x[0])
        asks = sorted(levels(data.get("Asks")), key=lambda x: x[0])
        self.books[pair] = (bids, asks)
        self._update_ready()

    def best_bid(self, pair: str) -> Decimal | None:
        book = self.books.get(pair)
        return book[0][0][0] if book and book[0] else None

    def best_ask(self, pair: str) -> Decimal | None:
        book = self.books.get(pair)
        return book[1][0][0] if book and book[1] else None

    def mid_price(self, pair: str) -> Decimal | None:
        bid, ask = self.best_bid(pair), self.best_ask(pair)
        if bid is None or ask is None:
            return None
        return (bid + ask) / 2

    # --- WebSockets ------------------------------------------------------------------------------
    def _ws_headers(self, url: str) -> dict[str, str]:
        path = urlparse(url).path or "/"
        return auth_headers(self.api_key or "", self.api_secret or "", "GET", path, "",
                            timestamp_ms=self.clock.epoch_ms())

    async def _account_stream_loop(self) -> None:
        await self._stream_loop("account", self.ws_account_url, self._account_opened,
                                self._account_message, self._account_closed)

    async def _trade_stream_loop(self) -> None:
        await self._stream_loop("trade", self.ws_trade_url, self._trade_opened,
                                self._trade_message, self._trade_closed)

    async def _stream_loop(self, name: str, url: str, opened, message, closed) -> None:
        """Keep one WebSocket stream connected, with exponential backoff between attempts.

        ``opened(ws)`` and ``message(data)`` return True when the stream is healthy (which
        resets the backoff); ``message`` gets each JSON-object frame; ``closed(ws)`` cleans up.
        """
        delay = RECONNECT_BACKOFF[0]
        while not self._stopping:
            assert self._session is not None
            try:
                ws = await self._session.ws_connect(url, headers=self._ws_headers(url), autoping=True)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
                log.warning("%s stream connect failed (%s); retry in %.1f s", name, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_BACKOFF[1])
                continue
            try:
                if await opened(ws):
                    delay = RECONNECT_BACKOFF[0]
                async for msg in ws:
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        if msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                            break
                        continue
                    try:
                        data = json.loads(msg.data)
                    except ValueError:
                        log.warning("%s stream: not JSON: %.200s", name, msg.data)
                        continue
                    if isinstance(data, dict) and message(data):
                        delay = RECONNECT_BACKOFF[0]
            except (aiohttp.ClientError, ConnectionError, asyncio.TimeoutError) as e:
                log.warning("%s stream error: %s", name, e)
            finally:
                closed(ws)
                if not ws.closed:
                    await ws.close()
            if self._stopping:
                break
            log.warning("%s stream closed (code %s); reconnecting in %.1f s", name, ws.close_code, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_BACKOFF[1])

    async def _account_opened(self, ws) -> bool:
        self._account_ws = ws
        self.account_connects += 1
        return False  # healthy once AUTHENTICATED arrives

    def _account_message(self, data: dict) -> bool:
        mtype = data.get("type")
        if mtype == "AUTHENTICATED":
            self._authenticated.set()
            self._update_ready()
            if self.account_connects > 1:
                # A reconnect: whatever the orders did while the stream was down (fills, cancels
                # confirmed over REST) came in no message of ours. Ask the exchange about each.
                self._spawn(self._resync_orders(), "valr-resync")
            return True
        if mtype == "PONG":
            self.last_pong = self._now()
        else:
            self._queue.put_nowait(data)
        return False

    def _account_closed(self, ws) -> None:
        self._account_ws = None
        self._authenticated.clear()
        self._ready_event.clear()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("account stream closed"))
        if not self._stopping:
            # What was on its way to us went with the connection: ask now, not after the reconnect.
            self._spawn(self._resync_orders(), "valr-resync-on-close")

    async def _trade_opened(self, ws) -> bool:
        self._trade_ws = ws
        await ws.send_str(json.dumps({
            "type": "SUBSCRIBE",
            "subscriptions": [{"event": "AGGREGATED_ORDERBOOK_UPDATE", "pairs": list(self.pairs)}],
        }))
        return True

    def _trade_message(self, data: dict) -> bool:
        if data.get("type") == "AGGREGATED_ORDERBOOK_UPDATE":
            body = data.get("data") or {}
            pair = data.get("currencyPairSymbol") or body.get("currencyPairSymbol")
            if pair in self.pairs and isinstance(body, dict):
                self._set_book(pair, body)
        return False

    def _trade_closed(self, ws) -> None:
        self._trade_ws = None

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(PING_INTERVAL)
            for ws in (self._account_ws, self._trade_ws):
                if ws is not None and not ws.closed:
                    try:
                        await ws.send_str('{"type":"PING"}')
                    except (ConnectionError, aiohttp.ClientError) as e:
                        log.info("PING failed: %s", e)

    async def _ws_request(self, mtype: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a command on the account stream; wait ``ws_order_timeout`` for its reply."""
        ws = self._account_ws
        if ws is None or ws.closed or not self._authenticated.is_set():
            raise NotSent("account stream not connected")
        # A rate-limited cancel goes again; a placement does not (by then the strategy may have
        # cancelled the order it does not have): it fails, and the next refresh places anew.
        retries = RATE_LIMIT_RETRIES if mtype == "CANCEL_LIMIT_ORDER" else 0
        for attempt in range(retries + 1):
            msg_id = self._new_msg_id()
            fut: asyncio.Future = asyncio.get_running_loop().create_future()
            self._pending[msg_id] = fut
            try:
                await ws.send_str(json.dumps({"type": mtype, "clientMsgId": msg_id, "payload": payload}))
                reply = await asyncio.wait_for(fut, self.ws_order_timeout)
            finally:
                self._pending.pop(msg_id, None)
            if reply.get("type") != "RATE_LIMIT_EXCEEDED":
                return reply
            if attempt == retries:
                break
            # Not executed: the exchange refused it for the write limit. Try again a little later.
            log.info("%s rate limited (attempt %d); retrying in %g s", mtype, attempt + 1, RATE_LIMIT_BACKOFF)
            await asyncio.sleep(RATE_LIMIT_BACKOFF)
            ws = self._account_ws
            if ws is None or ws.closed or not self._authenticated.is_set():
                raise NotSent("account stream not connected")
        raise RateLimited(f"{mtype}: rate limited {retries + 1} time(s)")

    # --- the account stream consumer ------------------------------------------------------------
    async def _user_stream_consumer(self) -> None:
        while True:
            msg = await self._queue.get()
            try:
                self.handle_account_message(msg)
            except Exception:
                log.exception("account stream message failed: %.300r", msg)
            for callback in list(self.message_listeners):
                callback(msg)

    def handle_account_message(self, msg: dict[str, Any]) -> None:
        """Dispatch one account-stream message (also usable directly in tests)."""
        mtype = msg.get("type")
        data = msg.get("data")
        msg_id = msg.get("clientMsgId") or (data.get("clientMsgId") if isinstance(data, dict) else None)
        if msg_id is not None:
            fut = self._pending.pop(str(msg_id), None)
            if fut is not None:
                if not fut.done():
                    fut.set_result(msg)
                return
            if mtype in ("PLACE_LIMIT_WS_RESPONSE", "CANCEL_ORDER_WS_RESPONSE", "INVALID_PLACE_LIMIT_REQUEST",
                         "INVALID_CANCEL_ORDER_REQUEST"):
                log.info("late or unknown command reply %s clientMsgId=%s ignored", mtype, msg_id)
                return
        if mtype == "ORDER_STATUS_UPDATE" and isinstance(data, dict):
            update = self._order_update_from_status(data, "ws:ORDER_STATUS_UPDATE", updatable_only=True)
            if update is not None and not (update.new_state is OrderState.FAILED
                                           and self._defer_provisional_failure(update.client_order_id)):
                self.tracker.process_order_update(update)
        elif mtype == "OPEN_ORDERS_UPDATE":
            orders = (data if isinstance(data, list)
                      else (data or {}).get("orders", []) if isinstance(data, dict) else [])
            result = self.policy.on_snapshot(orders, self.tracker, self._now())
            for cid in result.verify:
                if cid not in self._verifying:
                    self._verifying.add(cid)
                    self._spawn(self._verify_order(cid), f"valr-verify-{cid}")
        elif mtype == "NEW_ACCOUNT_TRADE" and isinstance(data, dict):
            if self.fill_source == "trade":
                self._fill_from_trade(data, msg.get("currencyPairSymbol"))
        elif mtype == "NEW_ACCOUNT_HISTORY_RECORD" and isinstance(data, dict):
            if self.fill_source == "history":
                self._fill_from_history(data)
        elif mtype == "BALANCE_UPDATE" and isinstance(data, dict):
            cur = data.get("currency")
            if isinstance(cur, dict):
                cur = cur.get("shortName") or cur.get("symbol")
            if cur:
                self.balances[str(cur)] = (_dec(data.get("available")), _dec(data.get("total")))
        elif mtype == "FAILED_ORDER" and isinstance(data, dict):
            order = self._lookup(data.get("customerOrderId"), data.get("orderId"), updatable_only=True)
            if order is not None and not self._defer_provisional_failure(order.client_order_id):
                self.tracker.process_order_update(OrderUpdate(
                    order.pair, self._now(), OrderState.FAILED, order.client_order_id, data.get("orderId"),
                    reason="ws:FAILED_ORDER"))
        elif mtype == "ORDER_PROCESSED" and isinstance(data, dict):
            if data.get("success") is False:
                order = self._lookup(data.get("customerOrderId"), data.get("orderId"), updatable_only=True)
                if order is not None and not self._defer_provisional_failure(order.client_order_id):
                    self.tracker.process_order_update(OrderUpdate(
                        order.pair, self._now(), OrderState.FAILED, order.client_order_id, data.get("orderId"),
                        reason="ws:ORDER_PROCESSED"))
        elif mtype == "FAILED_CANCEL_ORDER":
            log.info("cancel failed: %r", data)
            if isinstance(data, dict) and _is_not_found(0, data):
                # Hummingbot: a "not found" answer to a cancel goes to the lost-order path.
                order = self._lookup(data.get("customerOrderId"), data.get("orderId"), updatable_only=True)
                if order is not None:
                    self.tracker.process_order_not_found(order.client_order_id)

    def _defer_provisional_failure(self, client_order_id: str | None) -> bool:
        """A stream message failing an order whose id came from a REST fallback: the failed
        order may be the duplicate re-send while the WebSocket attempt is live. Ask the
        exchange by customerOrderId instead (it answers with the open order, if any) and
        return True; the answer goes through the ordinary status path."""
        order = self.tracker.fetch_tracked_order(client_order_id) if client_order_id else None
        if order is None or self._provisional_ids.get(order.client_order_id) != order.exchange_order_id:
            return False
        if order.client_order_id not in self._verifying:
            self._verifying.add(order.client_order_id)
            self._spawn(self._verify_order(order.client_order_id), f"valr-verify-{order.client_order_id}")
        return True

    def _order_update_from_status(self, data: dict[str, Any], reason: str, *,
                                  updatable_only: bool = False) -> OrderUpdate | None:
        status = data.get("orderStatusType") or data.get("status")
        state = ORDER_STATE.get(str(status))
        if state is None:
            log.warning("unknown order status %r (%s)", status, reason)
            return None
        cid, ex_id = data.get("customerOrderId"), data.get("orderId")
        # Hummingbot looks stream updates up among active + lost orders only.
        order = self._lookup(cid, ex_id, updatable_only=updatable_only, live=state is not OrderState.FAILED)
        if order is None:
            return None
        if order.exchange_created_at is None:
            order.exchange_created_at = parse_valr_time(data.get("orderCreatedAt"))
        return OrderUpdate(order.pair, self._now(), state, order.client_order_id, ex_id or None, reason=reason)

    def _lookup(
        self, cid: Any, ex_id: Any, *, updatable_only: bool = False, live: bool = False
    ) -> InFlightOrder | None:
        """The tracked order a message is about. customerOrderId matches only if the
        message's orderId (when given) is the order's known exchange id: a second exchange
        order with the same customerOrderId (the REST-fallback duplicate, which VALR fails
        asynchronously) must not be taken for ours.

        Except when the known id is provisional (taken from a REST fallback's 202 before any
        other news) and the message shows the other order alive (``live``: a status other than
        Failed, or a fill): then the fallback was the duplicate, and the order's id is corrected.
        """
        orders = self.tracker.all_updatable_orders if updatable_only else self.tracker.all_fillable_orders
        order = orders.get(str(cid)) if cid else None
        if order is not None and ex_id and order.exchange_order_id and order.exchange_order_id != str(ex_id):
            if live and self._provisional_ids.get(order.client_order_id) == order.exchange_order_id:
                log.warning("order %s: the REST fallback %s was the duplicate; the live order is %s",
                            order.client_order_id, order.exchange_order_id, ex_id)
                del self._provisional_ids[order.client_order_id]
                order.exchange_order_id = str(ex_id)
            else:
                order = None
        if order is None and ex_id:
            order = self.tracker._by_exchange_id(orders).get(str(ex_id))
        return order

    def _fill_from_trade(self, data: dict[str, Any], pair: str | None) -> None:
        trade_id = data.get("id") or data.get("tradeId")
        order = self._lookup(data.get("customerOrderId"), data.get("orderId"), live=True)
        if not trade_id or order is None:
            return
        price, qty = _dec(data.get("price")), _dec(data.get("quantity"))
        self.tracker.process_trade_update(TradeUpdate(
            str(trade_id), order.client_order_id, data.get("orderId"), order.pair, self._now(), price, qty,
            price * qty, _dec(data.get("fee")), str(data.get("feeCurrency") or "")))

    def _fill_from_history(self, data: dict[str, Any]) -> None:
        info = data.get("additionalInfo") or {}
        ttype = (data.get("transactionType") or {}).get("type", "")
        if ttype not in ("LIMIT_BUY", "LIMIT_SELL", "MARKET_BUY", "MARKET_SELL"):
            return
        order = self._lookup(info.get("customerOrderId"), info.get("orderId"), live=True)
        if order is None or not data.get("id"):
            return
        price = _dec(info.get("costPerCoin"))
        fee = _dec(data.get("feeValue"))
        fee_cur = data.get("feeCurrency") or {}
        fee_cur = fee_cur.get("shortName", "") if isinstance(fee_cur, dict) else str(fee_cur)
        rules = self.rules.get(order.pair)
        if ttype.endswith("BUY"):
            base = _dec(data.get("creditValue")) + (fee if rules and fee_cur == rules.base else 0)
        else:
            base = _dec(data.get("debitValue"))
        self.tracker.process_trade_update(TradeUpdate(
            str(data["id"]), order.client_order_id, info.get("orderId"), order.pair, self._now(), price, base,
            price * base, fee, fee_cur))

    # --- placing ------------------------------------------------------------------------------------
    def buy(self, pair: str, amount: Decimal, price: Decimal) -> str:
        return self._create("buy", pair, amount, price)

    def sell(self, pair: str, amount: Decimal, price: Decimal) -> str:
        return self._create("sell", pair, amount, price)

    def _create(self, side: str, pair: str, amount: Decimal, price: Decimal) -> str:
        if pair not in self.pairs:
            raise ValueError(f"pair {pair!r} is not one of this connector's pairs {self.pairs}")
        cid = f"{self.client_id_prefix}{'B' if side == 'buy' else 'S'}{next(self._counter)}"
        amount, price = self.quantize(pair, Decimal(amount), Decimal(price))
        order = InFlightOrder(cid, pair, side, price, amount, creation_timestamp=int(self._now()))
        self.tracker.start_tracking(order)  # PENDING_CREATE, before any network I/O
        self._spawn(self._create_order(order), f"valr-create-{cid}")
        return cid

    def quantize_price(self, pair: str, price: Decimal) -> Decimal:
        """Round a price down to the pair's tick size (as Hummingbot's quantize_order_price)."""
        return self.quantize(pair, Decimal(1), Decimal(price))[1]

    def quantize(self, pair: str, amount: Decimal, price: Decimal) -> tuple[Decimal, Decimal]:
        rules = self.rules.get(pair)
        if rules is None:
            return amount, price
        if rules.tick_size > 0:
            price = (price / rules.tick_size).to_integral_value(ROUND_DOWN) * rules.tick_size
        amount = amount.quantize(Decimal(1).scaleb(-rules.base_decimals), ROUND_DOWN)
        return amount, price

    async def _create_order(self, order: InFlightOrder) -> None:
        self._placing.add(order.client_order_id)
        try:
            rules = self.rules.get(order.pair)
            if rules is not None and (order.amount < rules.min_base or order.amount * order.price < rules.min_quote
                                      or order.amount <= 0 or order.price <= 0):
                self.tracker.process_order_update(OrderUpdate(
                    order.pair, self._now(), OrderState.FAILED, order.client_order_id, reason="validation"))
                return
            ex_id = await self._place_order(order)
            self.tracker.process_order_update(OrderUpdate(
                order.pair, self._now(), OrderState.OPEN, order.client_order_id, ex_id, reason="place_ack"))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("placing %s failed: %s", order.client_order_id, e)
            self.tracker.process_order_update(OrderUpdate(
                order.pair, self._now(), OrderState.FAILED, order.client_order_id, reason=f"place_error: {e}"[:200]))
        finally:
            self._placing.discard(order.client_order_id)
            self._cancel_requested.discard(order.client_order_id)

    async def _place_order(self, order: InFlightOrder) -> str | None:
        payload = {
            "side": order.side.upper(), "quantity": str(order.amount), "price": str(order.price),
            "pair": order.pair, "postOnly": True, "customerOrderId": order.client_order_id, "timeInForce": "GTC",
        }
        if self.use_ws_orders:
            try:
                reply = await self._ws_request("PLACE_LIMIT_ORDER", payload)
            except NotSent as e:
                log.warning("WS placement of %s not sent (%s): placing it over REST", order.client_order_id, e)
            except (asyncio.TimeoutError, ConnectionError) as e:
                # Sent, but no reply: the order may be on its way through the engine. A re-send with the
                # same customerOrderId is only refused while the first order is open: one racing the
                # first order's fill or cancel would be accepted and live on untracked. So ask the
                # exchange, a few times, and re-send only an order it never shows.
                found = await self._find_placed(order)
                if found is not None:
                    log.info("WS placement of %s got no reply (%s), but the exchange has it", order.client_order_id,
                             type(e).__name__)
                    return found
                if order.state is not OrderState.PENDING_CREATE or order.client_order_id in self._cancel_requested:
                    # cancelled (or given up) while we asked: placing it now would leave it untracked
                    raise OrderRejected(f"no reply to PLACE_LIMIT_ORDER and the order is {order.state.name} "
                                        "now: not placed again") from None
                log.warning("WS placement of %s got no reply (%s) and the exchange does not show it: placing it "
                            "over REST with the same customerOrderId", order.client_order_id, type(e).__name__)
            else:
                data = raw if isinstance(raw := reply.get("data"), dict) else {}
                if (reply.get("error") or reply.get("type") == "INVALID_PLACE_LIMIT_REQUEST"
                        or data.get("success") is False):
                    raise OrderRejected(
                        f"PLACE_LIMIT_ORDER rejected: {_error_text(reply.get('error') or data or reply)}"
                    )
                return data.get("orderId") or data.get("id")
        status, body = await self._rest("POST", "/v1/orders/limit", payload)
        if status < 300:
            ex_id = body.get("id") if isinstance(body, dict) else None
            if self.use_ws_orders and ex_id and order.exchange_order_id is None:
                self._provisional_ids[order.client_order_id] = str(ex_id)
            return ex_id
        if _is_duplicate(body):
            # The WS request did reach the exchange after all: find out what became of it.
            status_body = await self._request_status(order, by_customer_id=True)
            return status_body.get("orderId")
        raise RestError("POST", "/v1/orders/limit", status, body)

    async def _find_placed(self, order: InFlightOrder) -> str | None:
        """The exchange id of an order whose placement got no reply, asking by customerOrderId up to
        PLACE_CONFIRM_TRIES times, PLACE_CONFIRM_S apart; None if it never shows. An order the exchange
        failed (a refused duplicate of an earlier one) is a refusal."""
        for attempt in range(PLACE_CONFIRM_TRIES):
            if attempt:
                await asyncio.sleep(PLACE_CONFIRM_S)
            try:
                found = await self._request_status(order, by_customer_id=True)
            except asyncio.CancelledError:
                raise
            except Exception:
                continue
            status = str(found.get("orderStatusType") or found.get("status"))
            if found.get("orderId") and status != "Failed":
                return str(found["orderId"])
            if status == "Failed":
                raise OrderRejected(f"PLACE_LIMIT_ORDER failed: {_error_text(found)}")
        return None

    # --- cancelling -----------------------------------------------------------------------------------
    def cancel(self, pair: str, client_order_id: str) -> None:
        self._spawn(self._execute_cancel(pair, client_order_id), f"valr-cancel-{client_order_id}")

    async def cancel_all(self, timeout: float) -> list[tuple[str, bool]]:
        orders = [o for o in self.tracker.active.values() if not o.is_done]
        if not orders:
            return []
        tasks = [self._spawn(self._execute_cancel(o.pair, o.client_order_id)) for o in orders]
        await asyncio.wait(tasks, timeout=timeout)
        results = []
        for o, t in zip(orders, tasks, strict=True):
            ok = t.done() and not t.cancelled() and t.exception() is None and t.result() == o.client_order_id
            if not t.done():
                t.cancel()
            results.append((o.client_order_id, ok))
        return results

    async def _execute_cancel(self, pair: str, client_order_id: str) -> str | None:
        order = self.tracker.fetch_tracked_order(client_order_id)  # active orders only
        if order is None:
            return None
        return await self._execute_order_cancel(order)

    async def _execute_order_cancel(self, order: InFlightOrder) -> str | None:
        # from now on, a placement still looking for its reply must not send the order again
        if order.client_order_id in self._placing:
            self._cancel_requested.add(order.client_order_id)
        try:
            if await self._place_cancel(order):
                self.tracker.process_order_update(OrderUpdate(
                    order.pair, self._now(), OrderState.PENDING_CANCEL, order.client_order_id,
                    order.exchange_order_id, reason="cancel_ack"))
                self._spawn(self._confirm_cancel(order), f"valr-confirm-{order.client_order_id}")
                return order.client_order_id
        except asyncio.CancelledError:
            raise
        except OrderNotFound:
            self.tracker.process_order_not_found(order.client_order_id)
        except Exception as e:
            log.warning("cancel of %s failed: %s", order.client_order_id, e)
        return None

    async def _place_cancel(self, order: InFlightOrder) -> bool:
        payload = {"customerOrderId": order.client_order_id, "pair": order.pair}
        if self.use_ws_orders:
            try:
                reply = await self._ws_request("CANCEL_LIMIT_ORDER", payload)
            except (asyncio.TimeoutError, ConnectionError) as e:
                log.info("WS cancel of %s got no reply (%s): falling back to REST", order.client_order_id,
                         type(e).__name__)
            else:
                data = raw if isinstance(raw := reply.get("data"), dict) else {}
                if reply.get("error") or reply.get("type") == "INVALID_CANCEL_ORDER_REQUEST":
                    err = reply.get("error") or data or reply
                    if _is_not_found(0, err):
                        raise OrderNotFound(_error_text(err))
                    raise ConnectorError(f"CANCEL_LIMIT_ORDER rejected: {_error_text(err)}")
                return bool(data.get("requested", True))
        await self._rest_ok("DELETE", "/v1/orders/order", payload)
        return True

    # --- status queries -------------------------------------------------------------------------------
    async def _request_status(self, order: InFlightOrder, by_customer_id: bool = False) -> dict[str, Any]:
        provisional = self._provisional_ids.get(order.client_order_id) == order.exchange_order_id
        if order.exchange_order_id and not by_customer_id and not provisional:
            path = f"/v1/orders/{order.pair}/orderid/{order.exchange_order_id}"
        else:
            path = f"/v1/orders/{order.pair}/customerorderid/{order.client_order_id}"
        body = await self._rest_ok("GET", path)
        if not isinstance(body, dict):
            raise ConnectorError(f"GET {path}: unexpected body {body!r}")
        return body

    async def _query_and_apply(self, order: InFlightOrder, reason: str, *, final_only: bool = False) -> None:
        """Ask the exchange about ``order`` and apply the answer. ``final_only``: apply only an end
        (Filled, Cancelled, Failed), and only to an order still active (a confirmation must not move
        an order back: its answer may have been overtaken by the status it was waiting for)."""
        try:
            body = await self._request_status(order, by_customer_id=(reason == "verify"))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # Hummingbot: any status-request error counts as "not found"
            log.info("status of %s unavailable (%s): %s", order.client_order_id, reason, e)
            self.tracker.process_order_not_found(order.client_order_id)
            return
        if str(body.get("orderStatusType") or body.get("status")) in ("Partially Filled", "PartiallyFilled", "Filled",
                                                                         "Cancelled"):
            # Fills the stream may not have told us about (a disconnect, a lost message): before the
            # order can end, its executed amount must be the exchange's.
            await self._catch_up_fills(order, str(body.get("orderId") or order.exchange_order_id or ""))
        update = self._order_update_from_status(body, reason)
        if update is not None and final_only and (
                update.new_state not in (OrderState.FILLED, OrderState.CANCELED, OrderState.FAILED)
                or order.client_order_id not in self.tracker.active or order.is_done):
            return
        if update is not None:
            self.tracker.process_order_update(update)

    async def _catch_up_fills(self, order: InFlightOrder, exchange_order_id: str) -> None:
        """Apply the account's recent fills of this order (GET .../tradehistory); known trades are skipped."""
        if not exchange_order_id:
            return
        try:
            rows = await self._rest_ok("GET", f"/v1/account/{order.pair}/tradehistory?limit=100")
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.info("trade history for %s unavailable: %s", order.client_order_id, e)
            return
        for row in reversed(rows if isinstance(rows, list) else []):
            if isinstance(row, dict) and row.get("orderId") == exchange_order_id:
                self._fill_from_trade(row, order.pair)

    async def _confirm_cancel(self, order: InFlightOrder) -> None:
        """An acknowledged cancel is not an outcome: if no final status has come within
        ``CANCEL_CONFIRM_S`` (a lost or late message), ask the exchange, a few times."""
        for _ in range(3):
            await asyncio.sleep(CANCEL_CONFIRM_S)
            if order.client_order_id not in self.tracker.active or order.is_done:
                return
            await self._query_and_apply(order, "cancel_confirm", final_only=True)

    async def _resync_orders(self) -> None:
        for order in list(self.tracker.active.values()):
            if order.exchange_order_id is not None and not order.is_done:
                await self._query_and_apply(order, "resync")

    async def _verify_order(self, client_order_id: str) -> None:
        try:
            order = self.tracker.fetch_tracked_order(client_order_id)
            if order is not None:
                await self._query_and_apply(order, "verify")
        finally:
            self._verifying.discard(client_order_id)

    async def _status_polling_loop(self) -> None:
        while True:
            await asyncio.sleep(self.status_poll_interval)
            try:
                await self._load_balances()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.info("balance refresh failed: %s", e)
            for order in list(self.tracker.active.values()):
                await self._query_and_apply(order, "poll")

    async def _lost_orders_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lost_order_poll_interval)
            for order in list(self.tracker.lost.values()):
                await self._execute_order_cancel(order)
            for order in list(self.tracker.lost.values()):
                if order.client_order_id not in self.tracker.lost:
                    continue
                try:
                    body = await self._request_status(order)
                except asyncio.CancelledError:
                    raise
                except OrderNotFound:
                    self.tracker.process_order_not_found(order.client_order_id)  # gone: leaves lost
                    continue
                except Exception as e:
                    log.info("status of lost order %s unavailable: %s", order.client_order_id, e)
                    continue
                update = self._order_update_from_status(body, "poll:lost")
                if update is not None and update.new_state in (OrderState.CANCELED, OrderState.FILLED,
                                                                OrderState.FAILED):
                    self.tracker.process_order_update(update)
