"""``scenario_speed``: simulated seconds per wall second of a 1 h simulated run of
scenarios/open_orders_race.toml with the reference connector, the command a user runs:

    valr-replay run scenarios/open_orders_race.toml --policy reconcile --duration 1h --json F

(virtual time, in a fresh process; speed = simulated s / the run's own wall s from ``--json``,
interpreter start-up not included). It is the same command as ``soak_memory``'s 1 h row, and
the bench process runs it once for both (``soak_memory.cli_run``). ``--quick`` uses the longest
run ``soak_memory`` makes in quick mode (1 h when it fits the quick budget, else 10 min; the row
says which). Goal: >= 150x real time.

Baseline: the same traffic on the bare stack: a looptime (virtual-time) loop where a bare
websockets server and client exchange exactly the scenario's frames (every ``ws`` record of
the trace of a 60 s in-process run, 30 s in ``--quick``, under the same policy, and each REST
request/response as one frame), of the recorded sizes, at their recorded (virtual) times. That is the cost of moving the
scenario's messages through asyncio, sockets and websockets with no exchange, codec, schedule,
connector, strategy or checks. The traffic is steady (a refresh every second), so the bare
speed over a minute is the bare speed over an hour. ratio = scenario speed / baseline speed.

That short run is profiled (cProfile): where the scenario's time goes (module totals, own time).
"""

from __future__ import annotations

import asyncio
import cProfile
import dataclasses
import json
import pstats
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from replay.capture import CaptureReader
from replay.runner import new_loop, run_scenario
from replay.scenario import load_scenario

from . import soak_memory
from .common import Figure, pick, ratio
from .stack import ws_server

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "open_orders_race.toml"
POLICY = soak_memory.POLICY
GOAL = 150.0


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


def profile_summary(prof: cProfile.Profile, top: int = 12) -> list[dict[str, Any]]:
    """Own time per module of a profiled run."""
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


def _short_run(size: str, profile: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The trace records of a short in-process run (60 s; --quick 30 s) under POLICY, and its profile."""
    scenario = load_scenario(SCENARIO)
    duration = pick(size, 3.0, 30.0, 60.0)
    scenario = dataclasses.replace(scenario, duration_s=duration)
    prof = cProfile.Profile() if profile else None
    if prof is not None:
        prof.enable()
    try:
        result = run_scenario(scenario, POLICY)
    finally:
        if prof is not None:
            prof.disable()
    try:
        records = list(getattr(result, "records", None) or [])
    except (OSError, ValueError):  # a streaming run's record store, closed with the run
        records = []
    if not records:  # then run it again with a trace file
        with tempfile.TemporaryDirectory(prefix="bench-speed-") as tmp:
            trace = Path(tmp) / "trace.jsonl"
            run_scenario(scenario, POLICY, trace_path=trace)
            records = list(CaptureReader(trace))
    return records, (profile_summary(prof) if prof is not None else None)


def measure(size: str = "quick", *, profile: bool | None = None) -> list[Figure]:
    if size == "full":  # the 1 h run alone (soak_memory's, when it ran first in this process)
        label, duration, remark = "1 h", "1h", ""
        res = soak_memory.cli_run(duration)
    else:  # quick: 1 h only when the 10 min run says it fits; tiny: the longer tiny run
        runs, remark = soak_memory.runs_for(size)
        label, duration, _sim_s, res = runs[-1]
    if res["killed"] or not res.get("speed"):
        raise RuntimeError(f"the {label} run was killed ({res['killed']}) after {res['wall_seconds']:.0f} s: "
                           "no speed to report")
    speed = res["speed"]
    records, prof = _short_run(size, profile if profile is not None else size != "tiny")
    down, up, span = _traffic(records)
    bare_speeds = [_bare_speed(down, up, span) for _ in range(pick(size, 1, 3, 3))]
    bare = sorted(bare_speeds)[len(bare_speeds) // 2]
    details: dict[str, Any] = {
        "command": res["command"], "sim_seconds": res["sim_seconds"], "run_wall_seconds": res["run_wall_seconds"],
        "process_wall_seconds": res["wall_seconds"], "baseline_span_s": round(span, 2),
        "baseline_frames_down": len(down), "baseline_frames_up": len(up),
        "baseline_speeds": [round(b, 1) for b in bare_speeds], "shared_with_soak_memory": True,
    }
    if prof is not None:
        details["profile_own_time"] = prof
    quick_note = f"; {remark}" if remark and size == "quick" else ""
    return [Figure(
        "scenario_speed", speed, "sim s / wall s", bare, ratio(speed, bare), f">= {GOAL:g}", speed >= GOAL,
        variant=f"{label} simulated",
        note=f"`{soak_memory.shown_command(duration)}` (the soak_memory run), {SCENARIO.name}, reference connector; "
             f"speed over the run's own wall time; baseline: the frames of a {span:.0f} s run over bare websockets "
             f"on the same virtual-time loop{quick_note}",
        details=details,
    )]
