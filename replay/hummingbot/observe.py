"""Hummingbot's order tracker and strategy calls, as the trace's client and strategy records.

The checks judge a connector from its trace: ``client``/``ORDER_STATE`` records (one per change
of an order's state or of the set it is kept in: ``active``, ``cached``, ``lost``) and
``strategy``/``CREATE``/``CANCEL`` records (what the quoting loop asked for). For a Hummingbot
connector they come from its own ``ClientOrderTracker``: the observer wraps the tracker's entry
points on the instance and, after each, compares every order it touched with what it last
recorded for it. So the records say exactly what Hummingbot's tracker did, including a false
CANCELED followed by a late OPEN that leaves the order in the cache.

The reason of a change is the ``"reason"`` a connector puts in ``OrderUpdate.misc_updates``
(our connector does), else ``update`` (an order update), ``create`` or ``not_found`` (the
not-found counter moved the order to the lost set). A lost order the exchange later reports
finished leaves the lost set with its state unchanged, as Hummingbot does: that record carries
``lost_resolved: true``.
"""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Any, Callable

from replay.capture import TraceRecorder


def valr_symbol(trading_pair: str) -> str:
    """Hummingbot's ``BTC-ZAR`` as VALR spells it: ``BTCZAR``."""
    return trading_pair.replace("-", "")


class TrackerObserver:
    """Writes ``ORDER_STATE`` records for a ``ClientOrderTracker``; :meth:`attach` wraps it."""

    def __init__(self, tracker: Any, trace: TraceRecorder | None):
        self.tracker = tracker
        self.trace = trace
        self.last: dict[str, tuple[str, str | None]] = {}  # client id -> (state, where) last recorded
        self._deferred: set[str] = set()  # orders inside process_order_not_found: recorded once, after it

    # --- the tracker's view ----------------------------------------------------------------
    def where(self, client_order_id: str) -> str | None:
        t = self.tracker
        if client_order_id in t.active_orders:
            return "active"
        if client_order_id in t.lost_orders:
            return "lost"
        if client_order_id in t.cached_orders:
            return "cached"
        return None

    def find(self, client_order_id: str | None, exchange_order_id: str | None = None) -> Any:
        t = self.tracker
        pools = (t.active_orders, t.lost_orders, t.cached_orders)
        for pool in pools:
            if client_order_id is not None and client_order_id in pool:
                return pool[client_order_id]
        if exchange_order_id is not None:
            for pool in pools:
                for order in list(pool.values()):
                    if order.exchange_order_id == exchange_order_id:
                        return order
        return None

    def sync(self, order: Any, reason: str, **extra: Any) -> None:
        """Record ``order`` if its state or place changed since it was last recorded."""
        if order is None:
            return
        cid = order.client_order_id
        now = (order.current_state.name, self.where(cid))
        before = self.last.get(cid)
        if before == now and not extra:
            return
        self.last[cid] = now
        if self.trace is None:
            return
        data = {
            "client_order_id": cid,
            "exchange_order_id": order.exchange_order_id,
            "pair": valr_symbol(order.trading_pair),
            "side": order.trade_type.name.lower(),
            "price": str(order.price),
            "amount": str(order.amount),
            "from": before[0] if before else None,
            "to": now[0],
            "reason": reason,
            "where": now[1],
        }
        executed = getattr(order, "executed_amount_base", None)
        if executed is not None:
            data["executed_amount_base"] = str(executed)
        data.update(extra)
        self.trace.record("client", "local", "client", "ORDER_STATE", data)

    # --- wrapping ----------------------------------------------------------------------------
    def attach(self) -> None:
        t = self.tracker
        start_tracking = t.start_tracking_order
        process_update = t._process_order_update
        not_found = t.process_order_not_found

        @functools.wraps(start_tracking)
        def start_tracking_order(order: Any) -> Any:
            result = start_tracking(order)
            self.sync(order, "create")
            return result

        @functools.wraps(process_update)
        async def _process_order_update(update: Any) -> Any:
            order = self.find(update.client_order_id, update.exchange_order_id)
            result = await process_update(update)
            misc = getattr(update, "misc_updates", None) or {}
            reason = str(misc.get("reason") or "update")
            if order is None or order.client_order_id in self._deferred:
                return result
            was_lost = self.last.get(order.client_order_id, ("", None))[1] == "lost"
            if was_lost and self.where(order.client_order_id) is None:
                # a lost order the exchange reported finished: Hummingbot drops it from the lost set
                self.sync(order, reason, lost_resolved=True)
            else:
                self.sync(order, reason)
            return result

        @functools.wraps(not_found)
        async def process_order_not_found(client_order_id: str) -> Any:
            order = self.find(client_order_id)
            self._deferred.add(client_order_id)
            try:
                result = await not_found(client_order_id)
            finally:
                self._deferred.discard(client_order_id)
            if order is not None:
                # the 4th miss: FAILED, through the cache, into the lost set, as one record
                self.sync(order, "not_found")
            return result

        process_trade = t.process_trade_update

        @functools.wraps(process_trade)
        def process_trade_update(trade: Any) -> Any:
            result = process_trade(trade)
            order = self.find(getattr(trade, "client_order_id", None), getattr(trade, "exchange_order_id", None))
            if order is not None and self.trace is not None:
                self.trace.record("client", "local", "client", "ORDER_FILL", {
                    "client_order_id": order.client_order_id,
                    "exchange_order_id": order.exchange_order_id,
                    "trade_id": str(getattr(trade, "trade_id", "")),
                    "fill_base_amount": str(getattr(trade, "fill_base_amount", "")),
                    "executed_amount_base": str(getattr(order, "executed_amount_base", "")),
                    "where": self.where(order.client_order_id),
                })
            return result

        t.start_tracking_order = start_tracking_order
        t._process_order_update = _process_order_update
        t.process_order_not_found = process_order_not_found
        t.process_trade_update = process_trade_update


def observe_strategy_calls(connector: Any, trace: TraceRecorder | None) -> None:
    """``strategy``/``CREATE`` and ``CANCEL`` records for every ``buy``/``sell``/``cancel`` call.

    Hummingbot's PMM reaches the connector through ``ConnectorBase.c_buy``/``c_sell``/``c_cancel``,
    which call ``self.buy``/``self.sell``/``self.cancel``: wrapping them on the instance sees every
    order the strategy asks for (``cancel_all`` at shutdown goes past them, as it should)."""
    if trace is None:
        return

    def record(type_: str, data: dict[str, Any]) -> None:
        trace.record("strategy", "local", "strategy", type_, data)

    def placing(side: str, original: Callable[..., str]) -> Callable[..., str]:
        @functools.wraps(original)
        def place(trading_pair: str, amount: Decimal, *args: Any, **kwargs: Any) -> str:
            cid = original(trading_pair, amount, *args, **kwargs)
            price = kwargs.get("price", args[1] if len(args) > 1 else None)
            record("CREATE", {"client_order_id": cid, "side": side, "price": str(price), "amount": str(amount)})
            return cid
        return place

    cancel_original = connector.cancel

    @functools.wraps(cancel_original)
    def cancel(trading_pair: str, client_order_id: str) -> Any:
        record("CANCEL", {"client_order_id": client_order_id})
        return cancel_original(trading_pair, client_order_id)

    connector.buy = placing("buy", connector.buy)
    connector.sell = placing("sell", connector.sell)
    connector.cancel = cancel
