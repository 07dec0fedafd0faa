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
import zlib
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any, Callable, Mapping, Sequence

from replay.decimals import amount_problem
from replay.decimals import exact as _exact

from .clock import iso_ms
from .exchange.events import (
    AccountTrade,
    BalanceChanged,
    CancelFailed,
    OpenOrdersChanged,
    OrderFailed,
    OrderModified,
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
    ModifyMatchStrategy,
    ModifyRequest,
    OrderStatus,
    OrderType,
    OrderView,
    PairSpec,
    Side,
    StopLimitRequest,
    TimeInForce,
    Trade,
)

#: Every WebSocket message type the fake sends or accepts, as VALR spells it: the one list of them
#: (a ``[latency]`` key in capitals must name one). tests/test_valr_fidelity.py keeps it true: every
#: message the codec builds has its type here, and every type here has a fixture or is a command.
MESSAGE_TYPES = frozenset({
    "AGGREGATED_ORDERBOOK_UPDATE", "AUTHENTICATED", "BALANCE_UPDATE", "BATCH_ORDERS", "BATCH_ORDERS_WS_RESPONSE",
    "CANCEL_LIMIT_ORDER", "CANCEL_ON_DISCONNECT_UPDATE", "CANCEL_ORDER_WS_RESPONSE", "ERROR",
    "FAILED_CANCEL_ORDER", "FAILED_ORDER", "FULL_ORDERBOOK_SNAPSHOT", "FULL_ORDERBOOK_UPDATE",
    "INVALID_BATCH_ORDERS_REQUEST", "INVALID_CANCEL_ORDER_REQUEST", "INVALID_MODIFY_WS_REQUEST",
    "INVALID_PLACE_LIMIT_REQUEST", "INVALID_PLACE_MARKET_REQUEST", "MARKET_SUMMARY_UPDATE", "MARK_PRICE_UPDATE",
    "MODIFY_ORDER", "MODIFY_ORDER_OUTCOME", "MODIFY_ORDER_WS_RESPONSE", "NEW_ACCOUNT_HISTORY_RECORD",
    "NEW_ACCOUNT_TRADE", "NEW_TRADE", "NEW_TRADE_BUCKET", "OB_L1_DIFF", "OB_L1_SNAPSHOT", "OPEN_ORDERS_UPDATE",
    "ORDER_PROCESSED", "ORDER_STATUS_UPDATE", "PLACE_LIMIT_ORDER", "PLACE_LIMIT_WS_RESPONSE", "PLACE_MARKET_ORDER",
    "PLACE_MARKET_WS_RESPONSE", "PONG", "RATE_LIMIT_EXCEEDED", "SUBSCRIBED", "UNSUBSCRIBED",
})

#: ``valuation(currency) -> (referenceCurrency, price in it or None)``: what BALANCE_UPDATE and the
#: balances list need for ``totalInReference`` (the server derives it from its own market).
Valuation = Callable[[str], "tuple[str, Decimal | None]"]

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
    "parse_stop_limit",
    "parse_modify",
    "error_json",
    "time_json",
    "status_json",
    "pair_json",
    "orderbook_json",
    "market_summary_json",
    "mark_price",
    "balance_json",
    "open_order_json",
    "open_order_stream_json",
    "order_status_json",
    "order_status_stream_json",
    "history_json",
    "history_detail_json",
    "account_trade_json",
    "account_trade_stream_json",
    "account_history_rest_json",
    "fee_json",
    "placed_json",
    "account_messages",
    "authenticated_message",
    "pong_message",
    "subscribed_message",
    "unsubscribed_message",
    "place_limit_response",
    "place_market_response",
    "place_error_response",
    "cancel_response",
    "cancel_on_disconnect_update",
    "modify_response",
    "modify_outcome",
    "rate_limit_exceeded",
    "batch_outcome",
    "batch_response",
    "invalid_request",
    "ws_error",
    "book_update_message",
    "market_summary_message",
    "new_trade_message",
    "trade_bucket_message",
    "full_book_message",
    "full_book_checksum",
    "l1_book_message",
    "l1_book_checksum",
    "mark_price_message",
    "iso_s",
    "iso_ns",
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


#: fmt's answers by value: every message spells the same prices and amounts again (in the EXACT
#: context fmt runs in, the spelling depends on the value only: 1.50 and 1.5 are both "1.5")
_FMT: dict[Decimal, str] = {}
_FMT_MAX = 8192


def fmt(d: Decimal | int | None) -> str | None:
    """A decimal as VALR spells it: plain digits, no exponent, no trailing zeros.

    ``Decimal("1.5E+6") -> "1500000"``, ``Decimal("0.00100") -> "0.001"``, ``None -> None``.
    """
    if d is None:
        return None
    if type(d) is Decimal and d.is_finite():  # looking a value up needs no context: only _fmt_exact does
        text = _FMT.get(d)
        if text is None:
            text = _fmt_exact(d)
            if len(_FMT) >= _FMT_MAX:
                _FMT.clear()
            _FMT[d] = text
        return text
    return _fmt_exact(d)


def _fmt_decimal(d: Decimal | int) -> str:
    if isinstance(d, bool) or not isinstance(d, (Decimal, int)):
        raise TypeError(f"fmt: expected Decimal, int or None, got {type(d).__name__} {d!r}")
    d = Decimal(d)
    if not d.is_finite():
        raise ValueError(f"fmt: cannot format non-finite decimal {d}")
    if d == 0:
        return "0"  # also turns "-0" and "0E-8" into "0"
    return format(d.normalize(), "f")


_fmt_exact = _exact(_fmt_decimal)
#: public functions that see to the decimal context themselves (the loop at the end leaves them as they are)
_OWN_CONTEXT = {"fmt"}


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


