"""The fake VALR server: an aiohttp app around the pure exchange, codec and schedule.

Flow: a command (REST or WS) is parsed by the codec and submitted to the exchange; the
synchronous ``Submitted`` is the 202 / WS ack. The engine processes the head of the exchange's
FIFO queue ``schedule.engine_delay(now, command)`` seconds later (the ack never waits for
processing). Events are routed to the account and trade streams as wire messages; every
outbound WebSocket message goes through ``schedule.push`` and ONE dispatcher task sends what
``schedule.pop_due`` releases, in order.

Playback (``FakeValr(playback=Playback(...))``, ``valr-replay replay``): the capture answers
instead of the exchange. The handlers hand each client request to the playback; what it
releases is queued here (``release``) and the dispatcher pushes each message into the same
delivery schedule at its release time (so scenario perturbations apply on top); market data is
pulled from the playback as it falls due. On a divergence ``diverge`` either stops (closes the
client connections) or hands over to the exchange (``handover``).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import itertools
import json
import logging
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any, Iterable

from aiohttp import web
from sortedcontainers import SortedKeyList

from replay import codec
from replay.capture import RawFrame, TraceRecorder, dumps
from replay.clock import Clock
from replay.config import ExchangeConfig, default_config
from replay.exchange import BackgroundMarket, Exchange
from replay.exchange.events import ACCOUNT_EVENTS, AccountTrade, BookChanged, PublicTrade
from replay.exchange.model import Submitted
from replay.schedule import DeliverySchedule

from . import rest, ws_account, ws_trade
from .connection import FAKE, WS_RATE_KINDS, WsConn
from .ratelimit import DEFAULT_ROUTE_LIMITS, RateLimiter

if TYPE_CHECKING:
    from replay.playback import Playback


#: the coarsest loop clock we run on (looptime's virtual time is in whole microseconds)
CLOCK_RESOLUTION_S = 1e-6
#: on a real clock, wake this long before a delivery and yield until it is due: an epoll
#: timer fires up to 1 ms late, which would make every delivery late by that much
EARLY_WAKE_S = 0.0015
#: market messages a playback hands the dispatcher per turn (bounds memory at high --speed)
MARKET_BATCH = 256
#: what a connection may have waiting to be written, in characters of JSON text, by default
#: (ServerParams.ws_send_queue_bytes); past it the client is too slow and is disconnected
WS_SEND_QUEUE_BYTES = 4 * 1024 * 1024
#: the close code for a client that does not read fast enough. [INF] VALR's is undocumented;
#: 1008 "policy violation", as exchanges that drop slow consumers commonly send
SLOW_CONSUMER_CLOSE_CODE = 1008
#: fills an account's trade history keeps (REST trade history answers from these)
ACCOUNT_TRADES_KEPT = 10_000
#: how long a server-side close may take before the transport is dropped (a peer that does not
#: read never takes the close frame)
CLOSE_BOUND_S = 3.0
log = logging.getLogger(__name__)


def _wake_up(waiter: "asyncio.Future[None]") -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Wakeup:
    """What the dispatcher sleeps on: ``set`` wakes it at once, and a wait ends at the latest after
    its timeout. One future and one timer a wait, where ``asyncio.wait_for(event.wait(), timeout)``
    also makes a task and passes the wake-up through it (the dispatcher sleeps some 35 times a
    simulated second)."""

    def __init__(self) -> None:
        self._flag = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._flag = True
        if self._waiter is not None:
            _wake_up(self._waiter)

    def clear(self) -> None:
        self._flag = False

    async def wait(self, timeout: float | None) -> None:
        if self._flag:
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _wake_up, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()


class _Outbox:
    """One connection's frames due for writing, in order, and the task that writes them: a client
    that does not read holds up only its own writer, never the dispatcher (and so nobody else)."""

    __slots__ = ("frames", "chars", "ready", "writer", "dead")

    def __init__(self) -> None:
        # (text, message type, message as traced) or, for a scheduled disconnect, (None, code, None)
        self.frames: collections.deque[tuple[str | None, Any, Any]] = collections.deque()
        self.chars = 0
        self.ready = asyncio.Event()
        self.writer: asyncio.Task | None = None
        self.dead = False  # disconnected as too slow, or its transport failed: nothing more is queued

def _param(obj: Any, name: str, default: Any) -> Any:
    value = getattr(obj, name, None) if obj is not None else None
    return default if value is None else value


#: ``json.dumps(obj, separators=(",", ":"))`` without building an encoder per call
_compact_json = json.JSONEncoder(separators=(",", ":")).encode
_FIELDS: dict[type, tuple[str, ...]] = {}
_SCALARS = frozenset({str, int, float, bool, type(None)})  # exactly these types: plain() returns them as they are


def plain(obj: Any) -> Any:
    """A JSON-ready copy: dataclasses as dicts, Decimal as str, Enum as value.

    Same result as ``json.loads(replay.capture.dumps(obj))``, many times faster than
    ``dataclasses.asdict`` (which deep-copies): event records are written for every event.
    """
    kind = type(obj)
    if kind in _SCALARS:
        return obj
    names = _FIELDS.get(kind)  # a dataclass seen before (so neither a scalar, an Enum nor a Decimal)
    if names is not None:
        out: dict[str, Any] = {}
        for n in names:
            value = getattr(obj, n)
            out[n] = value if type(value) in _SCALARS else plain(value)
        return out
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Decimal):
        return str(obj)
    if names is None and dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names = _FIELDS[type(obj)] = tuple(f.name for f in dataclasses.fields(obj))
    if names is not None:
        return {n: plain(getattr(obj, n)) for n in names}
    if isinstance(obj, (list, tuple)):
        return [plain(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    return json.loads(dumps(obj))


@dataclasses.dataclass
class _BookFeed:
    """What one sequenced book feed of one pair last published (FULL_ORDERBOOK_UPDATE: orders by
    id; OB_L1_DIFF: levels by (side, price)) and its sequence number."""

    sequence: int
    state: dict


@dataclasses.dataclass
class _Bucket:
    start_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class FakeValr:
    """A wire-compatible fake of VALR's REST API, ``/ws/account`` and ``/ws/trade``."""

    def __init__(
        self,
        config: ExchangeConfig | None = None,
        *,
        clock: Clock | None = None,
        seed: int = 0,
        trace: TraceRecorder | None = None,
        schedule: DeliverySchedule | None = None,
        playback: "Playback | None" = None,
        on_divergence: str = "simulate",
    ):
        if on_divergence not in ("stop", "simulate"):
            raise ValueError(f"on_divergence: expected stop or simulate, got {on_divergence!r}")
        self.config = config if config is not None else default_config()
        self._traced_names: tuple[Any, frozenset[str]] | None = None  # (config.accounts, their names)
        self.clock = clock if clock is not None else Clock()
        self.seed = seed
        self.trace = trace
        self.schedule = schedule if schedule is not None else DeliverySchedule(seed)
        self.exchange = Exchange(self.config.pairs, seed=seed)
        for acct in self.config.accounts:
            self.exchange.open_account(acct.name, acct.balances)
        self.params = getattr(self.config, "server", None)
        self.market_params = dict(getattr(self.config, "market", None) or {})
        self.background: BackgroundMarket | None = None
        if self.market_params:
            self.background = BackgroundMarket(self.exchange, self.market_params, seed=seed)
            # Nobody connects to the background market's accounts and their events are not traced
            # (route()): the engine need not build them (most of what the background market costs).
            self.exchange.quiet_accounts = frozenset(
                {self.background.account, self.background.taker_account} - self._traced_accounts)
        self.ratelimiter = RateLimiter(
            _param(self.params, "rate_limit_per_minute_key", 2000),
            _param(self.params, "rate_limit_per_minute_ip", 1200),
            _route_limits(_param(self.params, "route_limits_per_second", None)),
        )
        # [INF] VALR's timestamp tolerance is undocumented: +-60 s by default.
        self.timestamp_window_ms = int(float(_param(self.params, "timestamp_window_s", 60.0)) * 1000)
        # refuse a GET signed without its query string (AuthOk.query_unsigned) instead of tracing it
        self.strict_signatures = bool(_param(self.params, "strict_signatures", False))
        self.engine_latency_s = float(_param(self.params, "engine_latency_s", 0.0))
        self.max_frame_bytes = int(_param(self.params, "max_frame_bytes", 64 * 1024))
        self.ws_send_queue_bytes = int(_param(self.params, "ws_send_queue_bytes", WS_SEND_QUEUE_BYTES))
        self._outboxes: dict[str, _Outbox] = {}  # connection id -> its outbound queue and writer
        self.idle_timeout_s: float | None = _param(self.params, "idle_timeout_s", None) or None
        self.book_depth = int(_param(self.params, "book_depth", 40))
        # "the top 40 bids and asks" [C-off Postman WebSocket "Trade"]
        self.ws_book_depth = int(_param(self.params, "ws_book_depth", 40))
        self.ws_rate_limits: dict[str, int] = dict(_param(self.params, "ws_rate_limits_per_second", {}) or {})
        self.mark_price_interval_s = float(_param(self.params, "mark_price_interval_s", 5.0))
        # [INF] the reference currency of balances: configurable; by default the first pair's quote
        pairs = list(self.config.pairs)
        self.reference_currency = str(_param(self.params, "reference_currency", None)
                                      or (pairs[0].quote if pairs else "ZAR"))
        self._full_feeds: dict[str, _BookFeed] = {}  # pair -> FULL_ORDERBOOK_UPDATE feed
        self._l1_feeds: dict[str, _BookFeed] = {}  # pair -> OB_L1_DIFF feed
        self._mark_task: asyncio.Task | None = None
        self._batch_ids = itertools.count(1)  # [INF] VALR's batchId is a large number; a counter here
        self.secrets_by_key: dict[str, tuple[str, str]] = {
            a.api_key: (a.name, a.api_secret) for a in self.config.accounts
        }
        # Sub-account ids each account owns. [INF] a sub-account acts on its parent account's
        # orders and balances: sub-accounts are not modelled as separate exchange accounts.
        self.subaccounts: dict[str, set[str]] = {
            a.name: set(getattr(a, "subaccounts", None) or ()) for a in self.config.accounts
        }
        self.conns: dict[str, WsConn] = {}
        self._conn_ids = {"account": itertools.count(1), "trade": itertools.count(1), "rest": itertools.count(1)}
        self._tasks: set[asyncio.Task] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._wake = _Wakeup()
        self._stopping = asyncio.Event()
        self._buckets: dict[str, _Bucket] = {}
        # fills per account, oldest first: the latest ACCOUNT_TRADES_KEPT (trade history), so a long run stays flat
        self.account_trades: dict[str, collections.deque[AccountTrade]] = {}
        self._runner: web.AppRunner | None = None
        self._dispatcher: asyncio.Task | None = None
        self._market_task: asyncio.Task | None = None
        self.host = "127.0.0.1"
        self.port = 0
        # Playback (replay/playback.py): while set, the capture answers the client; the
        # simulated exchange takes over on a divergence when on_divergence is "simulate".
        self.playback = playback
        self.on_divergence = on_divergence
        self.divergence: Any = None
        self.diverged = asyncio.Event()
        self._releases: SortedKeyList = SortedKeyList(key=lambda r: (r[0], r[1]))
        self._release_seq = itertools.count()
        self._closing: list[asyncio.Task] = []
        self.app = self._make_app()

    # --- lifecycle ---------------------------------------------------------------------
    def _make_app(self) -> web.Application:

        app = web.Application(middlewares=[rest.middleware], client_max_size=1024 * 1024)
        app[FAKE] = self
        app.router.add_get("/ws/account", ws_account.handle)
        app.router.add_get("/ws/trade", ws_trade.handle)
        rest.add_routes(app)
        return app

    @property
    def credentials(self) -> list:
        return list(self.config.accounts)

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_account_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws/account"

    @property
    def ws_trade_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws/trade"

    @property
    def stopping(self) -> asyncio.Event:
        return self._stopping

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.clock.monotonic()  # fix the clock's origin now
        from .http_errors import JsonErrorRunner  # aiohttp's own error answers in VALR's JSON shape

        self._runner = JsonErrorRunner(self.app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        addresses = self._runner.addresses
        self.host = host
        self.port = int(addresses[0][1]) if addresses else port
        self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="valr-dispatcher")
        if self.background is not None and self.playback is None:
            self._start_background()

    def _start_background(self) -> None:
        if self.background is not None:
            self.route(self.background.start(self.now_ms()) or [])
            interval = min(float(mp.step_interval_s) for mp in self.market_params.values())
            self._market_task = asyncio.create_task(self._market_loop(interval), name="valr-market")

    async def stop(self) -> None:
        self._stopping.set()
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for task in (self._market_task, self._dispatcher, self._mark_task):
            if task is not None:
                task.cancel()
        # 1001 "going away"; concurrently, each bounded by the WebSocketResponse close timeout.
        # The disconnects are traced first, in connection order, so that a trace does not
        # depend on which close handshake happens to finish first.
        closing = list(self.conns.values())
        for conn in closing:
            conn.server_close_code = 1001
            self.unregister(conn, 1001)
        await asyncio.gather(*(self._close_ws(c, 1001) for c in closing))
        tasks = [t for t in (self._market_task, self._dispatcher, self._mark_task) if t is not None] + list(self._tasks)
        for task in self._tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeValr":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def spawn(self, coro: Any, name: str | None = None) -> asyncio.Task:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- time and trace ------------------------------------------------------------------
    def now(self) -> float:
        return self.clock.monotonic()

    def now_ms(self) -> int:
        return self.clock.epoch_ms()

    def record(self, conn: str, dir: str, kind: str, type: str, data: Any) -> None:
        if self.trace is not None:
            self.trace.record(conn, dir, kind, type, data)

    def next_batch_id(self) -> int:
        return next(self._batch_ids)

    def next_conn_id(self, kind: str) -> str:
        return f"{kind}-{next(self._conn_ids[kind])}"

    # --- connections ---------------------------------------------------------------------
    def register(self, conn: WsConn) -> None:
        self.conns[conn.id] = conn
        box = self._outboxes[conn.id] = _Outbox()
        box.writer = self.spawn(self._write_loop(conn, box), name=f"writer-{conn.id}")
        self.schedule.connection_opened(self.now(), conn.id)
        self.record(conn.id, "local", "ws", "CONNECT", {"path": conn.path, "code": None, "account": conn.account})
        if self.playback is not None:
            self.release(self.playback.on_connect(self.now(), conn.kind))
            self._wake.set()  # a trade connection may have started the market feed

    def unregister(self, conn: WsConn, code: int | None) -> None:
        if self.conns.pop(conn.id, None) is None:
            return
        conn.closed = True
        box = self._outboxes.pop(conn.id, None)
        if box is not None and box.writer is not None:
            box.writer.cancel()
        self.schedule.connection_closed(conn.id)
        by_server = conn.server_close_code is not None
        self.record(conn.id, "local", "ws", "DISCONNECT", {
            "path": conn.path, "code": conn.server_close_code if by_server else code,
            "by": "server" if by_server else "client", "account": conn.account})
        if conn.kind == "account" and conn.cancel_on_disconnect and conn.account and not self._stopping.is_set():
            ids, events = self.exchange.cancel_all(self.now_ms(), conn.account)
            self.route(events)

    async def _close_ws(self, conn: WsConn, code: int) -> None:
        if conn.server_close_code is None:
            conn.server_close_code = code
        try:
            # bounded: a peer that does not read never drains the close frame (aiohttp then drops
            # the transport)
            await asyncio.wait_for(conn.ws.close(code=code), CLOSE_BOUND_S)
        except Exception:  # a dead transport: nothing left to close
            log.debug("closing %s failed", conn.id, exc_info=True)

    async def _write_loop(self, conn: WsConn, box: _Outbox) -> None:
        """Write ``conn``'s frames in order as the dispatcher queues them (``_enqueue``); trace each
        once it is handed to the socket."""
        while True:
            if not box.frames:
                box.ready.clear()
                await box.ready.wait()
                continue
            text, msg_type, message = box.frames.popleft()
            if text is None:  # a scheduled disconnect, after everything queued before it
                self.disconnect_later(conn, int(msg_type))
                return
            box.chars -= len(text)
            try:
                await conn.ws.send_str(text)
            except Exception:  # the peer went away; the reader will unregister it
                log.debug("send to %s failed", conn.id, exc_info=True)
                box.dead = True
                box.frames.clear()
                return
            if self.trace is not None:
                # a trace holds parsed JSON (it must stay a capture show and checks read)
                self.record(conn.id, "in", "ws", msg_type, message.value if isinstance(message, RawFrame) else message)

    def _enqueue(self, conn: WsConn, text: str, msg_type: str, message: Any) -> None:
        """Hand one due frame to ``conn``'s writer; a connection with more than
        ``ws_send_queue_bytes`` waiting is too slow: it is disconnected (SLOW_CONSUMER)."""
        box = self._outboxes.get(conn.id)
        if box is None or box.dead:
            return
        if box.chars + len(text) > self.ws_send_queue_bytes:
            box.dead = True
            queued = box.chars
            box.frames.clear()
            box.chars = 0
            if box.writer is not None:
                box.writer.cancel()
            self.record("run", "local", "meta", "SLOW_CONSUMER", {
                "conn": conn.id, "path": conn.path, "account": conn.account, "queued_chars": queued,
                "limit": self.ws_send_queue_bytes, "code": SLOW_CONSUMER_CLOSE_CODE})
            log.warning("%s does not read: %d characters waiting; disconnected (%d)", conn.id, queued,
                        SLOW_CONSUMER_CLOSE_CODE)
            conn.server_close_code = SLOW_CONSUMER_CLOSE_CODE
            self.disconnect_later(conn, SLOW_CONSUMER_CLOSE_CODE)
            return
        box.frames.append((text, msg_type, message))
        box.chars += len(text)
        box.ready.set()

    def send(self, conn: WsConn, message: dict[str, Any], not_before: float | None = None) -> float | None:
        """Queue one outbound message for ``conn`` (through the delivery schedule); with
        ``not_before`` (a time ``send`` returned), no earlier than that. Returns when the message
        is due, or None (dropped, or a closed connection)."""
        if conn.closed:
            return None
        if isinstance(message, RawFrame):
            # a recorded frame, sent as recorded; a perturbation that looks inside messages
            # (a match predicate) gets it parsed
            msg_type = message.msg_type
            if self._predicates():
                message = message.value
        else:
            msg_type = codec.message_type(message)
        if not_before is None:
            at = self.schedule.push(self.now(), conn.id, msg_type, message)
        else:
            at = self.schedule.push(self.now(), conn.id, msg_type, message, not_before=not_before)
        self._wake.set()
        return at

    def _predicates(self) -> bool:
        """Whether the schedule inspects message contents: a perturbation's predicate, or an ordering
        constraint (it reads the order ids of account messages)."""
        if getattr(self.schedule, "orderings", None):
            return True
        perts = getattr(self.schedule, "perturbations", None) or ()
        return any(getattr(getattr(p, "match", None), "predicate", None) is not None for p in perts)

    def disconnect_later(self, conn: WsConn, code: int) -> None:
        self.spawn(self._close_ws(conn, code), name=f"close-{conn.id}")

    async def _dispatch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        # On a virtual clock (looptime) time moves only while every task waits: yielding in a
        # loop would spin forever there, so the early wake-up is for real clocks only.
        real_time = not getattr(loop, "looptime_on", False)
        while True:
            self._wake.clear()
            # One microsecond of tolerance: a virtual-time loop (looptime) keeps time in whole
            # microseconds, so a timer for t may fire at t rounded down; without it the loop
            # would wake, find nothing due and spin without time moving on.
            horizon = loop.time() + CLOCK_RESOLUTION_S
            if self.playback is not None:
                # due now: straight to the trade connections (their order among themselves is kept)
                market = self.playback.due_market(horizon, MARKET_BATCH)
                trade_conns = ([c.id for c in self.conns.values() if c.kind == "trade" and not c.closed]
                               if market else [])
                if trade_conns:
                    # as send() does, once per batch: recorded frames go out as recorded unless
                    # a perturbation looks inside messages
                    parse = self._predicates()
                    now = self.now()
                    push = self.schedule.push
                    for rel in market:
                        message = rel.message
                        if isinstance(message, RawFrame):
                            msg_type = message.msg_type
                            if parse:
                                message = message.value
                        else:
                            msg_type = codec.message_type(message)
                        for conn_id in trade_conns:
                            push(now, conn_id, msg_type, message)
            self._send_released(horizon)
            due = self.schedule.pop_due(horizon)
            for delivery in due:
                conn = self.conns.get(delivery.conn)
                if conn is None or conn.closed:
                    continue
                if delivery.kind == "disconnect":
                    # A server-side drop: close code 1011 unless the delivery names one
                    # ({"code": N} or an int). [INF] VALR's code for such drops is unknown.
                    code = 1011
                    if isinstance(delivery.message, dict):
                        code = int(delivery.message.get("code", code))
                    elif isinstance(delivery.message, int):
                        code = delivery.message
                    # after the frames queued before it (the connection's writer closes)
                    box = self._outboxes.get(conn.id)
                    if box is not None and not box.dead:
                        box.frames.append((None, code, None))
                        box.ready.set()
                    continue
                message = delivery.message
                if isinstance(message, RawFrame):
                    text = message.text  # pre-serialised: sent as recorded
                else:
                    text = _compact_json(message)
                # each connection's own writer sends it: a client that does not read stalls nobody else
                self._enqueue(conn, text, delivery.msg_type, message)
            if due:
                # let the writers write what was just queued before looking for more
                await asyncio.sleep(0)
                continue
            times = [self.schedule.next_at()]
            if self._releases:
                times.append(self._releases[0][0])
            if self.playback is not None:
                times.append(self.playback.next_market_at())
            pending = [x for x in times if x is not None]
            next_at = min(pending) if pending else None
            if next_at is not None and real_time and next_at - loop.time() <= EARLY_WAKE_S:
                # The last stretch before a delivery on a real clock: yield to the loop (I/O
                # keeps flowing) instead of sleeping, since a timer would fire up to a
                # millisecond late (epoll waits in whole milliseconds).
                await asyncio.sleep(0)
                continue
            timeout = None if next_at is None else max(CLOCK_RESOLUTION_S, next_at - loop.time())
            if timeout is not None and real_time:
                timeout -= EARLY_WAKE_S
            await self._wake.wait(timeout)

    # --- playback ------------------------------------------------------------------------
    def release(self, releases: Iterable[Any]) -> None:
        """Queue playback releases (replay.playback.Release); the dispatcher sends each at its
        time through the delivery schedule, in (time, order of release) order."""
        added = False
        for rel in releases:
            self._releases.add((rel.at, next(self._release_seq), rel))
            added = True
        if added:
            self._wake.set()

    def _send_released(self, horizon: float) -> None:
        while self._releases and self._releases[0][0] <= horizon:
            _, _, rel = self._releases.pop(0)
            if rel.target == "event":
                self.record("exchange", "local", "event", rel.msg_type, rel.message)
                continue
            for conn in list(self.conns.values()):
                if conn.kind == rel.target and not conn.closed:
                    self.send(conn, rel.message)

    def diverge(self, divergence: Any) -> bool:
        """The live client left the capture. Records a ``DIVERGENCE`` meta record; then either
        hands over to the simulated exchange (True: the caller handles the request normally)
        or closes every client connection and sets ``diverged`` (False)."""
        if self.divergence is None:
            self.divergence = divergence
            self.record("run", "local", "meta", "DIVERGENCE",
                        {**divergence.to_dict(), "on_divergence": self.on_divergence})
            log.warning("%s", divergence)
        if self.on_divergence == "simulate":
            self.handover()
            return True
        self.diverged.set()
        for conn in list(self.conns.values()):
            # [INF] 1011 "internal error": the replay cannot go on (VALR has no such case).
            self._closing.append(self.spawn(self._close_ws(conn, 1011), name=f"close-{conn.id}"))
        return False

    async def closed_after_divergence(self) -> None:
        """Wait until the connections a ``stop`` divergence closed are closed."""
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def handover(self) -> None:
        """The simulated exchange takes over from the playback: it is given the orders the
        replayed traffic left open (same order ids and customerOrderIds), then runs the
        background market as ``serve`` would. Releases already due keep going out."""
        playback, self.playback = self.playback, None
        if playback is None:
            return
        from replay.exchange.model import LimitRequest, Side

        account = self.config.accounts[0].name if self.config.accounts else "demo"
        ts = self.now_ms()
        # The capture may come from a fake server with this very seed: draw new order ids from
        # another sequence so that none repeats a replayed one.
        self.exchange.reseed_ids(f"valr-replay handover {self.seed}")
        self._start_background()
        seeded = 0
        for o in playback.open_orders(self.now()):
            try:
                side = Side(str(o.get("orderSide", "")).lower())
                pair = str(o.get("currencyPair", "")).upper()
                qty = Decimal(str(o.get("remainingQuantity") or o.get("originalQuantity")))
                price = Decimal(str(o.get("originalPrice")))
                req = LimitRequest(pair, side, qty, price, post_only=False,
                                   customer_order_id=o.get("customerOrderId"))
                events = self.exchange.adopt_limit(ts, account, req, str(o["orderId"]))
            except Exception:  # one unusable order must not stop the handover
                log.exception("handover: cannot seed order %r", o)
                continue
            seeded += 1
            for event in events:  # the truth for the trace; the client already knows these orders
                if isinstance(event, ACCOUNT_EVENTS) and event.account in self._traced_accounts:
                    self.record("exchange", "local", "event", type(event).__name__, plain(event))
        self.record("run", "local", "meta", "HANDOVER", {"seeded_orders": seeded, **playback.summary()})
        for pair in self.exchange.pairs:
            self.publish_book(pair)

    # --- commands and events -------------------------------------------------------------
    def submit(self, command: str, account: str, request: Any, conn_id: str) -> Submitted:
        """Submit one command; schedule its processing. ExchangeError propagates (a sync refusal)."""
        ts = self.now_ms()
        if command == "PLACE_LIMIT":
            sub = self.exchange.submit_limit(ts, account, request)
        elif command == "PLACE_MARKET":
            sub = self.exchange.submit_market(ts, account, request)
        elif command == "PLACE_STOP_LIMIT":
            sub = self.exchange.submit_stop_limit(ts, account, request)
        elif command == "CANCEL_ORDER":
            sub = self.exchange.submit_cancel(ts, account, request)
        elif command == "MODIFY_ORDER":
            sub = self.exchange.submit_modify(ts, account, request)
        else:  # pragma: no cover - programming error
            raise ValueError(f"unknown command {command!r}")
        self.record("exchange", "local", "event", "CommandSubmitted", {
            "ts_ms": ts, "account": account, "command": command, "order_id": sub.order_id,
            "customer_order_id": sub.customer_order_id, "conn": conn_id,
        })
        if command.startswith("PLACE") and sub.order_id is not None and hasattr(self.schedule, "note_order"):
            self.schedule.note_order(self.now(), sub.order_id)
        # The config's fixed engine latency plus the schedule's (latency model, perturbations).
        delay = max(0.0, self.engine_latency_s + float(self.schedule.engine_delay(self.now(), command)))
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def run() -> None:
            self._timers.discard(handle)
            self._process_next()

        handle = loop.call_at(loop.time() + delay, run)
        self._timers.add(handle)
        return sub

    def _process_next(self) -> None:
        if self._stopping.is_set():
            return
        try:
            events = self.exchange.process_next(self.now_ms())
        except Exception:
            log.exception("exchange.process_next failed")
            return
        self.route(events)

    async def _market_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                events = self.background.step(self.now_ms()) if self.background else []
            except Exception:
                log.exception("background market step failed")
                continue
            self.route(events or [])

    @property
    def _traced_accounts(self) -> frozenset[str]:
        names = self._traced_names
        if names is None or names[0] is not self.config.accounts:
            names = self._traced_names = (self.config.accounts, frozenset(a.name for a in self.config.accounts))
        return names[1]

    def route(self, events: Iterable[Any]) -> None:
        """Record events and turn them into stream messages for the right connections."""
        books: dict[str, BookChanged] = {}  # pair -> the batch's last change of its book
        traced = self._traced_accounts
        traced_all = self.trace is not None
        targets_of: dict[str, list[WsConn]] = {}  # account -> its account connections (none open or close here)
        for event in events:
            account_event = isinstance(event, ACCOUNT_EVENTS)
            # The background market's own account events are not traced: nobody connects to
            # its accounts and they would make up nearly all of a trace.
            # A BookChanged is recorded once per pair per batch, below, where the book is published:
            # the background market's ladder changes the book some 80 times a simulated second,
            # and one record per change made up most of a trace.
            if traced_all and (not account_event or event.account in traced) and type(event) is not BookChanged:
                self.record("exchange", "local", "event", type(event).__name__, plain(event))
            if account_event:
                spec = None
                if isinstance(event, AccountTrade):
                    spec = self.exchange.pairs.get(event.trade.pair)
                    fills = self.account_trades.get(event.account)
                    if fills is None:
                        fills = self.account_trades[event.account] = collections.deque(maxlen=ACCOUNT_TRADES_KEPT)
                    fills.append(event)
                targets = targets_of.get(event.account)
                if targets is None:
                    targets = targets_of[event.account] = [
                        c for c in self.conns.values() if c.kind == "account" and c.account == event.account]
                if not targets:
                    continue
                for message in codec.account_messages(event, spec, self.valuation):
                    mtype = message["type"]
                    for conn in targets:
                        if mtype not in conn.unsubscribed:
                            self.send(conn, message)
            elif isinstance(event, PublicTrade):
                trade = event.trade
                # partial binds this event's trade and bucket values; the message is still built lazily
                self._to_subscribers("NEW_TRADE", trade.pair, functools.partial(codec.new_trade_message, trade))
                bucket = self._update_bucket(trade)
                self._to_subscribers(
                    "NEW_TRADE_BUCKET", trade.pair,
                    functools.partial(codec.trade_bucket_message, trade.pair, bucket.start_ms, 60, bucket.open,
                                      bucket.high, bucket.low, bucket.close, bucket.volume),
                )
            elif isinstance(event, BookChanged):
                books[event.pair] = event
        for pair, changed in books.items():  # coalesced: one book and one summary per pair per batch
            if traced_all:
                self.record("exchange", "local", "event", "BookChanged", plain(changed))
            self.publish_book(pair)

    def publish_book(self, pair: str, conn: WsConn | None = None) -> None:
        depth = self.ws_book_depth
        self._to_subscribers("AGGREGATED_ORDERBOOK_UPDATE", pair,
                             lambda: codec.book_update_message(self.exchange.book(pair, depth), depth), conn)
        self._to_subscribers("MARKET_SUMMARY_UPDATE", pair,
                             lambda: codec.market_summary_message(self.exchange.market_summary(pair)), conn)
        if conn is None:
            self._publish_full_diff(pair)
            self._publish_l1_diff(pair)

    # --- the account stream's state on connect ----------------------------------------------
    def valuation(self, currency: str) -> tuple[str, Decimal | None]:
        """``currency``'s price in the reference currency (BALANCE_UPDATE's totalInReference):
        1 for the reference currency itself, else the mark price of the pair that joins them
        (inverted for a pair quoted the other way), else None [INF]."""
        ref = self.reference_currency
        if currency == ref:
            return ref, Decimal(1)
        for spec in self.exchange.pairs.values():
            if spec.base == currency and spec.quote == ref:
                return ref, codec.mark_price(self.exchange.market_summary(spec.symbol))
            if spec.base == ref and spec.quote == currency:
                price = codec.mark_price(self.exchange.market_summary(spec.symbol))
                return ref, (Decimal(1) / price if price else None)
        return ref, None

    def send_connect_snapshot(self, conn: WsConn, after: float | None = None) -> None:
        """What VALR sends when an account connection is authenticated: one BALANCE_UPDATE per
        asset held, then one OPEN_ORDERS_UPDATE with every open order of the account [C-off
        Postman WebSocket "Account / Read": "On connection and authentication ... We will send
        one BALANCE_UPDATE message for each asset held and one OPEN_ORDERS_UPDATE message"; the
        changelog of 31 May 2020]. "Held" is read as a non-zero total [INF]; the order of the
        two kinds is the sentence's [INF, medium]. Each goes through the delivery schedule like
        any message (its type's latency, the perturbations), but none goes out before the one
        VALR writes before it: each is held behind the previous (``after``: AUTHENTICATED's time),
        so latency can delay the sequence, not reorder it [INF: one handler writes them in turn]."""
        account = conn.account
        if account is None:
            return
        now_ms = self.now_ms()
        messages = [codec.balance_update_message(b, b.updated_ms or now_ms, self.valuation)
                    for b in self.exchange.balances(account) if b.total != 0]
        messages.append(codec.open_orders_message(self.exchange.open_orders(account)))
        for message in messages:
            at = self.send(conn, message, not_before=after)
            if at is not None:
                after = at

    def ws_rate_ok(self, conn: WsConn, command: str) -> bool:
        """Count one account WebSocket write command; False (and count nothing) past the
        connection's per-second limit for its kind."""
        kind = WS_RATE_KINDS.get(command)
        limit = self.ws_rate_limits.get(kind or "")
        if kind is None or not limit:
            return True
        second = self.now_ms() // 1000
        window, n = conn.rate_counts.get(kind, (second, 0))
        if window != second:
            n = 0
        if n >= limit:
            return False
        conn.rate_counts[kind] = (second, n + 1)
        return True

    # --- sequenced book feeds (FULL_ORDERBOOK_UPDATE, OB_L1_DIFF) ----------------------------
    def _subscribers(self, event: str, pair: str) -> list[WsConn]:
        out = []
        for conn in self.conns.values():
            if conn.kind != "trade" or conn.closed or event not in conn.subscriptions:
                continue
            pairs = conn.subscriptions[event]
            if pairs is None or pair in pairs:
                out.append(conn)
        return out

    def _full_state(self, pair: str) -> dict:
        bids, asks = self.exchange.book_orders(pair)
        state = {}
        for side, levels in (("bid", bids), ("ask", asks)):
            for price, orders in levels:
                for oid, qty in orders:
                    state[oid] = (side, price, qty)
        return state

    def _l1_state(self, pair: str) -> dict:
        bids, asks = self.exchange.book_levels(pair)
        return {**{("bid", p): q for p, q in bids}, **{("ask", p): q for p, q in asks}}

    def _full_feed(self, pair: str) -> _BookFeed:
        feed = self._full_feeds.get(pair)
        if feed is None:
            # [INF] a feed starts at the book's own change counter; only differences count after
            feed = self._full_feeds[pair] = _BookFeed(self.exchange.book(pair, 0).sequence, self._full_state(pair))
        return feed

    def _l1_feed(self, pair: str) -> _BookFeed:
        feed = self._l1_feeds.get(pair)
        if feed is None:
            feed = self._l1_feeds[pair] = _BookFeed(self.exchange.book(pair, 0).sequence, self._l1_state(pair))
        return feed

    def send_full_snapshot(self, conn: WsConn, pair: str) -> None:
        """FULL_ORDERBOOK_SNAPSHOT of ``pair`` to a new subscriber, at the feed's sequence number."""
        feed = self._full_feed(pair)
        bids, asks = self.exchange.book_orders(pair)
        book = self.exchange.book(pair, 0)
        self.send(conn, codec.full_book_message("FULL_ORDERBOOK_SNAPSHOT", pair, book.last_change_ms, asks, bids,
                                                feed.sequence, codec.full_book_checksum(bids, asks)))

    def send_l1_snapshot(self, conn: WsConn, pair: str) -> None:
        """OB_L1_SNAPSHOT of ``pair`` (the whole aggregated book) to a new subscriber."""
        feed = self._l1_feed(pair)
        bids, asks = self.exchange.book_levels(pair)
        book = self.exchange.book(pair, 0)
        self.send(conn, codec.l1_book_message("OB_L1_SNAPSHOT", pair, book.last_change_ms, asks, bids,
                                              feed.sequence, codec.l1_book_checksum(bids, asks)))

    def _publish_full_diff(self, pair: str) -> None:
        """The orders that changed since the feed's last message, as FULL_ORDERBOOK_UPDATE: the
        sequence number grows by the number of orders listed [C-off: "adding the number of orders
        in an update ... to the previous sequence number"]. A pair nobody follows has no feed."""
        conns = self._subscribers("FULL_ORDERBOOK_UPDATE", pair)
        if not conns:
            self._full_feeds.pop(pair, None)
            return
        feed = self._full_feed(pair)
        new = self._full_state(pair)
        changed: dict[tuple[str, Decimal], list[tuple[str, Decimal]]] = {}
        for oid, (side, price, _qty) in feed.state.items():
            if oid not in new or new[oid][1] != price:
                changed.setdefault((side, price), []).append((oid, Decimal(0)))
        for oid, (side, price, qty) in new.items():
            old = feed.state.get(oid)
            if old is None or old[1] != price or old[2] != qty:
                changed.setdefault((side, price), []).append((oid, qty))
        if not changed:
            return
        feed.state = new
        feed.sequence += sum(len(v) for v in changed.values())
        bids = sorted(((p, o) for (side, p), o in changed.items() if side == "bid"), key=lambda x: -x[0])
        asks = sorted(((p, o) for (side, p), o in changed.items() if side == "ask"), key=lambda x: x[0])
        all_bids, all_asks = self.exchange.book_orders(pair)
        book = self.exchange.book(pair, 0)
        message = codec.full_book_message("FULL_ORDERBOOK_UPDATE", pair, book.last_change_ms, asks, bids,
                                          feed.sequence, codec.full_book_checksum(all_bids, all_asks))
        for conn in conns:
            self.send(conn, message)

    def _publish_l1_diff(self, pair: str) -> None:
        """The price levels that changed since the feed's last message, as OB_L1_DIFF, ``sq`` one
        more than the last [C-off: "the sequence number is expected to be exactly 1 higher than
        the previous message"]."""
        conns = self._subscribers("OB_L1_DIFF", pair)
        if not conns:
            self._l1_feeds.pop(pair, None)
            return
        feed = self._l1_feed(pair)
        new = self._l1_state(pair)
        changed = {key: Decimal(0) for key in feed.state if key not in new}
        changed.update({key: q for key, q in new.items() if feed.state.get(key) != q})
        if not changed:
            return
        feed.state = new
        feed.sequence += 1
        bids = sorted(((p, q) for (side, p), q in changed.items() if side == "bid"), key=lambda x: -x[0])
        asks = sorted(((p, q) for (side, p), q in changed.items() if side == "ask"), key=lambda x: x[0])
        all_bids, all_asks = self.exchange.book_levels(pair)
        book = self.exchange.book(pair, 0)
        message = codec.l1_book_message("OB_L1_DIFF", pair, book.last_change_ms, asks, bids, feed.sequence,
                                        codec.l1_book_checksum(all_bids, all_asks))
        for conn in conns:
            self.send(conn, message)

    # --- MARK_PRICE_UPDATE ---------------------------------------------------------------------
    def send_mark_price(self, pair: str, conn: WsConn | None = None) -> None:
        price = codec.mark_price(self.exchange.market_summary(pair))
        for target in ([conn] if conn is not None else self._subscribers("MARK_PRICE_UPDATE", pair)):
            self.send(target, codec.mark_price_message(pair, price))

    def mark_price_subscribed(self) -> None:
        """Start the MARK_PRICE_UPDATE cadence (every ``mark_price_interval_s``, 5 s per VALR's docs
        [C-off]) on the first subscription; it stops itself once nobody follows."""
        if self._mark_task is None or self._mark_task.done():
            self._mark_task = asyncio.create_task(self._mark_price_loop(), name="valr-mark-price")

    async def _mark_price_loop(self) -> None:
        while True:
            await asyncio.sleep(self.mark_price_interval_s)
            followed = False
            for pair in self.exchange.pairs:
                if self._subscribers("MARK_PRICE_UPDATE", pair):
                    followed = True
                    self.send_mark_price(pair)
            if not followed:
                return

    def _to_subscribers(self, event: str, pair: str, build: Any, only: WsConn | None = None) -> None:
        message = None
        conns = [only] if only is not None else list(self.conns.values())
        for conn in conns:
            if conn.kind != "trade" or event not in conn.subscriptions:
                continue
            pairs = conn.subscriptions[event]
            if pairs is not None and pair not in pairs:
                continue
            if message is None:
                message = build()
            self.send(conn, message)

    def _update_bucket(self, trade: Any) -> _Bucket:
        # Keep it simple: a running 60 s bucket per pair, re-published on every trade
        # [INF: VALR publishes NEW_TRADE_BUCKET per period; exact cadence unknown].
        start = trade.ts_ms - trade.ts_ms % 60_000
        bucket = self._buckets.get(trade.pair)
        if bucket is None or bucket.start_ms != start:
            bucket = _Bucket(start, trade.price, trade.price, trade.price, trade.price, Decimal(0))
            self._buckets[trade.pair] = bucket
        bucket.high = max(bucket.high, trade.price)
        bucket.low = min(bucket.low, trade.price)
        bucket.close = trade.price
        bucket.volume += trade.quantity
        return bucket


def _route_limits(value: Any) -> Any:
    """ServerParams may give route limits as a mapping "METHOD /glob" -> n or as triples."""
    if value is None:
        return DEFAULT_ROUTE_LIMITS
    if isinstance(value, dict):
        out = []
        for key, limit in value.items():
            method, _, pattern = str(key).partition(" ")
            if not pattern:
                method, pattern = "*", method
            out.append((method, pattern, int(limit)))
        return tuple(out)
    return tuple(value)
