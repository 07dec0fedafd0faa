"""Order records and a price-time priority order book for one pair (pure).

``Order`` is the engine's mutable record of one order; ``OrderView`` (model.py) is the
immutable snapshot handed out in events and queries. ``OrderBook`` keeps the resting
orders of one pair: price levels by price, their prices in a sorted list (best first on each
side), and FIFO order within a level (an insertion-ordered dict, so a cancel is O(1)).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable, Iterator, cast

from .model import BookLevel, BookView, OrderStatus, OrderType, OrderView, Side, TimeInForce

ZERO = Decimal("0")


@dataclass(slots=True)
class Order:
    """The engine's mutable record of one order (see ``view()`` for the snapshot)."""

    order_id: str
    account: str
    pair: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: Decimal | None
    original_quantity: Decimal
    remaining_quantity: Decimal
    status: OrderStatus
    created_ms: int
    updated_ms: int
    customer_order_id: str | None = None
    failed_reason: str = ""
    filled_quantity: Decimal = ZERO
    filled_quote: Decimal = ZERO
    fee_paid: Decimal = ZERO
    seq: int = 0  # creation order within the exchange, for "oldest first" / "most recent"
    # Amount still reserved for this order, in the currency it spends
    # (quote for a buy, base for a sell).
    reserved: Decimal = ZERO
    stop_price: Decimal | None = None  # stop-limit orders only
    _view: OrderView | None = field(default=None, repr=False, compare=False)

    @property
    def resting_price(self) -> Decimal:
        """The price of an order in a book: only limit orders rest there (``OrderBook.add`` checks)."""
        if self.price is None:
            raise ValueError(f"order {self.order_id} has no price: a market order never rests in a book")
        return self.price

    @property
    def is_open(self) -> bool:
        return self.status.is_open

    def touch(self) -> None:
        """Invalidate the cached view after a change."""
        self._view = None

    def view(self) -> OrderView:
        if self._view is None:
            self._view = OrderView(
                order_id=self.order_id,
                account=self.account,
                pair=self.pair,
                side=self.side,
                order_type=self.order_type,
                time_in_force=self.time_in_force,
                price=self.price,
                original_quantity=self.original_quantity,
                remaining_quantity=self.remaining_quantity,
                status=self.status,
                created_ms=self.created_ms,
                updated_ms=self.updated_ms,
                customer_order_id=self.customer_order_id,
                failed_reason=self.failed_reason,
                filled_quantity=self.filled_quantity,
                filled_quote=self.filled_quote,
                fee_paid=self.fee_paid,
                stop_price=self.stop_price,
            )
        return self._view


class _Levels:
    """The price levels of one side of a book, best first: a dict of levels by price and the
    prices in a sorted list (a side holds a few dozen levels: ``bisect`` on a plain list beats a
    ``SortedDict`` several times over on the engine's hot path). The subset of ``SortedDict``
    the book uses: ``get``, item set and delete, ``peekitem(0)``, best-first ``values``/``items``."""

    __slots__ = ("_by_price", "_prices", "_best_high")

    def __init__(self, best_high: bool):
        self._by_price: dict[Decimal, dict[str, Order]] = {}
        self._prices: list[Decimal] = []  # ascending
        self._best_high = best_high  # bids: the highest price is the best

    def __len__(self) -> int:
        return len(self._prices)

    def get(self, price: Decimal) -> dict[str, Order] | None:
        return self._by_price.get(price)

    def __getitem__(self, price: Decimal) -> dict[str, Order]:
        return self._by_price[price]

    def __setitem__(self, price: Decimal, level: dict[str, Order]) -> None:
        if price not in self._by_price:
            insort(self._prices, price)
        self._by_price[price] = level

    def __delitem__(self, price: Decimal) -> None:
        del self._by_price[price]
        prices = self._prices
        del prices[bisect_left(prices, price)]

    def _ordered(self) -> Iterable[Decimal]:
        return reversed(self._prices) if self._best_high else self._prices

    def peekitem(self, index: int = 0) -> tuple[Decimal, dict[str, Order]]:
        if index != 0:
            raise IndexError("only the best level can be peeked")
        if not self._prices:
            raise IndexError("no levels")
        price = self._prices[-1] if self._best_high else self._prices[0]
        return price, self._by_price[price]

    def values(self) -> list[dict[str, Order]]:
        by_price = self._by_price
        return [by_price[p] for p in self._ordered()]

    def items(self) -> list[tuple[Decimal, dict[str, Order]]]:
        by_price = self._by_price
        return [(p, by_price[p]) for p in self._ordered()]


