"""Replaying a capture at maximum speed to a websockets client, and the bare baseline.

``replay_dispatcher``: the server's dispatcher path. Every recorded server->client WebSocket
frame of the capture (streamed by ``CaptureReader``) is handed to ``FakeValr.send`` for a
connected client of the same stream kind, so it goes through the ``DeliverySchedule`` (zero
latency) and the dispatcher task, is serialised and sent by aiohttp. Flow control: at most
``window`` frames are queued ahead of what the client has received (memory stays bounded).

``bare_send``: a bare websockets server sending pre-serialised frames as fast as it can.

Used in-process by the throughput figure and, through ``python -m benchmarks.replay_child``,
in a child process by the memory figure.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from replay.capture import open_capture
from replay.clock import Clock
from replay.server.app import FakeValr

from .stack import quiet_config, wait_for_condition, ws_server


class _Counter:
    def __init__(self) -> None:
        self.n = 0
        self.bytes = 0
        self.changed = asyncio.Event()


async def _consume(url: str, counter: _Counter, stop: asyncio.Event) -> None:
    async with connect(url, max_size=None, compression=None, ping_interval=None) as ws:
        while not stop.is_set():
            try:
                text = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            counter.n += 1
            counter.bytes += len(text)
            counter.changed.set()


async def _wait_received(counter: _Counter, at_least: int, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while counter.n < at_least:
        counter.changed.clear()
        left = deadline - loop.time()
        if left <= 0:
            raise TimeoutError(f"benchmark: client received {counter.n} of {at_least} frames")
        try:
            await asyncio.wait_for(counter.changed.wait(), left)
        except TimeoutError:
            pass


async def replay_dispatcher(path: str | Path, *, window: int = 2000, limit: int | None = None) -> dict[str, Any]:
    """Replay ``path``'s server->client WebSocket frames through FakeValr to two websockets
    clients (account and trade). Returns messages, bytes, seconds (reading included)."""
    loop = asyncio.get_running_loop()
    fake = FakeValr(quiet_config(), clock=Clock(loop))
    await fake.start("127.0.0.1", 0)
    stop = asyncio.Event()
    counter = _Counter()
    clients: list[asyncio.Task] = []
    try:
        # The trade stream needs no authentication; an account stream would (the frames are the
        # same kind of traffic), so both recorded streams go to trade connections.
        for _ in range(2):
            clients.append(asyncio.ensure_future(_consume(fake.ws_trade_url, counter, stop)))
        await wait_for_condition(lambda: len(fake.conns) >= 2 or any(c.done() for c in clients), 10,
                                 "the client connections")
        conns = list(fake.conns.values())
        by_kind = {"account": conns[0], "trade": conns[1]}
        sent = 0
        t0 = time.perf_counter()
        for rec in open_capture(path):
            if rec["dir"] != "in" or rec["kind"] != "ws":
                continue
            kind = rec["conn"].split("-", 1)[0]
            conn = by_kind.get(kind)
            if conn is None:
                continue
            if limit is not None and sent >= limit:
                break
            fake.send(conn, rec["data"])
            sent += 1
            if sent % 500 == 0:
                if sent - counter.n > window:
                    await _wait_received(counter, sent - window // 2)
                else:
                    await asyncio.sleep(0)  # let the dispatcher run
        await _wait_received(counter, sent)
        seconds = time.perf_counter() - t0
        return {"messages": sent, "bytes": counter.bytes, "seconds": seconds}
    finally:
        stop.set()
        await asyncio.gather(*clients, return_exceptions=True)
        await fake.stop()


MAX_SPEED = 1e9  # "maximum speed": a day of recording is due within 0.1 ms


def playback_available() -> bool:
    """Whether the playback shell is there (``replay.playback`` and ``FakeValr(playback=...)``)."""
    import inspect

    try:
        import replay.playback  # noqa: F401
    except ImportError:
        return False
    return "playback" in inspect.signature(FakeValr.__init__).parameters


async def replay_playback(path: str | Path, market_frames: int, *, speed: float = MAX_SPEED) -> dict[str, Any]:
    """``valr-replay replay``'s path in-process: ``Playback.from_file(path, speed)`` served by
    ``FakeValr(playback=...)`` to one websockets trade client, until the client has received
    every market frame. ``seconds`` counts from the client's connection (which starts the
    market feed) to the last frame; ``index_seconds`` is the playback's indexing pass before.
    The account stream is not connected (its traffic waits for live requests)."""
    from replay.playback import Playback

    loop = asyncio.get_running_loop()
    t_index = time.perf_counter()
    playback = Playback.from_file(path, speed=speed)
    index_seconds = time.perf_counter() - t_index
    fake = FakeValr(quiet_config(), clock=Clock(loop), playback=playback)  # type: ignore[call-arg]
    await fake.start("127.0.0.1", 0)
    stop = asyncio.Event()
    counter = _Counter()
    client: asyncio.Task | None = None
    try:
        t0 = time.perf_counter()
        client = asyncio.ensure_future(_consume(fake.ws_trade_url, counter, stop))
        await _wait_received(counter, market_frames, 600)
        seconds = time.perf_counter() - t0
        return {"messages": counter.n, "bytes": counter.bytes, "seconds": seconds,
                "index_seconds": index_seconds}
    finally:
        stop.set()
        if client is not None:
            await asyncio.gather(client, return_exceptions=True)
        await fake.stop()


async def bare_send(streams: list[list[str]]) -> dict[str, Any]:
    """A bare websockets server sends pre-serialised frames as fast as it can: the i-th
    connection gets ``streams[i]``. Returns messages, bytes, seconds."""
    counter = _Counter()
    stop = asyncio.Event()
    total = sum(len(s) for s in streams)
    loop = asyncio.get_running_loop()
    go = loop.create_future()
    connected: list[Any] = []
    all_connected = loop.create_future()

    async def handler(ws: Any) -> None:
        index = len(connected)
        connected.append(ws)
        if len(connected) == len(streams):
            all_connected.set_result(None)
        await go
        for frame in streams[index]:
            await ws.send(frame)
        await ws.wait_closed()

    async with ws_server(handler) as url:
        clients = [asyncio.ensure_future(_consume(url, counter, stop)) for _ in streams]
        try:
            await asyncio.wait_for(asyncio.shield(all_connected), 10)
            t0 = time.perf_counter()
            go.set_result(None)
            await _wait_received(counter, total, 120)
            seconds = time.perf_counter() - t0
        finally:
            stop.set()
            await asyncio.gather(*clients, return_exceptions=True)
    return {"messages": total, "bytes": counter.bytes, "seconds": seconds}


def capture_streams(path: str | Path) -> list[list[str]]:
    """The capture's server->client WebSocket frames, serialised as the server would send
    them, split like ``replay_dispatcher`` splits them (account, trade)."""
    import json

    out: dict[str, list[str]] = {"account": [], "trade": []}
    for rec in open_capture(path):
        if rec["dir"] == "in" and rec["kind"] == "ws":
            kind = rec["conn"].split("-", 1)[0]
            if kind in out:
                out[kind].append(json.dumps(rec["data"], separators=(",", ":")))
    return [out["account"], out["trade"]]
