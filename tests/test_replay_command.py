"""`valr-replay replay` as a subprocess: the JSON line, replayed replies, a divergence, exit codes."""

from __future__ import annotations

import asyncio
import json
import signal

import aiohttp
from click.testing import CliRunner

from replay.auth import auth_headers
from replay.cli import main

from conftest import ROOT, interrupt, replay_command

CAPTURE = ROOT / "captures" / "reference_session.jsonl"
WAIT = 20.0


async def test_replay_serves_the_capture_and_exits_1_on_divergence(tmp_path):
    trace = tmp_path / "trace.jsonl"
    async with replay_command("replay", str(CAPTURE), "--speed", "10", "--trace", str(trace),
                              "--on-divergence", "stop") as proc:
        info = json.loads(await asyncio.wait_for(proc.stdout.readline(), WAIT))
        assert set(info) == {"rest_url", "ws_account_url", "ws_trade_url", "api_key", "api_secret", "seed"}
        assert info["rest_url"].startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as session:
            async with session.get(info["rest_url"] + "/v1/public/pairs") as resp:
                assert resp.status == 200 and "BTCZAR" in {p["symbol"] for p in await resp.json()}
            headers = auth_headers(info["api_key"], info["api_secret"], "GET", "/ws/account")
            ws = await session.ws_connect(info["ws_account_url"], headers=headers)
            first = await asyncio.wait_for(ws.receive(), WAIT)
            assert json.loads(first.data)["type"] == "AUTHENTICATED"
            await ws.send_str(json.dumps({"type": "CANCEL_LIMIT_ORDER", "clientMsgId": "x",
                                          "payload": {"pair": "BTCZAR", "customerOrderId": "NOPE"}}))
            msg = await asyncio.wait_for(ws.receive(), WAIT)
            while msg.type == aiohttp.WSMsgType.TEXT:
                msg = await asyncio.wait_for(ws.receive(), WAIT)
            assert ws.close_code == 1011
        _out, err = await asyncio.wait_for(proc.communicate(), WAIT)
        assert proc.returncode == 1, err.decode()
        text = err.decode()
        assert "expected: PLACE_LIMIT_ORDER" in text and "came:     CANCEL_LIMIT_ORDER" in text
    records = [json.loads(x) for x in trace.read_text().splitlines()[1:]]
    div = [r for r in records if r["kind"] == "meta" and r["type"] == "DIVERGENCE"]
    assert len(div) == 1 and div[0]["data"]["came"]["customerOrderId"] == "NOPE"
    assert any(r["kind"] == "rest" and r["type"] == "GET /v1/public/pairs" and r["dir"] == "in" for r in records)


async def test_replay_stops_on_sigint_with_exit_0():
    async with replay_command("replay", str(CAPTURE), "--seed", "3") as proc:
        info = json.loads(await asyncio.wait_for(proc.stdout.readline(), WAIT))
        assert info["seed"] == 3
        proc.send_signal(signal.SIGINT)
        _out, err = await asyncio.wait_for(proc.communicate(), WAIT)
        assert proc.returncode == 0, err.decode()
        assert b"replaying" in err


