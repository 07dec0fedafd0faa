"""Playback's fast paths: market frames sent as recorded (RawFrame), with a fallback to full
parsing for lines not in the writer's layout, and the account index kept as file offsets."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from replay.capture import CaptureWriter, RawFrame, TraceRecorder, dumps, open_capture, read_capture, split_line
from replay.clock import Clock
from replay.config import default_config
from replay.playback import Playback, _is_market
from replay.schedule import DeliverySchedule, Drop, Match
from replay.server.app import FakeValr

WAIT = 10.0


def rec(t_ms: float, conn: str, d: str, typ: str, data: Any, kind: str = "ws") -> dict[str, Any]:
    return {"t": int(t_ms * 1e6), "wall": "2026-01-01T00:00:00.000Z", "conn": conn, "dir": d, "kind": kind,
            "type": typ, "data": data}


def market_frames() -> list[dict[str, Any]]:
    """Frames with what could trip a slicer: nested data keys, braces and quotes in strings,
    escapes, non-ASCII, floats, lists at the top of data."""
    return [
        {"type": "NEW_TRADE", "currencyPairSymbol": "BTCZAR", "data": {"price": "1", "quantity": "2"}},
        {"type": "AGGREGATED_ORDERBOOK_UPDATE", "data": {"Asks": [{"price": "1", "data": {"x": [1, 2]}}],
                                                          "Bids": []}},
        {"type": "MARKET_SUMMARY_UPDATE", "data": {"note": 'odd "quoted" },"data":{ text\\', "pct": 1.5e-7}},
        {"type": "NEW_TRADE", "data": {"who": "Zoë ✓", "n": None, "ok": True, "orderId": "x1"}},
        {"type": "NEW_TRADE_BUCKET", "data": [{"a": 1}, {"b": [2, {"c": "]"}]}]},
    ]


def session_records() -> list[dict[str, Any]]:
    """Account traffic (two concurrent orders, a cancel, a REST call and a GET) around market data."""
    place = lambda m, c, side, p: {"type": "PLACE_LIMIT_ORDER", "clientMsgId": m, "payload": {  # noqa: E731
        "pair": "BTCZAR", "side": side, "price": p, "quantity": "1", "customerOrderId": c}}
    status = lambda oid, cid, st: {"type": "ORDER_STATUS_UPDATE", "data": {  # noqa: E731
        "orderId": oid, "customerOrderId": cid, "orderStatusType": st, "currencyPair": "BTCZAR"}}
    frames = market_frames()
    out = [
        rec(0, "account-1", "local", "CONNECT", {"path": "/ws/account", "code": None}),
        rec(0, "trade-1", "local", "CONNECT", {"path": "/ws/trade", "code": None}),
        rec(1, "account-1", "in", "AUTHENTICATED", {"type": "AUTHENTICATED"}),
        rec(2, "trade-1", "in", frames[0]["type"], frames[0]),
        rec(3, "rest-1", "out", "GET /v1/account/balances", {"method": "GET", "path": "/v1/account/balances",
                                                              "query": "", "headers": {}, "body": None}, "rest"),
        rec(4, "rest-1", "in", "GET /v1/account/balances", {"status": 200, "headers": {},
                                                             "body": [{"currency": "ZAR", "available": "1"}]}, "rest"),
        rec(10, "account-1", "out", "PLACE_LIMIT_ORDER", place("m1", "c1", "BUY", "100")),
        rec(10.001, "account-1", "out", "PLACE_LIMIT_ORDER", place("m2", "c2", "SELL", "110")),
        rec(11, "trade-1", "in", frames[1]["type"], frames[1]),
        rec(12, "account-1", "in", "PLACE_LIMIT_WS_RESPONSE", {"type": "PLACE_LIMIT_WS_RESPONSE",
                                                                "clientMsgId": "m1", "data": {"orderId": "o1"}}),
        rec(12.5, "account-1", "in", "PLACE_LIMIT_WS_RESPONSE", {"type": "PLACE_LIMIT_WS_RESPONSE",
                                                                  "clientMsgId": "m2", "data": {"orderId": "o2"}}),
        rec(13, "account-1", "in", "ORDER_STATUS_UPDATE", status("o1", "c1", "Placed")),
        rec(14, "account-1", "in", "ORDER_STATUS_UPDATE", status("o2", "c2", "Placed")),
        rec(15, "trade-1", "in", frames[2]["type"], frames[2]),
        rec(16, "exchange", "local", "OrderStatusChanged", {"order": {"order_id": "o1", "customer_order_id": "c1",
                                                                      "status": "Placed"}}, "event"),
        rec(20, "rest-2", "out", "DELETE /v1/orders/order", {"method": "DELETE", "path": "/v1/orders/order",
                                                             "query": "", "headers": {},
                                                             "body": {"pair": "BTCZAR", "orderId": "o1"}}, "rest"),
        rec(21, "rest-2", "in", "DELETE /v1/orders/order", {"status": 202, "headers": {}, "body": {"id": "o1"}},
            "rest"),
        rec(22, "account-1", "in", "ORDER_STATUS_UPDATE", status("o1", "c1", "Cancelled")),
        rec(23, "trade-1", "in", frames[3]["type"], frames[3]),
        rec(24, "account-1", "in", "OPEN_ORDERS_UPDATE", {"type": "OPEN_ORDERS_UPDATE", "data": [{"orderId": "o2"}]}),
        rec(25, "trade-1", "in", frames[4]["type"], frames[4]),
    ]
    return out


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    with CaptureWriter(path, {"source": "proxy", "pairs": ["BTCZAR"]}) as w:
        for r in records:
            w.write(r)
    return path


def sent_as_before(data: Any) -> str:
    """What the dispatcher sent for a parsed frame before the fast path."""
    return json.dumps(data, separators=(",", ":"))


def all_market(pb: Playback) -> list[Any]:
    pb.on_connect(0.0, "trade")
    return [r.message for r in pb.due_market(float("inf"))]


# --- the fast path -------------------------------------------------------------------------------


def test_split_line_gives_the_writer_fields_and_the_data_text():
    r = rec(1, "trade-1", "in", "NEW_TRADE", market_frames()[2])
    line = dumps(r).encode()
    head, tail = split_line(line)
    assert head == dict(r, data=None)
    assert tail.decode() == dumps(r["data"])


@pytest.mark.parametrize("gz", [False, True])
def test_market_frames_are_sent_byte_identical(tmp_path, gz):
    path = write(tmp_path / ("c.jsonl.gz" if gz else "c.jsonl"), session_records())
    pb = Playback.from_file(path)
    out = all_market(pb)
    expected = market_frames()
    assert all(isinstance(m, RawFrame) for m in out)
    assert [m.text for m in out] == [sent_as_before(f) for f in expected]
    assert [m.msg_type for m in out] == [f["type"] for f in expected]
    assert out == expected  # and they read as the parsed frames
    assert out[0]["data"]["price"] == "1" and copy.deepcopy(out[0]) is out[0]
    assert pb.problems == []


ODD_LINES = [
    # keys reordered: data first
    '{"data":{"type":"NEW_TRADE","data":{"a":1}},"t":5000000,"conn":"trade-1","dir":"in","kind":"ws",'
    '"type":"NEW_TRADE"}',
    # a key added after data (jq style), with an object value: slicing would take both
    '{"t":6000000,"wall":"x","conn":"trade-1","dir":"in","kind":"ws","type":"NEW_TRADE",'
    '"data":{"type":"NEW_TRADE","n":2},"note":{"edited":true}}',
    # spaces (json.dumps default separators)
    '{"t": 7000000, "conn": "trade-1", "dir": "in", "kind": "ws", "type": "NEW_TRADE", '
    '"data": {"type": "NEW_TRADE", "n": 3}}',
    # data twice: the last one counts
    '{"t":8000000,"conn":"trade-1","dir":"in","kind":"ws","type":"NEW_TRADE","data":{"n":0},'
    '"data":{"type":"NEW_TRADE","n":4}}',
    # a brace in a head string
    '{"t":9000000,"conn":"trade-1","dir":"in","kind":"ws","type":"NEW{TRADE","data":{"type":"NEW{TRADE","n":5}}',
    # CRLF line ending
    '{"t":10000000,"conn":"trade-1","dir":"in","kind":"ws","type":"NEW_TRADE","data":{"type":"NEW_TRADE","n":6}}\r',
    # the writer's layout
    '{"t":11000000,"conn":"trade-1","dir":"in","kind":"ws","type":"NEW_TRADE","data":{"type":"NEW_TRADE","n":7}}',
]


def odd_capture(path: Path) -> Path:
    header = dumps({"format": "valr-replay-capture", "version": 1, "source": "proxy", "pairs": []})
    lines = [header, dumps(rec(0, "trade-1", "local", "CONNECT", {"path": "/ws/trade"}))] + ODD_LINES
    path.write_bytes(("\n".join(lines) + "\n").encode())
    return path


def expected_odd() -> list[Any]:
    return [json.loads(line)["data"] for line in ODD_LINES]


def test_odd_layouts_fall_back_to_full_parsing(tmp_path):
    path = odd_capture(tmp_path / "odd.jsonl")
    pb = Playback.from_file(path)
    out = all_market(pb)
    assert out == expected_odd()
    assert [m.get("n") for m in out] == [None, 2, 3, 4, 5, 6, 7]
    for m, line in zip(out, ODD_LINES, strict=True):
        if isinstance(m, RawFrame):  # only where the slice is exactly the data
            assert json.loads(m.text) == json.loads(line)["data"]
    assert isinstance(out[-1], RawFrame) and not isinstance(out[1], RawFrame) and not isinstance(out[3], RawFrame)


def test_iter_raw_checks_each_line_without_an_index_pass(tmp_path):
    path = odd_capture(tmp_path / "odd.jsonl")
    got = [r["data"] for r in open_capture(path).iter_raw(_is_market)]
    assert got == expected_odd()


def test_a_file_changed_after_indexing_is_checked_line_by_line(tmp_path):
    path = write(tmp_path / "c.jsonl", session_records())
    pb = Playback.from_file(path)
    with open(path, "a") as fh:  # a hand-edited line appended after the index pass
        fh.write(ODD_LINES[1] + "\n")
    out = all_market(pb)
    assert out == market_frames() + [expected_odd()[1]]


def test_corrupt_market_lines_are_problems_of_the_index_pass(tmp_path):
    path = write(tmp_path / "c.jsonl", session_records())
    with open(path, "a") as fh:
        fh.write('{"t":99000000,"conn":"trade-1","dir":"in","kind":"ws","type":"NEW_TRADE","data":{"n":}\n')
    pb = Playback.from_file(path)
    assert [p.line_no for p in pb.problems] == [len(session_records()) + 2]
    assert all_market(pb) == market_frames()


# --- the offset index ----------------------------------------------------------------------------


def snapshot(pb: Playback) -> dict[str, Any]:
    return {
        "pre": pb.pre,
        "requests": [(q.index, q.t, q.conn, q.desc, q.segment, q.response) for q in pb.requests],
        "gets": {k: [(g.position, g.t_req, g.t_resp, g.response) for g in v] for k, v in pb.gets.items()},
    }


@pytest.mark.parametrize("gz", [False, True])
def test_segments_read_back_equal_the_records(tmp_path, gz):
    path = write(tmp_path / ("c.jsonl.gz" if gz else "c.jsonl"), session_records())
    from_file = Playback.from_file(path)
    in_memory = Playback([r for r in session_records() if not _is_market(r)])
    a, b = snapshot(from_file), snapshot(in_memory)
    assert a == b
    # m1: its reply, status and event; m2: reply, status; the cancel: status, snapshot
    assert [len(q.segment) for q in from_file.requests] == [3, 2, 2] and len(from_file.pre) == 1
    from_file.close()


def test_segments_of_a_generated_capture_match_the_in_memory_index(tmp_path):
    from benchmarks.capgen import generate

    for name in ("g.jsonl", "g.jsonl.gz"):
        path = tmp_path / name
        generate(path, 1_000_000)
        _header, records, _problems = read_capture(path)
        a = snapshot(Playback.from_file(path))
        b = snapshot(Playback(records))
        assert a == b and len(a["requests"]) > 20


def test_playback_matches_from_the_offset_index(tmp_path):
    path = write(tmp_path / "c.jsonl", session_records())
    pb = Playback.from_file(path)
    assert len(pb.pending) == 3
    out = pb.on_request(1.0, "account", {"type": "PLACE_LIMIT_ORDER", "clientMsgId": "L1", "payload": {
        "pair": "BTCZAR", "side": "BUY", "price": "100", "quantity": "1", "customerOrderId": "LC1"}})
    assert [r.msg_type for r in out][:2] == ["PLACE_LIMIT_WS_RESPONSE", "ORDER_STATUS_UPDATE"]
    assert out[0].message["clientMsgId"] == "L1" and out[1].message["data"]["customerOrderId"] == "LC1"
    assert len(pb.pending) == 2 and pb.summary()["pending"] == 2


# --- the server ----------------------------------------------------------------------------------


async def serve_market(path: Path, n: int, trace: TraceRecorder | None = None,
                       schedule: DeliverySchedule | None = None) -> list[str]:
    """The first ``n`` frames a trade client gets from a playback of ``path``."""
    server = FakeValr(default_config(), clock=trace.clock if trace else Clock(), trace=trace, schedule=schedule,
                      playback=Playback.from_file(path, speed=1e9))
    await server.start("127.0.0.1", 0)
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(server.ws_trade_url)

        async def receive() -> list[str]:
            got = []
            while len(got) < n:
                msg = await ws.receive()
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                got.append(msg.data)
            return got

        texts = await asyncio.wait_for(receive(), WAIT)
        await ws.close()
        return texts
    finally:
        await session.close()
        await server.stop()


async def test_server_sends_recorded_frames_and_traces_them_parsed(tmp_path):
    path = write(tmp_path / "c.jsonl", session_records())
    trace = TraceRecorder(Clock())
    texts = await serve_market(path, len(market_frames()), trace)
    assert texts == [sent_as_before(f) for f in market_frames()]
    traced = [r for r in trace.records if r["conn"].startswith("trade-") and r["dir"] == "in"
              and r["type"] not in ("CONNECT", "DISCONNECT")]
    assert [r["data"] for r in traced] == market_frames()
    assert all(type(r["data"]) is dict for r in traced)
    json.loads(dumps(traced[0]))  # a capture line again


@pytest.mark.parametrize("match, dropped", [
    (Match(types=("NEW_TRADE",), conns=("trade",)), {0, 3}),  # by type and connection: no parsing
    (Match(conns=("trade",), predicate="mentions-order"), {3}),  # looks inside: parsed first
])
async def test_perturbations_apply_to_recorded_frames(tmp_path, match, dropped):
    path = write(tmp_path / "c.jsonl", session_records())
    kept = [f for i, f in enumerate(market_frames()) if i not in dropped]
    schedule = DeliverySchedule(perturbations=[Drop(match=match, name="drop")])
    texts = await serve_market(path, len(kept), schedule=schedule)
    assert texts == [sent_as_before(f) for f in kept]
    assert [a.msg_type for a in schedule.applied] == [market_frames()[i]["type"] for i in sorted(dropped)]


def test_no_scratch_or_spill_files_are_left(tmp_path):
    import glob
    import tempfile

    pattern = str(Path(tempfile.gettempdir()) / "valr-replay-index-*")
    before = set(glob.glob(pattern))
    path = write(tmp_path / "c.jsonl.gz", session_records())
    pb = Playback.from_file(path)
    assert pb.requests[0].segment  # read back from the spill
    pb.close()
    assert set(glob.glob(pattern)) <= before
