"""One scenario end to end: fake server, connector and quoting loop on one clock, then checks.

A run uses a virtual-time event loop (``looptime``): the server, the connector and the
strategy share the loop, and the loop's clock jumps forward whenever every task is
waiting, so a 60 s scenario takes as long as its CPU work, and the same seed gives the
same trace. Real sockets on 127.0.0.1 are used throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .capture import CaptureWriter, TraceRecorder
from .checks import CheckResult, CheckSpec, run_checks
from .clock import Clock
from .config import config_from_dict, default_config
from .connector.adapter import ServerUrls, load_connector
from .hummingbot.bot import HummingbotError, is_hummingbot_spec
from .scenario import Scenario
from .schedule import DeliverySchedule
from .server.app import FakeValr
from .strategy import PureMarketMaking

# Fixed epoch origin for simulated runs (2026-01-01T00:00:00Z), so timestamps in a trace
# depend only on the scenario and the seed.
SIMULATED_EPOCH_MS = 1_767_225_600_000
READY_TIMEOUT_S = 30.0
SHUTDOWN_TIMEOUT_S = 5.0
SETTLE_S = 3.0


class RunError(RuntimeError):
    """The run could not be carried out (not: an invariant was violated)."""


def run_label(connector: str, policy: str, policy_applies: bool) -> str:
    """What a run is called in headings and trace file names: the policy for the reference connector,
    the connector (and its policy, when it takes ours) for any other."""
    if connector == "reference":
        return policy
    return f"{connector} {policy}" if policy_applies else connector


#: The version of the JSON that ``run --json`` and ``check --json`` write (``{"schema_version", "runs"}``).
JSON_SCHEMA_VERSION = 2


@dataclass
class RunResult:
    scenario: Scenario
    policy: str
    seed: int
    checks: list[CheckResult]
    expected_violations: list[str]
    sim_seconds: float
    wall_seconds: float
    trace_path: Path | None
    records: list[dict[str, Any]] = field(repr=False, default_factory=list)
    #: what ran: ``reference``, ``module:attr``, ``hummingbot[:...]``, and its ``[bot.options]``
    connector: str = "reference"
    connector_options: dict[str, Any] = field(default_factory=dict)
    #: whether the connector takes our OPEN_ORDERS_UPDATE policies (else ``policy`` meant nothing to it)
    policy_applies: bool = True
    #: judged by the base ``[expect]`` whatever the scenario expects of this connector or policy
    expect_hold: bool = False
    #: perturbations the schedule applied, by name
    perturbations: dict[str, int] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """What ran, as a column heading: ``naive``, ``hummingbot reconcile``, ``mymod:fixed``."""
        return run_label(self.connector, self.policy, self.policy_applies)

    @property
    def reproduce(self) -> str:
        """The command that runs exactly this again."""
        return reproduce_command(self.scenario, self.policy if self.policy_applies else None, self.seed,
                                 self.connector if self.connector != self.scenario.bot.connector else None,
                                 expect_hold=self.expect_hold)

    @property
    def violated(self) -> list[str]:
        return [c.name for c in self.checks if c.held is False]

    @property
    def unexpected(self) -> list[str]:
        """Checks whose outcome differs from the scenario's expectation for this policy."""
        expected = set(self.expected_violations)
        out = [name for name in self.violated if name not in expected]
        out += [name for name in sorted(expected) if name not in self.violated]
        return out

    @property
    def as_expected(self) -> bool:
        return not self.unexpected

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.name,
            "path": str(self.scenario.path),
            "connector": self.connector,
            "connector_options": self.connector_options,
            "policy": self.policy if self.policy_applies else None,
            "seed": self.seed,
            "expect_hold": self.expect_hold,
            "as_expected": self.as_expected,
            "expected_violations": self.expected_violations,
            "violated": self.violated,
            "unexpected": self.unexpected,
            "reproduce": self.reproduce,
            "perturbations": self.perturbations,
            "sim_seconds": self.sim_seconds,
            "wall_seconds": round(self.wall_seconds, 3),
            "trace": str(self.trace_path) if self.trace_path else None,
            "checks": [
                {
                    "name": c.name,
                    "held": c.held,
                    "figures": c.figures,
                    "message": c.message,
                    "first_violation": c.first_violation,
                    "timeline": c.timeline,
                }
                for c in self.checks
            ],
        }


