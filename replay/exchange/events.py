"""Domain events the exchange emits. The codec turns them into VALR wire messages.

Every event carries ``ts_ms``. Account events carry ``account``; market events carry
``pair``. Snapshots inside events (``OrderView``, ``orders``) are taken at the moment
the event happened, which is what makes a stale ``OPEN_ORDERS_UPDATE`` possible.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .model import Balance, OrderView, Trade


@dataclass(frozen=True)
class OrderProcessed:
    """The engine has processed a placement: VALR's ORDER_PROCESSED."""

    ts_ms: int
    account: str
    order_id: str
    customer_order_id: str | None
    success: bool
    failure_reason: str = ""


@dataclass(frozen=True)
class OrderStatusChanged:
    """An order changed status or remaining quantity: VALR's ORDER_STATUS_UPDATE."""

    ts_ms: int
    account: str
    order: OrderView


@dataclass(frozen=True)
class OrderFailed:
    """A placement failed validation at processing time: VALR's FAILED_ORDER."""

    ts_ms: int
    account: str
    order_id: str
    customer_order_id: str | None
    message: str


@dataclass(frozen=True)
class CancelFailed:
    """A cancel request could not be carried out: VALR's FAILED_CANCEL_ORDER."""

    ts_ms: int
    account: str
    order_id: str | None
    customer_order_id: str | None
    message: str


@dataclass(frozen=True)
class OrderModified:
    """A modification was processed: VALR's MODIFY_ORDER_OUTCOME (and, when it succeeded, an
    ORDER_STATUS_UPDATE "Order Modified"). ``order`` is the order after the attempt."""

    ts_ms: int
    account: str
    order: OrderView
    modify_request_id: str
    success: bool
    failure_reason: str = ""


@dataclass(frozen=True)
class OpenOrdersChanged:
    """The account's full list of open orders, as of ``ts_ms``: VALR's OPEN_ORDERS_UPDATE."""

    ts_ms: int
    account: str
    orders: tuple[OrderView, ...]


@dataclass(frozen=True)
class BalanceChanged:
    ts_ms: int
    account: str
    balance: Balance


@dataclass(frozen=True)
class AccountTrade:
    """One fill of one of the account's orders: NEW_ACCOUNT_TRADE and NEW_ACCOUNT_HISTORY_RECORD."""

    ts_ms: int
    account: str
    trade: Trade
    order: OrderView  # the account's order after this fill
    side: str  # "buy" or "sell": the account's side in this fill
    is_maker: bool
    fee: Decimal
    fee_currency: str
    history_id: str  # id of the account-history record


@dataclass(frozen=True)
class PublicTrade:
    """A trade on the public tape: NEW_TRADE."""

    ts_ms: int
    trade: Trade


@dataclass(frozen=True)
class BookChanged:
    """The pair's book changed; the server takes an aggregated snapshot when it publishes."""

    ts_ms: int
    pair: str


Event = (
    OrderProcessed
    | OrderStatusChanged
    | OrderFailed
    | CancelFailed
    | OrderModified
    | OpenOrdersChanged
    | BalanceChanged
    | AccountTrade
    | PublicTrade
    | BookChanged
)

ACCOUNT_EVENTS = (
    OrderProcessed,
    OrderStatusChanged,
    OrderFailed,
    CancelFailed,
    OrderModified,
    OpenOrdersChanged,
    BalanceChanged,
    AccountTrade,
)
MARKET_EVENTS = (PublicTrade, BookChanged)
