"""``valr-replay replay CAPTURE``: serve a capture reactively as the fake VALR server."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

from replay.auth import SECRET_HEADERS
from replay.server.command import announce, stop_on_signals

EXIT_DIVERGED = 1
EXIT_BAD_INPUT = 2


@click.command(name="replay", help=(
    "Serve CAPTURE (a recorded session, captures/README.md format) as a fake VALR server, "
    "reactively: market data at its recorded offsets (scaled by --speed); account traffic "
    "released when the client sends the request that came next in the recording, with the "
    "recorded delays, clientMsgIds and customerOrderIds mapped to the live ones (exchange order "
    "ids are kept as recorded). REST GETs are answered with the recorded responses.\n\n"
    "The first line on stdout is one JSON object, as for `serve`: rest_url, ws_account_url, "
    "ws_trade_url, api_key, api_secret (the demo credentials: captures hold none), seed.\n\n"
    "A request the capture never saw is a divergence: it is printed on stderr and written to "
    "the trace (meta DIVERGENCE). --on-divergence stop closes the client's connections and exits "
    "1; simulate hands over to the simulated exchange (given the orders the replay left open) "
    "for the rest of the session. Otherwise runs until Ctrl-C/SIGTERM (exit 0)."
))
@click.argument("capture", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--speed", default=1.0, show_default=True, type=float,
              help="Playback speed: recorded delays and offsets are divided by this (2 = twice as fast).")
@click.option("--scenario", "scenario_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Scenario file whose [latency] and [[perturb]] apply on top of the playback "
                   "(and whose [exchange] configures the simulated exchange for a handover).")
@click.option("--on-divergence", type=click.Choice(["stop", "simulate"]), default="stop", show_default=True,
              help="What to do when the client leaves the capture.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port; 0 picks a free one (see the printed URLs).")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write everything the playback server sends and receives to this trace.")
@click.option("--seed", default=None, type=int,
              help="Seed for the delivery schedule and a simulated handover (default: the scenario's, else 0).")
def replay(capture: Path, speed: float, scenario_path: Path | None, on_divergence: str, host: str, port: int,
           trace_path: Path | None, seed: int | None) -> None:
    from replay.capture import CaptureError
    from replay.config import ConfigError, config_from_dict, default_config
    from replay.playback import Playback
    from replay.scenario import ScenarioError, load_scenario
    from replay.schedule import DeliverySchedule

    if not speed > 0:
        _fail(f"--speed: must be > 0, got {speed}")
    scenario = None
    if scenario_path is not None:
        try:
            scenario = load_scenario(scenario_path)
        except (ScenarioError, OSError) as exc:
            _fail(str(exc) if isinstance(exc, ScenarioError) else f"{scenario_path}: {exc}")
    if seed is None:
        seed = scenario.seed if scenario is not None else 0
    try:
        config = (config_from_dict(scenario.exchange, str(scenario.path))
                  if scenario is not None and scenario.exchange else default_config())
    except ConfigError as exc:
        _fail(str(exc))
    try:
        playback = Playback.from_file(capture, speed=speed)
    except CaptureError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{capture}: {exc.strerror or exc}")
    for problem in playback.problems:
        click.echo(f"warning: {problem}", err=True)
    if not config.accounts:
        _fail(f"{scenario_path}: exchange.accounts: at least one account is required")
    schedule = (DeliverySchedule.from_spec(scenario.latency, scenario.perturb, seed)
                if scenario is not None else DeliverySchedule(seed))
    try:
        code = asyncio.run(_replay(playback, capture, config, schedule, seed, on_divergence, host, port, trace_path))
    except OSError as exc:
        click.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    sys.exit(code)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


async def _replay(playback: Any, capture: Path, config: Any, schedule: Any, seed: int, on_divergence: str,
                  host: str, port: int, trace_path: Path | None) -> int:
    from replay.capture import CaptureWriter, TraceRecorder
    from replay.clock import Clock
    from replay.server.app import FakeValr

    clock = Clock()
    trace = None
    if trace_path is not None:
        writer = CaptureWriter(trace_path, {
            "created_at": clock.wall_iso(), "source": "simulated", "venue": "valr", "upstream": None,
            "pairs": list(playback.header.get("pairs") or []), "scrubbed": list(SECRET_HEADERS), "seed": seed,
            "capture": str(capture), "speed": playback.speed, "on_divergence": on_divergence,
        })
        trace = TraceRecorder(clock, writer, keep=False)
    server = FakeValr(config, clock=clock, seed=seed, trace=trace, schedule=schedule, playback=playback,
                      on_divergence=on_divergence)
    code = 0
    with stop_on_signals() as stop:
        try:
            await server.start(host, port)
            announce(server, seed)
            _summary(server, playback, capture, on_divergence, trace_path)
            stopped = asyncio.ensure_future(stop.wait())
            diverged = asyncio.ensure_future(server.diverged.wait())
            await asyncio.wait({stopped, diverged}, return_when=asyncio.FIRST_COMPLETED)
            for fut in (stopped, diverged):
                fut.cancel()
            if server.diverged.is_set():
                code = EXIT_DIVERGED
                await server.closed_after_divergence()  # the 1011 closes go out before the 1001s
        finally:
            await server.stop()
            if trace is not None:
                trace.record("run", "local", "meta", "PLAYBACK",
                             {**playback.summary(), "diverged": server.divergence is not None})
                trace.close()
    if server.divergence is not None:
        click.echo(f"{server.divergence}", err=True)
        click.echo(json.dumps({"divergence": server.divergence.to_dict()}), err=True)
    return code


def _summary(server: Any, playback: Any, capture: Path, on_divergence: str, trace_path: Path | None) -> None:
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    info = playback.summary()
    console.print(f"[bold]valr-replay[/bold] replaying {capture} on {server.rest_url} "
                  f"(speed {playback.speed:g}, on divergence: {on_divergence})")
    console.print(f"  {info['requests']} recorded requests, {info['gets']} recorded GET responses, "
                  f"source {playback.header.get('source')}")
    console.print(f"  account stream: {server.ws_account_url}")
    console.print(f"  trade stream:   {server.ws_trade_url}")
    if trace_path is not None:
        console.print(f"  trace: {trace_path}")
    console.print("Ctrl-C to stop.")
