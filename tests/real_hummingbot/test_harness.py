"""The Hummingbot harness with a real Hummingbot: the tracker as trace records, headless logging,
one clock for exchange and connector, and Hummingbot's own PMM reproducing the race."""

from __future__ import annotations

import asyncio
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("hummingbot.connector.exchange_py_base", reason="needs the Hummingbot environment")

from hummingbot.connector.client_order_tracker import ClientOrderTracker  # noqa: E402
from hummingbot.core.data_type.common import OrderType, TradeType  # noqa: E402
from hummingbot.core.data_type.in_flight_order import InFlightOrder, OrderState, OrderUpdate  # noqa: E402

from replay.capture import TraceRecorder  # noqa: E402
from replay.clock import Clock  # noqa: E402
from replay.config import default_config  # noqa: E402
from replay.connector.adapter import ServerUrls  # noqa: E402
from replay.hummingbot.bot import HummingbotBot, HummingbotError  # noqa: E402
from replay.hummingbot.headless import headless  # noqa: E402
from replay.hummingbot.observe import TrackerObserver  # noqa: E402
from replay.runner import SIMULATED_EPOCH_MS, RunError, new_loop, run_scenario  # noqa: E402
from replay.scenario import load_scenario  # noqa: E402
from replay.server.app import FakeValr  # noqa: E402

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


class _Connector:
    """What ClientOrderTracker asks of its connector."""

    current_timestamp = 1_767_225_600.0

    def __init__(self) -> None:
        self.events: list[tuple[Any, Any]] = []

    def trigger_event(self, tag: Any, event: Any) -> None:
        self.events.append((tag, event))


def _order(cid: str) -> InFlightOrder:
    return InFlightOrder(client_order_id=cid, trading_pair="BTC-ZAR", order_type=OrderType.LIMIT_MAKER,
                         trade_type=TradeType.SELL, amount=Decimal("0.001"), creation_timestamp=1_767_225_600.0,
                         price=Decimal("1500000"))


def _update(cid: str, state: OrderState, reason: str | None = None, eid: str | None = None) -> OrderUpdate:
    return OrderUpdate(trading_pair="BTC-ZAR", update_timestamp=1_767_225_600.0, new_state=state,
                       client_order_id=cid, exchange_order_id=eid,
                       misc_updates={"reason": reason} if reason else None)


async def test_the_tracker_becomes_order_state_records_with_hummingbots_own_transitions() -> None:
    trace = TraceRecorder(Clock(asyncio.get_running_loop(), epoch_origin_ms=SIMULATED_EPOCH_MS))
    tracker = ClientOrderTracker(connector=_Connector(), lost_order_count_limit=3)
    TrackerObserver(tracker, trace).attach()

    tracker.start_tracking_order(_order("A"))
    # the naive handler's false cancel of a pending order, then its late placement reply
    await tracker._process_order_update(_update("A", OrderState.CANCELED, "open_orders_update:absent"))
    await tracker._process_order_update(_update("A", OrderState.OPEN, "place_ack", eid="ex-A"))
    # an order that is never found goes to the lost set on the 4th miss, and is resolved later
    tracker.start_tracking_order(_order("B"))
    await tracker._process_order_update(_update("B", OrderState.OPEN, eid="ex-B"))
    for _ in range(4):
        await tracker.process_order_not_found("B")
    await tracker._process_order_update(_update("B", OrderState.CANCELED, "ws:ORDER_STATUS_UPDATE"))

    rows = [(r["data"]["client_order_id"], r["data"]["from"], r["data"]["to"], r["data"]["where"],
             r["data"]["reason"], r["data"].get("lost_resolved", False))
            for r in trace.records if r["type"] == "ORDER_STATE"]
    assert rows == [
        ("A", None, "PENDING_CREATE", "active", "create", False),
        ("A", "PENDING_CREATE", "CANCELED", "cached", "open_orders_update:absent", False),
        ("A", "CANCELED", "OPEN", "cached", "place_ack", False),  # Hummingbot applies it: an orphan
        ("B", None, "PENDING_CREATE", "active", "create", False),
        ("B", "PENDING_CREATE", "OPEN", "active", "update", False),
        ("B", "OPEN", "FAILED", "lost", "not_found", False),
        # Hummingbot drops a lost order the exchange reports finished, leaving its state as it was
        ("B", "FAILED", "FAILED", None, "ws:ORDER_STATUS_UPDATE", True),
    ]
    first = next(r["data"] for r in trace.records if r["type"] == "ORDER_STATE")
    assert (first["pair"], first["side"], first["price"], first["amount"]) == ("BTCZAR", "sell", "1500000", "0.001")