# VALR currency objects: (symbol, longName, decimalPlaces, collateral, collateralWeight). ZAR's symbol
# "R" is from the official NEW_ACCOUNT_HISTORY_RECORD example ("debitCurrency":{"symbol":"R",
# "shortName":"ZAR"}). Collateral weights: VALR's GET /v1/public/currencies example (BTC "0.95",
# ETH "0.925", ZAR "1", USDC "1") and its currency examples (USDT "0.99"); the others [INF]: not
# collateral, weight "0.0" as VALR's example shows for a non-collateral currency.
_CURRENCIES: dict[str, tuple[str, str, int, bool, str]] = {
    "ZAR": ("R", "Rand", 2, True, "1"),
    "BTC": ("BTC", "Bitcoin", 8, True, "0.95"),
    "ETH": ("ETH", "Ethereum", 18, True, "0.925"),
    "USDC": ("USDC", "USD Coin", 6, True, "1"),
    "USDT": ("USDT", "Tether", 6, True, "0.99"),
    "XRP": ("XRP", "Ripple", 6, False, "0.0"),
    "SOL": ("SOL", "Solana", 9, False, "0.0"),
    "EUR": ("EUR", "Euro", 2, False, "0.0"),
}


def _currency_entry(code: str) -> tuple[str, str, int, bool, str]:
    return _CURRENCIES.get(code.upper(), (code, code, 8, False, "0.0"))


def collateral_weight(code: str) -> Decimal:
    """The currency's collateral weight (0 for a currency that is not collateral)."""
    return Decimal(_currency_entry(code)[4])


def currency_json(code: str) -> dict:
    """A VALR currency object as in BALANCE_UPDATE and NEW_ACCOUNT_HISTORY_RECORD.

    Carries both ``symbol`` (read by some bots) and ``shortName`` (read by Hummingbot), and
    ``collateral`` (a boolean) and ``collateralWeight`` (a string) as VALR's examples since
    17 Nov 2022 do [C-off Postman WebSocket "BALANCE_UPDATE", "NEW_ACCOUNT_HISTORY_RECORD"].
    Unknown currencies get ``symbol == shortName == longName == code`` and 8 decimals [INF].
    """
    symbol, long_name, places, collateral, weight = _currency_entry(code)
    return {
        "symbol": symbol,
        "decimalPlaces": places,
        "isActive": True,
        "shortName": code,
        "longName": long_name,
        "supportedWithdrawDecimalPlaces": places,
        "collateral": collateral,
        "collateralWeight": weight,
    }


def public_currency_json(code: str, fallback_places: int | None = None) -> dict:
    """One GET /v1/public/currencies entry [C-off Postman "Currencies": symbol, isActive,
    shortName, longName, decimalPlaces and withdrawalDecimalPlaces as *strings*, collateral,
    collateralWeight; the network fields (defaultNetworkType, supportedNetworks) are left out:
    the simulator has no deposits or withdrawals]. Decimal places as in ``currency_json`` (so
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
        "decimalPlaces": str(places),
        "withdrawalDecimalPlaces": str(places),
        "collateral": obj["collateral"],
        "collateralWeight": obj["collateralWeight"],
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
    problem = amount_problem(value)  # beyond what the engine computes exactly (1e60, 1e-999999999)
    if problem is not None:
        raise _bad(field, problem)
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


def _order_reference(p: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(orderId, customerOrderId) of a request that names one order: exactly one of the two."""
    has_oid = _present(p, "orderId")
    has_cid = _present(p, "customerOrderId")
    if has_oid and has_cid:
        raise _bad("customerOrderId", "give exactly one of orderId and customerOrderId, not both")
    if not has_oid and not has_cid:
        raise _bad("orderId", "one of orderId and customerOrderId is required")
    return _string(p, "orderId", required=False), _customer_order_id(p)


def parse_cancel(payload: Any) -> CancelRequest:
    """A DELETE /v1/orders/order body or CANCEL_LIMIT_ORDER ``payload`` -> CancelRequest.

    Exactly one of ``orderId`` and ``customerOrderId``, plus ``pair``.
    """
    p = _require_object(payload, "cancel request")
    pair = _pair(p)
    order_id, cid = _order_reference(p)
    return CancelRequest(pair=pair, order_id=order_id, customer_order_id=cid)


_STOP_TYPES = {"STOP_LOSS_LIMIT": OrderType.STOP_LOSS_LIMIT, "TAKE_PROFIT_LIMIT": OrderType.TAKE_PROFIT_LIMIT}


def parse_stop_limit(payload: Any) -> StopLimitRequest:
    """A POST /v1/orders/stop/limit body (also a batch PLACE_STOP_LIMIT ``data``) -> StopLimitRequest.

    [C-off Postman "Stop Limit Order V2"]: side, quantity, price, pair, stopPrice, type
    (``STOP_LOSS_LIMIT`` or ``TAKE_PROFIT_LIMIT``), optional customerOrderId and timeInForce.
    """
    p = _require_object(payload, "stop limit order")
    pair = _pair(p)
    side = _side(p)
    quantity = _decimal(p, "quantity", required=True)
    price = _decimal(p, "price", required=True)
    stop = _decimal(p, "stopPrice", required=True)
    kind = _string(p, "type", required=True)
    assert kind is not None and quantity is not None and price is not None and stop is not None
    order_type = _STOP_TYPES.get(kind.strip().upper())
    if order_type is None:
        raise _bad("type", f"must be STOP_LOSS_LIMIT or TAKE_PROFIT_LIMIT, got {kind!r}")
    tif = _time_in_force(p)
    cid = _customer_order_id(p)
    _margin_flags(p)
    return StopLimitRequest(pair=pair, side=side, quantity=quantity, price=price, stop_price=stop,
                            order_type=order_type, time_in_force=tif, customer_order_id=cid)


