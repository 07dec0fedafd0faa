"""A capture or a run trace as an HTTP Archive (HAR 1.2), the format browsers' devtools import.

Pure conversion: records in, a HAR ``dict`` out (no files, no click); ``valr-replay export``
(replay/export_command.py) is the shell around it.

What goes where:

- every REST request/response pair (``kind`` ``rest``, one ``rest-N`` connection per pair) is
  one entry in ``log.entries``: the request's method, URL (base + path + query), headers, query
  string and body (``postData``), the response's status, headers and body (``content.text``).
  ``startedDateTime`` is the request record's ``wall`` time; ``time`` and ``timings`` are the
  request→response gap (all of it counted as ``wait``).
- every WebSocket connection (``account-N``, ``trade-N``, ...: ``kind`` ``ws``) is one entry: a
  ``GET`` to its ``ws://`` URL with the upgrade headers, answered ``101 Switching Protocols``,
  carrying Chrome's ``_webSocketMessages`` extension: one ``{"type": "send"|"receive", "time":
  epoch seconds, "opcode": 1, "data": frame text}`` per frame, in time order. The entry's
  ``time`` spans the connection, from ``CONNECT`` (or its first frame) to ``DISCONNECT`` (or its
  last frame).
- everything else (``meta``, exchange ``event``, ``client``, ``strategy`` records) is left out
  and counted in :attr:`HarResult.left_out`.

Times: a record's epoch time is the capture's origin (recovered from the ``wall`` fields, the
largest ``wall - t``) plus its ``t``, so frames keep their sub-millisecond order and agree with
``wall`` to within a millisecond; ``startedDateTime`` is the record's ``wall`` itself.

Neutral values where a record (typically a run trace's) lacks what HAR requires:

- base URL: the header's ``upstream``, else the request's ``Host`` header (``http://HOST``),
  else ``http://localhost``; a WebSocket's URL is its ``CONNECT`` record's ``upstream`` when it
  has one, else that base with ``ws``/``wss`` and the connection's path;
- headers: ``[]`` when the record has none; ``httpVersion``: ``HTTP/1.1``;
- a response's ``mimeType``: its ``Content-Type`` header, else ``application/json`` for a parsed
  JSON body, ``text/plain`` for a text body, ``x-unknown`` for none;
- a request with no response in the capture: status 0, statusText ``""``, ``time`` 0 and
  ``"_error": "no response in the capture"`` (what Chrome shows as a failed request);
- a response with no request: its request is rebuilt from the record's ``type``
  (``METHOD /path``).

Secrets: captures are scrubbed on write; every record is passed through ``scrub_record`` again
(and raw frame text through ``scrub_text``), so a hand-made or older file gains no secret here.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any, Iterable
from urllib.parse import parse_qsl, urlsplit

from . import __version__
from .capture import scrub_record, scrub_text
from .clock import trace_origin_ns, wall_ms

HAR_VERSION = "1.2"
HTTP_VERSION = "HTTP/1.1"
DEFAULT_BASE = "http://localhost"
NO_RESPONSE = "no response in the capture"
PAGE_ID = "valr-replay"


class HarInputError(ValueError):
    """A record that cannot be converted; ``index`` is its position in the records given."""

    def __init__(self, index: int, message: str):
        self.index = index
        super().__init__(f"record {index}: {message}")


@dataclass
class HarResult:
    har: dict[str, Any]
    entries: int = 0
    rest_entries: int = 0
    ws_entries: int = 0
    messages: int = 0
    left_out: int = 0
    left_out_kinds: Counter[str] = field(default_factory=Counter)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _origin_ns(header: dict[str, Any], records: list[dict[str, Any]]) -> int:
    """Epoch ns of ``t = 0`` (:func:`replay.clock.trace_origin_ns`); the Unix epoch when nothing tells."""
    return trace_origin_ns(header, records) or 0


def _iso(epoch_ns: int) -> str:
    ms = epoch_ns // 1_000_000
    second, rest = divmod(ms, 1000)
    head = datetime.fromtimestamp(second, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{head}.{rest:03d}Z"


def _header_list(headers: Any) -> list[dict[str, str]]:
    if isinstance(headers, dict):
        return [{"name": str(k), "value": "" if v is None else str(v)} for k, v in headers.items()]
    if isinstance(headers, list):
        out = []
        for item in headers:
            if isinstance(item, (list, tuple)) and len(item) == 2:
                out.append({"name": str(item[0]), "value": "" if item[1] is None else str(item[1])})
        return out
    return []


def _header(headers: list[dict[str, str]], name: str) -> str | None:
    for h in headers:
        if h["name"].lower() == name.lower():
            return h["value"]
    return None


def _body_text(body: Any) -> str | None:
    if body is None:
        return None
    if isinstance(body, str):
        return body
    return _dumps(body)


def _query(query: Any) -> tuple[str, list[dict[str, str]]]:
    """(query string without "?", HAR queryString list)."""
    if isinstance(query, dict):
        pairs = [(str(k), "" if v is None else str(v)) for k, v in query.items()]
        text = "&".join(f"{k}={v}" for k, v in pairs)
    elif isinstance(query, str):
        text = query.lstrip("?")
        pairs = parse_qsl(text, keep_blank_values=True)
    else:
        text, pairs = "", []
    return text, [{"name": k, "value": v} for k, v in pairs]


def _timings(ms: float) -> dict[str, float]:
    return {"blocked": -1, "dns": -1, "connect": -1, "ssl": -1, "send": 0, "wait": ms, "receive": 0}


class _Converter:
    def __init__(self, header: dict[str, Any], records: list[dict[str, Any]]):
        self.header = header
        self.records = records
        self.origin = _origin_ns(header, records)
        upstream = header.get("upstream")
        self.upstream = upstream.rstrip("/") if isinstance(upstream, str) and upstream else None
        self.first_host: str | None = None

    def epoch_ns(self, rec: dict[str, Any]) -> int:
        return self.origin + int(round(rec["t"]))

    def started(self, rec: dict[str, Any]) -> str:
        ms = wall_ms(rec.get("wall"))
        return _iso(ms * 1_000_000 if ms is not None else self.epoch_ns(rec))

    def base(self, headers: list[dict[str, str]]) -> str:
        if self.upstream:
            return self.upstream
        host = _header(headers, "Host")
        if host:
            return f"http://{host}"
        if self.first_host:
            return f"http://{self.first_host}"
        return DEFAULT_BASE

    # ------------------------------------------------------------------ REST

    def rest_entry(self, index: int, req: dict[str, Any] | None, resp: dict[str, Any] | None) -> dict[str, Any]:
        first = req if req is not None else resp
        assert first is not None
        if req is not None:
            data = req["data"]
            if not isinstance(data, dict):
                raise HarInputError(index, f"REST request data is not an object: {data!r:.80}")
            method = str(data.get("method") or str(req["type"]).partition(" ")[0] or "GET")
            path = str(data.get("path") or str(req["type"]).partition(" ")[2] or "/")
            headers = _header_list(data.get("headers"))
            query_text, query_list = _query(data.get("query"))
            body = _body_text(data.get("body"))
        else:
            method, _, path = str(first["type"]).partition(" ")
            method, path = method or "GET", path or "/"
            headers, query_text, query_list, body = [], "", [], None
        if not path.startswith("/"):
            path = "/" + path
        url = self.base(headers) + path + (f"?{query_text}" if query_text else "")
        request: dict[str, Any] = {
            "method": method, "url": url, "httpVersion": HTTP_VERSION, "cookies": [], "headers": headers,
            "queryString": query_list, "headersSize": -1,
            "bodySize": len(body.encode("utf-8")) if body is not None else 0,
        }
        if body is not None:
            request["postData"] = {"mimeType": _header(headers, "Content-Type") or "application/json",
                                   "params": [], "text": body}
        entry: dict[str, Any] = {"pageref": PAGE_ID, "startedDateTime": self.started(first)}
        if resp is not None:
            rdata = resp["data"]
            if not isinstance(rdata, dict):
                raise HarInputError(index, f"REST response data is not an object: {rdata!r:.80}")
            status = rdata.get("status")
            if not isinstance(status, int) or isinstance(status, bool):
                raise HarInputError(index, f"REST response without an integer status: {status!r:.40}")
            try:
                status_text = HTTPStatus(status).phrase
            except ValueError:
                status_text = ""
            rheaders = _header_list(rdata.get("headers"))
            raw_body = rdata.get("body")
            text = _body_text(raw_body)
            mime = _header(rheaders, "Content-Type") or (
                "x-unknown" if raw_body is None else "text/plain" if isinstance(raw_body, str) else "application/json")
            size = len(text.encode("utf-8")) if text is not None else 0
            content: dict[str, Any] = {"size": size, "mimeType": mime}
            if text is not None:
                content["text"] = text
            ms = max(0.0, (self.epoch_ns(resp) - self.epoch_ns(first)) / 1e6) if req is not None else 0.0
            response = {"status": status, "statusText": status_text, "httpVersion": HTTP_VERSION, "cookies": [],
                        "headers": rheaders, "content": content, "redirectURL": "", "headersSize": -1,
                        "bodySize": size}
        else:
            ms = 0.0
            response = {"status": 0, "statusText": "", "httpVersion": HTTP_VERSION, "cookies": [], "headers": [],
                        "content": {"size": 0, "mimeType": "x-unknown"}, "redirectURL": "", "headersSize": -1,
                        "bodySize": -1}
            entry["_error"] = NO_RESPONSE
        entry.update(time=ms, request=request, response=response, cache={}, timings=_timings(ms),
                     _resourceType="fetch", _conn=first["conn"])
        return entry

    # ------------------------------------------------------------------ WebSocket

    def ws_url(self, connect: dict[str, Any] | None, frames: list[dict[str, Any]]) -> str:
        data = connect["data"] if connect is not None and isinstance(connect.get("data"), dict) else {}
        upstream = data.get("upstream")
        if isinstance(upstream, str) and upstream.startswith(("ws://", "wss://")):
            return upstream
        path = data.get("path")
        if not isinstance(path, str) or not path:
            conn = str((connect or frames[0])["conn"])
            path = "/ws/" + conn.rsplit("-", 1)[0]
        base = self.base([])
        parts = urlsplit(base)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{path if path.startswith('/') else '/' + path}"

    @staticmethod
    def frame_text(data: Any) -> str:
        if isinstance(data, dict) and set(data) == {"raw"} and isinstance(data["raw"], str):
            return scrub_text(data["raw"])
        if isinstance(data, str):
            return scrub_text(data)
        return _dumps(data)

    def ws_entry(self, conn_records: list[dict[str, Any]]) -> tuple[dict[str, Any], int]:
        connect = next((r for r in conn_records if r["type"] == "CONNECT" and r["dir"] == "local"), None)
        close = next((r for r in reversed(conn_records) if r["type"] == "DISCONNECT" and r["dir"] == "local"), None)
        frames = [r for r in conn_records if r["dir"] in ("in", "out")]
        first = connect if connect is not None else conn_records[0]
        last = close if close is not None else conn_records[-1]
        messages = [{"type": "send" if r["dir"] == "out" else "receive", "time": self.epoch_ns(r) / 1e9,
                     "opcode": 1, "data": self.frame_text(r["data"])} for r in frames]
        url = self.ws_url(connect, frames)
        parts = urlsplit(url)
        upgrade = [{"name": "Upgrade", "value": "websocket"}, {"name": "Connection", "value": "Upgrade"}]
        request = {"method": "GET", "url": url, "httpVersion": HTTP_VERSION, "cookies": [],
                   "headers": [{"name": "Host", "value": parts.netloc}, *upgrade],
                   "queryString": [{"name": k, "value": v} for k, v in parse_qsl(parts.query, keep_blank_values=True)],
                   "headersSize": -1, "bodySize": 0}
        response = {"status": 101, "statusText": "Switching Protocols", "httpVersion": HTTP_VERSION, "cookies": [],
                    "headers": upgrade, "content": {"size": 0, "mimeType": "x-unknown"}, "redirectURL": "",
                    "headersSize": -1, "bodySize": 0}
        ms = max(0.0, (self.epoch_ns(last) - self.epoch_ns(first)) / 1e6)
        entry: dict[str, Any] = {
            "pageref": PAGE_ID, "startedDateTime": self.started(first), "time": ms, "request": request,
            "response": response, "cache": {}, "timings": _timings(ms), "_resourceType": "websocket",
            "_conn": first["conn"], "_webSocketMessages": messages,
        }
        if close is not None and isinstance(close.get("data"), dict):
            entry["_webSocketClose"] = {k: close["data"].get(k) for k in ("code", "by") if k in close["data"]}
        return entry, len(messages)


def to_har(records: Iterable[dict[str, Any]], header: dict[str, Any] | None = None) -> HarResult:
    """The HAR 1.2 document of a capture's or trace's ``records`` (``header``: its header line).

    Raises :class:`HarInputError` (with the record's index) for a REST record whose ``data`` is
    not what captures/README.md describes."""
    header = header or {}
    # order from t (stable: records at equal t keep the file's order), secrets scrubbed again
    indexed = sorted(enumerate(records), key=lambda ir: ir[1]["t"])
    recs = [scrub_record(r) for _, r in indexed]
    conv = _Converter(header, recs)
    result = HarResult(har={})

    # (sort key, entry) so entries come out in order of their first record
    entries: list[tuple[tuple[int, int], dict[str, Any]]] = []
    pending: dict[str, list[tuple[int, int, dict[str, Any]]]] = {}  # rest conn -> [(pos, index, request)]
    ws: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for pos, ((index, _), rec) in enumerate(zip(indexed, recs, strict=True)):
        kind, direction = rec.get("kind"), rec.get("dir")
        if kind == "rest" and direction in ("out", "in"):
            if conv.first_host is None and direction == "out" and isinstance(rec["data"], dict):
                conv.first_host = _header(_header_list(rec["data"].get("headers")), "Host")
            queue = pending.setdefault(str(rec["conn"]), [])
            if direction == "out":
                queue.append((pos, index, rec))
            elif queue:
                req_pos, req_index, req = queue.pop(0)
                entries.append(((req_pos, 0), conv.rest_entry(req_index, req, rec)))
            else:
                entries.append(((pos, 0), conv.rest_entry(index, None, rec)))
        elif kind == "ws" and (direction in ("out", "in") or rec.get("type") in ("CONNECT", "DISCONNECT")):
            ws.setdefault(str(rec["conn"]), []).append((pos, rec))
        else:
            result.left_out += 1
            result.left_out_kinds[str(kind)] += 1
    for queue in pending.values():
        for req_pos, req_index, req in queue:
            entries.append(((req_pos, 0), conv.rest_entry(req_index, req, None)))
    result.rest_entries = len(entries)
    for conn_records in ws.values():
        entry, count = conv.ws_entry([r for _, r in conn_records])
        entries.append(((conn_records[0][0], 1), entry))
        result.messages += count
    result.ws_entries = len(ws)
    entries.sort(key=lambda e: e[0])
    result.entries = len(entries)

    started = entries[0][1]["startedDateTime"] if entries else _iso(conv.origin)
    title = header.get("scenario") or header.get("upstream") or "valr-replay capture"
    page = {"startedDateTime": started, "id": PAGE_ID, "title": str(title),
            "pageTimings": {"onContentLoad": -1, "onLoad": -1}}
    result.har = {"log": {
        "version": HAR_VERSION,
        "creator": {"name": "valr-replay", "version": __version__},
        "pages": [page],
        "entries": [e for _, e in entries],
        "comment": f"exported by valr-replay from a {header.get('source', 'unknown')} capture; "
                   f"{result.left_out} non-traffic records left out",
    }}
    return result
