"""The fake VALR's REST API over real loopback sockets: signing, shapes, order lifecycles."""

from __future__ import annotations

import asyncio

import pytest

from replay.clock import Clock

from conftest import MAKER_KEY, TAKER_KEY, make_config, recv

LIMIT = {"side": "SELL", "quantity": "0.02", "price": "1500000", "pair": "BTCZAR", "postOnly": False}


# --- signing -------------------------------------------------------------------------------------
async def test_signed_request_accepted(maker):
    r = await maker.call("GET", "/v1/account/balances")
    assert r.status == 200
    assert {b["currency"] for b in r.body} == {"BTC", "ZAR"}


async def test_missing_key_is_403(maker):
    r = await maker.call("GET", "/v1/account/balances", signed=False)
    assert r.status == 403
    assert set(r.body) == {"code", "message"} and isinstance(r.body["code"], int)


async def test_unknown_key_is_401(fake_server, client_factory):
    stranger = client_factory(fake_server, "f" * 64, "nope")
    r = await stranger.call("GET", "/v1/account/balances")
    assert r.status == 401
    assert r.body["message"] == "API key or secret is invalid"


async def test_bad_signature_is_401(maker):
    headers = maker.sign("GET", "/v1/account/balances")
    headers["X-VALR-SIGNATURE"] = "0" * 128
    r = await maker.call("GET", "/v1/account/balances", signed=False, headers=headers)
    assert r.status == 401
    assert r.body["message"] == "Request has an invalid signature"


@pytest.mark.parametrize("offset_ms", [-120_000, 120_000])
async def test_stale_or_future_timestamp_is_401(maker, fake_server, offset_ms):
    r = await maker.call("GET", "/v1/account/balances", ts=fake_server.now_ms() + offset_ms)
    assert r.status == 401


async def test_signature_covers_the_body(maker):
    body = '{"side":"SELL","quantity":"0.02","price":"1500000","pair":"BTCZAR"}'
    headers = maker.sign("POST", "/v1/orders/limit", body.replace("0.02", "0.01"))
    headers["Content-Type"] = "application/json"
    r = await maker.call("POST", "/v1/orders/limit", raw=body, signed=False, headers=headers)
    assert r.status == 401


async def test_signature_covers_the_query_string(maker):
    r = await maker.call("GET", "/v1/orders/history?skip=0&limit=5")  # signed with the query
    assert r.status == 200 and r.body == []
    headers = maker.sign("GET", "/v1/orders/history?skip=0&limit=99")  # a different query
    r = await maker.call("GET", "/v1/orders/history?skip=0&limit=5", signed=False, headers=headers)
    assert r.status == 401


async def test_signature_over_the_bare_path_is_accepted(maker):
    # valr-python, a client used against VALR, signs GETs with parameters without the query.
    headers = maker.sign("GET", "/v1/orders/history")
    r = await maker.call("GET", "/v1/orders/history?skip=0&limit=5", signed=False, headers=headers)
    assert r.status == 200


async def test_subaccount_header_is_part_of_the_signature(maker, fake_server):
    from replay.auth import auth_headers

    good = auth_headers(MAKER_KEY, maker.secret, "GET", "/v1/account/balances", "", "sub-1",
                        timestamp_ms=fake_server.now_ms())
    r = await maker.call("GET", "/v1/account/balances", signed=False, headers=good)
    assert r.status == 200
    bad = dict(good, **{"X-VALR-SUB-ACCOUNT-ID": "sub-2"})
    r = await maker.call("GET", "/v1/account/balances", signed=False, headers=bad)
    assert r.status == 401 and r.body["message"] == "Request has an invalid signature"
    # correctly signed, but not a sub-account of this key's account
    foreign = auth_headers(MAKER_KEY, maker.secret, "GET", "/v1/account/balances", "", "sub-9",
                           timestamp_ms=fake_server.now_ms())
    r = await maker.call("GET", "/v1/account/balances", signed=False, headers=foreign)
    assert r.status == 401 and r.body["message"] == "Invalid sub-account id"