def parse_modify(payload: Any) -> ModifyRequest:
    """A PUT /v1/orders/modify (and v2) body, MODIFY_ORDER ``payload`` or batch MODIFY_ORDER
    ``data`` -> ModifyRequest [C-off Postman "Modify Order V1"]: orderId or customerOrderId,
    pair, modifyMatchStrategy (required), and newPrice and/or one of newRemainingQuantity and
    newTotalQuantity."""
    p = _require_object(payload, "modify request")
    pair = _pair(p)
    order_id, cid = _order_reference(p)
    if _present(p, "newRemainingQuantity") and _present(p, "newTotalQuantity"):
        raise _bad("newTotalQuantity", "give newRemainingQuantity or newTotalQuantity, not both")
    new_price = _decimal(p, "newPrice", required=False)
    new_remaining = _decimal(p, "newRemainingQuantity", required=False)
    new_total = _decimal(p, "newTotalQuantity", required=False)
    if new_price is None and new_remaining is None and new_total is None:
        raise _bad("newPrice", "nothing to modify: give newPrice, newRemainingQuantity or newTotalQuantity")
    raw = _string(p, "modifyMatchStrategy", required=True)
    assert raw is not None
    try:
        strategy = ModifyMatchStrategy(raw.strip().upper())
    except ValueError:
        raise _bad("modifyMatchStrategy", f"must be RETAIN_ORIGINAL, CANCEL_ORIGINAL or REPRICE, got {raw!r}") from None
    return ModifyRequest(pair=pair, order_id=order_id, customer_order_id=cid, new_price=new_price,
                         new_remaining=new_remaining, new_total=new_total, strategy=strategy)


# ---------------------------------------------------------------------------------------------
# REST bodies


def error_json(code: int, message: str) -> dict:
    return {"code": code, "message": message}


def iso_ns(epoch_ms: int) -> str:
    """ISO 8601 with a nanosecond fraction, as VALR's server time shows it
    ("2019-04-15T18:52:41.280178906Z"); the simulator's clock has milliseconds, so the last six
    digits are zeros."""
    return iso_ms(epoch_ms)[:-1] + "000000Z"


def iso_s(epoch_ms: int) -> str:
    """ISO 8601 without a fraction ("2019-04-25T19:41:00Z"), as VALR spells a bucket's startTime
    [C-off Postman WebSocket "NEW_TRADE_BUCKET", and "Price Buckets" responses]."""
    return iso_ms(epoch_ms)[:-5] + "Z"


