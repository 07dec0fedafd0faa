"""URLs, the web assistants factory and the server time, for VALR.

Every URL is built from ``CONSTANTS.REST_URL`` / ``CONSTANTS.WSS_*_URL`` at call time.
"""

import asyncio
from datetime import datetime
from typing import Any, Callable, Optional

from hummingbot.connector.time_synchronizer import TimeSynchronizer
from hummingbot.connector.utils import TimeSynchronizerRESTPreProcessor
from hummingbot.core.api_throttler.async_throttler import AsyncThrottler
from hummingbot.core.web_assistant.auth import AuthBase
from hummingbot.core.web_assistant.connections.data_types import RESTMethod, WSJSONRequest
from hummingbot.core.web_assistant.web_assistants_factory import WebAssistantsFactory
from hummingbot.core.web_assistant.ws_assistant import WSAssistant

from . import valr_constants as CONSTANTS


def public_rest_url(path_url: str, domain: str = CONSTANTS.DEFAULT_DOMAIN) -> str:
    return CONSTANTS.REST_URL.rstrip("/") + path_url


def private_rest_url(path_url: str, domain: str = CONSTANTS.DEFAULT_DOMAIN) -> str:
    return CONSTANTS.REST_URL.rstrip("/") + path_url


def wss_account_url(domain: str = CONSTANTS.DEFAULT_DOMAIN) -> str:
    return CONSTANTS.WSS_ACCOUNT_URL


def wss_trade_url(domain: str = CONSTANTS.DEFAULT_DOMAIN) -> str:
    return CONSTANTS.WSS_TRADE_URL


def create_throttler() -> AsyncThrottler:
    return AsyncThrottler(CONSTANTS.RATE_LIMITS)


def build_api_factory(
        throttler: Optional[AsyncThrottler] = None,
        time_synchronizer: Optional[TimeSynchronizer] = None,
        domain: str = CONSTANTS.DEFAULT_DOMAIN,
        time_provider: Optional[Callable] = None,
        auth: Optional[AuthBase] = None) -> WebAssistantsFactory:
    throttler = throttler or create_throttler()
    time_synchronizer = time_synchronizer or TimeSynchronizer()
    time_provider = time_provider or (lambda: get_current_server_time(throttler=throttler, domain=domain))
    return WebAssistantsFactory(
        throttler=throttler,
        auth=auth,
        rest_pre_processors=[
            TimeSynchronizerRESTPreProcessor(synchronizer=time_synchronizer, time_provider=time_provider),
        ])


def build_api_factory_without_time_synchronizer_pre_processor(throttler: AsyncThrottler) -> WebAssistantsFactory:
    return WebAssistantsFactory(throttler=throttler)


def parse_server_time_ms(response: Any) -> float:
    """``{"epochTime": <s>, "time": "<ISO 8601>"}`` -> epoch milliseconds (the ISO text has ms)."""
    if isinstance(response, dict):
        text = response.get("time")
        if isinstance(text, str) and text:
            try:
                return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1e3
            except ValueError:
                pass
        epoch = response.get("epochTime")
        if epoch is not None:
            epoch = float(epoch)
            return epoch if epoch > 1e11 else epoch * 1e3
    raise ValueError(f"unexpected server time response: {response!r}")


async def get_current_server_time(
        throttler: Optional[AsyncThrottler] = None,
        domain: str = CONSTANTS.DEFAULT_DOMAIN) -> float:
    """The server's time in milliseconds (what TimeSynchronizer expects)."""
    throttler = throttler or create_throttler()
    api_factory = build_api_factory_without_time_synchronizer_pre_processor(throttler=throttler)
    rest_assistant = await api_factory.get_rest_assistant()
    response = await rest_assistant.execute_request(
        url=public_rest_url(path_url=CONSTANTS.SERVER_TIME_PATH_URL, domain=domain),
        method=RESTMethod.GET,
        throttler_limit_id=CONSTANTS.SERVER_TIME_PATH_URL,
    )
    return parse_server_time_ms(response)


async def ping_loop(ws: WSAssistant, sleep: Callable[[float], Any]) -> None:
    """VALR's application-level keep-alive: a ``PING`` every ``WS_PING_INTERVAL`` seconds until the
    socket is gone (the stream's listener then reconnects). ``sleep`` is the data source's own."""
    while True:
        await sleep(CONSTANTS.WS_PING_INTERVAL)
        try:
            await ws.send(WSJSONRequest(payload={"type": "PING"}))
        except asyncio.CancelledError:
            raise
        except Exception:
            return
