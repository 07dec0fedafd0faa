"""The pure playback core: segmentation, id mapping, matching, divergences, GETs, market data."""

from __future__ import annotations

import pytest

from replay.capture import CaptureWriter
from replay.playback import Diverged, Playback, describe_request

MS = 1_000_000


def rec(t_ms: float, conn: str, dir: str, type_: str, data, kind: str = "ws") -> dict:
    return {"t": int(t_ms * MS), "wall": "2026-01-01T00:00:00.000Z", "conn": conn, "dir": dir, "kind": kind,
            "type": type_, "data": data}


def place(msg_id: str, cid: str, side: str, price: str, qty: str = "1") -> dict:
    return {"type": "PLACE_LIMIT_ORDER", "clientMsgId": msg_id,
            "payload": {"pair": "BTCZAR", "side": side, "price": price, "quantity": qty, "customerOrderId": cid,
                        "postOnly": True, "timeInForce": "GTC"}}


def cancel(msg_id: str, cid: str) -> dict:
    return {"type": "CANCEL_LIMIT_ORDER", "clientMsgId": msg_id, "payload": {"pair": "BTCZAR", "customerOrderId": cid}}


def status(oid: str, cid: str, st: str, side: str = "buy", price: str = "100") -> dict:
    return {"type": "ORDER_STATUS_UPDATE", "data": {
        "orderId": oid, "customerOrderId": cid, "orderStatusType": st, "currencyPair": "BTCZAR",
        "originalPrice": price, "remainingQuantity": "1", "originalQuantity": "1", "orderSide": side}}


def rest_out(t, conn, method, path, body=None):
    return rec(t, conn, "out", f"{method} {path}", {"method": method, "path": path, "query": "", "headers": {},
                                                    "body": body}, kind="rest")


def rest_in(t, conn, method, path, status_code, body):
    return rec(t, conn, "in", f"{method} {path}", {"status": status_code, "headers": {}, "body": body}, kind="rest")


def session() -> list[dict]:
    a = "account-1"
    return [
        rec(0, a, "local", "CONNECT", {"path": "/ws/account"}),
        rec(1, a, "in", "AUTHENTICATED", {"type": "AUTHENTICATED"}),
        rec(10, "trade-1", "local", "CONNECT", {"path": "/ws/trade"}),
        rec(10, "trade-1", "in", "AGGREGATED_ORDERBOOK_UPDATE", {"type": "AGGREGATED_ORDERBOOK_UPDATE", "n": 1}),
        rest_out(40, "rest-1", "GET", "/v1/account/balances"),
        rest_in(45, "rest-1", "GET", "/v1/account/balances", 200, [{"currency": "ZAR", "available": "1"}]),
        rec(100, a, "out", "PLACE_LIMIT_ORDER", place("m1", "c1", "BUY", "100")),
        rec(100, a, "out", "PLACE_LIMIT_ORDER", place("m2", "c2", "SELL", "110")),
        rec(101, "exchange", "local", "OrderStatusChanged",
            {"order": {"order_id": "o1", "customer_order_id": "c1", "status": "Placed"}}, kind="event"),
        rec(102, a, "in", "OPEN_ORDERS_UPDATE", {"type": "OPEN_ORDERS_UPDATE",
                                                  "data": [{"orderId": "o1", "customerOrderId": "c1"}]}),
        rec(103, a, "in", "ORDER_STATUS_UPDATE", status("o1", "c1", "Placed")),
        rec(105, a, "in", "PLACE_LIMIT_WS_RESPONSE", {"type": "PLACE_LIMIT_WS_RESPONSE", "clientMsgId": "m1",
                                                       "data": {"orderId": "o1", "customerOrderId": "c1"}}),
        rec(108, a, "in", "PLACE_LIMIT_WS_RESPONSE", {"type": "PLACE_LIMIT_WS_RESPONSE", "clientMsgId": "m2",
                                                       "data": {"orderId": "o2", "customerOrderId": "c2"}}),
        rec(109, a, "in", "ORDER_STATUS_UPDATE", status("o2", "c2", "Placed", "sell", "110")),
        rest_out(150, "rest-2", "GET", "/v1/orders/BTCZAR/customerorderid/c1"),
        rest_in(160, "rest-2", "GET", "/v1/orders/BTCZAR/customerorderid/c1", 200,
                {"orderId": "o1", "customerOrderId": "c1", "orderStatusType": "Placed"}),
        rec(200, a, "out", "CANCEL_LIMIT_ORDER", cancel("m3", "c1")),
        rec(204, a, "in", "CANCEL_ORDER_WS_RESPONSE", {"type": "CANCEL_ORDER_WS_RESPONSE", "clientMsgId": "m3",
                                                        "data": {"orderId": "o1", "customerOrderId": "c1"}}),
        rec(205, a, "in", "ORDER_STATUS_UPDATE", status("o1", "c1", "Cancelled")),
        rec(205, a, "out", "PING", {"type": "PING"}),
        rec(206, a, "in", "PONG", {"type": "PONG"}),
        rest_out(250, "rest-3", "GET", "/v1/account/balances"),
        rest_in(251, "rest-3", "GET", "/v1/account/balances", 200, [{"currency": "ZAR", "available": "2"}]),
        rest_out(300, "rest-4", "POST", "/v1/orders/limit",
                 {"pair": "BTCZAR", "side": "SELL", "price": "111", "quantity": "1", "customerOrderId": "c9"}),
        rest_in(320, "rest-4", "POST", "/v1/orders/limit", 202, {"id": "o9"}),
        rec(1010, "trade-1", "in", "AGGREGATED_ORDERBOOK_UPDATE", {"type": "AGGREGATED_ORDERBOOK_UPDATE", "n": 2}),
        rec(2010, "trade-1", "in", "AGGREGATED_ORDERBOOK_UPDATE", {"type": "AGGREGATED_ORDERBOOK_UPDATE", "n": 3}),
    ]