def time_json(epoch_ms: int) -> dict:
    """GET /v1/public/time: ``epochTime`` in whole seconds, ``time`` in ISO 8601 with a
    nanosecond fraction [C-off per issue 15's comparison with VALR's Postman "Server Time"
    example, "...41.280178906Z"]."""
    return {"epochTime": epoch_ms // 1000, "time": iso_ns(epoch_ms)}


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


def mark_price(s: MarketSummary) -> Decimal | None:
    """VALR's ``markPrice``: "the median of last traded, best bid and best ask" [C-off Postman
    "Market Summary" description]; with one of them missing, the median (mean) of the others
    [INF]; None when there is none."""
    values = sorted(v for v in (s.last_traded_price, s.bid_price, s.ask_price) if v is not None)
    if not values:
        return None
    if len(values) % 2:
        return values[len(values) // 2]
    mid = len(values) // 2
    return (values[mid - 1] + values[mid]) / 2


def market_summary_json(s: MarketSummary, pair_key: str = "currencyPair") -> dict:
    """A market summary: GET /v1/public/marketsummary entries and /v1/public/{pair}/marketsummary
    (``pair_key`` "currencyPair" [C-off Postman "Market Summary": captured responses]), and
    MARKET_SUMMARY_UPDATE ``data`` (``pair_key`` "currencyPairSymbol": decided from a capture of
    the live stream, see ``market_summary_message``). Missing prices (no trades yet) are sent as
    "0", as VALR's own example does for markPrice [C-off]."""
    return {
        pair_key: s.pair,
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
        "markPrice": _fmt0(mark_price(s)),
    }


def _fmt_change(d: Decimal) -> str:
    return f"{d.quantize(Decimal('0.01')):f}"


def _reference(b: Balance, valuation: Valuation | None) -> dict:
    """``totalInReference``, ``totalInReferenceWeighted`` (times the collateral weight) and
    ``referenceCurrency`` [C-off: BALANCE_UPDATE example; balances example per CCXT]. The value
    is the server's own price of the currency in the reference currency; "0" when it has none
    [INF]. Without a ``valuation`` the reference currency is ZAR and every value "0" [INF]."""
    ref, price = valuation(b.currency) if valuation is not None else ("ZAR", None)
    total = b.total * price if price is not None else Decimal(0)
    return {
        "totalInReference": fmt(total),
        "totalInReferenceWeighted": fmt(total * collateral_weight(b.currency)),
        "referenceCurrency": ref,
    }


def balance_json(b: Balance, updated_ms: int | None = None, valuation: Valuation | None = None) -> dict:
    """GET /v1/account/balances entry: ``currency`` is a plain string here.

    ``updated_ms`` defaults to ``b.updated_ms``. Margin fields are "0" (spot only); the
    reference fields as ``_reference``.
    """
    ts = b.updated_ms if updated_ms is None else updated_ms
    d = {
        "currency": b.currency,
        "available": fmt(b.available),
        "reserved": fmt(b.reserved),
        "total": fmt(b.total),
        "updatedAt": iso_ms(ts),
        "lendReserved": "0",
        "borrowReserved": "0",
        "borrowedAmount": "0",
    }
    d.update(_reference(b, valuation))
    return d


def open_order_json(o: OrderView) -> dict:
    """GET /v1/orders/open entry. Lower-case side; customerOrderId only if set; stopPrice only
    for a stop-limit order [INF]."""
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
    if o.stop_price is not None:
        d["stopPrice"] = fmt(o.stop_price)
    return d


def open_order_stream_json(o: OrderView) -> dict:
    """One OPEN_ORDERS_UPDATE entry, with exactly VALR's keys [C-off Postman WebSocket
    "OPEN_ORDERS_UPDATE : New order added to open orders"]: orderId, side, quantity, price,
    currencyPair, createdAt, originalQuantity, filledPercentage, customerOrderId (only if set),
    type, status, updatedAt, timeInForce, allowMargin. No remainingQuantity, no originalPrice.

    ``quantity`` is the *remaining* quantity [INF, medium]: the example cannot tell (nothing is
    filled there), but it carries originalQuantity beside it, as GET /v1/orders/open carries
    remainingQuantity beside originalQuantity. stopPrice for a stop-limit order [INF].
    """
    d: dict[str, Any] = {
        "orderId": o.order_id,
        "side": o.side.value,
        "quantity": fmt(o.remaining_quantity),
        "price": _fmt0(o.price),
        "currencyPair": o.pair,
        "createdAt": iso_ms(o.created_ms),
        "originalQuantity": fmt(o.original_quantity),
        "filledPercentage": _pct2(o.original_quantity - o.remaining_quantity, o.original_quantity),
    }
    if o.customer_order_id is not None:
        d["customerOrderId"] = o.customer_order_id
    d.update({
        "type": o.order_type.value,
        "status": o.status.value,
        "updatedAt": iso_ms(o.updated_ms),
        "timeInForce": o.time_in_force.value,
        "allowMargin": False,
    })
    if o.stop_price is not None:
        d["stopPrice"] = fmt(o.stop_price)
    return d


def order_status_json(o: OrderView) -> dict:
    """GET /v1/orders/{pair}/orderid/{id} (and customerorderid) body [C-off Postman "Order
    Status": captured responses; no executed* fields there].

    ``orderStatusType`` is one of the five strings Hummingbot maps (OrderStatus), or "Active"
    for a waiting stop-limit order. Market orders have no price: ``originalPrice`` is "0"
    [C-off: VALR's failed market order shows "0"]. customerOrderId only if set, stopPrice only
    for a stop-limit order, as VALR's examples show.
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
    }
    if o.customer_order_id is not None:
        d["customerOrderId"] = o.customer_order_id
    if o.stop_price is not None:
        d["stopPrice"] = fmt(o.stop_price)
    d["timeInForce"] = o.time_in_force.value
    return d


def _executed(o: OrderView) -> dict:
    """Cumulative ``executedPrice`` (average), ``executedQuantity`` and ``executedFee`` [C-off
    Postman WebSocket "ORDER_STATUS_UPDATE": after one fill of 0.0001 at 114950 the example
    shows executedQuantity "0.0001", executedPrice "114950", executedFee "0.009196"]."""
    return {
        "executedPrice": fmt(_average_price(o)),
        "executedQuantity": fmt(o.filled_quantity),
        "executedFee": fmt(o.fee_paid),
    }


def order_status_stream_json(o: OrderView, status: str | None = None) -> dict:
    """ORDER_STATUS_UPDATE ``data``: the REST status body plus executedPrice, executedQuantity
    and executedFee, before timeInForce [C-off Postman WebSocket "ORDER_STATUS_UPDATE"].
    ``status`` overrides ``orderStatusType`` ("Order Modified" after a modification)."""
    d = order_status_json(o)
    tif = d.pop("timeInForce")
    if status is not None:
        d["orderStatusType"] = status
    d.update(_executed(o))
    d["timeInForce"] = tif
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
    """One /v1/orders/history (and /history/summary/...) entry [C-off Postman "Order History":
    captured response]: the status fields plus ``averagePrice``, ``total`` (quote filled),
    ``totalExecutedQuantity`` (added by VALR on 21 Jan 2025), ``totalFee`` and ``feeCurrency``,
    in VALR's order.
    """
    st = order_status_json(o)
    d: dict[str, Any] = {
        "orderId": st["orderId"],
        "orderStatusType": st["orderStatusType"],
        "currencyPair": st["currencyPair"],
        "averagePrice": fmt(_average_price(o)),
        "originalPrice": st["originalPrice"],
        "remainingQuantity": st["remainingQuantity"],
        "originalQuantity": st["originalQuantity"],
        "total": fmt(o.filled_quote),
        "totalExecutedQuantity": fmt(o.filled_quantity),
        "totalFee": fmt(o.fee_paid),
        "feeCurrency": _fee_currency(o, pair_spec),
    }
    for key in ("orderSide", "orderType", "failedReason", "orderUpdatedAt", "orderCreatedAt",
                "customerOrderId", "stopPrice", "timeInForce"):
        if key in st:
            d[key] = st[key]
    return d


def history_detail_json(o: OrderView) -> list[dict]:
    """/v1/orders/history/detail/... : status objects newest first, with executed* fields.

    Built from the order's latest view only: its current state, then (for a limit order that
    got past "Placed") a "Placed" record at creation with nothing executed. Intermediate
    partial fills are not reconstructed [INF].
    """
    def with_executed(d: dict, executed: dict) -> dict:
        tif = d.pop("timeInForce")
        d.update(executed)
        d["timeInForce"] = tif
        return d

    # VALR's order [C-off Postman "Order History Detail"]: ..., customerOrderId, executedFee,
    # executedPrice, executedQuantity, stopPrice, timeInForce.
    def executed(fee: str, price: str, qty: str) -> dict:
        return {"executedFee": fee, "executedPrice": price, "executedQuantity": qty}

    def ordered(d: dict) -> dict:
        stop = d.pop("stopPrice", None)
        tif = d.pop("timeInForce")
        ex = {k: d.pop(k) for k in ("executedFee", "executedPrice", "executedQuantity")}
        d.update(ex)
        if stop is not None:
            d["stopPrice"] = stop
        d["timeInForce"] = tif
        return d

    latest = ordered(with_executed(order_status_json(o), executed(
        fmt(o.fee_paid), fmt(_average_price(o)), fmt(o.filled_quantity))))  # type: ignore[arg-type]
    out = [latest]
    if o.order_type is not OrderType.MARKET and o.status not in (OrderStatus.PLACED, OrderStatus.FAILED,
                                                                 OrderStatus.ACTIVE):
        placed = order_status_json(o)
        placed["orderStatusType"] = OrderStatus.PLACED.value
        placed["remainingQuantity"] = fmt(o.original_quantity)
        placed["failedReason"] = ""
        placed["orderUpdatedAt"] = iso_ms(o.created_ms)
        out.append(ordered(with_executed(placed, executed("0", "0", "0"))))
    return out


def _side_str(side: Any) -> str:
    """AccountTrade.side is "buy"/"sell" (or a Side); always a plain lower-case string out."""
    return Side(side.lower() if isinstance(side, str) else side).value


def account_trade_json(e: AccountTrade) -> dict:
    """GET /v1/account/tradehistory and /v1/account/{pair}/tradehistory entry [C-off Postman
    "Trade History": captured response]: price, quantity, currencyPair, tradedAt, side,
    sequenceId, id, orderId, fee, feeCurrency; customerOrderId when the order has one [INF: the
    example's order had none; VALR's WebSocket trade shows it]."""
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


def account_trade_stream_json(e: AccountTrade) -> dict:
    """NEW_ACCOUNT_TRADE ``data`` [C-off Postman WebSocket "NEW_ACCOUNT_TRADE"]: price, quantity,
    currencyPair, tradedAt, side, orderId, id, fee, feeCurrency, customerOrderId (when set). No
    sequenceId: VALR's stream example has none (its REST trade history has one)."""
    rest = account_trade_json(e)
    d = {k: rest[k] for k in ("price", "quantity", "currencyPair", "tradedAt", "side", "orderId", "id", "fee",
                              "feeCurrency")}
    if "customerOrderId" in rest:
        d["customerOrderId"] = rest["customerOrderId"]
    return d


def fee_json(spec: PairSpec) -> dict:
    """One GET /v1/account/fees/trade entry [C-off Postman "Trade Fees"]: the pair's maker and
    taker fees as percentages. ``simplePercentage`` (VALR's Simple Buy/Sell, which the simulator
    does not have) is VALR's example value, "1.6" [INF]."""
    return {
        "currencyPair": spec.symbol,
        "makerPercentage": fmt(spec.maker_fee * 100),
        "takerPercentage": fmt(spec.taker_fee * 100),
        "simplePercentage": "1.6",
    }


def placed_json(order_id: str, customer_order_id: str | None) -> dict:
    """The 202 body of POST /v1/orders/limit, /v1/orders/market and /v1/orders/stop/limit:
    ``{"id", "customerOrderId"}`` [C-off Postman "Limit Order V1", "Market Order V1", "Stop Limit
    Order V1": captured responses]; customerOrderId only when the request gave one [INF]."""
    d: dict[str, Any] = {"id": order_id}
    if customer_order_id is not None:
        d["customerOrderId"] = customer_order_id
    return d


def id_json(the_id: str | None) -> dict:
    """``{"id": ...}``: the body of the v2 order routes (201), of PUT /v1/orders/modify (202,
    the modifyRequestId) and of DELETE /v2/orders/order (200) [C-off Postman: "Limit Order V2",
    "Stop Limit Order V2", "Modify Order V1"/"V2"; C-doc3 for the v2 cancel]."""
    return {"id": the_id}


def cancelled_ids_json(order_ids: Sequence[str]) -> list[dict]:
    """DELETE /v1/orders/{pair} (and /v1/orders) 200 body: ``[{"orderId": ...}, ...]`` [C-doc3]."""
    return [{"orderId": i} for i in order_ids]


def v2_failure_json(code: int, message: str, order_id: str | None = None) -> dict:
    """The 201 body of a v2 placement refused at once: ``{"orderId", "code", "message"}``
    [C-doc3]; orderId null when no order was created [INF]."""
    return {"orderId": order_id, "code": code, "message": message}


# ---------------------------------------------------------------------------------------------
# account WebSocket


def _history_record(e: AccountTrade, pair_spec: PairSpec | None) -> dict:
    return {"type": "NEW_ACCOUNT_HISTORY_RECORD", "data": account_history_json(e, pair_spec)}


def account_history_rest_json(e: AccountTrade, pair_spec: PairSpec | None = None) -> dict:
    """One GET /v1/account/transactionhistory entry for a fill [C-off Postman "Transaction
    History": captured responses]: the NEW_ACCOUNT_HISTORY_RECORD fields, with the currencies
    as plain codes ("debitCurrency": "USDC"), not objects. (This settles the question in
    valr-protocol.md: R3's strings are the REST shape, the objects the stream's.)"""
    d = account_history_json(e, pair_spec)
    for key in ("debitCurrency", "creditCurrency", "feeCurrency"):
        d[key] = d[key]["shortName"]
    return d


def account_history_json(e: AccountTrade, pair_spec: PairSpec | None = None) -> dict:
    """One account transaction-history record for a fill: NEW_ACCOUNT_HISTORY_RECORD ``data``
    [C-off Postman WebSocket "NEW_ACCOUNT_HISTORY_RECORD"]: currencies as objects (with
    collateral and collateralWeight), ``costPerCoin`` a JSON number, ``id`` last."""
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
        "id": e.history_id,
    }