# --- public shapes -------------------------------------------------------------------------------
async def test_public_endpoints(maker, fake_server):
    r = await maker.call("GET", "/v1/public/time", signed=False)
    assert r.status == 200 and set(r.body) >= {"epochTime", "time"}
    assert abs(r.body["epochTime"] * 1000 - fake_server.now_ms()) < 5000
    r = await maker.call("GET", "/v1/public/status", signed=False)
    assert r.body == {"status": "online"}
    r = await maker.call("GET", "/v1/public/pairs", signed=False)
    assert [p["symbol"] for p in r.body] == ["BTCZAR", "ETHZAR"]
    assert all(p["currencyPairType"] == "SPOT" for p in r.body)
    r = await maker.call("GET", "/v1/public/pairs/SPOT", signed=False)
    assert len(r.body) == 2
    r = await maker.call("GET", "/v1/public/pairs/FUTURE", signed=False)
    assert r.body == []
    r = await maker.call("GET", "/v1/public/BTCZAR/orderbook", signed=False)
    assert r.status == 200 and set(r.body) >= {"Asks", "Bids", "LastChange", "SequenceNumber"}
    r = await maker.call("GET", "/v1/public/marketsummary", signed=False)
    # the REST summaries name the pair currencyPair (VALR's captured responses)
    assert {s["currencyPair"] for s in r.body} == {"BTCZAR", "ETHZAR"}
    r = await maker.call("GET", "/v1/public/ETHZAR/marketsummary", signed=False)
    assert r.body["currencyPair"] == "ETHZAR" and "markPrice" in r.body
    r = await maker.call("GET", "/v1/public/NOPE/orderbook", signed=False)
    assert r.status == 400 and "NOPE" in r.body["message"]


async def test_signed_orderbook_needs_signature(maker):
    assert (await maker.call("GET", "/v1/marketdata/BTCZAR/orderbook", signed=False)).status == 403
    r = await maker.call("GET", "/v1/marketdata/BTCZAR/orderbook")
    assert r.status == 200 and "Asks" in r.body


# --- order lifecycles ----------------------------------------------------------------------------
async def test_place_rest_cancel(maker):
    ws = await maker.ws()
    await recv(ws, "AUTHENTICATED")
    r = await maker.call("POST", "/v1/orders/limit", dict(LIMIT, customerOrderId="ask-1", postOnly=True))
    # VALR's 202 echoes the customerOrderId
    assert r.status == 202 and r.body == {"id": r.body["id"], "customerOrderId": "ask-1"}
    oid = r.body["id"]
    processed = await recv(ws, "ORDER_PROCESSED")
    assert processed["data"] == {"orderId": oid, "success": True, "failureReason": "", "customerOrderId": "ask-1"}
    placed = await recv(ws, "ORDER_STATUS_UPDATE")
    assert placed["data"]["orderStatusType"] == "Placed" and placed["data"]["customerOrderId"] == "ask-1"
    oou = await recv(ws, "OPEN_ORDERS_UPDATE")
    assert [o["orderId"] for o in oou["data"]] == [oid]
    bal = await recv(ws, "BALANCE_UPDATE")
    assert bal["data"]["currency"]["shortName"] == "BTC" and bal["data"]["reserved"] == "0.02"

    r = await maker.call("GET", "/v1/orders/open")
    assert [o["orderId"] for o in r.body] == [oid]
    r = await maker.call("GET", f"/v1/orders/BTCZAR/orderid/{oid}")
    assert r.body["orderStatusType"] == "Placed" and r.body["orderId"] == oid
    r = await maker.call("GET", "/v1/orders/BTCZAR/customerorderid/ask-1")
    assert r.body["orderId"] == oid
    r = await maker.call("GET", "/v1/account/balances")
    btc = next(b for b in r.body if b["currency"] == "BTC")
    assert (btc["available"], btc["reserved"]) == ("0.98", "0.02")

    r = await maker.call("DELETE", "/v1/orders/order", {"orderId": oid, "pair": "BTCZAR"})
    assert r.status == 202 and r.text == "" and r.headers["Content-Type"].startswith("application/json")
    cancelled = await recv(ws, "ORDER_STATUS_UPDATE")
    assert cancelled["data"]["orderStatusType"] == "Cancelled"
    assert (await recv(ws, "OPEN_ORDERS_UPDATE"))["data"] == []
    assert (await recv(ws, "BALANCE_UPDATE"))["data"]["reserved"] == "0"
    r = await maker.call("GET", "/v1/orders/history?skip=0&limit=10")
    assert [o["orderId"] for o in r.body] == [oid] and r.body[0]["orderStatusType"] == "Cancelled"
    r = await maker.call("GET", f"/v1/orders/history/summary/orderid/{oid}")
    assert r.body["orderStatusType"] == "Cancelled"
    r = await maker.call("GET", "/v1/orders/history/summary/customerorderid/ask-1")
    assert r.body["orderId"] == oid
    r = await maker.call("GET", f"/v1/orders/history/detail/orderid/{oid}")
    assert r.body[0]["orderStatusType"] == "Cancelled" and "executedQuantity" in r.body[0]


