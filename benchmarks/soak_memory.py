"""``soak_memory``: peak RSS of a long simulated run, the command a user runs, at several durations.

    valr-replay run scenarios/open_orders_race.toml --policy reconcile --duration D --json F

in a fresh process per duration, D = 10 min, 1 h and 6 h simulated (virtual time). The command
runs under a small wrapper child (``benchmarks.rss_child``) that reports the command's peak RSS
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``) and kills it if its RSS passes ``CAP_MB`` (the row then
says so; the machine is shared). Each row also gives the run's wall time and speed (simulated s
per wall s, from the run's own ``--json``: interpreter start-up not included).

Baseline: the 10 min run's peak; ratio = peak / peak at 10 min. Goal, on the 6 h row: <= 200 MB
and flat: at most 1.25x the 10 min peak.

``--quick`` runs 10 min, then 1 h only when the 10 min run says it fits ``QUICK_LONG_BUDGET_S``
(the rows say what was left out); the goal is then judged at the longest duration measured.

``cli_run`` keeps each duration's result for the rest of the bench process, so ``scenario_speed``
(which reads its speed off the same 1 h command) shares the run instead of making it twice.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .common import Figure, pick, ratio

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = "scenarios/open_orders_race.toml"  # relative to ROOT, as a user in a checkout types it
POLICY = "reconcile"
MB = 1e6
CAP_MB = 2000.0
GOAL_MB = 200.0
FLAT_RATIO = 1.25
QUICK_LONG_BUDGET_S = 30.0

#: (label, --duration value, simulated seconds) per size; the first is the flatness reference
DURATIONS: dict[str, list[tuple[str, str, float]]] = {
    "tiny": [("10 s", "10s", 10.0), ("30 s", "30s", 30.0)],
    "quick": [("10 min", "10m", 600.0), ("1 h", "1h", 3600.0)],
    "full": [("10 min", "10m", 600.0), ("1 h", "1h", 3600.0), ("6 h", "6h", 21600.0)],
}

_runs: dict[str, dict[str, Any]] = {}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("COLUMNS", "150")
    return env


def _cli() -> list[str]:
    """``valr-replay`` next to this Python (the venv's console script), else ``python -m replay``."""
    script = Path(sys.executable).with_name("valr-replay")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "replay"]


def command(duration: str, json_path: str = "F") -> list[str]:
    return ["run", SCENARIO, "--policy", POLICY, "--duration", duration, "--json", json_path]


def shown_command(duration: str) -> str:
    return "valr-replay " + shlex.join(command(duration))


def cli_run(duration: str, timeout: float = 3600.0) -> dict[str, Any]:
    """Run the command once for ``duration`` (cached for this process): peak RSS, walls, speed."""
    if duration in _runs:
        return _runs[duration]
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        json_path, log = Path(tmp) / "run.json", Path(tmp) / "run.log"
        wrapper = [sys.executable, "-m", "benchmarks.rss_child", "--cap-mb", f"{CAP_MB:g}",
                   "--timeout", f"{timeout:g}", "--log", str(log), "--", *_cli(), *command(duration, str(json_path))]
        done = subprocess.run(wrapper, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout + 120)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"benchmark: the rss wrapper failed ({done.returncode}): {done.stderr[-1500:]}")
        res: dict[str, Any] = json.loads(lines[-1])
        res["command"] = shown_command(duration)
        res["peak_mb"] = res["maxrss_kib"] * 1024 / MB  # ru_maxrss is KiB on Linux
        res["polled_hwm_mb"] = res["polled_hwm_kib"] * 1024 / MB
        if res["killed"] is None:
            if res["returncode"] not in (0, 1) or not json_path.is_file():
                tail = log.read_text(errors="replace")[-1500:] if log.is_file() else ""
                raise RuntimeError(f"benchmark: `{res['command']}` failed (exit {res['returncode']}): {tail}")
            run = json.loads(json_path.read_text())["runs"][0]
            res["sim_seconds"] = run["sim_seconds"]
            res["run_wall_seconds"] = run["wall_seconds"]
            res["speed"] = run["sim_seconds"] / run["wall_seconds"] if run["wall_seconds"] else None
            res["as_expected"] = run["as_expected"]
    _runs[duration] = res
    return res


