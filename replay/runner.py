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
import weakref
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .capture import CaptureWriter, TraceRecorder
from .checks import CheckEngine, CheckResult, CheckSpec
from .clock import Clock
from .config import config_from_dict, default_config
from .connector.adapter import ServerUrls, load_connector
from .hummingbot.bot import HummingbotError, is_hummingbot_spec
from .record_store import RecordStore
from .scenario import SINGLE_BOT_NAME, BotSpec, Scenario
from .schedule import DeliverySchedule
from .server.app import FakeValr
from .strategy import PureMarketMaking

# Fixed epoch origin for simulated runs (2026-01-01T00:00:00Z), so timestamps in a trace
# depend only on the scenario and the seed.
SIMULATED_EPOCH_MS = 1_767_225_600_000
READY_TIMEOUT_S = 30.0
SHUTDOWN_TIMEOUT_S = 5.0
SETTLE_S = 3.0
#: Empty loop turns looptime lets pass before it moves virtual time to the next timer (its default: 42).
#: They let callbacks that chain through ready handles run before time jumps; our I/O is loopback sockets,
#: whose data is readable by the next select, so 2 are enough: traces are byte-identical to 42 on every
#: shipped scenario, and a run is about 1.4x faster (the empty turns were ~40 % of a long run's CPU).
NOOP_CYCLES = 2
#: A settled order (final for the client, closed on the exchange) untouched this long (at least three of
#: the checks' windows) is judged and forgotten: what keeps a long run's memory flat.
RETIRE_AFTER_S = 30.0


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
    #: the account whose orders the checks judged
    account: str = "demo"
    #: the bot this result judges (``[bot] name`` / ``[[bot]] name``)
    bot: str = SINGLE_BOT_NAME
    #: the other bots of a scenario with several (``[[bot]]``): their results, on the same trace and clock
    others: list[RunResult] = field(default_factory=list, repr=False)
    #: the checks whose violation ended the run early (``stop_on_violation``); empty: it ran its course
    stopped_on_violation: list[str] = field(default_factory=list)
    #: settled orders the checks judged and forgot as the run went (streaming: what keeps memory flat)
    retired_orders: int = 0
    #: records about an order after it was retired (each may make a figure differ from a batch check)
    late_records: int = 0

    @property
    def bots(self) -> list[RunResult]:
        """Every bot's result: this one (the scenario's first bot), then ``others``."""
        return [self, *self.others]

    @property
    def multi_bot(self) -> bool:
        return self.scenario.multi_bot

    @property
    def label(self) -> str:
        """What ran, as a column heading: ``naive``, ``hummingbot reconcile``, ``mymod:fixed``; with several bots
        the bot's name first: ``maker: reference naive``."""
        if self.multi_bot:
            what = f"{self.connector} {self.policy}" if self.policy_applies else self.connector
            return f"{self.bot}: {what}"
        return run_label(self.connector, self.policy, self.policy_applies)

    @property
    def reproduce(self) -> str:
        """The command that runs exactly this again (with several bots: the whole scenario, as the file says)."""
        if self.multi_bot:
            return reproduce_command(self.scenario, self.scenario.policy_override, self.seed,
                                     self.scenario.connector_override, expect_hold=self.expect_hold)
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
            "bot": self.bot,
            "account": self.account,
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
            "stopped_on_violation": self.stopped_on_violation,
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


def check_spec(scenario: Scenario, bot: BotSpec | None = None) -> CheckSpec:
    """What the checks judge for ``bot`` (default: the scenario's first): its account, its levels and refresh
    time, and ``[expect]`` with that bot's own ``[expect.bot.NAME]`` keys over it."""
    bot = bot or scenario.bot
    expect = scenario.expect_for(bot)

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
    file's own, ``policy`` when the connector takes one, ``--duration`` when the run overrode the file's."""
    parts = ["valr-replay run", shlex.quote(str(scenario.path))]
    if connector:
        parts += ["--connector", shlex.quote(connector)]
    if policy:
        parts += ["--policy", shlex.quote(policy)]
    parts += ["--seed", str(seed)]
    if scenario.duration_override is not None:
        parts += ["--duration", shlex.quote(scenario.duration_override)]
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


# --- several bots on one exchange -------------------------------------------------------------


class BotTrace:
    """One bot's view of the run's trace: what its connector and quoting loop record carries ``"bot": NAME``
    in its data, so the records of several bots on one exchange can be told apart (``bot_record_filter``).
    Everything else is the run's :class:`~replay.capture.TraceRecorder`."""

    def __init__(self, trace: TraceRecorder, bot: str):
        self._trace = trace
        self.bot = bot

    def record(self, conn: str, dir: str, kind: str, type: str, data: Any) -> dict[str, Any]:
        if isinstance(data, dict) and "bot" not in data:
            data = {**data, "bot": self.bot}
        return self._trace.record(conn, dir, kind, type, data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trace, name)