async def test_partial_fill_then_fill(maker, taker):
    mws = await maker.ws()
    tws = await taker.ws()
    await recv(mws, "AUTHENTICATED")
    await recv(tws, "AUTHENTICATED")
    oid = (await maker.call("POST", "/v1/orders/limit", LIMIT)).body["id"]
    await recv(mws, lambda m: m["type"] == "ORDER_STATUS_UPDATE" and m["data"]["orderStatusType"] == "Placed")
    buy = {"side": "BUY", "quantity": "0.01", "price": "1500000", "pair": "BTCZAR"}
    assert (await taker.call("POST", "/v1/orders/limit", buy)).status == 202
    trade = await recv(mws, "NEW_ACCOUNT_TRADE")
    assert trade["data"]["orderId"] == oid and trade["data"]["quantity"] == "0.01"
    assert trade["data"]["side"] == "sell"
    history = await recv(mws, "NEW_ACCOUNT_HISTORY_RECORD")
    assert history["data"]["additionalInfo"]["orderId"] == oid
    partial = await recv(mws, "ORDER_STATUS_UPDATE")
    assert partial["data"]["orderStatusType"] == "Partially Filled"
    assert partial["data"]["remainingQuantity"] == "0.01"
    taker_trade = await recv(tws, "NEW_ACCOUNT_TRADE")
    assert taker_trade["data"]["side"] == "buy"

    assert (await taker.call("POST", "/v1/orders/limit", buy)).status == 202
    filled = await recv(mws, lambda m: m["type"] == "ORDER_STATUS_UPDATE" and m["data"]["orderId"] == oid)
    assert filled["data"]["orderStatusType"] == "Filled"
    assert (await recv(mws, "OPEN_ORDERS_UPDATE"))["data"] == []
    r = await maker.call("GET", "/v1/account/BTCZAR/tradehistory?limit=10")
    assert r.status == 200 and len(r.body) == 2 and all(t["orderId"] == oid for t in r.body)
    r = await maker.call("GET", "/v1/account/balances")
    btc = next(b for b in r.body if b["currency"] == "BTC")
    assert btc["total"] == "0.98" and btc["reserved"] == "0"


