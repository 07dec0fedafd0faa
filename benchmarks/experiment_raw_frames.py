"""Experiment, not a figure: what ``replay_throughput`` would be if recorded market frames were
sent as recorded (never parsed and re-serialised), and the playback's index pass skipped
market lines without parsing them.

    python -m benchmarks.experiment_raw_frames [CAPTURE]   (default: a generated 40 MB capture)

It monkeypatches, in this process only, the ``json`` name in ``replay.server.app`` so that the
dispatcher sends a ``RawFrame`` (a ``str`` holding the recorded JSON text) as it is, and builds
a ``Playback`` whose market source slices each frame's text out of its capture line (the
writer puts ``data`` last). It prints msg/s for the bare baseline, the playback path as it is,
and the raw-frame variant, alternating, two rounds. Evidence for the fix described in
benchmarks/RESULTS.md; not used by ``valr-replay bench``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import replay.server.app as app
from replay.capture import open_capture
from replay.clock import Clock
from replay.playback import Playback

from .capgen import generate
from .replay_drive import _consume, _Counter, _wait_received, bare_send, capture_streams, replay_playback
from .stack import quiet_config

DATA = b',"data":'


class RawFrame(str):
    """A frame's JSON text, to be sent as it is."""


class _JsonShim:
    def __getattr__(self, name: str) -> Any:
        return getattr(json, name)

    @staticmethod
    def dumps(obj: Any, **kw: Any) -> str:
        return str.__str__(obj) if isinstance(obj, RawFrame) else json.dumps(obj, **kw)


def _lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        next(fh)  # header
        yield from fh


def _is_market(line: bytes) -> bool:
    head = line[:160]  # t, wall, conn, dir, kind, type come first in a written record
    return (b'"conn":"trade-' in head and b'"dir":"in"' in head and b'"kind":"ws"' in head
            and b'"type":"CONNECT"' not in head and b'"type":"DISCONNECT"' not in head)


def market_source(path: Path) -> Iterator[dict[str, Any]]:
    for line in _lines(path):
        if _is_market(line):
            i = line.index(DATA)
            rec = json.loads(line[:i] + b"}")
            rec["data"] = RawFrame(line[i + len(DATA):].rstrip(b"\n")[:-1].decode())
            yield rec


def account_records(path: Path) -> Iterator[dict[str, Any]]:
    for line in _lines(path):
        if not _is_market(line):
            yield json.loads(line)


async def raw_playback(path: Path, n: int) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    t = time.perf_counter()
    playback = Playback(account_records(path), header=open_capture(path).header, speed=1e9,
                        market_source=lambda: market_source(path))
    index_s = time.perf_counter() - t
    fake = app.FakeValr(quiet_config(), clock=Clock(loop), playback=playback)  # type: ignore[call-arg]
    await fake.start("127.0.0.1", 0)
    counter, stop = _Counter(), asyncio.Event()
    try:
        t0 = time.perf_counter()
        client = asyncio.ensure_future(_consume(fake.ws_trade_url, counter, stop))
        await _wait_received(counter, n, 300)
        rate = n / (time.perf_counter() - t0)
        stop.set()
        await client
    finally:
        await fake.stop()
    return rate, index_s


async def main(path: Path) -> None:
    _account, trade = capture_streams(path)
    n = len(trade)
    for _ in range(2):
        b = await bare_send([trade])
        print(f"bare websockets   {b['messages'] / b['seconds']:8.0f} msg/s")
        app.json = json  # type: ignore[attr-defined]
        r = await replay_playback(path, n)
        print(f"playback as is    {r['messages'] / r['seconds']:8.0f} msg/s  (index pass {r['index_seconds']:.2f} s)")
        app.json = _JsonShim()  # type: ignore[attr-defined,assignment]
        try:
            rate, index_s = await raw_playback(path, n)
        finally:
            app.json = json  # type: ignore[attr-defined]
        print(f"raw market frames {rate:8.0f} msg/s  (index pass {index_s:.2f} s)")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(Path(sys.argv[1])))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            capture = Path(tmp) / "capture.jsonl"
            generate(capture, 40_000_000)
            asyncio.run(main(capture))
