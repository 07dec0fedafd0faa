"""``valr-replay export CAPTURE --har OUT``: a capture or run trace as a HAR 1.2 file (replay/har.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NoReturn

import click

EXIT_BAD_INPUT = 2
# What a writer killed mid-line leaves behind (it flushes every line): reported, not fatal.
TOLERATED_PROBLEMS = ("truncated last line", "gzip stream truncated")


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(EXIT_BAD_INPUT)


@click.command("export")
@click.argument("capture", type=click.Path(path_type=Path))
@click.option("--har", "har_path", required=True, type=click.Path(path_type=Path),
              help="Write the HAR 1.2 file here (JSON).")
def export(capture: Path, har_path: Path) -> None:
    """Write a CAPTURE (a recording, or a run's trace) as a HAR 1.2 file, the HTTP Archive that
    Chrome's and Firefox's devtools open in their Network panel (Import HAR, the upload arrow).

    \b
    What goes where:
      REST request/response pairs  one entry each: method, URL, headers, query, body, status,
                                   response body; startedDateTime = the request's wall time,
                                   time/timings = the request->response gap
      each WebSocket connection    one entry: GET ws://... answered 101, its frames in Chrome's
                                   _webSocketMessages (send/receive, epoch seconds, JSON text)
      meta, exchange events,       left out (the summary says how many)
      client and strategy records

    Where a trace lacks what HAR requires, neutral values stand in (no request headers: [];
    base URL: the capture's upstream, else the Host header, else http://localhost; see
    replay/har.py). Secrets stay scrubbed, and the written file is checked for any.

    Exit status: 0 written; 2 for bad input (a missing or corrupt capture, named with its line)
    or an output that cannot be written.
    """
    from .capture import CaptureError, find_secrets, open_capture
    from .har import HarInputError, to_har

    try:
        reader = open_capture(capture)
    except CaptureError as exc:
        _fail(f"{exc} (not a valr-replay capture?)" if "header" in exc.message else str(exc))
    lines: list[int] = []
    records = []
    try:
        for line_no, rec in reader.iter_with_lines():
            lines.append(line_no)
            records.append(rec)
    except OSError as exc:
        _fail(f"{capture}: cannot read: {exc.strerror or exc}")
    for problem in reader.problems:
        if problem.message.startswith(TOLERATED_PROBLEMS):
            click.echo(f"warning: {problem} (ignored)", err=True)
        else:
            _fail(str(problem))
    try:
        result = to_har(records, reader.header)
    except HarInputError as exc:
        _fail(f"{capture}:{lines[exc.index]}: {str(exc).partition(': ')[2]}")

    text = json.dumps(result.har, indent=1, ensure_ascii=False) + "\n"
    tmp = har_path.with_name(har_path.name + ".tmp")
    try:
        if har_path.is_dir():
            _fail(f"{har_path}: is a directory")
        tmp.write_text(text, encoding="utf-8")
        leaks = find_secrets(tmp)
        if leaks:
            tmp.unlink()
            _fail(f"{har_path}: not written: the HAR would hold a secret ({leaks[0].split(': ', 1)[-1]})")
        os.replace(tmp, har_path)
    except OSError as exc:
        if tmp.parent.is_dir():
            tmp.unlink(missing_ok=True)
        _fail(f"{har_path}: cannot write: {exc.strerror or exc}")

    kinds = ", ".join(f"{n} {k}" for k, n in sorted(result.left_out_kinds.items()))
    click.echo(f"{capture} -> {har_path}: {result.entries} entries ({result.rest_entries} REST, "
               f"{result.ws_entries} WebSocket), {result.messages} WebSocket messages, "
               f"{result.left_out} records left out" + (f" ({kinds})" if kinds else ""))