def balance_update_message(b: Balance, updated_ms: int, valuation: Valuation | None = None) -> dict:
    """BALANCE_UPDATE [C-off Postman WebSocket "BALANCE_UPDATE"]: the currency as an object,
    margin fields "0" (spot only), the reference fields as ``_reference``. Also what the account
    stream sends, one per asset held, when a connection is authenticated."""
    data = {
        "currency": currency_json(b.currency),
        "available": fmt(b.available),
        "reserved": fmt(b.reserved),
        "total": fmt(b.total),
        "updatedAt": iso_ms(updated_ms),
        "lendReserved": "0",
        "borrowCollateralReserved": "0",
        "borrowedAmount": "0",
    }
    data.update(_reference(b, valuation))
    return {"type": "BALANCE_UPDATE", "data": data}


def open_orders_message(orders: Sequence[OrderView]) -> dict:
    """OPEN_ORDERS_UPDATE: the full list, a bare array (VALR's example and client code), not
    R3's {accountId, orders}."""
    return {"type": "OPEN_ORDERS_UPDATE", "data": [open_order_stream_json(o) for o in orders]}


def modify_outcome(e: OrderModified) -> dict:
    """MODIFY_ORDER_OUTCOME [C-off Postman WebSocket "MODIFY_ORDER_OUTCOME"]: success, orderId,
    customerOrderId, modifyRequestId. A failed modification adds ``failureReason`` [INF: VALR's
    only example is a success]."""
    data: dict[str, Any] = {"success": e.success, "orderId": e.order.order_id}
    if e.order.customer_order_id is not None:
        data["customerOrderId"] = e.order.customer_order_id
    data["modifyRequestId"] = e.modify_request_id
    if not e.success:
        data["failureReason"] = e.failure_reason
    return {"type": "MODIFY_ORDER_OUTCOME", "data": data}


