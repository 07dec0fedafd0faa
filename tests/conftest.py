"""Shared fixtures: a fake VALR server on 127.0.0.1 and a small signed client for it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import connect

from replay.auth import auth_headers
from replay.capture import TraceRecorder
from replay.clock import Clock
from replay.config import ExchangeConfig, config_from_dict

pytest_plugins = ["pytester"]

MAKER_KEY = "a1" * 32
MAKER_SECRET = "s1" * 32
TAKER_KEY = "b2" * 32
TAKER_SECRET = "s2" * 32


def make_config(server: dict[str, Any] | None = None, market: dict[str, Any] | None = None) -> ExchangeConfig:
    """Two accounts (maker, taker) on BTCZAR/ETHZAR; no background market unless given."""
    data: dict[str, Any] = {
        "accounts": [
            {"name": "maker", "api_key": MAKER_KEY, "api_secret": MAKER_SECRET,
             "balances": {"BTC": "1", "ZAR": "1000000"}, "subaccounts": ["sub-1"]},
            {"name": "taker", "api_key": TAKER_KEY, "api_secret": TAKER_SECRET,
             "balances": {"BTC": "1", "ZAR": "1000000"}},
        ],
        "market": market or {},
    }
    if server:
        data["server"] = server
    return config_from_dict(data, "<test config>")


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any
    text: str


class ValrClient:
    """A VALR client for one account: signed REST calls and WebSocket connections."""

    def __init__(self, server: Any, session: aiohttp.ClientSession, key: str, secret: str, sockets: list):
        self.server = server
        self.session = session
        self.key = key
        self.secret = secret
        self._sockets = sockets

    def sign(self, method: str, path_qs: str, body: str = "", ts: int | None = None) -> dict[str, str]:
        return auth_headers(self.key, self.secret, method, path_qs, body,
                            timestamp_ms=self.server.now_ms() if ts is None else ts)

    async def call(self, method: str, path: str, body: Any = None, *, signed: bool = True, raw: str | None = None,
                   headers: dict[str, str] | None = None, ts: int | None = None) -> Reply:
        text = raw if raw is not None else ("" if body is None else json.dumps(body))
        hdrs: dict[str, str] = {}
        if text:
            hdrs["Content-Type"] = "application/json"
        if signed:
            hdrs.update(self.sign(method, path, text, ts))
        hdrs.update(headers or {})
        async with self.session.request(method, self.server.rest_url + path, data=text.encode() or None,
                                        headers=hdrs) as resp:
            out = await resp.text()
            try:
                parsed = json.loads(out) if out else None
            except ValueError:
                parsed = out
            return Reply(resp.status, parsed, resp.headers, out)

    async def ws(self, path: str = "/ws/account", *, signed: bool = True, **kwargs: Any):
        headers = self.sign("GET", path) if signed else {}
        conn = await connect(f"ws://{self.server.host}:{self.server.port}{path}", additional_headers=headers,
                             open_timeout=5, **kwargs)
        self._sockets.append(conn)
        return conn


async def recv(ws: Any, match: str | Callable[[dict], bool] | None = None, timeout: float = 5.0) -> dict:
    """The next JSON message matching ``match`` (a type or predicate), skipping others."""

    async def loop() -> dict:
        while True:
            msg = json.loads(await ws.recv())
            if match is None or (msg.get("type") == match if isinstance(match, str) else match(msg)):
                return msg

    return await asyncio.wait_for(loop(), timeout)


async def recv_raw(ws: Any, timeout: float = 5.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


@pytest.fixture
async def make_server():
    """A factory: ``await make_server(config=None, **FakeValr kwargs)``; all stopped at teardown."""
    from replay.server import FakeValr

    servers: list = []

    async def factory(config: ExchangeConfig | None = None, **kwargs: Any):
        clock = kwargs.pop("clock", None) or Clock()
        kwargs.setdefault("trace", TraceRecorder(clock))
        server = FakeValr(config or make_config(), clock=clock, seed=kwargs.pop("seed", 7), **kwargs)
        await server.start("127.0.0.1", 0)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        await server.stop()


@pytest.fixture
async def fake_server(make_server):
    return await make_server()


@pytest.fixture
async def client_factory():
    """``client_factory(server, key, secret) -> ValrClient``; sessions and sockets closed at teardown."""
    session = aiohttp.ClientSession()
    sockets: list = []

    def factory(server: Any, key: str = MAKER_KEY, secret: str = MAKER_SECRET) -> ValrClient:
        return ValrClient(server, session, key, secret, sockets)

    yield factory
    for ws in sockets:
        try:
            await ws.close()
        except websockets.exceptions.WebSocketException:
            pass
    await session.close()


@pytest.fixture
def maker(fake_server, client_factory) -> ValrClient:
    return client_factory(fake_server, MAKER_KEY, MAKER_SECRET)


@pytest.fixture
def taker(fake_server, client_factory) -> ValrClient:
    return client_factory(fake_server, TAKER_KEY, TAKER_SECRET)


class Records:
    """Collects what a proxy/recorder records; ``wait(pred)`` waits for a matching record."""

    def __init__(self, sink: Any):
        self.items: list[dict] = []
        self._changed = asyncio.Event()
        sink.listeners.append(self._add)

    def _add(self, rec: dict) -> None:
        self.items.append(rec)
        self._changed.set()

    async def wait(self, pred: Callable[[dict], bool], timeout: float = 5.0) -> dict:
        async def loop() -> dict:
            seen = 0
            while True:
                for rec in self.items[seen:]:
                    if pred(rec):
                        return rec
                seen = len(self.items)
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(loop(), timeout)

    def of(self, conn: str) -> list[dict]:
        return [r for r in self.items if r["conn"] == conn]


# --- the command line as a subprocess -----------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


@contextlib.asynccontextmanager
async def replay_command(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m replay ARGS`` as a subprocess (VALR_* variables of this environment left out,
    ``env`` added), killed on the way out if it is still running."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VALR_")}
    full_env.update(env or {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "replay", *args, cwd=ROOT, env=full_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def first_line(proc: asyncio.subprocess.Process, timeout: float = 45.0) -> dict:
    """The command's first stdout line, parsed as JSON (stderr in the failure message if none)."""
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    if not line:
        err = await proc.stderr.read()
        raise AssertionError(f"no first line; stderr: {err.decode()}")
    return json.loads(line)