#: data keys of a REST request or response that name an order
_ORDER_KEYS = ("orderId", "customerOrderId", "id")
_EVENT_ID_KEYS = ("order_id", "customer_order_id")
_CLIENT_ID_KEYS = ("client_order_id", "exchange_order_id")


def _order_ids_in_rest(record: dict[str, Any]) -> set[str]:
    """The order ids and customerOrderIds a REST request names: its body and its path
    (``DELETE /v1/orders/order`` names them in the body, ``GET /v1/orders/{pair}/orderid/{id}`` in the path)."""
    data = record.get("data")
    ids: set[str] = set()
    body = data.get("body") if isinstance(data, dict) else None
    if isinstance(body, dict):
        ids.update(str(body[k]) for k in _ORDER_KEYS if body.get(k))
    parts = str(record.get("type", "")).split("?")[0].split("/")
    for marker in ("orderid", "customerorderid"):
        if marker in parts and parts.index(marker) + 1 < len(parts):
            ids.add(parts[parts.index(marker) + 1])
    return ids


def bot_record_filter(bot_name: str, account: str) -> Callable[[dict[str, Any]], bool]:
    """A predicate ``belongs(record) -> bool``: whether a trace record is the bot's (or shared by every bot), for
    judging one bot of several on one exchange. Fed the records in trace order (it learns as it goes):

    - records its connector and quoting loop wrote (``"bot"`` in their data, :class:`BotTrace`): its own only;
      ``client``/``strategy`` records without that field (a run with one bot) are everybody's;
    - exchange ``event`` records: those of ``account`` (and those of no account: the public book and trades);
    - WebSocket records: by the account of their connection (its ``CONNECT`` record says which);
    - REST records (the server cannot say whose a request is before it is authenticated): a request that
      names an order is the bot's when the order is (its own records named it before), else not; the answer
      is kept for the response on the same connection; a request naming no order (public data, balances) is
      everybody's, unless a command the request submitted says whose it is;
    - meta records (the run's start, shutdown, perturbations): everybody's.
    """
    ws_account: dict[str, str | None] = {}
    rest_owner: dict[str, bool] = {}
    own_ids: set[str] = set()

    def belongs(record: dict[str, Any]) -> bool:
        data = record.get("data")
        data = data if isinstance(data, dict) else {}
        kind = record.get("kind")
        conn = str(record.get("conn", ""))
        if "bot" in data and kind != "event":
            mine = data["bot"] == bot_name
            if mine:
                own_ids.update(str(data[k]) for k in _CLIENT_ID_KEYS if data.get(k))
            return bool(mine)
        if kind in ("client", "strategy"):
            own_ids.update(str(data[k]) for k in _CLIENT_ID_KEYS if data.get(k))
            return True
        if kind == "event":
            owner = data.get("account")
            if owner is None:
                return True
            mine = owner == account
            if mine:
                order = data.get("order")
                for source in (data, order if isinstance(order, dict) else {}):
                    own_ids.update(str(source[k]) for k in _EVENT_ID_KEYS if source.get(k))
            sent_by = data.get("conn")
            if record.get("type") == "CommandSubmitted" and isinstance(sent_by, str) and sent_by.startswith("rest"):
                rest_owner.setdefault(sent_by, mine)
            return bool(mine)
        if kind == "ws":
            if record.get("type") == "CONNECT":
                ws_account[conn] = data.get("account")
            owner = ws_account.get(conn)
            return owner is None or owner == account
        if kind == "rest":
            if conn in rest_owner:
                return rest_owner[conn]
            named = _order_ids_in_rest(record)
            if named:
                rest_owner[conn] = bool(named & own_ids)
                return rest_owner[conn]
            return True
        return True

    return belongs


