"""pytest plugin for valr-replay, registered through the ``pytest11`` entry point.

- ``pytest scenarios/`` collects every scenario file under the paths it is given as test
  items, one per policy (the rule: :func:`is_scenario_file`, scenarios/README.md): ``--policy P``
  (repeatable) picks the policies, else the scenario's ``bot.policy``; ``--connector C`` the
  connector under test, as ``valr-replay run --connector``; ``--expect-hold`` judges every run
  by the base ``[expect]``; ``--valr-seed N`` the seed. An item passes when every check comes
  out as the scenario expects. A bad file is a collection error naming the file and the key.
  Items run in parallel with pytest-xdist (``-n auto``).
- Fixtures for a connector author's own tests:
  ``valr_server``: a started fake VALR server (its own thread and event loop, so it
  serves sync tests and async tests on any loop alike).
  ``valr_scenario``: a function ``valr_scenario(path, policy=None, seed=None, *,
  connector=None, expect_hold=False)`` that runs a scenario and returns its ``RunResult``.
  Their docstrings list every argument and attribute.
"""

from __future__ import annotations

import asyncio
import difflib
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pytest

if TYPE_CHECKING:
    from .server.app import FakeValr


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("valr-replay")
    group.addoption("--policy", action="append", default=[], dest="valr_policies", metavar="P",
                    help="valr-replay: OPEN_ORDERS_UPDATE policy to run scenario files under "
                         "(naive | age-guard:S | ignore | reconcile); repeatable.")
    group.addoption("--connector", default=None, dest="valr_connector", metavar="C",
                    help="valr-replay: connector under test in scenario files, as `valr-replay run "
                         "--connector`: 'reference', 'module:attr' (your adapter), 'hummingbot' (ours) or "
                         "'hummingbot:package.module:Class' (yours). Default: each scenario's bot.connector.")
    group.addoption("--expect-hold", action="store_true", default=False, dest="valr_expect_hold",
                    help="valr-replay: judge every scenario run by the scenario's base [expect] (every check "
                         "must hold), whatever it expects of the connector or policy.")
    group.addoption("--valr-seed", type=int, default=None, dest="valr_seed",
                    help="valr-replay: seed for scenario runs (default: each scenario's own).")


def pytest_configure(config: pytest.Config) -> None:
    """Refuse a misspelt ``--connector`` (and a Hummingbot one where Hummingbot cannot be imported)
    once, before collection, rather than in every item."""
    spec = config.getoption("valr_connector", None)
    if spec is None:
        return
    import json

    from .scenario import ScenarioError, loads_scenario

    try:  # the scenario loader is the one place that knows the spellings of a connector
        loads_scenario(f"[bot]\nconnector = {json.dumps(spec)}\n", "--connector")
    except ScenarioError as exc:
        raise pytest.UsageError(f"--connector {spec!r}: {exc.problem}") from None
    from .hummingbot.bot import HummingbotError, hummingbot_importable, is_hummingbot_spec, require_hummingbot

    if is_hummingbot_spec(spec) and not hummingbot_importable():
        try:
            require_hummingbot()
        except HummingbotError as exc:
            raise pytest.UsageError(f"--connector {spec}: {exc} Run pytest with that environment's Python "
                                    "(e.g. .hbvenv/bin/python -m pytest ...).") from None


# Top-level tables of a scenario file that no other TOML we know of has. [market] is left out:
# the exchange configuration of `serve --config` (replay/config.py) has one too.
_SCENARIO_ONLY_TABLES = ("scenario", "exchange", "latency", "perturb", "ordering", "bot", "expect")


def is_scenario_file(path: Path, named: bool = False) -> bool:
    """Whether pytest collects ``path`` as a scenario file (documented in scenarios/README.md).

    A ``.toml`` file named on the command line (``named``) always is. One found under a
    directory is, unless it is plainly other TOML: it is collected when it does not parse (the
    error is reported), has only scenario tables at the top (an empty file included), or has a
    table only a scenario has (``[scenario]``, ``[exchange]``, ``[latency]``, ``[[perturb]]``,
    ``[[ordering]]``, ``[bot]``, ``[expect]``) or a misspelling of one (``[scenaro]``: the load then reports it).
    So ``pyproject.toml``, ``ruff.toml`` or a ``serve --config`` file are left alone.
    """
    if path.suffix != ".toml":
        return False
    if named:
        return True
    from .scenario import TOP_KEYS

    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return True
    if all(key in TOP_KEYS for key in doc):
        return True
    return any(key in _SCENARIO_ONLY_TABLES or difflib.get_close_matches(key, _SCENARIO_ONLY_TABLES, n=1, cutoff=0.8)
               for key in doc)