def by_type(releases, type_):
    return [r for r in releases if r.msg_type == type_]


def test_describe_request_ws_and_rest():
    d = describe_request("ws", place("m1", "c1", "buy", "100", "0.5"))
    assert d == {"type": "PLACE_LIMIT_ORDER", "clientMsgId": "m1", "pair": "BTCZAR", "side": "BUY", "price": "100",
                 "quantity": "0.5", "customerOrderId": "c1"}
    r = describe_request("rest", {"method": "delete", "path": "/v1/orders/order", "body": {"orderId": "o1",
                                                                                          "pair": "btczar"}})
    assert r["type"] == "DELETE /v1/orders/order" and r["orderId"] == "o1" and r["pair"] == "BTCZAR"


def test_pre_segment_on_first_account_connect_then_reconnect_greeting():
    pb = Playback(session())
    first = pb.on_connect(50.0, "account")
    assert [(r.msg_type, round(r.at, 6)) for r in first] == [("AUTHENTICATED", 50.001)]
    again = pb.on_connect(60.0, "account")
    assert [r.msg_type for r in again] == ["AUTHENTICATED"] and again[0].at == 60.0


def test_concurrent_requests_get_their_own_replies_with_live_ids():
    pb = Playback(session())
    pb.on_connect(0.0, "account")
    r1 = pb.on_request(10.0, "account", place("L1", "LC1", "BUY", "100"))
    # the reply names m1 and the status names c1: both belong to the bid, not to the later ask
    reply = by_type(r1, "PLACE_LIMIT_WS_RESPONSE")
    assert len(reply) == 1 and reply[0].message["clientMsgId"] == "L1"
    assert reply[0].message["data"] == {"orderId": "o1", "customerOrderId": "LC1"}  # server id kept
    assert reply[0].at == pytest.approx(10.005)
    st = by_type(r1, "ORDER_STATUS_UPDATE")
    assert st[0].message["data"]["customerOrderId"] == "LC1" and st[0].at == pytest.approx(10.003)
    ev = [r for r in r1 if r.target == "event"]
    assert ev and ev[0].message["order"]["customer_order_id"] == "LC1"
    assert not by_type(r1, "OPEN_ORDERS_UPDATE")  # names no single order: the latest request's
    r2 = pb.on_request(10.5, "account", place("L2", "LC2", "SELL", "110"))
    assert [r.msg_type for r in sorted(r2, key=lambda r: r.at)] == [
        "OPEN_ORDERS_UPDATE", "PLACE_LIMIT_WS_RESPONSE", "ORDER_STATUS_UPDATE"]
    snap = by_type(r2, "OPEN_ORDERS_UPDATE")[0]
    assert snap.message["data"] == [{"orderId": "o1", "customerOrderId": "LC1"}]  # mapped
    assert snap.at == pytest.approx(10.502)
    assert by_type(r2, "PLACE_LIMIT_WS_RESPONSE")[0].message["clientMsgId"] == "L2"


