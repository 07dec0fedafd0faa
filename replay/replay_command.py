"""``valr-replay replay CAPTURE``: serve a capture reactively as the fake VALR server."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from replay.auth import SECRET_HEADERS
from replay.server.command import announce, stop_on_signals

EXIT_DIVERGED = 1
EXIT_BAD_INPUT = 2
SUMMARY_NEVER_CAME = 3  # recorded requests that never came, listed in the closing summary


@click.command(name="replay", help=(
    "Serve CAPTURE (a recorded session, captures/README.md format) as a fake VALR server, "
    "reactively: market data at its recorded offsets (scaled by --speed); account traffic "
    "released when the client sends the request that came next in the recording, with the "
    "recorded delays, clientMsgIds and customerOrderIds mapped to the live ones (exchange order "
    "ids are kept as recorded). REST GETs are answered with the recorded responses.\n\n"
    "The first line on stdout is one JSON object, as for `serve`: rest_url, ws_account_url, "
    "ws_trade_url, api_key, api_secret (the demo credentials: captures hold none), seed.\n\n"
    "A request the capture never saw is a divergence: it is reported on stderr when it happens "
    "(once, then as one JSON line {\"divergence\": ...} at the end) and written to the trace (meta "
    "DIVERGENCE). --on-divergence stop closes the client's connections and exits 1; simulate says "
    "so and hands over to the simulated exchange (given the orders the replay left open) for the "
    "rest of the session. Otherwise runs until Ctrl-C/SIGTERM (exit 0). On the way out, whatever "
    "the reason, a summary on stderr: recorded requests matched, the divergence if any, recorded "
    "requests that never came."
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
    schedule = (DeliverySchedule.from_spec(scenario.latency, scenario.perturb, seed, ordering=scenario.ordering)
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


class _DivergenceLogFilter(logging.Filter):
    """The command reports the divergence itself: drop the server's log line of it (printed on
    stderr by logging's last-resort handler, it repeated the report)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from replay.playback import Divergence

        args = record.args if isinstance(record.args, tuple) else ()
        return not any(isinstance(arg, Divergence) for arg in args)


async def _replay(playback: Any, capture: Path, config: Any, schedule: Any, seed: int, on_divergence: str,
                  host: str, port: int, trace_path: Path | None) -> int:
    from rich.console import Console

    from replay.capture import CaptureWriter, TraceRecorder
    from replay.clock import Clock
    from replay.server.app import FakeValr

    console = Console(stderr=True, highlight=False, soft_wrap=True)

    class ConsoleFakeValr(FakeValr):
        """Says on the console when the client diverges and when the simulated exchange takes over,
        as it happens. (A trace is only made when --trace asks for one: it costs a parse of every
        market frame.)"""

        def diverge(self, divergence: Any) -> bool:
            if self.divergence is None:
                console.print(str(divergence), markup=False)
            return super().diverge(divergence)

        def handover(self) -> None:
            replaying = self.playback is not None
            super().handover()
            if replaying:
                console.print("handed over to the simulated exchange: it serves the rest of the session, "
                              "starting from the orders the replay left open", markup=False)

    clock = Clock()
    trace = None
    if trace_path is not None:
        writer = CaptureWriter(trace_path, {
            "created_at": clock.wall_iso(), "source": "simulated", "venue": "valr", "upstream": None,
            "pairs": list(playback.header.get("pairs") or []), "scrubbed": list(SECRET_HEADERS), "seed": seed,
            "capture": str(capture), "speed": playback.speed, "on_divergence": on_divergence,
        })
        trace = TraceRecorder(clock, writer, keep=False)
    server = ConsoleFakeValr(config, clock=clock, seed=seed, trace=trace, schedule=schedule, playback=playback,
                             on_divergence=on_divergence)
    server_log = logging.getLogger(FakeValr.__module__)
    log_filter = _DivergenceLogFilter()
    server_log.addFilter(log_filter)
    code = 0
    try:
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
    finally:
        server_log.removeFilter(log_filter)
    _final_summary(console, playback, server.divergence, on_divergence)
    if server.divergence is not None:
        click.echo(json.dumps({"divergence": server.divergence.to_dict()}), err=True)
    return code


def _final_summary(console: Any, playback: Any, divergence: Any, on_divergence: str) -> None:
    """What became of the recorded requests, printed however the replay ended (Ctrl-C included)."""
    info = playback.summary()
    never = info["pending"]
    console.print(f"replay summary: {info['matched']} of {info['requests']} recorded requests matched; "
                  f"{never} never came", markup=False)
    if divergence is None:
        console.print("  no divergence", markup=False)
    else:
        came = divergence.came or {}
        what = "handed over to the simulated exchange" if on_divergence == "simulate" else "stopped"
        console.print(f"  diverged after {divergence.matched} matched request(s) ({divergence.reason}): "
                      f"came {came.get('type', '?')}; {what}", markup=False)
    shown = (info.get("never_came") or [])[:SUMMARY_NEVER_CAME]
    for req in shown:
        console.print(f"  never came: {req.get('type')} recorded at +{float(req.get('recorded_ms', 0)):.3f}ms"
                      + "".join(f" {k}={req[k]}" for k in ("pair", "side", "price", "quantity", "customerOrderId")
                                if req.get(k) not in (None, "")), markup=False)
    if never > len(shown):
        console.print(f"  ... and {never - len(shown)} more", markup=False)


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