def test_bad_input_exits_2_naming_it(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(main, ["replay", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2 and "nope.jsonl" in missing.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "something-else"}\n')
    header = runner.invoke(main, ["replay", str(bad)])
    assert header.exit_code == 2 and "bad.jsonl: line 1" in header.output
    speed = runner.invoke(main, ["replay", str(CAPTURE), "--speed", "0"])
    assert speed.exit_code == 2 and "--speed" in speed.output
    scen = tmp_path / "s.toml"
    scen.write_text("[bot]\npolicy = 'yolo'\n")
    sc = runner.invoke(main, ["replay", str(CAPTURE), "--scenario", str(scen)])
    assert sc.exit_code == 2 and "s.toml: bot.policy" in sc.output


# --- the console report: the divergence once, the handover, a closing summary ------------------

FIRST_PLACE = {"type": "PLACE_LIMIT_ORDER", "clientMsgId": "live-1",
               "payload": {"side": "BUY", "quantity": "0.00100000", "price": "1495500", "pair": "BTCZAR",
                           "postOnly": True, "customerOrderId": "LIVE-B1", "timeInForce": "GTC"}}
STRAY_CANCEL = {"type": "CANCEL_LIMIT_ORDER", "clientMsgId": "x",
                "payload": {"pair": "BTCZAR", "customerOrderId": "NOPE"}}


async def _account(session: aiohttp.ClientSession, info: dict):
    headers = auth_headers(info["api_key"], info["api_secret"], "GET", "/ws/account")
    ws = await session.ws_connect(info["ws_account_url"], headers=headers)
    assert json.loads((await asyncio.wait_for(ws.receive(), WAIT)).data)["type"] == "AUTHENTICATED"
    return ws


async def _until(ws, msg_type: str) -> dict:
    while True:
        msg = await asyncio.wait_for(ws.receive(), WAIT)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        body = json.loads(msg.data)
        if body.get("type") == msg_type:
            return body


async def _stderr_until(proc, text: str) -> list[str]:
    lines = []
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), WAIT)).decode()
        assert line, f"stderr ended before {text!r}: {''.join(lines)}"
        lines.append(line)
        if text in line:
            return lines


async def test_a_divergence_is_reported_once_with_a_summary_on_the_way_out():
    async with replay_command("replay", str(CAPTURE), "--speed", "10", "--on-divergence", "stop") as proc:
        info = json.loads(await asyncio.wait_for(proc.stdout.readline(), WAIT))
        async with aiohttp.ClientSession() as session:
            ws = await _account(session, info)
            await ws.send_str(json.dumps(STRAY_CANCEL))
            while not ws.closed:
                await asyncio.wait_for(ws.receive(), WAIT)
        _out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    text = err.decode()
    assert proc.returncode == 1, text
    assert text.count("divergence after 0 matched request(s)") == 1, text
    assert text.count("came:     CANCEL_LIMIT_ORDER") == 1, text
    assert "replay summary: 0 of 60 recorded requests matched; 60 never came" in text
    assert "diverged after 0 matched request(s)" in text and "CANCEL_LIMIT_ORDER; stopped" in text
    assert "never came: PLACE_LIMIT_ORDER recorded at +1000.000ms" in text
    report = json.loads(text.strip().splitlines()[-1])
    assert report["divergence"]["came"]["customerOrderId"] == "NOPE"


async def test_simulate_says_it_hands_over_and_sigint_prints_the_summary():
    async with replay_command("replay", str(CAPTURE), "--speed", "10", "--on-divergence", "simulate") as proc:
        info = json.loads(await asyncio.wait_for(proc.stdout.readline(), WAIT))
        async with aiohttp.ClientSession() as session:
            ws = await _account(session, info)
            await ws.send_str(json.dumps(FIRST_PLACE))
            reply = await _until(ws, "PLACE_LIMIT_WS_RESPONSE")  # matched: the recorded reply, mapped
            assert reply["clientMsgId"] == "live-1"
            await ws.send_str(json.dumps(STRAY_CANCEL))
            before = await _stderr_until(proc, "handed over to the simulated exchange")
            # the simulated exchange answers from now on, on the same connection
            assert (await _until(ws, "CANCEL_ORDER_WS_RESPONSE"))["clientMsgId"] == "x"
            code, rest = await interrupt(proc)
    text = "".join(before) + rest
    assert code == 0, text
    assert text.count("divergence after 1 matched request(s)") == 1, text
    assert "replay summary: 1 of 60 recorded requests matched; 59 never came" in text
    assert "diverged after 1 matched request(s)" in text and "handed over to the simulated exchange" in rest


async def test_sigint_without_a_divergence_prints_the_summary():
    async with replay_command("replay", str(CAPTURE), "--speed", "10") as proc:
        info = json.loads(await asyncio.wait_for(proc.stdout.readline(), WAIT))
        async with aiohttp.ClientSession() as session:
            ws = await _account(session, info)
            await ws.send_str(json.dumps(FIRST_PLACE))
            await _until(ws, "PLACE_LIMIT_WS_RESPONSE")
            code, err = await interrupt(proc)
    assert code == 0, err
    assert "replay summary: 1 of 60 recorded requests matched; 59 never came" in err
    assert "  no divergence" in err and "divergence after" not in err
