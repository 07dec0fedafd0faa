"""The fake VALR server (aiohttp): REST, ``/ws/account`` and ``/ws/trade``."""

from .app import FakeValr, WsConn
from .auth_check import scrub_headers

__all__ = ["FakeValr", "WsConn", "scrub_headers"]
