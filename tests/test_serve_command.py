"""`valr-replay serve` as a subprocess: the JSON line, a request, SIGINT, exit 0, the trace."""

from __future__ import annotations

import asyncio
import json
import signal

import aiohttp
from click.testing import CliRunner

from replay.auth import auth_headers
from replay.cli import main

from conftest import replay_command


async def test_serve_prints_urls_serves_and_stops_on_sigint(tmp_path):
    trace = tmp_path / "trace.jsonl"
    async with replay_command("serve", "--seed", "5", "--trace", str(trace)) as proc:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        info = json.loads(line)
        assert set(info) == {"rest_url", "ws_account_url", "ws_trade_url", "api_key", "api_secret", "seed"}
        assert info["seed"] == 5 and info["rest_url"].startswith("http://127.0.0.1:")
        assert info["ws_account_url"].endswith("/ws/account")
        async with aiohttp.ClientSession() as session:
            async with session.get(info["rest_url"] + "/v1/public/time") as resp:
                assert resp.status == 200
            async with session.get(info["rest_url"] + "/v1/public/time") as resp:
                server_ms = (await resp.json())["epochTime"] * 1000
            headers = auth_headers(info["api_key"], info["api_secret"], "GET", "/v1/account/balances",
                                   timestamp_ms=server_ms + 500)
            async with session.get(info["rest_url"] + "/v1/account/balances", headers=headers) as resp:
                assert resp.status == 200
                assert {b["currency"] for b in await resp.json()} >= {"BTC", "ZAR"}
        proc.send_signal(signal.SIGINT)
        _out, err = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0, err.decode()
        assert b"listening" in err
    lines = trace.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["format"] == "valr-replay-capture" and header["source"] == "simulated"
    assert header["seed"] == 5 and header["pairs"] == ["BTCZAR", "ETHZAR"]
    records = [json.loads(x) for x in lines[1:]]
    rest = [r for r in records if r["kind"] == "rest" and r["type"] == "GET /v1/account/balances"]
    assert [r["dir"] for r in rest] == ["out", "in"]
    assert rest[0]["data"]["headers"]["X-VALR-SIGNATURE"] == "<scrubbed>"
    assert info["api_secret"] not in trace.read_text() and info["api_key"] not in trace.read_text()
    assert any(r["kind"] == "event" for r in records)  # the background market's events


async def test_serve_sigterm_exits_0(tmp_path):
    async with replay_command("serve") as proc:
        json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0


def test_bad_config_exits_2_naming_file_and_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[server]\nmax_frame_bytes = "big"\n')
    result = CliRunner().invoke(main, ["serve", "--config", str(cfg)])
    assert result.exit_code == 2
    assert str(cfg) in result.output and "max_frame_bytes" in result.output


def test_missing_config_exits_2(tmp_path):
    missing = tmp_path / "nope.toml"
    result = CliRunner().invoke(main, ["serve", "--config", str(missing)])
    assert result.exit_code == 2 and str(missing) in result.output


def test_help_explains_options_and_credentials():
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--config", "--seed", "--trace"):
        assert option in result.output
    assert "DEMO_API_KEY" in result.output
