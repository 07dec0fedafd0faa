"""``valr-replay record`` as a subprocess (proxy and direct mode) and its bad-input errors."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import aiohttp
from click.testing import CliRunner
from websockets.asyncio.client import connect

from replay.auth import auth_headers
from replay.capture import find_secrets, read_capture
from replay.record.command import record

from conftest import MAKER_KEY, MAKER_SECRET, first_line, interrupt, recv, replay_command


async def file_contains(path: Path, needle: str, timeout: float = 10.0) -> None:
    """Wait until the capture file holds ``needle`` (the writer flushes every line)."""
    deadline = time.monotonic() + timeout
    while needle not in (path.read_text() if path.exists() else ""):
        assert time.monotonic() < deadline, f"{path} never got {needle!r}"
        await asyncio.sleep(0.02)


async def test_proxy_command_records_traffic_and_exits_cleanly_on_sigint(make_server, tmp_path):
    fake = await make_server()
    out = tmp_path / "rec.jsonl.gz"
    async with replay_command("record", "--upstream", fake.rest_url, "--out", str(out), "--pairs", "BTCZAR") as proc:
        info = await first_line(proc)
        assert set(info) >= {"rest_url", "ws_account_url", "ws_trade_url", "out"}
        assert info["out"] == str(out) and info["ws_account_url"].endswith("/ws/account")
        async with aiohttp.ClientSession() as session:
            headers = auth_headers(MAKER_KEY, MAKER_SECRET, "GET", "/v1/account/balances", timestamp_ms=fake.now_ms())
            async with session.get(info["rest_url"] + "/v1/account/balances", headers=headers) as resp:
                assert resp.status == 200
        ws_headers = auth_headers(MAKER_KEY, MAKER_SECRET, "GET", "/ws/account", timestamp_ms=fake.now_ms())
        async with connect(info["ws_account_url"], additional_headers=ws_headers, open_timeout=10) as ws:
            await recv(ws, "AUTHENTICATED")
            await ws.send(json.dumps({"type": "PING", "clientMsgId": "p1"}))
            await recv(ws, "PONG")
        async with connect(info["ws_trade_url"], open_timeout=10) as ws:
            await ws.send(json.dumps({"type": "SUBSCRIBE", "subscriptions": [
                {"event": "MARKET_SUMMARY_UPDATE", "pairs": ["BTCZAR"]}]}))
            await recv(ws, "MARKET_SUMMARY_UPDATE")
        code, err = await interrupt(proc)
    assert code == 0, err
    header, recs, problems = read_capture(out)
    assert problems == []
    assert header["source"] == "proxy" and header["upstream"] == fake.rest_url and header["pairs"] == ["BTCZAR"]
    kinds = [(r["conn"], r["dir"], r["type"]) for r in recs]
    assert kinds[0] == ("run", "local", "RUN_START") and kinds[-1][2] == "RUN_END"
    assert ("rest-1", "in", "GET /v1/account/balances") in kinds
    assert ("account-1", "in", "AUTHENTICATED") in kinds and ("account-1", "out", "PING") in kinds
    assert ("trade-1", "out", "SUBSCRIBE") in kinds and ("trade-1", "in", "MARKET_SUMMARY_UPDATE") in kinds
    assert recs[-1]["data"]["pairs_seen"] == ["BTCZAR"]
    assert find_secrets(out) == []


async def test_direct_command_records_trade_stream(make_server, tmp_path):
    fake = await make_server()
    out = tmp_path / "direct.jsonl"
    async with replay_command("record", "--direct", "--pairs", "btczar", "--upstream", fake.rest_url, "--out", str(out),
                       env={"VALR_API_KEY": MAKER_KEY, "VALR_API_SECRET": MAKER_SECRET}) as proc:
        info = await first_line(proc)
        assert info["pairs"] == ["BTCZAR"] and info["streams"] == ["trade", "account"]
        await file_contains(out, '"AGGREGATED_ORDERBOOK_UPDATE"')
        await file_contains(out, '"AUTHENTICATED"')
        code, err = await interrupt(proc, signal.SIGTERM)
    assert code == 0, err
    header, recs, problems = read_capture(out)
    assert problems == [] and header["source"] == "live" and header["pairs"] == ["BTCZAR"]
    types = {(r["conn"], r["type"]) for r in recs}
    assert {("trade-1", "SUBSCRIBE"), ("trade-1", "DISCONNECT"), ("account-1", "AUTHENTICATED")} <= types
    assert recs[-1]["type"] == "RUN_END"
    assert find_secrets(out) == [] and MAKER_KEY not in out.read_text()


def test_bad_input_is_named(tmp_path):
    runner = CliRunner()
    out = str(tmp_path / "x.jsonl")
    res = runner.invoke(record, ["--direct", "--out", out])
    assert res.exit_code == 2 and "--pairs" in res.output
    res = runner.invoke(record, ["--direct", "--pairs", "BTC-ZAR", "--out", out])
    assert res.exit_code == 2 and "--pairs" in res.output and "BTC-ZAR" in res.output
    res = runner.invoke(record, ["--upstream", "ftp://nowhere", "--out", out])
    assert res.exit_code == 2 and "--upstream" in res.output
    Path(out).write_text("")
    res = runner.invoke(record, ["--out", out])
    assert res.exit_code == 2 and "already exists" in res.output and out in res.output
    res = runner.invoke(record, ["--direct", "--pairs", "BTCZAR", "--out", str(tmp_path / "y.jsonl")],
                        env={"VALR_API_KEY": "k", "VALR_API_SECRET": ""})
    assert res.exit_code == 2 and "VALR_API_SECRET" in res.output


async def test_append_continues_the_capture_with_increasing_t(make_server, tmp_path):
    fake = await make_server()
    out = tmp_path / "cont.jsonl"
    for extra in ((), ("--append",)):
        async with replay_command("record", "--upstream", fake.rest_url, "--out", str(out), "--no-status",
                                  *extra) as proc:
            info = await first_line(proc)
            async with aiohttp.ClientSession() as session:
                async with session.get(info["rest_url"] + "/v1/public/time") as resp:
                    assert resp.status == 200
            code, err = await interrupt(proc)
        assert code == 0, err
    _h, recs, problems = read_capture(out)
    assert problems == []
    assert [r["type"] for r in recs].count("RUN_START") == 2
    ts = [r["t"] for r in recs]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)
