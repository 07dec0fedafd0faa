"""``valr-replay from-log LOGFILE --out FILE``: a bot's log lines to a scenario that replays their race.

The thin click shell around ``replay/from_log.py`` (which does the parsing and the inference).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

EXIT_BAD_INPUT = 2
EXAMPLES = 5


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(EXIT_BAD_INPUT)


@click.command("from-log")
@click.argument("logfile", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              help="The scenario file to write ('-': standard output).")
@click.option("--patterns", "pattern_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE", help="A pattern file of your own (repeatable); its entries are tried before the "
                                   "shipped ones.")
@click.option("--no-builtin-patterns", is_flag=True, default=False,
              help="Use only the --patterns files, not the shipped Hummingbot and reference-connector sets.")
@click.option("--name", default=None, help="The scenario's name. Default: from the --out file's name.")
@click.option("--max-gap", default="1s", show_default=True, metavar="DURATION",
              help="Consecutive events of one order further apart than this are not taken for one race.")
def from_log(logfile: Path, out: Path, pattern_files: tuple[Path, ...], no_builtin_patterns: bool,
             name: str | None, max_gap: str) -> None:
    """Turn a bot's LOGFILE (a bug report's log lines; '-': standard input) into a scenario that
    replays the race they show.

    Each line is matched against known patterns (the first that matches wins). A matching line is
    an event of one order, caused by one wire message:

    \b
      snapshot-without     an OPEN_ORDERS_UPDATE handled without the order (its placement
                           not yet confirmed: first_when = "omits-order")
      placement-confirmed  the placement reply, PLACE_LIMIT_WS_RESPONSE
      cancel-sent          the bot sent a cancel: its own command, timing only, no delivery
      cancel-confirmed     the cancel reply, CANCEL_ORDER_WS_RESPONSE
      status               an ORDER_STATUS_UPDATE
      fill                 a fill, NEW_ACCOUNT_TRADE

    Lines that match nothing are counted and a few are shown, never guessed at. Shipped patterns
    read Hummingbot's log format ("2025-07-21 16:07:29,071 - 1234 - hummingbot... - INFO - msg",
    or the short "16:07:29,071 - msg") and the reference connector's trace (the lines `valr-replay
    show TRACE` prints, or the JSON lines of `run --trace`).

    A pattern file (--patterns FILE) is TOML, like the shipped replay/log_patterns/*.toml:

    \b
      prefix = '''^(?P<time>\\d\\d:\\d\\d:\\d\\d,\\d+) - '''  # optional: before each regex
      time_unit = "ms"                 # optional: for times that are bare numbers
      [[pattern]]
      name = "not-found"               # optional
      event = "snapshot-without"       # one of the events above
      regex = '''Order (?P<order>\\S+) not found in open orders'''
      [[pattern]]
      event = "cancel-confirmed"
      regex = '''Cancelled (?P<order>\\S+)'''
      order_id = "exchange"            # which id `order` holds: "client" (default) or "exchange"
      message = "ORDER_STATUS_UPDATE"  # optional: the wire message, not the event's own

    Named groups: `time` and `order` (required), `client_id` / `exchange_id` (another id of the same
    order, optional); others are ignored. A line naming only an exchange id is linked to an order by
    inference: a placement confirmed right after a snapshot handled without an order whose placement
    was not yet confirmed is that order (nothing else links them; the scenario's comments say so).

    What is written: for consecutive events of the same order, an [[ordering]] constraint (first =
    the earlier event's message, then = the later's, gap = their time difference; one per pair of
    message types, with the median gap), the log lines quoted in comments above it; small benign
    latencies elsewhere (1ms..4ms, plus the cancel reply's latency when the log shows cancel round
    trips), a reference-connector bot quoting BTCZAR every second, open_orders_race's invariants in
    [expect], and a commented-out [expect.policy.naive] to declare once `run --policy naive` has
    shown what the buggy handler breaks. The header says what was inferred and how to adjust it.

    Exit status: 0 when the scenario was written; 2 for bad input (an unreadable log, a log with no
    recognisable line, a bad pattern file: the message names the file and the entry/key).
    """
    from .from_log import (
        FromLogError,
        PatternError,
        builtin_patterns,
        fmt_duration,
        infer,
        load_pattern_file,
        parse_log,
        scenario_name,
        scenario_text,
    )
    from .latency import SpecError, parse_duration

    try:
        max_gap_us = round(parse_duration(max_gap, "--max-gap") * 1_000_000)
    except SpecError as exc:
        _fail(str(exc))
    try:
        patterns = [p for f in pattern_files for p in load_pattern_file(f)]
        if not no_builtin_patterns:
            patterns += builtin_patterns()
    except PatternError as exc:
        _fail(str(exc))
    if not patterns:
        _fail("no patterns: --no-builtin-patterns needs at least one --patterns FILE")
    log_name = "stdin" if str(logfile) == "-" else logfile.name
    try:
        if str(logfile) == "-":
            lines = sys.stdin.read().splitlines()
        else:
            lines = logfile.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        _fail(f"{logfile}: cannot read: {exc.strerror or exc}")

    parsed = parse_log(lines, patterns)
    report = sys.stderr if str(out) == "-" else sys.stdout

    def say(text: str = "") -> None:
        click.echo(text, file=report)

    if parsed.unmatched:
        say(f"{len(parsed.unmatched)} of {parsed.lines} lines not recognised (left out, never guessed at), e.g.:")
        for line_no, text in parsed.unmatched[:EXAMPLES]:
            say(f"  line {line_no}: {text[:160]}")
    if not parsed.events:
        _fail(f"{logfile}: no recognisable line ({parsed.lines} non-blank lines; none matched a known pattern). "
              "Give your log format with --patterns FILE (see --help).")
    try:
        inference = infer(parsed, max_gap_us=max_gap_us)
    except FromLogError as exc:
        _fail(f"{logfile}: {exc}")
    stem = "from-log" if str(out) == "-" else out.stem
    text = scenario_text(inference, name=name or scenario_name(stem), log_name=log_name)

    counts = ", ".join(f"{event} {n}" for event, n in parsed.counts().items())
    say(f"{log_name}: {len(parsed.events)} of {parsed.lines} lines recognised ({counts}); "
        f"{len(inference.orders)} order(s)")
    for order in inference.orders:
        for note in order.link_notes:
            say(f"  {order.label}: linked by inference: {note}")
    if inference.constraints:
        for c in inference.constraints:
            when = f" ({c.first_when})" if c.first_when != "mentions-order" else ""
            say(f"  [[ordering]] {c.name}: {c.first}{when} then {c.then} after {fmt_duration(c.gap_us)} "
                f"({len(c.pairs)} pair(s) in the log)")
    else:
        say("  no ordering constraint could be inferred (the scenario's comments say why); it is written anyway")
    if str(out) == "-":
        click.echo(text, nl=False)
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(f"{out}: cannot write: {exc.strerror or exc}")
    say(f"wrote {out}; next: valr-replay run {out} --policy naive --policy reconcile")
