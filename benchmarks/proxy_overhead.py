"""``proxy_overhead``: round-trip latency the recording proxy adds over a bare TCP relay.

An echo upstream (a websockets server); a websockets client does sequential round trips of a
typical order command frame (send, await the echo) through (a) a bare asyncio TCP relay and
(b) ``RecordingProxy`` (recording into a plain capture file, as ``valr-replay record`` does).
Relay and proxy run together in a child process (``hop_child``), the client and the echo
upstream in this one: as in production, the proxy is its own process, so what it does after
forwarding (recording) overlaps with the peers' work instead of stalling their event loop.
Blocks of round trips alternate direct / relay / proxy so all see the same machine noise.

value = the proxy's RTT at the percentile, baseline = the relay's RTT, ratio = value / baseline;
added = value - baseline (the latency the proxy adds over the floor; in the variant label and
the details). The direct RTT (no hop) is in the details.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from replay.capture import CaptureWriter
from replay.record.proxy import RecordingProxy

from .common import Figure, percentile, pick, ratio
from .stack import TcpRelay, echo_server

ROOT = Path(__file__).resolve().parents[1]

FRAME = json.dumps({
    "type": "PLACE_LIMIT_ORDER", "clientMsgId": "0f6a3c62-7d0e-4d5c-9c55-2d5b1d3f6a11",
    "payload": {"side": "BUY", "quantity": "0.00100000", "price": "1196400", "pair": "BTCZAR",
                "postOnly": True, "customerOrderId": "bot-000123-bid", "timeInForce": "GTC"},
}, separators=(",", ":"))


_HOP: dict[str, Any] = {}


async def _start_hops(upstream: str) -> dict[str, int]:
    """Start ``hop_child`` (relay + proxy in their own process); their ports."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.hop_child", upstream, cwd=ROOT, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _HOP["proc"] = proc
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
    except TimeoutError:
        line = b""
    if not line.startswith(b"{"):
        await _stop_hops()
        raise RuntimeError(f"benchmark: hop_child did not start: {line.decode(errors='replace')!r}")
    return json.loads(line)


def _pin(child_pid: int) -> set[int] | None:
    """This process on one CPU, the hop child on another (less scheduler noise); the old mask."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return None
        os.sched_setaffinity(0, {cpus[0]})
        os.sched_setaffinity(child_pid, {cpus[1]})
        return set(cpus)
    except OSError:
        return None


def _unpin(mask: set[int] | None) -> None:
    if mask:
        try:
            os.sched_setaffinity(0, mask)
        except OSError:
            pass


async def _stop_hops() -> None:
    proc = _HOP.pop("proc", None)
    if proc is None:
        return
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def _round_trips(ws, n: int, out: list[float]) -> None:
    perf = time.perf_counter
    for _ in range(n):
        t0 = perf()
        await ws.send(FRAME)
        await ws.recv()
        out.append(perf() - t0)


async def _series(up_url: str, ports: dict[str, int], blocks: int, per_block: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"direct": [], "relay": [], "proxy": []}
    path = "/ws/account"
    async with connect(up_url + path, compression=None) as d_ws, \
            connect(f"ws://127.0.0.1:{ports['relay']}{path}", compression=None) as r_ws, \
            connect(f"ws://127.0.0.1:{ports['proxy']}{path}", compression=None) as p_ws:
        for ws in (d_ws, r_ws, p_ws):  # warm-up
            await _round_trips(ws, 50, [])
        for _ in range(blocks):  # interleaved blocks
            await _round_trips(d_ws, per_block, out["direct"])
            await _round_trips(r_ws, per_block, out["relay"])
            await _round_trips(p_ws, per_block, out["proxy"])
    return out


async def _measure(size: str) -> list[Figure]:
    blocks = pick(size, 2, 10, 20)
    per_block = pick(size, 20, 200, 500)
    async with echo_server() as up_url:
        # (1) relay and proxy in their own process: the deployment the goal is about
        ports = await _start_hops(up_url)
        pinned = _pin(_HOP["proc"].pid)
        try:
            own = await _series(up_url, ports, blocks, per_block)
        finally:
            _unpin(pinned)
            await _stop_hops()
        # (2) relay, proxy, client and upstream on one event loop: everything the proxy does,
        # recording included, adds to the round trip (informational)
        host, port = up_url.removeprefix("ws://").split(":")
        with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp:
            writer = CaptureWriter(Path(tmp) / "proxy.jsonl", {"source": "proxy", "upstream": up_url})
            proxy = RecordingProxy(up_url.replace("ws://", "http://"), writer)
            await proxy.start("127.0.0.1", 0)
            try:
                async with TcpRelay(host, int(port)) as relay:
                    same = await _series(up_url, {"relay": relay.port, "proxy": proxy.port}, blocks, per_block)
            finally:
                await proxy.stop()
                writer.close()
    figures: list[Figure] = []
    for where, series in (("own process", own), ("same loop", same)):
        for p in (50, 99):
            pr = percentile(series["proxy"], p) * 1e6
            rr = percentile(series["relay"], p) * 1e6
            dr = percentile(series["direct"], p) * 1e6
            added = pr - rr
            rat = ratio(pr, rr)
            if p == 50 and where == "own process":
                goal = "added <= 100 us, ratio <= 1.5"
                met: bool | None = added <= 100 and rat is not None and rat <= 1.5
            else:
                goal, met = "report", None
            figures.append(Figure(
                "proxy_overhead", pr, "us RTT", rr, rat, goal, met, variant=f"p{p} {where}, added {added:.0f} us",
                note="value = RTT through RecordingProxy (recording to a plain capture), baseline = RTT through a "
                     "bare asyncio TCP relay; added = value - baseline; websockets echo upstream, order-sized "
                     "frame; 'own process': relay/proxy in a child process (the goal), 'same loop': "
                     "client, relay/proxy and upstream on one event loop",
                details={"round_trips": len(series["proxy"]), "added_us": round(added, 1),
                         "direct_rtt_us": round(dr, 1), "relay_added_over_direct_us": round(rr - dr, 1)},
            ))
    return figures


def measure(size: str = "quick") -> list[Figure]:
    return asyncio.run(_measure(size))