#: ORDER_STATUS_UPDATE's orderStatusType for an order just modified [C-off Postman WebSocket
#: "OPEN_ORDERS_UPDATE : Open order modified", and the status list under ORDER_STATUS_UPDATE]
ORDER_MODIFIED = "Order Modified"


def account_messages(event: Any, pair_spec: PairSpec | None = None,
                     valuation: Valuation | None = None) -> list[dict]:
    """The account-stream messages for one domain event (``[]`` for non-account events).

    ``pair_spec`` (optional) gives the base/quote split for trade events; without it the
    pair symbol is split by known quote currency (``split_pair``). ``valuation`` prices
    balances in the reference currency (``_reference``).
    """
    if isinstance(event, OrderProcessed):
        # ORDER_PROCESSED [C-off Postman WebSocket "ORDER_PROCESSED"]: failureReason "" on success
        # (R3 shows null), customerOrderId echoed when the order has one.
        data: dict[str, Any] = {"orderId": event.order_id, "success": event.success,
                                "failureReason": event.failure_reason}
        if event.customer_order_id is not None:
            data["customerOrderId"] = event.customer_order_id
        return [{"type": "ORDER_PROCESSED", "data": data}]
    if isinstance(event, OrderStatusChanged):
        return [{"type": "ORDER_STATUS_UPDATE", "data": order_status_stream_json(event.order)}]
    if isinstance(event, OrderModified):
        if not event.success:
            return [modify_outcome(event)]
        return [{"type": "ORDER_STATUS_UPDATE", "data": order_status_stream_json(event.order, ORDER_MODIFIED)},
                modify_outcome(event)]
    if isinstance(event, OrderFailed):
        return [{"type": "FAILED_ORDER", "data": {"orderId": event.order_id, "message": event.message}}]
    if isinstance(event, CancelFailed):
        data = {"orderId": event.order_id, "message": event.message}
        if event.order_id is None and event.customer_order_id is not None:
            # [INF] a cancel by customerOrderId of an unknown order: name the id we were given.
            data["customerOrderId"] = event.customer_order_id
        return [{"type": "FAILED_CANCEL_ORDER", "data": data}]
    if isinstance(event, OpenOrdersChanged):
        return [open_orders_message(event.orders)]
    if isinstance(event, BalanceChanged):
        return [balance_update_message(event.balance, event.ts_ms, valuation)]
    if isinstance(event, AccountTrade):
        return [
            {"type": "NEW_ACCOUNT_TRADE", "currencyPairSymbol": event.trade.pair,
             "data": account_trade_stream_json(event)},
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


#: the PONG body on a trade stream with no subscription [C-off Postman "WebSocket API": "On the
#: Trade WebSocket the PONG message body will be NO_SUBSCRIPTIONS if you are not subscribed to any
#: message types"; the live stream's spelling, {"type":"PONG","message":"NO_SUBSCRIPTIONS"}, from a
#: published capture, see docs/valr-fidelity.md]
NO_SUBSCRIPTIONS = "NO_SUBSCRIPTIONS"


def pong_message(no_subscriptions: bool = False) -> dict:
    if no_subscriptions:
        return {"type": "PONG", "message": NO_SUBSCRIPTIONS}
    return {"type": "PONG"}


def subscribed_message(event: str, pair: str | None = None) -> dict:
    """One SUBSCRIBED per event and pair, ``message`` "EVENT:PAIR" (the live trade stream's
    acknowledgement, from a published capture; VALR's docs show none) [C-capture]. An account
    event (no pair) is acknowledged as "EVENT" [INF]."""
    return {"type": "SUBSCRIBED", "message": event if pair is None else f"{event}:{pair}"}


def unsubscribed_message(event: str, pair: str | None = None) -> dict:
    """UNSUBSCRIBED, in SUBSCRIBED's shape [C-capture for the trade stream; INF for the account]."""
    return {"type": "UNSUBSCRIBED", "message": event if pair is None else f"{event}:{pair}"}


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
    """CANCEL_ORDER_WS_RESPONSE ``{"requested": true, "orderId", "customerOrderId"}``: accepted,
    not yet cancelled. Both ids as far as known, whichever the request named [C-off Postman
    WebSocket "CANCEL_LIMIT_ORDER": a cancel by orderId answered with the order's
    customerOrderId too]."""
    data: dict[str, Any] = {"requested": True}
    data.update(_ids(order_id, customer_order_id))
    return _with_client_msg_id({"type": "CANCEL_ORDER_WS_RESPONSE", "data": data}, client_msg_id)


def cancel_on_disconnect_update(client_msg_id: Any, enabled: bool) -> dict:
    """CANCEL_ON_DISCONNECT_UPDATE ``{"cancelOnDisconnect": <bool>}``.

    Decision (evidence conflicts, confidence low-medium): a JSON boolean. VALR's one example of
    this reply shows the string "true" [C-off Postman WebSocket "CANCEL_ON_DISCONNECT"], but
    the request it answers carries a boolean in the same example; VALR's hand-written examples
    quote booleans elsewhere where the field is a boolean (a market order's "allowMargin":
    "false", a batch order's "postOnly": "false"), while its other replies show unquoted
    booleans ("success": true, "allowMargin": false, "requested": true). No client or capture
    shows the wire. A client should accept both: "false" as a string is truthy.
    """
    return _with_client_msg_id(
        {"type": "CANCEL_ON_DISCONNECT_UPDATE", "data": {"cancelOnDisconnect": bool(enabled)}}, client_msg_id
    )


def modify_response(client_msg_id: Any, modify_request_id: str, order_id: str | None,
                    customer_order_id: str | None) -> dict:
    """MODIFY_ORDER_WS_RESPONSE [C-off Postman WebSocket "MODIFY_ORDER"]: modifyRequestId,
    requested (true), orderId and customerOrderId as far as known. Accepted, not yet applied:
    the outcome follows as MODIFY_ORDER_OUTCOME."""
    data: dict[str, Any] = {"modifyRequestId": modify_request_id, "requested": True}
    data.update(_ids(order_id, customer_order_id))
    return _with_client_msg_id({"type": "MODIFY_ORDER_WS_RESPONSE", "data": data}, client_msg_id)


def rate_limit_exceeded(request_type: str, client_msg_id: Any) -> dict:
    """RATE_LIMIT_EXCEEDED ``{"data": {"requestType": <the command's type>}, "clientMsgId"}``
    [C-off Postman WebSocket, each write command's "request exceeds rate limit" example]."""
    return _with_client_msg_id({"type": "RATE_LIMIT_EXCEEDED", "data": {"requestType": request_type}},
                               client_msg_id)


def batch_outcome(request_type: str, order_id: str | None = None, customer_order_id: str | None = None,
                  error: tuple[int, str] | None = None) -> dict:
    """One entry of a batch's ``outcomes`` [C-off Postman "Batch Orders": captured response]:
    ``{"accepted": true, "orderId", "customerOrderId" (when given), "requestType"}`` or
    ``{"accepted": false, "error": {"code", "message"}}``."""
    if error is not None:
        return {"accepted": False, "error": {"code": error[0], "message": error[1]}}
    d: dict[str, Any] = {"accepted": True, "orderId": order_id}
    if customer_order_id is not None:
        d["customerOrderId"] = customer_order_id
    d["requestType"] = request_type
    return d


def batch_response(outcomes: list[dict], batch_id: int) -> dict:
    """POST /v1/batch/orders 200 body: ``{"outcomes": [...], "batchId": <a number>}`` [C-off]."""
    return {"outcomes": outcomes, "batchId": batch_id}


def batch_ws_response(client_msg_id: Any, outcomes: list[dict], batch_id: int) -> dict:
    """BATCH_ORDERS_WS_RESPONSE: the reply to BATCH_ORDERS, ``data`` in the REST batch's shape
    [INF, low: VALR documents no success reply to BATCH_ORDERS, only RATE_LIMIT_EXCEEDED]."""
    return _with_client_msg_id({"type": "BATCH_ORDERS_WS_RESPONSE", "data": batch_response(outcomes, batch_id)},
                               client_msg_id)


# Client command type -> success reply type / malformed-request reply type.
REQUEST_TYPES = ("PLACE_LIMIT_ORDER", "PLACE_MARKET_ORDER", "CANCEL_LIMIT_ORDER", "MODIFY_ORDER", "BATCH_ORDERS")
RESPONSE_TYPES = {
    "PLACE_LIMIT_ORDER": "PLACE_LIMIT_WS_RESPONSE",
    "PLACE_MARKET_ORDER": "PLACE_MARKET_WS_RESPONSE",
    "CANCEL_LIMIT_ORDER": "CANCEL_ORDER_WS_RESPONSE",
    "MODIFY_ORDER": "MODIFY_ORDER_WS_RESPONSE",
    # [INF] VALR documents no success reply to BATCH_ORDERS; this one carries the batch's
    # outcomes in the REST batch shape.
    "BATCH_ORDERS": "BATCH_ORDERS_WS_RESPONSE",
}
INVALID_TYPES = {
    "PLACE_LIMIT_ORDER": "INVALID_PLACE_LIMIT_REQUEST",
    "PLACE_MARKET_ORDER": "INVALID_PLACE_MARKET_REQUEST",
    "CANCEL_LIMIT_ORDER": "INVALID_CANCEL_ORDER_REQUEST",
    "MODIFY_ORDER": "INVALID_MODIFY_WS_REQUEST",
    "BATCH_ORDERS": "INVALID_BATCH_ORDERS_REQUEST",  # [INF]
}


def invalid_request(msg_type: str, client_msg_id: Any, message: str, validation_errors: dict | None = None) -> dict:
    """INVALID_PLACE_LIMIT_REQUEST etc. ``msg_type`` may be the reply type itself or the
    command type (PLACE_LIMIT_ORDER -> INVALID_PLACE_LIMIT_REQUEST).

    [INF] body shape unknown: the same ``error`` object as the placement error reply.
    """
    return place_error_response(INVALID_TYPES.get(msg_type, msg_type), client_msg_id, message, validation_errors)


def ws_error(message: str) -> dict:
    """``{"type": "ERROR", "message": ...}``: the live trade stream's error frame, from a published
    capture (e.g. "Invalid message - Invalid JSON") [C-capture]; the account stream's is not
    documented and takes the same shape [INF]."""
    return {"type": "ERROR", "message": message}


#: the live trade stream's text for a frame that is not JSON [C-capture]
INVALID_JSON_MESSAGE = "Invalid message - Invalid JSON"


# ---------------------------------------------------------------------------------------------
# trade WebSocket


def book_update_message(book: BookView, depth: int | None = 40) -> dict:
    """AGGREGATED_ORDERBOOK_UPDATE: a whole top-of-book snapshot, "the top 40 bids and asks"
    [C-off Postman WebSocket "Trade"]; capitalised Asks/Bids, LastChange (ISO) and
    SequenceNumber in data [C-off: the example]."""
    return {"type": "AGGREGATED_ORDERBOOK_UPDATE", "currencyPairSymbol": book.pair, "data": _book_data(book, depth)}


def market_summary_message(s: MarketSummary) -> dict:
    """MARKET_SUMMARY_UPDATE.

    Decision (evidence conflicts, confidence medium): ``data`` names the pair
    ``currencyPairSymbol`` and carries ``quoteVolume``, as a published capture of the live
    stream shows (2026; VALR's older docs also spelled it currencyPairSymbol), not
    ``currencyPair`` and no quoteVolume as VALR's current hand-written example does (its REST
    market summaries, captured responses, do say currencyPair, and the REST body here does).
    ``markPrice`` as both show. See docs/valr-fidelity.md.
    """
    return {"type": "MARKET_SUMMARY_UPDATE", "currencyPairSymbol": s.pair,
            "data": market_summary_json(s, "currencyPairSymbol")}


def mark_price_message(pair: str, price: Decimal | None) -> dict:
    """MARK_PRICE_UPDATE ``{"currencyPairSymbol", "data": {"price"}}`` [C-off Postman WebSocket
    "MARK_PRICE_UPDATE"; the live stream's shape agrees, from a published capture]."""
    return {"type": "MARK_PRICE_UPDATE", "currencyPairSymbol": pair, "data": {"price": _fmt0(price)}}


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
            "startTime": iso_s(start_ms),  # no fraction [C-off]
            "open": fmt(open),
            "high": fmt(high),
            "low": fmt(low),
            "close": fmt(close),
            "volume": fmt(volume),
        },
    }


