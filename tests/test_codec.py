"""Golden shapes for replay.codec against the examples in valr-protocol.md."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest

from replay import codec
from replay.codec import CodecError
from replay.exchange.events import (
    AccountTrade,
    BalanceChanged,
    BookChanged,
    CancelFailed,
    OpenOrdersChanged,
    OrderFailed,
    OrderProcessed,
    OrderStatusChanged,
    PublicTrade,
)
from replay.exchange.model import (
    Balance,
    BookLevel,
    BookView,
    CancelRequest,
    LimitRequest,
    MarketRequest,
    MarketSummary,
    OrderStatus,
    OrderType,
    OrderView,
    PairSpec,
    Side,
    TimeInForce,
    Trade,
)

T0 = 1715169089169  # 2024-05-08T11:51:29.169Z
T1 = 1715169089181  # 2024-05-08T11:51:29.181Z
ISO0 = "2024-05-08T11:51:29.169Z"
ISO1 = "2024-05-08T11:51:29.181Z"


def order(**kw) -> OrderView:
    base = dict(
        order_id="4cbf1b17-0000-4000-8000-000000000001",
        account="demo",
        pair="BTCUSDC",
        side=Side.SELL,
        order_type=OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        price=D("66391"),
        original_quantity=D("0.00015062"),
        remaining_quantity=D("0.00005062"),
        status=OrderStatus.PARTIALLY_FILLED,
        created_ms=T0,
        updated_ms=T1,
        customer_order_id="HB-VR-abc",
    )
    base.update(kw)
    return OrderView(**base)


def trade(**kw) -> Trade:
    base = dict(
        trade_id="t-1",
        sequence=7,
        pair="BTCZAR",
        price=D("9500"),
        quantity=D("0.00105263"),
        taker_side=Side.BUY,
        ts_ms=T0,
        maker_order_id="m-1",
        taker_order_id="k-1",
        maker_account="other",
        taker_account="demo",
    )
    base.update(kw)
    return Trade(**base)


def roundtrip(obj):
    """Everything the codec returns must be plain JSON."""
    return json.loads(json.dumps(obj))


# ------------------------------------------------------------------------------------ fmt


@pytest.mark.parametrize(
    "value, expected",
    [
        (D("1.5E+6"), "1500000"),
        (D("1500000"), "1500000"),
        (D("0.00100"), "0.001"),
        (D("0.001"), "0.001"),
        (D("7.89E-6"), "0.00000789"),
        (D("0"), "0"),
        (D("0E-8"), "0"),
        (D("-0"), "0"),
        (D("-1.50"), "-1.5"),
        (D("10.0"), "10"),
        (D("66391"), "66391"),
        (5, "5"),
        (None, None),
    ],
)
def test_fmt(value, expected):
    assert codec.fmt(value) == expected


def test_fmt_rejects_nonfinite_and_floats():
    with pytest.raises(ValueError):
        codec.fmt(D("NaN"))
    with pytest.raises(ValueError):
        codec.fmt(D("Infinity"))
    with pytest.raises(TypeError):
        codec.fmt(0.1)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ parse_limit


def test_parse_limit_doc_example():
    body = {
        "side": "SELL",
        "quantity": "0.1",
        "price": "10000",
        "pair": "BTCZAR",
        "postOnly": True,
        "customerOrderId": "HB-VR-abc",
        "timeInForce": "GTC",
        "allowMargin": False,
        "reduceOnly": False,
    }
    assert codec.parse_limit(body) == LimitRequest(
        pair="BTCZAR",
        side=Side.SELL,
        quantity=D("0.1"),
        price=D("10000"),
        post_only=True,
        time_in_force=TimeInForce.GTC,
        customer_order_id="HB-VR-abc",
    )


def test_parse_limit_ws_payload_roundtrip_from_json_text():
    # What a VALR client sends over the account socket, as text.
    text = (
        '{"type":"PLACE_LIMIT_ORDER","clientMsgId":"a1b2c3d4","payload":{"side":"BUY","quantity":"0.01",'
        '"price":"950000","pair":"BTCZAR","postOnly":false,"reduceOnly":false,'
        '"customerOrderId":"my-limit-order-1","timeInForce":"GTC","allowMargin":false}}'
    )
    msg = json.loads(text)
    req = codec.parse_limit(msg["payload"])
    assert req.side is Side.BUY
    assert req.quantity == D("0.01") and req.price == D("950000")
    assert req.post_only is False
    assert req.customer_order_id == "my-limit-order-1"
    assert codec.message_type(msg) == "PLACE_LIMIT_ORDER"


def test_parse_limit_hummingbot_body_lowercase_side_and_defaults():
    # Hummingbot: lower-case side, Decimal formatted with :f, no timeInForce.
    req = codec.parse_limit({"pair": "BTCZAR", "side": "buy", "price": "950000", "quantity": "0.0001",
                             "customerOrderId": "HB-VR-x1"})
    assert req.side is Side.BUY
    assert req.time_in_force is TimeInForce.GTC
    assert req.post_only is False


def test_parse_limit_numbers_and_case():
    req = codec.parse_limit({"pair": "BTCZAR", "side": "Sell", "price": 950000, "quantity": 0.1,
                             "timeInForce": "ioc"})
    assert req.quantity == D("0.1")  # not 0.1000000000000000055511151231257827
    assert req.price == D("950000")
    assert req.time_in_force is TimeInForce.IOC
    assert req.customer_order_id is None


GOOD_LIMIT = {"pair": "BTCZAR", "side": "BUY", "price": "950000", "quantity": "0.01"}


@pytest.mark.parametrize(
    "change, field, words",
    [
        ({"pair": None}, "pair", "required"),
        ({"pair": 5}, "pair", "string"),
        ({"pair": ""}, "pair", "empty"),
        ({"side": None}, "side", "required"),
        ({"side": "LONG"}, "side", "BUY or SELL"),
        ({"side": 1}, "side", "string"),
        ({"quantity": None}, "quantity", "required"),
        ({"quantity": "abc"}, "quantity", "not a number"),
        ({"quantity": "-1"}, "quantity", "negative"),
        ({"quantity": "0"}, "quantity", "greater than zero"),
        ({"quantity": "NaN"}, "quantity", "finite"),
        ({"quantity": True}, "quantity", "number"),
        ({"quantity": ["1"]}, "quantity", "number"),
        ({"price": None}, "price", "required"),
        ({"price": "1,000"}, "price", "not a number"),
        ({"price": -5}, "price", "negative"),
        ({"postOnly": "yes"}, "postOnly", "true or false"),
        ({"timeInForce": "DAY"}, "timeInForce", "GTC, IOC or FOK"),
        ({"customerOrderId": "has space"}, "customerOrderId", "letters, digits and dashes"),
        ({"customerOrderId": "x" * 51}, "customerOrderId", "1-50"),
        ({"customerOrderId": ""}, "customerOrderId", "1-50"),
        ({"customerOrderId": 12}, "customerOrderId", "string"),
        ({"allowMargin": "no"}, "allowMargin", "true or false"),
        ({"quantity": None, "baseAmount": "0.01"}, "quantity", "required"),
    ],
)
def test_parse_limit_errors_name_the_field(change, field, words):
    body = {**GOOD_LIMIT, **change}
    body = {k: v for k, v in body.items() if v is not None}
    with pytest.raises(CodecError) as ei:
        codec.parse_limit(body)
    err = ei.value
    assert err.field == field
    assert field in err.message
    assert words in err.message
    assert err.code == codec.INVALID_REQUEST == -1
    assert err.validation_errors == {field: err.message}
    assert isinstance(err, ValueError)


def test_parse_limit_customer_order_id_limits_ok():
    req = codec.parse_limit({**GOOD_LIMIT, "customerOrderId": "A-" + "9" * 48})
    assert len(req.customer_order_id) == 50


@pytest.mark.parametrize("payload", [None, [], "x", 3])
def test_parse_non_object_is_invalid_json(payload):
    for parse in (codec.parse_limit, codec.parse_market, codec.parse_cancel):
        with pytest.raises(CodecError) as ei:
            parse(payload)
        assert ei.value.code == codec.INVALID_JSON == -113
        assert ei.value.field is None
        assert ei.value.validation_errors is None
        assert "Invalid JSON payload" in ei.value.message


# ------------------------------------------------------------------------------------ parse_market


def test_parse_market_base_and_quote():
    assert codec.parse_market({"pair": "BTCZAR", "side": "BUY", "quoteAmount": "100"}) == MarketRequest(
        pair="BTCZAR", side=Side.BUY, quote_amount=D("100")
    )
    assert codec.parse_market(
        {"pair": "BTCZAR", "side": "sell", "baseAmount": "0.001", "customerOrderId": "m-1"}
    ) == MarketRequest(pair="BTCZAR", side=Side.SELL, base_amount=D("0.001"), customer_order_id="m-1")


def test_parse_market_accepts_hummingbot_quantity():
    req = codec.parse_market({"pair": "BTCZAR", "side": "buy", "quantity": "0.002", "customerOrderId": "HB-1"})
    assert req.base_amount == D("0.002") and req.quote_amount is None


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({"pair": "BTCZAR", "side": "BUY"}, "baseAmount", "required"),
        ({"pair": "BTCZAR", "side": "BUY", "baseAmount": "1", "quoteAmount": "2"}, "quoteAmount", "not both"),
        ({"pair": "BTCZAR", "side": "BUY", "quantity": "1", "baseAmount": "1"}, "quantity", "not both"),
        ({"pair": "BTCZAR", "side": "BUY", "quantity": "1", "quoteAmount": "1"}, "quoteAmount", "not both"),
        ({"pair": "BTCZAR", "side": "BUY", "quoteAmount": "-3"}, "quoteAmount", "negative"),
        ({"pair": "BTCZAR", "side": "BUY", "baseAmount": "x"}, "baseAmount", "not a number"),
        ({"pair": "BTCZAR", "baseAmount": "1"}, "side", "required"),
        ({"side": "BUY", "baseAmount": "1"}, "pair", "required"),
        ({"pair": "BTCZAR", "side": "BUY", "baseAmount": "1", "timeInForce": "X"}, "timeInForce", "GTC"),
    ],
)
def test_parse_market_errors(body, field, words):
    with pytest.raises(CodecError) as ei:
        codec.parse_market(body)
    assert ei.value.field == field
    assert field in ei.value.message and words in ei.value.message


# ------------------------------------------------------------------------------------ parse_cancel


def test_parse_cancel_by_either_id():
    assert codec.parse_cancel({"orderId": "68b4e939-1", "pair": "BTCUSDT"}) == CancelRequest(
        pair="BTCUSDT", order_id="68b4e939-1"
    )
    assert codec.parse_cancel({"customerOrderId": "HB-VR-abc", "pair": "BTCZAR"}) == CancelRequest(
        pair="BTCZAR", customer_order_id="HB-VR-abc"
    )


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({"pair": "BTCZAR"}, "orderId", "required"),
        ({"pair": "BTCZAR", "orderId": "a", "customerOrderId": "b"}, "customerOrderId", "not both"),
        ({"orderId": "a"}, "pair", "required"),
        ({"pair": "BTCZAR", "orderId": 5}, "orderId", "string"),
        ({"pair": "BTCZAR", "orderId": "  "}, "orderId", "empty"),
        ({"pair": "BTCZAR", "customerOrderId": "bad id!"}, "customerOrderId", "letters"),
    ],
)
def test_parse_cancel_errors(body, field, words):
    with pytest.raises(CodecError) as ei:
        codec.parse_cancel(body)
    assert ei.value.field == field
    assert field in ei.value.message and words in ei.value.message


# ------------------------------------------------------------------------------------ REST bodies


def test_simple_rest_bodies():
    assert codec.error_json(-1, "Invalid Order. ") == {"code": -1, "message": "Invalid Order. "}
    # VALR's server time has a nanosecond fraction ("...41.280178906Z"); the clock has milliseconds
    assert codec.time_json(T0) == {"epochTime": 1715169089, "time": ISO0[:-1] + "000000Z"}
    assert codec.status_json() == {"status": "online"}


def test_pair_json_matches_doc():
    spec = PairSpec(
        symbol="BTCZAR", base="BTC", quote="ZAR", tick_size=D("1"), min_base=D("0.0001"), max_base=D("4"),
        min_quote=D("10"), max_quote=D("1E+6"), base_decimals=8,
    )
    assert roundtrip(codec.pair_json(spec)) == {
        "symbol": "BTCZAR", "baseCurrency": "BTC", "quoteCurrency": "ZAR", "shortName": "BTC/ZAR", "active": True,
        "minBaseAmount": "0.0001", "maxBaseAmount": "4", "minQuoteAmount": "10", "maxQuoteAmount": "1000000",
        "tickSize": "1", "baseDecimalPlaces": "8", "marginTradingAllowed": False, "currencyPairType": "SPOT",
    }


def book(n_levels: int = 1) -> BookView:
    asks = tuple(BookLevel(D("118000") + i, D("0.998418"), 1) for i in range(n_levels))
    bids = tuple(BookLevel(D("117820") - i, D("0.00010"), 1) for i in range(n_levels))
    return BookView(pair="BTCUSDC", asks=asks, bids=bids, sequence=2907775, last_change_ms=1754383871470)


def test_orderbook_json_matches_doc():
    assert roundtrip(codec.orderbook_json(book())) == {
        "Asks": [{"side": "sell", "quantity": "0.998418", "price": "118000", "currencyPair": "BTCUSDC",
                  "orderCount": 1}],
        "Bids": [{"side": "buy", "quantity": "0.0001", "price": "117820", "currencyPair": "BTCUSDC",
                  "orderCount": 1}],
        "LastChange": "2025-08-05T08:51:11.470Z",
        "SequenceNumber": 2907775,
    }


def test_orderbook_depth():
    b = book(50)
    assert len(codec.orderbook_json(b)["Asks"]) == 40
    assert len(codec.orderbook_json(b)["Bids"]) == 40
    assert len(codec.book_update_message(b)["data"]["Bids"]) == 40  # "the top 40 bids and asks"
    assert len(codec.orderbook_json(b, depth=None)["Asks"]) == 50
    # order preserved: asks ascending, bids descending as given
    asks = codec.orderbook_json(b)["Asks"]
    assert [a["price"] for a in asks[:2]] == ["118000", "118001"]


def summary(**kw) -> MarketSummary:
    base = dict(
        pair="BTCZAR", ask_price=D("9500"), bid_price=D("9400"), last_traded_price=D("9450"),
        previous_close_price=D("9000"), base_volume=D("12.5"), quote_volume=D("118125.00"),
        high_price=D("9600"), low_price=D("8900"), created_ms=T0, change_from_previous=D("5"),
    )
    base.update(kw)
    return MarketSummary(**base)


SUMMARY_KEYS = {"currencyPair", "askPrice", "bidPrice", "lastTradedPrice", "previousClosePrice", "baseVolume",
                "quoteVolume", "highPrice", "lowPrice", "created", "changeFromPrevious", "markPrice"}


def test_market_summary_json():
    d = roundtrip(codec.market_summary_json(summary()))
    assert set(d) == SUMMARY_KEYS
    assert d["askPrice"] == "9500" and d["quoteVolume"] == "118125" and d["created"] == ISO0
    assert d["changeFromPrevious"] == "5.00"
    assert d["markPrice"] == "9450"  # the median of last traded 9450, bid 9400, ask 9500
    empty = codec.market_summary_json(summary(last_traded_price=None, high_price=None, ask_price=None))
    assert empty["lastTradedPrice"] == "0" and empty["highPrice"] == "0" and empty["askPrice"] == "0"
    assert empty["markPrice"] == "9400"  # only the bid is left
    none = codec.market_summary_json(summary(last_traded_price=None, bid_price=None, ask_price=None))
    assert none["markPrice"] == "0"


def test_balance_json_currency_is_a_string():
    b = Balance(currency="USDT", available=D("44822.97549155"), reserved=D("99.99925"), updated_ms=T0)
    d = roundtrip(codec.balance_json(b, T1))
    assert d["currency"] == "USDT"
    assert d["available"] == "44822.97549155" and d["reserved"] == "99.99925" and d["total"] == "44922.97474155"
    assert d["updatedAt"] == ISO1
    assert {"currency", "available", "reserved", "total", "updatedAt"} <= set(d)
    assert codec.balance_json(b)["updatedAt"] == ISO0


OPEN_KEYS = {"orderId", "side", "remainingQuantity", "price", "currencyPair", "createdAt", "originalQuantity",
             "filledPercentage", "updatedAt", "status", "type", "timeInForce", "allowMargin", "customerOrderId"}


def test_open_order_json_matches_doc():
    d = roundtrip(codec.open_order_json(order()))
    assert set(d) == OPEN_KEYS
    assert d == {
        "orderId": "4cbf1b17-0000-4000-8000-000000000001", "side": "sell", "remainingQuantity": "0.00005062",
        "price": "66391", "currencyPair": "BTCUSDC", "createdAt": ISO0, "originalQuantity": "0.00015062",
        "filledPercentage": "66.39", "updatedAt": ISO1, "status": "Partially Filled", "type": "limit",
        "timeInForce": "GTC", "allowMargin": False, "customerOrderId": "HB-VR-abc",
    }


def test_open_order_json_optional_customer_id_and_percentages():
    d = codec.open_order_json(order(customer_order_id=None, remaining_quantity=D("0.00015062"),
                                    status=OrderStatus.PLACED))
    assert "customerOrderId" not in d
    assert d["filledPercentage"] == "0.00"
    assert d["status"] == "Placed"
    # rounding down: a nearly filled order never shows 100.00
    d = codec.open_order_json(order(original_quantity=D("1"), remaining_quantity=D("0.00001")))
    assert d["filledPercentage"] == "99.99"


STATUS_KEYS = {"orderId", "orderStatusType", "currencyPair", "originalPrice", "remainingQuantity", "originalQuantity",
               "orderSide", "orderType", "failedReason", "orderUpdatedAt", "orderCreatedAt", "customerOrderId",
               "timeInForce"}


def test_order_status_json_matches_doc():
    o = order(
        order_id="01981786-c482-7bae-a3da-4a756ef9d12e", pair="ETHBTC", price=D("0.0355"),
        original_quantity=D("0.000565"), remaining_quantity=D("0.000565"), order_type=OrderType.POST_ONLY_LIMIT,
        status=OrderStatus.PLACED, created_ms=1752741364866, updated_ms=1752741364867, customer_order_id="LimitSell",
    )
    assert roundtrip(codec.order_status_json(o)) == {
        "orderId": "01981786-c482-7bae-a3da-4a756ef9d12e", "orderStatusType": "Placed", "currencyPair": "ETHBTC",
        "originalPrice": "0.0355", "remainingQuantity": "0.000565", "originalQuantity": "0.000565",
        "orderSide": "sell", "orderType": "post-only limit", "failedReason": "",
        "orderUpdatedAt": "2025-07-17T08:36:04.867Z", "orderCreatedAt": "2025-07-17T08:36:04.866Z",
        "customerOrderId": "LimitSell", "timeInForce": "GTC",
    }


def test_order_status_json_failed_and_market():
    o = order(status=OrderStatus.FAILED, failed_reason="Post only cancelled as it would have matched",
              customer_order_id=None)
    d = codec.order_status_json(o)
    assert d["orderStatusType"] == "Failed"
    assert d["failedReason"] == "Post only cancelled as it would have matched"
    assert set(d) == STATUS_KEYS - {"customerOrderId"}
    m = codec.order_status_json(order(order_type=OrderType.MARKET, price=None, status=OrderStatus.FILLED))
    assert m["orderType"] == "market" and m["originalPrice"] == "0"


def test_every_status_spelling():
    spell = {s: codec.order_status_json(order(status=s))["orderStatusType"] for s in OrderStatus}
    # the five Hummingbot maps, and a waiting stop-limit order's "Active"
    assert set(spell.values()) == {"Placed", "Partially Filled", "Filled", "Cancelled", "Failed", "Active"}


def test_history_json():
    o = order(status=OrderStatus.FILLED, side=Side.BUY, pair="BTCZAR", price=D("9500"),
              original_quantity=D("0.002"), remaining_quantity=D("0"), filled_quantity=D("0.002"),
              filled_quote=D("19.0000"), fee_paid=D("0.000002"))
    d = roundtrip(codec.history_json(o))
    assert set(d) == STATUS_KEYS | {"averagePrice", "total", "totalExecutedQuantity", "totalFee", "feeCurrency"}
    assert d["averagePrice"] == "9500" and d["total"] == "19" and d["totalFee"] == "0.000002"
    assert d["totalExecutedQuantity"] == "0.002"
    assert d["feeCurrency"] == "BTC"
    assert d["remainingQuantity"] == "0"
    sell = codec.history_json(order(side=Side.SELL, pair="BTCZAR"))
    assert sell["feeCurrency"] == "ZAR"
    assert sell["averagePrice"] == "0"


def test_history_detail_json_newest_first():
    o = order(status=OrderStatus.CANCELLED, filled_quantity=D("0.0001"), filled_quote=D("6.6391"),
              fee_paid=D("0.0066391"))
    rows = roundtrip(codec.history_detail_json(o))
    assert [r["orderStatusType"] for r in rows] == ["Cancelled", "Placed"]
    assert rows[0]["orderUpdatedAt"] == ISO1 and rows[1]["orderUpdatedAt"] == ISO0
    for r in rows:
        assert set(r) == STATUS_KEYS | {"executedFee", "executedPrice", "executedQuantity"}
    assert rows[0]["executedQuantity"] == "0.0001" and rows[0]["executedPrice"] == "66391"
    assert rows[1]["executedQuantity"] == "0" and rows[1]["remainingQuantity"] == "0.00015062"
    # a placed order (or a failed one) has one record
    assert len(codec.history_detail_json(order(status=OrderStatus.PLACED))) == 1
    assert len(codec.history_detail_json(order(status=OrderStatus.FAILED))) == 1


def account_trade_event(**kw) -> AccountTrade:
    o = order(order_id="247dc157-1", pair="BTCZAR", side=Side.BUY, price=D("9500"), customer_order_id="4")
    base = dict(ts_ms=T0, account="demo", trade=trade(), order=o, side="buy", is_maker=True,
                fee=D("0.00000789"), fee_currency="BTC", history_id="h-1")
    base.update(kw)
    return AccountTrade(**base)


ACCOUNT_TRADE_KEYS = {"price", "quantity", "currencyPair", "tradedAt", "side", "id", "orderId", "customerOrderId",
                      "fee", "feeCurrency", "sequenceId"}


def test_account_trade_json():
    d = roundtrip(codec.account_trade_json(account_trade_event()))
    assert set(d) == ACCOUNT_TRADE_KEYS
    assert d["price"] == "9500" and d["quantity"] == "0.00105263" and d["currencyPair"] == "BTCZAR"
    assert d["tradedAt"] == ISO0 and d["side"] == "buy" and d["id"] == "t-1" and d["orderId"] == "247dc157-1"
    assert d["fee"] == "0.00000789" and d["feeCurrency"] == "BTC" and d["customerOrderId"] == "4"
    # a Side enum for side still goes out as a plain string
    assert roundtrip(codec.account_trade_json(account_trade_event(side=Side.SELL)))["side"] == "sell"


# ------------------------------------------------------------------------------------ account WebSocket


def only(event):
    msgs = roundtrip(codec.account_messages(event))
    assert len(msgs) == 1
    return msgs[0]


def test_order_processed():
    assert only(OrderProcessed(T0, "demo", "o-1", "c-1", True)) == {
        "type": "ORDER_PROCESSED",
        "data": {"orderId": "o-1", "success": True, "failureReason": "", "customerOrderId": "c-1"}}
    m = only(OrderProcessed(T0, "demo", "o-1", None, False, "Post only cancelled as it would have matched"))
    assert m["data"]["success"] is False
    assert m["data"]["failureReason"] == "Post only cancelled as it would have matched"


def test_order_status_update():
    m = only(OrderStatusChanged(T1, "demo", order(status=OrderStatus.CANCELLED)))
    assert m["type"] == "ORDER_STATUS_UPDATE"
    assert set(m) == {"type", "data"}
    # the REST status body plus executedPrice/Quantity/Fee (VALR's stream example)
    assert m["data"] == roundtrip(codec.order_status_stream_json(order(status=OrderStatus.CANCELLED)))
    assert set(m["data"]) == STATUS_KEYS | {"executedPrice", "executedQuantity", "executedFee"}
    assert m["data"]["orderStatusType"] == "Cancelled"


def test_failed_order_and_failed_cancel():
    assert only(OrderFailed(T0, "demo", "o-1", None, "Insufficient balance")) == {
        "type": "FAILED_ORDER", "data": {"orderId": "o-1", "message": "Insufficient balance"}}
    msg = "An error occurred while cancelling your order."
    assert only(CancelFailed(T0, "demo", "o-2", "c-2", msg)) == {
        "type": "FAILED_CANCEL_ORDER", "data": {"orderId": "o-2", "message": msg}}
    by_cid = only(CancelFailed(T0, "demo", None, "c-2", msg))
    assert by_cid["data"]["customerOrderId"] == "c-2"


def test_open_orders_update_is_a_bare_array():
    placed = order(order_id="f1e2d3c4-1", side=Side.BUY, pair="BTCZAR", price=D("950000"),
                   original_quantity=D("0.01"), remaining_quantity=D("0.01"), status=OrderStatus.PLACED,
                   customer_order_id="my-order-1", created_ms=T0, updated_ms=T0)
    m = only(OpenOrdersChanged(T0, "demo", (placed,)))
    assert m["type"] == "OPEN_ORDERS_UPDATE"
    assert isinstance(m["data"], list)
    # exactly VALR's keys: no remainingQuantity, no originalPrice; allowMargin
    assert m["data"] == [{
        "orderId": "f1e2d3c4-1", "side": "buy", "quantity": "0.01",
        "price": "950000", "currencyPair": "BTCZAR", "createdAt": ISO0,
        "updatedAt": ISO0, "originalQuantity": "0.01", "filledPercentage": "0.00",
        "customerOrderId": "my-order-1", "status": "Placed", "type": "limit", "timeInForce": "GTC",
        "allowMargin": False,
    }]
    assert only(OpenOrdersChanged(T0, "demo", ())) == {"type": "OPEN_ORDERS_UPDATE", "data": []}


def test_balance_update_currency_is_an_object():
    b = Balance(currency="BTC", available=D("0.88738681"), reserved=D("0.97803484"))
    m = only(BalanceChanged(T1, "demo", b))
    assert m["type"] == "BALANCE_UPDATE"
    d = m["data"]
    assert d["currency"] == {"symbol": "BTC", "decimalPlaces": 8, "isActive": True, "shortName": "BTC",
                             "longName": "Bitcoin", "supportedWithdrawDecimalPlaces": 8, "collateral": True,
                             "collateralWeight": "0.95"}
    assert d["referenceCurrency"] == "ZAR" and d["totalInReference"] == "0"  # no valuation given
    assert d["available"] == "0.88738681" and d["reserved"] == "0.97803484" and d["total"] == "1.86542165"
    assert d["updatedAt"] == ISO1
    assert {"currency", "available", "reserved", "total", "updatedAt"} <= set(d)
    zar = only(BalanceChanged(T1, "demo", Balance("ZAR", D("10"), D("0"))))["data"]["currency"]
    assert zar["shortName"] == "ZAR" and zar["symbol"] == "R"
    odd = codec.currency_json("DOGE")
    assert odd["shortName"] == "DOGE" and odd["symbol"] == "DOGE"


def hb_fill(record: dict, is_buy: bool):
    """Hummingbot's arithmetic on NEW_ACCOUNT_HISTORY_RECORD (valr_exchange, feeValue branch)."""
    price = D(str(record["additionalInfo"]["costPerCoin"]))
    gross = D(str(record["creditValue"])) + D(record["feeValue"])
    if is_buy:
        return gross, gross * price
    return gross / price, gross