def records_for_bot(records: list[dict[str, Any]], bot_name: str, account: str) -> list[dict[str, Any]]:
    """The records of ``records`` that judge the bot ``bot_name`` trading on ``account``
    (:func:`bot_record_filter`), in order."""
    belongs = bot_record_filter(bot_name, account)
    return [r for r in records if belongs(r)]


@dataclass
class _BotRun:
    """One bot of a run: what it runs and, once started, its connector."""

    spec: BotSpec
    connector: str
    policy: str
    key: str  # how errors name it: ``bot`` or ``bot[1]``
    driver: Any = None
    policy_applies: bool = True
    task: asyncio.Task | None = None


def _bot_runs(scenario: Scenario, policy: str | None, connector: str | None) -> list[_BotRun]:
    """Every bot of the scenario, running ``Scenario.connector_override`` / ``policy_override`` when set, else its
    own; ``policy`` and ``connector`` (the caller's) replace the first bot's."""
    runs = []
    for i, bot in enumerate(scenario.bots):
        key = f"bot[{i}]" if scenario.multi_bot else "bot"
        spec = scenario.connector_override or bot.connector
        kind = scenario.policy_override or bot.policy
        if i == 0:
            spec, kind = connector or spec, policy or kind
        runs.append(_BotRun(bot, spec, kind, key))
    if sum(is_hummingbot_spec(b.connector) for b in runs) > 1:
        raise RunError(f"{scenario.path}: bot: at most one bot of a scenario may run a Hummingbot connector (each "
                       "takes over process-wide Hummingbot state: its clock, its URLs, its HTTP session)")
    return runs


@dataclass
class RunProgress:
    """A run as it goes, about once per simulated second (``run_scenario(on_progress=...)``)."""

    sim_s: float
    total_s: float
    wall_s: float
    #: the bots' open orders on the exchange now
    open_orders: int
    #: checks already violated (``bot: check`` with several bots); others are judged at the end
    violated: list[str]

    @property
    def speed(self) -> float:
        """Simulated seconds per wall-clock second."""
        return self.sim_s / self.wall_s if self.wall_s > 0 else 0.0


class _Watch:
    """A run's records as they are made: each into the store (for timelines), into each bot's checks (only
    the bot's own records, named by their index in the whole trace), perturbations counted."""

    def __init__(self, scenario: Scenario, bots: list[BotSpec], store: RecordStore):
        self.store = store
        self.n = 0
        self.perturbations: Counter[str] = Counter()
        self.stopped: list[str] = []
        self.multi_bot = scenario.multi_bot
        self.engines = [
            (bot.name, CheckEngine(check_spec(scenario, bot), retire_after_s=RETIRE_AFTER_S),
             bot_record_filter(bot.name, bot.account) if scenario.multi_bot else None)
            for bot in bots
        ]
        self.error: Exception | None = None

    def record(self, rec: dict[str, Any]) -> None:
        i = self.n
        self.n += 1
        self.store.append(rec)
        if rec["kind"] == "meta" and rec["type"] == "PERTURBATION":
            self.perturbations[rec["data"]["name"]] += 1
        if self.error is not None:
            return
        try:
            for _, engine, belongs in self.engines:
                if belongs is None or belongs(rec):
                    engine.feed(rec, i)
        except ValueError as exc:  # a malformed record (a foreign connector's): raised once the run is over
            self.error = exc

    def open_orders(self) -> int:
        return sum(engine.open_orders for _, engine, _ in self.engines)

    def violated(self) -> list[str]:
        return [f"{name}: {check}" if self.multi_bot else check
                for name, engine, _ in self.engines for check in engine.violated_so_far()]

    def results(self) -> list[tuple[list[CheckResult], CheckEngine]]:
        if self.error is not None:
            raise self.error
        return [(engine.results(self.store), engine) for _, engine, _ in self.engines]


