"""VALR's account WebSocket (``/ws/account``): account events, and order commands sent on it.

The data source owns the socket. Account events go to the user stream queue as usual. The
exchange sends PLACE_LIMIT_ORDER / CANCEL_LIMIT_ORDER through ``send_command``, which writes
the command (with a fresh ``clientMsgId``) on the current socket and waits for the reply with
the same ``clientMsgId``; the reader resolves the waiting future instead of queueing the reply.

Reconnects: with no socket, ``send_command`` raises ``ConnectionError`` at once (the caller falls
back to REST); when the socket goes away, every waiting command fails with ``ConnectionError``
(its reply can no longer come on this socket).
"""

import asyncio
import uuid
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from hummingbot.core.data_type.user_stream_tracker_data_source import UserStreamTrackerDataSource
from hummingbot.core.web_assistant.connections.data_types import WSJSONRequest
from hummingbot.core.web_assistant.web_assistants_factory import WebAssistantsFactory
from hummingbot.core.web_assistant.ws_assistant import WSAssistant

from . import valr_constants as CONSTANTS
from . import valr_web_utils as web_utils
from .valr_auth import ValrAuth

if TYPE_CHECKING:
    from hummingbot.connector.exchange_py_base import ExchangePyBase


def client_msg_id_of(message: Dict[str, Any]) -> Optional[str]:
    """The ``clientMsgId`` of a reply: top level, else inside ``data``."""
    cid = message.get("clientMsgId")
    if cid is None and isinstance(message.get("data"), dict):
        cid = message["data"].get("clientMsgId")
    return None if cid is None else str(cid)


class ValrAPIUserStreamDataSource(UserStreamTrackerDataSource):

    def __init__(self,
                 auth: ValrAuth,
                 trading_pairs: List[str],
                 connector: "ExchangePyBase",  # ValrExchange (not imported: it imports this module)
                 api_factory: WebAssistantsFactory,
                 domain: str = CONSTANTS.DEFAULT_DOMAIN):
        super().__init__()
        self._auth = auth
        self._trading_pairs = trading_pairs
        self._connector = connector
        self._api_factory = api_factory
        self._domain = domain
        self._pending: Dict[str, asyncio.Future] = {}
        self._ping_task: Optional[asyncio.Task] = None
        self._ready = False  # connected and able to take commands
        self.connects = 0
        self.authenticated = False

    # --- connection -----------------------------------------------------------------------------
    async def _connected_websocket_assistant(self) -> WSAssistant:
        url = web_utils.wss_account_url(self._domain)
        ws: WSAssistant = await self._api_factory.get_ws_assistant()
        await ws.connect(ws_url=url, ping_timeout=CONSTANTS.WS_HEARTBEAT_TIME_INTERVAL,
                         ws_headers=self._auth.ws_headers(url))
        self.connects += 1
        return ws

    async def _subscribe_channels(self, websocket_assistant: WSAssistant):
        # The account stream pushes every account event without a subscription.
        self._ready = True
        self._stop_ping()
        self._ping_task = asyncio.ensure_future(web_utils.ping_loop(websocket_assistant, self._sleep))

    def _stop_ping(self):
        if self._ping_task is not None and not self._ping_task.done():
            self._ping_task.cancel()
        self._ping_task = None

    async def _on_user_stream_interruption(self, websocket_assistant: Optional[WSAssistant]):
        self._ready = False
        self.authenticated = False
        self._stop_ping()
        self._fail_pending(ConnectionError("the account WebSocket closed before the reply"))
        await super()._on_user_stream_interruption(websocket_assistant=websocket_assistant)

    async def stop(self):
        self._ready = False
        self._stop_ping()
        self._fail_pending(ConnectionError("the account stream is stopping"))
        await super().stop()

    def _fail_pending(self, exc: Exception):
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved: no "never retrieved" warning if nobody waits any more

    # --- commands -------------------------------------------------------------------------------
    @property
    def can_send_commands(self) -> bool:
        return self._ready and self._ws_assistant is not None

    async def send_command(self, msg_type: str, payload: Dict[str, Any], timeout: float) -> Dict[str, Any]:
        """Send one command on the account socket and return its reply (the whole message).

        Raises ``ConnectionError`` when there is no socket or it closes before the reply, and
        ``asyncio.TimeoutError`` when no reply comes within ``timeout`` seconds.
        """
        ws = self._ws_assistant
        if not self._ready or ws is None:
            raise ConnectionError("the account WebSocket is not connected")
        client_msg_id = uuid.uuid4().hex
        fut = asyncio.get_running_loop().create_future()
        self._pending[client_msg_id] = fut
        try:
            try:
                await ws.send(WSJSONRequest(payload={"type": msg_type, "clientMsgId": client_msg_id,
                                                     "payload": payload}))
            except asyncio.CancelledError:
                raise
            except Exception as e:
                raise ConnectionError(f"sending {msg_type} failed: {e}") from e
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(client_msg_id, None)

    # --- incoming -------------------------------------------------------------------------------
    async def _process_event_message(self, event_message: Dict[str, Any], queue: asyncio.Queue):
        if not isinstance(event_message, dict) or len(event_message) == 0:
            return
        msg_type = event_message.get("type")
        if msg_type == CONSTANTS.AUTHENTICATED:
            self.authenticated = True
        client_msg_id = client_msg_id_of(event_message)
        if client_msg_id is not None:
            fut = self._pending.pop(client_msg_id, None)
            if fut is not None:
                if not fut.done():
                    fut.set_result(event_message)
                return
        queue.put_nowait(event_message)
