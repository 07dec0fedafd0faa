"""A capture turned back into traffic, reactively (pure: no sockets, no asyncio).

Fed with the live client's requests and connection opens, a :class:`Playback` says what to
send and when (:class:`Release`, at a time on the live clock, in seconds):

* **market data** (every server->client frame of the recorded ``trade-N`` connections) goes
  out at its recorded offset from the recorded trade connection's open, counted from the
  live trade connection's open, divided by ``speed``. It is read lazily (``market_source``:
  for a file, a second streaming pass), so a long capture's market data costs constant memory;
  from a file, each frame is handed out as recorded (``replay.capture.RawFrame``: the line's
  ``data`` text, sent without parsing and re-serialising; lines not in the writer's layout are
  parsed in full).
* **account traffic** is segmented by the client's requests: each recorded server->client
  account message (and each recorded exchange ``event``) belongs to the latest preceding
  client request (an account WebSocket command, or a REST call that is not a GET). Messages
  before the first request are released relative to the first account connection's open.
  When the live client sends a request matching one of the next recorded ones (type, pair,
  side, price and quantity within a tolerance, and for a cancel the same order), that
  request's segment is released at ``live_request_time + (recorded_t - recorded_request_t) /
  speed``; a REST call's recorded response is its reply.
* **index**: per recorded request only a compact entry is kept (references to its record, its
  response and the records of its segment); from a file these are byte offsets, and records are
  read back when their request comes up (a gzip capture's account lines are spilled to a
  temporary plain file while indexing). Attribution (below) runs in a scratch SQLite file.
  Memory then grows by tens of bytes per recorded request, not by the records' size.
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
import json
import os
import sqlite3
import tempfile
import weakref
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, NoReturn

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


class _Request:
    """One recorded client request, materialised from the compact index when needed."""

    __slots__ = ("index", "t", "conn", "desc", "skips", "_pb")

    def __init__(self, pb: "Playback", index: int, t: int, conn: str, desc: dict[str, Any]):
        self._pb = pb
        self.index = index
        self.t = t  # ns
        self.conn = conn
        self.desc = desc
        self.skips = 0

    @property
    def segment(self) -> list[dict[str, Any]]:
        """The recorded messages this request owns (read from the store)."""
        return self._pb._segment_records(self.index + 1)

    @property
    def response(self) -> dict[str, Any] | None:
        """REST: the recorded response record."""
        ref = self._pb._rq_resp[self.index]
        return self._pb._store.get(ref) if ref >= 0 else None

    def __repr__(self) -> str:
        return f"_Request({self.index}, t={self.t}, {self.desc!r})"


class _Get:
    __slots__ = ("position", "t_req", "t_resp", "ref", "_store")

    def __init__(self, store: "_MemStore | _FileStore", position: int, t_req: int, t_resp: int, ref: int):
        self._store = store
        self.position = position  # requests recorded before it
        self.t_req = t_req
        self.t_resp = t_resp
        self.ref = ref

    @property
    def response(self) -> dict[str, Any]:
        return self._store.get(self.ref)


class _MemStore:
    """Account records held in memory (a Playback built from records)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def add(self, loc: Any, rec: dict[str, Any]) -> int:
        self.records.append(rec)
        return len(self.records) - 1

    def get(self, ref: int) -> dict[str, Any]:
        return self.records[ref]


