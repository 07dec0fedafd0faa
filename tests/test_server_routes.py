"""REST routes Hummingbot-style connectors call: order history by id and customerOrderId,
account transaction history, public currencies and trades, the signed order book, and the
answer to a route the fake does not serve (VALR's error shape, traced)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from replay.config import config_from_dict
from replay.show import format_record

from conftest import MAKER_KEY, MAKER_SECRET, recv

ASK = {"side": "SELL", "quantity": "0.02", "price": "1500000", "pair": "BTCZAR", "postOnly": False}
BUY = {"side": "BUY", "quantity": "0.01", "price": "1500000", "pair": "BTCZAR"}
INVALID_ORDER = {"code": -1, "message": "Invalid Order. "}


async def _placed(ws, oid: str) -> None:
    await recv(ws, lambda m: m["type"] == "ORDER_STATUS_UPDATE" and m["data"]["orderId"] == oid
               and m["data"]["orderStatusType"] == "Placed")


# --- order history by id and by customerOrderId ---------------------------------------------------
async def test_history_routes_by_id_and_customer_id_open_and_finished(maker):
    ws = await maker.ws()
    await recv(ws, "AUTHENTICATED")
    oid = (await maker.call("POST", "/v1/orders/limit", dict(ASK, customerOrderId="hist-1"))).body["id"]
    await _placed(ws, oid)
    routes = {
        "summary id": f"/v1/orders/history/summary/orderid/{oid}",
        "summary cid": "/v1/orders/history/summary/customerorderid/hist-1",
        "detail id": f"/v1/orders/history/detail/orderid/{oid}",
        "detail cid": "/v1/orders/history/detail/customerorderid/hist-1",
    }
    for status in ("Placed", "Cancelled"):
        for name, path in routes.items():
            r = await maker.call("GET", path)
            assert r.status == 200, (name, r.body)
            latest = r.body[0] if name.startswith("detail") else r.body
            assert latest["orderId"] == oid and latest["customerOrderId"] == "hist-1", name
            assert latest["orderStatusType"] == status, name
            if name.startswith("detail"):
                assert {"executedQuantity", "executedPrice", "executedFee"} <= set(latest)
                # newest first: a cancelled limit order also shows the "Placed" record behind it
                assert [d["orderStatusType"] for d in r.body] == (["Placed"] if status == "Placed"
                                                                  else ["Cancelled", "Placed"])
            else:
                assert {"averagePrice", "total", "totalFee", "feeCurrency"} <= set(latest)
        if status == "Placed":
            await maker.call("DELETE", "/v1/orders/order", {"orderId": oid, "pair": "BTCZAR"})
            await recv(ws, lambda m: m["type"] == "ORDER_STATUS_UPDATE"
                       and m["data"]["orderStatusType"] == "Cancelled")


@pytest.mark.parametrize("path", [
    "/v1/orders/history/summary/orderid/00000000-0000-4000-8000-000000000000",
    "/v1/orders/history/summary/customerorderid/never-placed",
    "/v1/orders/history/detail/orderid/00000000-0000-4000-8000-000000000000",
    "/v1/orders/history/detail/customerorderid/never-placed",
])
async def test_history_routes_unknown_order(maker, path):
    r = await maker.call("GET", path)
    assert r.status == 400 and r.body == INVALID_ORDER
    assert (await maker.call("GET", path, signed=False)).status == 403


async def test_history_of_another_account_is_not_found(maker, taker):
    ws = await maker.ws()
    await recv(ws, "AUTHENTICATED")
    oid = (await maker.call("POST", "/v1/orders/limit", dict(ASK, customerOrderId="mine"))).body["id"]
    await _placed(ws, oid)
    r = await taker.call("GET", "/v1/orders/history/detail/customerorderid/mine")
    assert r.status == 400 and r.body == INVALID_ORDER


# --- account transaction history ------------------------------------------------------------------
async def test_transaction_history_lists_fills_newest_first(maker, taker):
    ws = await maker.ws()
    await recv(ws, "AUTHENTICATED")
    assert (await maker.call("GET", "/v1/account/transactionhistory")).body == []
    oid = (await maker.call("POST", "/v1/orders/limit", ASK)).body["id"]
    await _placed(ws, oid)
    streamed = []
    for _ in range(2):
        assert (await taker.call("POST", "/v1/orders/limit", BUY)).status == 202
        streamed.append((await recv(ws, "NEW_ACCOUNT_HISTORY_RECORD"))["data"])

    r = await maker.call("GET", "/v1/account/transactionhistory?skip=0&limit=10")
    assert r.status == 200
    # the records the stream carried, newest first, with the currencies as plain codes (VALR's
    # REST transaction history; the stream's NEW_ACCOUNT_HISTORY_RECORD has currency objects)
    def plain(record):
        return {k: (v["shortName"] if k.endswith("Currency") else v) for k, v in record.items()}

    assert r.body == [plain(x) for x in streamed[::-1]]
    first = r.body[1]
    assert first["transactionType"] == {"type": "LIMIT_SELL", "description": "Limit Sell"}
    assert first["additionalInfo"]["orderId"] == oid
    assert first["debitCurrency"] == "BTC" and first["debitValue"] == "0.01"
    assert first["creditCurrency"] == "ZAR"
    assert Decimal(first["creditValue"]) + Decimal(first["feeValue"]) == Decimal("15000")

    page = await maker.call("GET", "/v1/account/transactionhistory?skip=1&limit=1")
    assert page.body == [plain(streamed[0])]
    sells = await maker.call("GET", "/v1/account/transactionhistory?transactionTypes=LIMIT_SELL,MARKET_SELL")
    assert len(sells.body) == 2
    buys = await maker.call("GET", "/v1/account/transactionhistory?transactionTypes=LIMIT_BUY")
    assert buys.body == []
    taker_side = await taker.call("GET", "/v1/account/transactionhistory")
    assert [t["transactionType"]["type"] for t in taker_side.body] == ["LIMIT_BUY", "LIMIT_BUY"]


async def test_transaction_history_is_signed_and_checks_paging(maker):
    assert (await maker.call("GET", "/v1/account/transactionhistory", signed=False)).status == 403
    r = await maker.call("GET", "/v1/account/transactionhistory?limit=0")
    assert r.status == 400 and "limit" in r.body["message"]
    r = await maker.call("GET", "/v1/account/transactionhistory?skip=x")
    assert r.status == 400 and "skip" in r.body["message"]


# --- public currencies and trades -----------------------------------------------------------------
async def test_public_currencies_from_the_config(maker):
    r = await maker.call("GET", "/v1/public/currencies", signed=False)
    assert r.status == 200
    by_name = {c["shortName"]: c for c in r.body}
    assert list(by_name) == ["BTC", "ZAR", "ETH"]  # pairs' bases and quotes, first appearance
    for c in r.body:
        assert set(c) == {"symbol", "isActive", "shortName", "longName", "decimalPlaces",
                          "withdrawalDecimalPlaces", "collateral", "collateralWeight"}
        # decimal places are strings in VALR's example
        assert c["isActive"] is True and isinstance(c["decimalPlaces"], str)
    assert by_name["ZAR"]["symbol"] == "R" and by_name["ZAR"]["decimalPlaces"] == "2"
    assert by_name["BTC"]["longName"] == "Bitcoin" and by_name["BTC"]["decimalPlaces"] == "8"


async def test_public_currencies_unknown_currency_takes_the_pairs_decimals(make_server, client_factory):
    config = config_from_dict({
        "pairs": [{"symbol": "DOGEZAR", "base": "DOGE", "quote": "ZAR", "tick_size": "0.01",
                   "min_base": "1", "min_quote": "10", "base_decimals": 4}],
        "accounts": [{"name": "maker", "api_key": MAKER_KEY, "api_secret": MAKER_SECRET,
                      "balances": {"DOGE": "100", "ZAR": "1000", "XYZ": "1"}}],
        "market": {},
    }, "<test config>")
    server = await make_server(config)
    r = await client_factory(server).call("GET", "/v1/public/currencies", signed=False)
    by_name = {c["shortName"]: c for c in r.body}
    assert list(by_name) == ["DOGE", "ZAR", "XYZ"]  # then currencies only an account holds
    assert by_name["DOGE"]["decimalPlaces"] == "4" and by_name["XYZ"]["decimalPlaces"] == "8"


async def test_public_trades_newest_first(maker, taker, client_factory, fake_server):
    ws = await maker.ws()
    await recv(ws, "AUTHENTICATED")
    tape = await client_factory(fake_server).ws("/ws/trade", signed=False)
    await tape.send('{"type":"SUBSCRIBE","subscriptions":[{"event":"NEW_TRADE","pairs":["BTCZAR"]}]}')
    await recv(tape, "SUBSCRIBED")
    assert (await maker.call("GET", "/v1/public/BTCZAR/trades", signed=False)).body == []
    oid = (await maker.call("POST", "/v1/orders/limit", ASK)).body["id"]
    await _placed(ws, oid)
    streamed = []
    for qty in ("0.01", "0.005"):
        await taker.call("POST", "/v1/orders/limit", dict(BUY, quantity=qty))
        streamed.append((await recv(tape, "NEW_TRADE"))["data"])

    r = await maker.call("GET", "/v1/public/BTCZAR/trades", signed=False)
    assert r.status == 200 and len(r.body) == 2
    newest, oldest = r.body
    assert {k: v for k, v in newest.items() if k != "quoteVolume"} == streamed[1]
    assert {k: v for k, v in oldest.items() if k != "quoteVolume"} == streamed[0]
    assert newest["sequenceId"] > oldest["sequenceId"]
    assert (newest["price"], newest["quantity"], newest["takerSide"]) == ("1500000", "0.005", "buy")
    assert newest["quoteVolume"] == "7500" and oldest["quoteVolume"] == "15000"
    assert set(newest) == {"price", "quantity", "currencyPair", "tradedAt", "takerSide", "sequenceId", "id",
                           "quoteVolume"}
    assert (await maker.call("GET", "/v1/public/BTCZAR/trades?limit=1", signed=False)).body == [newest]
    assert (await maker.call("GET", "/v1/public/BTCZAR/trades?skip=1", signed=False)).body == [oldest]
    assert (await maker.call("GET", "/v1/public/ETHZAR/trades", signed=False)).body == []
    r = await maker.call("GET", "/v1/public/NOPE/trades", signed=False)
    assert r.status == 400 and "NOPE" in r.body["message"]
    r = await maker.call("GET", "/v1/public/BTCZAR/trades?limit=101", signed=False)
    assert r.status == 400 and "limit" in r.body["message"]


# --- the signed order book ------------------------------------------------------------------------
async def test_signed_orderbook_is_the_public_book(maker):
    ws = await maker.ws()
    await recv(ws, "AUTHENTICATED")
    oid = (await maker.call("POST", "/v1/orders/limit", ASK)).body["id"]
    await _placed(ws, oid)
    signed = await maker.call("GET", "/v1/marketdata/BTCZAR/orderbook")
    public = await maker.call("GET", "/v1/public/BTCZAR/orderbook", signed=False)
    assert signed.status == 200 and signed.body == public.body
    assert signed.body["Asks"] == [{"side": "sell", "quantity": "0.02", "price": "1500000",
                                    "currencyPair": "BTCZAR", "orderCount": 1}]
    assert signed.body["Bids"] == [] and isinstance(signed.body["SequenceNumber"], int)
    r = await maker.call("GET", "/v1/marketdata/NOPE/orderbook")
    assert r.status == 400 and "NOPE" in r.body["message"]


# --- unknown routes -------------------------------------------------------------------------------
@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/orders/1234/detailed"),  # a connector's wrong path
    ("GET", "/v1/orders/BTCZAR"),  # DELETE /v1/orders/{pair} exists, GET does not
    ("PUT", "/v1/orders/limit"),  # PUT /v1/orders/modify exists now
    ("PATCH", "/v1/orders/limit"),
    ("POST", "/v1/public/time"),
    ("DELETE", "/nothing"),
    ("GET", "/ws/acount"),  # a mistyped stream path is traced like any request
])
async def test_unknown_route_is_a_traced_valr_404(maker, fake_server, method, path):
    r = await maker.call(method, path, {"pair": "BTCZAR"} if method != "GET" else None)
    assert r.status == 404 and r.headers["Content-Type"].startswith("application/json")
    assert r.body == {"code": -1, "message": f"No such route: {method} {path}"}
    records = [x for x in fake_server.trace.records if x["kind"] == "rest" and x["type"] == f"{method} {path}"]
    assert [x["dir"] for x in records] == ["out", "in"] and records[0]["conn"] == records[1]["conn"]
    assert records[0]["data"]["path"] == path and records[1]["data"]["status"] == 404
    assert records[0]["data"]["headers"]["X-VALR-SIGNATURE"] == "<scrubbed>"
    shown = format_record(records[1])
    assert f"{method} {path}" in shown and "404" in shown and "No such route" in shown


async def test_unknown_route_is_404_whatever_the_body_or_signature(maker, fake_server):
    r = await maker.call("POST", "/v1/orders/nonsense", raw="not json", signed=False,
                         headers={"Content-Type": "text/plain"})
    assert r.status == 404 and r.body["code"] == -1
    r = await maker.call("GET", "/v1/account/nonsense", signed=False)
    assert r.status == 404  # not 403: there is nothing to authenticate for
    # served routes are unaffected
    assert (await maker.call("GET", "/v1/public/time", signed=False)).status == 200
    assert (await maker.call("GET", "/v1/account/balances")).status == 200


async def test_unknown_route_does_not_disturb_the_streams(maker):
    ws = await maker.ws()
    await recv(ws, "AUTHENTICATED")
    assert (await maker.call("GET", "/v1/orders/x/y/z")).status == 404
    await ws.send('{"type":"PING"}')
    assert (await recv(ws, "PONG"))["type"] == "PONG"