def account_secrets(config: Any) -> list[str]:
    """Every API key and secret of the exchange's accounts: a trace never holds them, even in raw text."""
    return [value for a in config.accounts for value in (a.api_key, a.api_secret)]


def check_spec(scenario: Scenario) -> CheckSpec:
    bot = scenario.bot
    expect = dict(scenario.expect)

    def seconds(key: str, default: float) -> float:
        value = expect.pop(key, None)
        return default if value is None else float(value)

    return CheckSpec(
        account=bot.account,
        levels=2 * bot.order_levels,
        slack=int(expect.pop("open_orders_slack", 0)),
        grace_s=seconds("grace_s", 2.0),
        place_resolve_s=seconds("place_resolve_s", 5.0),
        cancel_resolve_s=seconds("cancel_resolve_s", 5.0),
        refresh_s=bot.order_refresh_time_s,
        requote_bound_s=seconds("requote_bound_s", 3.0),
        thresholds=expect,
    )


def reproduce_command(scenario: Scenario, policy: str | None, seed: int, connector: str | None = None, *,
                      expect_hold: bool = False) -> str:
    """The command line that runs this again, on one line: ``connector`` when it is not the scenario
    file's own, ``policy`` when the connector takes one."""
    parts = ["valr-replay run", shlex.quote(str(scenario.path))]
    if connector:
        parts += ["--connector", shlex.quote(connector)]
    if policy:
        parts += ["--policy", shlex.quote(policy)]
    parts += ["--seed", str(seed)]
    if expect_hold:
        parts.append("--expect-hold")
    return " ".join(parts)