def test_account_trade_messages_buy():
    msgs = roundtrip(codec.account_messages(account_trade_event()))
    assert [m["type"] for m in msgs] == ["NEW_ACCOUNT_TRADE", "NEW_ACCOUNT_HISTORY_RECORD"]
    nat, hist = msgs
    assert nat["currencyPairSymbol"] == "BTCZAR"
    assert set(nat["data"]) == ACCOUNT_TRADE_KEYS - {"sequenceId"}  # VALR's stream example has none
    h = hist["data"]
    assert set(h) == {"id", "transactionType", "debitCurrency", "debitValue", "creditCurrency", "creditValue",
                      "feeCurrency", "feeValue", "eventAt", "additionalInfo"}
    assert h["id"] == "h-1"
    assert h["transactionType"] == {"type": "LIMIT_BUY", "description": "Limit Buy"}
    assert h["debitCurrency"]["shortName"] == "ZAR" and h["debitCurrency"]["symbol"] == "R"
    assert h["creditCurrency"]["shortName"] == "BTC"
    assert h["debitValue"] == "9.999985"  # 9500 * 0.00105263
    assert h["creditValue"] == "0.00104474"  # 0.00105263 - 0.00000789
    assert h["feeValue"] == "0.00000789" and h["feeCurrency"]["shortName"] == "BTC"
    assert h["eventAt"] == ISO0
    assert h["additionalInfo"] == {"costPerCoin": 9500, "costPerCoinSymbol": "R", "currencyPairSymbol": "BTCZAR",
                                   "orderId": "247dc157-1"}
    base, quote = hb_fill(h, is_buy=True)
    assert base == D("0.00105263") and quote == D("9.999985")