def runs_for(size: str) -> tuple[list[tuple[str, str, float, dict[str, Any]]], str]:
    """The runs of this size, in order, and a remark on what quick mode left out ('' if nothing)."""
    plan = DURATIONS[size]
    out: list[tuple[str, str, float, dict[str, Any]]] = []
    remark = ""
    for label, duration, sim_s in plan:
        if size == "quick" and out:
            first = out[0][3]
            if first["killed"] or not first.get("speed"):
                remark = f"{label} not run in --quick: the {out[0][0]} run did not finish"
                break
            startup = max(0.0, first["wall_seconds"] - first["run_wall_seconds"])
            estimate = startup + sim_s / first["speed"]
            if estimate > QUICK_LONG_BUDGET_S:
                remark = (f"{label} not run in --quick: at {first['speed']:.0f}x it would take ~{estimate:.0f} s "
                          f"(quick budget {QUICK_LONG_BUDGET_S:g} s)")
                break
        timeout = pick(size, 120.0, 240.0, 3600.0)
        out.append((label, duration, sim_s, cli_run(duration, timeout)))
    if size == "quick":
        done = ", ".join(label for label, *_ in out)
        remark = f"--quick: {done} only (6 h: full run)" + (f"; {remark}" if remark else "")
    return out, remark


def measure(size: str = "quick") -> list[Figure]:
    runs, remark = runs_for(size)
    ref_label, _, _, ref = runs[0]
    ref_peak = ref["peak_mb"]
    figures: list[Figure] = []
    for i, (label, duration, sim_s, res) in enumerate(runs):
        peak = res["peak_mb"]
        last = i == len(runs) - 1
        if res["killed"]:
            variant = f"{label} simulated, killed ({res['killed']}) after {res['wall_seconds']:.0f} s wall"
        else:
            variant = f"{label} simulated, {res['wall_seconds']:.0f} s wall, {res['speed']:.0f}x"
        growth = ratio(peak, ref_peak)
        flat = growth is not None and growth <= FLAT_RATIO and not res["killed"]
        if last and i > 0:
            goal = f"<= {GOAL_MB:g} MB, <= {FLAT_RATIO:g}x {ref_label}"
            met: bool | None = peak <= GOAL_MB and flat
        elif last:
            goal, met = f"<= {GOAL_MB:g} MB", peak <= GOAL_MB and not res["killed"]
        else:
            goal, met = "report", None
        figures.append(Figure(
            "soak_memory", peak, "MB peak RSS", None if i == 0 else ref_peak, None if i == 0 else growth,
            goal, met, variant=variant,
            note=f"`{shown_command('D')}` in a fresh process per duration (peak RSS: the wrapper's "
                 f"RUSAGE_CHILDREN ru_maxrss; killed past {CAP_MB:g} MB); speed = simulated s / the run's own "
                 f"wall s; baseline: the {ref_label} run's peak" + (f"; {remark}" if remark else ""),
            details={"duration": duration, "simulated_s_asked": sim_s, "command": res["command"],
                     "peak_mb": round(peak, 1), "polled_hwm_mb": round(res["polled_hwm_mb"], 1),
                     "process_wall_seconds": res["wall_seconds"], "run_wall_seconds": res.get("run_wall_seconds"),
                     "sim_seconds": res.get("sim_seconds"),
                     "speed": round(res["speed"], 1) if res.get("speed") else None,
                     "killed": res["killed"], "returncode": res["returncode"], "as_expected": res.get("as_expected"),
                     f"ratio_to_{ref_label.replace(' ', '')}": round(growth, 3) if growth else None},
        ))
    return figures
