"""A Hummingbot connector in its own process: ``valr-replay serve --scenario`` serves the race on
the wall clock in a subprocess, our Hummingbot VALR connector and Hummingbot's PMM quote against
it on the real clock, and ``valr-replay check`` (a subprocess) judges the traces."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("hummingbot.connector.exchange_py_base", reason="needs the Hummingbot environment")

from replay.capture import CaptureWriter, TraceRecorder  # noqa: E402
from replay.clock import Clock  # noqa: E402
from replay.connector.adapter import ServerUrls  # noqa: E402
from replay.hummingbot.bot import HummingbotBot  # noqa: E402

from conftest import ROOT, first_line, interrupt, replay_command  # noqa: E402

RACE = ROOT / "scenarios" / "open_orders_race.toml"
QUOTING_S = 5.0  # two or three create/cancel cycles of Hummingbot's PMM at a 1 s refresh


async def _until(condition: Any, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _quote(info: dict[str, Any], policy: str, client_trace: Path) -> None:
    clock = Clock()  # the real clock: the exchange in the other process stamps with the wall clock too
    trace = TraceRecorder(clock, CaptureWriter(client_trace, {"source": "simulated", "pairs": ["BTCZAR"],
                                                              "connector": "hummingbot"}), keep=False)
    bot = HummingbotBot("hummingbot", clock=clock, trace=trace, pair="BTCZAR", base="BTC", quote="ZAR",
                        policy=policy)
    try:
        await bot.start(ServerUrls(info["rest_url"], info["ws_account_url"], info["ws_trade_url"]),
                        info["api_key"], info["api_secret"])
        await _until(lambda: bot.ready, 20, "the connector to be ready")
        await bot.run_strategy(clock.monotonic() + QUOTING_S, bid_spread=0.003, ask_spread=0.003,
                               order_amount=0.001, order_levels=1, order_refresh_time=1.0, filled_order_delay=1.0)
        trace.record("run", "local", "meta", "SHUTDOWN_BEGIN", {})
        await bot.cancel_all(5)
        # Hummingbot's cancel is asynchronous: wait until the exchange confirmed every cancel it sent
        await _until(lambda: not [o for o in bot.believed_orders() if o.where in ("active", "lost")], 10,
                     "every tracked order to be finished")
        trace.record("run", "local", "meta", "SHUTDOWN_DONE", {})
    finally:
        await bot.stop()
        trace.close()


async def _session(tmp_path: Path, policy: str) -> tuple[Path, Path]:
    server_trace, client_trace = tmp_path / f"server-{policy}.jsonl", tmp_path / f"client-{policy}.jsonl"
    async with replay_command("serve", "--scenario", str(RACE), "--trace", str(server_trace)) as proc:
        info = await first_line(proc)
        await _quote(info, policy, client_trace)
        code, err = await interrupt(proc)
        assert code == 0, err
    return server_trace, client_trace


async def _check(*args: str) -> tuple[int, str]:
    async with replay_command("check", *args) as proc:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode() + err.decode()


@pytest.mark.timeout(120)
async def test_a_served_race_with_hummingbot_judged_by_check(tmp_path: Path) -> None:
    naive_server, naive_client = await _session(tmp_path, "naive")
    rec_server, rec_client = await _session(tmp_path, "reconcile")
    naive_json, rec_json = tmp_path / "naive.json", tmp_path / "reconcile.json"
    (naive_code, naive_out), (rec_code, rec_out) = await asyncio.gather(
        # judged by the scenario's base [expect] (every check holds), as a fix would be
        _check(str(naive_server), str(naive_client), "--scenario", str(RACE), "--json", str(naive_json)),
        _check(str(rec_server), str(rec_client), "--scenario", str(RACE), "--policy", "reconcile",
               "--json", str(rec_json)))

    [naive] = json.loads(naive_json.read_text())["runs"]
    [rec] = json.loads(rec_json.read_text())["runs"]
    held = {name: {c["name"]: c["held"] for c in r["checks"]} for name, r in (("naive", naive), ("reconcile", rec))}
    # naive: every creation cycle the snapshot built when the bid reached the book lacks the ask
    assert held["naive"]["false_cancels"] is False and held["naive"]["orphans"] is False, naive_out
    assert held["naive"]["nothing_open_after_shutdown"] is False, naive_out
    assert naive_code == 1 and "NOT as expected" in naive_out, naive_out
    false_cancels = next(c for c in naive["checks"] if c["name"] == "false_cancels")
    assert "PENDING_CREATE→CANCELED (open_orders_update:absent)" in "\n".join(false_cancels["timeline"])
    # reconcile: nothing leaked
    assert rec_code == 0, rec_out
    for name in ("max_open_orders", "false_cancels", "orphans", "nothing_open_after_shutdown", "final_state_exit"):
        assert held["reconcile"][name] is True, (name, rec_out)
    creates = [json.loads(line) for line in rec_client.read_text().splitlines()[1:]]
    assert sum(1 for r in creates if r.get("type") == "CREATE") >= 4  # Hummingbot's PMM quoted
