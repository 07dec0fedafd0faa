"""The reference VALR connector, its order tracker, the OPEN_ORDERS_UPDATE policies and the
adapter interface any connector implements to be driven by valr-replay."""

from .adapter import BelievedOrder, ConnectorAdapter, ReferenceAdapter, ServerUrls, load_connector
from .policies import OpenOrdersPolicy, parse_policy
from .tracker import (
    ClientOrderTracker,
    InFlightOrder,
    OrderCancelled,
    OrderCompleted,
    OrderCreated,
    OrderFailure,
    OrderFilled,
    OrderState,
    OrderUpdate,
    TradeUpdate,
)

__all__ = [
    "BelievedOrder", "ClientOrderTracker", "ConnectorAdapter", "InFlightOrder", "OpenOrdersPolicy",
    "OrderCancelled", "OrderCompleted", "OrderCreated", "OrderFailure", "OrderFilled", "OrderState",
    "OrderUpdate", "ReferenceAdapter", "ServerUrls", "TradeUpdate", "ValrConnector", "load_connector",
    "parse_policy",
]


def __getattr__(name: str):
    if name == "ValrConnector":  # imported lazily: it pulls in aiohttp
        from .valr import ValrConnector

        return ValrConnector
    raise AttributeError(name)