async def run_scenario_async(
    scenario: Scenario,
    policy: str | None = None,
    seed: int | None = None,
    *,
    trace_path: str | Path | None = None,
    on_progress: Callable[[RunProgress], None] | None = None,
    on_divergence: str = "simulate",
    record_proxy: str | Path | None = None,
    connector: str | None = None,
    expect_hold: bool = False,
    keep_records: bool = False,
    stop_on_violation: bool = False,
) -> RunResult:
    """Run one scenario under ``policy`` on the running loop and check the trace.

    A scenario whose ``[market]`` names a ``capture`` is served by a reactive playback of that
    capture (replay/playback.py) instead of the simulated exchange; on a divergence the
    simulated exchange takes over (``on_divergence="simulate"``) or the server closes the
    client's connections (``"stop"``). Either way the trace has a ``DIVERGENCE`` meta record.

    ``connector`` runs another connector than the scenario's ``bot.connector``; ``expect_hold``
    judges the run by the base ``[expect]`` (every check holds), whatever the scenario expects.

    A scenario with several bots (``[[bot]]``) starts a connector and a quoting loop per bot, each on its own
    account, all on the one server, clock and trace; every bot runs its own connector and policy, or those of
    ``Scenario.running(connector, policy)``. ``policy`` and ``connector`` here replace the first bot's only. The
    result is the first bot's, with the others' in ``others`` (``result.bots``: all of them), each
    judged on its own account and its own records (:func:`records_for_bot`).

    The run streams: each record goes to the trace file as it is made (``trace_path``; gzip by suffix),
    to the checks (one ``CheckEngine`` per bot, judging as it goes and forgetting settled orders) and to a
    ``RecordStore`` on disk (for the violations' timelines), so memory stays flat however long the run.
    ``keep_records`` also keeps the list in ``RunResult.records`` (short runs whose records a caller
    reads). ``on_progress`` is called about once per simulated second with a :class:`RunProgress`;
    ``stop_on_violation`` ends the quoting at the first violation a check reports as the run goes, then
    shuts down, settles and judges as usual."""
    bots = _bot_runs(scenario, policy, connector)
    first = bots[0]
    policy, spec = first.policy, first.connector
    seed = scenario.seed if seed is None else seed
    wall0 = time.perf_counter()
    loop = asyncio.get_running_loop()
    # Virtual time starts at a fixed epoch, so traces depend only on the scenario and the seed; on the
    # real clock the exchange's epoch is the wall clock, so a connector that signs with time.time() agrees.
    clock = Clock(loop, epoch_origin_ms=SIMULATED_EPOCH_MS if getattr(loop, "looptime_on", False) else None)
    config = config_from_dict(scenario.exchange, str(scenario.path)) if scenario.exchange else default_config()
    pairs = list(dict.fromkeys(b.spec.pair for b in bots))
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
                "pairs": pairs,
                "scenario": scenario.name,
                "policy": policy,
                "seed": seed,
                **({"bots": [b.spec.name for b in bots]} if scenario.multi_bot else {}),
                **({"capture": str(capture_path)} if capture_path else {}),
            },
            known_secrets=account_secrets(config),
        )
    trace = TraceRecorder(clock, writer=writer, keep=keep_records)
    store = RecordStore()
    watch = _Watch(scenario, [b.spec for b in bots], store)
    trace.listeners.append(watch.record)
    start = clock.monotonic()
    schedule = DeliverySchedule.from_spec(scenario.latency, scenario.perturb, seed, start=start,
                                          ordering=scenario.ordering)
    schedule.on_applied = lambda a: trace.record(
        "run", "local", "meta", "PERTURBATION",
        {"name": a.name, "conn": a.conn, "msg_type": a.msg_type, "at": a.now},
    )
    accounts = {}
    for b in bots:
        account = next((a for a in config.accounts if a.name == b.spec.account), None)
        if account is None:
            raise RunError(f"{scenario.path}: {b.key}.account: no account named {b.spec.account!r} "
                           "in the exchange config")
        accounts[b.spec.name] = account

    server = FakeValr(config, clock=clock, seed=seed, trace=trace, schedule=schedule, playback=playback,
                      on_divergence=on_divergence)
    proxy = None
    proxy_writer = None
    try:
        await server.start("127.0.0.1", 0)
        urls = ServerUrls(server.rest_url, server.ws_account_url, server.ws_trade_url)
        if record_proxy is not None:
            from .record.proxy import RecordingProxy

            proxy_writer = CaptureWriter(record_proxy, {
                "created_at": clock.wall_iso(), "source": "proxy", "venue": "valr", "upstream": server.rest_url,
                "pairs": pairs, "scenario": scenario.name, "policy": policy, "seed": seed,
            })
            proxy = RecordingProxy(server.rest_url, proxy_writer, clock=clock)
            await proxy.start("127.0.0.1", 0)
            urls = ServerUrls(proxy.rest_url, proxy.ws_account_url, proxy.ws_trade_url)
        trace.record("run", "local", "meta", "RUN_START",
                     {"scenario": scenario.name, "connector": spec, "policy": policy, "seed": seed,
                      "duration_s": scenario.duration_s,
                      **({"bots": [{"bot": b.spec.name, "account": b.spec.account, "connector": b.connector,
                                    "policy": b.policy, "pair": b.spec.pair} for b in bots]}
                         if scenario.multi_bot else {})})
        for i, b in enumerate(bots):
            await _start_bot(b, scenario, config, clock, trace, urls, accounts[b.spec.name], seed + i)
        deadline = clock.monotonic() + READY_TIMEOUT_S
        for b in bots:
            while not b.driver.ready:
                if clock.monotonic() > deadline:
                    why = b.driver.not_ready_report() if hasattr(b.driver, "not_ready_report") else ""
                    name = f" (bot {b.spec.name!r})" if scenario.multi_bot else ""
                    raise RunError(f"connector {b.connector!r}{name} not ready after {READY_TIMEOUT_S:.0f} s"
                                   + (f": {why}" if why else ""))
                await asyncio.sleep(0.05)
        until = clock.monotonic() + scenario.duration_s
        for b in bots:
            b.task = asyncio.ensure_future(_quoting(b, until, trace, scenario.multi_bot))
        tasks = [b.task for b in bots if b.task is not None]
        if on_progress is not None or stop_on_violation:
            while not all(t.done() for t in tasks):
                if on_progress is not None:
                    on_progress(RunProgress(min(scenario.duration_s, clock.monotonic() - start), scenario.duration_s,
                                            time.perf_counter() - wall0, watch.open_orders(), watch.violated()))
                if stop_on_violation and (stopped := watch.violated()):
                    trace.record("run", "local", "meta", "STOPPED_ON_VIOLATION", {"checks": stopped})
                    watch.stopped = stopped
                    for t in tasks:
                        t.cancel()
                    await asyncio.wait(tasks)
                    break
                done, _ = await asyncio.wait(tasks, timeout=1.0, return_when=asyncio.FIRST_EXCEPTION)
                if any(not t.cancelled() and t.exception() is not None for t in done):
                    break
        for t in tasks:
            if t.done() and not t.cancelled():
                t.result()  # a quoting loop's failure is the run's
        for t in tasks:
            if not t.cancelled():
                await t
        trace.record("run", "local", "meta", "SHUTDOWN_BEGIN", {})

        async def shutdown(b: _BotRun) -> None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(b.driver.cancel_all(SHUTDOWN_TIMEOUT_S), SHUTDOWN_TIMEOUT_S + 1)

        if len(bots) == 1:
            await shutdown(first)
        else:
            await asyncio.gather(*(shutdown(b) for b in bots))
        await asyncio.sleep(SETTLE_S)
        trace.record("run", "local", "meta", "SHUTDOWN_DONE", {})
        sim_seconds = clock.monotonic() - start
    except HummingbotError as exc:
        raise RunError(str(exc)) from None
    finally:
        for b in bots:
            if b.task is not None and not b.task.done():
                b.task.cancel()
                with contextlib.suppress(BaseException):
                    await b.task
        for b in bots:
            if b.driver is not None:
                with contextlib.suppress(Exception):
                    await b.driver.stop()
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

    try:
        bot_checks = watch.results()
    finally:
        store.close()
    results = []
    for b, (checks, engine) in zip(bots, bot_checks, strict=True):
        results.append(RunResult(
            scenario=scenario,
            policy=b.policy,
            seed=seed,
            checks=checks,
            expected_violations=scenario.expected_for(b.connector, b.policy, takes_policy=b.policy_applies,
                                                      expect_hold=expect_hold, bot=b.spec),
            sim_seconds=sim_seconds,
            wall_seconds=time.perf_counter() - wall0,
            trace_path=Path(trace_path) if trace_path else None,
            records=trace.records,
            connector=b.connector,
            connector_options=dict(b.spec.options),
            policy_applies=b.policy_applies,
            expect_hold=expect_hold,
            perturbations=dict(sorted(watch.perturbations.items())),
            account=b.spec.account,
            bot=b.spec.name,
            stopped_on_violation=watch.stopped,
            retired_orders=engine.retired_orders,
            late_records=engine.late_records,
        ))
    results[0].others = results[1:]
    return results[0]


