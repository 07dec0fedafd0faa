"""The connector's order tracker: in-flight orders, their lifecycle and the tracker sets.

Mirrors the shape of Hummingbot's ``InFlightOrder`` / ``ClientOrderTracker`` (see
/work/shared/hummingbot-notes.md §1-2) so that the OPEN_ORDERS_UPDATE race happens for the
same reasons:

* ``active`` holds the orders that are polled, cancellable and part of ``cancel_all``;
* an order that reaches a final state moves to ``cached`` (TTL 30 s) and is never
  cancelled or polled again;
* unguarded (Hummingbot's behaviour) any state may follow any state, so a late placement
  ack turns a falsely CANCELED order back to OPEN *inside the cache*: an orphan;
* guarded, transitions out of a final state are refused (and recorded);
* after more than ``lost_order_count_limit`` "not found" answers an order becomes FAILED
  and moves to ``lost``, which the connector keeps trying to cancel.

Everything here is pure: time comes from ``clock_fn`` (seconds). The one asynchronous
piece is ``process_order_update``, which applies the update on a later loop iteration
(as Hummingbot's ``safe_ensure_future`` does); that extra loop hop is part of the race.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any, Callable

log = logging.getLogger(__name__)

CACHE_TTL = 30.0
FIRED_KEPT = 2_000
LOST_ORDER_COUNT_LIMIT = 3
TRADE_FILLS_WAIT_TIMEOUT = 5.0


class OrderState(Enum):
    PENDING_CREATE = 0
    OPEN = 1
    PENDING_CANCEL = 2
    CANCELED = 3
    PARTIALLY_FILLED = 4
    FILLED = 5
    FAILED = 6


FINAL_STATES = frozenset({OrderState.CANCELED, OrderState.FILLED, OrderState.FAILED})
OPEN_STATES = frozenset(
    {OrderState.PENDING_CREATE, OrderState.OPEN, OrderState.PARTIALLY_FILLED, OrderState.PENDING_CANCEL}
)


@dataclass(frozen=True)
class OrderUpdate:
    """A new state for one order. ``update_timestamp`` is in seconds (the tracker's clock)."""

    trading_pair: str
    update_timestamp: float
    new_state: OrderState
    client_order_id: str | None = None
    exchange_order_id: str | None = None
    reason: str = ""
    misc_updates: dict[str, Any] | None = None


@dataclass(frozen=True)
class TradeUpdate:
    trade_id: str
    client_order_id: str | None
    exchange_order_id: str | None
    trading_pair: str
    fill_timestamp: float
    fill_price: Decimal
    fill_base_amount: Decimal
    fill_quote_amount: Decimal
    fee: Decimal = Decimal("0")
    fee_currency: str = ""
    is_taker: bool = False


# --- events for the strategy ------------------------------------------------------------


@dataclass(frozen=True)
class OrderCreated:
    timestamp: float
    client_order_id: str
    exchange_order_id: str | None
    pair: str
    side: str
    price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class OrderCancelled:
    timestamp: float
    client_order_id: str
    exchange_order_id: str | None
    pair: str


@dataclass(frozen=True)
class OrderFilled:
    timestamp: float
    client_order_id: str
    exchange_order_id: str | None
    pair: str
    side: str
    trade_id: str
    price: Decimal
    amount: Decimal
    fee: Decimal
    fee_currency: str


@dataclass(frozen=True)
class OrderCompleted:
    timestamp: float
    client_order_id: str
    exchange_order_id: str | None
    pair: str
    side: str
    executed_base: Decimal
    executed_quote: Decimal


@dataclass(frozen=True)
class OrderFailure:
    timestamp: float
    client_order_id: str
    exchange_order_id: str | None
    pair: str
    reason: str


OrderEvent = OrderCreated | OrderCancelled | OrderFilled | OrderCompleted | OrderFailure


# --- one order ----------------------------------------------------------------------------


@dataclass
class RefusedTransition:
    timestamp: float
    from_state: OrderState
    to_state: OrderState
    reason: str


@dataclass
class InFlightOrder:
    client_order_id: str
    pair: str
    side: str  # "buy" | "sell"
    price: Decimal
    amount: Decimal
    creation_timestamp: int  # tick time, whole seconds
    exchange_order_id: str | None = None
    state: OrderState = OrderState.PENDING_CREATE
    executed_base: Decimal = Decimal("0")
    executed_quote: Decimal = Decimal("0")
    fee_paid: Decimal = Decimal("0")
    last_update_timestamp: float = 0.0
    trade_ids: set[str] = field(default_factory=set)
    refused: list[RefusedTransition] = field(default_factory=list)
    # When (tracker clock, seconds) the tracker first saw the order acknowledged as
    # OPEN/PARTIALLY_FILLED; used by the reconcile policy. None while unconfirmed.
    open_confirmed_at: float | None = None
    # Exchange-side creation time (epoch seconds) when some message told us; else None.
    exchange_created_at: float | None = None
    _filled_event: asyncio.Event | None = field(default=None, repr=False, compare=False)

    # predicates (Hummingbot's definitions)
    @property
    def is_pending_create(self) -> bool:
        return self.state is OrderState.PENDING_CREATE

    @property
    def is_pending_cancel_confirmation(self) -> bool:
        return self.state is OrderState.PENDING_CANCEL

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def is_filled(self) -> bool:
        return self.state is OrderState.FILLED or (self.amount != 0 and self.executed_base >= self.amount)

    @property
    def is_done(self) -> bool:
        return self.state in FINAL_STATES or (self.amount != 0 and self.executed_base >= self.amount)

    @property
    def is_final_state(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def is_failure(self) -> bool:
        return self.state is OrderState.FAILED

    @property
    def is_cancelled(self) -> bool:
        return self.state is OrderState.CANCELED

    def filled_event(self) -> asyncio.Event:
        if self._filled_event is None:
            self._filled_event = asyncio.Event()
            if self.is_filled:
                self._filled_event.set()
        return self._filled_event

    def matches(self, update: OrderUpdate | TradeUpdate) -> bool:
        if update.client_order_id is not None and update.client_order_id == self.client_order_id:
            return True
        return (
            update.exchange_order_id is not None
            and self.exchange_order_id is not None
            and update.exchange_order_id == self.exchange_order_id
        )

    def apply(self, update: OrderUpdate, guarded: bool) -> bool:
        """Apply an order update; return True if the exchange id or the state changed.

        Unguarded: the new state is taken unconditionally (Hummingbot: CANCELED -> OPEN is
        possible). Guarded: a transition out of a final state is refused and recorded in
        ``refused``; the exchange id is still learnt.
        """
        if not self.matches(update):
            return False
        changed = False
        if self.exchange_order_id is None and update.exchange_order_id is not None:
            self.exchange_order_id = update.exchange_order_id
            changed = True
        if update.new_state is not self.state:
            if guarded and self.state in FINAL_STATES:
                self.refused.append(
                    RefusedTransition(update.update_timestamp, self.state, update.new_state, update.reason)
                )
            else:
                self.state = update.new_state
                changed = True
        if changed:
            self.last_update_timestamp = update.update_timestamp
        return changed

    def apply_trade(self, trade: TradeUpdate) -> bool:
        """Add a fill; fills are de-duplicated by trade id. Return True if it was new."""
        if trade.trade_id in self.trade_ids or not self.matches(trade):
            return False
        self.trade_ids.add(trade.trade_id)
        self.executed_base += trade.fill_base_amount
        self.executed_quote += trade.fill_quote_amount
        self.fee_paid += trade.fee
        self.last_update_timestamp = trade.fill_timestamp
        if self._filled_event is not None and self.is_filled:
            self._filled_event.set()
        return True


# --- a TTL dict on a passed clock ---------------------------------------------------------


class TTLCache(MutableMapping[str, InFlightOrder]):
    """A dict whose entries expire ``ttl`` seconds (on ``clock_fn``) after being set.

    Every access first drops what has expired. Expiry times are also queued in the order the
    entries were set; while they come in that order (a monotonic clock, a fixed ``ttl``) the
    expired entries are the front of the queue, so an access costs O(1) rather than a scan of
    every entry (the connector looks orders up in here for every message)."""

    def __init__(self, clock_fn: Callable[[], float], ttl: float = CACHE_TTL):
        self._clock_fn = clock_fn
        self.ttl = ttl
        self._data: dict[str, tuple[float, InFlightOrder]] = {}
        # (expiry, key) per set, oldest first; stale once the key is set again or deleted
        self._expiries: deque[tuple[float, str]] = deque()
        self._in_order = True  # the queue's expiries never decrease

    def _expire(self) -> None:
        now = self._clock_fn()
        data = self._data
        if not self._in_order:
            for key in [k for k, (exp, _) in data.items() if exp <= now]:
                del data[key]
            return
        queue = self._expiries
        while queue and queue[0][0] <= now:
            _, key = queue.popleft()
            entry = data.get(key)
            if entry is not None and entry[0] <= now:
                del data[key]

    def __getitem__(self, key: str) -> InFlightOrder:
        self._expire()
        return self._data[key][1]

    def __contains__(self, key: object) -> bool:
        self._expire()
        return key in self._data

    def __setitem__(self, key: str, value: InFlightOrder) -> None:
        self._expire()
        expiry = self._clock_fn() + self.ttl
        self._data[key] = (expiry, value)
        queue = self._expiries
        if queue and expiry < queue[-1][0]:
            self._in_order = False
            queue.clear()
        if self._in_order:
            queue.append((expiry, key))

    def snapshot(self) -> dict[str, InFlightOrder]:
        """The entries that have not expired, as a plain dict (in the order they were set)."""
        self._expire()
        return {k: v for k, (_, v) in self._data.items()}

    def __delitem__(self, key: str) -> None:
        self._expire()
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        self._expire()
        return iter(list(self._data))

    def __len__(self) -> int:
        self._expire()
        return len(self._data)


# --- the tracker --------------------------------------------------------------------------

Listener = Callable[[OrderEvent], None]


class ClientOrderTracker:
    """active / cached (TTL) / lost order sets, the not-found counter and the event fan-out.

    ``clock_fn`` returns seconds (the connector passes epoch seconds from its Clock).
    ``trace`` is a ``replay.capture.TraceRecorder`` (or None).
    """

    def __init__(
        self,
        clock_fn: Callable[[], float],
        guarded: bool = False,
        *,
        trace: Any = None,
        lost_order_count_limit: int = LOST_ORDER_COUNT_LIMIT,
        cache_ttl: float = CACHE_TTL,
        fill_wait_timeout: float = TRADE_FILLS_WAIT_TIMEOUT,
    ):
        self.clock_fn = clock_fn
        self.guarded = guarded
        self.trace = trace
        self.lost_order_count_limit = lost_order_count_limit
        self.fill_wait_timeout = fill_wait_timeout
        self.active: dict[str, InFlightOrder] = {}
        self.cached: TTLCache = TTLCache(clock_fn, cache_ttl)
        self.lost: dict[str, InFlightOrder] = {}
        self.not_found_counts: dict[str, int] = {}
        self.listeners: list[Listener] = []
        # (event, client order id) fired once; the oldest forgotten past FIRED_KEPT (an order's events all
        # come within seconds, and a long run must not grow without end)
        self._fired: dict[tuple[str, str], None] = {}
        self._tasks: set[asyncio.Task] = set()

    # --- views ------------------------------------------------------------------------
    @property
    def all_orders(self) -> dict[str, InFlightOrder]:
        return {**self.active, **self.cached.snapshot()}

    @property
    def all_fillable_orders(self) -> dict[str, InFlightOrder]:
        return {**self.active, **self.cached.snapshot(), **self.lost}

    @property
    def all_updatable_orders(self) -> dict[str, InFlightOrder]:
        return {**self.active, **self.lost}

    @staticmethod
    def _by_exchange_id(orders: dict[str, InFlightOrder]) -> dict[str, InFlightOrder]:
        return {o.exchange_order_id: o for o in orders.values() if o.exchange_order_id is not None}

    @property
    def active_by_exchange_order_id(self) -> dict[str, InFlightOrder]:
        return self._by_exchange_id(self.active)

    @property
    def all_orders_by_exchange_order_id(self) -> dict[str, InFlightOrder]:
        return self._by_exchange_id(self.all_orders)

    @property
    def all_fillable_orders_by_exchange_order_id(self) -> dict[str, InFlightOrder]:
        return self._by_exchange_id(self.all_fillable_orders)

    @property
    def all_updatable_orders_by_exchange_order_id(self) -> dict[str, InFlightOrder]:
        return self._by_exchange_id(self.all_updatable_orders)

    def where(self, client_order_id: str) -> str | None:
        if client_order_id in self.active:
            return "active"
        if client_order_id in self.lost:
            return "lost"
        if client_order_id in self.cached:
            return "cached"
        return None

    def fetch_tracked_order(self, client_order_id: str) -> InFlightOrder | None:
        """Active orders only (what cancel and polling look at)."""
        return self.active.get(client_order_id)

    def fetch_order(
        self, client_order_id: str | None = None, exchange_order_id: str | None = None
    ) -> InFlightOrder | None:
        """Active + cached, by client id or else by exchange id (Hummingbot's fetch_order)."""
        orders = self.all_orders
        if client_order_id is not None and client_order_id in orders:
            return orders[client_order_id]
        if exchange_order_id is not None:
            return self._by_exchange_id(orders).get(exchange_order_id)
        return None

    def find_any(
        self, client_order_id: str | None = None, exchange_order_id: str | None = None
    ) -> InFlightOrder | None:
        """Active + cached + lost."""
        orders = self.all_fillable_orders
        if client_order_id is not None and client_order_id in orders:
            return orders[client_order_id]
        if exchange_order_id is not None:
            return self._by_exchange_id(orders).get(exchange_order_id)
        return None

    # --- listeners and trace -------------------------------------------------------------
    def add_listener(self, callback: Listener) -> None:
        self.listeners.append(callback)

    def _emit(self, event: OrderEvent, once_key: str | None = None) -> None:
        if once_key is not None:
            key = (once_key, event.client_order_id)
            if key in self._fired:
                return
            self._fired[key] = None
            if len(self._fired) > FIRED_KEPT:
                del self._fired[next(iter(self._fired))]
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:  # a strategy bug must not break the tracker
                log.exception("order event listener failed on %r", event)

    def _trace_state(self, order: InFlightOrder, prev: OrderState | None, new: OrderState, reason: str,
                     **extra: Any) -> None:
        if self.trace is None:
            return
        data = {
            "client_order_id": order.client_order_id,
            "exchange_order_id": order.exchange_order_id,
            "pair": order.pair,
            "side": order.side,
            "price": str(order.price),
            "amount": str(order.amount),
            "from": prev.name if prev is not None else None,
            "to": new.name,
            "reason": reason,
            "where": self.where(order.client_order_id),
            "executed_amount_base": str(order.executed_base),
        }
        data.update(extra)
        self.trace.record("client", "local", "client", "ORDER_STATE", data)

    # --- tracking -----------------------------------------------------------------------
    def start_tracking(self, order: InFlightOrder, reason: str = "create") -> None:
        self.active[order.client_order_id] = order
        self._trace_state(order, None, order.state, reason)

    def stop_tracking(self, client_order_id: str) -> None:
        order = self.active.pop(client_order_id, None)
        if order is not None:
            self.cached[client_order_id] = order
        self.not_found_counts.pop(client_order_id, None)

    # --- order updates --------------------------------------------------------------------
    def process_order_update(self, update: OrderUpdate) -> asyncio.Task:
        """Schedule the update; it is applied on a later loop iteration (Hummingbot's hop)."""
        task = asyncio.get_running_loop().create_task(self._process_order_update(update))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _process_order_update(self, update: OrderUpdate) -> None:
        order = self.fetch_order(update.client_order_id, update.exchange_order_id)
        if order is not None and update.new_state is OrderState.FILLED and not order.is_done:
            # Hummingbot waits (<= 5 s) for the fills before completing a FILLED order.
            try:
                await asyncio.wait_for(order.filled_event().wait(), self.fill_wait_timeout)
            except asyncio.TimeoutError:
                log.warning("order %s FILLED without all its fills", order.client_order_id)
        self._apply_order_update(update)

    def _apply_order_update(self, update: OrderUpdate, *, to_lost: bool = False) -> bool:
        """Apply ``update`` now (pure). Returns True if the order changed.

        ``to_lost`` (used by ``process_order_not_found``): once the order is done, move it
        from the cache to the lost set before the change is traced.
        """
        order = self.fetch_order(update.client_order_id, update.exchange_order_id)
        if order is None:
            lost = self._find_lost(update)
            if lost is not None and update.new_state in FINAL_STATES:
                prev = lost.state
                lost.apply(update, guarded=False)  # a lost order is FAILED; let the news through
                del self.lost[lost.client_order_id]
                self.cached[lost.client_order_id] = lost
                self._trace_state(lost, prev, lost.state, update.reason or "update", lost_resolved=True)
                return True
            log.debug("order update for an untracked order: %r", update)
            return False
        if update.new_state is OrderState.PENDING_CANCEL and order.is_done:
            # Deliberate deviation from Hummingbot: PENDING_CANCEL only reports that our own
            # cancel request was accepted, so it carries no news about a finished order. With
            # the ack and "Cancelled" arriving together, Hummingbot would put every cancelled
            # order back to PENDING_CANCEL in the cache; that noise would hide the real
            # resurrections (a placement ack after a false CANCELED), which are kept.
            log.debug("cancel ack for finished order %s ignored", order.client_order_id)
            return False
        prev = order.state
        refused_before = len(order.refused)
        updated = order.apply(update, guarded=self.guarded)
        if len(order.refused) > refused_before:
            r = order.refused[-1]
            self._trace_state(
                order, prev, order.state,
                "resurrection-refused" if r.to_state in OPEN_STATES else "transition-refused",
                requested=r.to_state.name, update_reason=update.reason,
            )
        if not updated:
            return False
        if order.state in (OrderState.OPEN, OrderState.PARTIALLY_FILLED) and order.open_confirmed_at is None:
            order.open_confirmed_at = self.clock_fn()
        if order.state is not prev:
            if order.is_done and order.client_order_id in self.active:
                self.stop_tracking(order.client_order_id)
            if to_lost and order.is_done:
                if order.client_order_id in self.cached:
                    del self.cached[order.client_order_id]
                self.lost[order.client_order_id] = order
            self._trace_state(order, prev, order.state, update.reason or "update")
        self._trigger_creation(order, prev, update)
        self._trigger_completion(order, update)
        return True

    apply_order_update = _apply_order_update

    def _find_lost(self, update: OrderUpdate | TradeUpdate) -> InFlightOrder | None:
        if update.client_order_id is not None and update.client_order_id in self.lost:
            return self.lost[update.client_order_id]
        if update.exchange_order_id is not None:
            return self._by_exchange_id(self.lost).get(update.exchange_order_id)
        return None

    def _trigger_creation(self, order: InFlightOrder, prev: OrderState, update: OrderUpdate) -> None:
        if prev is OrderState.PENDING_CREATE and order.state not in (
            OrderState.PENDING_CREATE, OrderState.CANCELED, OrderState.FAILED, OrderState.PENDING_CANCEL
        ):
            self._emit(
                OrderCreated(update.update_timestamp, order.client_order_id, order.exchange_order_id, order.pair,
                             order.side, order.price, order.amount),
                once_key="created",
            )

    def _trigger_completion(self, order: InFlightOrder, update: OrderUpdate) -> None:
        if order.is_open:
            return
        ts = update.update_timestamp
        if order.is_cancelled:
            self._emit(OrderCancelled(ts, order.client_order_id, order.exchange_order_id, order.pair), "done")
        elif order.is_filled:
            self._emit(
                OrderCompleted(ts, order.client_order_id, order.exchange_order_id, order.pair, order.side,
                               order.executed_base, order.executed_quote),
                "done",
            )
        elif order.is_failure:
            self._emit(
                OrderFailure(ts, order.client_order_id, order.exchange_order_id, order.pair, update.reason),
                "done",
            )

    # --- fills --------------------------------------------------------------------------
    def process_trade_update(self, trade: TradeUpdate) -> bool:
        """Apply a fill now (active, cached or lost orders). Returns True if it was new."""
        order = self.find_any(trade.client_order_id, trade.exchange_order_id)
        if order is None or not order.apply_trade(trade):
            return False
        if self.trace is not None:
            # a fill changes no state when it comes after the order's end: the record says what it did
            self.trace.record("client", "local", "client", "ORDER_FILL", {
                "client_order_id": order.client_order_id,
                "exchange_order_id": order.exchange_order_id,
                "trade_id": trade.trade_id,
                "fill_base_amount": str(trade.fill_base_amount),
                "executed_amount_base": str(order.executed_base),
                "where": self.where(order.client_order_id),
            })
        self._emit(
            OrderFilled(trade.fill_timestamp, order.client_order_id, order.exchange_order_id, order.pair,
                        order.side, trade.trade_id, trade.fill_price, trade.fill_base_amount, trade.fee,
                        trade.fee_currency)
        )
        if (order.client_order_id in self.active and order.amount != 0 and order.executed_base >= order.amount
                and order.state not in FINAL_STATES):
            # the whole amount has executed: the order is filled, whether or not its status update comes
            self.process_order_update(OrderUpdate(order.pair, trade.fill_timestamp, OrderState.FILLED,
                                                  order.client_order_id, order.exchange_order_id,
                                                  reason="fill_complete"))
        return True

    # --- not found / lost ------------------------------------------------------------------
    def process_order_not_found(self, client_order_id: str) -> bool:
        """Count a "not found"; the (limit+1)-th for an active order makes it FAILED and lost.

        For an order already lost, "not found" means it is gone: it leaves the lost set.
        Returns True when the order moved (into or out of ``lost``).
        """
        now = self.clock_fn()
        order = self.active.get(client_order_id)
        if order is not None:
            count = self.not_found_counts.get(client_order_id, 0) + 1
            self.not_found_counts[client_order_id] = count
            if count > self.lost_order_count_limit and not order.is_done:
                log.warning("order %s not found %d times: considered lost", client_order_id, count)
                self._apply_order_update(
                    OrderUpdate(order.pair, now, OrderState.FAILED, client_order_id, order.exchange_order_id,
                                reason="not_found"),
                    to_lost=True,
                )
                self.not_found_counts.pop(client_order_id, None)
                return True
            return False
        order = self.lost.get(client_order_id)
        if order is not None:
            return self._apply_order_update(
                OrderUpdate(order.pair, now, OrderState.FAILED, client_order_id, order.exchange_order_id,
                            reason="not_found")
            )
        return False

    async def wait_idle(self) -> None:
        """Wait until every scheduled order update has been applied (for tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def cancel_pending(self) -> None:
        for task in list(self._tasks):
            task.cancel()