def test_account_trade_messages_sell_market_with_spec():
    spec = PairSpec(symbol="ETHUSDC", base="ETH", quote="USDC", tick_size=D("0.01"), min_base=D("0.001"),
                    max_base=D("100"), min_quote=D("1"), max_quote=D("1000000"))
    o = order(order_id="o-9", pair="ETHUSDC", side=Side.SELL, order_type=OrderType.MARKET, price=None)
    ev = account_trade_event(trade=trade(pair="ETHUSDC", price=D("3000.5"), quantity=D("0.2")), order=o,
                             side="sell", fee=D("0.6001"), fee_currency="USDC", history_id="h-9")
    nat, hist = roundtrip(codec.account_messages(ev, spec))
    h = hist["data"]
    assert h["transactionType"]["type"] == "MARKET_SELL"
    assert h["debitCurrency"]["shortName"] == "ETH" and h["debitValue"] == "0.2"
    assert h["creditCurrency"]["shortName"] == "USDC" and h["creditValue"] == "599.4999"
    assert h["additionalInfo"]["costPerCoin"] == 3000.5
    base, quote = hb_fill(h, is_buy=False)
    assert base == D("0.2") and quote == D("600.1")
    assert nat["data"]["side"] == "sell"


def test_fee_in_other_currency_is_added_to_debit():
    ev = account_trade_event(fee=D("0.01"), fee_currency="ZAR")
    h = codec.account_messages(ev)[1]["data"]
    assert h["creditValue"] == "0.00105263" and h["debitValue"] == "10.009985"


