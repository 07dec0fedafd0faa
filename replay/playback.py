"""A capture turned back into traffic, reactively (pure: no sockets, no asyncio).

Fed with the live client's requests and connection opens, a :class:`Playback` says what to
send and when (:class:`Release`, at a time on the live clock, in seconds):

* **market data** (every server->client frame of the recorded ``trade-N`` connections) goes
  out at its recorded offset from the recorded trade connection's open, counted from the
  live trade connection's open, divided by ``speed``. It is read lazily (``market_source``:
  for a file, a second streaming pass), so a long capture's market data costs constant memory.
* **account traffic** is segmented by the client's requests: each recorded server->client
  account message (and each recorded exchange ``event``) belongs to the latest preceding
  client request (an account WebSocket command, or a REST call that is not a GET). Messages
  before the first request are released relative to the first account connection's open.
  When the live client sends a request matching one of the next recorded ones (type, pair,
  side, price and quantity within a tolerance, and for a cancel the same order), that
  request's segment is released at ``live_request_time + (recorded_t - recorded_request_t) /
  speed``; a REST call's recorded response is its reply.
* **ids**: client-chosen ids (``clientMsgId``, ``customerOrderId``) are mapped recorded ->
  live in everything released (learned when a request matches). Server order ids are
  **kept** as recorded: the live client sees the recorded exchange's ids.
* **REST GETs** are answered with the recorded response to the same method and path (live ids
  mapped back to recorded ones) nearest in request sequence; :meth:`answer_get` returns None
  when the capture has none (the shell then simulates or reports a divergence).
* PINGs are answered at once with a PONG (keepalive timing is not part of a session).

A live request the capture does not have next raises :class:`Diverged` carrying a
:class:`Divergence` report (expected recorded request, what came). So does a recorded request
that the live client skips more than ``max_skip`` times.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

__all__ = ["Playback", "Release", "Divergence", "Diverged", "describe_request", "OPEN_STATUSES"]

NS = 1_000_000_000
#: order statuses that leave an order on the book
OPEN_STATUSES = frozenset({"Placed", "Active", "Partially Filled", "PartiallyFilled"})
#: request types answered locally, never matched against the recording
KEEPALIVE = frozenset({"PING"})
#: payload keys whose values are client-chosen ids (mapped recorded -> live)
CLIENT_ID_KEYS = ("clientMsgId", "customerOrderId")


@dataclass
class Release:
    """One thing to send: ``target`` is ``account`` / ``trade`` (a WebSocket frame for every
    live connection of that kind), ``rest`` (the reply to the request just made: ``message``
    is ``{"status","headers","body"}``) or ``event`` (a recorded exchange event, for the trace
    only)."""

    at: float
    target: str
    msg_type: str
    message: Any
    rec_conn: str = ""


@dataclass
class Divergence:
    """The live client asked for something the capture does not have next."""

    at: float
    reason: str
    came: dict[str, Any]
    expected: dict[str, Any] | None = None
    expected_t_ms: float | None = None
    matched: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "expected": self.expected,
            "expected_recorded_ms": self.expected_t_ms,
            "came": self.came,
            "requests_matched": self.matched,
            "at": self.at,
        }

    def __str__(self) -> str:
        exp = _fmt_desc(self.expected) if self.expected else "nothing (the capture has no such request)"
        rec = f" (recorded at +{self.expected_t_ms:.3f}ms)" if self.expected_t_ms is not None else ""
        return (f"divergence after {self.matched} matched request(s): {self.reason}\n"
                f"  expected: {exp}{rec}\n  came:     {_fmt_desc(self.came)}")


class Diverged(Exception):
    def __init__(self, divergence: Divergence):
        super().__init__(str(divergence))
        self.divergence = divergence


def _fmt_desc(d: dict[str, Any] | None) -> str:
    if not d:
        return "-"
    parts = [str(d.get("type"))]
    for key in ("pair", "side", "price", "quantity", "customerOrderId", "orderId", "path"):
        if d.get(key) not in (None, ""):
            parts.append(f"{key}={d[key]}")
    return " ".join(parts)


def _dec(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


def describe_request(kind: str, msg: Any) -> dict[str, Any]:
    """The matchable fields of one client request.

    ``kind`` ``ws``: ``msg`` is the frame (``{"type", "clientMsgId", "payload"}``); ``rest``:
    ``msg`` is ``{"method","path","query","body"}``. Returns ``type`` (the WS type or
    ``METHOD /path``) and, where present, pair, side, price, quantity, customerOrderId,
    orderId, clientMsgId.
    """
    if kind == "rest":
        msg = msg if isinstance(msg, dict) else {}
        d: dict[str, Any] = {"type": f"{str(msg.get('method', '')).upper()} {msg.get('path', '')}",
                             "path": msg.get("path")}
        body = msg.get("body")
    else:
        msg = msg if isinstance(msg, dict) else {}
        d = {"type": str(msg.get("type", ""))}
        if msg.get("clientMsgId") is not None:
            d["clientMsgId"] = msg.get("clientMsgId")
        body = msg.get("payload")
    if isinstance(body, dict):
        pair = body.get("pair") or body.get("currencyPair")
        if pair:
            d["pair"] = str(pair).upper()
        if body.get("side"):
            d["side"] = str(body["side"]).upper()
        if body.get("price") is not None:
            d["price"] = str(body["price"])
        qty = body.get("quantity", body.get("baseAmount", body.get("quoteAmount")))
        if qty is not None:
            d["quantity"] = str(qty)
        for key in ("customerOrderId", "orderId"):
            if body.get(key) is not None:
                d[key] = str(body[key])
    return d


@dataclass
class _Request:
    index: int
    t: int  # ns
    conn: str
    desc: dict[str, Any]
    segment: list[dict[str, Any]] = field(default_factory=list)
    response: dict[str, Any] | None = None  # REST: the recorded response record
    skips: int = 0


@dataclass
class _Get:
    position: int  # requests recorded before it
    t_req: int
    response: dict[str, Any]


def _order_ids(rec: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    """(order id, customerOrderId) pairs a single-order message or event is about; [] for
    snapshots (OPEN_ORDERS_UPDATE lists many) and messages about no order."""
    data = rec.get("data") if isinstance(rec.get("data"), dict) else {}
    if rec.get("kind") == "event":
        order = data.get("order")
        if isinstance(order, dict):
            return [(order.get("order_id"), order.get("customer_order_id"))]
        if data.get("order_id") or data.get("customer_order_id"):
            return [(data.get("order_id"), data.get("customer_order_id"))]
        trade = data.get("trade")
        if isinstance(trade, dict) and trade.get("order_id"):
            return [(trade.get("order_id"), trade.get("customer_order_id"))]
        return []
    body = data.get("data")
    if isinstance(body, dict):
        oid, cid = body.get("orderId"), body.get("customerOrderId")
        info = body.get("additionalInfo")
        if not oid and isinstance(info, dict):
            oid, cid = info.get("orderId"), info.get("customerOrderId")
        if oid or cid:
            return [(oid, cid)]
    return []


def _is_market(rec: dict[str, Any]) -> bool:
    return (str(rec.get("conn", "")).startswith("trade-") and rec.get("kind") == "ws" and rec.get("dir") == "in"
            and rec.get("type") not in ("PONG", "CONNECT", "DISCONNECT"))


class Playback:
    """Reactive playback of one capture. See the module docstring.

    ``records``: every record of the capture (the header excluded); market records in it are
    used unless ``market_source`` is given (a callable returning a fresh iterator of records,
    of which only market records are used: see :meth:`from_file`).
    """

    def __init__(
        self,
        records: Iterable[dict[str, Any]],
        *,
        header: dict[str, Any] | None = None,
        speed: float = 1.0,
        price_tolerance: float = 1e-3,
        quantity_tolerance: float = 1e-3,
        window: int = 4,
        max_skip: int = 2,
        market_source: Callable[[], Iterator[dict[str, Any]]] | None = None,
    ):
        if not speed > 0:
            raise ValueError(f"speed: must be > 0, got {speed!r}")
        self.header = dict(header or {})
        self.speed = float(speed)
        self.price_tolerance = float(price_tolerance)
        self.quantity_tolerance = float(quantity_tolerance)
        self.window = max(1, int(window))
        self.max_skip = int(max_skip)
        self.problems: list = []  # CaptureProblem of the file read (from_file)
        self.requests: list[_Request] = []
        self.pre: list[dict[str, Any]] = []
        self.gets: dict[tuple[str, str], list[_Get]] = {}
        self._account_open_t: int | None = None
        self._trade_open_t: int | None = None
        market: list[dict[str, Any]] = []
        self._index(records, market if market_source is None else None)
        self._market_source = market_source if market_source is not None else (lambda: iter(market))
        # live state
        self.pending: list[_Request] = list(self.requests)
        self.matched = 0
        self.ids: dict[str, str] = {}  # recorded client id -> live
        self.live_to_rec: dict[str, str] = {}
        self.divergence: Divergence | None = None
        self._account_opened = False
        self._market_anchor: float | None = None
        self._market_iter: Iterator[dict[str, Any]] | None = None
        self._market_next: dict[str, Any] | None = None
        self._orders: dict[str, dict[str, Any]] = {}  # order id -> last known fields
        self._status_log: list[tuple[float, str, str]] = []  # (at, order id, status)

    @classmethod
    def from_file(cls, path: str | Path, **kw: Any) -> "Playback":
        """Index a capture file (account traffic in memory; market data streamed on use)."""
        from .capture import open_capture

        reader = open_capture(path)
        records = (r for r in reader if not _is_market(r))
        pb = cls(records, header=reader.header,
                 market_source=lambda: (r for r in open_capture(path) if _is_market(r)), **kw)
        pb.problems = list(reader.problems)
        return pb

    # --- indexing -----------------------------------------------------------------------------
    def _index(self, records: Iterable[dict[str, Any]], market: list[dict[str, Any]] | None) -> None:
        # Pass 1: requests, GETs, and the messages to attribute (with the latest preceding
        # request as their default owner; -1 = before the first request).
        messages: list[tuple[dict[str, Any], int]] = []
        rest_pending: dict[str, _Request] = {}
        get_pending: dict[str, tuple[int, dict[str, Any]]] = {}
        for rec in records:
            conn = str(rec.get("conn", ""))
            kind = rec.get("kind")
            typ = rec.get("type")
            direction = rec.get("dir")
            if conn.startswith("trade-"):
                if typ == "CONNECT" and self._trade_open_t is None:
                    self._trade_open_t = int(rec["t"])
                if _is_market(rec):
                    if self._trade_open_t is None:
                        self._trade_open_t = int(rec["t"])
                    if market is not None:
                        market.append(rec)
                continue
            if kind == "ws" and conn.startswith("account-"):
                if typ in ("CONNECT", "DISCONNECT"):
                    if typ == "CONNECT" and self._account_open_t is None:
                        self._account_open_t = int(rec["t"])
                    continue
                if direction == "out":
                    if typ in KEEPALIVE or not typ:
                        continue
                    self.requests.append(
                        _Request(len(self.requests), int(rec["t"]), conn, describe_request("ws", rec.get("data"))))
                elif direction == "in" and typ != "PONG":
                    if self._account_open_t is None:
                        self._account_open_t = int(rec["t"])
                    messages.append((rec, len(self.requests) - 1))
            elif kind == "rest":
                data = rec.get("data") if isinstance(rec.get("data"), dict) else {}
                if direction == "out":
                    method = str(data.get("method") or str(typ).split(" ")[0]).upper()
                    if method in ("GET", "HEAD"):
                        get_pending[conn] = (len(self.requests), rec)
                    else:
                        req = _Request(len(self.requests), int(rec["t"]), conn, describe_request("rest", data))
                        self.requests.append(req)
                        rest_pending[conn] = req
                elif direction == "in":
                    if conn in rest_pending:
                        rest_pending.pop(conn).response = rec
                    elif conn in get_pending:
                        position, out = get_pending.pop(conn)
                        odata = out.get("data") if isinstance(out.get("data"), dict) else {}
                        method = str(odata.get("method") or "GET").upper()
                        path = str(odata.get("path") or str(out.get("type", "")).partition(" ")[2])
                        self.gets.setdefault((method, path), []).append(_Get(position, int(out["t"]), rec))
            elif kind == "event" and direction == "local":
                messages.append((rec, len(self.requests) - 1))
        # Pass 2: requests run concurrently (a bid and an ask sent together), so "latest
        # preceding request" alone would hand both replies to the second. A message that names
        # its request (clientMsgId) or an order goes to that request / the latest request about
        # that order; the rest (snapshots, balances) to the latest preceding request.
        oid_to_cid: dict[str, str] = {}
        for rec, _ in messages:
            for oid, cid in _order_ids(rec):
                if oid and cid:
                    oid_to_cid[oid] = cid
        for req in self.requests:
            if req.response is not None and req.desc.get("customerOrderId"):
                body = (req.response.get("data") or {}).get("body")
                if isinstance(body, dict) and isinstance(body.get("id"), str):
                    oid_to_cid[body["id"]] = req.desc["customerOrderId"]
        by_msg_id = {r.desc["clientMsgId"]: r for r in self.requests if r.desc.get("clientMsgId") is not None}
        about: dict[str, list[_Request]] = {}
        for req in self.requests:
            key = req.desc.get("customerOrderId") or oid_to_cid.get(req.desc.get("orderId") or "", req.desc.get("orderId"))
            if key:
                about.setdefault(key, []).append(req)
        for rec, default in messages:
            owner: _Request | None = self.requests[default] if default >= 0 else None
            data = rec.get("data") if isinstance(rec.get("data"), dict) else {}
            named = by_msg_id.get(data.get("clientMsgId")) if data.get("clientMsgId") is not None else None
            if named is not None and named.t <= int(rec["t"]):
                owner = named
            else:
                for oid, cid in _order_ids(rec):
                    key = cid or oid_to_cid.get(oid or "", oid)
                    cands = [r for r in about.get(key or "", ()) if r.t <= int(rec["t"])]
                    if cands:
                        owner = cands[-1]
                        break
            (owner.segment if owner is not None else self.pre).append(rec)

    # --- ids --------------------------------------------------------------------------------------
    def _learn(self, recorded: Any, live: Any) -> None:
        if isinstance(recorded, str) and isinstance(live, str) and recorded and live:
            self.ids[recorded] = live
            self.live_to_rec[live] = recorded

    def remap(self, value: Any) -> Any:
        """A copy of ``value`` with every recorded client id replaced by its live one."""
        if not self.ids:
            return copy.deepcopy(value)
        if isinstance(value, str):
            return self.ids.get(value, value)
        if isinstance(value, dict):
            return {k: self.remap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.remap(v) for v in value]
        return value

    def _to_recorded_path(self, path: str) -> str:
        parts = path.split("/")
        return "/".join(self.live_to_rec.get(p, p) for p in parts)

    # --- connections ------------------------------------------------------------------------------
    def on_connect(self, now: float, conn_kind: str) -> list[Release]:
        """A live connection opened. The first account connection gets the recorded messages
        that came before the first request; the first trade connection starts the market feed."""
        if conn_kind == "trade":
            if self._market_anchor is None:
                self._market_anchor = now
                self._market_iter = iter(self._market_source())
                self._market_next = next(self._market_iter, None)
            return []
        if conn_kind != "account":
            return []
        if self._account_opened:
            # A reconnect: the recording's session had one stream; greet it as VALR would.
            return [Release(now, "account", "AUTHENTICATED", {"type": "AUTHENTICATED"})]
        self._account_opened = True
        anchor = self._account_open_t if self._account_open_t is not None else (
            int(self.pre[0]["t"]) if self.pre else 0)
        return self._segment(now, anchor, self.pre)

    # --- market data ------------------------------------------------------------------------------
    def _market_at(self, rec: dict[str, Any]) -> float:
        assert self._market_anchor is not None
        base = self._trade_open_t or 0
        return self._market_anchor + (int(rec["t"]) - base) / NS / self.speed

    def next_market_at(self) -> float | None:
        """Live time of the next market message, or None (no trade connection yet, or done)."""
        if self._market_next is None or self._market_anchor is None:
            return None
        return self._market_at(self._market_next)

    def due_market(self, now: float, limit: int | None = None) -> list[Release]:
        """Market messages due by ``now``, oldest first; at most ``limit`` (the caller asks
        again), so a fast replay never holds more than that in memory."""
        out: list[Release] = []
        while (self._market_next is not None and self._market_at(self._market_next) <= now
               and (limit is None or len(out) < limit)):
            rec = self._market_next
            # no copy: each market record is read afresh from the capture and handed out once
            out.append(Release(self._market_at(rec), "trade", str(rec.get("type", "")), rec["data"],
                               str(rec.get("conn", ""))))
            self._market_next = next(self._market_iter, None) if self._market_iter is not None else None
        return out

    # --- requests ---------------------------------------------------------------------------------
    def _segment(self, now: float, anchor_t: int, records: list[dict[str, Any]]) -> list[Release]:
        out: list[Release] = []
        for rec in records:
            at = now + max(0, int(rec["t"]) - anchor_t) / NS / self.speed
            data = self.remap(rec.get("data"))
            if rec.get("kind") == "event":
                out.append(Release(at, "event", str(rec.get("type", "")), data, "exchange"))
            else:
                out.append(Release(at, "account", str(rec.get("type", "")), data, str(rec.get("conn", ""))))
                self._note_status(at, rec.get("type"), data)
        return out

    def _note_status(self, at: float, msg_type: Any, data: Any) -> None:
        if msg_type != "ORDER_STATUS_UPDATE" or not isinstance(data, dict):
            return
        body = data.get("data")
        if not isinstance(body, dict) or not body.get("orderId"):
            return
        oid = str(body["orderId"])
        self._orders[oid] = body
        self._status_log.append((at, oid, str(body.get("orderStatusType", ""))))

    def open_orders(self, now: float) -> list[dict[str, Any]]:
        """Orders the released traffic has left open by ``now`` (ORDER_STATUS_UPDATE data with
        live ids): what a simulated exchange taking over must hold."""
        status: dict[str, str] = {}
        for at, oid, st in sorted(self._status_log, key=lambda x: x[0]):
            if at <= now:
                status[oid] = st
        return [self._orders[oid] for oid, st in status.items() if st in OPEN_STATUSES]

    def _matches(self, live: dict[str, Any], rec: dict[str, Any]) -> bool:
        if live.get("type") != rec.get("type"):
            return False
        for key in ("pair", "side"):
            if rec.get(key) is not None and live.get(key) != rec.get(key):
                return False
        for key, tol in (("price", self.price_tolerance), ("quantity", self.quantity_tolerance)):
            r, lv = _dec(rec.get(key)), _dec(live.get(key))
            if r is None and lv is None:
                continue
            if r is None or lv is None or abs(lv - r) > abs(r) * Decimal(str(tol)):
                return False
        if "CANCEL" in str(rec.get("type", "")).upper() or str(rec.get("type", "")).startswith("DELETE"):
            # the same order: by recorded customerOrderId (mapped) or by the kept order id
            rec_cid, rec_oid = rec.get("customerOrderId"), rec.get("orderId")
            live_cid = live.get("customerOrderId")
            live_oid = live.get("orderId")
            if rec_cid is not None or rec_oid is not None:
                same = False
                if rec_cid is not None and live_cid is not None and self.live_to_rec.get(live_cid, live_cid) == rec_cid:
                    same = True
                if rec_oid is not None and live_oid is not None and live_oid == rec_oid:
                    same = True
                if not same:
                    return False
        return True

    def on_request(self, now: float, conn_kind: str, msg: Any) -> list[Release]:
        """A live client request: ``conn_kind`` ``account`` (a WS frame, parsed) or ``rest``
        (``{"method","path","query","body"}``; not GETs: see :meth:`answer_get`). Returns what
        to release; raises :class:`Diverged`."""
        if self.divergence is not None:
            raise Diverged(self.divergence)
        kind = "rest" if conn_kind == "rest" else "ws"
        live = describe_request(kind, msg)
        if kind == "ws" and live["type"] in KEEPALIVE:
            pong: dict[str, Any] = {"type": "PONG"}
            if live.get("clientMsgId") is not None:
                pong["clientMsgId"] = live["clientMsgId"]
            return [Release(now, "account", "PONG", pong)]
        candidates = self.pending[: self.window]
        found = next((i for i, r in enumerate(candidates) if self._matches(live, r.desc)), None)
        if found is None:
            first = self.pending[0] if self.pending else None
            reason = ("no recorded request matches among the next " f"{len(candidates)}"
                      if first is not None else "the capture has no more requests")
            self._diverge(now, reason, live, first)
        req = self.pending.pop(found)
        for skipped in self.pending[:found]:
            skipped.skips += 1
            if skipped.skips > self.max_skip:
                self.pending.insert(found, req)  # not consumed: the run stops or hands over here
                self._diverge(now, f"a recorded request never came ({skipped.skips} later requests came first)",
                              live, skipped)
        self.matched += 1
        for key in CLIENT_ID_KEYS:
            self._learn(req.desc.get(key), live.get(key))
        releases = self._segment(now, req.t, req.segment)
        if req.response is not None:
            at = now + max(0, int(req.response["t"]) - req.t) / NS / self.speed
            releases.append(Release(at, "rest", str(req.response.get("type", "")),
                                    self.remap(req.response.get("data")), req.conn))
        return releases

    def _diverge(self, now: float, reason: str, live: dict[str, Any], expected: _Request | None) -> None:
        self.divergence = Divergence(
            now, reason, live, dict(expected.desc) if expected is not None else None,
            expected.t / 1e6 if expected is not None else None, self.matched)
        raise Diverged(self.divergence)

    def answer_get(self, now: float, method: str, path: str) -> Release | None:
        """The recorded response to ``METHOD path`` nearest in request sequence, or None."""
        key = (method.upper(), self._to_recorded_path(path))
        entries = self.gets.get(key)
        if not entries:
            return None
        best = min(entries, key=lambda g: (abs(g.position - self.matched), g.position > self.matched))
        at = now + max(0, int(best.response["t"]) - best.t_req) / NS / self.speed
        return Release(at, "rest", f"{key[0]} {path}", self.remap(best.response.get("data")), "")

    # --- introspection ----------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """Every recorded request has been matched."""
        return not self.pending

    def summary(self) -> dict[str, Any]:
        return {"requests": len(self.requests), "matched": self.matched, "pending": len(self.pending),
                "gets": sum(len(v) for v in self.gets.values()),
                "never_came": [dict(r.desc, recorded_ms=r.t / 1e6) for r in self.pending[:10]]}

