"""VALR's JSON shapes, in one place: request parsing and response/stream encoding.

Pure functions, no I/O. Field names, capitalisation and value spellings follow
/work/shared/valr-protocol.md (sections 2-4). Where that document marks a detail as
inferred ([INF]) the doc's default is used and a short comment says so.

Conventions:
- decimals go out as plain strings without exponent (``fmt``): "0.001", "1500000";
- timestamps go out via ``replay.clock.iso_ms`` ("2024-05-08T11:51:29.169Z");
- sides are lower case ("buy"/"sell") in REST and stream bodies;
- every encoder returns plain ``dict``/``list`` objects that ``json.dumps`` accepts as is.
"""

from __future__ import annotations

import inspect as _inspect
import re
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any, Mapping

from replay.decimals import exact as _exact

from .clock import iso_ms
from .exchange.events import (
    AccountTrade,
    BalanceChanged,
    CancelFailed,
    OpenOrdersChanged,
    OrderFailed,
    OrderProcessed,
    OrderStatusChanged,
)
from .exchange.model import (
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

__all__ = [
    "CodecError",
    "INVALID_JSON",
    "INVALID_REQUEST",
    "REQUEST_TYPES",
    "RESPONSE_TYPES",
    "INVALID_TYPES",
    "fmt",
    "split_pair",
    "currency_json",
    "public_currency_json",
    "public_trade_json",
    "account_history_json",
    "parse_limit",
    "parse_market",
    "parse_cancel",
    "error_json",
    "time_json",
    "status_json",
    "pair_json",
    "orderbook_json",
    "market_summary_json",
    "balance_json",
    "open_order_json",
    "open_order_stream_json",
    "order_status_json",
    "history_json",
    "history_detail_json",
    "account_trade_json",
    "account_messages",
    "authenticated_message",
    "pong_message",
    "subscribed_message",
    "place_limit_response",
    "place_market_response",
    "place_error_response",
    "cancel_response",
    "cancel_on_disconnect_update",
    "invalid_request",
    "ws_error",
    "book_update_message",
    "market_summary_message",
    "new_trade_message",
    "trade_bucket_message",
    "message_type",
]

# ---------------------------------------------------------------------------------------------
# errors

# Error codes. VALR's documented examples: -113 "Invalid JSON payload" and -1 for a generic
# refusal ("Invalid Order. "). Choice: a payload that is not a JSON object at all gets -113
# (the body is unusable); a payload that is an object but has a bad or missing field gets -1,
# with a message that names the field. No source shows VALR's code for field validation.
INVALID_JSON = -113
INVALID_REQUEST = -1


class CodecError(ValueError):
    """A request payload VALR would refuse. ``field`` names the offending field (or None)."""

    def __init__(self, code: int, message: str, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    @property
    def validation_errors(self) -> dict[str, str] | None:
        """``{field: message}`` for WebSocket ``validationErrors``, or None without a field."""
        return {self.field: self.message} if self.field else None

    def __repr__(self) -> str:
        return f"CodecError(code={self.code}, message={self.message!r}, field={self.field!r})"


# ---------------------------------------------------------------------------------------------
# decimals and small helpers


def fmt(d: Decimal | int | None) -> str | None:
    """A decimal as VALR spells it: plain digits, no exponent, no trailing zeros.

    ``Decimal("1.5E+6") -> "1500000"``, ``Decimal("0.00100") -> "0.001"``, ``None -> None``.
    """
    if d is None:
        return None
    if isinstance(d, bool) or not isinstance(d, (Decimal, int)):
        raise TypeError(f"fmt: expected Decimal, int or None, got {type(d).__name__} {d!r}")
    d = Decimal(d)
    if not d.is_finite():
        raise ValueError(f"fmt: cannot format non-finite decimal {d}")
    if d == 0:
        return "0"  # also turns "-0" and "0E-8" into "0"
    return format(d.normalize(), "f")


def _fmt0(d: Decimal | None) -> str:
    """``fmt`` with None spelled "0" (for price fields clients parse with Decimal/float)."""
    return "0" if d is None else fmt(d)  # type: ignore[return-value]


def _num(d: Decimal) -> int | float:
    """A decimal as a JSON number (VALR sends ``costPerCoin`` as a number)."""
    if d == d.to_integral_value():
        return int(d)
    return float(d)


def _pct2(numerator: Decimal, denominator: Decimal) -> str:
    """A percentage with exactly two decimals ("66.39"), rounded down so that an order that
    is not completely filled never shows "100.00"."""
    if denominator == 0:
        return "0.00"
    value = (numerator / denominator * 100).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
    return f"{value:f}"


# Quote currencies VALR lists, longest first so that "USDC" wins over a shorter suffix.
_QUOTES = ("USDC", "USDT", "ZAR", "BTC", "ETH", "EUR", "USD", "GBP", "BNB", "SOL")


def split_pair(symbol: str) -> tuple[str, str]:
    """``"BTCZAR" -> ("BTC", "ZAR")`` by known quote suffix; used when no PairSpec is at hand."""
    s = symbol.upper()
    for q in sorted(_QUOTES, key=len, reverse=True):
        if s.endswith(q) and len(s) > len(q):
            return s[: -len(q)], q
    # Unknown quote: assume a three-letter quote.
    return s[:-3], s[-3:]


# VALR currency objects: (symbol, longName, decimalPlaces). ZAR's symbol "R" is from the official
# NEW_ACCOUNT_HISTORY_RECORD example ("debitCurrency":{"symbol":"R","shortName":"ZAR"}).
_CURRENCIES: dict[str, tuple[str, str, int]] = {
    "ZAR": ("R", "Rand", 2),
    "BTC": ("BTC", "Bitcoin", 8),
    "ETH": ("ETH", "Ethereum", 18),
    "USDC": ("USDC", "USD Coin", 6),
    "USDT": ("USDT", "Tether", 6),
    "XRP": ("XRP", "Ripple", 6),
    "SOL": ("SOL", "Solana", 9),
    "EUR": ("EUR", "Euro", 2),
}


def currency_json(code: str) -> dict:
    """A VALR currency object as in BALANCE_UPDATE and NEW_ACCOUNT_HISTORY_RECORD.

    Carries both ``symbol`` (read by some bots) and ``shortName`` (read by Hummingbot).
    Unknown currencies get ``symbol == shortName == longName == code`` and 8 decimals [INF].
    """
    symbol, long_name, places = _CURRENCIES.get(code.upper(), (code, code, 8))
    return {
        "symbol": symbol,
        "decimalPlaces": places,
        "isActive": True,
        "shortName": code,
        "longName": long_name,
        "supportedWithdrawDecimalPlaces": places,
    }


def public_currency_json(code: str, fallback_places: int | None = None) -> dict:
    """One GET /v1/public/currencies entry [INF: field set from VALR's docs as remembered:
    symbol, isActive, shortName, longName, decimalPlaces, withdrawalDecimalPlaces; the
    collateral and network fields are left out]. Decimal places as in ``currency_json`` (so
    BALANCE_UPDATE agrees); ``fallback_places`` (e.g. a pair's ``base_decimals``) is used for
    a currency the table does not know, instead of 8."""
    obj = currency_json(code)
    known = code.upper() in _CURRENCIES
    places = obj["decimalPlaces"] if known or fallback_places is None else int(fallback_places)
    return {
        "symbol": obj["symbol"],
        "isActive": True,
        "shortName": obj["shortName"],
        "longName": obj["longName"],
        "decimalPlaces": places,
        "withdrawalDecimalPlaces": places,
    }


# ---------------------------------------------------------------------------------------------
# request parsing

_CUSTOMER_ID_RE = re.compile(r"^[A-Za-z0-9-]{1,50}$")


def _require_object(payload: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise CodecError(
            INVALID_JSON,
            f"Invalid JSON payload: {what} must be a JSON object, got {type(payload).__name__}",
        )
    return payload


def _bad(field: str, problem: str) -> CodecError:
    return CodecError(INVALID_REQUEST, f"{field}: {problem}", field)


def _present(p: Mapping[str, Any], field: str) -> bool:
    return field in p and p[field] is not None


def _string(p: Mapping[str, Any], field: str, *, required: bool) -> str | None:
    if not _present(p, field):
        if required:
            raise _bad(field, "is required")
        return None
    value = p[field]
    if not isinstance(value, str):
        raise _bad(field, f"must be a string, got {type(value).__name__} {value!r}")
    if not value.strip():
        raise _bad(field, "must not be empty")
    return value


def _decimal(p: Mapping[str, Any], field: str, *, required: bool) -> Decimal | None:
    """A positive amount given as a JSON string or number."""
    if not _present(p, field):
        if required:
            raise _bad(field, "is required")
        return None
    raw = p[field]
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise _bad(field, f"must be a number or numeric string, got {type(raw).__name__} {raw!r}")
    try:
        # str() first: a JSON float 0.1 means "0.1", not its binary expansion.
        value = Decimal(raw.strip() if isinstance(raw, str) else str(raw))
    except InvalidOperation:
        raise _bad(field, f"is not a number: {raw!r}") from None
    if not value.is_finite():
        raise _bad(field, f"is not a finite number: {raw!r}")
    if value < 0:
        raise _bad(field, f"must not be negative, got {raw!r}")
    if value == 0:
        raise _bad(field, f"must be greater than zero, got {raw!r}")
    return value


def _bool(p: Mapping[str, Any], field: str, default: bool = False) -> bool:
    if not _present(p, field):
        return default
    value = p[field]
    if not isinstance(value, bool):
        raise _bad(field, f"must be true or false, got {value!r}")
    return value


def _side(p: Mapping[str, Any]) -> Side:
    raw = _string(p, "side", required=True)
    assert raw is not None
    # Docs use BUY/SELL; Hummingbot sends buy/sell and VALR accepts it: any case.
    try:
        return Side(raw.strip().lower())
    except ValueError:
        raise _bad("side", f"must be BUY or SELL, got {raw!r}") from None


def _time_in_force(p: Mapping[str, Any]) -> TimeInForce:
    raw = _string(p, "timeInForce", required=False)
    if raw is None:
        return TimeInForce.GTC
    # [INF] case-insensitive, like side.
    try:
        return TimeInForce(raw.strip().upper())
    except ValueError:
        raise _bad("timeInForce", f"must be GTC, IOC or FOK, got {raw!r}") from None


def _customer_order_id(p: Mapping[str, Any]) -> str | None:
    if "customerOrderId" not in p or p["customerOrderId"] is None:
        return None
    value = p["customerOrderId"]
    if not isinstance(value, str):
        raise _bad("customerOrderId", f"must be a string, got {type(value).__name__} {value!r}")
    if not _CUSTOMER_ID_RE.match(value):
        raise _bad(
            "customerOrderId",
            f"must be 1-50 characters of letters, digits and dashes, got {value!r}",
        )
    return value


def _pair(p: Mapping[str, Any]) -> str:
    pair = _string(p, "pair", required=True)
    assert pair is not None
    # Kept as sent: whether the pair exists is the exchange's question, not the codec's.
    return pair


def _margin_flags(p: Mapping[str, Any]) -> None:
    # allowMargin / reduceOnly are type-checked and otherwise ignored: the simulator is spot only.
    _bool(p, "allowMargin")
    _bool(p, "reduceOnly")


def parse_limit(payload: Any) -> LimitRequest:
    """A POST /v1/orders/limit body or PLACE_LIMIT_ORDER ``payload`` -> LimitRequest.

    Choice on ``baseAmount``: NOT accepted as a synonym of ``quantity``. VALR's limit-order
    docs name only ``quantity``; a connector that sends ``baseAmount`` to the limit endpoint
    should fail here, as it likely would against VALR, instead of passing silently.
    """
    p = _require_object(payload, "limit order")
    pair = _pair(p)
    side = _side(p)
    if not _present(p, "quantity") and _present(p, "baseAmount"):
        raise _bad("quantity", "is required (baseAmount is for market orders)")
    quantity = _decimal(p, "quantity", required=True)
    price = _decimal(p, "price", required=True)
    post_only = _bool(p, "postOnly")
    tif = _time_in_force(p)
    cid = _customer_order_id(p)
    _margin_flags(p)
    assert quantity is not None and price is not None
    return LimitRequest(
        pair=pair,
        side=side,
        quantity=quantity,
        price=price,
        post_only=post_only,
        time_in_force=tif,
        customer_order_id=cid,
    )


def parse_market(payload: Any) -> MarketRequest:
    """A POST /v1/orders/market body or PLACE_MARKET_ORDER ``payload`` -> MarketRequest.

    Exactly one of ``baseAmount`` and ``quoteAmount``. ``quantity`` is accepted as a synonym
    of ``baseAmount`` because Hummingbot sends ``quantity`` to the market endpoint
    (valr-protocol.md section 2 lists both).
    """
    p = _require_object(payload, "market order")
    pair = _pair(p)
    side = _side(p)
    if _present(p, "quantity") and _present(p, "baseAmount"):
        raise _bad("quantity", "give baseAmount or quantity, not both")
    base_field = "quantity" if _present(p, "quantity") else "baseAmount"
    has_base = _present(p, base_field)
    has_quote = _present(p, "quoteAmount")
    if has_base and has_quote:
        raise _bad("quoteAmount", f"give exactly one of {base_field} and quoteAmount, not both")
    if not has_base and not has_quote:
        raise _bad("baseAmount", "one of baseAmount and quoteAmount is required")
    base = _decimal(p, base_field, required=False)
    quote = _decimal(p, "quoteAmount", required=False)
    cid = _customer_order_id(p)
    if _present(p, "timeInForce"):
        _time_in_force(p)  # validated, not modelled: market orders are immediate anyway
    _margin_flags(p)
    return MarketRequest(pair=pair, side=side, base_amount=base, quote_amount=quote, customer_order_id=cid)


def parse_cancel(payload: Any) -> CancelRequest:
    """A DELETE /v1/orders/order body or CANCEL_LIMIT_ORDER ``payload`` -> CancelRequest.

    Exactly one of ``orderId`` and ``customerOrderId``, plus ``pair``.
    """
    p = _require_object(payload, "cancel request")
    pair = _pair(p)
    has_oid = _present(p, "orderId")
    has_cid = _present(p, "customerOrderId")
    if has_oid and has_cid:
        raise _bad("customerOrderId", "give exactly one of orderId and customerOrderId, not both")
    if not has_oid and not has_cid:
        raise _bad("orderId", "one of orderId and customerOrderId is required")
    order_id = _string(p, "orderId", required=False)
    cid = _customer_order_id(p)
    return CancelRequest(pair=pair, order_id=order_id, customer_order_id=cid)


# ---------------------------------------------------------------------------------------------
# REST bodies


def error_json(code: int, message: str) -> dict:
    return {"code": code, "message": message}


def time_json(epoch_ms: int) -> dict:
    # [INF] epochTime in whole seconds (old docs, from memory); time is ISO 8601 (CCXT reads it).
    return {"epochTime": epoch_ms // 1000, "time": iso_ms(epoch_ms)}


def status_json() -> dict:
    return {"status": "online"}


def pair_json(spec: PairSpec) -> dict:
    """One /v1/public/pairs entry. Hummingbot requires ``currencyPairType``."""
    return {
        "symbol": spec.symbol,
        "baseCurrency": spec.base,
        "quoteCurrency": spec.quote,
        "shortName": f"{spec.base}/{spec.quote}",
        "active": spec.active,
        "minBaseAmount": fmt(spec.min_base),
        "maxBaseAmount": fmt(spec.max_base),
        "minQuoteAmount": fmt(spec.min_quote),
        "maxQuoteAmount": fmt(spec.max_quote),
        "tickSize": fmt(spec.tick_size),
        "baseDecimalPlaces": str(spec.base_decimals),  # a string on the wire
        "marginTradingAllowed": False,
        "currencyPairType": "SPOT",
    }


def _level_json(level: BookLevel, side: Side, pair: str) -> dict:
    return {
        "side": side.value,
        "quantity": fmt(level.quantity),
        "price": fmt(level.price),
        "currencyPair": pair,
        "orderCount": level.order_count,
    }


def _book_data(book: BookView, depth: int | None) -> dict:
    asks = book.asks if depth is None else book.asks[:depth]
    bids = book.bids if depth is None else book.bids[:depth]
    return {
        "Asks": [_level_json(lv, Side.SELL, book.pair) for lv in asks],
        "Bids": [_level_json(lv, Side.BUY, book.pair) for lv in bids],
        "LastChange": iso_ms(book.last_change_ms),
        "SequenceNumber": book.sequence,
    }


def orderbook_json(book: BookView, depth: int | None = 40) -> dict:
    """GET /v1/public/{pair}/orderbook: capitalised Asks/Bids/LastChange/SequenceNumber, 40 levels."""
    return _book_data(book, depth)


def market_summary_json(s: MarketSummary) -> dict:
    # Missing prices (no trades yet) are sent as "0" [INF]: clients float() these fields.
    return {
        "currencyPairSymbol": s.pair,
        "askPrice": _fmt0(s.ask_price),
        "bidPrice": _fmt0(s.bid_price),
        "lastTradedPrice": _fmt0(s.last_traded_price),
        "previousClosePrice": _fmt0(s.previous_close_price),
        "baseVolume": fmt(s.base_volume),
        "quoteVolume": fmt(s.quote_volume),
        "highPrice": _fmt0(s.high_price),
        "lowPrice": _fmt0(s.low_price),
        "created": iso_ms(s.created_ms),
        "changeFromPrevious": _fmt_change(s.change_from_previous),
    }


def _fmt_change(d: Decimal) -> str:
    return f"{d.quantize(Decimal('0.01')):f}"


def balance_json(b: Balance, updated_ms: int | None = None) -> dict:
    """GET /v1/account/balances entry: ``currency`` is a plain string here.

    ``updated_ms`` defaults to ``b.updated_ms``. Margin fields are "0" (spot only);
    ``totalInReference*``/``referenceCurrency`` are left out [INF]: they need a price
    source the simulator does not have, and no connector here reads them.
    """
    ts = b.updated_ms if updated_ms is None else updated_ms
    return {
        "currency": b.currency,
        "available": fmt(b.available),
        "reserved": fmt(b.reserved),
        "total": fmt(b.total),
        "updatedAt": iso_ms(ts),
        "lendReserved": "0",
        "borrowReserved": "0",
        "borrowedAmount": "0",
    }


def open_order_json(o: OrderView) -> dict:
    """GET /v1/orders/open entry. Lower-case side; customerOrderId only if set."""
    d = {
        "orderId": o.order_id,
        "side": o.side.value,
        "remainingQuantity": fmt(o.remaining_quantity),
        "price": _fmt0(o.price),
        "currencyPair": o.pair,
        "createdAt": iso_ms(o.created_ms),
        "originalQuantity": fmt(o.original_quantity),
        "filledPercentage": _pct2(o.original_quantity - o.remaining_quantity, o.original_quantity),
        "updatedAt": iso_ms(o.updated_ms),
        "status": o.status.value,
        # [INF] "type" uses VALR's orderType spelling ("limit", "post-only limit").
        "type": o.order_type.value,
        "timeInForce": o.time_in_force.value,
        "allowMargin": False,
    }
    if o.customer_order_id is not None:
        d["customerOrderId"] = o.customer_order_id
    return d


def open_order_stream_json(o: OrderView) -> dict:
    """One OPEN_ORDERS_UPDATE entry: the REST open-order shape plus ``quantity`` and
    ``originalPrice`` [INF: doc's recommended payload carries both spellings]."""
    d = open_order_json(o)
    d.pop("allowMargin")
    # [INF] "quantity" taken as the original quantity (the doc's example cannot tell).
    d["quantity"] = fmt(o.original_quantity)
    d["originalPrice"] = _fmt0(o.price)
    return d


def order_status_json(o: OrderView) -> dict:
    """GET /v1/orders/{pair}/orderid/{id} body, also ORDER_STATUS_UPDATE ``data``.

    ``orderStatusType`` is one of the five strings Hummingbot maps (OrderStatus).
    Market orders have no price: ``originalPrice`` is "0" [INF].
    """
    d = {
        "orderId": o.order_id,
        "orderStatusType": o.status.value,
        "currencyPair": o.pair,
        "originalPrice": _fmt0(o.price),
        "remainingQuantity": fmt(o.remaining_quantity),
        "originalQuantity": fmt(o.original_quantity),
        "orderSide": o.side.value,
        "orderType": o.order_type.value,
        "failedReason": o.failed_reason,
        "orderUpdatedAt": iso_ms(o.updated_ms),
        "orderCreatedAt": iso_ms(o.created_ms),
        "timeInForce": o.time_in_force.value,
    }
    if o.customer_order_id is not None:
        d["customerOrderId"] = o.customer_order_id
    return d


def _average_price(o: OrderView) -> Decimal:
    if o.filled_quantity == 0:
        return Decimal(0)
    return o.filled_quote / o.filled_quantity


def _fee_currency(o: OrderView, pair_spec: PairSpec | None = None) -> str:
    # VALR charges spot fees in the currency received: base on a buy, quote on a sell.
    base, quote = (pair_spec.base, pair_spec.quote) if pair_spec else split_pair(o.pair)
    return base if o.side is Side.BUY else quote


def history_json(o: OrderView, pair_spec: PairSpec | None = None) -> dict:
    """One /v1/orders/history (and /history/summary/...) entry.

    The status fields plus ``averagePrice``, ``total`` (quote filled), ``totalFee`` and
    ``feeCurrency`` [INF: field set from VALR's order-history summary docs].
    """
    d = order_status_json(o)
    d["averagePrice"] = fmt(_average_price(o))
    d["total"] = fmt(o.filled_quote)
    d["totalFee"] = fmt(o.fee_paid)
    d["feeCurrency"] = _fee_currency(o, pair_spec)
    return d


def history_detail_json(o: OrderView) -> list[dict]:
    """/v1/orders/history/detail/... : status objects newest first, with executed* fields.

    Built from the order's latest view only: its current state, then (for a limit order that
    got past "Placed") a "Placed" record at creation with nothing executed. Intermediate
    partial fills are not reconstructed [INF].
    """
    latest = order_status_json(o)
    latest["executedQuantity"] = fmt(o.filled_quantity)
    latest["executedPrice"] = fmt(_average_price(o))
    latest["executedFee"] = fmt(o.fee_paid)
    out = [latest]
    if o.order_type is not OrderType.MARKET and o.status not in (OrderStatus.PLACED, OrderStatus.FAILED):
        placed = order_status_json(o)
        placed["orderStatusType"] = OrderStatus.PLACED.value
        placed["remainingQuantity"] = fmt(o.original_quantity)
        placed["failedReason"] = ""
        placed["orderUpdatedAt"] = iso_ms(o.created_ms)
        placed["executedQuantity"] = "0"
        placed["executedPrice"] = "0"
        placed["executedFee"] = "0"
        out.append(placed)
    return out


def _side_str(side: Any) -> str:
    """AccountTrade.side is "buy"/"sell" (or a Side); always a plain lower-case string out."""
    return Side(side.lower() if isinstance(side, str) else side).value


def account_trade_json(e: AccountTrade) -> dict:
    """/v1/account/{pair}/tradehistory entry; also NEW_ACCOUNT_TRADE ``data``.

    Documented: price, quantity, currencyPair, tradedAt, side. [INF] id, orderId,
    customerOrderId (if set), fee, feeCurrency, sequenceId as current clients read them.
    """
    t = e.trade
    d = {
        "price": fmt(t.price),
        "quantity": fmt(t.quantity),
        "currencyPair": t.pair,
        "tradedAt": iso_ms(t.ts_ms),
        "side": _side_str(e.side),
        "sequenceId": t.sequence,
        "id": t.trade_id,
        "orderId": e.order.order_id,
        "fee": fmt(e.fee),
        "feeCurrency": e.fee_currency,
    }
    if e.order.customer_order_id is not None:
        d["customerOrderId"] = e.order.customer_order_id
    return d


# ---------------------------------------------------------------------------------------------
# account WebSocket


def _history_record(e: AccountTrade, pair_spec: PairSpec | None) -> dict:
    return {"type": "NEW_ACCOUNT_HISTORY_RECORD", "data": account_history_json(e, pair_spec)}


def account_history_json(e: AccountTrade, pair_spec: PairSpec | None = None) -> dict:
    """One account transaction-history record for a fill: NEW_ACCOUNT_HISTORY_RECORD ``data``,
    also an entry of GET /v1/account/transactionhistory [INF: the same shape on both; R3 shows
    the currencies as plain strings, the official example as objects, which is kept here]."""
    t = e.trade
    base, quote = (pair_spec.base, pair_spec.quote) if pair_spec else split_pair(t.pair)
    gross_base = t.quantity
    gross_quote = t.price * t.quantity
    is_buy = _side_str(e.side) == Side.BUY.value
    kind = "MARKET" if e.order.order_type is OrderType.MARKET else "LIMIT"
    direction = "BUY" if is_buy else "SELL"
    if is_buy:
        debit_cur, debit, credit_cur, credit = quote, gross_quote, base, gross_base
    else:
        debit_cur, debit, credit_cur, credit = base, gross_base, quote, gross_quote
    # The fee is taken from what is received: creditValue is net of it, as Hummingbot assumes
    # (fill amount = creditValue + feeValue). A fee in another currency is added to the debit.
    if e.fee_currency == credit_cur:
        credit -= e.fee
    elif e.fee_currency == debit_cur:
        debit += e.fee
    return {
        "id": e.history_id,
        "transactionType": {"type": f"{kind}_{direction}", "description": f"{kind.title()} {direction.title()}"},
        "debitCurrency": currency_json(debit_cur),
        "debitValue": fmt(debit),
        "creditCurrency": currency_json(credit_cur),
        "creditValue": fmt(credit),
        "feeCurrency": currency_json(e.fee_currency),
        "feeValue": fmt(e.fee),
        "eventAt": iso_ms(e.ts_ms),
        "additionalInfo": {
            "costPerCoin": _num(t.price),  # a JSON number in VALR's example
            "costPerCoinSymbol": currency_json(quote)["symbol"],
            "currencyPairSymbol": t.pair,
            "orderId": e.order.order_id,
        },
    }


def _balance_update(e: BalanceChanged) -> dict:
    b = e.balance
    return {
        "type": "BALANCE_UPDATE",
        "data": {
            "currency": currency_json(b.currency),
            "available": fmt(b.available),
            "reserved": fmt(b.reserved),
            "total": fmt(b.total),
            "updatedAt": iso_ms(e.ts_ms),
            "lendReserved": "0",
            "borrowCollateralReserved": "0",
            "borrowedAmount": "0",
        },
    }


def account_messages(event: Any, pair_spec: PairSpec | None = None) -> list[dict]:
    """The account-stream messages for one domain event (``[]`` for non-account events).

    ``pair_spec`` (optional) gives the base/quote split for trade events; without it the
    pair symbol is split by known quote currency (``split_pair``).
    """
    if isinstance(event, OrderProcessed):
        # ORDER_PROCESSED: failureReason "" on success (old official docs; R3 shows null).
        return [
            {
                "type": "ORDER_PROCESSED",
                "data": {"orderId": event.order_id, "success": event.success, "failureReason": event.failure_reason},
            }
        ]
    if isinstance(event, OrderStatusChanged):
        return [{"type": "ORDER_STATUS_UPDATE", "data": order_status_json(event.order)}]
    if isinstance(event, OrderFailed):
        return [{"type": "FAILED_ORDER", "data": {"orderId": event.order_id, "message": event.message}}]
    if isinstance(event, CancelFailed):
        data: dict[str, Any] = {"orderId": event.order_id, "message": event.message}
        if event.order_id is None and event.customer_order_id is not None:
            # [INF] a cancel by customerOrderId of an unknown order: name the id we were given.
            data["customerOrderId"] = event.customer_order_id
        return [{"type": "FAILED_CANCEL_ORDER", "data": data}]
    if isinstance(event, OpenOrdersChanged):
        # A bare array (old official docs + client code), not R3's {accountId, orders}.
        return [{"type": "OPEN_ORDERS_UPDATE", "data": [open_order_stream_json(o) for o in event.orders]}]
    if isinstance(event, BalanceChanged):
        return [_balance_update(event)]
    if isinstance(event, AccountTrade):
        return [
            {"type": "NEW_ACCOUNT_TRADE", "currencyPairSymbol": event.trade.pair, "data": account_trade_json(event)},
            _history_record(event, pair_spec),
        ]
    return []


def _with_client_msg_id(msg: dict, client_msg_id: Any) -> dict:
    # [INF] clientMsgId at top level (Python and FORK clients route by it); omitted when the
    # request had none.
    if client_msg_id is not None:
        msg["clientMsgId"] = client_msg_id
    return msg


def authenticated_message() -> dict:
    # [INF] nothing beyond "type" is known.
    return {"type": "AUTHENTICATED"}


def pong_message() -> dict:
    return {"type": "PONG"}


def subscribed_message(subscriptions: list) -> dict:
    # [INF] echo the accepted subscriptions in the request's own shape.
    return {"type": "SUBSCRIBED", "subscriptions": list(subscriptions)}


def _ids(order_id: str | None, customer_order_id: str | None) -> dict:
    d: dict[str, Any] = {}
    if order_id is not None:
        d["orderId"] = order_id
    if customer_order_id is not None:
        d["customerOrderId"] = customer_order_id
    return d


def place_limit_response(client_msg_id: Any, order_id: str, customer_order_id: str | None) -> dict:
    # [INF] data = {"orderId", "customerOrderId"}: an ACK only; the order's fate follows.
    return _with_client_msg_id(
        {"type": "PLACE_LIMIT_WS_RESPONSE", "data": _ids(order_id, customer_order_id)}, client_msg_id
    )


def place_market_response(client_msg_id: Any, order_id: str, customer_order_id: str | None) -> dict:
    return _with_client_msg_id(
        {"type": "PLACE_MARKET_WS_RESPONSE", "data": _ids(order_id, customer_order_id)}, client_msg_id
    )


def place_error_response(
    msg_type: str, client_msg_id: Any, message: str, validation_errors: dict | None = None
) -> dict:
    """An error reply of type ``msg_type`` (e.g. PLACE_LIMIT_WS_RESPONSE) with an ``error`` object."""
    error: dict[str, Any] = {"message": message}
    if validation_errors:
        error["validationErrors"] = dict(validation_errors)
    return _with_client_msg_id({"type": msg_type, "error": error}, client_msg_id)


def cancel_response(client_msg_id: Any, order_id: str | None, customer_order_id: str | None) -> dict:
    """CANCEL_ORDER_WS_RESPONSE ``{"requested": true}``: accepted, not yet cancelled."""
    data: dict[str, Any] = {"requested": True}
    data.update(_ids(order_id, customer_order_id))
    return _with_client_msg_id({"type": "CANCEL_ORDER_WS_RESPONSE", "data": data}, client_msg_id)


def cancel_on_disconnect_update(client_msg_id: Any, enabled: bool) -> dict:
    # [INF] data mirrors the request's payload field.
    return _with_client_msg_id(
        {"type": "CANCEL_ON_DISCONNECT_UPDATE", "data": {"cancelOnDisconnect": bool(enabled)}}, client_msg_id
    )


# Client command type -> success reply type / malformed-request reply type.
REQUEST_TYPES = ("PLACE_LIMIT_ORDER", "PLACE_MARKET_ORDER", "CANCEL_LIMIT_ORDER")
RESPONSE_TYPES = {
    "PLACE_LIMIT_ORDER": "PLACE_LIMIT_WS_RESPONSE",
    "PLACE_MARKET_ORDER": "PLACE_MARKET_WS_RESPONSE",
    "CANCEL_LIMIT_ORDER": "CANCEL_ORDER_WS_RESPONSE",
    "MODIFY_ORDER": "MODIFY_ORDER_WS_RESPONSE",
}
INVALID_TYPES = {
    "PLACE_LIMIT_ORDER": "INVALID_PLACE_LIMIT_REQUEST",
    "PLACE_MARKET_ORDER": "INVALID_PLACE_MARKET_REQUEST",
    "CANCEL_LIMIT_ORDER": "INVALID_CANCEL_ORDER_REQUEST",
    "MODIFY_ORDER": "INVALID_MODIFY_WS_REQUEST",
}


def invalid_request(msg_type: str, client_msg_id: Any, message: str, validation_errors: dict | None = None) -> dict:
    """INVALID_PLACE_LIMIT_REQUEST etc. ``msg_type`` may be the reply type itself or the
    command type (PLACE_LIMIT_ORDER -> INVALID_PLACE_LIMIT_REQUEST).

    [INF] body shape unknown: the same ``error`` object as the placement error reply.
    """
    return place_error_response(INVALID_TYPES.get(msg_type, msg_type), client_msg_id, message, validation_errors)


def ws_error(message: str, code: int | None = None) -> dict:
    # [INF] generic error frame; the Rust bot only checks type == "ERROR".
    data: dict[str, Any] = {"message": message}
    if code is not None:
        data["code"] = code
    return {"type": "ERROR", "data": data}


# ---------------------------------------------------------------------------------------------
# trade WebSocket


def book_update_message(book: BookView, depth: int | None = 20) -> dict:
    """AGGREGATED_ORDERBOOK_UPDATE: a whole top-of-book snapshot (20 levels per the old docs).

    Capitalised Asks/Bids (Hummingbot reads them); LastChange/SequenceNumber in data [INF].
    """
    return {"type": "AGGREGATED_ORDERBOOK_UPDATE", "currencyPairSymbol": book.pair, "data": _book_data(book, depth)}


def market_summary_message(s: MarketSummary) -> dict:
    return {"type": "MARKET_SUMMARY_UPDATE", "currencyPairSymbol": s.pair, "data": market_summary_json(s)}


def new_trade_message(t: Trade) -> dict:
    # id per R3; sequenceId [INF].
    return {
        "type": "NEW_TRADE",
        "currencyPairSymbol": t.pair,
        "data": {
            "price": fmt(t.price),
            "quantity": fmt(t.quantity),
            "currencyPair": t.pair,
            "tradedAt": iso_ms(t.ts_ms),
            "takerSide": t.taker_side.value,
            "sequenceId": t.sequence,
            "id": t.trade_id,
        },
    }


def public_trade_json(t: Trade) -> dict:
    """One GET /v1/public/{pair}/trades entry: NEW_TRADE's ``data`` plus ``quoteVolume``
    (price x quantity) [INF: sequenceId as on the stream]."""
    d = dict(new_trade_message(t)["data"])
    d["quoteVolume"] = fmt(t.price * t.quantity)
    return d


def trade_bucket_message(
    pair: str,
    start_ms: int,
    period_s: int,
    open: Decimal,
    high: Decimal,
    low: Decimal,
    close: Decimal,
    volume: Decimal,
) -> dict:
    return {
        "type": "NEW_TRADE_BUCKET",
        "currencyPairSymbol": pair,
        "data": {
            "currencyPairSymbol": pair,
            "bucketPeriodInSeconds": int(period_s),
            "startTime": iso_ms(start_ms),
            "open": fmt(open),
            "high": fmt(high),
            "low": fmt(low),
            "close": fmt(close),
            "volume": fmt(volume),
        },
    }


# ---------------------------------------------------------------------------------------------
# dispatch


def message_type(msg: Any) -> str:
    """The wire ``type`` of a WebSocket message, for traces; "" when there is none
    (REST bodies, arrays, non-JSON frames)."""
    if isinstance(msg, Mapping):
        t = msg.get("type")
        if isinstance(t, str):
            return t
    return ""


# Every public function formats and computes in the exact decimal context, whatever the
# caller's (see replay/decimals.py: a client library may have lowered the precision).
for _name, _func in list(globals().items()):
    if not _name.startswith("_") and _inspect.isfunction(_func) and _func.__module__ == __name__:
        globals()[_name] = _exact(_func)
del _name, _func