def test_non_account_events_give_nothing():
    assert codec.account_messages(PublicTrade(T0, trade())) == []
    assert codec.account_messages(BookChanged(T0, "BTCZAR")) == []
    assert codec.account_messages(object()) == []


def test_split_pair():
    assert codec.split_pair("BTCZAR") == ("BTC", "ZAR")
    assert codec.split_pair("BTCUSDC") == ("BTC", "USDC")
    assert codec.split_pair("USDCZAR") == ("USDC", "ZAR")
    assert codec.split_pair("ETHBTC") == ("ETH", "BTC")
    assert codec.split_pair("USDTUSDC") == ("USDT", "USDC")


def test_simple_ws_messages():
    assert codec.authenticated_message() == {"type": "AUTHENTICATED"}
    assert codec.pong_message() == {"type": "PONG"}
    assert codec.pong_message(no_subscriptions=True) == {"type": "PONG", "message": "NO_SUBSCRIPTIONS"}
    assert codec.subscribed_message("OB_L1_DIFF", "BTCZAR") == {"type": "SUBSCRIBED", "message": "OB_L1_DIFF:BTCZAR"}
    assert codec.unsubscribed_message("BALANCE_UPDATE") == {"type": "UNSUBSCRIBED", "message": "BALANCE_UPDATE"}
    assert codec.ws_error("Unauthorized") == {"type": "ERROR", "message": "Unauthorized"}