async def _start_bot(b: _BotRun, scenario: Scenario, config: Any, clock: Clock, trace: TraceRecorder,
                     urls: ServerUrls, account: Any, seed: int) -> None:
    """Build one bot's connector (its records tagged with its name when there are several bots) and start it
    with its account's key and secret."""
    bot = b.spec
    recorder: Any = BotTrace(trace, bot.name) if scenario.multi_bot else trace
    if is_hummingbot_spec(b.connector):
        from .hummingbot.bot import HummingbotBot

        spec_pair = next((p for p in config.pairs if p.symbol == bot.pair), None)
        if spec_pair is None:
            raise RunError(f"{scenario.path}: {b.key}.pair: no pair {bot.pair!r} in the exchange config")
        b.driver = HummingbotBot(b.connector, clock=clock, trace=recorder, pair=bot.pair, base=spec_pair.base,
                                 quote=spec_pair.quote, policy=b.policy, options=bot.options,
                                 url_overrides=bot.hummingbot.get("urls"))
        # a fork's connector has its own snapshot handler: the policy verdicts do not apply to it
        b.policy_applies = b.driver.takes_policy
    else:
        options = dict(bot.options)
        if scenario.multi_bot and b.connector == "reference":
            # customerOrderIds of their own, so a trace (and a REST request in it) says whose an order is
            options.setdefault("client_id_prefix", f"HB-VR-{bot.name}-")
        try:
            b.driver = load_connector(b.connector, policy=b.policy, clock=clock, trace=recorder, seed=seed,
                                      pairs=(bot.pair,), **options)
        except (ValueError, TypeError) as exc:
            raise RunError(str(exc)) from None
        b.policy_applies = b.connector == "reference"
    try:
        await b.driver.start(urls, account.api_key, account.api_secret)
    except (HummingbotError, RunError):
        raise
    except Exception as exc:
        raise RunError(explain_start_failure(b.connector, exc, clock.is_virtual)) from exc


