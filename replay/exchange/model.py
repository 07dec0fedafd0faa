"""Value types of the simulated exchange: pairs, requests, orders, balances, trades.

Amounts and prices are ``Decimal``. Timestamps are integer epoch milliseconds
(``ts_ms``), supplied by the caller: the exchange has no clock of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum


class Side(str, Enum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> "Side":
        return Side.SELL if self is Side.BUY else Side.BUY


class TimeInForce(str, Enum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class OrderType(str, Enum):
    """VALR's ``orderType`` strings."""

    LIMIT = "limit"
    POST_ONLY_LIMIT = "post-only limit"
    MARKET = "market"
    # Stop-limit orders (POST /v1/orders/stop/limit): VALR's history and status examples spell
    # them "stop-loss-limit" and "take-profit-limit" [C-off Postman "Order History", "Order Status"].
    STOP_LOSS_LIMIT = "stop-loss-limit"
    TAKE_PROFIT_LIMIT = "take-profit-limit"

    @property
    def is_stop(self) -> bool:
        return self in (OrderType.STOP_LOSS_LIMIT, OrderType.TAKE_PROFIT_LIMIT)


class OrderStatus(str, Enum):
    """VALR's ``orderStatusType`` strings: the five Hummingbot understands, and "Active", the
    status of a stop-limit order waiting for its trigger [C-off Postman "Order Status (orderId)",
    "Active Stop Order"]. Only stop-limit orders ever take "Active"."""

    PLACED = "Placed"
    PARTIALLY_FILLED = "Partially Filled"
    FILLED = "Filled"
    CANCELLED = "Cancelled"
    FAILED = "Failed"
    ACTIVE = "Active"

    @property
    def is_open(self) -> bool:
        return self in (OrderStatus.PLACED, OrderStatus.PARTIALLY_FILLED, OrderStatus.ACTIVE)


@dataclass(frozen=True)
class PairSpec:
    symbol: str
    base: str
    quote: str
    tick_size: Decimal
    min_base: Decimal
    max_base: Decimal
    min_quote: Decimal
    max_quote: Decimal
    base_decimals: int = 8
    maker_fee: Decimal = Decimal("0")
    taker_fee: Decimal = Decimal("0.001")
    active: bool = True


@dataclass(frozen=True)
class LimitRequest:
    pair: str
    side: Side
    quantity: Decimal
    price: Decimal
    post_only: bool = False
    time_in_force: TimeInForce = TimeInForce.GTC
    customer_order_id: str | None = None


@dataclass(frozen=True)
class MarketRequest:
    """Exactly one of ``base_amount`` and ``quote_amount`` is set."""

    pair: str
    side: Side
    base_amount: Decimal | None = None
    quote_amount: Decimal | None = None
    customer_order_id: str | None = None


@dataclass(frozen=True)
class StopLimitRequest:
    """A stop-limit order: a limit order that waits, "Active" and off the book, until the last
    traded price reaches ``stop_price`` (``order_type`` is STOP_LOSS_LIMIT or TAKE_PROFIT_LIMIT)."""

    pair: str
    side: Side
    quantity: Decimal
    price: Decimal
    stop_price: Decimal
    order_type: OrderType
    time_in_force: TimeInForce = TimeInForce.GTC
    customer_order_id: str | None = None


class ModifyMatchStrategy(str, Enum):
    """What a modification does when it cannot be applied as asked [C-off Postman "Modify Order V1"]."""

    RETAIN_ORIGINAL = "RETAIN_ORIGINAL"  # the order stays as it was
    CANCEL_ORIGINAL = "CANCEL_ORIGINAL"  # the order is cancelled
    REPRICE = "REPRICE"  # a post-only order that would match is repriced one tick off the other side


@dataclass(frozen=True)
class ModifyRequest:
    """PUT /v1/orders/modify, MODIFY_ORDER: exactly one of ``order_id`` and ``customer_order_id``;
    at most one of ``new_remaining`` and ``new_total``; at least one change."""

    pair: str
    order_id: str | None = None
    customer_order_id: str | None = None
    new_price: Decimal | None = None
    new_remaining: Decimal | None = None
    new_total: Decimal | None = None
    strategy: ModifyMatchStrategy = ModifyMatchStrategy.RETAIN_ORIGINAL


@dataclass(frozen=True)
class CancelRequest:
    """Exactly one of ``order_id`` and ``customer_order_id`` is set."""

    pair: str
    order_id: str | None = None
    customer_order_id: str | None = None


@dataclass(frozen=True)
class OrderView:
    """An immutable snapshot of one order, as the exchange saw it at ``updated_ms``."""

    order_id: str
    account: str
    pair: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: Decimal | None  # None for market orders
    original_quantity: Decimal
    remaining_quantity: Decimal
    status: OrderStatus
    created_ms: int
    updated_ms: int
    customer_order_id: str | None = None
    failed_reason: str = ""
    filled_quantity: Decimal = Decimal("0")
    filled_quote: Decimal = Decimal("0")  # sum of price * quantity over fills
    fee_paid: Decimal = Decimal("0")
    stop_price: Decimal | None = None  # stop-limit orders only


@dataclass(frozen=True)
class Balance:
    currency: str
    available: Decimal
    reserved: Decimal
    updated_ms: int = 0

    @property
    def total(self) -> Decimal:
        return self.available + self.reserved


@dataclass(frozen=True)
class Trade:
    """One match between a resting (maker) order and an incoming (taker) order."""

    trade_id: str
    sequence: int
    pair: str
    price: Decimal
    quantity: Decimal
    taker_side: Side
    ts_ms: int
    maker_order_id: str
    taker_order_id: str
    maker_account: str
    taker_account: str


@dataclass(frozen=True)
class BookLevel:
    price: Decimal
    quantity: Decimal
    order_count: int


@dataclass(frozen=True)
class BookView:
    """Aggregated top of book. Asks ascending, bids descending."""

    pair: str
    asks: tuple[BookLevel, ...]
    bids: tuple[BookLevel, ...]
    sequence: int
    last_change_ms: int


@dataclass(frozen=True)
class MarketSummary:
    pair: str
    ask_price: Decimal | None
    bid_price: Decimal | None
    last_traded_price: Decimal | None
    previous_close_price: Decimal | None
    base_volume: Decimal
    quote_volume: Decimal
    high_price: Decimal | None
    low_price: Decimal | None
    created_ms: int
    change_from_previous: Decimal  # percent


@dataclass(frozen=True)
class Submitted:
    """The synchronous answer to a submitted command (VALR's 202 / WS ack).

    ``order_id`` is the id the exchange gave the order (for a cancel: the id of the
    order it names, if known). Validation against the book and balances happens later,
    when the command is processed, and is reported as events.
    """

    ticket: int
    order_id: str | None
    customer_order_id: str | None
    #: a modification's own id (VALR's ``modifyRequestId``); None for other commands
    request_id: str | None = None

    @property
    def placed_order_id(self) -> str:
        """The id of the order a limit or market submission created (only a cancel's may be unknown)."""
        if self.order_id is None:
            raise ValueError(f"submission {self.ticket} has no order id")
        return self.order_id


class ExchangeError(Exception):
    """A synchronous refusal, with VALR's error code and message (e.g. unknown pair)."""

    def __init__(self, code: int, message: str, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
