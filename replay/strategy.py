"""The quoting loop: pure market making, refreshed the way Hummingbot's PMM refreshes.

``tick(now)`` is pure given the connector's state (see /work/shared/hummingbot-notes.md §6):

1. if the connector is not ready, do nothing;
2. build the proposal: one bid and one ask per level around the connector's mid price;
3. at ``_cancel_timestamp <= now`` cancel every *active* order, i.e. every tracked order
   minus those with an in-flight cancel younger than ``cancel_expiry`` (60 s in PMM);
4. create a fresh set only when ``_create_timestamp < now``, no order is active and (when
   ``should_wait_order_cancel_confirmation``) no cancel is in flight; then set the timers.

The strategy forgets an order only on the connector's cancelled / failed / completed event,
exactly like PMM, so a *false* cancelled event from the connector leaks a live order on the
exchange: that is the race this project reproduces.

``run(until)`` ticks on the running loop's clock at whole multiples of ``tick_interval``,
like Hummingbot's realtime ``Clock`` (virtual time under ``looptime``).
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

log = logging.getLogger(__name__)

BUY = "buy"
SELL = "sell"

_DONE_KINDS = {"cancelled", "failed", "completed"}
_KNOWN_KINDS = {"created", "cancelled", "filled", "completed", "failed"}


# Event classes (Hummingbot-style names) -> kind, for events that carry no ``kind`` attribute.
_KIND_BY_CLASS = {
    "OrderCreated": "created",
    "BuyOrderCreated": "created",
    "SellOrderCreated": "created",
    "OrderCancelled": "cancelled",
    "OrderFilled": "filled",
    "OrderCompleted": "completed",
    "BuyOrderCompleted": "completed",
    "SellOrderCompleted": "completed",
    "OrderFailure": "failed",
    "OrderFailed": "failed",
    "MarketOrderFailure": "failed",
}


def event_kind(event: Any) -> str | None:
    """``event.kind`` if present, else derived from the event's class name."""
    kind = getattr(event, "kind", None)
    if isinstance(kind, str):
        return kind
    name = type(event).__name__
    for suffix in ("Event", ""):
        if suffix and name.endswith(suffix):
            name = name[: -len(suffix)]
        if name in _KIND_BY_CLASS:
            return _KIND_BY_CLASS[name]
    return None


@dataclass(frozen=True)
class PriceSize:
    side: str
    price: Decimal
    amount: Decimal


@dataclass
class TrackedOrder:
    client_order_id: str
    side: str
    price: Decimal
    amount: Decimal
    created_at: float


@dataclass(frozen=True)
class Proposal:
    buys: tuple[PriceSize, ...]
    sells: tuple[PriceSize, ...]


def _dec(value: Any, name: str) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"{name}: expected a number, got {value!r}")
    try:
        return Decimal(str(value))
    except Exception as exc:  # decimal.InvalidOperation
        raise ValueError(f"{name}: not a number: {value!r}") from exc