async def test_post_only_rejected(maker, taker):
    tws = await taker.ws()
    await recv(tws, "AUTHENTICATED")
    await maker.call("POST", "/v1/orders/limit", LIMIT)
    r = await taker.call("POST", "/v1/orders/limit",
                         {"side": "BUY", "quantity": "0.01", "price": "1500000", "pair": "BTCZAR", "postOnly": True})
    assert r.status == 202
    oid = r.body["id"]
    failed = await recv(tws, lambda m: m["type"] == "ORDER_STATUS_UPDATE" and m["data"]["orderId"] == oid)
    assert failed["data"]["orderStatusType"] == "Failed"
    assert "Post only" in failed["data"]["failedReason"]
    r = await taker.call("GET", f"/v1/orders/BTCZAR/orderid/{oid}")
    assert r.body["orderStatusType"] == "Failed"


async def test_duplicate_customer_order_id(maker):
    ws = await maker.ws()
    await recv(ws, "AUTHENTICATED")
    first = await maker.call("POST", "/v1/orders/limit", dict(LIMIT, customerOrderId="dup"))
    second = await maker.call("POST", "/v1/orders/limit", dict(LIMIT, customerOrderId="dup", price="1600000"))
    assert first.status == second.status == 202  # refused later, on the stream
    oid2 = second.body["id"]
    processed = await recv(ws, lambda m: m["type"] == "ORDER_PROCESSED" and m["data"]["orderId"] == oid2)
    assert processed["data"]["success"] is False
    assert "Duplicate" in processed["data"]["failureReason"] or "customer" in processed["data"]["failureReason"]
    r = await maker.call("GET", "/v1/orders/open")
    assert [o["orderId"] for o in r.body] == [first.body["id"]]


async def test_unknown_order_lookup(maker):
    r = await maker.call("GET", "/v1/orders/BTCZAR/orderid/00000000-0000-0000-0000-000000000000")
    assert r.status == 400 and r.body == {"code": -1, "message": "Invalid Order. "}
    r = await maker.call("GET", "/v1/orders/BTCZAR/customerorderid/never")
    assert r.status == 400


async def test_v2_endpoints_and_cancel_all(maker, taker):
    r = await maker.call("POST", "/v2/orders/limit", LIMIT)
    assert r.status == 201 and set(r.body) == {"id"}
    oid = r.body["id"]
    r = await maker.call("POST", "/v2/orders/limit", dict(LIMIT, pair="NOPE"))
    assert r.status == 201 and r.body["code"] == -1 and "NOPE" in r.body["message"]
    # processing is asynchronous: poll the order by id until it rests
    await _wait_status(maker, oid, "Placed")
    r = await maker.call("DELETE", "/v2/orders/order", {"orderId": oid, "pair": "BTCZAR"})
    assert r.status == 200 and r.body == {"id": oid}
    await _wait_status(maker, oid, "Cancelled")
    ids = [(await maker.call("POST", "/v1/orders/limit", dict(LIMIT, price=p))).body["id"]
           for p in ("1600000", "1700000")]
    eth = (await maker.call("POST", "/v1/orders/limit",
                            {"side": "BUY", "quantity": "0.01", "price": "50000", "pair": "ETHZAR"})).body["id"]
    for i in ids + [eth]:
        await _wait_status(maker, i, "Placed")
    r = await maker.call("DELETE", "/v1/orders/BTCZAR")
    assert r.status == 200 and sorted(o["orderId"] for o in r.body) == sorted(ids)
    assert [o["orderId"] for o in (await maker.call("GET", "/v1/orders/open")).body] == [eth]
    r = await maker.call("DELETE", "/v1/orders")
    assert r.status == 200 and [o["orderId"] for o in r.body] == [eth]


async def _wait_status(client, oid: str, status: str, pair: str | None = None) -> None:
    async def poll() -> None:
        while True:
            for p in ([pair] if pair else ["BTCZAR", "ETHZAR"]):
                r = await client.call("GET", f"/v1/orders/{p}/orderid/{oid}")
                if r.status == 200 and r.body["orderStatusType"] == status:
                    return
            await asyncio.sleep(0.01)  # polling a condition, bounded by the timeout below

    await asyncio.wait_for(poll(), 5)


