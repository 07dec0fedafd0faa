"""``valr-replay cut CAPTURE``: the few seconds of a long capture that matter, with a scenario
that replays them. The slicing is replay/cut.py (pure); this is the shell: files and messages."""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path
from typing import NoReturn

import click

EXIT_BAD_INPUT = 2


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(EXIT_BAD_INPUT)


@click.command("cut")
@click.argument("capture", type=click.Path(path_type=Path))
@click.option("--order", "order", default=None, metavar="ID",
              help="Cut around this order: its exchange order id or customerOrderId (or the last 6+ "
                   "characters of its exchange id, as `show` prints them).")
@click.option("--from", "start", default=None, metavar="T",
              help="Window start: seconds since the capture's start (12.5, 12.5s, 800ms) or an ISO wall "
                   "time (2026-01-01T00:00:03.5Z). With --until; not with --order.")
@click.option("--until", "end", default=None, metavar="T", help="Window end, as --from.")
@click.option("--around", default=None, metavar="D",
              help="With --order: widen the order's lifetime by this much either side for the market data "
                   "(2s, 500ms; default 2s).")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The capture to write (required; .gz: gzip). The scenario goes next to it, same name "
                   "with .toml.")
@click.option("--duration", default=None, metavar="D",
              help="The scenario's duration (quoting time; 40s, 1500ms). Default: the cut's own, from the "
                   "start to its last kept request; longer runs on past the cut, on the simulated exchange "
                   "(the replay hands over when the capture has no more requests).")
@click.option("--scenario", "scenario_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Copy the bot, expectations, latencies and perturbations from this scenario (e.g. the one "
                   "that replays the whole capture). Default: the bot inferred from the capture, and every "
                   "check must hold.")
def cut(capture: Path, order: str | None, start: str | None, end: str | None, around: str | None,
        out: Path | None, duration: str | None, scenario_path: Path | None) -> None:
    """Cut the part of CAPTURE that matters into a small capture and a scenario that replays it.

    \b
    How the window is chosen:
      --order ID          the order's lifetime (first to last record about it: placement to
                          final status) widened by --around (default 2s) either side; the
                          orders involved are it and every order alive at the same time
      --from T --until T  exactly that window; the orders involved are those alive in it

    \b
    What is kept:
      - the preamble: everything before the capture's first client request (start-up REST
        GETs, connection opens, AUTHENTICATED, connect-time balances and open orders, the
        trade subscription), without its market data;
      - each involved order's account segments: its requests (place, cancel, ...) with every
        reply, status update, snapshot, balance and exchange event the replay releases for
        them, the requests about no order between them, and REST GETs among them;
      - the market data in the window, after the latest book/summary frame of each type
        before it;
      - other local records (connection events) in the window.
    Times after the preamble move earlier so the first kept request comes where the
    capture's first request was; `wall` stays as recorded. The capture is written through
    the usual scrubbing.

    \b
    Next to --out goes a scenario (same name, .toml) with [market] capture = the new file:
    `valr-replay run small.toml --policy naive --policy reconcile`.
    Exit status: 0 written, 2 bad input (the message names the file, option or value).
    """
    from .capture import CaptureError, CaptureWriter, open_capture
    from .cut import (
        NS,
        CutError,
        cut_capture,
        parse_offset,
        parse_time,
        scenario_comment,
        scenario_data,
        scenario_name,
    )

    if out is None:
        _fail("missing --out FILE: where to write the cut capture (its scenario goes next to it, as .toml)")
    if order is not None and (start is not None or end is not None):
        _fail("--order goes without --from/--until: give one or the other")
    if order is None and (start is None or end is None):
        _fail("give --order ID, or both --from T and --until T")
    if around is not None and order is None:
        _fail("--around goes with --order only (with --from/--until the window is exact)")
    scenario_out = out.with_name(out.name.removesuffix(".gz").removesuffix(".jsonl") + ".toml")
    if out.resolve() == capture.resolve():
        _fail(f"--out {out}: is the capture being cut; write the cut elsewhere")
    if scenario_path is not None and scenario_out.resolve() == scenario_path.resolve():
        _fail(f"--out {out}: its scenario {scenario_out} would overwrite --scenario {scenario_path}; "
              "pick another name")
    try:
        reader = open_capture(capture)
        lines = list(reader.iter_with_lines())
    except CaptureError as exc:
        _fail(f"{exc} (not a valr-replay capture)" if "line 1:" in exc.message else str(exc))
    if reader.problems:
        first = reader.problems[0]
        more = f" (and {len(reader.problems) - 1} more bad lines)" if len(reader.problems) > 1 else ""
        _fail(f"{first}{more}: not a valid capture line")
    records = [rec for _, rec in lines]
    base = None
    if scenario_path is not None:
        try:
            base = tomllib.loads(scenario_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"--scenario {scenario_path}: cannot read: {exc}")
        except tomllib.TOMLDecodeError as exc:
            _fail(f"--scenario {scenario_path}: not TOML: {exc}")
    try:
        around_ns = parse_offset(around, "--around") if around is not None else 2 * NS
        run_for = parse_offset(duration, "--duration") if duration is not None else None
        if run_for == 0:
            raise CutError(f"--duration {duration}: must be more than 0")
        result = cut_capture(
            reader.header, records, order=order,
            start=parse_time(start, "--from", records) if start is not None else None,
            end=parse_time(end, "--until", records) if end is not None else None,
            around=around_ns, source=capture.name)
    except CutError as exc:
        _fail(f"{capture}: {exc}")

    scrub_balances = "available" in (reader.header.get("scrubbed") or [])
    with CaptureWriter(out, result.header, scrub_balances=scrub_balances) as writer:
        for rec in result.records:
            writer.write(rec)
    import tomli_w

    parts = ["valr-replay", "cut", str(capture)]
    for flag, value in (("--order", order), ("--from", start), ("--until", end), ("--around", around),
                        ("--out", str(out)), ("--duration", duration),
                        ("--scenario", str(scenario_path) if scenario_path else None)):
        if value is not None:
            parts += [flag, value]
    command = " ".join(shlex.quote(p) for p in parts)
    doc = scenario_data(result, out.name, scenario_name(out.name.split(".")[0]), records, base, run_for)
    scenario_out.write_text(scenario_comment(result, command, str(scenario_path) if scenario_path else None)
                            + tomli_w.dumps(doc), encoding="utf-8")
    size, full = out.stat().st_size, capture.stat().st_size
    click.echo(f"cut {capture}: kept {len(result.records)}/{result.total} records, {size} of {full} bytes "
               f"({100 * size / full:.1f} %), {len(result.orders)} order(s), window "
               f"{result.window[0] / NS:.3f}..{result.window[1] / NS:.3f} s -> {out}; scenario {scenario_out}")
