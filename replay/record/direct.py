"""Direct recording: subscribe to VALR's streams ourselves and record every frame.

The trade stream (``/ws/trade``) is subscribed to AGGREGATED_ORDERBOOK_UPDATE,
MARKET_SUMMARY_UPDATE and NEW_TRADE for the pairs; no key is needed. With an API key and
secret the account stream (``/ws/account``) is recorded too (signed upgrade headers), and
the trade upgrade is signed as well (VALR drops unauthenticated trade sockets after 15 min).
Both streams send ``{"type":"PING"}`` every ``ping_interval`` s.

A lost upstream is retried with exponential backoff (``backoff_min`` doubling up to
``backoff_max``) and marked in the capture by ``meta`` ``GAP`` records with
``phase`` ``start`` (when it was lost) and ``end`` (when a new connection is up).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from typing import Any, Iterable
from urllib.parse import urlsplit

import aiohttp
from aiohttp import WSMsgType

from replay.auth import auth_headers
from replay.capture import CaptureWriter
from replay.clock import Clock

from .proxy import DEFAULT_UPSTREAM, MAX_FRAME, _describe, parse_frame, split_upstream
from .status import RecordSink, RecordStats, _wait

log = logging.getLogger(__name__)

TRADE_SUBSCRIPTIONS = ("AGGREGATED_ORDERBOOK_UPDATE", "MARKET_SUMMARY_UPDATE", "NEW_TRADE")


def subscribe_message(pairs: Iterable[str], events: Iterable[str] = TRADE_SUBSCRIPTIONS) -> dict[str, Any]:
    pairs = list(pairs)
    return {"type": "SUBSCRIBE", "subscriptions": [{"event": e, "pairs": pairs} for e in events]}


class DirectRecorder:
    """Records VALR's trade stream (and the account stream, given a key) into ``writer``.

    ``await run(stop_event)`` records until ``stop_event`` is set, then closes every
    connection and returns (the writer stays open for its owner to close).
    """

    def __init__(
        self,
        upstream: str = DEFAULT_UPSTREAM,
        pairs: Iterable[str] = ("BTCZAR",),
        writer: CaptureWriter | None = None,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        subaccount_id: str = "",
        clock: Clock | None = None,
        sink: RecordSink | None = None,
        ping_interval: float = 20.0,
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
        open_timeout: float = 10.0,
    ):
        self.upstream = upstream
        self.rest_base, self.ws_base = split_upstream(upstream)
        self.pairs = [p.upper() for p in pairs]
        if not self.pairs:
            raise ValueError("pairs: at least one pair is required")
        if bool(api_key) != bool(api_secret):
            raise ValueError("api_key and api_secret go together (set both or neither)")
        self.api_key = api_key or None
        self.api_secret = api_secret or None
        self.subaccount_id = subaccount_id
        self.clock = clock if clock is not None else (sink.clock if sink is not None else Clock())
        self.sink = sink if sink is not None else RecordSink(writer, self.clock)
        self.ping_interval = ping_interval
        self.backoff_min = backoff_min
        self.backoff_max = max(backoff_max, backoff_min)
        self.open_timeout = open_timeout
        self.errors: list[str] = []  # fatal problems of one stream (e.g. the key was refused)
        self._ids = {"account": itertools.count(1), "trade": itertools.count(1)}
        self._open: dict[str, aiohttp.ClientWebSocketResponse] = {}
        self._trade_unsigned = False

    @property
    def stats(self) -> RecordStats:
        return self.sink.stats

    @property
    def streams(self) -> list[str]:
        return ["trade"] + (["account"] if self.api_key else [])

    async def run(self, stop: asyncio.Event) -> None:
        self.clock.monotonic()  # fix the clock's origin now
        timeout = aiohttp.ClientTimeout(total=None, connect=self.open_timeout, sock_connect=self.open_timeout)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), timeout=timeout) as session:
            tasks = [asyncio.create_task(self._stream(session, kind, stop), name=f"record-{kind}")
                     for kind in self.streams]
            stopper = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
                if not stop.is_set():
                    # a stream ended by itself (refused key): keep the others until stop
                    pending = [t for t in tasks if not t.done()]
                    if pending:
                        await asyncio.wait([stopper, *pending], return_when=asyncio.FIRST_COMPLETED)
                    else:
                        await stopper
            finally:
                stop.set()
                stopper.cancel()
                for ws in list(self._open.values()):
                    await _quiet_close(ws)
                # A stream may be mid-connect: give it a moment to notice the stop, then cut it short.
                _, slow = await asyncio.wait(tasks, timeout=5.0)
                for task in slow:
                    task.cancel()
                done = await asyncio.gather(*tasks, return_exceptions=True)
                for result in done:
                    if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                        log.error("recorder stream failed: %s", result)
                        self.errors.append(f"stream failed: {_describe(result)}")

    # --- one stream, reconnecting -----------------------------------------------------------
    def _headers(self, path: str) -> dict[str, str]:
        if not self.api_key or not self.api_secret or (path.endswith("/trade") and self._trade_unsigned):
            return {}
        return auth_headers(self.api_key, self.api_secret, "GET", path, "", self.subaccount_id)

    async def _stream(self, session: aiohttp.ClientSession, kind: str, stop: asyncio.Event) -> None:
        url = f"{self.ws_base}/ws/{kind}"
        path = urlsplit(url).path
        record = self.sink.record
        delay = self.backoff_min
        gap: dict[str, Any] | None = None  # the open gap: {"conn", "since_ns"}
        attempt = 0
        while not stop.is_set():
            attempt += 1
            try:
                ws = await session.ws_connect(
                    url, headers=self._headers(path), autoping=True, heartbeat=None, max_msg_size=MAX_FRAME,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
                    compress=0,
                )
            except aiohttp.WSServerHandshakeError as exc:
                reason = f"upgrade refused: HTTP {exc.status} {exc.message}"
                if kind == "trade" and exc.status in (401, 403) and not self._trade_unsigned and self.api_key:
                    # The trade stream needs no key: go on without one.
                    self._trade_unsigned = True
                    record("run", "local", "meta", "AUTH_FAILED", {
                        "stream": kind, "status": exc.status,
                        "reason": f"{url}: the API key was refused ({exc.status}); trade stream continues unsigned"})
                    continue
                if kind == "account" and exc.status in (401, 403):
                    message = f"{url}: the API key was refused ({exc.status}); account stream not recorded"
                    self.errors.append(message)
                    record("run", "local", "meta", "AUTH_FAILED", {"stream": kind, "status": exc.status,
                                                                   "reason": message})
                    return
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                reason = f"connect failed: {_describe(exc)}"
            else:
                conn = f"{kind}-{next(self._ids[kind])}"
                self._open[conn] = ws
                try:
                    reason, got_frames = await self._session_loop(ws, conn, kind, path, gap, stop)
                finally:
                    self._open.pop(conn, None)
                    await _quiet_close(ws)
                    record(conn, "local", "ws", "DISCONNECT", {
                        "path": path, "code": ws.close_code, "by": "recorder" if stop.is_set() else "upstream"})
                gap = None
                if stop.is_set():
                    return
                if got_frames:
                    delay = self.backoff_min
                    attempt = 1
                gap = {"conn": conn, "since_ns": self.clock.elapsed_ns()}
                record("run", "local", "meta", "GAP", {"conn": conn, "stream": kind, "phase": "start",
                                                       "reason": reason})
                await _wait(stop, delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            # the connection attempt failed
            if stop.is_set():
                return
            if gap is None:
                gap = {"conn": None, "since_ns": self.clock.elapsed_ns()}
                record("run", "local", "meta", "GAP", {"conn": None, "stream": kind, "phase": "start",
                                                       "reason": reason})
            else:
                record("run", "local", "meta", "RETRY", {"stream": kind, "attempt": attempt, "reason": reason,
                                                         "next_delay_s": delay})
            await _wait(stop, delay)
            delay = min(delay * 2, self.backoff_max)

    async def _session_loop(self, ws: aiohttp.ClientWebSocketResponse, conn: str, kind: str, path: str,
                            gap: dict[str, Any] | None, stop: asyncio.Event) -> tuple[str, bool]:
        """Record one connection until it closes; returns (why it ended, whether frames arrived)."""
        record = self.sink.record
        record(conn, "local", "ws", "CONNECT", {"path": path, "code": None})
        if gap is not None:
            record("run", "local", "meta", "GAP", {
                "conn": gap["conn"], "stream": kind, "phase": "end", "resumed_conn": conn,
                "duration_ms": round((self.clock.elapsed_ns() - gap["since_ns"]) / 1e6, 3)})
        if kind == "trade":
            await self._send(ws, conn, subscribe_message(self.pairs))
        closed = asyncio.Event()
        pinger = asyncio.create_task(self._ping(ws, conn, closed), name=f"{conn}-ping")
        got_frames = False
        try:
            while True:
                msg = await ws.receive()
                if msg.type is WSMsgType.TEXT:
                    got_frames = True
                    mtype, obj = parse_frame(msg.data)
                    record(conn, "in", "ws", mtype, obj)
                elif msg.type is WSMsgType.BINARY:
                    got_frames = True
                    record(conn, "in", "ws", "BINARY", {"raw": f"<{len(msg.data)} bytes>"})
                elif msg.type is WSMsgType.ERROR:
                    return f"connection failed: {_describe(ws.exception())}", got_frames
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    if stop.is_set():
                        return "stopped", got_frames
                    code = ws.close_code if msg.type is not WSMsgType.CLOSE else msg.data
                    extra = f", {msg.extra!r}" if msg.type is WSMsgType.CLOSE and msg.extra else ""
                    return f"upstream closed the connection (code {code}{extra})", got_frames
        finally:
            closed.set()
            pinger.cancel()
            await asyncio.gather(pinger, return_exceptions=True)

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, conn: str, message: dict[str, Any]) -> None:
        text = json.dumps(message, separators=(",", ":"))
        try:
            await ws.send_str(text)
        except (ConnectionError, RuntimeError):
            return  # the receive loop sees the close
        self.sink.record(conn, "out", "ws", message.get("type", "UNTYPED"), message)

    async def _ping(self, ws: aiohttp.ClientWebSocketResponse, conn: str, closed: asyncio.Event) -> None:
        # VALR closes a socket after ~30 s without activity; HB pings every 20 s [C-off/LOG].
        while not closed.is_set():
            await _wait(closed, self.ping_interval)
            if closed.is_set() or ws.closed:
                return
            await self._send(ws, conn, {"type": "PING"})


async def _quiet_close(ws: aiohttp.ClientWebSocketResponse) -> None:
    if ws.closed:
        return
    try:
        await asyncio.wait_for(ws.close(code=1000), 5.0)
    except (ConnectionError, RuntimeError, TimeoutError, aiohttp.ClientError):
        pass
