"""Routes and streams a market maker uses, over real sockets: the connect-time snapshot, order
modification (REST v1/v2, MODIFY_ORDER), stop-limit orders, BATCH_ORDERS, UNSUBSCRIBE, the
account trade history and fees, and the sequenced book feeds (FULL_ORDERBOOK_UPDATE, OB_L1_DIFF)
with their checksums, and a schedule perturbation that drops one diff so a gap can be tested."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from replay import codec
from replay.schedule import DeliverySchedule

from conftest import TAKER_KEY, TAKER_SECRET, make_config, recv, recv_raw

ASK = {"side": "SELL", "quantity": "0.02", "price": "1500000", "pair": "BTCZAR"}
BID = {"side": "BUY", "quantity": "0.01", "price": "1400000", "pair": "BTCZAR"}


def status_is(status: str, cid: str | None = None):
    return lambda m: (m["type"] == "ORDER_STATUS_UPDATE" and m["data"]["orderStatusType"] == status
                      and (cid is None or m["data"].get("customerOrderId") == cid))


async def connected(client: Any, **kwargs: Any):
    """An account stream past its connect-time snapshot."""
    ws = await client.ws(max_queue=None, **kwargs)
    await recv(ws, "OPEN_ORDERS_UPDATE")
    return ws


# --- the connect-time snapshot -------------------------------------------------------------------
async def test_connect_snapshot_lists_balances_then_open_orders(maker, fake_server):
    watcher = await connected(maker)
    placed = (await maker.call("POST", "/v1/orders/limit", dict(ASK, customerOrderId="a-1"))).body
    await recv(watcher, status_is("Placed"))
    ws = await maker.ws(max_queue=None)
    frames = [await recv_raw(ws) for _ in range(4)]
    assert [f["type"] for f in frames] == ["AUTHENTICATED", "BALANCE_UPDATE", "BALANCE_UPDATE", "OPEN_ORDERS_UPDATE"]
    balances = {f["data"]["currency"]["shortName"]: f["data"] for f in frames[1:3]}
    assert balances["BTC"]["reserved"] == "0.02" and balances["ZAR"]["total"] == "1000000"
    assert [(o["orderId"], o["customerOrderId"]) for o in frames[3]["data"]] == [(placed["id"], "a-1")]
    # the snapshot goes through the schedule like any message: it is in the trace
    sent = [r["type"] for r in fake_server.trace.records if r["conn"] == "account-2" and r.get("dir") == "in"]
    assert sent[:4] == ["AUTHENTICATED", "BALANCE_UPDATE", "BALANCE_UPDATE", "OPEN_ORDERS_UPDATE"]


async def test_connect_snapshot_is_delayed_by_the_latency_model_and_kept_in_order(make_server, client_factory):
    schedule = DeliverySchedule.from_spec({"BALANCE_UPDATE": "30ms", "OPEN_ORDERS_UPDATE": "5ms"}, [], seed=1)
    server = await make_server(make_config(), schedule=schedule)
    ws = await client_factory(server).ws(max_queue=None)
    kinds = [(await recv_raw(ws))["type"] for _ in range(4)]
    # OPEN_ORDERS_UPDATE's own latency is shorter, yet it comes after the BALANCE_UPDATEs VALR
    # writes before it
    assert kinds == ["AUTHENTICATED", "BALANCE_UPDATE", "BALANCE_UPDATE", "OPEN_ORDERS_UPDATE"]
    times = {r["type"]: r["t"] for r in server.trace.records if r["conn"] == "account-1"}
    # ns: BALANCE_UPDATE's 30 ms, which run from when the snapshot was scheduled. On this real-clock loop
    # that is before AUTHENTICATED went out and was stamped (by up to a millisecond on a loaded machine),
    # and after the connection's CONNECT record: measure from that.
    assert times["OPEN_ORDERS_UPDATE"] - times["CONNECT"] >= 30_000_000


async def test_connect_snapshot_can_be_dropped_by_a_perturbation(make_server, client_factory):
    schedule = DeliverySchedule.from_spec({}, [{"match": {"type": "OPEN_ORDERS_UPDATE", "nth": 1}, "drop": True}],
                                          seed=1)
    server = await make_server(make_config(), schedule=schedule)
    ws = await client_factory(server).ws(max_queue=None)
    assert [(await recv_raw(ws))["type"] for _ in range(3)] == ["AUTHENTICATED", "BALANCE_UPDATE", "BALANCE_UPDATE"]
    await ws.send(json.dumps({"type": "PING"}))
    assert (await recv_raw(ws))["type"] == "PONG"  # no OPEN_ORDERS_UPDATE came in between


# --- modification --------------------------------------------------------------------------------
async def test_modify_over_rest_v1_and_v2(maker):
    ws = await connected(maker)
    oid = (await maker.call("POST", "/v1/orders/limit", dict(ASK, customerOrderId="m-1"))).body["id"]
    await recv(ws, status_is("Placed"))
    r = await maker.call("PUT", "/v1/orders/modify", {"orderId": oid, "pair": "BTCZAR", "newPrice": "1510000",
                                                      "modifyMatchStrategy": "RETAIN_ORIGINAL"})
    assert r.status == 202 and set(r.body) == {"id"}
    modified = await recv(ws, status_is("Order Modified"))
    assert modified["data"]["originalPrice"] == "1510000" and modified["data"]["orderId"] == oid
    outcome = await recv(ws, "MODIFY_ORDER_OUTCOME")
    assert outcome["data"] == {"success": True, "orderId": oid, "customerOrderId": "m-1",
                               "modifyRequestId": r.body["id"]}
    r2 = await maker.call("PUT", "/v2/orders/modify", {"customerOrderId": "m-1", "pair": "BTCZAR",
                                                       "newRemainingQuantity": "0.01",
                                                       "modifyMatchStrategy": "RETAIN_ORIGINAL"})
    assert r2.status == 201
    outcome = await recv(ws, "MODIFY_ORDER_OUTCOME")
    assert outcome["data"]["modifyRequestId"] == r2.body["id"] and outcome["data"]["success"] is True
    (order,) = (await maker.call("GET", "/v1/orders/open")).body
    assert (order["price"], order["remainingQuantity"]) == ("1510000", "0.01")
    # nothing to modify: the outcome fails, with a reason
    await maker.call("PUT", "/v1/orders/modify", {"orderId": oid, "pair": "BTCZAR", "newPrice": "1510000",
                                                  "modifyMatchStrategy": "RETAIN_ORIGINAL"})
    failed = await recv(ws, "MODIFY_ORDER_OUTCOME")
    assert failed["data"]["success"] is False and failed["data"]["failureReason"]


async def test_modify_over_the_account_stream(maker):
    ws = await connected(maker)
    await ws.send(json.dumps({"type": "PLACE_LIMIT_ORDER", "clientMsgId": "p",
                              "payload": dict(ASK, customerOrderId="w-1")}))
    oid = (await recv(ws, "PLACE_LIMIT_WS_RESPONSE"))["data"]["orderId"]
    await recv(ws, status_is("Placed"))
    await ws.send(json.dumps({"type": "MODIFY_ORDER", "clientMsgId": "mod", "payload": {
        "orderId": oid, "pair": "BTCZAR", "newRemainingQuantity": "0.005", "newPrice": "1490000",
        "modifyMatchStrategy": "RETAIN_ORIGINAL"}}))
    reply = await recv(ws, "MODIFY_ORDER_WS_RESPONSE")
    assert reply["clientMsgId"] == "mod"
    assert reply["data"] == {"modifyRequestId": reply["data"]["modifyRequestId"], "requested": True,
                             "orderId": oid, "customerOrderId": "w-1"}
    outcome = await recv(ws, "MODIFY_ORDER_OUTCOME")
    assert outcome["data"]["modifyRequestId"] == reply["data"]["modifyRequestId"]
    snapshot = await recv(ws, "OPEN_ORDERS_UPDATE")
    assert [(o["price"], o["quantity"]) for o in snapshot["data"]] == [("1490000", "0.005")]


# --- stop-limit orders ---------------------------------------------------------------------------
async def test_stop_limit_order_waits_active_and_triggers(maker, client_factory, fake_server):
    taker = client_factory(fake_server, TAKER_KEY, TAKER_SECRET)
    ws = await connected(maker)
    await taker.call("POST", "/v1/orders/limit", BID)
    r = await maker.call("POST", "/v1/orders/stop/limit", {
        "pair": "BTCZAR", "side": "SELL", "quantity": "0.005", "price": "1390000", "stopPrice": "1450000",
        "type": "STOP_LOSS_LIMIT", "customerOrderId": "s-1"})
    assert r.status == 202 and r.body == {"id": r.body["id"], "customerOrderId": "s-1"}
    active = await recv(ws, status_is("Active", "s-1"))
    assert active["data"]["orderType"] == "stop-loss-limit" and active["data"]["stopPrice"] == "1450000"
    status = (await maker.call("GET", f"/v1/orders/BTCZAR/orderid/{r.body['id']}")).body
    assert status["orderStatusType"] == "Active"
    assert (await maker.call("GET", "/v1/public/BTCZAR/orderbook")).body["Asks"] == []  # off the book
    # a trade at 1400000 reaches the stop: the order becomes a limit order and sells into the bid
    await maker.call("POST", "/v1/orders/market", {"side": "SELL", "baseAmount": "0.001", "pair": "BTCZAR"})
    await recv(ws, status_is("Placed", "s-1"))
    await recv(ws, lambda m: m["type"] == "ORDER_STATUS_UPDATE" and m["data"].get("customerOrderId") == "s-1"
               and m["data"]["orderStatusType"] == "Filled")
    # v2: 201 {"id"}; a stop the last price already passed fails at once
    r2 = await maker.call("POST", "/v2/orders/stop/limit", {
        "pair": "BTCZAR", "side": "SELL", "quantity": "0.001", "price": "1390000", "stopPrice": "1450000",
        "type": "STOP_LOSS_LIMIT", "customerOrderId": "s-2"})
    assert r2.status == 201 and set(r2.body) == {"id"}
    failed = await recv(ws, status_is("Failed", "s-2"))
    assert failed["data"]["failedReason"] == "Stop order failed as it would have been triggered immediately"


# --- batches, unsubscribing ----------------------------------------------------------------------
async def test_batch_orders_over_the_account_stream(maker):
    ws = await connected(maker)
    await ws.send(json.dumps({"type": "BATCH_ORDERS", "clientMsgId": "b", "payload": {"requests": [
        {"type": "PLACE_LIMIT", "data": dict(ASK, customerOrderId="b-1")},
        {"type": "PLACE_LIMIT", "data": dict(ASK, price="oops")},
        {"type": "CANCEL_ORDER", "data": {"customerOrderId": "b-1", "pair": "BTCZAR"}}]}}))
    reply = await recv(ws, "BATCH_ORDERS_WS_RESPONSE")
    assert reply["clientMsgId"] == "b" and isinstance(reply["data"]["batchId"], int)
    first, second, third = reply["data"]["outcomes"]
    assert first["accepted"] is True and first["customerOrderId"] == "b-1" and first["requestType"] == "PLACE_LIMIT"
    assert second["accepted"] is False and set(second["error"]) == {"code", "message"}
    assert third["accepted"] is True and third["orderId"] == first["orderId"]
    await recv(ws, status_is("Cancelled", "b-1"))


async def test_unsubscribe_from_balance_updates(maker):
    ws = await connected(maker)
    await ws.send(json.dumps({"type": "UNSUBSCRIBE", "clientMsgId": "u", "requests": [{"event": "BALANCE_UPDATE"}]}))
    assert await recv_raw(ws) == {"type": "UNSUBSCRIBED", "message": "BALANCE_UPDATE", "clientMsgId": "u"}
    await maker.call("POST", "/v1/orders/limit", ASK)
    seen = []
    while not seen or seen[-1]["type"] != "OPEN_ORDERS_UPDATE":
        seen.append(await recv_raw(ws))
    assert "BALANCE_UPDATE" not in [m["type"] for m in seen]
    await ws.send(json.dumps({"type": "SUBSCRIBE", "subscriptions": [{"event": "BALANCE_UPDATE"}]}))
    assert (await recv_raw(ws))["type"] == "SUBSCRIBED"
    await maker.call("POST", "/v1/orders/limit", dict(ASK, price="1600000"))
    await recv(ws, "BALANCE_UPDATE")


# --- account trade history and fees --------------------------------------------------------------
async def test_trade_history_for_every_pair_and_fees(make_server, client_factory):
    config = make_config()
    for account in config.accounts:
        account.balances["ETH"] = Decimal("1")
    server = await make_server(config)
    maker, taker = client_factory(server), client_factory(server, TAKER_KEY, TAKER_SECRET)
    ws = await connected(maker)
    await maker.call("POST", "/v1/orders/limit", ASK)
    await maker.call("POST", "/v1/orders/limit", dict(ASK, pair="ETHZAR", price="60000"))
    await taker.call("POST", "/v1/orders/market", {"side": "BUY", "baseAmount": "0.01", "pair": "BTCZAR"})
    await taker.call("POST", "/v1/orders/market", {"side": "BUY", "baseAmount": "0.01", "pair": "ETHZAR"})
    await recv(ws, lambda m: m["type"] == "NEW_ACCOUNT_TRADE" and m["data"]["currencyPair"] == "ETHZAR")
    every = (await maker.call("GET", "/v1/account/tradehistory")).body
    assert sorted(t["currencyPair"] for t in every) == ["BTCZAR", "ETHZAR"]
    one = (await maker.call("GET", "/v1/account/BTCZAR/tradehistory")).body
    assert [t["currencyPair"] for t in one] == ["BTCZAR"]
    fees = (await maker.call("GET", "/v1/account/fees/trade")).body
    assert sorted(f["currencyPair"] for f in fees) == ["BTCZAR", "ETHZAR"]
    assert all(isinstance(f["makerPercentage"], str) for f in fees)


# --- sequenced book feeds ------------------------------------------------------------------------
class FullBook:
    """A client's non-aggregated book, kept from FULL_ORDERBOOK_SNAPSHOT and _UPDATE as VALR's
    rules say."""

    def __init__(self, snapshot: dict):
        d = snapshot["data"]
        self.sequence = d["SequenceNumber"]
        self.sides = {side: {lv["Price"]: {o["orderId"]: o["quantity"] for o in lv["Orders"]} for lv in d[side]}
                      for side in ("Asks", "Bids")}

    def apply(self, update: dict) -> None:
        d = update["data"]
        n = 0
        for side in ("Asks", "Bids"):
            for lv in d[side]:
                level = self.sides[side].setdefault(lv["Price"], {})
                for o in lv["Orders"]:
                    n += 1
                    for other in self.sides[side].values():  # an order moved to another price
                        other.pop(o["orderId"], None)
                    if o["quantity"] != "0":
                        level[o["orderId"]] = o["quantity"]
                if not level:
                    del self.sides[side][lv["Price"]]
        self.sequence += n

    def checksum(self) -> int:
        def side(name: str, best_first: bool):
            levels = sorted(self.sides[name].items(), key=lambda kv: Decimal(kv[0]), reverse=best_first)
            return [(Decimal(p), [(oid, Decimal(q)) for oid, q in orders.items()]) for p, orders in levels]
        return codec.full_book_checksum(side("Bids", True), side("Asks", False))


async def test_full_orderbook_sequence_and_checksum(maker, taker):
    ws = await maker.ws("/ws/trade", signed=False, max_queue=None)
    await maker.call("POST", "/v1/orders/limit", ASK)
    await maker.call("POST", "/v1/orders/limit", BID)
    await ws.send(json.dumps({"type": "SUBSCRIBE", "subscriptions": [{"event": "FULL_ORDERBOOK_UPDATE",
                                                                      "pairs": ["BTCZAR"]}]}))
    assert (await recv_raw(ws)) == {"type": "SUBSCRIBED", "message": "FULL_ORDERBOOK_UPDATE:BTCZAR"}
    snapshot = await recv_raw(ws)
    assert snapshot["type"] == "FULL_ORDERBOOK_SNAPSHOT"
    book = FullBook(snapshot)
    assert book.checksum() == snapshot["data"]["Checksum"]
    await maker.call("POST", "/v1/orders/limit", dict(ASK, price="1510000"))
    await taker.call("POST", "/v1/orders/market", {"side": "BUY", "baseAmount": "0.005", "pair": "BTCZAR"})
    await maker.call("DELETE", "/v1/orders/BTCZAR")
    for _ in range(3):
        update = await recv(ws, "FULL_ORDERBOOK_UPDATE")
        book.apply(update)
        assert update["data"]["SequenceNumber"] == book.sequence
        assert book.checksum() == update["data"]["Checksum"]
    assert book.sides == {"Asks": {}, "Bids": {}}


async def test_l1_diff_sequence_and_checksum(maker, taker):
    ws = await maker.ws("/ws/trade", signed=False, max_queue=None)
    await maker.call("POST", "/v1/orders/limit", ASK)
    await ws.send(json.dumps({"type": "SUBSCRIBE", "subscriptions": [{"event": "OB_L1_DIFF", "pairs": ["BTCZAR"]}]}))
    await recv(ws, "SUBSCRIBED")
    snapshot = await recv_raw(ws)
    assert snapshot["type"] == "OB_L1_SNAPSHOT" and snapshot["ps"] == "BTCZAR"
    levels = {"a": dict(snapshot["d"]["a"]), "b": dict(snapshot["d"]["b"])}
    sq = snapshot["d"]["sq"]

    def checksum() -> int:
        def side(k: str, best_first: bool):
            return sorted(((Decimal(p), Decimal(q)) for p, q in levels[k].items()), reverse=best_first)
        return codec.l1_book_checksum(side("b", True), side("a", False))

    assert checksum() == snapshot["d"]["cs"]
    await maker.call("POST", "/v1/orders/limit", BID)
    await taker.call("POST", "/v1/orders/market", {"side": "BUY", "baseAmount": "0.005", "pair": "BTCZAR"})
    for _ in range(2):
        diff = await recv(ws, "OB_L1_DIFF")
        assert diff["d"]["sq"] == sq + 1
        sq = diff["d"]["sq"]
        for k in ("a", "b"):
            for p, q in diff["d"][k]:
                if q == "0":
                    levels[k].pop(p, None)
                else:
                    levels[k][p] = q
        assert checksum() == diff["d"]["cs"]
    assert levels == {"a": {"1500000": "0.015"}, "b": {"1400000": "0.01"}}


async def test_a_dropped_diff_leaves_a_gap_the_client_can_see(make_server, client_factory):
    """The schedule's ``book-diff`` predicate: drop the first sequenced diff on each feed; the
    next one's sequence number no longer follows."""
    schedule = DeliverySchedule.from_spec({}, [{"name": "gap", "match": {"predicate": "book-diff", "nth": [1, 2]},
                                                "drop": True}], seed=3)
    server = await make_server(make_config(), schedule=schedule)
    maker = client_factory(server)
    ws = await maker.ws("/ws/trade", signed=False, max_queue=None)
    await ws.send(json.dumps({"type": "SUBSCRIBE", "subscriptions": [
        {"event": "FULL_ORDERBOOK_UPDATE", "pairs": ["BTCZAR"]}, {"event": "OB_L1_DIFF", "pairs": ["BTCZAR"]}]}))
    full = await recv(ws, "FULL_ORDERBOOK_SNAPSHOT")
    l1 = await recv(ws, "OB_L1_SNAPSHOT")
    await maker.call("POST", "/v1/orders/limit", ASK)  # first diffs: dropped
    await maker.call("POST", "/v1/orders/limit", BID)  # second diffs: delivered
    full_update = await recv(ws, "FULL_ORDERBOOK_UPDATE")
    l1_diff = await recv(ws, "OB_L1_DIFF")
    assert full_update["data"]["SequenceNumber"] == full["data"]["SequenceNumber"] + 2  # one order missed
    assert l1_diff["d"]["sq"] == l1["d"]["sq"] + 2  # not +1: a gap
    assert [a.name for a in schedule.applied] == ["gap", "gap"]


async def test_mark_price_updates_on_subscribe_and_periodically(make_server, client_factory, taker):
    server = await make_server(make_config(server={"mark_price_interval_s": 0.05}))
    maker = client_factory(server)
    await maker.call("POST", "/v1/orders/limit", ASK)
    await maker.call("POST", "/v1/orders/limit", BID)
    ws = await maker.ws("/ws/trade", signed=False, max_queue=None)
    await ws.send(json.dumps({"type": "SUBSCRIBE", "subscriptions": [{"event": "MARK_PRICE_UPDATE",
                                                                      "pairs": ["BTCZAR"]}]}))
    await recv(ws, "SUBSCRIBED")
    first = await recv_raw(ws)
    assert first == {"type": "MARK_PRICE_UPDATE", "currencyPairSymbol": "BTCZAR", "data": {"price": "1450000"}}
    assert await recv(ws, "MARK_PRICE_UPDATE") == first  # the next tick, unchanged
