"""``valr-replay record``: capture live VALR traffic through a recording proxy or directly."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import click

from .proxy import DEFAULT_UPSTREAM, UpstreamError, split_upstream

PAIR_RE = re.compile(r"[A-Z0-9]{2,20}")


def parse_pairs(value: str | None) -> list[str]:
    """``"BTCZAR,ethzar"`` -> ``["BTCZAR", "ETHZAR"]``; a bad entry raises click.BadParameter."""
    if not value:
        return []
    out: list[str] = []
    for i, raw in enumerate(value.split(",")):
        p = raw.strip().upper()
        if not PAIR_RE.fullmatch(p):
            raise click.BadParameter(
                f"entry {i + 1} ({raw.strip()!r}) is not a currency pair like BTCZAR", param_hint="'--pairs'")
        if p not in out:
            out.append(p)
    return out


@click.command(name="record", help=(
    "Record live VALR traffic into a capture (captures/README.md format; secrets scrubbed).\n\n"
    "Proxy mode (default): listen on HOST:PORT and forward REST, /ws/account and /ws/trade to "
    "--upstream, recording both directions. Point your bot's REST and WebSocket base URLs at the "
    "printed rest_url / ws_account_url / ws_trade_url. Signed headers pass through untouched.\n\n"
    "Direct mode (--direct): subscribe to the trade stream for --pairs (and to the account stream "
    "when VALR_API_KEY and VALR_API_SECRET are set) and record every frame; a lost upstream is "
    "retried with backoff and marked as a GAP.\n\n"
    "The first stdout line is one JSON object (the proxy's URLs, or the direct recorder's streams, "
    "and the output file). Live status goes to stderr. Ctrl-C / SIGTERM stops cleanly."
))
@click.option("--upstream", default=DEFAULT_UPSTREAM, show_default=True,
              help="VALR base URL to record from (http(s)://; WebSockets at ws(s)://same/ws/...).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Capture file to write (.jsonl, or .jsonl.gz for gzip).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Proxy mode: interface to bind.")
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535),
              help="Proxy mode: TCP port; 0 picks a free one (see the printed URLs).")
@click.option("--direct", is_flag=True, help="Subscribe and record directly instead of proxying.")
@click.option("--pairs", "pairs_text", default=None,
              help="Comma-separated pairs, e.g. BTCZAR,ETHZAR. Required with --direct; in proxy mode "
                   "only written to the capture header.")
@click.option("--append", is_flag=True, help="Continue an existing capture instead of refusing it.")
@click.option("--force", is_flag=True, help="Overwrite an existing capture.")
@click.option("--scrub-balances", is_flag=True, help="Also scrub balance amounts from the capture.")
@click.option("--status/--no-status", "show_status", default=True, show_default=True,
              help="Live status on stderr.")
def record(upstream: str, out: Path, host: str, port: int, direct: bool, pairs_text: str | None, append: bool,
           force: bool, scrub_balances: bool, show_status: bool) -> None:
    pairs = parse_pairs(pairs_text)
    try:
        split_upstream(upstream)
    except UpstreamError as exc:
        raise click.BadParameter(str(exc).removeprefix("upstream: "), param_hint="'--upstream'") from None
    if direct and not pairs:
        raise click.UsageError("--direct needs --pairs (e.g. --pairs BTCZAR,ETHZAR)")
    if append and force:
        raise click.UsageError("--append and --force contradict each other")
    if out.exists() and not (append or force):
        raise click.UsageError(f"{out}: already exists (use --append to continue it or --force to overwrite)")
    api_key = os.environ.get("VALR_API_KEY") or None
    api_secret = os.environ.get("VALR_API_SECRET") or None
    if direct and bool(api_key) != bool(api_secret):
        raise click.UsageError("set both VALR_API_KEY and VALR_API_SECRET (or neither) for --direct")
    from replay.capture import CaptureError

    try:
        code = asyncio.run(_record(
            upstream=upstream, out=out, host=host, port=port, direct=direct, pairs=pairs, append=append,
            scrub_balances=scrub_balances, show_status=show_status, api_key=api_key, api_secret=api_secret,
            subaccount_id=os.environ.get("VALR_SUBACCOUNT_ID", ""),
        ))
    except CaptureError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        where = exc.filename or (f"{host}:{port}" if not direct else str(out))
        click.echo(f"error: {where}: {exc.strerror or exc}", err=True)
        sys.exit(2)
    sys.exit(code)


async def _record(*, upstream: str, out: Path, host: str, port: int, direct: bool, pairs: list[str], append: bool,
                  scrub_balances: bool, show_status: bool, api_key: str | None, api_secret: str | None,
                  subaccount_id: str) -> int:
    from replay.capture import CaptureWriter
    from replay.clock import Clock

    from .direct import DirectRecorder
    from .proxy import RecordingProxy
    from .status import RecordSink, StatusDisplay

    clock = Clock()
    mode = "direct" if direct else "proxy"
    t_offset_ns = 0
    if append:
        writer = CaptureWriter.open_append(out)
        t_offset_ns = _continued_t_ns(out, writer.header, clock.epoch_ms())
    else:
        writer = CaptureWriter(out, {
            "created_at": clock.wall_iso(), "source": "live" if direct else "proxy", "upstream": upstream,
            "pairs": pairs, "mode": mode,
        }, scrub_balances=scrub_balances, known_secrets=_env_secrets())
    sink = RecordSink(writer, clock, t_offset_ns=t_offset_ns)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: int) -> None:
        if not stop.is_set():
            stop.set()  # the first Ctrl-C / SIGTERM: close everything cleanly
            return
        # a second one while closing: give up waiting (every line written so far is flushed)
        loop.remove_signal_handler(sig)
        os.kill(os.getpid(), sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    status_task: asyncio.Task | None = None
    code = 0
    try:
        sink.record("run", "local", "meta", "RUN_START", {"mode": mode, "upstream": upstream, "pairs": pairs})
        info: dict[str, Any]
        if direct:
            recorder = DirectRecorder(upstream, pairs, writer, api_key=api_key, api_secret=api_secret,
                                      subaccount_id=subaccount_id, sink=sink)
            info = {"mode": mode, "upstream": upstream, "pairs": pairs, "streams": recorder.streams,
                    "out": str(out)}
            print(json.dumps(info), flush=True)
            if show_status:
                status_task = asyncio.create_task(StatusDisplay(sink.stats).run(stop))
            await recorder.run(stop)
            for message in recorder.errors:
                print(f"warning: {message}", file=sys.stderr, flush=True)
        else:
            proxy = RecordingProxy(upstream, writer, sink=sink)
            await proxy.start(host, port)
            try:
                info = {"mode": mode, **proxy.urls(), "upstream": upstream, "out": str(out)}
                print(json.dumps(info), flush=True)
                if show_status:
                    status_task = asyncio.create_task(StatusDisplay(sink.stats).run(stop))
                await stop.wait()
            finally:
                await proxy.stop()
    finally:
        stop.set()
        if status_task is not None:
            await asyncio.gather(status_task, return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if not writer.closed:
            sink.record("run", "local", "meta", "RUN_END", {
                "pairs_seen": sorted(sink.pairs_seen), "messages": sink.stats.total_messages})
            writer.close()
    print(f"recorded {sink.stats.total_messages} messages to {out}", file=sys.stderr, flush=True)
    return code


def _continued_t_ns(path: Path, header: dict[str, Any], now_ms: int) -> int:
    """Where ``t`` goes on in a continued capture: the time since its ``created_at``, and
    never below its last record's ``t``."""
    from datetime import datetime

    from replay.capture import open_capture

    last = 0
    for rec in open_capture(path):
        if isinstance(rec.get("t"), (int, float)):
            last = max(last, int(rec["t"]))
    since = 0
    try:
        created = datetime.fromisoformat(str(header.get("created_at", "")).replace("Z", "+00:00"))
        since = (now_ms - int(created.timestamp() * 1000)) * 1_000_000
    except ValueError:
        pass
    return max(last + 1, since)


def _env_secrets() -> list[str]:
    """The credentials the recorder itself was given (direct mode): never written, even in raw text."""
    import os

    return [v for v in (os.environ.get("VALR_API_KEY"), os.environ.get("VALR_API_SECRET")) if v]
