"""The fake speaks VALR exactly: every message kind against a fixture written from VALR's
documented example (tests/fixtures/valr/, see tests/valr_shapes.py and docs/valr-fidelity.md).

One test per fixture compares what the codec builds, from a small deterministic exchange session,
with the fixture: the exact key set (up to the fixture's listed allowances) and every value's JSON
type, recursively. A field added or lost fails it. Three more tests compare what the fake sends
over real sockets (REST, /ws/account, /ws/trade) with the same fixtures.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections import defaultdict
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from valr_shapes import all_names, differences, load, nonempty_lists

from replay import codec
from replay.exchange import Exchange
from replay.exchange.events import AccountTrade
from replay.exchange.model import (
    CancelRequest,
    LimitRequest,
    MarketRequest,
    ModifyRequest,
    OrderType,
    PairSpec,
    Side,
    StopLimitRequest,
)

from conftest import TAKER_KEY, TAKER_SECRET, make_config, recv, recv_raw

T0 = 1_760_000_000_000
BTCZAR = PairSpec("BTCZAR", "BTC", "ZAR", D("1"), D("0.0001"), D("4"), D("10"), D("10000000"),
                  maker_fee=D("0"), taker_fee=D("0.001"))
BALANCES = {"BTC": D("1"), "ZAR": D("1000000")}
DOCS = Path(__file__).resolve().parents[1] / "docs" / "valr-fidelity.md"


def _valuation(prices: dict[str, D]):
    return lambda currency: ("ZAR", prices.get(currency))


@functools.lru_cache(maxsize=1)
def samples() -> dict[str, list[Any]]:
    """What the codec builds for each fixture, from one exchange session (placements with and
    without a customerOrderId, a partial fill, a modification, a stop-limit order, cancels, a
    failure), plus the replies that need no exchange state."""
    ex = Exchange([BTCZAR], seed=3)
    ex.open_account("bot", BALANCES)
    ex.open_account("mm", BALANCES)
    val = _valuation({"ZAR": D(1), "BTC": D("1500000")})
    out: dict[str, list[Any]] = defaultdict(list)
    events: list = []

    def run(ts: int) -> None:
        events.extend(ex.process_all(ts))

    ask = ex.submit_limit(T0, "bot", LimitRequest("BTCZAR", Side.SELL, D("0.02"), D("1500000"), post_only=True,
                                                   customer_order_id="bot-ask-1"))
    bid = ex.submit_limit(T0, "bot", LimitRequest("BTCZAR", Side.BUY, D("0.01"), D("1400000")))
    run(T0 + 1)
    mkt = ex.submit_market(T0 + 2, "mm", MarketRequest("BTCZAR", Side.BUY, base_amount=D("0.005"),
                                                       customer_order_id="mm-buy-1"))
    run(T0 + 3)
    mod = ex.submit_modify(T0 + 4, "bot", ModifyRequest("BTCZAR", customer_order_id="bot-ask-1",
                                                       new_price=D("1510000")))
    run(T0 + 5)
    stop = ex.submit_stop_limit(T0 + 6, "bot", StopLimitRequest(
        "BTCZAR", Side.SELL, D("0.01"), D("1300000"), D("1350000"), OrderType.STOP_LOSS_LIMIT,
        customer_order_id="bot-stop-1"))
    run(T0 + 7)
    # the state with both sides of the book and open orders of every kind
    book = ex.book("BTCZAR")
    out["rest/GET_public_orderbook"].append(codec.orderbook_json(book))
    out["trade/AGGREGATED_ORDERBOOK_UPDATE"].append(codec.book_update_message(book))
    out["rest/GET_orders_open"].append([codec.open_order_json(o) for o in ex.open_orders("bot")])
    bids, asks = ex.book_orders("BTCZAR")
    out["trade/FULL_ORDERBOOK_SNAPSHOT"].append(codec.full_book_message(
        "FULL_ORDERBOOK_SNAPSHOT", "BTCZAR", book.last_change_ms, asks, bids, 41, codec.full_book_checksum(bids, asks)))
    removed = [(asks[0][0], [(asks[0][1][0][0], D(0))])]
    out["trade/FULL_ORDERBOOK_UPDATE"].append(codec.full_book_message(
        "FULL_ORDERBOOK_UPDATE", "BTCZAR", book.last_change_ms, removed, [], 42, codec.full_book_checksum(bids, [])))
    lbids, lasks = ex.book_levels("BTCZAR")
    out["trade/OB_L1_SNAPSHOT"].append(codec.l1_book_message(
        "OB_L1_SNAPSHOT", "BTCZAR", book.last_change_ms, lasks, lbids, 9, codec.l1_book_checksum(lbids, lasks)))
    out["trade/OB_L1_DIFF"].append(codec.l1_book_message(
        "OB_L1_DIFF", "BTCZAR", book.last_change_ms, [(lasks[0][0], D(0))], [], 10, codec.l1_book_checksum(lbids, [])))

    ex.submit_cancel(T0 + 8, "bot", CancelRequest("BTCZAR", customer_order_id="bot-ask-1"))
    ex.submit_cancel(T0 + 8, "bot", CancelRequest("BTCZAR", order_id="no-such-order"))
    ex.submit_modify(T0 + 8, "bot", ModifyRequest("BTCZAR", customer_order_id="bot-ask-1", new_price=D("1520000")))
    ex.submit_limit(T0 + 9, "bot", LimitRequest("BTCZAR", Side.BUY, D("3"), D("1400000")))  # insufficient balance
    run(T0 + 10)

    for ev in events:
        for msg in codec.account_messages(ev, BTCZAR, val):
            out[f"account/{msg['type']}"].append(msg)
    fills = [e for e in events if isinstance(e, AccountTrade)]
    orders = [o for acct in ("bot", "mm") for o in ex.order_history(acct, 0, 100)]

    # REST
    out["rest/GET_public_time"].append(codec.time_json(T0))
    out["rest/GET_public_status"].append(codec.status_json())
    out["rest/GET_public_pairs"].append([codec.pair_json(BTCZAR)])
    out["rest/GET_public_currencies"].append([codec.public_currency_json(c, 8) for c in ("BTC", "ZAR", "NEWCOIN")])
    out["rest/GET_public_marketsummary"].append(codec.market_summary_json(ex.market_summary("BTCZAR")))
    out["rest/GET_public_trades"].append([codec.public_trade_json(t) for t in ex.recent_trades("BTCZAR")])
    out["rest/GET_account_balances"].append([codec.balance_json(b, valuation=val) for b in ex.balances("bot")])
    out["rest/GET_account_fees_trade"].append([codec.fee_json(BTCZAR)])
    out["rest/GET_account_tradehistory"].append([codec.account_trade_json(e) for e in fills])
    out["rest/GET_account_transactionhistory"].append([codec.account_history_rest_json(e, BTCZAR) for e in fills])
    out["rest/GET_order_status"].extend(codec.order_status_json(o) for o in orders)
    out["rest/GET_orders_history"].append([codec.history_json(o, BTCZAR) for o in orders])
    out["rest/GET_orders_history_summary"].extend(codec.history_json(o, BTCZAR) for o in orders)
    out["rest/GET_orders_history_detail"].extend(codec.history_detail_json(o) for o in orders)
    out["rest/POST_orders_limit_v1"] += [codec.placed_json(ask.placed_order_id, ask.customer_order_id),
                                         codec.placed_json(bid.placed_order_id, bid.customer_order_id)]
    out["rest/POST_orders_market_v1"].append(codec.placed_json(mkt.placed_order_id, mkt.customer_order_id))
    out["rest/POST_orders_stop_limit_v1"].append(codec.placed_json(stop.placed_order_id, stop.customer_order_id))
    out["rest/POST_v2_id"] += [codec.id_json(ask.placed_order_id), codec.id_json(mod.request_id)]
    out["rest/POST_v2_failure"].append(codec.v2_failure_json(-12007, "Minimum order size not met"))
    out["rest/DELETE_orders_pair"].append(codec.cancelled_ids_json([ask.placed_order_id, bid.placed_order_id]))
    outcomes = [codec.batch_outcome("PLACE_LIMIT", ask.placed_order_id, "batch-1"),
                codec.batch_outcome("CANCEL_ORDER", bid.placed_order_id),
                codec.batch_outcome("PLACE_LIMIT", error=(-1, "Invalid Order. "))]
    out["rest/POST_batch_orders"].append(codec.batch_response(outcomes, 12))
    out["rest/error"].append(codec.error_json(-1, "Invalid Order. "))

    # account stream: replies
    oid, cid = ask.placed_order_id, ask.customer_order_id
    out["account/AUTHENTICATED"].append(codec.authenticated_message())
    out["account/PLACE_LIMIT_WS_RESPONSE"] += [codec.place_limit_response("m-1", oid, cid),
                                               codec.place_limit_response(None, oid, None)]
    out["account/PLACE_MARKET_WS_RESPONSE"].append(codec.place_market_response("m-2", mkt.placed_order_id, "mm-buy-1"))
    out["account/CANCEL_ORDER_WS_RESPONSE"] += [codec.cancel_response("m-3", oid, cid),
                                                codec.cancel_response(None, oid, None)]
    out["account/MODIFY_ORDER_WS_RESPONSE"].append(codec.modify_response("m-4", mod.request_id or "", oid, cid))
    out["account/CANCEL_ON_DISCONNECT_UPDATE"] += [codec.cancel_on_disconnect_update("m-5", True),
                                                   codec.cancel_on_disconnect_update(None, False)]
    out["account/RATE_LIMIT_EXCEEDED"].append(codec.rate_limit_exceeded("PLACE_LIMIT_ORDER", "m-6"))
    out["account/BATCH_ORDERS_WS_RESPONSE"].append(codec.batch_ws_response("m-7", outcomes, 13))
    out["account/INVALID_PLACE_LIMIT_REQUEST"] += [
        codec.invalid_request(t, "m-8", "quantity: a decimal string is required", {"quantity": "required"})
        for t in codec.REQUEST_TYPES] + [codec.invalid_request("PLACE_LIMIT_ORDER", None, "Invalid JSON payload")]
    out["account/PLACE_LIMIT_WS_RESPONSE.error"] += [
        codec.place_error_response(codec.RESPONSE_TYPES[t], "m-9", "unknown pair", {"pair": "unknown pair"})
        for t in ("PLACE_LIMIT_ORDER", "PLACE_MARKET_ORDER", "CANCEL_LIMIT_ORDER", "MODIFY_ORDER")]
    out["account/PONG"].append(codec.pong_message())
    out["account/SUBSCRIBED"].append(codec.subscribed_message("MARGIN_INFO"))
    out["account/UNSUBSCRIBED"].append(codec.unsubscribed_message("BALANCE_UPDATE"))
    out["account/ERROR"].append(codec.ws_error("Unknown message type: NOPE"))

    # trade stream
    summary = ex.market_summary("BTCZAR")
    out["trade/MARKET_SUMMARY_UPDATE"].append(codec.market_summary_message(summary))
    out["trade/MARK_PRICE_UPDATE"].append(codec.mark_price_message("BTCZAR", codec.mark_price(summary)))
    out["trade/NEW_TRADE"] += [codec.new_trade_message(t) for t in ex.recent_trades("BTCZAR")]
    out["trade/NEW_TRADE_BUCKET"].append(codec.trade_bucket_message(
        "BTCZAR", T0 - T0 % 60_000, 60, D("1500000"), D("1500000"), D("1500000"), D("1500000"), D("0.005")))
    out["trade/PONG"].append(codec.pong_message())
    out["trade/PONG.NO_SUBSCRIPTIONS"].append(codec.pong_message(no_subscriptions=True))
    out["trade/SUBSCRIBED"].append(codec.subscribed_message("AGGREGATED_ORDERBOOK_UPDATE", "BTCZAR"))
    out["trade/UNSUBSCRIBED"].append(codec.unsubscribed_message("AGGREGATED_ORDERBOOK_UPDATE", "BTCZAR"))
    out["trade/ERROR"].append(codec.ws_error(codec.INVALID_JSON_MESSAGE))
    return dict(out)


def _why(name: str, msgs: list[Any]) -> str:
    return f"{name}: " + "; ".join(sorted({d for m in msgs for d in differences(load(name), m)}))


# --- one test per message kind -------------------------------------------------------------------
@pytest.mark.parametrize("name", all_names())
def test_kind_matches_valrs_example(name):
    fixture = load(name)
    assert fixture.get("source") and fixture.get("confidence"), f"{name}: cite the source and the confidence"
    got = samples().get(name, [])
    assert got, f"{name}: the codec session built no such message"
    for msg in got:
        assert differences(fixture, msg) == [], _why(name, [msg])
    # every list the example fills was filled (and so compared) at least once
    assert any(not nonempty_lists(fixture, m) for m in got), f"{name}: {nonempty_lists(fixture, got[0])}"


def test_every_sample_has_a_fixture():
    assert sorted(samples()) == all_names()


def test_the_codecs_message_types_all_have_a_fixture():
    """Every listed message type has a fixture (or is a client command), and every message the
    codec builds has a listed type: codec.MESSAGE_TYPES is the one list, and it stays true."""
    known = codec.MESSAGE_TYPES
    built = {m["type"] for msgs in samples().values() for m in msgs if isinstance(m, dict) and "type" in m}
    assert built <= known, built - known
    commands = set(codec.REQUEST_TYPES)
    kinds = {load(n).get("kind") for n in all_names()}
    kinds |= {k for n in all_names() for k in load(n).get("same_shape", [])}
    assert known - commands - kinds == set()


def test_a_lost_or_added_field_fails():
    fixture = load("account/ORDER_STATUS_UPDATE")
    msg = samples()["account/ORDER_STATUS_UPDATE"][0]
    lost = json.loads(json.dumps(msg))
    del lost["data"]["executedFee"]
    added = json.loads(json.dumps(msg))
    added["data"]["remainingQty"] = "1"
    retyped = json.loads(json.dumps(msg))
    retyped["data"]["executedQuantity"] = 0.1
    assert differences(fixture, lost) == ["data.executedFee: missing"]
    assert differences(fixture, added) == ["data.remainingQty: not in VALR's example"]
    assert differences(fixture, retyped) == ["data.executedQuantity: number where VALR has string"]


def test_fidelity_doc_lists_every_fixture():
    text = DOCS.read_text()
    missing = [n for n in all_names() if f"`{n}`" not in text]
    assert missing == [], f"docs/valr-fidelity.md lacks {missing}"


# --- over real sockets ---------------------------------------------------------------------------
def fixture_for(msg: dict, transport: str) -> str:
    t = msg.get("type", "")
    if "error" in msg and t in codec.RESPONSE_TYPES.values():
        return "account/PLACE_LIMIT_WS_RESPONSE.error"
    if t.startswith("INVALID_"):
        return "account/INVALID_PLACE_LIMIT_REQUEST"
    if t == "AUTHENTICATED":
        return "account/AUTHENTICATED"
    if t == "PONG" and "message" in msg:
        return "trade/PONG.NO_SUBSCRIPTIONS"
    return f"{transport}/{t}"


async def collect(ws: Any, until: set[str], seen: list[dict], timeout: float = 5.0) -> None:
    """Read frames into ``seen`` until every type in ``until`` has come."""
    async def loop() -> None:
        while not until <= {m.get("type") for m in seen}:
            seen.append(json.loads(await ws.recv()))
    try:
        await asyncio.wait_for(loop(), timeout)
    except TimeoutError:
        pytest.fail(f"never came: {sorted(until - {m.get('type') for m in seen})}; came: {seen}")


def assert_all_match(seen: list[dict], transport: str) -> None:
    bad = [f"{fixture_for(m, transport)}: {differences(load(fixture_for(m, transport)), m)}" for m in seen
           if differences(load(fixture_for(m, transport)), m)]
    assert bad == []


ASK = {"side": "SELL", "quantity": "0.02", "price": "1500000", "pair": "BTCZAR"}


async def test_account_stream_over_a_socket(maker, client_factory, fake_server):
    taker = client_factory(fake_server, TAKER_KEY, TAKER_SECRET)
    watcher = await maker.ws(max_queue=None)
    seen: list[dict] = []
    await collect(watcher, {"OPEN_ORDERS_UPDATE"}, seen)
    # the connect-time snapshot: AUTHENTICATED, one BALANCE_UPDATE per asset held, OPEN_ORDERS_UPDATE
    assert [m["type"] for m in seen] == ["AUTHENTICATED", "BALANCE_UPDATE", "BALANCE_UPDATE", "OPEN_ORDERS_UPDATE"]
    assert sorted(m["data"]["currency"]["shortName"] for m in seen[1:3]) == ["BTC", "ZAR"]
    placed = await maker.call("POST", "/v1/orders/limit", dict(ASK, customerOrderId="ask-1", postOnly=True))
    assert placed.status == 202 and placed.body == {"id": placed.body["id"], "customerOrderId": "ask-1"}
    await collect(watcher, {"ORDER_STATUS_UPDATE", "ORDER_PROCESSED"}, seen)
    second = await maker.ws(max_queue=None)
    snapshot: list[dict] = []
    await collect(second, {"OPEN_ORDERS_UPDATE"}, snapshot)
    assert [o["customerOrderId"] for o in snapshot[-1]["data"]] == ["ask-1"]
    await taker.call("POST", "/v1/orders/market", {"side": "BUY", "baseAmount": "0.005", "pair": "BTCZAR"})
    cmds = [
        {"type": "MODIFY_ORDER", "clientMsgId": "mod", "payload": {"customerOrderId": "ask-1", "pair": "BTCZAR",
                                                                   "newPrice": "1510000",
                                                                   "modifyMatchStrategy": "RETAIN_ORIGINAL"}},
        {"type": "CANCEL_LIMIT_ORDER", "clientMsgId": "cx",
         "payload": {"orderId": placed.body["id"], "pair": "BTCZAR"}},
        {"type": "CANCEL_LIMIT_ORDER", "clientMsgId": "cx2", "payload": {"orderId": "no-such-order", "pair": "BTCZAR"}},
        {"type": "PLACE_LIMIT_ORDER", "clientMsgId": "pl", "payload": dict(ASK, price="1600000")},
        {"type": "PLACE_LIMIT_ORDER", "clientMsgId": "bad", "payload": dict(ASK, quantity="lots")},
        {"type": "PLACE_MARKET_ORDER", "clientMsgId": "big", "payload": {"side": "SELL", "baseAmount": "3",
                                                                         "pair": "BTCZAR"}},
        {"type": "BATCH_ORDERS", "clientMsgId": "bt", "payload": {"requests": [
            {"type": "PLACE_LIMIT", "data": dict(ASK, price="1700000", customerOrderId="b-1")},
            {"type": "CANCEL_ORDER", "data": {"orderId": "no-such-order", "pair": "BTCZAR"}}]}},
        {"type": "CANCEL_ON_DISCONNECT", "clientMsgId": "cod", "payload": {"cancelOnDisconnect": False}},
        {"type": "UNSUBSCRIBE", "clientMsgId": "un", "requests": [{"event": "BALANCE_UPDATE"}]},
        {"type": "PING", "clientMsgId": "p"},
    ]
    for cmd in cmds:
        await second.send(json.dumps(cmd))
    await second.send("{not json")
    await collect(second, {"MODIFY_ORDER_WS_RESPONSE", "MODIFY_ORDER_OUTCOME", "CANCEL_ORDER_WS_RESPONSE",
                           "FAILED_CANCEL_ORDER", "PLACE_LIMIT_WS_RESPONSE", "INVALID_PLACE_LIMIT_REQUEST",
                           "PLACE_MARKET_WS_RESPONSE", "FAILED_ORDER", "BATCH_ORDERS_WS_RESPONSE",
                           "CANCEL_ON_DISCONNECT_UPDATE", "UNSUBSCRIBED", "PONG", "ERROR", "NEW_ACCOUNT_TRADE",
                           "NEW_ACCOUNT_HISTORY_RECORD"}, snapshot)
    await collect(watcher, {"NEW_ACCOUNT_TRADE", "MODIFY_ORDER_OUTCOME"}, seen)
    assert_all_match(seen, "account")
    assert_all_match(snapshot, "account")


async def test_trade_stream_over_a_socket(maker, taker):
    ws = await maker.ws("/ws/trade", signed=False, max_queue=None)
    seen: list[dict] = []
    await ws.send(json.dumps({"type": "PING"}))
    await collect(ws, {"PONG"}, seen)
    assert seen == [{"type": "PONG", "message": "NO_SUBSCRIPTIONS"}]
    await maker.call("POST", "/v1/orders/limit", ASK)
    await maker.call("POST", "/v1/orders/limit", dict(ASK, side="BUY", price="1400000"))
    events = ["AGGREGATED_ORDERBOOK_UPDATE", "FULL_ORDERBOOK_UPDATE", "OB_L1_DIFF", "MARKET_SUMMARY_UPDATE",
              "NEW_TRADE", "NEW_TRADE_BUCKET", "MARK_PRICE_UPDATE"]
    await ws.send(json.dumps({"type": "SUBSCRIBE", "subscriptions": [{"event": e, "pairs": ["BTCZAR"]}
                                                                      for e in events]}))
    await collect(ws, {"SUBSCRIBED", "AGGREGATED_ORDERBOOK_UPDATE", "FULL_ORDERBOOK_SNAPSHOT", "OB_L1_SNAPSHOT",
                       "MARKET_SUMMARY_UPDATE", "MARK_PRICE_UPDATE"}, seen)
    await taker.call("POST", "/v1/orders/market", {"side": "BUY", "baseAmount": "0.005", "pair": "BTCZAR"})
    await collect(ws, {"NEW_TRADE", "NEW_TRADE_BUCKET", "FULL_ORDERBOOK_UPDATE", "OB_L1_DIFF"}, seen)
    await ws.send("{not json")
    await ws.send(json.dumps({"type": "SUBSCRIBE", "subscriptions": [{"event": "NEW_TRADE", "pairs": []}]}))
    await collect(ws, {"ERROR", "UNSUBSCRIBED"}, seen)
    assert_all_match(seen, "trade")


REST_CALLS = [
    ("GET", "/v1/public/time", None, "rest/GET_public_time"),
    ("GET", "/v1/public/status", None, "rest/GET_public_status"),
    ("GET", "/v1/public/pairs", None, "rest/GET_public_pairs"),
    ("GET", "/v1/public/currencies", None, "rest/GET_public_currencies"),
    ("GET", "/v1/public/BTCZAR/orderbook", None, "rest/GET_public_orderbook"),
    ("GET", "/v1/marketdata/BTCZAR/orderbook", None, "rest/GET_public_orderbook"),
    ("GET", "/v1/public/BTCZAR/marketsummary", None, "rest/GET_public_marketsummary"),
    ("GET", "/v1/public/BTCZAR/trades", None, "rest/GET_public_trades"),
    ("GET", "/v1/account/balances", None, "rest/GET_account_balances"),
    ("GET", "/v1/account/fees/trade", None, "rest/GET_account_fees_trade"),
    ("GET", "/v1/account/BTCZAR/tradehistory", None, "rest/GET_account_tradehistory"),
    ("GET", "/v1/account/tradehistory", None, "rest/GET_account_tradehistory"),
    ("GET", "/v1/account/transactionhistory", None, "rest/GET_account_transactionhistory"),
    ("GET", "/v1/orders/open", None, "rest/GET_orders_open"),
    ("GET", "/v1/orders/BTCZAR/orderid/{id}", None, "rest/GET_order_status"),
    ("GET", "/v1/orders/BTCZAR/customerorderid/ask-1", None, "rest/GET_order_status"),
    ("GET", "/v1/orders/history", None, "rest/GET_orders_history"),
    ("GET", "/v1/orders/history/summary/orderid/{id}", None, "rest/GET_orders_history_summary"),
    ("GET", "/v1/orders/history/summary/customerorderid/ask-1", None, "rest/GET_orders_history_summary"),
    ("GET", "/v1/orders/history/detail/orderid/{id}", None, "rest/GET_orders_history_detail"),
    ("GET", "/v1/orders/history/detail/customerorderid/ask-1", None, "rest/GET_orders_history_detail"),
    ("POST", "/v1/orders/stop/limit", {"side": "SELL", "quantity": "0.01", "price": "1300000", "stopPrice": "1350000",
                                       "pair": "BTCZAR", "type": "STOP_LOSS_LIMIT", "customerOrderId": "stop-1"},
     "rest/POST_orders_stop_limit_v1"),
    ("POST", "/v2/orders/stop/limit", {"side": "SELL", "quantity": "0.01", "price": "1300000", "stopPrice": "1340000",
                                       "pair": "BTCZAR", "type": "STOP_LOSS_LIMIT"}, "rest/POST_v2_id"),
    ("POST", "/v2/orders/limit", dict(ASK, price="1800000"), "rest/POST_v2_id"),
    ("POST", "/v2/orders/limit", dict(ASK, pair="NOPE"), "rest/POST_v2_failure"),
    ("PUT", "/v1/orders/modify", {"customerOrderId": "ask-1", "pair": "BTCZAR", "newPrice": "1510000",
                                "modifyMatchStrategy": "RETAIN_ORIGINAL"},
     "rest/POST_v2_id"),
    ("PUT", "/v2/orders/modify", {"customerOrderId": "ask-1", "pair": "BTCZAR", "newPrice": "1520000",
                                "modifyMatchStrategy": "RETAIN_ORIGINAL"},
     "rest/POST_v2_id"),
    ("POST", "/v1/batch/orders", {"requests": [{"type": "PLACE_LIMIT", "data": dict(ASK, price="1900000")},
                                               {"type": "CANCEL_ORDER", "data": {"orderId": "x", "pair": "BTCZAR"}}]},
     "rest/POST_batch_orders"),
    ("GET", "/v1/orders/BTCZAR/orderid/no-such-order", None, "rest/error"),
    ("DELETE", "/v2/orders/order", {"customerOrderId": "ask-1", "pair": "BTCZAR"}, "rest/POST_v2_id"),
    ("DELETE", "/v1/orders/BTCZAR", None, "rest/DELETE_orders_pair"),
]


async def test_rest_over_a_socket(maker, taker):
    ws = await maker.ws(max_queue=None)  # to see when the fill below is processed: its trade reaches the account stream
    placed = await maker.call("POST", "/v1/orders/limit", dict(ASK, customerOrderId="ask-1"))
    assert differences(load("rest/POST_orders_limit_v1"), placed.body) == []
    await maker.call("POST", "/v1/orders/limit", dict(ASK, side="BUY", price="1400000"))
    plain = await maker.call("POST", "/v1/orders/limit", dict(ASK, price="1600000"))
    assert plain.body == {"id": plain.body["id"]}
    bought = await taker.call("POST", "/v1/orders/market", {"side": "BUY", "baseAmount": "0.005", "pair": "BTCZAR",
                                                            "customerOrderId": "mkt-1"})
    assert differences(load("rest/POST_orders_market_v1"), bought.body) == []
    await collect(ws, {"NEW_ACCOUNT_TRADE"}, [])
    gone = await maker.call("POST", "/v1/orders/limit", dict(ASK, price="1650000"))  # for the history
    await maker.call("DELETE", "/v1/orders/order", {"orderId": gone.body["id"], "pair": "BTCZAR"})
    await recv(ws, lambda m: m["type"] == "ORDER_STATUS_UPDATE" and m["data"]["orderStatusType"] == "Cancelled")
    oid = placed.body["id"]
    bad = []
    for method, path, body, name in REST_CALLS:
        reply = await maker.call(method, path.format(id=oid), body)
        assert reply.status < 500, (path, reply.status)
        diffs = differences(load(name), reply.body)
        if diffs:
            bad.append(f"{method} {path} vs {name}: {diffs}")
        for empty in nonempty_lists(load(name), reply.body):
            bad.append(f"{method} {path}: nothing to compare at {empty}")
    assert bad == []


async def test_rate_limit_exceeded_over_a_socket(make_server, client_factory):
    """Past a per-connection limit (ServerParams.ws_rate_limits_per_second) a write command is
    refused with RATE_LIMIT_EXCEEDED, VALR's shape, naming the command's type."""
    server = await make_server(make_config(server={"ws_rate_limits_per_second": {"place": 1}}))
    ws = await client_factory(server).ws(max_queue=None)
    await collect(ws, {"OPEN_ORDERS_UPDATE"}, [])
    for i in range(3):  # three within at most two seconds: at least one is past the limit
        await ws.send(json.dumps({"type": "PLACE_LIMIT_ORDER", "clientMsgId": f"p{i}", "payload": ASK}))
    seen: list[dict] = []
    await collect(ws, {"RATE_LIMIT_EXCEEDED"}, seen)
    refused = [m for m in seen if m["type"] == "RATE_LIMIT_EXCEEDED"]
    assert refused[0]["data"] == {"requestType": "PLACE_LIMIT_ORDER"} and refused[0]["clientMsgId"] in {"p1", "p2"}
    assert_all_match(seen, "account")
    while len([m for m in seen if m["type"] in ("PLACE_LIMIT_WS_RESPONSE", "RATE_LIMIT_EXCEEDED")]) < 3:
        seen.append(await recv_raw(ws))
    accepted = [m for m in seen if m["type"] == "PLACE_LIMIT_WS_RESPONSE"]
    assert 1 <= len(accepted) <= 2
