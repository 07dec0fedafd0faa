"""``replay_memory``: peak RSS replaying a generated capture in a child process, at two sizes.

The capture is generated on the fly (``capgen``) into a temporary directory. The child is the
real command, ``python -m replay replay CAPTURE --speed 1e9`` (maximum speed); this process
connects a websockets trade client to it, receives every market frame, reads the child's peak
RSS (``VmHWM`` in /proc/PID/status) and stops it with SIGTERM. A watchdog kills the child if its
RSS passes ``CAP_MB`` (the row then says so; the machine is shared).
Baseline: the same command replaying a capture of a few records (interpreter, libraries,
server). Goal: <= 200 MB at the larger size, and flat: at most 10% above the smaller size.

Without the playback shell, the child is ``python -m benchmarks.replay_child`` (the server's
dispatcher path, client in the child) and reports its own peak.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from .capgen import generate
from .common import Figure, pick, ratio
from .replay_drive import MAX_SPEED, playback_available
from .rss_child import status_kib

ROOT = Path(__file__).resolve().parents[1]
MB = 1e6
CAP_MB = 2000.0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


async def run_replay_command(capture: Path, market_frames: int, timeout: float = 900.0) -> dict[str, Any]:
    """``python -m replay replay CAPTURE --speed 1e9`` in a child; receive ``market_frames``
    frames from it; its peak RSS (bytes), seconds, and whether the watchdog killed it."""
    with tempfile.TemporaryFile() as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "replay", "replay", str(capture), "--speed", f"{MAX_SPEED:g}",
            cwd=ROOT, env=_env(), stdin=subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        drain: asyncio.Task | None = None
        killed = False
        peak_kb = 0

        def failure(what: str) -> RuntimeError:
            err.seek(0)
            tail = err.read()[-1500:].decode(errors="replace")
            return RuntimeError(f"benchmark: replay of {capture.name} {what}: {tail}")

        async def watchdog() -> None:
            nonlocal killed, peak_kb
            while proc.returncode is None:
                peak_kb = max(peak_kb, status_kib(proc.pid, "VmHWM") or 0)
                if peak_kb / 1000 > CAP_MB:
                    killed = True
                    proc.kill()
                    return
                await asyncio.sleep(0.05)

        dog = asyncio.ensure_future(watchdog())
        t0 = time.perf_counter()
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout)
            if not line.startswith(b"{"):
                raise failure("did not start" if not killed else f"passed {CAP_MB:.0f} MB while indexing")
            urls = json.loads(line)
            drain = asyncio.ensure_future(proc.stdout.read())  # keep its stdout flowing
            got = 0
            async with connect(urls["ws_trade_url"], max_size=None, compression=None, ping_interval=None) as ws:
                async def receive() -> None:
                    nonlocal got
                    while got < market_frames:
                        await ws.recv()
                        got += 1

                recv = asyncio.ensure_future(receive())
                done, _ = await asyncio.wait({recv, dog}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if recv not in done:
                    recv.cancel()
                    await asyncio.gather(recv, return_exceptions=True)
                    if not killed:
                        raise failure(f"sent {got} of {market_frames} frames in {timeout:.0f} s")
            seconds = time.perf_counter() - t0
            peak_kb = max(peak_kb, status_kib(proc.pid, "VmHWM") or 0)
        except (ConnectionError, OSError) as exc:
            if not killed:
                raise failure(f"failed ({exc})") from None
            seconds = time.perf_counter() - t0
        finally:
            dog.cancel()
            with contextlib.suppress(ProcessLookupError):
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
            if drain is not None:
                await asyncio.gather(drain, return_exceptions=True)
            await asyncio.gather(dog, return_exceptions=True)
    return {"peak_rss_bytes": peak_kb * 1024, "seconds": seconds, "killed": killed, "messages": got}


def run_dispatcher_child(capture: Path, mode: str, timeout: float = 900.0) -> dict[str, Any]:
    """The fallback: ``python -m benchmarks.replay_child`` (it reports its own peak RSS)."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.replay_child", str(capture), "--mode", mode],
                          capture_output=True, cwd=ROOT, env=_env(), timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark: replay child for {capture} failed ({proc.returncode}): "
                           f"{proc.stderr.decode(errors='replace')[-2000:]}")
    lines = [ln for ln in proc.stdout.decode().splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"benchmark: replay child for {capture} printed no result")
    result = json.loads(lines[-1])
    result["killed"] = False
    return result


async def _measure(size: str) -> list[Figure]:
    small, large = pick(size, (1_000_000, 2_000_000), (20_000_000, 60_000_000), (250_000_000, 1_000_000_000))
    with_playback = playback_available()
    figures: list[Figure] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        tiny = Path(tmp) / "tiny.jsonl"
        tiny_info = generate(tiny, 20_000)
        if with_playback:
            base = await run_replay_command(tiny, tiny_info["market_frames"])
        else:
            base = run_dispatcher_child(tiny, "idle")
        results: dict[int, dict[str, Any]] = {}
        for nbytes in (small, large):
            path = Path(tmp) / f"capture-{nbytes}.jsonl"
            info = generate(path, nbytes)
            if with_playback:
                res = await run_replay_command(path, info["market_frames"])
            else:
                res = await asyncio.to_thread(run_dispatcher_child, path, "dispatcher")
            res["capture"] = info
            results[nbytes] = res
            path.unlink()
    base_mb = base["peak_rss_bytes"] / MB
    peak_small = results[small]["peak_rss_bytes"] / MB
    peak_large = results[large]["peak_rss_bytes"] / MB
    growth = peak_large - peak_small
    flat = growth <= 0.10 * peak_small and not results[large]["killed"]
    if with_playback:
        note = (f"`python -m replay replay CAPTURE --speed {MAX_SPEED:g}` in a child, market frames to a trade "
                f"client here; killed if it passes {CAP_MB:.0f} MB; baseline: the same command replaying "
                "a 20 KB capture")
    else:
        note = ("replay.playback has no server shell: dispatcher path (CaptureReader -> FakeValr.send -> "
                "DeliverySchedule -> websockets client) in a child process; baseline: the same child "
                "replaying nothing")
    for nbytes in (small, large):
        res = results[nbytes]
        peak = res["peak_rss_bytes"] / MB
        is_large = nbytes == large
        label = f"{nbytes / 1e9:g} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:g} MB"
        if res["killed"]:
            label += f", killed at {CAP_MB:.0f} MB"
        figures.append(Figure(
            "replay_memory", peak, "MB", base_mb, ratio(peak, base_mb),
            "<= 200 MB and flat" if is_large else "report", (peak <= 200 and flat) if is_large else None,
            variant=f"capture {label}", note=note,
            details={"capture_bytes": res["capture"]["bytes"], "frames": res.get("messages"),
                     "replay_seconds": round(res["seconds"], 2), "killed": res["killed"],
                     "growth_mb_small_to_large": round(growth, 1), "flat": flat,
                     "mode": "replay command" if with_playback else "dispatcher"},
        ))
    figures[-1].details["total_seconds"] = round(time.perf_counter() - t0, 1)
    return figures


def measure(size: str = "quick") -> list[Figure]:
    return asyncio.run(_measure(size))
