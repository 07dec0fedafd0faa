"""Errors aiohttp answers by itself, in VALR's JSON error shape.

A request aiohttp cannot parse (a ``*`` or other malformed request target, a bad method, broken
headers) never reaches the app's middleware: aiohttp's protocol handler answers it with plain
text. VALR's answers carry ``{"code", "message"}`` [INF for these cases], and so do ours:
``JsonErrorRunner`` is an ``AppRunner`` whose connections answer such errors in that shape.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server


def error_text(status: int, message: str | None) -> str:
    """The JSON body of an error answer aiohttp made by itself."""
    if status >= 500:
        text = "Internal server error"
    else:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Bad request"
        # aiohttp's parser messages span lines and quote the offending bytes: keep the first line
        detail = (message or "").strip().splitlines()[0][:200] if (message or "").strip() else ""
        text = f"{phrase}: {detail}" if detail else phrase
    return json.dumps({"code": -1, "message": text}, separators=(",", ":"))


class _JsonErrorHandler(RequestHandler):
    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        # aiohttp's own handling: it logs (a malformed request at ERROR level, with its traceback) and
        # raises if an answer is already on its way
        resp = super().handle_error(request, status, exc, message)
        out = web.Response(status=status, text=error_text(status, message), content_type="application/json")
        out.force_close()
        del resp
        return out


class _JsonErrorServer(Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


def _json_refusals(handler: Any) -> Any:
    """The app's request handler, with an aiohttp refusal raised outside the middleware (an
    ``Expect`` header other than 100-continue: 417) answered in the JSON shape."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            lines = (exc.text or "").strip().splitlines()
            message = f"{exc.reason}: {lines[0]}" if lines else str(exc.reason)
            return web.Response(status=exc.status, content_type="application/json",
                                text=json.dumps({"code": -1, "message": message}, separators=(",", ":")))

    return handle


class JsonErrorRunner(web.AppRunner):
    """``web.AppRunner`` whose protocol-level error answers are JSON (see the module doc)."""

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        # the app builds a plain Server; the subclass only changes which handler it creates
        server.__class__ = _JsonErrorServer
        server.request_handler = _json_refusals(server.request_handler)
        return server
