"""Order books from VALR's trade WebSocket.

The stream's AGGREGATED_ORDERBOOK_UPDATE is a whole top-of-book per message, so every one is
fed to the tracker as a SNAPSHOT (no diffs); the first book comes from REST
``GET /v1/public/{pair}/orderbook``. NEW_TRADE messages become trade messages.
"""

import asyncio
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from hummingbot.core.data_type.order_book_message import OrderBookMessage
from hummingbot.core.data_type.order_book_tracker_data_source import OrderBookTrackerDataSource
from hummingbot.core.web_assistant.connections.data_types import RESTMethod, WSJSONRequest
from hummingbot.core.web_assistant.web_assistants_factory import WebAssistantsFactory
from hummingbot.core.web_assistant.ws_assistant import WSAssistant

from . import valr_constants as CONSTANTS
from . import valr_web_utils as web_utils
from .valr_order_book import ValrOrderBook

if TYPE_CHECKING:
    from hummingbot.connector.exchange_py_base import ExchangePyBase


class ValrAPIOrderBookDataSource(OrderBookTrackerDataSource):

    def __init__(self,
                 trading_pairs: List[str],
                 connector: "ExchangePyBase",  # ValrExchange (not imported: it imports this module)
                 api_factory: WebAssistantsFactory,
                 domain: str = CONSTANTS.DEFAULT_DOMAIN):
        super().__init__(trading_pairs)
        self._connector = connector
        self._api_factory = api_factory
        self._domain = domain
        self._snapshot_messages_queue_key = CONSTANTS.WS_ORDER_BOOK_EVENT
        self._trade_messages_queue_key = CONSTANTS.WS_TRADE_EVENT
        self._diff_messages_queue_key = "valr-no-diffs"  # VALR's aggregated book has no diffs
        self._ping_task: Optional[asyncio.Task] = None

    async def get_last_traded_prices(self, trading_pairs: List[str], domain: Optional[str] = None) -> Dict[str, float]:
        return await self._connector.get_last_traded_prices(trading_pairs=trading_pairs)

    # --- REST snapshot --------------------------------------------------------------------------
    async def _request_order_book_snapshot(self, trading_pair: str) -> Dict[str, Any]:
        symbol = await self._connector.exchange_symbol_associated_to_pair(trading_pair=trading_pair)
        rest_assistant = await self._api_factory.get_rest_assistant()
        return await rest_assistant.execute_request(
            url=web_utils.public_rest_url(CONSTANTS.ORDER_BOOK_PATH_URL.format(symbol), domain=self._domain),
            method=RESTMethod.GET,
            throttler_limit_id=CONSTANTS.ORDER_BOOK_LIMIT_ID,
        )

    async def _order_book_snapshot(self, trading_pair: str) -> OrderBookMessage:
        snapshot = await self._request_order_book_snapshot(trading_pair)
        return ValrOrderBook.snapshot_message_from_exchange(
            snapshot, self._time(), metadata={"trading_pair": trading_pair})

    # --- WebSocket ------------------------------------------------------------------------------
    async def _connected_websocket_assistant(self) -> WSAssistant:
        url = web_utils.wss_trade_url(self._domain)
        auth = self._api_factory.auth
        headers = auth.ws_headers(url) if auth is not None and hasattr(auth, "ws_headers") else {}
        ws: WSAssistant = await self._api_factory.get_ws_assistant()
        await ws.connect(ws_url=url, ping_timeout=CONSTANTS.WS_HEARTBEAT_TIME_INTERVAL, ws_headers=headers)
        return ws

    async def _subscription_request(self, trading_pairs: List[str]) -> WSJSONRequest:
        symbols = [await self._connector.exchange_symbol_associated_to_pair(trading_pair=p) for p in trading_pairs]
        return WSJSONRequest(payload={
            "type": "SUBSCRIBE",
            "subscriptions": [
                {"event": CONSTANTS.WS_ORDER_BOOK_EVENT, "pairs": symbols},
                {"event": CONSTANTS.WS_TRADE_EVENT, "pairs": symbols},
            ],
        })

    async def _subscribe_channels(self, ws: WSAssistant):
        try:
            await ws.send(await self._subscription_request(list(self._trading_pairs)))
            self._start_ping(ws)
            self.logger().info("Subscribed to public order book and trade channels...")
        except asyncio.CancelledError:
            raise
        except Exception:
            self.logger().error("Unexpected error occurred subscribing to order book data streams.", exc_info=True)
            raise

    def _start_ping(self, ws: WSAssistant):
        self._stop_ping()
        self._ping_task = asyncio.ensure_future(web_utils.ping_loop(ws, self._sleep))

    def _stop_ping(self):
        if self._ping_task is not None and not self._ping_task.done():
            self._ping_task.cancel()
        self._ping_task = None

    async def _on_order_stream_interruption(self, websocket_assistant: Optional[WSAssistant] = None):
        self._stop_ping()
        await super()._on_order_stream_interruption(websocket_assistant=websocket_assistant)

    def _channel_originating_message(self, event_message: Dict[str, Any]) -> str:
        return event_message.get("type", "") if isinstance(event_message, dict) else ""

    async def _pair_of(self, raw_message: Dict[str, Any]) -> Optional[str]:
        data = found if isinstance(found := raw_message.get("data"), dict) else {}
        symbol = raw_message.get("currencyPairSymbol") or data.get("currencyPair") or data.get("currencyPairSymbol")
        if not symbol:
            return None
        try:
            return await self._connector.trading_pair_associated_to_exchange_symbol(symbol=str(symbol))
        except KeyError:
            return None

    async def _parse_order_book_snapshot_message(self, raw_message: Dict[str, Any], message_queue: asyncio.Queue):
        trading_pair = await self._pair_of(raw_message)
        if trading_pair is None or trading_pair not in self._trading_pairs:
            return
        message_queue.put_nowait(ValrOrderBook.snapshot_message_from_exchange(
            raw_message.get("data") or {}, self._time(), metadata={"trading_pair": trading_pair}))

    async def _parse_trade_message(self, raw_message: Dict[str, Any], message_queue: asyncio.Queue):
        trading_pair = await self._pair_of(raw_message)
        if trading_pair is None or trading_pair not in self._trading_pairs:
            return
        message_queue.put_nowait(ValrOrderBook.trade_message_from_exchange(
            raw_message.get("data") or {}, self._time(), metadata={"trading_pair": trading_pair}))

    async def subscribe_to_trading_pair(self, trading_pair: str) -> bool:
        if self._ws_assistant is None:
            self.logger().warning("Cannot subscribe: WebSocket connection not established")
            return False
        try:
            pairs = list(self._trading_pairs) + ([trading_pair] if trading_pair not in self._trading_pairs else [])
            await self._ws_assistant.send(await self._subscription_request(pairs))
            self.add_trading_pair(trading_pair)
            return True
        except asyncio.CancelledError:
            raise
        except Exception:
            self.logger().error(f"Unexpected error subscribing to {trading_pair}", exc_info=True)
            return False

    async def unsubscribe_from_trading_pair(self, trading_pair: str) -> bool:
        if self._ws_assistant is None:
            self.logger().warning("Cannot unsubscribe: WebSocket connection not established")
            return False
        try:
            # A SUBSCRIBE replaces each named event's pair set ("pairs": [] unsubscribes).
            pairs = [p for p in self._trading_pairs if p != trading_pair]
            await self._ws_assistant.send(await self._subscription_request(pairs))
            self.remove_trading_pair(trading_pair)
            return True
        except asyncio.CancelledError:
            raise
        except Exception:
            self.logger().error(f"Unexpected error unsubscribing from {trading_pair}", exc_info=True)
            return False