class OrderBook:
    """Resting limit orders of one pair, price-time priority.

    ``sequence`` increases by one on every change (add, remove, quantity change);
    ``last_change_ms`` is the timestamp of the latest change.
    """

    def __init__(self, pair: str):
        self.pair = pair
        # Bids best (highest) first, asks best (lowest) first.
        self._bids = _Levels(best_high=True)
        self._asks = _Levels(best_high=False)
        self._index: dict[str, Order] = {}
        self.sequence = 0
        self.last_change_ms = 0

    def _side(self, side: Side) -> _Levels:
        return self._bids if side is Side.BUY else self._asks

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, order_id: str) -> bool:
        return order_id in self._index

    def _changed(self, ts_ms: int) -> None:
        self.sequence += 1
        self.last_change_ms = max(self.last_change_ms, ts_ms)

    def add(self, order: Order, ts_ms: int) -> None:
        if order.price is None:
            raise ValueError("a market order cannot rest in the book")
        if order.order_id in self._index:
            raise ValueError(f"order {order.order_id} is already in the book")
        levels = self._side(order.side)
        level = levels.get(order.price)
        if level is None:
            level = levels[order.price] = {}
        level[order.order_id] = order
        self._index[order.order_id] = order
        self._changed(ts_ms)

    def remove(self, order: Order, ts_ms: int) -> None:
        if self._index.pop(order.order_id, None) is None:
            return
        levels = self._side(order.side)
        price = cast(Decimal, order.price)  # in the book: a limit order's
        level = levels[price]
        del level[order.order_id]
        if not level:
            del levels[price]
        self._changed(ts_ms)

    def quantity_changed(self, ts_ms: int) -> None:
        """Record that a resting order's remaining quantity changed (a partial fill)."""
        self._changed(ts_ms)

    def best_price(self, side: Side) -> Decimal | None:
        levels = self._side(side)
        if not levels:
            return None
        return levels.peekitem(0)[0]

    def iter_orders(self, side: Side) -> Iterator[Order]:
        """Resting orders of ``side``, in matching priority (best price, then oldest).

        Do not mutate the book while iterating; take a list first.
        """
        for level in self._side(side).values():
            yield from level.values()

    def first_order(self, side: Side) -> Order | None:
        levels = self._side(side)
        if not levels:
            return None
        level = levels.peekitem(0)[1]
        return next(iter(level.values()))

    def levels(self, side: Side, depth: int) -> tuple[BookLevel, ...]:
        out: list[BookLevel] = []
        for price, level in self._side(side).items():
            if len(out) >= depth:
                break
            qty = sum((o.remaining_quantity for o in level.values()), ZERO)
            out.append(BookLevel(price=price, quantity=qty, order_count=len(level)))
        return tuple(out)

    def orders_by_level(self, side: Side) -> list[tuple[Decimal, list[tuple[str, Decimal]]]]:
        """Every resting order of ``side``, by price level (best first), oldest first in a level:
        ``[(price, [(order_id, remaining quantity), ...]), ...]``."""
        return [(price, [(o.order_id, o.remaining_quantity) for o in level.values()])
                for price, level in self._side(side).items()]

    def view(self, depth: int = 40) -> BookView:
        return BookView(
            pair=self.pair,
            asks=self.levels(Side.SELL, depth),
            bids=self.levels(Side.BUY, depth),
            sequence=self.sequence,
            last_change_ms=self.last_change_ms,
        )