def _crc32(parts: Sequence[str]) -> int:
    return zlib.crc32(":".join(parts).encode()) & 0xFFFFFFFF


def _interleave(bids: Sequence[str], asks: Sequence[str], n: int = 25) -> list[str]:
    """Best bid, best ask, next bid, next ask, ... over the first ``n`` of each side."""
    out: list[str] = []
    for i in range(n):
        if i < len(bids):
            out.append(bids[i])
        if i < len(asks):
            out.append(asks[i])
    return out


#: One side of a non-aggregated book: ``[(price, [(orderId, quantity), ...]), ...]``, best first.
FullSide = Sequence[tuple[Decimal, Sequence[tuple[str, Decimal]]]]


def full_book_checksum(bids: FullSide, asks: FullSide) -> int:
    """FULL_ORDERBOOK_UPDATE's ``Checksum`` [C-off Postman WebSocket "Trade"]: the unsigned CRC32
    of the 25 best bid orders and 25 best ask orders, interleaved (best bid, best ask, ...), each
    "orderId:quantity" with the quantity as sent, joined by ":"."""

    def best(side: FullSide) -> list[str]:
        out: list[str] = []
        for _price, orders in side:
            for oid, qty in orders:
                if len(out) == 25:
                    return out
                out.append(f"{oid}:{fmt(qty)}")
        return out

    return _crc32(_interleave(best(bids), best(asks)))


