"""VALR book and trade messages -> Hummingbot OrderBookMessages.

VALR's REST order book and the trade stream's AGGREGATED_ORDERBOOK_UPDATE have the same shape
(capitalised ``Asks``/``Bids`` of ``{"price", "quantity", ...}``, ``SequenceNumber``,
``LastChange``), and each message is a whole top-of-book: both become SNAPSHOT messages.
"""

from typing import Any, Dict, List, Optional

from hummingbot.core.data_type.common import TradeType
from hummingbot.core.data_type.order_book import OrderBook
from hummingbot.core.data_type.order_book_message import OrderBookMessage, OrderBookMessageType

from .valr_utils import parse_valr_time


def _levels(rows: Any) -> List[List[str]]:
    out = []
    for row in rows or []:
        if isinstance(row, dict):
            price, qty = row.get("price", row.get("Price")), row.get("quantity", row.get("Quantity"))
        else:
            price, qty = row[0], row[1]
        if price is not None and qty is not None:
            out.append([str(price), str(qty)])
    return out


class ValrOrderBook(OrderBook):

    @classmethod
    def snapshot_message_from_exchange(cls, msg: Dict[str, Any], timestamp: float,
                                       metadata: Optional[Dict] = None) -> OrderBookMessage:
        """``msg`` is the book itself (the REST body, or the ``data`` of a stream message)."""
        metadata = metadata or {}
        seq = msg.get("SequenceNumber")
        if seq is None:
            last_change = parse_valr_time(msg.get("LastChange"))
            seq = int(last_change * 1000) if last_change is not None else int(timestamp * 1000)
        return OrderBookMessage(OrderBookMessageType.SNAPSHOT, {
            "trading_pair": metadata["trading_pair"],
            "update_id": int(seq),
            "bids": _levels(msg.get("Bids")),
            "asks": _levels(msg.get("Asks")),
        }, timestamp=timestamp)

    @classmethod
    def trade_message_from_exchange(cls, msg: Dict[str, Any], timestamp: float,
                                    metadata: Optional[Dict] = None) -> OrderBookMessage:
        """``msg`` is a NEW_TRADE ``data``: ``{price, quantity, currencyPair, tradedAt, takerSide, id}``."""
        metadata = metadata or {}
        traded_at = parse_valr_time(msg.get("tradedAt"))
        ts = traded_at if traded_at is not None else timestamp
        side = str(msg.get("takerSide", "")).lower()
        return OrderBookMessage(OrderBookMessageType.TRADE, {
            "trading_pair": metadata["trading_pair"],
            "trade_type": float(TradeType.SELL.value) if side == "sell" else float(TradeType.BUY.value),
            "trade_id": str(msg.get("id") or msg.get("sequenceId") or int(ts * 1000)),
            "update_id": int(ts * 1000),
            "price": str(msg.get("price")),
            "amount": str(msg.get("quantity")),
        }, timestamp=ts)