def test_speed_scales_recorded_delays():
    pb = Playback(session(), speed=2.0)
    r1 = pb.on_request(10.0, "account", place("L1", "LC1", "BUY", "100"))
    assert by_type(r1, "PLACE_LIMIT_WS_RESPONSE")[0].at == pytest.approx(10.0025)
    with pytest.raises(ValueError, match="speed"):
        Playback(session(), speed=0)


def test_tolerance_and_divergence_report():
    pb = Playback(session(), price_tolerance=1e-3)
    pb.on_request(1.0, "account", place("L1", "LC1", "BUY", "100.05"))  # 0.05 %: the same request
    with pytest.raises(Diverged) as info:
        pb.on_request(1.0, "account", place("L2", "LC2", "SELL", "112"))  # 1.8 % off
    d = info.value.divergence
    assert d.expected["type"] == "PLACE_LIMIT_ORDER" and d.expected["price"] == "110"
    assert d.came["price"] == "112" and d.matched == 1
    text = str(d)
    assert "expected: PLACE_LIMIT_ORDER" in text and "price=112" in text and "+100.000ms" in text
    assert d.to_dict()["expected"]["side"] == "SELL"
    with pytest.raises(Diverged):  # stays diverged
        pb.on_request(2.0, "account", place("L2", "LC2", "SELL", "110"))


def test_cancel_must_name_the_same_order():
    pb = Playback(session())
    pb.on_request(1.0, "account", place("L1", "LC1", "BUY", "100"))
    pb.on_request(1.0, "account", place("L2", "LC2", "SELL", "110"))
    with pytest.raises(Diverged) as info:
        pb.on_request(2.0, "account", cancel("L3", "LC2"))  # the recording cancelled c1
    assert info.value.divergence.expected["customerOrderId"] == "c1"
    pb2 = Playback(session())
    pb2.on_request(1.0, "account", place("L1", "LC1", "BUY", "100"))
    pb2.on_request(1.0, "account", place("L2", "LC2", "SELL", "110"))
    out = pb2.on_request(2.0, "account", cancel("L3", "LC1"))
    assert by_type(out, "CANCEL_ORDER_WS_RESPONSE")[0].message["clientMsgId"] == "L3"


def test_skipped_request_diverges_after_max_skip():
    recs = [rec(0, "account-1", "local", "CONNECT", {})]
    for i in range(5):
        recs.append(rec(10 * i + 10, "account-1", "out", "PLACE_LIMIT_ORDER",
                        place(f"m{i}", f"c{i}", "BUY", str(100 + i))))
    pb = Playback(recs, max_skip=2, window=4)
    pb.on_request(1, "account", place("a", "x1", "BUY", "101"))  # skips c0 once
    pb.on_request(1, "account", place("b", "x2", "BUY", "102"))  # twice
    with pytest.raises(Diverged) as info:
        pb.on_request(1, "account", place("c", "x3", "BUY", "103"))
    d = info.value.divergence
    assert "never came" in d.reason and d.expected["customerOrderId"] == "c0" and d.came["customerOrderId"] == "x3"


def test_capture_exhausted_is_a_divergence():
    recs = [rec(10, "account-1", "out", "PLACE_LIMIT_ORDER", place("m", "c", "BUY", "1"))]
    pb = Playback(recs)
    pb.on_request(0, "account", place("a", "b", "BUY", "1"))
    assert pb.done
    with pytest.raises(Diverged, match="no more requests"):
        pb.on_request(0, "account", place("a", "b", "BUY", "1"))


