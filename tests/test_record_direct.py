"""Direct recording against the fake VALR: trade frames, account stream, reconnect with GAP records."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Callable

import pytest

from replay.capture import CaptureWriter, find_secrets, read_capture
from replay.record import DirectRecorder, subscribe_message

from conftest import MAKER_KEY, MAKER_SECRET, Records


@pytest.fixture
async def recording(tmp_path):
    """``start(upstream, **kwargs) -> (recorder, records, stop, task, out)``; stopped at teardown."""
    started: list = []

    def start(upstream: str, pairs=("BTCZAR",), **kwargs: Any):
        out = tmp_path / f"direct-{len(started)}.jsonl"
        writer = CaptureWriter(out, {"source": "live", "upstream": upstream, "pairs": list(pairs)})
        kwargs.setdefault("backoff_min", 0.01)
        kwargs.setdefault("backoff_max", 0.05)
        recorder = DirectRecorder(upstream, pairs, writer, **kwargs)
        records = Records(recorder.sink)
        stop = asyncio.Event()
        task = asyncio.create_task(recorder.run(stop))
        started.append((stop, task, writer))
        return recorder, records, stop, task, out

    yield start
    for stop, task, writer in started:
        stop.set()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)
        writer.close()


def is_in(conn: str, type_: str) -> Callable[[dict], bool]:
    return lambda r: r["conn"] == conn and r["dir"] == "in" and r["type"] == type_


async def test_subscribe_message():
    assert subscribe_message(["BTCZAR", "ETHZAR"]) == {"type": "SUBSCRIBE", "subscriptions": [
        {"event": "AGGREGATED_ORDERBOOK_UPDATE", "pairs": ["BTCZAR", "ETHZAR"]},
        {"event": "MARKET_SUMMARY_UPDATE", "pairs": ["BTCZAR", "ETHZAR"]},
        {"event": "NEW_TRADE", "pairs": ["BTCZAR", "ETHZAR"]},
    ]}
    with pytest.raises(ValueError, match="pairs"):
        DirectRecorder("http://127.0.0.1:1", [])
    with pytest.raises(ValueError, match="api_secret"):
        DirectRecorder("http://127.0.0.1:1", ["BTCZAR"], api_key="k")


async def test_records_trade_frames_and_reconnects_after_upstream_drop(make_server, recording):
    fake = await make_server()
    recorder, records, stop, task, out = recording(fake.rest_url, pairs=("BTCZAR", "ETHZAR"))
    assert recorder.streams == ["trade"]
    await records.wait(is_in("trade-1", "AGGREGATED_ORDERBOOK_UPDATE"))
    await records.wait(is_in("trade-1", "MARKET_SUMMARY_UPDATE"))
    # the upstream drops the connection
    (conn,) = [c for c in fake.conns.values() if c.kind == "trade"]
    fake.disconnect_later(conn, 1012)
    await records.wait(lambda r: r["type"] == "GAP" and r["data"]["phase"] == "end")
    await records.wait(is_in("trade-2", "AGGREGATED_ORDERBOOK_UPDATE"))
    stop.set()
    await asyncio.wait_for(task, 10)  # the stop event ends it
    assert recorder.errors == []

    header, recs, problems = read_capture(out)
    assert problems == [] and header["source"] == "live"
    subs = [r for r in recs if r["type"] == "SUBSCRIBE"]
    assert [r["conn"] for r in subs] == ["trade-1", "trade-2"] and all(r["dir"] == "out" for r in subs)
    assert subs[0]["data"] == subscribe_message(["BTCZAR", "ETHZAR"])
    gaps = [r for r in recs if r["type"] == "GAP"]
    assert [g["data"]["phase"] for g in gaps] == ["start", "end"]
    assert all(g["kind"] == "meta" and g["conn"] == "run" for g in gaps)
    assert gaps[0]["data"]["conn"] == "trade-1" and "1012" in gaps[0]["data"]["reason"]
    assert gaps[1]["data"]["resumed_conn"] == "trade-2" and gaps[1]["data"]["duration_ms"] >= 0
    order = [(r["conn"], r["type"]) for r in recs]
    assert order.index(("trade-1", "DISCONNECT")) < order.index(("run", "GAP")) < order.index(("trade-2", "CONNECT"))
    pairs = {r["data"]["currencyPairSymbol"] for r in recs if r["type"] == "AGGREGATED_ORDERBOOK_UPDATE"}
    assert pairs == {"BTCZAR", "ETHZAR"}
    ts = [r["t"] for r in recs]
    assert ts == sorted(ts)
    assert recorder.stats["trade-1"].in_ >= 2


async def test_account_stream_with_key_is_signed_and_pinged(make_server, recording):
    fake = await make_server()
    recorder, records, stop, task, out = recording(fake.rest_url, api_key=MAKER_KEY, api_secret=MAKER_SECRET,
                                                   ping_interval=0.05)
    assert recorder.streams == ["trade", "account"]
    await records.wait(is_in("account-1", "AUTHENTICATED"))
    await records.wait(lambda r: r["conn"] == "account-1" and r["dir"] == "out" and r["type"] == "PING")
    await records.wait(is_in("account-1", "PONG"))
    await records.wait(is_in("trade-1", "AGGREGATED_ORDERBOOK_UPDATE"))
    stop.set()
    await asyncio.wait_for(task, 10)
    _h, recs, problems = read_capture(out)
    assert problems == []
    assert find_secrets(out) == []
    assert MAKER_KEY not in out.read_text()


async def test_refused_key_stops_account_stream_only(make_server, recording):
    fake = await make_server()
    recorder, records, stop, task, out = recording(fake.rest_url, api_key="c" * 64, api_secret=MAKER_SECRET)
    failed = await records.wait(lambda r: r["type"] == "AUTH_FAILED" and r["data"]["stream"] == "account")
    assert failed["data"]["status"] == 401
    assert recorder.errors and "refused" in recorder.errors[0]
    # the trade upgrade is refused too; that stream goes on unsigned
    await records.wait(is_in("trade-1", "AGGREGATED_ORDERBOOK_UPDATE"))
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, 10)
    _h, recs, _p = read_capture(out)
    assert sorted(r["data"]["stream"] for r in recs if r["type"] == "AUTH_FAILED") == ["account", "trade"]
    assert not [r for r in recs if r["type"] == "GAP"]


async def test_unreachable_upstream_is_retried_until_stopped(recording):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    recorder, records, stop, task, out = recording(f"http://127.0.0.1:{port}")
    gap = await records.wait(lambda r: r["type"] == "GAP")
    assert gap["data"] == {"conn": None, "stream": "trade", "phase": "start", "reason": gap["data"]["reason"]}
    assert "connect failed" in gap["data"]["reason"]
    retry = await records.wait(lambda r: r["type"] == "RETRY")
    assert retry["data"]["attempt"] >= 2
    stop.set()
    await asyncio.wait_for(task, 10)