def test_place_responses():
    assert codec.place_limit_response("a1b2c3d4", "uuid-1", "my-limit-order-1") == {
        "type": "PLACE_LIMIT_WS_RESPONSE", "clientMsgId": "a1b2c3d4",
        "data": {"orderId": "uuid-1", "customerOrderId": "my-limit-order-1"}}
    assert codec.place_market_response("m1", "uuid-2", None) == {
        "type": "PLACE_MARKET_WS_RESPONSE", "clientMsgId": "m1", "data": {"orderId": "uuid-2"}}
    assert "clientMsgId" not in codec.place_limit_response(None, "uuid-1", None)


def test_place_error_response_and_invalid_request():
    m = codec.place_error_response("PLACE_LIMIT_WS_RESPONSE", "a1", "Validation Failed", {"price": "bad"})
    assert m == {"type": "PLACE_LIMIT_WS_RESPONSE", "clientMsgId": "a1",
                 "error": {"message": "Validation Failed", "validationErrors": {"price": "bad"}}}
    assert "validationErrors" not in codec.place_error_response("PLACE_LIMIT_WS_RESPONSE", "a1", "x", None)["error"]
    err = pytest.raises(CodecError, codec.parse_limit, {**GOOD_LIMIT, "price": "x"}).value
    inv = codec.invalid_request("PLACE_LIMIT_ORDER", "a2", err.message, err.validation_errors)
    assert inv["type"] == "INVALID_PLACE_LIMIT_REQUEST"
    assert inv["clientMsgId"] == "a2"
    assert inv["error"]["validationErrors"] == {"price": err.message}
    assert codec.invalid_request("INVALID_CANCEL_ORDER_REQUEST", "c", "m")["type"] == "INVALID_CANCEL_ORDER_REQUEST"
    assert codec.invalid_request("CANCEL_LIMIT_ORDER", "c", "m")["type"] == "INVALID_CANCEL_ORDER_REQUEST"
    assert codec.invalid_request("PLACE_MARKET_ORDER", "c", "m")["type"] == "INVALID_PLACE_MARKET_REQUEST"


