"""The recording proxy: client <-> proxy <-> upstream VALR, both directions recorded.

REST (any method and path) and WebSocket upgrades (``/ws/account``, ``/ws/trade``, any other
path too) are forwarded to the upstream base URL. The client's signed headers pass through
byte for byte (the signature covers path + query + body, so the raw path, query and body are
forwarded as received); only hop-by-hop headers and ``Host`` are dropped. Every message is
recorded into the capture (scrubbed by the ``CaptureWriter``).

Low overhead on the WebSocket path: each pump forwards the original frame first and records
after, parsing the JSON once for the record and never re-serialising it for the forward.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import zlib
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

from replay.capture import CaptureWriter
from replay.clock import Clock

from .status import RecordSink, RecordStats

log = logging.getLogger(__name__)

DEFAULT_UPSTREAM = "https://api.valr.com"

# RFC 7230 6.1 hop-by-hop headers, plus Host (the upstream's own) and the length/encoding
# of the hop (aiohttp sets them for the body it sends).
HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "TE",
    "Trailer", "Trailers", "Transfer-Encoding", "Upgrade", "Host", "Content-Length",
))
# The WebSocket handshake's own headers: each hop negotiates its own.
WS_HANDSHAKE = frozenset(h.lower() for h in (
    "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions", "Sec-WebSocket-Accept",
    "Sec-WebSocket-Protocol",
))
MAX_FRAME = 16 * 1024 * 1024
MAX_BODY = 16 * 1024 * 1024


class UpstreamError(ValueError):
    """A bad upstream URL."""


def split_upstream(upstream: str) -> tuple[str, str]:
    """(REST base, WebSocket base) of an upstream base URL; http(s) or ws(s), no trailing slash.

    ``https://api.valr.com`` -> (``https://api.valr.com``, ``wss://api.valr.com``).
    """
    parts = urlsplit(upstream.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        raise UpstreamError(f"upstream: expected an http(s):// or ws(s):// base URL, got {upstream!r}")
    if parts.query or parts.fragment:
        raise UpstreamError(f"upstream: a base URL takes no query or fragment, got {upstream!r}")
    secure = scheme in ("https", "wss")
    path = parts.path.rstrip("/")
    rest = urlunsplit(("https" if secure else "http", parts.netloc, path, "", ""))
    ws = urlunsplit(("wss" if secure else "ws", parts.netloc, path, "", ""))
    return rest, ws


def forward_headers(headers: Any, *, websocket: bool = False) -> CIMultiDict[str]:
    """The request headers to send upstream: all but hop-by-hop ones and Host, values untouched."""
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        low = name.lower()
        if low in HOP_BY_HOP or (websocket and low in WS_HANDSHAKE):
            continue
        out.add(name, value)
    return out


def parse_frame(text: str) -> tuple[str, Any]:
    """(type, data) of a text frame for the record: parsed JSON, else ``{"raw": text}``."""
    try:
        obj = json.loads(text)
    except ValueError:
        return "RAW", {"raw": text}
    if isinstance(obj, dict):
        t = obj.get("type")
        return (t if isinstance(t, str) and t else "UNTYPED"), obj
    return "UNTYPED", obj


def parse_body(raw: bytes, content_encoding: str = "") -> Any:
    """A body for the record: parsed JSON where it is JSON, else text; None when empty."""
    enc = content_encoding.lower().strip()
    if enc in ("gzip", "x-gzip", "deflate"):
        try:
            wbits = 47 if enc != "deflate" else 15  # 47: gzip or zlib header, auto-detected
            raw = zlib.decompress(raw, wbits)
        except zlib.error:
            try:
                raw = zlib.decompress(raw, -15)  # raw deflate
            except zlib.error:
                return f"<{len(raw)} bytes, {enc}-encoded, undecodable>"
    elif enc and enc != "identity":
        return f"<{len(raw)} bytes, {enc}-encoded>"
    if not raw:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(raw)} bytes, binary>"
    try:
        return json.loads(text)
    except ValueError:
        return text


def valr_error(message: str) -> bytes:
    return json.dumps({"code": -1, "message": message}).encode()


class _WsPair:
    """One proxied WebSocket: the client side, the upstream side, and who closed first."""

    def __init__(self, conn: str, path: str, client: web.WebSocketResponse,
                 upstream: aiohttp.ClientWebSocketResponse):
        self.conn = conn
        self.path = path
        self.client = client
        self.upstream = upstream
        self.closed_by: str | None = None  # "client", "upstream" or "proxy"
        self.code: int | None = None


class RecordingProxy:
    """A recording proxy in front of ``upstream`` (a VALR base URL).

    ``await start(host, port)`` listens; the proxy's own URLs are ``rest_url``,
    ``ws_account_url`` and ``ws_trade_url``. ``stats`` counts messages per connection.
    ``await stop()`` closes every connection (clients get 1001) and the listener; the
    writer stays open (its owner closes it) so the caller can add final records.
    """

    def __init__(self, upstream: str, writer: CaptureWriter | None, *, clock: Clock | None = None,
                 sink: RecordSink | None = None):
        self.upstream = upstream
        self.rest_base, self.ws_base = split_upstream(upstream)
        self.writer = writer
        self.clock = clock if clock is not None else (sink.clock if sink is not None else Clock())
        self.sink = sink if sink is not None else RecordSink(writer, self.clock)
        self.host = "127.0.0.1"
        self.port = 0
        self._ids = {"rest": itertools.count(1), "account": itertools.count(1), "trade": itertools.count(1),
                     "ws": itertools.count(1)}
        self._pairs: set[_WsPair] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._stopping = False

    # --- public ---------------------------------------------------------------------------
    @property
    def stats(self) -> RecordStats:
        return self.sink.stats

    @property
    def rest_url(self) -> str:
        return f"http://{self._netloc}"

    @property
    def ws_account_url(self) -> str:
        return f"ws://{self._netloc}/ws/account"

    @property
    def ws_trade_url(self) -> str:
        return f"ws://{self._netloc}/ws/trade"

    @property
    def _netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def urls(self) -> dict[str, str]:
        return {"rest_url": self.rest_url, "ws_account_url": self.ws_account_url, "ws_trade_url": self.ws_trade_url}

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.clock.monotonic()  # fix the clock's origin now
        self._session = aiohttp.ClientSession(
            auto_decompress=False,  # forward bodies as the upstream encoded them
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            await self._session.close()
            self._runner = self._session = None
            raise
        sockets = getattr(site._server, "sockets", None) or []
        self.host = host
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        self._stopping = True
        for pair in list(self._pairs):
            if pair.closed_by is None:
                pair.closed_by = "proxy"
            await _quiet_close(pair.upstream, 1001)
            await _quiet_close(pair.client, 1001)
        if self._runner is not None:
            await self._runner.cleanup()  # waits for handlers (their pumps end on the closes above)
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> "RecordingProxy":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- routing --------------------------------------------------------------------------
    def _conn_id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids[kind])}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket" and request.method == "GET":
            return await self._ws(request)
        return await self._rest(request)

    # --- REST -----------------------------------------------------------------------------
    async def _rest(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        conn = self._conn_id("rest")
        raw_path = request.raw_path  # path + query exactly as the client sent them (signed)
        body = await request.read()
        path, _, query = raw_path.partition("?")
        rtype = f"{request.method} {request.path}"
        req_headers = dict(request.headers)
        self.sink.record(conn, "out", "rest", rtype, {
            "method": request.method, "path": path, "query": query, "headers": req_headers,
            "body": parse_body(body, request.headers.get("Content-Encoding", "")),
        })
        url = URL(self.rest_base + raw_path, encoded=True)
        try:
            async with self._session.request(
                request.method, url, headers=forward_headers(request.headers), data=body if body else None,
                allow_redirects=False, skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            ) as up:
                up_body = await up.read()
                status, reason, up_headers = up.status, up.reason, up.headers
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            message = f"upstream {self.rest_base} unreachable: {_describe(exc)}"
            resp = web.Response(status=502, body=valr_error(message), content_type="application/json")
            await resp.prepare(request)
            await resp.write_eof()
            self.sink.record(conn, "in", "rest", rtype, {
                "status": 502, "headers": {"Content-Type": "application/json"},
                "body": {"code": -1, "message": message}, "error": "upstream unreachable",
            })
            return resp
        out_headers: CIMultiDict[str] = CIMultiDict()
        for name, value in up_headers.items():
            if name.lower() not in HOP_BY_HOP:
                out_headers.add(name, value)
        resp = web.Response(status=status, reason=reason, body=up_body, headers=out_headers)
        delivered: str | None = None
        try:
            await resp.prepare(request)  # forward first ...
            await resp.write_eof()
        except (ConnectionError, RuntimeError) as exc:
            delivered = f"client gone before the reply was delivered: {_describe(exc)}"
        rec = {"status": status, "headers": dict(up_headers),  # ... record after
               "body": parse_body(up_body, up_headers.get("Content-Encoding", ""))}
        if delivered:
            rec["error"] = delivered
        self.sink.record(conn, "in", "rest", rtype, rec)
        return resp

    # --- WebSockets -----------------------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        tail = request.path.rstrip("/").rsplit("/", 1)[-1]
        kind = tail if tail in ("account", "trade") else "ws"
        url = URL(self.ws_base + request.raw_path, encoded=True)
        protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        try:
            upstream = await self._session.ws_connect(
                url, headers=forward_headers(request.headers, websocket=True), protocols=protocols,
                autoping=False, autoclose=False, max_msg_size=MAX_FRAME, compress=0,
            )
        except aiohttp.WSServerHandshakeError as exc:
            # The upstream refused the upgrade (e.g. 401 for a bad signature): hand its status on.
            # aiohttp does not keep the refusal's body, so the body is the proxy's own.
            status = exc.status or 502
            message = f"upstream refused the WebSocket upgrade: {status} {exc.message}"
            self._record_refusal(request, status, message)
            return web.Response(status=status, body=valr_error(message), content_type="application/json")
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            message = f"upstream {self.ws_base} unreachable: {_describe(exc)}"
            self._record_refusal(request, 502, message)
            self.sink.record("run", "local", "meta", "GAP", {"conn": None, "stream": kind, "path": request.path,
                                                             "reason": message})
            return web.Response(status=502, body=valr_error(message), content_type="application/json")

        client = web.WebSocketResponse(autoping=False, autoclose=False, max_msg_size=MAX_FRAME, compress=False,
                                       protocols=[upstream.protocol] if upstream.protocol else ())
        try:
            await client.prepare(request)
        except Exception:
            await _quiet_close(upstream, 1001)
            raise
        # Numbered like the upstream numbers its connections: only upgrades that succeed count.
        conn = self._conn_id(kind)
        pair = _WsPair(conn, request.path, client, upstream)
        self._pairs.add(pair)
        self.sink.record(conn, "local", "ws", "CONNECT", {"path": request.path, "code": None,
                                                           "upstream": str(url)})
        try:
            if self._stopping:
                pair.closed_by = "proxy"
                await _quiet_close(upstream, 1001)
                await _quiet_close(client, 1001)
            else:
                down = asyncio.create_task(self._pump_down(pair), name=f"{conn}-down")
                try:
                    await self._pump_up(pair)
                finally:
                    if not down.done():
                        # The client side ended: the upstream is closed, so `down` ends on its own;
                        # a stuck close is cut short.
                        try:
                            await asyncio.wait_for(asyncio.shield(down), 5.0)
                        except (TimeoutError, asyncio.CancelledError):
                            down.cancel()
                    await asyncio.gather(down, return_exceptions=True)
        finally:
            self._pairs.discard(pair)
            await _quiet_close(upstream, 1001)
            await _quiet_close(client, _closable(pair.code, 1001))
            self.sink.record(conn, "local", "ws", "DISCONNECT", {
                "path": request.path, "code": pair.code, "by": pair.closed_by or "proxy"})
        return client

    async def _pump_up(self, pair: _WsPair) -> None:
        """client -> upstream. Ends when the client closes (or the connection dies)."""
        await self._pump(pair, pair.client, pair.upstream, "out", self._client_closed)

    async def _pump_down(self, pair: _WsPair) -> None:
        """upstream -> client. On an upstream close, close the client with the upstream's code."""
        await self._pump(pair, pair.upstream, pair.client, "in", self._upstream_closed)

    async def _pump(self, pair: _WsPair, src, dst, dir: str, on_close) -> None:
        """Forward frames from ``src`` to ``dst`` (forward first, record after) until ``src`` closes."""
        conn, record = pair.conn, self.sink.record
        while True:
            msg = await src.receive()
            t = msg.type
            if t is WSMsgType.TEXT:
                data = msg.data
                try:
                    await dst.send_str(data)  # forward first ...
                except (ConnectionError, RuntimeError):
                    pass  # the other side went away; its pump reports it
                mtype, obj = parse_frame(data)  # ... record after
                record(conn, dir, "ws", mtype, obj)
            elif t is WSMsgType.BINARY:
                try:
                    await dst.send_bytes(msg.data)
                except (ConnectionError, RuntimeError):
                    pass
                record(conn, dir, "ws", "BINARY", {"raw": f"<{len(msg.data)} bytes>"})
            elif t is WSMsgType.PING:
                await _quiet(dst.ping(msg.data))
            elif t is WSMsgType.PONG:
                await _quiet(dst.pong(msg.data))
            else:  # CLOSE / CLOSING / CLOSED / ERROR
                if pair.closed_by is None:
                    await on_close(pair, msg)
                return

    async def _client_closed(self, pair: _WsPair, msg) -> None:
        t = msg.type
        pair.closed_by = "client"
        pair.code = pair.client.close_code if t is not WSMsgType.CLOSE else msg.data
        await _quiet_close(pair.upstream, _closable(pair.code), msg.extra if t is WSMsgType.CLOSE else None)

    async def _upstream_closed(self, pair: _WsPair, msg) -> None:
        t, conn, upstream = msg.type, pair.conn, pair.upstream
        pair.closed_by = "upstream"
        if t is WSMsgType.CLOSE:
            pair.code, extra = msg.data, msg.extra
        else:
            pair.code, extra = upstream.close_code or 1006, None
        reason = f"upstream closed the connection (code {pair.code}"
        reason += f", {extra!r})" if extra else ")"
        if t is WSMsgType.ERROR:
            reason = f"upstream connection failed: {_describe(upstream.exception())}"
        # 1006 (abnormal closure) must not be sent on the wire: tell the client 1011.
        await _quiet_close(pair.client, _closable(pair.code, 1011), extra)
        await _quiet_close(upstream, 1000)
        self.sink.record("run", "local", "meta", "GAP", {"conn": conn, "stream": conn.split("-")[0],
                                                         "reason": reason, "code": pair.code})

    def _record_refusal(self, request: web.Request, status: int, message: str) -> None:
        """A refused upgrade is recorded as a REST pair (as the fake VALR records it)."""
        conn = self._conn_id("rest")
        rtype = f"GET {request.path}"
        self.sink.record(conn, "out", "rest", rtype, {
            "method": "GET", "path": request.path, "query": request.raw_path.partition("?")[2],
            "headers": dict(request.headers), "body": None})
        self.sink.record(conn, "in", "rest", rtype, {
            "status": status, "headers": {}, "body": {"code": -1, "message": message}})


def _closable(code: Any, default: int = 1000) -> int:
    """A close code that may be sent in a close frame (1005/1006/1015 and junk may not)."""
    if isinstance(code, int) and (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
        return code
    return default


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


async def _quiet(awaitable: Any) -> None:
    try:
        await awaitable
    except (ConnectionError, RuntimeError):
        pass


async def _quiet_close(ws: Any, code: int, message: Any = None) -> None:
    if ws.closed:
        return
    msg = message.encode() if isinstance(message, str) else (message or b"")
    try:
        await asyncio.wait_for(ws.close(code=code, message=msg), 5.0)
    except (ConnectionError, RuntimeError, TimeoutError, asyncio.CancelledError, aiohttp.ClientError):
        pass