async def test_market_order(maker, taker):
    oid = (await maker.call("POST", "/v1/orders/limit", LIMIT)).body["id"]
    await _wait_status(maker, oid, "Placed")
    r = await taker.call("POST", "/v1/orders/market", {"side": "BUY", "baseAmount": "0.005", "pair": "BTCZAR"})
    assert r.status == 202 and "id" in r.body
    await _wait_status(taker, r.body["id"], "Filled")
    await _wait_status(maker, oid, "Partially Filled")


async def test_batch_orders(maker):
    oid = (await maker.call("POST", "/v1/orders/limit", LIMIT)).body["id"]
    body = {"requests": [
        {"type": "PLACE_LIMIT", "data": dict(LIMIT, price="1600000")},
        {"type": "PLACE_LIMIT", "data": dict(LIMIT, pair="NOPE")},
        {"type": "CANCEL_ORDER", "data": {"orderId": oid, "pair": "BTCZAR"}},
        {"type": "MODIFY_ORDER", "data": {}},
    ]}
    r = await maker.call("POST", "/v1/batch/orders", body)
    # VALR's batch reply: outcomes (with requestType) and a numeric batchId
    assert r.status == 200 and isinstance(r.body["batchId"], int)
    accepted = [o["accepted"] for o in r.body["outcomes"]]
    assert accepted == [True, False, True, False]
    assert [o.get("requestType") for o in r.body["outcomes"]] == ["PLACE_LIMIT", None, "CANCEL_ORDER", None]
    assert "NOPE" in r.body["outcomes"][1]["error"]["message"]
    await _wait_status(maker, oid, "Cancelled")
    await _wait_status(maker, r.body["outcomes"][0]["orderId"], "Placed")
    too_many = {"requests": [{"type": "PLACE_LIMIT", "data": LIMIT}] * 21}
    r = await maker.call("POST", "/v1/batch/orders", too_many)
    assert r.status == 400 and "20" in r.body["message"]


# --- rate limits ---------------------------------------------------------------------------------
async def test_rate_limit_per_key(make_server, client_factory):
    # epoch origin on a minute boundary: all calls fall in one rate-limit window
    server = await make_server(make_config(server={"rate_limit_per_minute_key": 3}),
                               clock=Clock(epoch_origin_ms=1_800_000_000_000))
    client = client_factory(server)
    statuses = [(await client.call("GET", "/v1/orders/open")) for _ in range(4)]
    assert [r.status for r in statuses[:3]] == [200, 200, 200]
    limited = statuses[3]
    assert limited.status == 429
    assert limited.headers["x-valr-ratelimited"] == "true"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert set(limited.body) == {"code", "message"}
    other = client_factory(server, TAKER_KEY, "s2" * 32)
    assert (await other.call("GET", "/v1/orders/open")).status == 200  # another key has its own quota


async def test_rate_limit_per_route(make_server, client_factory):
    server = await make_server(make_config(server={"route_limits_per_second": {"GET /v1/public/time": 1}}),
                               clock=Clock(epoch_origin_ms=1_800_000_000_000))
    client = client_factory(server)
    replies = [await client.call("GET", "/v1/public/time", signed=False) for _ in range(3)]
    # three calls within well under a second span at most two one-second windows
    limited = [r for r in replies if r.status == 429]
    assert limited and limited[0].headers["x-valr-ratelimited"] == "true"
    assert limited[0].headers["Retry-After"] == "1"
    assert (await client.call("GET", "/v1/public/status", signed=False)).status == 200  # other route


