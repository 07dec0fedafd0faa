"""``valr-replay serve``: run the fake VALR server until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import sys
from pathlib import Path
from typing import Any, Iterator, NoReturn

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
@click.option("--scenario", "scenario_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Serve this scenario file on the wall clock: its [exchange] (or the default config), "
                   "its background market, [latency] model and [[perturb]] faults (each one applied is "
                   "traced as a PERTURBATION record). A [market] capture is served by playback, as `run` "
                   "does (the simulated exchange takes over on a divergence). [bot] is not run: connect "
                   "your own connector; the first line carries bot.account's credentials. The duration "
                   "is ignored (serves until Ctrl-C). Not with --config. Judge the run afterwards with "
                   "`valr-replay check TRACE`.")
@click.option("--seed", default=None, type=int,
              help="Seed for order ids, the background market and the delivery schedule. "
                   "Default: the scenario's scenario.seed, else 0.")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every message in and out and every exchange event to this JSON Lines "
                   "trace (captures/README.md format; secrets scrubbed). With --scenario its header "
                   "names the scenario (name, path) and the seed, for `valr-replay check`.")
def serve(host: str, port: int, config_path: Path | None, scenario_path: Path | None, seed: int | None,
          trace_path: Path | None) -> None:
    from replay.config import ConfigError, default_config, load_config

    if scenario_path is not None:
        if config_path is not None:
            click.echo("error: --config and --scenario: give one (a scenario's [exchange] table is its "
                       "exchange config)", err=True)
            sys.exit(2)
        setup = _scenario_setup(scenario_path)
        run_seed = setup.scenario.seed if seed is None else seed
        try:
            asyncio.run(_serve(setup.config, host, port, run_seed, trace_path, setup))
        except OSError as exc:  # e.g. the port is taken
            click.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
            sys.exit(2)
        return
    seed = 0 if seed is None else seed
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


@dataclasses.dataclass
class ScenarioSetup:
    """What ``serve --scenario`` needs from a scenario file, checked before anything starts."""

    scenario: Any  # replay.scenario.Scenario
    config: Any  # replay.config.ExchangeConfig
    account: Any  # the bot.account's AccountConfig: its credentials go in the first line
    playback: Any = None  # replay.playback.Playback for a [market] capture
    capture: Path | None = None


def _scenario_setup(path: Path) -> ScenarioSetup:
    """Load the scenario, its exchange config and capture; exit 2 with one line naming the
    file and key on bad input."""
    from replay.capture import CaptureError
    from replay.config import ConfigError, config_from_dict, default_config
    from replay.scenario import ScenarioError, load_scenario

    def fail(message: str) -> NoReturn:
        click.echo(f"error: {message}", err=True)
        sys.exit(2)

    try:
        scenario = load_scenario(path)
        config = config_from_dict(scenario.exchange, str(scenario.path)) if scenario.exchange else default_config()
    except (ScenarioError, ConfigError) as exc:  # the message names the file and the key
        fail(str(exc))
    account = next((a for a in config.accounts if a.name == scenario.bot.account), None)
    if account is None:
        fail(f"{path}: bot.account: no account named {scenario.bot.account!r} in the exchange config "
             f"(accounts: {', '.join(a.name for a in config.accounts) or 'none'})")
    setup = ScenarioSetup(scenario, config, account)
    capture = scenario.market.get("capture")
    if capture:
        from replay.playback import Playback

        setup.capture = scenario.resolve(capture)
        try:
            setup.playback = Playback.from_file(setup.capture)
        except CaptureError as exc:
            fail(f"{path}: market.capture: {exc}")
        except OSError as exc:
            fail(f"{path}: market.capture: {setup.capture}: {exc.strerror or exc}")
        for problem in setup.playback.problems:
            click.echo(f"warning: {problem}", err=True)
    return setup


async def _serve(config, host: str, port: int, seed: int, trace_path: Path | None,
                 setup: ScenarioSetup | None = None) -> None:
    from replay.capture import CaptureWriter, TraceRecorder
    from replay.clock import Clock
    from replay.schedule import DeliverySchedule

    from .app import FakeValr

    clock = Clock()  # real loop time; its epoch is the wall clock, so time.time() signatures pass
    trace = None
    if trace_path is not None:
        header: dict[str, Any] = {
            "created_at": clock.wall_iso(), "source": "simulated", "venue": "valr", "upstream": None,
            "pairs": [p.symbol for p in config.pairs], "scrubbed": list(SECRET_HEADERS), "seed": seed,
        }
        if setup is not None:
            header.update(scenario=setup.scenario.name, scenario_path=str(Path(setup.scenario.path).resolve()),
                          **({"capture": str(setup.capture)} if setup.capture is not None else {}))
        writer = CaptureWriter(trace_path, header,
                               known_secrets=[v for a in config.accounts for v in (a.api_key, a.api_secret)])
        trace = TraceRecorder(clock, writer, keep=False)
    schedule = None
    if setup is not None:
        # as replay/runner.py builds it: the scenario's latency model and perturbations, anchored
        # at the start of serving
        start = clock.monotonic()
        schedule = DeliverySchedule.from_spec(setup.scenario.latency, setup.scenario.perturb, seed, start=start,
                                              ordering=setup.scenario.ordering)
        if trace is not None:
            recorder = trace

            def applied(a: Any) -> None:
                recorder.record("run", "local", "meta", "PERTURBATION",
                                {"name": a.name, "conn": a.conn, "msg_type": a.msg_type, "at": round(a.now - start, 6)})

            schedule.on_applied = applied
    server = FakeValr(config, clock=clock, seed=seed, trace=trace, schedule=schedule,
                      playback=setup.playback if setup is not None else None, on_divergence="simulate")
    with stop_on_signals() as stop:
        try:
            await server.start(host, port)
            announce(server, seed, setup.account if setup is not None else None)
            _summary(server, config, seed, trace_path)
            if setup is not None:
                _scenario_summary(setup)
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


def announce(server, seed: int, account: Any = None) -> None:
    """The first stdout line of ``serve`` and ``replay``: one JSON object a client can read
    (the credentials of ``account``, by default the config's first account)."""
    account = account if account is not None else server.config.accounts[0]
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


def _scenario_summary(setup: ScenarioSetup) -> None:
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    scenario = setup.scenario
    console.print(f"  scenario: {scenario.name} ({scenario.path}); "
                  f"{len(scenario.perturb)} perturbation(s); account {setup.account.name}")
    if setup.capture is not None:
        console.print(f"  market: playback of {setup.capture} (the simulated exchange takes over on a divergence)")
