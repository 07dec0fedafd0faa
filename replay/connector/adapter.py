"""The interface any connector implements to be driven by the quoting loop and observed
by the checks. See docs/adapter.md.

``load_connector("reference", **options)`` gives the reference connector (``ValrConnector``
behind ``ReferenceAdapter``); ``load_connector("package.module:attr", **options)`` calls
``attr(**options)`` (a class or factory) and checks the result has the adapter's methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Protocol, runtime_checkable

from replay.importing import NotFound, import_attribute


@dataclass(frozen=True)
class ServerUrls:
    rest_url: str
    ws_account_url: str
    ws_trade_url: str


@dataclass(frozen=True)
class BelievedOrder:
    """One order as the connector believes it to be.

    ``state`` is one of PENDING_CREATE, OPEN, PENDING_CANCEL, CANCELED, PARTIALLY_FILLED,
    FILLED, FAILED. ``where`` is the connector's own bookkeeping: ``active`` (it will
    cancel/poll it), ``cached`` (it has stopped looking after it) or ``lost`` (it does not
    know, and keeps trying to cancel it).
    """

    client_order_id: str
    exchange_order_id: str | None
    pair: str
    side: str  # "buy" | "sell"
    price: Decimal
    amount: Decimal
    state: str
    where: str


@runtime_checkable
class ConnectorAdapter(Protocol):
    @property
    def ready(self) -> bool: ...

    async def start(self, urls: ServerUrls, api_key: str, api_secret: str) -> None: ...

    def place(self, pair: str, side: str, price: Decimal, amount: Decimal) -> str: ...

    def cancel(self, pair: str, client_order_id: str) -> None: ...

    def believed_orders(self) -> list[BelievedOrder]: ...

    def add_listener(self, callback: Callable[[Any], None]) -> None: ...

    def mid_price(self, pair: str) -> Decimal | None: ...

    async def cancel_all(self, timeout: float) -> None: ...

    async def stop(self) -> None: ...


REQUIRED = ("start", "place", "cancel", "believed_orders", "add_listener", "mid_price", "cancel_all", "stop")


class ReferenceAdapter:
    """``ConnectorAdapter`` over ``ValrConnector``; ``options`` go to its constructor
    (policy, clock, trace, seed, ws_order_timeout, pairs, ...)."""

    def __init__(self, **options: Any):
        from .valr import ValrConnector  # noqa: F401  (fail early on a broken install)

        for reserved in ("rest_url", "ws_account_url", "ws_trade_url", "api_key", "api_secret"):
            if reserved in options:
                raise ValueError(f"option {reserved!r} is given to start(), not to the adapter")
        self.options = options
        self.connector: Any = None
        self._listeners: list[Callable[[Any], None]] = []

    async def start(self, urls: ServerUrls, api_key: str, api_secret: str) -> None:
        from .valr import ValrConnector

        if self.connector is not None:
            raise RuntimeError("adapter already started")
        self.connector = ValrConnector(rest_url=urls.rest_url, ws_account_url=urls.ws_account_url,
                                       ws_trade_url=urls.ws_trade_url, api_key=api_key, api_secret=api_secret,
                                       **self.options)
        for cb in self._listeners:
            self.connector.add_listener(cb)
        await self.connector.start()

    def _c(self) -> Any:
        if self.connector is None:
            raise RuntimeError("adapter not started")
        return self.connector

    @property
    def ready(self) -> bool:
        return self.connector is not None and self.connector.ready

    def place(self, pair: str, side: str, price: Decimal, amount: Decimal) -> str:
        s = side.lower()
        if s == "buy":
            return self._c().buy(pair, amount, price)
        if s == "sell":
            return self._c().sell(pair, amount, price)
        raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")

    def cancel(self, pair: str, client_order_id: str) -> None:
        self._c().cancel(pair, client_order_id)

    def believed_orders(self) -> list[BelievedOrder]:
        if self.connector is None:
            return []
        tr = self.connector.tracker
        out = []
        pools = (("active", dict(tr.active)), ("cached", dict(tr.cached.items())), ("lost", dict(tr.lost)))
        for where, orders in pools:
            for o in orders.values():
                out.append(BelievedOrder(o.client_order_id, o.exchange_order_id, o.pair, o.side, o.price, o.amount,
                                         o.state.name, where))
        return out

    def add_listener(self, callback: Callable[[Any], None]) -> None:
        self._listeners.append(callback)
        if self.connector is not None:
            self.connector.add_listener(callback)

    def mid_price(self, pair: str) -> Decimal | None:
        return None if self.connector is None else self.connector.mid_price(pair)

    def quantize_price(self, pair: str, price: Decimal) -> Decimal:
        """Optional extra the strategy uses when present: the price rounded down to the tick."""
        return self._c().quantize_price(pair, price)

    async def wait_ready(self, timeout: float) -> None:
        """Optional extra: wait until ``ready`` (raises TimeoutError naming what is missing)."""
        await self._c().wait_ready(timeout)

    async def cancel_all(self, timeout: float) -> None:
        if self.connector is not None:
            await self.connector.cancel_all(timeout)

    async def stop(self) -> None:
        if self.connector is not None:
            await self.connector.stop()


def connector_factory(name: str, what: str = "connector") -> Any:
    """The class or factory ``"package.module:attr"`` names (ValueError, starting ``what 'name'``, if none)."""
    module_name, sep, attr = name.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{what} {name!r}: expected 'reference' or 'package.module:attr'")
    try:
        target = import_attribute(module_name, attr)
    except NotFound as exc:
        raise ValueError(f"{what} {name!r}: {exc}") from None
    if not callable(target):
        raise ValueError(f"{what} {name!r}: {attr!r} is not a class or factory")
    return target


def load_connector(name: str, **options: Any) -> ConnectorAdapter:
    """``"reference"`` or ``"package.module:attr"`` (a class or factory called with ``options``)."""
    if name == "reference":
        return ReferenceAdapter(**options)
    adapter = connector_factory(name)(**options)
    missing = [m for m in REQUIRED if not callable(getattr(adapter, m, None))]
    if missing or not hasattr(adapter, "ready"):
        raise ValueError(f"connector {name!r}: the object it made lacks {', '.join(missing or ['ready'])}")
    return adapter
