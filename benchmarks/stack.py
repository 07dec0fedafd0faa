"""The bare stack the figures are compared with, and small shared async helpers."""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Awaitable, Callable

from websockets.asyncio.server import ServerConnection, serve

from replay.config import ExchangeConfig, config_from_dict

BENCH_KEY = "c3" * 32
BENCH_SECRET = "d4" * 32


def quiet_config() -> ExchangeConfig:
    """One account, the default pairs, no background market (nothing but the benchmark's traffic).

    The slow-consumer limit is lifted (1 GiB of waiting JSON per connection): a throughput run
    pushes a capture at full speed, ahead of its reader, as the bare websockets baseline may; with
    the default 4 MiB the server would (rightly) close the lagging client and the run never end."""
    return config_from_dict(
        {"accounts": [{"name": "bench", "api_key": BENCH_KEY, "api_secret": BENCH_SECRET,
                       "balances": {"BTC": "10", "ZAR": "10000000"}}], "market": {},
         "server": {"ws_send_queue_bytes": 1 << 30}},
        "<bench config>",
    )


@contextlib.asynccontextmanager
async def ws_server(handler: Callable[[ServerConnection], Awaitable[None]]) -> AsyncIterator[str]:
    """A bare ``websockets`` server on 127.0.0.1 (port 0); yields its ws:// URL."""
    async with serve(handler, "127.0.0.1", 0, max_size=None, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


async def _echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[str]:
    """A websockets echo server (the upstream for proxy measurements); yields its ws:// URL."""
    async with ws_server(_echo) as url:
        yield url


class TcpRelay:
    """A bare asyncio TCP relay: each accepted connection is copied byte for byte both ways to
    ``target``. The floor for any proxy written on asyncio streams."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> "TcpRelay":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_w = None
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
            await asyncio.gather(_copy(reader, up_w), _copy(up_r, writer))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            for w in (writer, up_w):
                if w is not None:
                    w.close()


async def _copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await src.read(65536)
            if not data:
                break
            dst.write(data)
            await dst.drain()
    finally:
        with contextlib.suppress(Exception):
            dst.write_eof()


async def wait_for_condition(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` once per loop iteration until true; TimeoutError naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise TimeoutError(f"benchmark: {what} not within {timeout:.0f} s")
        await asyncio.sleep(0.001)
