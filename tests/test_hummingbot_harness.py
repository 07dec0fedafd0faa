"""The Hummingbot harness's pure parts, which need no Hummingbot: URL redirection, the presented
wall clock, the connector spec. (tests/real_hummingbot/ drives real Hummingbot connectors.)"""

from __future__ import annotations

import asyncio
import sys
import textwrap
import time
from pathlib import Path

import looptime
import pytest

from replay.clock import Clock
from replay.connector.adapter import ServerUrls
from replay.hummingbot import urls as url_rewrite
from replay.hummingbot.bot import BUILTIN, HummingbotError, class_path, is_hummingbot_spec
from replay.hummingbot.wallclock import presented_as_wall_clock, real_time
from replay.scenario import ScenarioError, loads_scenario

URLS = ServerUrls("http://127.0.0.1:5123", "ws://127.0.0.1:5123/ws/account", "ws://127.0.0.1:5123/ws/trade")


@pytest.fixture
def fork(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A connector package laid out like a Hummingbot fork's, with each URL spelling we recognise."""
    pkg = tmp_path / "myfork_valr"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "valr_constants.py").write_text(textwrap.dedent('''
        REST_URL = "https://api.valr.com"
        REST_V1 = "https://API.valr.com/v1"
        WSS_ACCOUNT_URL = "wss://api.valr.com/ws/account"
        WSS_URL = "wss://api.valr.com{}"
        DOMAINS = {"main": "https://api.valr.com", "name": "valr"}
        OTHER = "https://example.com"
        NUMBER = 5
    '''))
    (pkg / "valr_web_utils.py").write_text("from .valr_constants import REST_URL\nBUILT = 'mybase'\n")
    (pkg / "broken.py").write_text("raise RuntimeError('not for import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "myfork_valr"
    for name in [m for m in sys.modules if m.startswith("myfork_valr")]:
        del sys.modules[name]


def test_every_recognised_spelling_is_redirected_and_restored(fork: str) -> None:
    rewrites = url_rewrite.plan(fork, URLS)
    constants = sys.modules[f"{fork}.valr_constants"]
    utils = sys.modules[f"{fork}.valr_web_utils"]
    with url_rewrite.redirected(rewrites):
        assert constants.REST_URL == "http://127.0.0.1:5123"
        assert constants.REST_V1 == "http://127.0.0.1:5123/v1"
        assert constants.WSS_ACCOUNT_URL == "ws://127.0.0.1:5123/ws/account"
        assert constants.WSS_URL.format("/ws/trade") == "ws://127.0.0.1:5123/ws/trade"
        assert constants.DOMAINS == {"main": "http://127.0.0.1:5123", "name": "valr"}
        assert utils.REST_URL == "http://127.0.0.1:5123"  # a `from ... import` copy
        assert constants.OTHER == "https://example.com"
    assert constants.REST_URL == "https://api.valr.com"
    assert constants.WSS_URL == "wss://api.valr.com{}"
    assert constants.DOMAINS["main"] == "https://api.valr.com"
    assert utils.REST_URL == "https://api.valr.com"
    assert {f"{r.module.rsplit('.', 1)[-1]}.{r.name}" for r in rewrites} == {
        "valr_constants.REST_URL", "valr_constants.REST_V1", "valr_constants.WSS_ACCOUNT_URL",
        "valr_constants.WSS_URL", "valr_constants.DOMAINS['main']", "valr_web_utils.REST_URL"}


def test_overrides_name_constants_built_another_way(fork: str) -> None:
    rewrites = url_rewrite.plan(fork, URLS, {f"{fork}.valr_web_utils:BUILT": "{ws}/ws/account"})
    utils = sys.modules[f"{fork}.valr_web_utils"]
    with url_rewrite.redirected(rewrites):
        assert utils.BUILT == "ws://127.0.0.1:5123/ws/account"
    assert utils.BUILT == "mybase"
    with pytest.raises(url_rewrite.RedirectError, match="has no attribute 'NOPE'"):
        url_rewrite.plan(fork, URLS, {f"{fork}.valr_web_utils:NOPE": "rest"})
    with pytest.raises(url_rewrite.RedirectError, match="expected one of rest, ws"):
        url_rewrite.plan(fork, URLS, {f"{fork}.valr_web_utils:BUILT": "http://elsewhere"})


def test_a_failed_rewrite_undoes_the_ones_before_it(fork: str) -> None:
    rewrites = url_rewrite.plan(fork, URLS)
    constants = sys.modules[f"{fork}.valr_constants"]
    bad = url_rewrite.Rewrite(f"{fork}.valr_constants", "DOMAINS['gone']", "x", "y")
    with pytest.raises(KeyError):
        with url_rewrite.redirected([*rewrites, bad]):
            pass
    assert constants.REST_URL == "https://api.valr.com"


def test_the_presented_wall_clock_agrees_with_the_exchange_clock_to_the_millisecond() -> None:
    loop = looptime.new_event_loop(start=0.0)
    origin_ms = 1_767_225_600_000
    readings: list[tuple[float, int, float]] = []

    async def main() -> None:
        clock = Clock(loop, epoch_origin_ms=origin_ms)
        assert clock.is_virtual
        assert clock.epoch_ms() == origin_ms  # the clock starts when first read
        with presented_as_wall_clock(clock):
            for _ in range(5):
                await asyncio.sleep(0.3337)
                readings.append((time.time(), clock.epoch_ms(), time.perf_counter()))
        assert time.time is real_time

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    for i, (wall, exchange_ms, perf) in enumerate(readings, start=1):
        assert abs(wall * 1000 - exchange_ms) <= 1
        assert abs(wall - (origin_ms / 1000 + 0.3337 * i)) < 1e-6
        assert perf == pytest.approx(0.3337 * i, abs=1e-6)
    assert abs(time.time() - readings[-1][0]) > 1e6  # the real clock is back


def test_connector_specs() -> None:
    assert is_hummingbot_spec("hummingbot") and is_hummingbot_spec("hummingbot:a.b:C")
    assert not is_hummingbot_spec("reference") and not is_hummingbot_spec("hummingbotx:a:B")
    assert class_path("hummingbot") == BUILTIN
    assert class_path("hummingbot:pkg.mod:Cls") == "pkg.mod:Cls"
    with pytest.raises(HummingbotError, match="expected 'hummingbot' or"):
        class_path("hummingbot:pkg.mod")


def test_scenarios_accept_hummingbot_connectors_and_their_url_overrides() -> None:
    s = loads_scenario('[bot]\nconnector = "hummingbot:fork.valr.valr_exchange:ValrExchange"\n'
                       '[bot.hummingbot.urls]\n"fork.valr.valr_constants:BASE" = "rest"\n')
    assert s.bot.connector == "hummingbot:fork.valr.valr_exchange:ValrExchange"
    assert s.bot.hummingbot == {"urls": {"fork.valr.valr_constants:BASE": "rest"}}
    assert loads_scenario('[bot]\nconnector = "hummingbot"\n').bot.connector == "hummingbot"
    with pytest.raises(ScenarioError, match=r"bot\.hummingbot: only a Hummingbot connector"):
        loads_scenario('[bot]\nconnector = "reference"\n[bot.hummingbot.urls]\n"a:B" = "rest"\n')
    with pytest.raises(ScenarioError, match=r"bot\.hummingbot\.nope: unknown key"):
        loads_scenario('[bot]\nconnector = "hummingbot"\n[bot.hummingbot]\nnope = 1\n')
    with pytest.raises(ScenarioError, match="bot.connector: expected"):
        loads_scenario('[bot]\nconnector = "hummingbot:nocolon"\n')


def test_run_without_hummingbot_anywhere_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from replay import cli
    from replay.hummingbot import bot

    monkeypatch.setattr(bot, "hummingbot_importable", lambda: False)
    monkeypatch.setattr(bot, "hummingbot_python", lambda: None)
    result = CliRunner().invoke(cli.main, ["run", "scenarios/open_orders_race.toml", "--connector", "hummingbot"])
    assert result.exit_code == 2
    assert "Hummingbot cannot be imported" in result.output and "tools/hummingbot-env" in result.output