async def interrupt(proc: asyncio.subprocess.Process, sig: int = signal.SIGINT,
                    timeout: float = 20.0) -> tuple[int, str]:
    """Send ``sig`` and wait for the exit: (exit code, stderr)."""
    proc.send_signal(sig)
    _out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, err.decode()


# --- tests/real_hummingbot/: a real Hummingbot ----------------------------------------------

def pytest_configure(config: pytest.Config) -> None:
    """tests/real_hummingbot/ skip themselves where Hummingbot cannot be imported (the project's main
    environment). CI builds the Hummingbot environment (tools/hummingbot-env) and sets
    VALR_REPLAY_REQUIRE_HUMMINGBOT=1 there, so a broken install fails the run instead of skipping."""
    if os.environ.get("VALR_REPLAY_REQUIRE_HUMMINGBOT") == "1":
        import warnings

        try:
            with warnings.catch_warnings():  # Hummingbot's bundled connectors' pydantic deprecations
                warnings.simplefilter("ignore", DeprecationWarning)
                import hummingbot.connector.exchange_py_base  # noqa: F401
                import hummingbot.strategy.pure_market_making  # noqa: F401
        except ImportError as exc:
            raise pytest.UsageError(
                f"VALR_REPLAY_REQUIRE_HUMMINGBOT=1 but Hummingbot cannot be imported: {exc}") from None
