"""The fake VALR server (aiohttp): REST, ``/ws/account`` and ``/ws/trade``."""

from .app import FakeValr
from .auth_check import scrub_headers
from .connection import WsConn

__all__ = ["FakeValr", "WsConn", "scrub_headers"]