class _FileStore:
    """Account records left in the capture file: a ref is the index of a line's (offset,
    length). A gzip capture cannot be read at an offset, so its account lines are spilled
    to an anonymous temporary plain file as they are indexed (deleted when closed)."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.offsets = array("q")
        self.lengths = array("i")
        self.spill: IO[bytes] | None = None
        if reader.gzip:
            self.spill = tempfile.TemporaryFile(prefix="valr-replay-index-")
            self._finalizer = weakref.finalize(self, self.spill.close)

    def add(self, loc: tuple[int, bytes], rec: dict[str, Any]) -> int:
        offset, raw = loc
        if self.spill is not None:
            offset = self.spill.tell()
            self.spill.write(raw + b"\n")
        self.offsets.append(offset)
        self.lengths.append(len(raw))
        return len(self.offsets) - 1

    def get(self, ref: int) -> dict[str, Any]:
        offset, length = self.offsets[ref], self.lengths[ref]
        if self.spill is None:
            return self.reader.read_at(offset, length)
        self.spill.flush()
        return json.loads(os.pread(self.spill.fileno(), length, offset))

    def close(self) -> None:
        if self.spill is not None:
            self._finalizer()


class _Pending:
    """The recorded requests not yet matched, in order: the first few materialised (the
    matching window and any skipped ones), the rest an index range of the compact store."""

    def __init__(self, pb: "Playback") -> None:
        self._pb = pb
        self.head: list[_Request] = []
        self.next = 0

    def _fill(self, k: int) -> None:
        n = len(self._pb._rq_ref)
        while len(self.head) < k and self.next < n:
            self.head.append(self._pb._request(self.next))
            self.next += 1

    def __len__(self) -> int:
        return len(self.head) + len(self._pb._rq_ref) - self.next

    def __bool__(self) -> bool:
        return len(self) > 0

    def __getitem__(self, key: int | slice) -> Any:
        if isinstance(key, slice):
            if key.stop is None or key.stop < 0:
                self._fill(len(self))
            else:
                self._fill(key.stop)
            return self.head[key]
        self._fill(len(self) if key < 0 else key + 1)
        return self.head[key]

    def __iter__(self) -> Iterator[_Request]:
        return iter(self[:])

    def pop(self, i: int) -> _Request:
        self._fill(i + 1)
        return self.head.pop(i)

    def insert(self, i: int, req: _Request) -> None:
        self._fill(i)
        self.head.insert(i, req)


class _Requests(Sequence):
    """Every recorded request, materialised on access (a fresh object each time)."""

    def __init__(self, pb: "Playback") -> None:
        self._pb = pb

    def __len__(self) -> int:
        return len(self._pb._rq_ref)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._pb._request(j) for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._pb._request(i)


def _sq(value: Any) -> Any:
    """An id as SQLite keeps it (equal values stay equal, different ones different)."""
    if value is None or isinstance(value, str) or isinstance(value, float):
        return value
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return int(value)
    return "\x00" + repr(value)  # not an id anyone sends; kept apart from real ones


class _Scratch:
    """The attribution tables of :meth:`Playback._index` in SQLite (in memory, or in a
    temporary file deleted on close): rows are added in recorded order, ``owners`` answers."""

    BATCH = 1000

    def __init__(self, on_disk: bool):
        self.path: str | None = None
        if on_disk:
            fd, self.path = tempfile.mkstemp(prefix="valr-replay-index-", suffix=".sqlite")
            os.close(fd)
        self.db = sqlite3.connect(self.path or ":memory:")
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-512", "temp_store=FILE"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.executescript("""
            CREATE TABLE rq(i INTEGER PRIMARY KEY, t INTEGER, cmid, cid, oidq, oidn);
            CREATE TABLE msg(j INTEGER PRIMARY KEY, ref INTEGER, t INTEGER, dflt INTEGER, cmid, cid, oidq, oidn);
            CREATE TABLE o2c(seq INTEGER PRIMARY KEY, oid, cid);
        """)
        self.rows: dict[str, list[tuple[Any, ...]]] = {"rq": [], "msg": [], "o2c": []}
        # closed and deleted on close(), or when collected (indexing failed half way)
        self._finalizer = weakref.finalize(self, _Scratch._cleanup, self.db, self.path)

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        rows = self.rows[table]
        rows.append(row)
        if len(rows) >= self.BATCH:
            self._flush(table)

    def _flush(self, table: str) -> None:
        rows = self.rows[table]
        if rows:
            marks = ",".join("?" * len(rows[0]))
            self.db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
            rows.clear()

    def segments(self) -> Iterator[tuple[int, int, int]]:
        """(owner, ref, t) of every message, by owner (-1: before the first request), in
        recorded order within an owner. The owner: the last request that sent the message's
        clientMsgId if recorded by then, else the last request about its order recorded by
        then, else the latest request before it."""
        for table in self.rows:
            self._flush(table)
        self.db.executescript("""
            -- order id -> customerOrderId: the last learned
            CREATE TABLE o2cf AS SELECT oid, cid FROM o2c WHERE seq IN (SELECT MAX(seq) FROM o2c GROUP BY oid);
            CREATE INDEX o2cf_oid ON o2cf(oid);
            -- clientMsgId -> the last request that sent it
            CREATE TABLE bymsg AS SELECT cmid, MAX(i) AS i FROM rq WHERE cmid IS NOT NULL GROUP BY cmid;
            CREATE INDEX bymsg_cmid ON bymsg(cmid);
            -- requests about an order, keyed by customerOrderId (or order id, mapped where known)
            CREATE TABLE about AS SELECT k, i, t FROM (
                SELECT COALESCE(cid, (SELECT o.cid FROM o2cf o WHERE o.oid = rq.oidq), oidn) AS k, i, t FROM rq)
                WHERE k IS NOT NULL;
            CREATE INDEX about_k ON about(k, t, i);
        """)
        yield from self.db.execute("""
            SELECT CASE WHEN named IS NOT NULL AND (SELECT r.t FROM rq r WHERE r.i = named) <= t THEN named
                        ELSE COALESCE(by_order, dflt) END AS owner, ref, t
            FROM (SELECT j, ref, t, dflt,
                         (SELECT b.i FROM bymsg b WHERE b.cmid = mk.cmid) AS named,
                         CASE WHEN k IS NULL THEN NULL
                              ELSE (SELECT MAX(a.i) FROM about a WHERE a.k = mk.k AND a.t <= mk.t) END AS by_order
                  FROM (SELECT j, ref, t, dflt, cmid,
                               CASE WHEN oidq IS NULL AND cid IS NULL THEN NULL
                                    ELSE COALESCE(cid, (SELECT o.cid FROM o2cf o WHERE o.oid = msg.oidq), oidn)
                               END AS k
                        FROM msg) AS mk)
            ORDER BY owner, j
        """)

    def close(self) -> None:
        self._finalizer()

    @staticmethod
    def _cleanup(db: sqlite3.Connection, path: str | None) -> None:
        db.close()
        if path is not None:
            try:
                os.unlink(path)
            except OSError:
                pass


def _order_ids(rec: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    """(order id, customerOrderId) pairs a single-order message or event is about; [] for
    snapshots (OPEN_ORDERS_UPDATE lists many) and messages about no order."""
    data = raw if isinstance(raw := rec.get("data"), dict) else {}
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
        _store: Any = None,
        _located: Iterable[tuple[Any, dict[str, Any]]] | None = None,
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
        self.gets: dict[tuple[str, str], list[_Get]] = {}
        self._account_open_t: int | None = None
        self._trade_open_t: int | None = None
        self._pre_t0: int | None = None
        # The compact index: per recorded request its time, record and response refs (into
        # the store: records in memory, or file offsets for from_file); segments as refs.
        self._store: _MemStore | _FileStore = _store if _store is not None else _MemStore()
        self._rq_ref = array("i")
        self._rq_resp = array("i")
        self._seg_start = array("i", [0, 0])
        self._seg_refs = array("i")
        # from_file: (location in ``_store``, record) pairs instead of ``records``
        items = _located if _located is not None else ((None, rec) for rec in records)
        market: list[dict[str, Any]] = []
        self._index(items, market if market_source is None else None)
        self._market_source = market_source if market_source is not None else (lambda: iter(market))
        # live state
        self.pending: _Pending = _Pending(self)
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
        """Index a capture file. Only a compact index of the account traffic is held (per
        request its matchable fields are re-read when it comes up; segments are read from
        the file when their request matches; a gzip capture's account lines are spilled to a
        temporary plain file). Market data is streamed on use, each frame sent as recorded
        (``RawFrame``) where its line is in the writer's layout."""
        from .capture import open_capture

        reader = open_capture(path)
        seen_market = [False]

        def skip(head: dict[str, Any]) -> bool:
            # the first market record goes through (it may be what anchors the trade
            # stream's time); the others are only checked, not parsed
            if not _is_market(head):
                return False
            if not seen_market[0]:
                seen_market[0] = True
                return False
            return True

        store = _FileStore(reader)
        located = ((loc_rec[:2], loc_rec[2]) for loc_rec in reader.iter_located(skip))

        def market() -> Iterator[dict[str, Any]]:
            return open_capture(path).iter_raw(_is_market, reader.slice_check)

        pb = cls((), header=reader.header, market_source=market, _store=store, _located=located, **kw)
        pb.problems = list(reader.problems)
        return pb

    def close(self) -> None:
        """Release the index's temporary file (gzip captures); also done when collected."""
        if isinstance(self._store, _FileStore):
            self._store.close()

    # --- indexing -----------------------------------------------------------------------------
    def _index(self, items: Iterable[tuple[Any, dict[str, Any]]], market: list[dict[str, Any]] | None) -> None:
        # Pass 1: requests, GETs, and the messages to attribute (with the latest preceding
        # request as their default owner; -1 = before the first request). Only what pass 2
        # needs is kept per record (times, ids); records stay in the store.
        store = self._store
        rq_ref, rq_resp = self._rq_ref, self._rq_resp
        n_msgs = 0
        # What pass 2 needs about each request and message (ids) goes to a scratch SQLite
        # database (a temporary file when indexing a file): a long session's index then costs
        # a few arrays of ints in memory, not dicts of id strings.
        scratch = _Scratch(on_disk=isinstance(store, _FileStore))
        o2c_seq = 0
        resp_o2c: list[tuple[int, Any, Any]] = []  # (request, order id, customerOrderId) from REST responses
        rest_pending: dict[str, int] = {}
        rest_cids: dict[int, str] = {}  # REST requests awaiting their response: customerOrderId
        get_pending: dict[str, tuple[int, dict[str, Any]]] = {}

        def add_request(loc: Any, rec: dict[str, Any], desc: dict[str, Any]) -> int:
            i = len(rq_ref)
            rq_ref.append(store.add(loc, rec))
            rq_resp.append(-1)
            oid = desc.get("orderId")
            scratch.add("rq", (i, int(rec["t"]), _sq(desc.get("clientMsgId")), _sq(desc.get("customerOrderId") or None),
                               _sq(oid or ""), _sq(oid or None)))
            return i

        def add_message(loc: Any, rec: dict[str, Any]) -> None:
            nonlocal o2c_seq, n_msgs
            data = raw if isinstance(raw := rec.get("data"), dict) else {}
            j = n_msgs
            n_msgs += 1
            ref = store.add(loc, rec)
            ids = _order_ids(rec)  # at most one (order id, customerOrderId)
            if ids:
                oid, cid = ids[0]
                keys = (_sq(cid or None), _sq(oid or ""), _sq(oid or None))
                if oid and cid:
                    scratch.add("o2c", (o2c_seq, _sq(oid), _sq(cid)))
                    o2c_seq += 1
            else:
                keys = (None, None, None)  # about no order: no lookup at all
            scratch.add("msg", (j, ref, int(rec["t"]), len(rq_ref) - 1, _sq(data.get("clientMsgId"))) + keys)

        for loc, rec in items:
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
                    add_request(loc, rec, describe_request("ws", rec.get("data")))
                elif direction == "in" and typ != "PONG":
                    if self._account_open_t is None:
                        self._account_open_t = int(rec["t"])
                    add_message(loc, rec)
            elif kind == "rest":
                data = raw if isinstance(raw := rec.get("data"), dict) else {}
                if direction == "out":
                    method = str(data.get("method") or str(typ).split(" ")[0]).upper()
                    if method in ("GET", "HEAD"):
                        get_pending[conn] = (len(rq_ref), rec)
                    else:
                        desc = describe_request("rest", data)
                        i = rest_pending[conn] = add_request(loc, rec, desc)
                        if desc.get("customerOrderId"):
                            rest_cids[i] = desc["customerOrderId"]
                elif direction == "in":
                    if conn in rest_pending:
                        i = rest_pending.pop(conn)
                        rq_resp[i] = store.add(loc, rec)
                        body = data.get("body")
                        cid = rest_cids.pop(i, None)
                        if cid and isinstance(body, dict) and isinstance(body.get("id"), str):
                            resp_o2c.append((i, body["id"], cid))
                    elif conn in get_pending:
                        position, out = get_pending.pop(conn)
                        odata = raw if isinstance(raw := out.get("data"), dict) else {}
                        method = str(odata.get("method") or "GET").upper()
                        path = str(odata.get("path") or str(out.get("type", "")).partition(" ")[2])
                        self.gets.setdefault((method, path), []).append(
                            _Get(store, position, int(out["t"]), int(rec["t"]), store.add(loc, rec)))
            elif kind == "event" and direction == "local":
                add_message(loc, rec)
        # Pass 2: requests run concurrently (a bid and an ask sent together), so "latest
        # preceding request" alone would hand both replies to the second. A message that names
        # its request (clientMsgId) or an order goes to that request / the latest request about
        # that order; the rest (snapshots, balances) to the latest preceding request.
        try:
            for _i, oid, cid in sorted(resp_o2c, key=lambda x: x[0]):  # after every message's, in request order
                scratch.add("o2c", (o2c_seq, _sq(oid), _sq(cid)))
                o2c_seq += 1
            del resp_o2c
            # Segments as one array of refs grouped by owner (slot 0: before the first
            # request), in recorded order within each.
            start = array("i", bytes(4 * (len(rq_ref) + 2)))
            refs = array("i")
            for owner, ref, t in scratch.segments():
                if owner < 0 and self._pre_t0 is None:
                    self._pre_t0 = t
                start[owner + 2] += 1
                refs.append(ref)
        finally:
            scratch.close()
        for i in range(1, len(start)):
            start[i] += start[i - 1]
        self._seg_start = start
        self._seg_refs = refs

    def _segment_records(self, slot: int) -> list[dict[str, Any]]:
        """The records of a segment: slot 0 before the first request, i + 1 request i's."""
        return [self._store.get(r) for r in self._seg_refs[self._seg_start[slot]:self._seg_start[slot + 1]]]

    def _request(self, i: int) -> _Request:
        rec = self._store.get(self._rq_ref[i])
        if rec.get("kind") == "rest":
            data = raw if isinstance(raw := rec.get("data"), dict) else {}
            desc = describe_request("rest", data)
        else:
            desc = describe_request("ws", rec.get("data"))
        return _Request(self, i, int(rec["t"]), str(rec.get("conn", "")), desc)

    @property
    def requests(self) -> _Requests:
        """Every recorded request (materialised on access)."""
        return _Requests(self)

    @property
    def pre(self) -> list[dict[str, Any]]:
        """The recorded account messages before the first request."""
        return self._segment_records(0)

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
            self._pre_t0 if self._pre_t0 is not None else 0)
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
        if self._market_anchor is None:
            return out
        anchor, base, speed = self._market_anchor, self._trade_open_t or 0, self.speed
        it = self._market_iter
        rec = self._market_next
        while rec is not None and (limit is None or len(out) < limit):
            at = anchor + (int(rec["t"]) - base) / NS / speed  # as _market_at
            if at > now:
                break
            # no copy: each market record is read afresh from the capture and handed out once
            out.append(Release(at, "trade", str(rec.get("type", "")), rec["data"], str(rec.get("conn", ""))))
            rec = next(it, None) if it is not None else None
        self._market_next = rec
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
        response = req.response
        if response is not None:
            at = now + max(0, int(response["t"]) - req.t) / NS / self.speed
            releases.append(Release(at, "rest", str(response.get("type", "")),
                                    self.remap(response.get("data")), req.conn))
        return releases

    def _diverge(self, now: float, reason: str, live: dict[str, Any], expected: _Request | None) -> NoReturn:
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
        at = now + max(0, best.t_resp - best.t_req) / NS / self.speed
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