def full_book_message(kind: str, pair: str, last_change_ms: int, asks: FullSide, bids: FullSide,
                      sequence: int, checksum: int) -> dict:
    """FULL_ORDERBOOK_SNAPSHOT (``kind``) or FULL_ORDERBOOK_UPDATE [C-off Postman WebSocket
    "Trade"]: ``data`` = LastChange (epoch ms, a number), Asks and Bids as ``[{"Price",
    "Orders": [{"orderId", "quantity"}]}]`` (an update lists only the orders that changed, a
    removed order with quantity "0"), SequenceNumber, Checksum (of the whole book after the
    message)."""

    def side_json(side: FullSide) -> list[dict]:
        return [{"Price": fmt(price), "Orders": [{"orderId": oid, "quantity": fmt(qty)} for oid, qty in orders]}
                for price, orders in side]

    return {
        "type": kind,
        "currencyPairSymbol": pair,
        "data": {
            "LastChange": int(last_change_ms),
            "Asks": side_json(asks),
            "Bids": side_json(bids),
            "SequenceNumber": int(sequence),
            "Checksum": int(checksum),
        },
    }


#: One side of an aggregated book: ``[(price, quantity), ...]``, best first.
L1Side = Sequence[tuple[Decimal, Decimal]]


def l1_book_checksum(bids: L1Side, asks: L1Side) -> int:
    """OB_L1_DIFF's ``cs`` [C-off Postman WebSocket "Trade"; a published capture matched it on
    every frame]: the unsigned CRC32 of the 25 best levels per side, interleaved (best bid, best
    ask, ...), each "price:quantity" as sent, joined by ":"."""
    return _crc32(_interleave([f"{fmt(p)}:{fmt(q)}" for p, q in bids[:25]],
                              [f"{fmt(p)}:{fmt(q)}" for p, q in asks[:25]]))


def l1_book_message(kind: str, pair: str, last_change_ms: int, asks: L1Side, bids: L1Side, sequence: int,
                    checksum: int) -> dict:
    """OB_L1_SNAPSHOT (``kind``) or OB_L1_DIFF [C-off Postman WebSocket "Trade", and a published
    capture]: compressed keys, ``{"type", "ps": pair, "d": {"lc": epoch ms, "a": [[price, qty]],
    "b": [[price, qty]], "sq": sequence, "cs": checksum}}``. A diff lists only the levels that
    changed, a removed level with quantity "0"; ``sq`` is one more than the previous message's."""
    return {
        "type": kind,
        "ps": pair,
        "d": {
            "lc": int(last_change_ms),
            "a": [[fmt(p), fmt(q)] for p, q in asks],
            "b": [[fmt(p), fmt(q)] for p, q in bids],
            "sq": int(sequence),
            "cs": int(checksum),
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
    if (not _name.startswith("_") and _inspect.isfunction(_func) and _func.__module__ == __name__
            and _name not in _OWN_CONTEXT):
        globals()[_name] = _exact(_func)
del _name, _func