class PureMarketMaking:
    """Hummingbot-style pure market making over a duck-typed connector.

    The connector offers ``ready``, ``mid_price(pair)``, ``place(pair, side, price, amount)
    -> client_order_id``, ``cancel(pair, client_order_id)``, ``add_listener(cb)`` and
    optionally ``quantize_price(pair, price)`` (or the reference connector's
    ``quantize(pair, amount, price) -> (amount, price)``). Listener events have ``kind`` in
    {created, cancelled, filled, completed, failed} (or a Hummingbot-style class name:
    OrderCancelled, OrderFailure, OrderCompleted, ...) and ``client_order_id``.
    """

    def __init__(
        self,
        connector: Any,
        pair: str,
        *,
        bid_spread: float | Decimal,
        ask_spread: float | Decimal,
        order_amount: Decimal,
        order_levels: int = 1,
        order_level_spread: float | Decimal = 0.0,
        order_refresh_time: float = 1.0,
        tick_interval: float = 1.0,
        cancel_expiry: float = 60.0,
        filled_order_delay: float = 60.0,
        should_wait_order_cancel_confirmation: bool = True,
        trace: Any = None,
    ):
        self.connector = connector
        self.pair = pair
        self.bid_spread = _dec(bid_spread, "bid_spread")
        self.ask_spread = _dec(ask_spread, "ask_spread")
        self.order_amount = _dec(order_amount, "order_amount")
        self.order_level_spread = _dec(order_level_spread, "order_level_spread")
        if self.bid_spread < 0 or self.ask_spread < 0 or self.order_level_spread < 0:
            raise ValueError("bid_spread, ask_spread and order_level_spread must be >= 0")
        if self.order_amount <= 0:
            raise ValueError(f"order_amount must be > 0, got {self.order_amount}")
        if not isinstance(order_levels, int) or order_levels < 1:
            raise ValueError(f"order_levels must be an integer >= 1, got {order_levels!r}")
        for name, value in (
            ("order_refresh_time", order_refresh_time),
            ("tick_interval", tick_interval),
            ("cancel_expiry", cancel_expiry),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if filled_order_delay < 0:
            raise ValueError(f"filled_order_delay must be >= 0, got {filled_order_delay!r}")
        self.order_levels = order_levels
        self.order_refresh_time = float(order_refresh_time)
        self.tick_interval = float(tick_interval)
        self.cancel_expiry = float(cancel_expiry)
        self.filled_order_delay = float(filled_order_delay)
        self.should_wait_order_cancel_confirmation = should_wait_order_cancel_confirmation
        self.trace = trace

        self.tracked: dict[str, TrackedOrder] = {}
        self.in_flight_cancels: dict[str, float] = {}
        self._create_timestamp = 0.0
        self._cancel_timestamp = 0.0
        self._now = 0.0
        self._last_skip: str | None = None
        self.counts: dict[str, int] = {k: 0 for k in ("created", "cancel_sent", *sorted(_KNOWN_KINDS))}
        connector.add_listener(self._on_event)

    # --- views -------------------------------------------------------------------------
    def active_orders(self, now: float | None = None) -> list[TrackedOrder]:
        """Tracked orders minus those with an in-flight cancel younger than cancel_expiry."""
        now = self._now if now is None else now
        return [
            o
            for cid, o in self.tracked.items()
            if cid not in self.in_flight_cancels or now - self.in_flight_cancels[cid] >= self.cancel_expiry
        ]

    @property
    def create_timestamp(self) -> float:
        return self._create_timestamp

    @property
    def cancel_timestamp(self) -> float:
        return self._cancel_timestamp

    # --- the tick ----------------------------------------------------------------------
    def tick(self, now: float) -> None:
        self._now = now
        if not self.connector.ready:
            self._skip("connector not ready")
            return
        if self._last_skip == "connector not ready":
            self._last_skip = None  # a later "not ready" is news again
        proposal = None
        if self._create_timestamp <= now:
            proposal = self.create_proposal()
            if proposal is None:
                self._skip("no mid price")
        self._cancel_active_orders(now)
        if proposal is not None and self._to_create_orders(now):
            self._execute_proposal(proposal, now)
            self._last_skip = None

    def create_proposal(self) -> Proposal | None:
        mid = self.connector.mid_price(self.pair)
        if mid is None:
            return None
        mid = _dec(mid, "mid_price")
        if mid <= 0:
            return None
        buys = []
        sells = []
        for level in range(self.order_levels):
            extra = self.order_level_spread * level
            bid = self._quantize(mid * (1 - self.bid_spread - extra), BUY)
            ask = self._quantize(mid * (1 + self.ask_spread + extra), SELL)
            if bid > 0:
                buys.append(PriceSize(BUY, bid, self.order_amount))
            sells.append(PriceSize(SELL, ask, self.order_amount))
        return Proposal(tuple(buys), tuple(sells))

    def _quantize(self, price: Decimal, side: str) -> Decimal:
        quantize = getattr(self.connector, "quantize_price", None)
        if callable(quantize):
            return _dec(quantize(self.pair, price), "quantize_price")
        quantize_both = getattr(self.connector, "quantize", None)  # quantize(pair, amount, price)
        if callable(quantize_both):
            try:
                _, q = quantize_both(self.pair, self.order_amount, price)
                return _dec(q, "quantize")
            except (TypeError, ValueError):
                pass  # a different signature: fall through
        if self.pair.upper().endswith("ZAR"):
            # The connector offers no quantize_price: ZAR pairs on VALR tick in whole rand
            # (tickSize "1" for BTCZAR). Bids round down and asks up so the spread never
            # shrinks below the configured one.
            return price.to_integral_value(rounding=ROUND_FLOOR if side == BUY else ROUND_CEILING)
        return price

    def _cancel_active_orders(self, now: float) -> None:
        if self._cancel_timestamp > now:
            return
        for order in self.active_orders(now):
            self._cancel(order.client_order_id, now)

    def _cancel(self, cid: str, now: float) -> bool:
        # PMM's c_check_and_track_cancel: purge expired entries, refuse a young duplicate.
        for old in [k for k, ts in self.in_flight_cancels.items() if now - ts >= self.cancel_expiry]:
            del self.in_flight_cancels[old]
        if cid in self.in_flight_cancels:
            return False
        self.in_flight_cancels[cid] = now
        self.counts["cancel_sent"] += 1
        self._record("CANCEL", {"client_order_id": cid})
        self.connector.cancel(self.pair, cid)
        return True

    def _to_create_orders(self, now: float) -> bool:
        return (
            self._create_timestamp < now
            and (not self.should_wait_order_cancel_confirmation or not self.in_flight_cancels)
            and not self.active_orders(now)
        )

    def _execute_proposal(self, proposal: Proposal, now: float) -> None:
        # the refresh cycle this proposal is for: CREATE records name their intent (cycle, side,
        # level) so the checks can tell a re-sent order from a fresh quote
        cycle = self._cycles = getattr(self, "_cycles", 0) + 1
        for level, ps in (*enumerate(proposal.buys), *enumerate(proposal.sells)):
            cid = self.connector.place(self.pair, ps.side, ps.price, ps.amount)
            self.tracked[cid] = TrackedOrder(cid, ps.side, ps.price, ps.amount, now)
            self.counts["created"] += 1
            self._record(
                "CREATE",
                {"client_order_id": cid, "side": ps.side, "price": str(ps.price), "amount": str(ps.amount),
                 "cycle": cycle, "level": level, "intent": f"c{cycle}/{ps.side}/{level}"},
            )
        self._set_timers(now)

    def _set_timers(self, now: float) -> None:
        next_cycle = now + self.order_refresh_time
        if self._create_timestamp <= now:
            self._create_timestamp = next_cycle
        if self._cancel_timestamp <= now:
            self._cancel_timestamp = min(self._create_timestamp, next_cycle)

    # --- connector events --------------------------------------------------------------
    def _on_event(self, event: Any) -> None:
        kind = event_kind(event)
        cid = getattr(event, "client_order_id", None)
        if kind not in _KNOWN_KINDS or cid not in self.tracked:
            return  # not ours (or an event kind the strategy does not act on)
        self.counts[kind] += 1
        if kind in _DONE_KINDS:
            del self.tracked[cid]
            self.in_flight_cancels.pop(cid, None)
        if kind == "completed":
            # PMM uses the strategy's current (last tick) timestamp, not the event's own:
            # the connector stamps events in epoch seconds, the ticks run on loop time.
            self._create_timestamp = self._now + self.filled_order_delay


    # --- driving -----------------------------------------------------------------------
    async def run(self, until: float) -> None:
        """Tick at whole multiples of tick_interval on the loop's clock until loop.time() >= until."""
        loop = asyncio.get_running_loop()
        last_k: int | None = None
        while True:
            now = loop.time()
            if now >= until:
                return
            k = math.floor(now / self.tick_interval) + 1
            if last_k is not None and k <= last_k:
                k = last_k + 1  # asyncio may wake a timer up to one clock resolution early
            last_k = k
            next_tick = k * self.tick_interval
            if next_tick >= until:
                await asyncio.sleep(until - now)
                return
            await asyncio.sleep(next_tick - now)
            try:
                self.tick(next_tick)
            except Exception as exc:  # like Hummingbot's Clock: log and keep ticking
                log.exception("strategy tick at %.3f failed", next_tick)
                self._skip(f"error: {type(exc).__name__}: {exc}")

    # --- trace -------------------------------------------------------------------------
    def _skip(self, reason: str) -> None:
        if reason != self._last_skip:  # sparingly: only when the reason changes
            self._last_skip = reason
            self._record("TICK_SKIPPED", {"reason": reason})

    def _record(self, type_: str, data: dict[str, Any]) -> None:
        if self.trace is not None:
            self.trace.record("strategy", "local", "strategy", type_, data)