def test_cancel_response_matches_log():
    cid = "HBOTBDEUT63a99fef6df996c4b33822f47a9"
    m = codec.cancel_response("c3d4", None, cid)
    assert m == {"type": "CANCEL_ORDER_WS_RESPONSE", "clientMsgId": "c3d4",
                 "data": {"requested": True, "customerOrderId": cid}}
    assert codec.cancel_response("c", "o-1", None)["data"] == {"requested": True, "orderId": "o-1"}
    assert codec.cancel_response("c", "o-1", cid)["data"] == {"requested": True, "orderId": "o-1",
                                                              "customerOrderId": cid}


def test_cancel_on_disconnect_update():
    assert codec.cancel_on_disconnect_update("x", True) == {
        "type": "CANCEL_ON_DISCONNECT_UPDATE", "clientMsgId": "x", "data": {"cancelOnDisconnect": True}}
    assert codec.cancel_on_disconnect_update(None, False)["data"]["cancelOnDisconnect"] is False


# ------------------------------------------------------------------------------------ trade WebSocket


def test_book_update_message():
    m = roundtrip(codec.book_update_message(book()))
    assert m["type"] == "AGGREGATED_ORDERBOOK_UPDATE"
    assert m["currencyPairSymbol"] == "BTCUSDC"
    assert set(m["data"]) == {"Asks", "Bids", "LastChange", "SequenceNumber"}
    assert m["data"] == roundtrip(codec.orderbook_json(book()))


