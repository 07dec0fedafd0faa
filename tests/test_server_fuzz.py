"""The fake server's fuzz suite: seeded Hypothesis strategies over REST, the WebSocket upgrade and both
streams' frames, against one real server on 127.0.0.1 (in a thread of its own, so the clients here can
be plain blocking sockets that send any bytes at all).

What holds for every case: no 5xx; every error answer (4xx) is VALR's JSON error shape
``{"code": int, "message": str}``; a WebSocket stays up after any text frame (VALR answers bad frames
with an error message and keeps the connection); afterwards no connection or task is left behind and
the server still answers a valid signed request. ``derandomize=True``: the same cases every run.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any, Iterator
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from replay.auth import auth_headers
from replay.capture import TraceRecorder
from replay.clock import Clock

from conftest import MAKER_KEY, MAKER_SECRET, TAKER_KEY, make_config

FUZZ = settings(derandomize=True, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

# --- the server, in a thread ------------------------------------------------------------------------


class Served:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.fake: Any = None
        self.baseline_tasks = 0
        ready = threading.Event()

        def run() -> None:
            from replay.server import FakeValr

            asyncio.set_event_loop(self.loop)
            # limits high enough that a few thousand cases are not all refused with 429
            config = make_config(server={"rate_limit_per_minute_key": 10**9, "rate_limit_per_minute_ip": 10**9,
                                         "route_limits_per_second": {"GET /v1/public/time": 10**9},
                                         "ws_rate_limits_per_second": {"place": 10**6, "cancel": 10**6,
                                                                       "batch": 10**6, "modify": 10**6}})
            clock = Clock()
            self.fake = FakeValr(config, clock=clock, seed=7, trace=TraceRecorder(clock))
            self.loop.run_until_complete(self.fake.start("127.0.0.1", 0))
            self.baseline_tasks = len(asyncio.all_tasks(self.loop))
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="fuzz-server", daemon=True)
        self.thread.start()
        assert ready.wait(10), "the server did not start"

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.call(self.fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def tasks(self) -> int:
        async def count() -> int:
            return len(asyncio.all_tasks()) - 1  # not this one

        return int(self.call(count()))


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    s = Served()
    yield s
    s.stop()


# --- a blocking HTTP/1.1 client that sends any bytes ---------------------------------------------


def http(served: Served, data: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` on a fresh connection, read the whole answer (the request says Connection:
    close): (status, headers, body)."""
    with socket.create_connection((served.fake.host, served.fake.port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete answer to {data[:200]!r}: {raw[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    if "content-length" in headers:
        body = body[:int(headers["content-length"])]
    return status, headers, body


def request_bytes(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [k + b": " + v for k, v in headers]
    if body or method in (b"POST", b"PUT", b"DELETE", b"PATCH"):
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def check_answer(method: bytes, status: int, headers: dict[str, str], body: bytes, what: Any) -> None:
    assert status < 500, f"{status} {body[:300]!r} for {what!r}"
    if status >= 400 and method != b"HEAD":
        assert headers.get("content-type", "").startswith("application/json"), (status, headers, what)
        parsed = json.loads(body)
        assert isinstance(parsed, dict) and set(parsed) == {"code", "message"}, (parsed, what)
        assert isinstance(parsed["code"], int) and isinstance(parsed["message"], str), (parsed, what)


def signed_request_ok(served: Served) -> None:
    """A valid signed request is answered: the server is still whole."""
    path = "/v1/account/balances"
    hdrs = auth_headers(MAKER_KEY, MAKER_SECRET, "GET", path, timestamp_ms=served.fake.now_ms())
    status, _headers, body = http(served, request_bytes(b"GET", path.encode(),
                                                        [(k.encode(), v.encode()) for k, v in hdrs.items()], b""))
    assert status == 200 and isinstance(json.loads(body), list)


# --- strategies ------------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/v1/public/time"), ("GET", "/v1/public/status"), ("GET", "/v1/public/pairs"),
    ("GET", "/v1/public/{pair}/orderbook"), ("GET", "/v1/public/{pair}/trades"),
    ("GET", "/v1/public/{pair}/marketsummary"), ("GET", "/v1/account/balances"),
    ("GET", "/v1/account/{pair}/tradehistory"), ("GET", "/v1/account/transactionhistory"),
    ("POST", "/v1/orders/limit"), ("POST", "/v2/orders/limit"), ("POST", "/v1/orders/market"),
    ("POST", "/v1/orders/stop/limit"), ("POST", "/v2/orders/stop/limit"), ("PUT", "/v1/orders/modify"),
    ("PUT", "/v2/orders/modify"), ("DELETE", "/v1/orders/order"), ("DELETE", "/v2/orders/order"),
    ("DELETE", "/v1/orders/{pair}"), ("GET", "/v1/orders/open"), ("GET", "/v1/orders/history"),
    ("GET", "/v1/orders/{pair}/orderid/{id}"), ("GET", "/v1/orders/history/summary/orderid/{id}"),
    ("POST", "/v1/batch/orders"), ("GET", "/ws/account"), ("GET", "/ws/trade"),
]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]

# amounts of the shapes the issue names, and ordinary ones
amounts = st.one_of(
    st.sampled_from(["1e60", "1e999999", "1" * 51, "1e-999999999", "0.02", "1500000", "-1", "0", "NaN",
                     "Infinity", "1e-20", "9" * 20, "", " ", "0x10", "1_000", "١٢٣"]),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), amounts)
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                              st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=12)
order_like = st.fixed_dictionaries(
    {},
    optional={
        "pair": st.sampled_from(["BTCZAR", "ETHZAR", "btczar", "NOPE", ""]) | st.text(max_size=10),
        "side": st.sampled_from(["BUY", "SELL", "buy", "UP"]),
        "quantity": amounts, "price": amounts, "stopPrice": amounts, "baseAmount": amounts,
        "quoteAmount": amounts, "newPrice": amounts, "newRemainingQuantity": amounts,
        "newTotalQuantity": amounts,
        "type": st.sampled_from(["STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT", "PLACE_LIMIT", "X"]),
        "postOnly": json_values, "timeInForce": st.sampled_from(["GTC", "IOC", "FOK", "gtc", "NEVER"]),
        "customerOrderId": st.text(max_size=60), "orderId": st.text(max_size=40),
        "modifyMatchStrategy": st.sampled_from(["RETAIN_ORIGINAL", "CANCEL_ORIGINAL", "REPRICE", "?"]),
        "requests": st.lists(st.fixed_dictionaries({"type": st.sampled_from(
            ["PLACE_LIMIT", "PLACE_MARKET", "PLACE_STOP_LIMIT", "MODIFY_ORDER", "CANCEL_ORDER", "NOPE"]),
            "data": json_values}), max_size=3),
    },
)


def _nested(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


bodies = st.one_of(
    st.just(b""),
    order_like.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.integers(min_value=1, max_value=20000).map(lambda n: _nested(n).encode()),
    st.integers(min_value=1, max_value=5000).map(lambda n: ('{"a":' * n + "1" + "}" * n).encode()),
    st.sampled_from([b"\xff\xfe\x00{}", b"{not json", b"[1]", b'"x"', b"1e999999", b"9" * 5000,
                     b'{"price": ' + b"9" * 5000 + b"}", b"\x00" * 10]),
)
# a path: a known route, filled in or broken, or any text
segments = st.one_of(st.sampled_from(["BTCZAR", "ETHZAR", "..", ".", "", "%00", "%2e%2e", "ws", "*", "é", "a" * 300]),
                     st.text(max_size=15))


@st.composite
def targets(draw: Any) -> tuple[str, bytes, str]:
    """(method, request target as bytes, path as signed)."""
    method = draw(st.sampled_from(METHODS))
    kind = draw(st.integers(0, 9))
    if kind <= 5:
        route_method, path = draw(st.sampled_from(ROUTES))
        if draw(st.booleans()):
            method = route_method
        path = path.replace("{pair}", quote(draw(segments), safe="")).replace("{id}", quote(draw(segments), safe=""))
    elif kind <= 7:
        path = "/" + "/".join(quote(s, safe=".*") for s in draw(st.lists(segments, max_size=5)))
    else:
        path = draw(st.sampled_from(["/ws/../v1/account/balances", "/ws/account/..", "*", "//v1//public/time",
                                     "/v1/public/time/", "/ws/", "/%", "/v1/public/%zz/trades"]))
    if draw(st.booleans()):
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in draw(
            st.lists(st.tuples(st.sampled_from(["skip", "limit", "excludeZeroBalances", "x"]) | st.text(max_size=5),
                               st.text(max_size=8)), max_size=3)))
        path = f"{path}?{query}"
    return method, path.encode(), path


header_text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n\x00"), max_size=30)


@st.composite
def auth(draw: Any, method: str, path: str, body: bytes) -> list[tuple[bytes, bytes]]:
    how = draw(st.sampled_from(["none", "valid", "valid", "other-key", "bad-sig", "bad-ts", "stale", "junk"]))
    if how == "none":
        return []
    key, secret = (TAKER_KEY, MAKER_SECRET) if how == "other-key" else (MAKER_KEY, MAKER_SECRET)
    hdrs = auth_headers(key, secret, method, path, body)
    out = {k: v for k, v in hdrs.items()}
    if how == "bad-sig":
        out["X-VALR-SIGNATURE"] = draw(st.sampled_from(["0" * 128, "é" * 128, "", "zz"])) or " "
    elif how == "bad-ts":
        out["X-VALR-TIMESTAMP"] = draw(st.sampled_from(["¹²³", "١٧٠٠", "9" * 4301, "-1", "1.5", "", "0x1"])) or " "
    elif how == "stale":
        out["X-VALR-TIMESTAMP"] = "1"
    elif how == "junk":
        out = {k: draw(header_text) or "x" for k in out}
    if draw(st.booleans()):
        out["X-VALR-SUB-ACCOUNT-ID"] = draw(st.sampled_from(["sub-1", "nobody", "é"]))
    return [(k.encode(), v.encode("utf-8")) for k, v in out.items()]


extra_headers = st.lists(st.tuples(
    st.sampled_from([b"Content-Type", b"Accept", b"X-Anything", b"Upgrade", b"Connection", b"Expect",
                     b"Sec-WebSocket-Version", b"Sec-WebSocket-Key", b"Origin"]),
    st.one_of(st.sampled_from([b"application/json", b"text/plain", b"websocket", b"Upgrade", b"13", b"",
                               b"application/json; charset=latin-1", b"multipart/form-data; boundary=x"]),
              header_text.map(lambda t: t.encode("utf-8")))), max_size=3)


@st.composite
def rest_cases(draw: Any) -> bytes:
    method, target, path = draw(targets())
    body = draw(bodies)
    headers = list(draw(auth(method, path, body)))
    if body and draw(st.integers(0, 4)):
        headers.append((b"Content-Type", b"application/json"))
    headers += draw(extra_headers)
    return request_bytes(method.encode(), target, headers, body)


# --- REST and the upgrade -------------------------------------------------------------------------


@settings(FUZZ, max_examples=1500)
@given(case=rest_cases())
def test_fuzz_rest(served: Served, case: bytes) -> None:
    method = case.split(b" ", 1)[0]
    status, headers, body = http(served, case)
    check_answer(method, status, headers, body, case[:300])


UPGRADE = [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"), (b"Sec-WebSocket-Version", b"13"),
           (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ==")]


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_fuzz_websocket_upgrade(served: Served, data: Any) -> None:
    """Upgrades with fuzzed auth headers and broken handshake headers: refused in the JSON shape, or
    switched (101) and then closed by us."""
    path = data.draw(st.sampled_from(["/ws/account", "/ws/trade", "/ws/account?x=1"]))
    headers = [h for h in UPGRADE if data.draw(st.integers(0, 5))]
    headers += data.draw(auth("GET", path, b""))
    headers += data.draw(extra_headers)
    case = request_bytes(b"GET", path.encode(), headers, b"")
    with socket.create_connection((served.fake.host, served.fake.port), timeout=10) as sock:
        sock.sendall(case)
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
        head, _, rest = raw.partition(b"\r\n\r\n")
        status = int(head.split(b"\r\n", 1)[0].split()[1])
        if status == 101:
            return  # switched: the socket closes here; the server sees the client go
        hdrs = {k.strip().lower(): v.strip() for k, _, v in
                (ln.partition(":") for ln in head.decode("latin-1").split("\r\n")[1:] if ln)}
        length = int(hdrs.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    check_answer(b"GET", status, hdrs, rest[:length], case)


# --- the streams' frames ----------------------------------------------------------------------------

ACCOUNT_TYPES = ["PING", "AUTHENTICATE", "SUBSCRIBE", "UNSUBSCRIBE", "CANCEL_ON_DISCONNECT", "PLACE_LIMIT_ORDER",
                 "PLACE_MARKET_ORDER", "CANCEL_LIMIT_ORDER", "MODIFY_ORDER", "BATCH_ORDERS", "NOPE"]
TRADE_TYPES = ["PING", "SUBSCRIBE", "UNSUBSCRIBE", "NOPE"]


@st.composite
def frames(draw: Any, types: list[str]) -> str:
    kind = draw(st.integers(0, 9))
    if kind <= 5:
        message: dict[str, Any] = {"type": draw(st.sampled_from(types) | st.text(max_size=8))}
        if draw(st.booleans()):
            message["clientMsgId"] = draw(json_values)
        batch = st.fixed_dictionaries({"requests": st.lists(st.fixed_dictionaries(
            {"type": st.sampled_from(["PLACE_LIMIT", "CANCEL_ORDER", "X"]), "data": order_like}), max_size=3)})
        payload = draw(st.one_of(order_like, json_values, batch,
                                 st.fixed_dictionaries({"cancelOnDisconnect": json_values})))
        message["payload"] = payload
        if draw(st.booleans()):
            message["subscriptions"] = draw(st.lists(st.fixed_dictionaries(
                {"event": st.sampled_from(["AGGREGATED_ORDERBOOK_UPDATE", "OB_L1_DIFF", "BALANCE_UPDATE",
                                           "FULL_ORDERBOOK_UPDATE", "MARK_PRICE_UPDATE", "X"]) | json_values},
                optional={"pairs": st.lists(st.sampled_from(["BTCZAR", "ETHZAR", "NOPE"]) | json_values,
                                            max_size=3) | json_values}), max_size=3) | json_values)
        return json.dumps(message)
    if kind <= 7:
        return draw(st.sampled_from([_nested(5000), _nested(100), '{"a":' * 3000 + "1" + "}" * 3000, "{not json",
                                     "[]", "null", '"PING"', "1e999999", "9" * 5000, "\x00", "",
                                     '{"type": "PING", "clientMsgId": ' + "9" * 5000 + "}"]))
    return draw(st.text(max_size=200))


def _pong(ws: Any, n: int) -> None:
    """PING with a fresh clientMsgId; every message up to its PONG must be a JSON object."""
    ws.send(json.dumps({"type": "PING", "clientMsgId": f"fuzz-{n}"}))
    deadline = time.monotonic() + 10
    while True:
        message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        assert isinstance(message, dict) and "type" in message, message
        if message["type"] == "PONG" and message.get("clientMsgId") == f"fuzz-{n}":
            return


def _ws(served: Served, path: str) -> Any:
    headers = auth_headers(MAKER_KEY, MAKER_SECRET, "GET", path, timestamp_ms=served.fake.now_ms())
    return connect(f"ws://{served.fake.host}:{served.fake.port}{path}", additional_headers=headers,
                   open_timeout=10, max_size=None)


def _fuzz_stream(served: Served, path: str, types: list[str], examples: int) -> None:
    counter = iter(range(10**9))
    with _ws(served, path) as ws:

        @settings(FUZZ, max_examples=examples)
        @given(frame=frames(types))
        def run(frame: str) -> None:
            ws.send(frame)
            _pong(ws, next(counter))  # answered, and still up

        run()


def test_fuzz_account_stream(served: Served) -> None:
    _fuzz_stream(served, "/ws/account", ACCOUNT_TYPES, 700)


def test_fuzz_trade_stream(served: Served) -> None:
    _fuzz_stream(served, "/ws/trade", TRADE_TYPES, 500)


# --- afterwards -------------------------------------------------------------------------------------


def test_after_the_fuzzing_nothing_is_left_behind_and_the_server_answers(served: Served) -> None:
    """Runs last in this module: every connection the cases opened is gone, the server's tasks are
    back to what it started with, and a valid signed request (and a WebSocket) still works."""
    deadline = time.monotonic() + 10
    while (served.fake.conns or served.tasks() > served.baseline_tasks) and time.monotonic() < deadline:
        time.sleep(0.05)  # closing handshakes finishing on the server's loop
    assert not served.fake.conns
    assert served.tasks() <= served.baseline_tasks, served.tasks()
    signed_request_ok(served)
    with _ws(served, "/ws/account") as ws:
        _pong(ws, -1)