def _named_on_command_line(config: pytest.Config, path: Path) -> bool:
    base = config.invocation_params.dir
    for arg in config.args:
        named = Path(str(arg).split("::", 1)[0])
        if not named.is_absolute():
            named = base / named
        try:
            if named.resolve() == path.resolve():
                return True
        except OSError:
            continue
    return False


def pytest_collect_file(parent: pytest.Collector, file_path: Path):
    if file_path.suffix == ".toml" and is_scenario_file(file_path, _named_on_command_line(parent.config, file_path)):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    def collect(self):
        from .scenario import ScenarioError, load_scenario

        try:
            scenario = load_scenario(self.path)
        except ScenarioError as exc:  # as `valr-replay run` refuses it: the file, the key, the problem
            raise self.CollectError(str(exc)) from None
        if scenario.multi_bot:
            # several bots ([[bot]]): an item runs them all; --connector and --policy, when given, are what every
            # bot runs (an item per policy), else each bot runs its own
            connector = self.config.getoption("valr_connector")
            for policy in self.config.getoption("valr_policies") or [None]:
                variant = scenario.running(connector, policy)
                label = policy or ",".join(b.name for b in scenario.bots)
                yield ScenarioItem.from_parent(self, name=f"{scenario.name}[{label}]", scenario=variant,
                                               policy=variant.policy_override or scenario.bot.policy)
            return
        policies = self.config.getoption("valr_policies") or [scenario.bot.policy]
        for policy in policies:
            yield ScenarioItem.from_parent(self, name=f"{scenario.name}[{policy}]", scenario=scenario, policy=policy)


class ScenarioMismatch(Exception):
    pass


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario, policy: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.scenario = scenario
        self.policy = policy

    @property
    def connector(self) -> str | None:
        """``--connector``, when it names another connector than the scenario file's own."""
        spec = self.config.getoption("valr_connector")
        if self.scenario.multi_bot:
            return None  # every bot runs Scenario.connector_override, or its own
        return spec if spec and spec != self.scenario.bot.connector else None

    @property
    def expect_hold(self) -> bool:
        return bool(self.config.getoption("valr_expect_hold"))

    def runtest(self) -> None:
        from .runner import run_scenario

        result = run_scenario(self.scenario, None if self.scenario.multi_bot else self.policy,
                              self.config.getoption("valr_seed"), connector=self.connector,
                              expect_hold=self.expect_hold)
        if not all(r.as_expected for r in result.bots):
            raise ScenarioMismatch(result)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ScenarioMismatch):
            from .runner import reproduce_command

            result = excinfo.value.args[0]
            if self.scenario.multi_bot:
                lines = [f"{self.scenario.name}: bot {r.bot} ({r.label.partition(': ')[2]}): checks not as expected: "
                         f"{', '.join(r.unexpected)}" for r in result.bots if not r.as_expected]
                lines.append(f"reproduce: {result.reproduce}")
            else:
                under = f"{self.connector} {self.policy}" if self.connector else self.policy
                reproduce = reproduce_command(self.scenario, self.policy, result.seed, self.connector,
                                              expect_hold=self.expect_hold)
                lines = [f"{self.scenario.name} under {under}: checks not as expected: "
                         f"{', '.join(result.unexpected)}",
                         f"reproduce: {reproduce}"]
            for r in result.bots:
                if r.as_expected:
                    continue
                if self.scenario.multi_bot:
                    lines.append(f"bot {r.bot} (account {r.account}):")
                for c in r.checks:
                    mark = {True: "held", False: "VIOLATED", None: "-"}[c.held]
                    lines.append(f"  {c.name}: {mark} {c.figures} {c.message}")
                    if c.held is False and c.name in r.unexpected:
                        lines.extend(f"      {line}" for line in c.timeline)
            return "\n".join(lines)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        if self.scenario.multi_bot:
            return self.path, None, f"scenario {self.scenario.name} [{', '.join(b.name for b in self.scenario.bots)}]"
        return self.path, None, f"scenario {self.scenario.name} [{self.policy}]"