def test_market_summary_message():
    m = roundtrip(codec.market_summary_message(summary()))
    assert m["type"] == "MARKET_SUMMARY_UPDATE" and m["currencyPairSymbol"] == "BTCZAR"
    # the stream's data names the pair currencyPairSymbol (decided from a capture; docs/valr-fidelity.md)
    assert set(m["data"]) == SUMMARY_KEYS - {"currencyPair"} | {"currencyPairSymbol"}


def test_new_trade_message():
    m = roundtrip(codec.new_trade_message(trade(quantity=D("0.001"))))
    assert m == {"type": "NEW_TRADE", "currencyPairSymbol": "BTCZAR",
                 "data": {"price": "9500", "quantity": "0.001", "currencyPair": "BTCZAR", "tradedAt": ISO0,
                          "takerSide": "buy", "sequenceId": 7, "id": "t-1"}}


def test_trade_bucket_message():
    m = roundtrip(codec.trade_bucket_message("BTCZAR", T0 - T0 % 60000, 60, D("9500"), D("9600.0"), D("9400"),
                                             D("9550"), D("1.50")))
    assert m == {"type": "NEW_TRADE_BUCKET", "currencyPairSymbol": "BTCZAR",
                 "data": {"currencyPairSymbol": "BTCZAR", "bucketPeriodInSeconds": 60,
                          "startTime": "2024-05-08T11:51:00Z", "open": "9500", "high": "9600", "low": "9400",
                          "close": "9550", "volume": "1.5"}}


def test_message_type():
    assert codec.message_type({"type": "OPEN_ORDERS_UPDATE", "data": []}) == "OPEN_ORDERS_UPDATE"
    assert codec.message_type(codec.pong_message()) == "PONG"
    assert codec.message_type([{"orderId": "x"}]) == ""
    assert codec.message_type({"raw": "garbage"}) == ""
    assert codec.message_type({"type": 5}) == ""
    assert codec.message_type(None) == ""