def test_headless_notifications_never_import_the_application(monkeypatch: pytest.MonkeyPatch) -> None:
    from hummingbot.logger.logger import HummingbotLogger

    monkeypatch.setattr(sys, "argv", ["valr-replay", "run"])  # not "pytest": Hummingbot's testing mode is off
    logger = HummingbotLogger("valr_replay_test_headless")
    monkeypatch.delitem(sys.modules, "hummingbot.client.hummingbot_application", raising=False)
    with headless():
        logger.notify("a fill")
        logger.network("no route", app_warning_msg="check the network")
    assert "hummingbot.client.hummingbot_application" not in sys.modules
    # without it, the same call reaches for the application (and its pandas_ta, not installed here)
    with pytest.raises(Exception):  # noqa: B017 - ImportError or AttributeError, by release
        logger.notify("a fill")


@pytest.mark.timeout(60)
def test_a_run_ends_whatever_the_fraction_of_its_duration() -> None:
    """The harness's quoting loop slept "the rest" until the run's end; a duration like 7.025 s after a
    fractional start left a remainder below the virtual clock's resolution, and the loop spun forever
    with virtual time standing still (found by `valr-replay explore --connector hummingbot`)."""
    scenario = load_scenario(SCENARIOS / "explore_base.toml")
    scenario.bot.connector = "hummingbot"
    scenario.duration_s = 7.025
    result = run_scenario(scenario, "reconcile")
    assert result.violated == [] and 7.0 < result.sim_seconds < 12.0


def test_naive_piles_up_under_hummingbots_pmm_and_reconcile_holds() -> None:
    scenario = load_scenario(SCENARIOS / "open_orders_race.toml")
    scenario.bot.connector = "hummingbot"
    naive = run_scenario(scenario, "naive")
    reconcile = run_scenario(scenario, "reconcile", keep_records=True)

    assert {"false_cancels", "max_open_orders", "orphans", "nothing_open_after_shutdown"} <= set(naive.violated)
    peak = {r.policy: next(c.figures["peak"] for c in r.checks if c.name == "max_open_orders")
            for r in (naive, reconcile)}
    assert peak["naive"] >= 10 and peak["reconcile"] <= 2
    false_cancel = next(c for c in naive.checks if c.name == "false_cancels")
    assert "PENDING_CREATE→CANCELED" in "\n".join(false_cancel.timeline)
    assert "CANCELED→OPEN (place_ack) [cached]" in "\n".join(false_cancel.timeline)
    assert reconcile.violated == []
    # Hummingbot's own strategy quoted (a 1 s refresh is a 2 s cycle: cancel, confirm, create)
    creates = [r for r in reconcile.records if r["kind"] == "strategy" and r["type"] == "CREATE"]
    assert len(creates) >= 50 and all(r["data"]["client_order_id"].startswith("HBOT-") for r in creates)
    meta = next(r for r in reconcile.records if r["type"] == "HUMMINGBOT")
    assert meta["data"]["connector"] == "replay.hummingbot.valr.valr_exchange:ValrExchange"
    assert meta["data"]["virtual_time"] is True


def test_one_clock_signatures_accepted_and_timestamps_agree_to_the_millisecond() -> None:
    loop = new_loop(virtual=True)
    seen: dict[str, Any] = {}

    async def main() -> None:
        clock = Clock(loop, epoch_origin_ms=SIMULATED_EPOCH_MS)
        trace = TraceRecorder(clock)
        config = default_config()
        server = FakeValr(config, clock=clock, seed=1, trace=trace)
        await server.start("127.0.0.1", 0)
        bot = HummingbotBot("hummingbot", clock=clock, trace=trace, pair="BTCZAR", base="BTC", quote="ZAR",
                            policy="reconcile")
        try:
            account = config.accounts[0]
            await bot.start(ServerUrls(server.rest_url, server.ws_account_url, server.ws_trade_url),
                            account.api_key, account.api_secret)
            deadline = loop.time() + 30
            while not bot.ready:
                assert loop.time() < deadline, bot.not_ready_report()
                await asyncio.sleep(0.05)
            await asyncio.sleep(7.3)  # past a time-sync round and a few ticks
            import time

            seen["wall_ms"] = time.time() * 1000
            seen["sync_ms"] = bot.connector._time_synchronizer.time() * 1000
            seen["exchange_ms"] = clock.epoch_ms()
            seen["hb_tick"] = bot._hb_clock.current_timestamp
        finally:
            await bot.stop()
            await server.stop()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert abs(seen["wall_ms"] - seen["exchange_ms"]) <= 1
    assert abs(seen["sync_ms"] - seen["exchange_ms"]) <= 1
    assert seen["exchange_ms"] > SIMULATED_EPOCH_MS + 7000
    assert seen["hb_tick"] * 1000 <= seen["exchange_ms"] < seen["hb_tick"] * 1000 + 1000  # ticking on that clock