@dataclass
class RunningServer:
    """What ``valr_server`` gives: the URLs and credentials to point a connector at."""

    rest_url: str
    ws_account_url: str
    ws_trade_url: str
    api_key: str
    api_secret: str
    server: Any

    @property
    def exchange(self):
        return self.server.exchange


class _ServerThread:
    """A FakeValr on its own event loop in a daemon thread."""

    def __init__(self, **kwargs: Any):
        self._kwargs = kwargs
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="valr-replay-server", daemon=True)
        self.server: FakeValr | None = None

    def start(self) -> RunningServer:
        from .server.app import FakeValr

        self._thread.start()

        async def boot() -> FakeValr:
            server = FakeValr(**self._kwargs)
            await server.start("127.0.0.1", 0)
            return server

        server = self.server = asyncio.run_coroutine_threadsafe(boot(), self._loop).result(timeout=30)
        account = server.config.accounts[0]
        return RunningServer(server.rest_url, server.ws_account_url, server.ws_trade_url,
                             account.api_key, account.api_secret, server)

    def stop(self) -> None:
        try:
            if self.server is not None:
                asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()


@pytest.fixture
def valr_server() -> Iterator[RunningServer]:
    """A fake VALR server on 127.0.0.1 for one test, on its own thread and event loop (so sync
    tests and async tests on any loop can use it), stopped after the test.

    It takes no arguments: the exchange is the built-in default (pairs BTCZAR and ETHZAR, one
    demo account, a background market seeded with 0; ``replay.config.default_config()``), on an
    ephemeral port and the real clock, every message delivered at once (no latency model, no
    perturbation). What it gives (a ``RunningServer``):

    - ``rest_url``: ``"http://127.0.0.1:PORT"`` (VALR: ``https://api.valr.com``);
    - ``ws_account_url``, ``ws_trade_url``: ``"ws://127.0.0.1:PORT/ws/account"``, ``.../ws/trade``;
    - ``api_key``, ``api_secret``: the demo account's credentials (sign as for VALR);
    - ``exchange``: the simulated exchange itself (``replay.exchange``), to inspect orders and balances;
    - ``server``: the ``FakeValr`` serving it.

    For a scenario's exchange, latencies and perturbations, run the scenario (``valr_scenario``)
    or ``valr-replay serve --scenario FILE``.
    """
    thread = _ServerThread()
    try:
        yield thread.start()
    finally:
        thread.stop()


@pytest.fixture
def valr_scenario():
    """A function that runs a scenario file and returns its ``RunResult`` (``replay.runner``):

        result = valr_scenario("scenarios/open_orders_race.toml", policy="reconcile", connector="mybot.adapter:make")
        assert result.as_expected, result.unexpected

    ``valr_scenario(path, policy=None, seed=None, *, connector=None, expect_hold=False, **kwargs)``:

    - ``path``: the scenario file (``str`` or ``Path``); a bad file raises ``ScenarioError``
      naming the file and the key;
    - ``policy``: the OPEN_ORDERS_UPDATE policy (``naive``, ``age-guard:S``, ``ignore``,
      ``reconcile``) of the reference connector and of our Hummingbot one; default: the
      scenario's ``bot.policy``;
    - ``seed``: the run's seed; default: the scenario's ``scenario.seed``;
    - ``connector``: the connector under test, spelt as ``valr-replay run --connector``:
      ``"reference"``, ``"module:attr"`` (your adapter, docs/adapter.md), ``"hummingbot"`` or
      ``"hummingbot:package.module:Class"``; default: the scenario's ``bot.connector``;
    - ``expect_hold``: judge the run by the scenario's base ``[expect]`` (every check must hold),
      whatever the scenario expects of this connector or policy;
    - ``**kwargs``: passed to ``replay.runner.run_scenario`` (e.g. ``trace_path=...`` to write the
      run's trace, ``virtual=False`` to run on the wall clock, ``keep_records=True`` to read the run's
      records in ``result.records``: a run streams them to its checks and keeps no list by default).

    The run is on virtual time in a fresh event loop: call it from a sync test.
    """
    from .runner import run_scenario
    from .scenario import load_scenario

    def _run(path: str | Path, policy: str | None = None, seed: int | None = None, *,
             connector: str | None = None, expect_hold: bool = False, **kwargs: Any):
        return run_scenario(load_scenario(Path(path)), policy, seed, connector=connector, expect_hold=expect_hold,
                            **kwargs)

    return _run
