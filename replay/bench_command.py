"""``valr-replay bench``: how close the simulator runs to the limits of its stack.

The benchmark code lives in ``benchmarks/`` at the top of the source tree (next to
``replay/``); this command finds it there.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click


def _import_runner():
    root = Path(__file__).resolve().parents[1]
    if (root / "benchmarks" / "runner.py").is_file() and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        from benchmarks import runner
    except ImportError as exc:
        raise click.ClickException(
            f"the benchmarks package was not found next to {root / 'replay'} ({exc}); "
            "run `valr-replay bench` from a source checkout") from None
    return runner


@click.command()
@click.option("--quick", is_flag=True,
              help="Smaller sizes: about 80 s on 2 cores (hummingbot_speed included, in .hbvenv when it exists); "
                   "about 30 s more once the simulator runs 1 h simulated in under 30 s, when soak_memory and "
                   "scenario_speed add their 1 h run.")
@click.option("--tiny", is_flag=True, hidden=True, help="Tiny sizes, for the test suite (numbers mean nothing).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True),
              help="Write the figures to FILE as a JSON list of objects.")
@click.option("--markdown", "md_path", type=click.Path(dir_okay=False, writable=True),
              help="Write the table as Markdown to FILE (benchmarks/RESULTS.md).")
@click.option("--only", multiple=True, metavar="FIGURE",
              help="Run only this figure (repeatable): capture_write, delivery_precision, proxy_overhead, "
                   "scenario_speed, soak_memory (both from the same 1 h run when run together), "
                   "hummingbot_speed, explore_rate (with time_to_find_naive and time_to_find_age_guard), "
                   "replay_memory, replay_throughput.")
def bench(quick: bool, tiny: bool, json_path: str | None, md_path: str | None, only: tuple[str, ...]) -> None:
    """Measure the simulator against the bare stack underneath it, side by side in one run.

    Each figure is a ratio to a baseline measured in the same run (bare websockets server,
    bare TCP relay, raw file writes...), so it means something on a noisy machine.
    """
    runner = _import_runner()
    size = "tiny" if tiny else ("quick" if quick else "full")
    for name in only:
        if name not in runner.FIGURES:
            raise click.BadParameter(f"unknown figure {name!r}: expected one of {', '.join(runner.FIGURES)}",
                                     param_hint="--only")
    t0 = time.perf_counter()

    def progress(name: str, seconds: float) -> None:
        click.echo(f"  {name}: {seconds:.1f} s", err=True)

    click.echo(f"valr-replay bench ({size}) on {runner.machine()}", err=True)
    figures = runner.run_all(size, only or None, progress)
    seconds = time.perf_counter() - t0
    runner.print_table(figures)
    click.echo(f"{len(figures)} rows in {seconds:.1f} s", err=True)
    if json_path:
        runner.write_json(figures, json_path)
        click.echo(f"wrote {json_path}", err=True)
    if md_path:
        args = ["valr-replay bench"] + (["--quick"] if quick else []) + (["--tiny"] if tiny else [])
        args += [f"--only {n}" for n in only]
        Path(md_path).write_text(runner.markdown(figures, " ".join(args), seconds))
        click.echo(f"wrote {md_path}", err=True)
