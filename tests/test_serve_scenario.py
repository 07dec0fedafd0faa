"""`valr-replay serve --scenario`: the scenario's exchange, latency model and perturbations on
the wall clock, in a subprocess; its trace header names the scenario and the seed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import aiohttp
from click.testing import CliRunner

from replay.auth import auth_headers
from replay.cli import main

from conftest import ROOT, first_line, interrupt, replay_command

KEY = "c3" * 32
SECRET = "s3" * 32

PERTURBED = f"""
[scenario]
name = "serve-perturbed"
seed = 5

[exchange]
accounts = [
  {{ name = "other", api_key = "{'d4' * 32}", api_secret = "x" }},
  {{ name = "bot", api_key = "{KEY}", api_secret = "{SECRET}", balances = {{ BTC = "1", ZAR = "1000000" }} }},
]

[latency]
PONG = "300ms"

[[perturb]]
name = "no-snapshots"
match = {{ type = "OPEN_ORDERS_UPDATE" }}
drop = true

[[perturb]]
name = "balances-down-once"
match = {{ route = "GET /v1/account/balances", nth = 1 }}
http_error = 503

[bot]
account = "bot"
"""


def _signed(info: dict, method: str, path: str, body: str = "") -> dict[str, str]:
    headers = auth_headers(info["api_key"], info["api_secret"], method, path, body,
                           timestamp_ms=int(time.time() * 1000))
    if body:
        headers["Content-Type"] = "application/json"
    return headers


async def test_serve_scenario_applies_latency_and_perturbations(tmp_path):
    scenario = tmp_path / "perturbed.toml"
    scenario.write_text(PERTURBED)
    trace = tmp_path / "trace.jsonl"
    async with replay_command("serve", "--scenario", str(scenario), "--trace", str(trace)) as proc:
        info = await first_line(proc)
        # the scenario's seed, and the bot account's credentials (not the first account's)
        assert info["seed"] == 5 and (info["api_key"], info["api_secret"]) == (KEY, SECRET)
        ws_url = info["ws_account_url"]
        async with aiohttp.ClientSession() as session:
            url = info["rest_url"] + "/v1/account/balances"
            async with session.get(url, headers=_signed(info, "GET", "/v1/account/balances")) as resp:
                assert resp.status == 503  # http_error, first call only
            async with session.get(url, headers=_signed(info, "GET", "/v1/account/balances")) as resp:
                assert resp.status == 200  # signed by time.time(): the server's epoch is the wall clock
            async with session.ws_connect(ws_url, headers=_signed(info, "GET", "/ws/account")) as ws:
                assert (await ws.receive_json(timeout=5))["type"] == "AUTHENTICATED"
                # the account's state on connect: its two balances; the snapshot is dropped too
                assert [(await ws.receive_json(timeout=5))["type"] for _ in range(2)] == ["BALANCE_UPDATE"] * 2
                sent = time.monotonic()
                await ws.send_json({"type": "PING"})
                assert (await ws.receive_json(timeout=5))["type"] == "PONG"
                assert time.monotonic() - sent >= 0.3  # the scenario's PONG latency
                body = json.dumps({"side": "SELL", "quantity": "0.001", "price": "1600000", "pair": "BTCZAR"})
                async with session.post(info["rest_url"] + "/v1/orders/limit", data=body,
                                        headers=_signed(info, "POST", "/v1/orders/limit", body)) as resp:
                    assert resp.status == 202
                # the account events of a placement, in production order, without the dropped snapshot
                seen: list[str] = []
                while not seen or seen[-1] != "BALANCE_UPDATE":
                    seen.append((await ws.receive_json(timeout=5))["type"])
                assert "ORDER_STATUS_UPDATE" in seen and "OPEN_ORDERS_UPDATE" not in seen
        code, err = await interrupt(proc)
        assert code == 0, err
        assert "serve-perturbed" in err
    lines = trace.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["scenario"] == "serve-perturbed" and header["seed"] == 5
    assert Path(header["scenario_path"]) == scenario.resolve()
    records = [json.loads(x) for x in lines[1:]]
    perturbations = [r["data"] for r in records if r["kind"] == "meta" and r["type"] == "PERTURBATION"]
    dropped = [p for p in perturbations if p["name"] == "no-snapshots"]
    assert dropped and all(p["msg_type"] == "OPEN_ORDERS_UPDATE" and p["conn"] == "account-1" for p in dropped)
    down = [p for p in perturbations if p["name"] == "balances-down-once"]
    assert [(p["conn"], p["msg_type"]) for p in down] == [("rest", "GET /v1/account/balances")]
    assert all(p["at"] >= 0 for p in perturbations)
    # the exchange still built the snapshot; the schedule never delivered it
    assert any(r["kind"] == "event" and r["type"] == "OpenOrdersChanged" for r in records)
    assert not any(r["kind"] == "ws" and r["type"] == "OPEN_ORDERS_UPDATE" for r in records)
    pong = next(r for r in records if r["kind"] == "ws" and r["type"] == "PONG")
    ping = next(r for r in records if r["kind"] == "ws" and r["type"] == "PING")
    assert pong["t"] - ping["t"] >= 300_000_000


async def test_serve_capture_scenario_plays_the_capture_back(tmp_path):
    trace = tmp_path / "trace.jsonl"
    scenario = ROOT / "scenarios" / "replay_seed_log.toml"
    async with replay_command("serve", "--scenario", str(scenario), "--seed", "9", "--trace", str(trace)) as proc:
        info = await first_line(proc)
        assert info["seed"] == 9  # --seed overrides the scenario's
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(info["ws_account_url"], headers=_signed(info, "GET", "/ws/account")) as ws:
                assert (await ws.receive_json(timeout=5))["type"] == "AUTHENTICATED"
        code, err = await interrupt(proc)
        assert code == 0, err
        assert "playback" in err
    header = json.loads(trace.read_text().splitlines()[0])
    assert header["seed"] == 9 and header["capture"].endswith("seed_log.jsonl")
    assert header["scenario"] == "replay-seed-log"


def test_serve_scenario_bad_input_exits_2(tmp_path):
    runner = CliRunner()
    missing = tmp_path / "nope.toml"
    result = runner.invoke(main, ["serve", "--scenario", str(missing)])
    assert result.exit_code == 2 and str(missing) in result.output and "no such file" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text('[latency]\nOPEN_ORDERS_UPDATE = "soon"\n')
    result = runner.invoke(main, ["serve", "--scenario", str(bad)])
    assert result.exit_code == 2 and str(bad) in result.output and "latency.OPEN_ORDERS_UPDATE" in result.output
    assert len(result.output.strip().splitlines()) == 1
    no_account = tmp_path / "no_account.toml"
    no_account.write_text('[bot]\naccount = "ghost"\n')
    result = runner.invoke(main, ["serve", "--scenario", str(no_account)])
    assert result.exit_code == 2 and "bot.account" in result.output and "ghost" in result.output
    capture = tmp_path / "capture.toml"
    capture.write_text('[market]\ncapture = "missing.jsonl"\n')
    result = runner.invoke(main, ["serve", "--scenario", str(capture)])
    assert result.exit_code == 2 and "market.capture" in result.output
    result = runner.invoke(main, ["serve", "--scenario", str(bad), "--config", str(bad)])
    assert result.exit_code == 2 and "--config" in result.output


def test_serve_help_explains_scenario():
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for words in ("--scenario", "PERTURBATION", "capture", "valr-replay check"):
        assert words in result.output