def _quoting(b: _BotRun, until: float, trace: TraceRecorder, multi_bot: bool) -> Any:
    """One bot's quoting until ``until``: Hummingbot's PMM for a Hummingbot connector, else our loop."""
    bot = b.spec
    if is_hummingbot_spec(b.connector):
        return b.driver.run_strategy(
            until, bid_spread=bot.bid_spread, ask_spread=bot.ask_spread, order_amount=bot.order_amount,
            order_levels=bot.order_levels, order_refresh_time=bot.order_refresh_time_s,
            filled_order_delay=bot.filled_order_delay_s)
    return PureMarketMaking(
        b.driver,
        bot.pair,
        bid_spread=bot.bid_spread,
        ask_spread=bot.ask_spread,
        order_amount=bot.order_amount,
        order_levels=bot.order_levels,
        order_refresh_time=bot.order_refresh_time_s,
        filled_order_delay=bot.filled_order_delay_s,
        trace=BotTrace(trace, bot.name) if multi_bot else trace,
    ).run(until)


class _QuickWeakSet(weakref.WeakSet[Any]):
    """A WeakSet whose iteration, empty, costs nothing.

    looptime asks on every idle turn of the loop whether an executor future is still running, by
    iterating a WeakSet of them; a WeakSet's iteration enters a guard even when empty, some 5 µs, on
    ~150 turns a simulated second. The set is almost always empty (only a DNS lookup at connect runs
    in an executor)."""

    data: set[Any]  # WeakSet's own set of references (not in its stubs)

    def __iter__(self) -> Iterator[Any]:
        if not self.data:
            return iter(())
        return super().__iter__()


def new_loop(virtual: bool = True) -> asyncio.AbstractEventLoop:
    if virtual:
        import looptime

        loop = looptime.new_event_loop(start=0.0, noop_cycles=NOOP_CYCLES)
        futures = getattr(loop, "_LoopTimeEventLoop__sync_futures", None)
        if type(futures) is weakref.WeakSet:  # the looptime we know (0.9); any other is left as it is
            quick = _QuickWeakSet()
            quick.update(futures)
            loop._LoopTimeEventLoop__sync_futures = quick  # type: ignore[attr-defined]
        return loop
    return asyncio.new_event_loop()


def run_scenario(
    scenario: Scenario,
    policy: str | None = None,
    seed: int | None = None,
    *,
    trace_path: str | Path | None = None,
    virtual: bool = True,
    on_progress: Callable[[RunProgress], None] | None = None,
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
