"""VALR request signing.

signature = hex(HMAC-SHA512(secret, timestamp_ms + VERB + path_with_query + body)), sent as the
X-VALR-API-KEY / X-VALR-SIGNATURE / X-VALR-TIMESTAMP headers. The account WebSocket upgrade is
signed the same way as ``GET /ws/account`` with an empty body.

The timestamp is read with ``time.time()`` at signing time (looked up on the module each call,
so a harness that replaces ``time.time`` reaches it).
"""

import hashlib
import hmac
import time
from typing import Dict, Optional
from urllib.parse import urlencode, urlsplit

from hummingbot.core.web_assistant.auth import AuthBase
from hummingbot.core.web_assistant.connections.data_types import RESTRequest, WSRequest

API_KEY_HEADER = "X-VALR-API-KEY"
SIGNATURE_HEADER = "X-VALR-SIGNATURE"
TIMESTAMP_HEADER = "X-VALR-TIMESTAMP"


class ValrAuth(AuthBase):
    def __init__(self, api_key: str, secret_key: str):
        self.api_key = api_key
        self.secret_key = secret_key

    @staticmethod
    def _timestamp_ms() -> int:
        return int(time.time() * 1000)

    def signature(self, timestamp_ms: int, method: str, path_with_query: str, body: str = "") -> str:
        payload = f"{timestamp_ms}{method.upper()}{path_with_query}{body}"
        return hmac.new(self.secret_key.encode("utf-8"), payload.encode("utf-8"), hashlib.sha512).hexdigest()

    def header_for_authentication(self, method: str, path_with_query: str, body: str = "",
                                  timestamp_ms: Optional[int] = None) -> Dict[str, str]:
        ts = self._timestamp_ms() if timestamp_ms is None else timestamp_ms
        return {
            API_KEY_HEADER: self.api_key,
            SIGNATURE_HEADER: self.signature(ts, method, path_with_query, body),
            TIMESTAMP_HEADER: str(ts),
        }

    def ws_headers(self, ws_url: str) -> Dict[str, str]:
        """Headers for a signed WebSocket upgrade (``GET <path of ws_url>``, empty body)."""
        parts = urlsplit(ws_url)
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        return self.header_for_authentication("GET", path)

    async def rest_authenticate(self, request: RESTRequest) -> RESTRequest:
        parts = urlsplit(request.url)
        path = parts.path or "/"
        query = parts.query
        if request.params:
            extra = urlencode(request.params)
            query = f"{query}&{extra}" if query else extra
        if query:
            path = f"{path}?{query}"
        body = request.data if isinstance(request.data, str) else ""
        headers = dict(request.headers or {})
        headers.update(self.header_for_authentication(request.method.value, path, body))
        request.headers = headers
        return request

    async def ws_authenticate(self, request: WSRequest) -> WSRequest:
        # VALR authenticates the account WebSocket at the upgrade (headers): nothing per message.
        return request