def test_a_connector_class_that_is_not_a_hummingbot_exchange_is_refused() -> None:
    with pytest.raises(HummingbotError, match="not a Hummingbot ExchangePyBase subclass"):
        HummingbotBot("hummingbot:replay.connector.valr:ValrConnector", clock=Clock(), trace=None, pair="BTCZAR",
                      base="BTC", quote="ZAR")
    with pytest.raises(HummingbotError, match="cannot import module"):
        HummingbotBot("hummingbot:nosuch.module:Thing", clock=Clock(), trace=None, pair="BTCZAR",
                      base="BTC", quote="ZAR")


def test_a_connector_that_never_gets_ready_fails_the_run_with_a_reason(tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIOS / "open_orders_race.toml")
    scenario.bot.connector = "hummingbot"
    scenario.bot.account = "demo"
    scenario.exchange = {"accounts": [{"name": "demo", "api_key": "k" * 64, "api_secret": "s" * 64}]}
    # the connector signs with the demo credentials the runner passes; an exchange with other ones refuses them
    scenario.bot.options = {"valr_api_secret": "0" * 64}
    with pytest.raises(RunError, match="not ready after 30 s: waiting for: .*user_stream_initialized"):
        run_scenario(scenario, "naive")


def test_constructor_arguments_follow_the_signature_of_each_release() -> None:
    from hummingbot.client.config.config_helpers import ClientConfigAdapter

    from replay.hummingbot.bot import constructor_kwargs

    class Mid2025:  # a mid-2025 fork's VALR connector: the client config first, then the keys
        def __init__(self, client_config_map: Any, valr_api_key: str, valr_api_secret: str,
                     trading_pairs: list[str] | None = None, trading_required: bool = True, domain: str = "com"):
            pass

    class Pinned:  # 20260922's ExchangePyBase no longer takes the client config
        def __init__(self, valr_api_key: str, valr_api_secret: str, trading_pairs: list[str] | None = None,
                     trading_required: bool = True, open_orders_policy: str = "naive"):
            pass

    old = constructor_kwargs(Mid2025, "KEY", "SECRET", "BTC-ZAR", "reconcile", {"domain": "com"})
    assert isinstance(old.pop("client_config_map"), ClientConfigAdapter)
    assert old == {"valr_api_key": "KEY", "valr_api_secret": "SECRET", "trading_pairs": ["BTC-ZAR"],
                   "trading_required": True, "domain": "com"}  # no policy: that connector has no such setting
    new = constructor_kwargs(Pinned, "KEY", "SECRET", "BTC-ZAR", "reconcile", {})
    assert new["open_orders_policy"] == "reconcile" and "client_config_map" not in new
    with pytest.raises(HummingbotError, match=r"bot.options: Pinned takes no 'nope'"):
        constructor_kwargs(Pinned, "KEY", "SECRET", "BTC-ZAR", None, {"nope": 1})

    class NeedsMore:
        def __init__(self, valr_api_key: str, passphrase: str):
            pass

    with pytest.raises(HummingbotError, match="no value for its parameter.s. passphrase; give them in"):
        constructor_kwargs(NeedsMore, "KEY", "SECRET", "BTC-ZAR", None, {})


@pytest.mark.timeout(60)
def test_real_time_runs_on_the_wall_clock_and_its_signatures_are_accepted() -> None:
    import time

    scenario = load_scenario(SCENARIOS / "open_orders_race.toml")
    scenario.bot.connector = "hummingbot"
    scenario.duration_s = 3.0
    before = time.time()
    result = run_scenario(scenario, "reconcile", virtual=False, keep_records=True)
    start = next(r for r in result.records if r["type"] == "RUN_START")
    # the exchange's epoch is the wall clock, not the fixed 2026-01-01 of virtual runs
    assert start["wall"] >= time.strftime("%Y-%m-%dT%H:%M", time.gmtime(before - 60))
    statuses = [r["data"].get("status") for r in result.records if r["kind"] == "rest" and r["dir"] == "in"]
    assert statuses and 401 not in statuses and 403 not in statuses
    assert any(r["type"] == "CREATE" for r in result.records if r["kind"] == "strategy")
    assert result.violated == []
