"""No secret in a raw frame: text that did not parse (a cut-off AUTHENTICATE, a REST body that is
not JSON, raw header lines) is scrubbed on write like parsed records are, and the secret scan sees
a leftover inside such text."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from replay.capture import SCRUBBED, CaptureWriter, TraceRecorder, find_secrets, scrub_record, scrub_text
from replay.clock import Clock

from conftest import make_config

KEY = "0f" * 32        # 64 hex, shaped like a VALR API key
SIGNATURE = "ab" * 64  # 128 hex, shaped like an HMAC-SHA512 signature


def test_raw_text_in_any_spelling_is_scrubbed() -> None:
    cut_off = '{"type":"AUTHENTICATE","apiKey":"%s","signature":"%s","timestamp":17' % (KEY, SIGNATURE)
    assert KEY not in scrub_text(cut_off) and SIGNATURE not in scrub_text(cut_off)
    http = f"X-VALR-API-KEY: {KEY}\r\nX-VALR-SIGNATURE: {SIGNATURE}\r\nContent-Type: application/json"
    assert scrub_text(http) == (f"X-VALR-API-KEY: {SCRUBBED}\r\nX-VALR-SIGNATURE: {SCRUBBED}\r\n"
                                "Content-Type: application/json")
    assert scrub_text('{"apiKey": "not-hex-at-all"') == '{"apiKey": "%s"' % SCRUBBED
    assert scrub_text(f"api_key={KEY}&x=1") == f"api_key={SCRUBBED}&x=1"
    assert scrub_text(f"anything {SIGNATURE} at all") == f"anything {SCRUBBED} at all"
    plain = '{"type":"NEW_TRADE","data":{"price":"1500000","id":"0198379c-5d70-7ddf-b4f7-a490aab443d8"}}'
    assert scrub_text(plain) == plain  # nothing secret-shaped: untouched
    record = {"kind": "ws", "type": "RAW", "data": cut_off, "nested": [{"body": http}]}
    assert KEY not in json.dumps(scrub_record(record)) and SIGNATURE not in json.dumps(scrub_record(record))


def test_the_writer_never_writes_a_known_secret_nor_a_raw_one(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    writer = CaptureWriter(path, {"source": "simulated"}, known_secrets=["my-own-secret-value"])
    writer.write({"t": 1, "kind": "ws", "type": "RAW", "data": '{"type":"AUTHENTICATE","apiKey":"%s"' % KEY})
    writer.write({"t": 2, "kind": "rest", "type": "POST /v1/orders/limit", "data": {"body": "my-own-secret-value"}})
    writer.close()
    text = path.read_text()
    assert KEY not in text and "my-own-secret-value" not in text
    assert find_secrets(path) == []


def test_the_scan_sees_a_secret_inside_raw_text(tmp_path: Path) -> None:
    path = tmp_path / "leaky.jsonl"
    path.write_text(json.dumps({"data": '{"type":"AUTHENTICATE","apiKey":"%s","signature":"x"' % KEY}) + "\n")
    found = find_secrets(path)
    assert any("unscrubbed apiKey" in f for f in found), found


async def test_a_broken_authenticate_frame_reaches_the_serve_trace_scrubbed(make_server, tmp_path: Path) -> None:
    config = make_config()
    account = config.accounts[0]
    path = tmp_path / "serve.jsonl"
    clock = Clock()
    writer = CaptureWriter(path, {"source": "simulated"},
                           known_secrets=[v for a in config.accounts for v in (a.api_key, a.api_secret)])
    server = await make_server(config, clock=clock, trace=TraceRecorder(clock, writer, keep=False))
    frame = '{"type":"AUTHENTICATE","data":{"apiKey":"%s","signature":"%s","timestamp":1}' % (
        account.api_key, SIGNATURE)  # its closing brace missing
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(server.ws_trade_url) as ws:
            await ws.send_str(frame)
            reply = await asyncio.wait_for(ws.receive_json(), 5)
            assert reply["type"] == "ERROR" or "error" in json.dumps(reply).lower()
        async with session.post(server.rest_url + "/v1/orders/limit", data=f"api={account.api_secret}{{",
                                headers={"Content-Type": "application/json"}) as resp:
            assert resp.status in (400, 403)
    writer.close()
    text = path.read_text()
    assert account.api_key not in text and account.api_secret not in text and SIGNATURE not in text
    assert find_secrets(path) == []
    assert '"RAW"' in text or "Invalid JSON" in text  # the frame itself was traced, scrubbed