def test_rate_limiter_windows():
    from replay.server.ratelimit import RateLimiter

    rl = RateLimiter(per_key_per_min=2, per_ip_per_min=3, route_limits=[("POST", "/v1/orders", 1)])
    t = 1_800_000_000_000  # on a minute boundary
    assert rl.check(t, method="GET", path="/x", ip="1", api_key="k") is None
    assert rl.check(t + 1, method="GET", path="/x", ip="1", api_key="k") is None
    hit = rl.check(t + 1500, method="GET", path="/x", ip="1", api_key="k")
    assert hit is not None and hit.scope == "key" and hit.retry_after_s == 59
    assert rl.check(t + 2, method="GET", path="/x", ip="1", api_key="k2") is None  # ip: 3rd
    assert rl.check(t + 3, method="GET", path="/x", ip="1", api_key="k3").scope == "ip"
    assert rl.check(t + 60_000, method="GET", path="/x", ip="1", api_key="k") is None  # new minute
    assert rl.check(t, method="POST", path="/v1/orders/limit", ip="2") is None
    assert rl.check(t + 999, method="POST", path="/v1/orders/limit", ip="2").scope == "route"
    assert rl.check(t + 1000, method="POST", path="/v1/orders/market", ip="2") is None
    assert rl.check(t + 1001, method="POST", path="/v1/ordersx", ip="2") is None  # not under the prefix


# --- trace ---------------------------------------------------------------------------------------
async def test_trace_records_rest_events_and_commands(maker, fake_server):
    oid = (await maker.call("POST", "/v1/orders/limit", LIMIT)).body["id"]
    await _wait_status(maker, oid, "Placed")
    records = fake_server.trace.records
    rest_out = [r for r in records
                if r["kind"] == "rest" and r["dir"] == "out" and r["type"] == "POST /v1/orders/limit"]
    assert rest_out and rest_out[0]["data"]["headers"]["X-VALR-SIGNATURE"] == "<scrubbed>"
    assert rest_out[0]["data"]["headers"]["X-VALR-API-KEY"] == "<scrubbed>"
    assert rest_out[0]["data"]["body"]["pair"] == "BTCZAR"
    rest_in = [r for r in records if r["kind"] == "rest" and r["dir"] == "in" and r["conn"] == rest_out[0]["conn"]]
    assert rest_in[0]["data"]["status"] == 202 and rest_in[0]["data"]["body"] == {"id": oid}
    submitted = [r for r in records if r["type"] == "CommandSubmitted"]
    assert submitted[0]["data"]["order_id"] == oid and submitted[0]["data"]["command"] == "PLACE_LIMIT"
    assert submitted[0]["data"]["conn"] == rest_out[0]["conn"]
    changed = [r for r in records if r["kind"] == "event" and r["type"] == "OrderStatusChanged"]
    assert changed[0]["data"]["order"]["status"] == "Placed"
    assert changed[0]["data"]["order"]["price"] == "1500000"  # decimals as strings
    assert all(r["conn"] == "exchange" and r["dir"] == "local" for r in changed)


# --- schedule faults and delays ------------------------------------------------------------------
class FaultySchedule:
    """Wraps the default schedule: 503 on the open-orders route, a timeout on history, 50 ms delay on time."""

    def __new__(cls):
        from replay.schedule import DeliverySchedule, HttpFault

        class _S(DeliverySchedule):
            def http_fault(self, now, method, route):
                if route == "/v1/orders/open":
                    return HttpFault(503, {"code": -1, "message": "down"})
                if route == "/v1/orders/history":
                    return HttpFault(0)
                return None

            def http_delay(self, now, method, route):
                return 0.05 if route == "/v1/public/time" else 0.0

        return _S()


async def test_http_faults_and_delays(make_server, client_factory):
    import aiohttp

    server = await make_server(make_config(), schedule=FaultySchedule())
    client = client_factory(server)
    r = await client.call("GET", "/v1/orders/open")
    assert r.status == 503 and r.body == {"code": -1, "message": "down"}
    before = server.now()
    assert (await client.call("GET", "/v1/public/time", signed=False)).status == 200
    assert server.now() - before >= 0.05
    with pytest.raises(asyncio.TimeoutError):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.2)) as session:
            await session.get(server.rest_url + "/v1/orders/history")
    # the hung request does not keep the server from serving others (or from stopping)
    assert (await client.call("GET", "/v1/account/balances")).status == 200
