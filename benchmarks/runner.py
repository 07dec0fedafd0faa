"""Run every figure in one process and one run; print a table; write JSON / Markdown.

``run_all(size)`` returns the figures in a fixed order. A figure that fails is still
reported (value None, ``met`` False, the error in ``note``), so the output always has every
figure. Figures run one after the other (never concurrently), each with its baseline
interleaved in the same module.
"""

from __future__ import annotations

import importlib
import json
import platform
import time
import traceback
from pathlib import Path
from typing import Callable, Iterable

from .common import SIZES, Figure

#: figure name -> module under benchmarks/ (replay_throughput last: it depends on playback)
FIGURES: dict[str, str] = {
    "capture_write": "capture_write",
    "delivery_precision": "delivery_precision",
    "proxy_overhead": "proxy_overhead",
    "scenario_speed": "scenario_speed",
    "soak_memory": "soak_memory",
    "hummingbot_speed": "hummingbot_speed",
    "explore_rate": "explore_speed",
    "replay_memory": "replay_memory",
    "replay_throughput": "replay_throughput",
}


def run_all(size: str = "quick", only: Iterable[str] | None = None,
            progress: Callable[[str, float], None] | None = None) -> list[Figure]:
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    names = list(FIGURES) if not only else list(only)
    for name in names:
        if name not in FIGURES:
            raise ValueError(f"unknown figure {name!r}: expected one of {', '.join(FIGURES)}")
    out: list[Figure] = []
    for name in names:
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.{FIGURES[name]}")
            figures = module.measure(size)
        except Exception as exc:  # report it as a row; the other figures still run
            figures = [Figure(name, None, "", None, None, "", False,
                              note=f"failed: {type(exc).__name__}: {exc}",
                              details={"traceback": traceback.format_exc(limit=8)})]
        seconds = time.perf_counter() - t0
        for f in figures:
            f.details.setdefault("figure_seconds", round(seconds, 2))
        out.extend(figures)
        if progress is not None:
            progress(name, seconds)
    return out


def machine() -> str:
    import os

    return f"{platform.python_implementation()} {platform.python_version()}, {platform.system()} " \
           f"{platform.machine()}, {os.cpu_count()} CPUs"


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    a = abs(value)
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def met_text(met: bool | None) -> str:
    return "-" if met is None else ("yes" if met else "NO")


def rows(figures: list[Figure]) -> list[list[str]]:
    return [[f.name, f.variant, fmt(f.value), f.unit, fmt(f.baseline), fmt(f.ratio), f.goal or "-",
             met_text(f.met)] for f in figures]


HEADERS = ["figure", "variant", "value", "unit", "baseline", "ratio", "goal", "met"]


def print_table(figures: list[Figure], console: object | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    if console is None:
        import sys

        # piped output: wide enough for the whole table (rich would assume 80 columns)
        console = Console(width=None if sys.stdout.isatty() else 150)
    table = Table(title="valr-replay bench", show_lines=False)
    for h in HEADERS:
        table.add_column(h, justify="right" if h in ("value", "baseline", "ratio") else "left",
                         no_wrap=h in ("figure", "variant", "value", "unit"))
    for row, f in zip(rows(figures), figures, strict=True):
        style = "red" if f.met is False else None
        table.add_row(*row, style=style)
    console.print(table)  # type: ignore[attr-defined]
    notes = _notes(figures)
    for note in notes:
        console.print(note, style="dim", markup=False, highlight=False)  # type: ignore[attr-defined]


def _notes(figures: list[Figure]) -> list[str]:
    seen: dict[str, str] = {}
    for f in figures:
        if f.note and f.name not in seen:
            seen[f.name] = f.note
    return [f"{name}: {note}" for name, note in seen.items()]


def write_json(figures: list[Figure], path: str | Path) -> None:
    Path(path).write_text(json.dumps([f.to_json() for f in figures], indent=2) + "\n")


def markdown(figures: list[Figure], command: str, seconds: float) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Produced by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
        f"({machine()}), in {seconds:.0f} s.",
        "Every figure is measured next to its baseline (the bare stack underneath) in the same run;",
        "ratio = value / baseline.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "| " + " | ".join("---" for _ in HEADERS) + " |",
    ]
    for row in rows(figures):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    lines += ["", "Notes:", ""]
    lines += [f"- {n}" for n in _notes(figures)]
    return "\n".join(lines) + "\n"
