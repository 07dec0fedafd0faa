"""``scenario_speed``: simulated seconds per wall second for scenarios/open_orders_race.toml
with the reference connector (``replay.runner.run_scenario``, virtual time).

Baseline: the same traffic on the bare stack: a looptime (virtual-time) loop where a bare
websockets server and client exchange exactly the scenario's frames (every ``ws`` record of
the trace, and each REST request/response as one frame), of the recorded sizes, at their
recorded (virtual) times. That is the cost of moving the scenario's messages through asyncio,
sockets and websockets with no exchange, codec, schedule, connector, strategy or checks.
ratio = scenario speed / baseline speed.

A separate cProfile run says where the scenario's time goes (module totals, own time).
"""

from __future__ import annotations

import asyncio
import cProfile
import dataclasses
import json
import pstats
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from replay.runner import new_loop, run_scenario
from replay.scenario import load_scenario

from .common import Figure, pick, ratio
from .stack import ws_server

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "open_orders_race.toml"


def _traffic(records: list[dict[str, Any]]) -> tuple[list[tuple[float, str]], list[tuple[float, str]], float]:
    """(server->client frames, client->server frames, span in s) from a trace, as (t_s, text)."""
    down: list[tuple[float, str]] = []
    up: list[tuple[float, str]] = []
    last = 0.0
    for rec in records:
        if rec.get("kind") not in ("ws", "rest") or rec.get("dir") not in ("in", "out"):
            continue
        t = rec["t"] / 1e9
        last = max(last, t)
        text = json.dumps(rec["data"], separators=(",", ":"), default=str)
        (down if rec["dir"] == "in" else up).append((t, text))
    return down, up, last


async def _bare(down: list[tuple[float, str]], up: list[tuple[float, str]]) -> None:
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def play(ws: Any, frames: list[tuple[float, str]]) -> None:
        for t, text in frames:
            delay = t0 + t - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await ws.send(text)

    async def drain(ws: Any, n: int) -> None:
        for _ in range(n):
            await ws.recv()

    async def handler(ws: Any) -> None:
        await asyncio.gather(play(ws, down), drain(ws, len(up)))
        await ws.wait_closed()

    async with ws_server(handler) as url:
        async with connect(url, max_size=None, compression=None, ping_interval=None) as ws:
            await asyncio.gather(play(ws, up), drain(ws, len(down)))


def _bare_speed(down: list, up: list, span: float) -> float:
    loop = new_loop(True)
    try:
        t0 = time.perf_counter()
        loop.run_until_complete(_bare(down, up))
        wall = time.perf_counter() - t0
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
    return span / wall


def profile_summary(scenario: Any, top: int = 12) -> list[dict[str, Any]]:
    """Own time per module (and the top functions) of one profiled scenario run."""
    prof = cProfile.Profile()
    prof.enable()
    run_scenario(scenario)
    prof.disable()
    stats = pstats.Stats(prof)
    total = sum(v[2] for v in stats.stats.values()) or 1.0  # type: ignore[attr-defined]
    by_module: dict[str, float] = defaultdict(float)
    for (filename, _line, _func), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        by_module[_module_of(filename)] += tt
    rows = sorted(by_module.items(), key=lambda kv: -kv[1])[:top]
    return [{"module": m, "own_time_share": round(t / total, 3)} for m, t in rows]


def _module_of(filename: str) -> str:
    if filename == "~":
        return "builtins (C functions)"
    p = filename.replace("\\", "/")
    for marker in ("/replay/", "/site-packages/", "/lib/python3"):
        if marker in p:
            tail = p.split(marker, 1)[1]
            if marker == "/replay/":
                return "replay/" + tail
            if marker == "/site-packages/":
                return tail.split("/", 1)[0]
            return "stdlib:" + tail.split("/", 1)[-1].split("/", 1)[0].removesuffix(".py")
    return p if p.startswith("<") else Path(p).name


def measure(size: str = "quick", *, profile: bool | None = None) -> list[Figure]:
    scenario = load_scenario(SCENARIO)
    duration = pick(size, 3.0, scenario.duration_s, scenario.duration_s)
    if duration != scenario.duration_s:
        scenario = dataclasses.replace(scenario, duration_s=duration)
    rounds = pick(size, 1, 2, 3)
    speeds, bare_speeds, walls = [], [], []
    records: list[dict[str, Any]] = []
    for _ in range(rounds):  # interleaved: scenario, bare, scenario, bare ...
        result = run_scenario(scenario)
        speeds.append(result.sim_seconds / result.wall_seconds)
        walls.append(result.wall_seconds)
        records = result.records
        down, up, span = _traffic(records)
        bare_speeds.append(_bare_speed(down, up, span))
    speed = sorted(speeds)[len(speeds) // 2]
    bare = sorted(bare_speeds)[len(bare_speeds) // 2]
    down, up, span = _traffic(records)
    details: dict[str, Any] = {
        "sim_seconds": round(result.sim_seconds, 2), "wall_seconds": [round(w, 3) for w in walls],
        "frames_down": len(down), "frames_up": len(up), "trace_records": len(records), "rounds": rounds,
    }
    if profile if profile is not None else size != "tiny":
        details["profile_own_time"] = profile_summary(scenario)
    return [Figure(
        "scenario_speed", speed, "sim s / wall s", bare, ratio(speed, bare), ">= 60", speed >= 60,
        note=f"{SCENARIO.name}, reference connector, {duration:g} s simulated; baseline: the run's "
             "frames over bare websockets on the same virtual-time loop",
        details=details,
    )]