def explain_start_failure(connector: str, exc: BaseException, virtual: bool) -> str:
    """One paragraph for a connector whose start failed: what failed and the likely cause."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    lowered = text.lower()
    if any(k in lowered for k in ("401", "expired", "signature", "unauthori")):
        cause = ("the exchange refused its signatures. " + (
            "This run is on virtual time, where the exchange's clock starts at 2026-01-01T00:00:00Z: a "
            "connector that stamps requests with time.time() is outside VALR's window. Sign with the run's "
            "clock (the adapter's `clock` option: clock.epoch_ms()), or run with --real-time."
            if virtual else "Check the API key and secret it was given (the scenario's bot.account)."))
    elif any(k in lowered for k in ("connect", "refused", "resolve", "name or service")):
        cause = ("it could not reach the fake server: check that it uses the URLs it is given "
                 "(ServerUrls in start()) rather than VALR's own.")
    else:
        cause = "see the error above; `--trace FILE` and `valr-replay show FILE` show what it sent."
    return f"connector {connector!r} failed to start ({text}). Likely cause: {cause}"


async def run_scenario_async(
    scenario: Scenario,
    policy: str | None = None,
    seed: int | None = None,
    *,
    trace_path: str | Path | None = None,
    on_progress: Callable[[float, float], None] | None = None,
    on_divergence: str = "simulate",
    record_proxy: str | Path | None = None,
    connector: str | None = None,
    expect_hold: bool = False,
) -> RunResult:
    """Run one scenario under ``policy`` on the running loop and check the trace.

    A scenario whose ``[market]`` names a ``capture`` is served by a reactive playback of that
    capture (replay/playback.py) instead of the simulated exchange; on a divergence the
    simulated exchange takes over (``on_divergence="simulate"``) or the server closes the
    client's connections (``"stop"``). Either way the trace has a ``DIVERGENCE`` meta record.

    ``connector`` runs another connector than the scenario's ``bot.connector``; ``expect_hold``
    judges the run by the base ``[expect]`` (every check holds), whatever the scenario expects."""
    policy = policy or scenario.bot.policy
    spec = connector or scenario.bot.connector
    seed = scenario.seed if seed is None else seed
    wall0 = time.perf_counter()
    loop = asyncio.get_running_loop()
    # Virtual time starts at a fixed epoch, so traces depend only on the scenario and the seed; on the
    # real clock the exchange's epoch is the wall clock, so a connector that signs with time.time() agrees.
    clock = Clock(loop, epoch_origin_ms=SIMULATED_EPOCH_MS if getattr(loop, "looptime_on", False) else None)
    config = config_from_dict(scenario.exchange, str(scenario.path)) if scenario.exchange else default_config()
    pair = scenario.bot.pair
    playback = None
    capture_path = scenario.market.get("capture")
    if capture_path:
        from .capture import CaptureError
        from .playback import Playback

        resolved = scenario.resolve(capture_path)
        try:
            playback = Playback.from_file(resolved)
        except (CaptureError, OSError) as exc:
            raise RunError(f"{scenario.path}: market.capture: {exc}") from None
    writer = None
    if trace_path is not None:
        writer = CaptureWriter(
            trace_path,
            {
                "source": "simulated",
                "venue": "valr",
                "upstream": None,
                "pairs": [pair],
                "scenario": scenario.name,
                "policy": policy,
                "seed": seed,
                **({"capture": str(capture_path)} if capture_path else {}),
            },
            known_secrets=account_secrets(config),
        )
    trace = TraceRecorder(clock, writer=writer)
    start = clock.monotonic()
    schedule = DeliverySchedule.from_spec(scenario.latency, scenario.perturb, seed, start=start)
    schedule.on_applied = lambda a: trace.record(
        "run", "local", "meta", "PERTURBATION",
        {"name": a.name, "conn": a.conn, "msg_type": a.msg_type, "at": a.now},
    )
    account = next((a for a in config.accounts if a.name == scenario.bot.account), None)
    if account is None:
        raise RunError(f"{scenario.path}: bot.account: no account named {scenario.bot.account!r} "
                       "in the exchange config")

    server = FakeValr(config, clock=clock, seed=seed, trace=trace, schedule=schedule, playback=playback,
                      on_divergence=on_divergence)
    proxy = None
    proxy_writer = None
    driver: Any = None  # the connector under test (an adapter, or a Hummingbot connector with its PMM)
    policy_applies = True  # whether [expect.policy.P] judges this connector
    strategy_task: asyncio.Task | None = None
    try:
        await server.start("127.0.0.1", 0)
        urls = ServerUrls(server.rest_url, server.ws_account_url, server.ws_trade_url)
        if record_proxy is not None:
            from .record.proxy import RecordingProxy

            proxy_writer = CaptureWriter(record_proxy, {
                "created_at": clock.wall_iso(), "source": "proxy", "venue": "valr", "upstream": server.rest_url,
                "pairs": [pair], "scenario": scenario.name, "policy": policy, "seed": seed,
            })
            proxy = RecordingProxy(server.rest_url, proxy_writer, clock=clock)
            await proxy.start("127.0.0.1", 0)
            urls = ServerUrls(proxy.rest_url, proxy.ws_account_url, proxy.ws_trade_url)
        trace.record("run", "local", "meta", "RUN_START",
                     {"scenario": scenario.name, "connector": spec, "policy": policy, "seed": seed,
                      "duration_s": scenario.duration_s})
        bot = scenario.bot
        hummingbot = is_hummingbot_spec(spec)
        if hummingbot:
            from .hummingbot.bot import HummingbotBot

            spec_pair = next((p for p in config.pairs if p.symbol == pair), None)
            if spec_pair is None:
                raise RunError(f"{scenario.path}: bot.pair: no pair {pair!r} in the exchange config")
            driver = HummingbotBot(spec, clock=clock, trace=trace, pair=pair, base=spec_pair.base,
                                   quote=spec_pair.quote, policy=policy, options=bot.options,
                                   url_overrides=bot.hummingbot.get("urls"))
            # a fork's connector has its own snapshot handler: the policy verdicts do not apply to it
            policy_applies = driver.takes_policy
        else:
            try:
                driver = load_connector(spec, policy=policy, clock=clock, trace=trace, seed=seed, pairs=(pair,),
                                        **bot.options)
            except (ValueError, TypeError) as exc:
                raise RunError(str(exc)) from None
            policy_applies = spec == "reference"
        try:
            await driver.start(urls, account.api_key, account.api_secret)
        except (HummingbotError, RunError):
            raise
        except Exception as exc:
            raise RunError(explain_start_failure(spec, exc, clock.is_virtual)) from exc
        deadline = clock.monotonic() + READY_TIMEOUT_S
        while not driver.ready:
            if clock.monotonic() > deadline:
                why = driver.not_ready_report() if hasattr(driver, "not_ready_report") else ""
                raise RunError(f"connector {spec!r} not ready after {READY_TIMEOUT_S:.0f} s"
                               + (f": {why}" if why else ""))
            await asyncio.sleep(0.05)
        until = clock.monotonic() + scenario.duration_s
        quoting: Any
        if hummingbot:
            quoting = driver.run_strategy(
                until, bid_spread=bot.bid_spread, ask_spread=bot.ask_spread, order_amount=bot.order_amount,
                order_levels=bot.order_levels, order_refresh_time=bot.order_refresh_time_s,
                filled_order_delay=bot.filled_order_delay_s)
        else:
            quoting = PureMarketMaking(
                driver,
                pair,
                bid_spread=bot.bid_spread,
                ask_spread=bot.ask_spread,
                order_amount=bot.order_amount,
                order_levels=bot.order_levels,
                order_refresh_time=bot.order_refresh_time_s,
                filled_order_delay=bot.filled_order_delay_s,
                trace=trace,
            ).run(until)
        strategy_task = asyncio.ensure_future(quoting)
        if on_progress is not None:
            while not strategy_task.done():
                on_progress(min(scenario.duration_s, clock.monotonic() - start), scenario.duration_s)
                await asyncio.wait({strategy_task}, timeout=1.0)
        await strategy_task
        trace.record("run", "local", "meta", "SHUTDOWN_BEGIN", {})
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(driver.cancel_all(SHUTDOWN_TIMEOUT_S), SHUTDOWN_TIMEOUT_S + 1)
        await asyncio.sleep(SETTLE_S)
        trace.record("run", "local", "meta", "SHUTDOWN_DONE", {})
        sim_seconds = clock.monotonic() - start
    except HummingbotError as exc:
        raise RunError(str(exc)) from None
    finally:
        if strategy_task is not None and not strategy_task.done():
            strategy_task.cancel()
            with contextlib.suppress(BaseException):
                await strategy_task
        if driver is not None:
            with contextlib.suppress(Exception):
                await driver.stop()
        if proxy is not None:
            with contextlib.suppress(Exception):
                await proxy.stop()
        if proxy_writer is not None:
            proxy_writer.close()
        await server.stop()
        if playback is not None:
            trace.record("run", "local", "meta", "PLAYBACK", {**playback.summary(),
                                                               "diverged": server.divergence is not None})
        trace.record("run", "local", "meta", "RUN_END", {})
        trace.close()

    checks = run_checks(trace.records, check_spec(scenario))
    return RunResult(
        scenario=scenario,
        policy=policy,
        seed=seed,
        checks=checks,
        expected_violations=scenario.expected_for(spec, policy, takes_policy=policy_applies, expect_hold=expect_hold),
        sim_seconds=sim_seconds,
        wall_seconds=time.perf_counter() - wall0,
        trace_path=Path(trace_path) if trace_path else None,
        records=trace.records,
        connector=spec,
        connector_options=dict(scenario.bot.options),
        policy_applies=policy_applies,
        expect_hold=expect_hold,
        perturbations=dict(sorted(Counter(
            r["data"]["name"] for r in trace.records if r["kind"] == "meta" and r["type"] == "PERTURBATION").items())),
    )


def new_loop(virtual: bool = True) -> asyncio.AbstractEventLoop:
    if virtual:
        import looptime

        return looptime.new_event_loop(start=0.0)
    return asyncio.new_event_loop()


def run_scenario(
    scenario: Scenario,
    policy: str | None = None,
    seed: int | None = None,
    *,
    trace_path: str | Path | None = None,
    virtual: bool = True,
    on_progress: Callable[[float, float], None] | None = None,
    **kwargs: Any,
) -> RunResult:
    """Run a scenario in a fresh event loop (virtual time unless ``virtual=False``)."""
    loop = new_loop(virtual)
    try:
        return loop.run_until_complete(
            run_scenario_async(scenario, policy, seed, trace_path=trace_path, on_progress=on_progress, **kwargs)
        )
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
