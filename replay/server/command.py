"""``valr-replay serve``: run the fake VALR server until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Iterator

import click

from replay.auth import SECRET_HEADERS

DEMO_NOTE = (
    "Credentials: the accounts of --config (or, without it, the built-in demo account whose "
    "key and secret are replay.config.DEMO_API_KEY / DEMO_API_SECRET). The first account's "
    "api_key and api_secret are printed in the first stdout line."
)


@click.command(name="serve", help=(
    "Run a fake VALR exchange (REST, /ws/account, /ws/trade) on HOST:PORT until Ctrl-C/SIGTERM.\n\n"
    "The first line on stdout is one JSON object: rest_url, ws_account_url, ws_trade_url, api_key, "
    "api_secret (first account) and seed. Point a VALR connector's base URLs at them.\n\n" + DEMO_NOTE
))
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port; 0 picks a free one (see the printed URLs).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Exchange config file (pairs, accounts with keys and balances, server limits, "
                   "background market). Default: the built-in demo config.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed for order ids, the background market and the delivery schedule.")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every message in and out and every exchange event to this JSON Lines "
                   "trace (captures/README.md format; secrets scrubbed).")
def serve(host: str, port: int, config_path: Path | None, seed: int, trace_path: Path | None) -> None:
    from replay.config import ConfigError, default_config, load_config

    if config_path is not None:
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            # ConfigError's message names the file and key.
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except OSError as exc:
            click.echo(f"error: {config_path}: {exc.strerror or exc}", err=True)
            sys.exit(2)
    else:
        config = default_config()
    if not config.accounts:
        click.echo(f"error: {config_path or 'default config'}: accounts: at least one account is required",
                   err=True)
        sys.exit(2)
    try:
        asyncio.run(_serve(config, host, port, seed, trace_path))
    except OSError as exc:  # e.g. the port is taken
        click.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        sys.exit(2)


async def _serve(config, host: str, port: int, seed: int, trace_path: Path | None) -> None:
    from replay.capture import CaptureWriter, TraceRecorder
    from replay.clock import Clock

    from .app import FakeValr

    clock = Clock()
    trace = None
    if trace_path is not None:
        writer = CaptureWriter(trace_path, {
            "created_at": clock.wall_iso(), "source": "simulated", "venue": "valr", "upstream": None,
            "pairs": [p.symbol for p in config.pairs], "scrubbed": list(SECRET_HEADERS), "seed": seed,
        })
        trace = TraceRecorder(clock, writer, keep=False)
    server = FakeValr(config, clock=clock, seed=seed, trace=trace)
    with stop_on_signals() as stop:
        try:
            await server.start(host, port)
            announce(server, seed)
            _summary(server, config, seed, trace_path)
            await stop.wait()
        finally:
            await server.stop()
            if trace is not None:
                trace.close()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[asyncio.Event]:
    """An event that SIGINT and SIGTERM set while the block runs (the loop's signal handlers)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def announce(server, seed: int) -> None:
    """The first stdout line of ``serve`` and ``replay``: one JSON object a client can read."""
    account = server.config.accounts[0]
    print(json.dumps({
        "rest_url": server.rest_url, "ws_account_url": server.ws_account_url,
        "ws_trade_url": server.ws_trade_url, "api_key": account.api_key,
        "api_secret": account.api_secret, "seed": seed,
    }), flush=True)


def _summary(server, config, seed: int, trace_path: Path | None) -> None:
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    console.print(f"[bold]fake VALR[/bold] listening on {server.rest_url}  (seed {seed})")
    console.print(f"  account stream: {server.ws_account_url}")
    console.print(f"  trade stream:   {server.ws_trade_url}")
    console.print(f"  pairs: {', '.join(p.symbol for p in config.pairs)}")
    console.print(f"  accounts: {', '.join(a.name for a in config.accounts)}")
    if trace_path is not None:
        console.print(f"  trace: {trace_path}")
    console.print("Ctrl-C to stop.")
