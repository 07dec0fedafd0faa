"""``hummingbot_speed``: simulated seconds per wall second of scenarios/open_orders_race.toml with
our Hummingbot VALR connector under Hummingbot's own pure market making, on virtual time.

Baseline: the same scenario, seed and policy with the reference connector and valr-replay's own
quoting loop, run alternately in the same process. ratio = Hummingbot speed / reference speed:
the cost of Hummingbot's machinery (its Clock, web assistants, throttler, order tracker, PMM and
the time patch) over ours. Goal: >= 10x real time.

Hummingbot lives in its own environment (tools/hummingbot-env): where this Python has no
Hummingbot, the figure is measured by the Hummingbot environment's Python in a subprocess, or
reported as not measured when there is none.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from .common import Figure, pick, ratio

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "open_orders_race.toml"
POLICY = "reconcile"
GOAL = 10.0


def _speeds(size: str) -> dict[str, Any]:
    from replay.runner import run_scenario
    from replay.scenario import load_scenario

    scenario = load_scenario(SCENARIO)
    duration = pick(size, 5.0, 30.0, scenario.duration_s)
    scenario = dataclasses.replace(scenario, duration_s=duration)
    rounds = pick(size, 1, 2, 3)
    hb: list[float] = []
    ref: list[float] = []
    walls: dict[str, list[float]] = {"hummingbot": [], "reference": []}
    for _ in range(rounds):  # interleaved: hummingbot, reference, hummingbot, ...
        for name, out in (("hummingbot", hb), ("reference", ref)):
            run = dataclasses.replace(scenario, bot=dataclasses.replace(scenario.bot, connector=name))
            result = run_scenario(run, POLICY)
            out.append(result.sim_seconds / result.wall_seconds)
            walls[name].append(round(result.wall_seconds, 3))
    return {"hummingbot": sorted(hb)[len(hb) // 2], "reference": sorted(ref)[len(ref) // 2],
            "duration_s": duration, "rounds": rounds, "wall_seconds": walls}


def measure(size: str = "quick") -> list[Figure]:
    from replay.hummingbot.bot import hummingbot_importable, hummingbot_python

    if hummingbot_importable():
        data = _speeds(size)
        where = sys.executable
    else:
        python = hummingbot_python()
        if python is None:
            return [Figure("hummingbot_speed", None, "sim s / wall s", None, None, f">= {GOAL:g}", None,
                           note="not measured: no Hummingbot environment (build it with tools/hummingbot-env)")]
        code = f"import json, benchmarks.hummingbot_speed as m; print(json.dumps(m._speeds({size!r})))"
        done = subprocess.run([python, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"the Hummingbot environment's run failed: {done.stderr.strip()[-2000:]}")
        data = json.loads(done.stdout.strip().splitlines()[-1])
        where = python
    speed, base = data["hummingbot"], data["reference"]
    return [Figure(
        "hummingbot_speed", speed, "sim s / wall s", base, ratio(speed, base), f">= {GOAL:g}", speed >= GOAL,
        note=f"{SCENARIO.name} --policy {POLICY}, {data['duration_s']:g} s simulated, Hummingbot's PMM and our "
             "Hummingbot VALR connector on virtual time; baseline: the reference connector and loop, same run",
        details={**data, "python": where},
    )]