def test_ping_answered_at_once_and_not_matched():
    pb = Playback(session())
    out = pb.on_request(3.0, "account", {"type": "PING", "clientMsgId": "p"})
    assert [(r.msg_type, r.at, r.message) for r in out] == [("PONG", 3.0, {"type": "PONG", "clientMsgId": "p"})]
    assert pb.matched == 0
    # recorded PONGs are not replayed in any segment
    assert all(r.get("type") != "PONG" for q in pb.requests for r in q.segment)


def test_gets_nearest_in_sequence_with_ids_mapped_back_and_forth():
    pb = Playback(session())
    first = pb.answer_get(1.0, "GET", "/v1/account/balances")
    assert first.message["body"][0]["available"] == "1" and first.at == pytest.approx(1.005)
    pb.on_request(2.0, "account", place("L1", "LC1", "BUY", "100"))
    pb.on_request(2.0, "account", place("L2", "LC2", "SELL", "110"))
    status_reply = pb.answer_get(3.0, "GET", "/v1/orders/BTCZAR/customerorderid/LC1")
    assert status_reply is not None and status_reply.message["body"]["customerOrderId"] == "LC1"
    pb.on_request(4.0, "account", cancel("L3", "LC1"))
    later = pb.answer_get(5.0, "GET", "/v1/account/balances")
    assert later.message["body"][0]["available"] == "2"
    assert pb.answer_get(5.0, "GET", "/v1/orders/open") is None


def test_rest_order_call_gets_the_recorded_response():
    pb = Playback(session())
    for m in (place("L1", "LC1", "BUY", "100"), place("L2", "LC2", "SELL", "110"), cancel("L3", "LC1")):
        pb.on_request(1.0, "account", m)
    out = pb.on_request(2.0, "rest", {"method": "POST", "path": "/v1/orders/limit", "query": "", "body": {
        "pair": "BTCZAR", "side": "SELL", "price": "111", "quantity": "1", "customerOrderId": "LC9"}})
    reply = [r for r in out if r.target == "rest"]
    assert len(reply) == 1 and reply[0].message["status"] == 202 and reply[0].message["body"] == {"id": "o9"}
    assert reply[0].at == pytest.approx(2.020)


def test_open_orders_follow_released_statuses():
    pb = Playback(session())
    pb.on_request(1.0, "account", place("L1", "LC1", "BUY", "100"))
    assert pb.open_orders(1.002) == []
    opened = pb.open_orders(1.004)
    assert [(o["orderId"], o["customerOrderId"]) for o in opened] == [("o1", "LC1")]
    pb.on_request(1.5, "account", place("L2", "LC2", "SELL", "110"))
    pb.on_request(2.0, "account", cancel("L3", "LC1"))
    assert [o["orderId"] for o in pb.open_orders(3.0)] == ["o2"]


def test_market_data_streams_from_file_at_recorded_offsets(tmp_path):
    path = tmp_path / "c.jsonl"
    with CaptureWriter(path, {"source": "proxy", "pairs": ["BTCZAR"]}) as w:
        for r in session():
            w.write(r)
    pb = Playback.from_file(path, speed=2.0)
    # account segments are indexed; market records are not held in memory
    held = pb.pre + [r for q in pb.requests for r in q.segment]
    assert held and not any(r["conn"].startswith("trade-") for r in held)
    assert pb.next_market_at() is None  # no trade connection yet
    assert pb.on_connect(500.0, "trade") == []
    assert pb.next_market_at() == pytest.approx(500.0)
    assert [r.message["n"] for r in pb.due_market(500.0)] == [1]
    assert pb.next_market_at() == pytest.approx(500.5)  # (1010 - 10) ms / 2
    assert pb.due_market(500.4) == []
    out = pb.due_market(501.0)
    assert [r.message["n"] for r in out] == [2, 3] and [r.target for r in out] == ["trade", "trade"]
    assert pb.next_market_at() is None


def test_due_market_in_bounded_batches():
    recs = [rec(0, "trade-1", "local", "CONNECT", {})]
    recs += [rec(i, "trade-1", "in", "AGGREGATED_ORDERBOOK_UPDATE", {"n": i}) for i in range(10)]
    pb = Playback(recs, speed=1e9)
    pb.on_connect(0.0, "trade")
    batches = []
    while (batch := pb.due_market(1.0, limit=4)):
        batches.append([r.message["n"] for r in batch])
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
