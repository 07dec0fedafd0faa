"""pytest plugin for valr-replay, registered through the ``pytest11`` entry point.

- ``pytest scenarios/`` collects every scenario file (``*.toml`` with a ``[scenario]``
  table) as test items, one per policy: ``--policy P`` (repeatable) picks the policies,
  else the scenario's ``bot.policy``. An item passes when every check comes out as the
  scenario expects for that policy.
- Fixtures for a connector author's own tests:
  ``valr_server``: a started fake VALR server (its own thread and event loop, so it
  serves sync tests and async tests on any loop alike) with ``rest_url``,
  ``ws_account_url``, ``ws_trade_url``, ``api_key``, ``api_secret`` and ``exchange``.
  ``valr_scenario``: a function ``valr_scenario(path, policy=None, seed=None)`` that
  runs a scenario and returns its ``RunResult``.
"""

from __future__ import annotations

import asyncio
import threading
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
    group.addoption("--valr-seed", type=int, default=None, dest="valr_seed",
                    help="valr-replay: seed for scenario runs (default: each scenario's own).")


def _is_scenario_file(path: Path) -> bool:
    if path.suffix != ".toml" or path.name == "pyproject.toml":
        return False
    try:
        head = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "[scenario]" in head


def pytest_collect_file(parent: pytest.Collector, file_path: Path):
    if _is_scenario_file(file_path):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    def collect(self):
        from .scenario import load_scenario

        scenario = load_scenario(self.path)
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

    def runtest(self) -> None:
        from .runner import run_scenario

        result = run_scenario(self.scenario, self.policy, self.config.getoption("valr_seed"))
        if not result.as_expected:
            raise ScenarioMismatch(result)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ScenarioMismatch):
            from .runner import reproduce_command

            result = excinfo.value.args[0]
            lines = [f"{self.scenario.name} under {self.policy}: checks not as expected: "
                     f"{', '.join(result.unexpected)}",
                     f"reproduce: {reproduce_command(self.scenario, self.policy, result.seed)}"]
            for c in result.checks:
                mark = {True: "held", False: "VIOLATED", None: "-"}[c.held]
                lines.append(f"  {c.name}: {mark} {c.figures} {c.message}")
                if c.held is False and c.name in result.unexpected:
                    lines.extend(f"      {line}" for line in c.timeline)
            return "\n".join(lines)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"scenario {self.scenario.name} [{self.policy}]"


@dataclass
class RunningServer:
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
    """A fake VALR server on 127.0.0.1 (ephemeral port) with the default config."""
    thread = _ServerThread()
    try:
        yield thread.start()
    finally:
        thread.stop()


@pytest.fixture
def valr_scenario():
    """Run a scenario file: ``valr_scenario("scenarios/x.toml", policy="reconcile")`` -> RunResult."""
    from .runner import run_scenario
    from .scenario import load_scenario

    def _run(path, policy: str | None = None, seed: int | None = None, **kwargs: Any):
        return run_scenario(load_scenario(Path(path)), policy, seed, **kwargs)

    return _run
