"""Cut the part of a long capture that matters into a small one (pure: records in, records out).

``valr-replay cut`` (replay/cut_command.py) is the shell. What is kept:

* the **preamble**: everything before the capture's first client request (the REST GETs of
  the bot's start-up, the connection opens, ``AUTHENTICATED``, the connect-time balances and
  ``OPEN_ORDERS_UPDATE``, the trade stream's subscription), except its market data, so the
  live bot starts up exactly as the recorded one did;
* the **account segments of the orders involved**: each request about one of them (place,
  cancel, modify) with everything the playback would release for it (its replies, status
  updates, snapshots and balances that followed it, its exchange events: the attribution of
  replay/playback.py, not a re-implementation of it), and the requests about no order that lie
  between them, with their REST GETs;
* the **market data of the window** (trade-stream frames between its start and end), preceded
  by the latest book/summary frame of each type before the window (the market's state as the
  window opens);
* other local records (connection events, notes) in the window.

The kept records after the preamble are moved earlier by one shift, so that the first kept
request lands where the capture's first request was (the live bot makes its first request at
the same point of its start-up); market data the shift would move into the preamble is
released as the trade stream's subscription completes. ``wall`` stays as recorded.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from statistics import median
from typing import Any, Iterable

from .clock import wall_ms
from .playback import KEEPALIVE, Playback

NS = 1_000_000_000
MS = 1_000_000
#: trade-stream frames that are part of connecting, not market data
HANDSHAKE_TYPES = frozenset({"AUTHENTICATED", "SUBSCRIBED", "UNSUBSCRIBED", "PONG", "CONNECT", "DISCONNECT"})
#: market frames that each carry a whole state (the latest one before the window is kept)
STATE_TYPES = frozenset({"AGGREGATED_ORDERBOOK_UPDATE", "FULL_ORDERBOOK_SNAPSHOT", "OB_L1_SNAPSHOT",
                         "MARKET_SUMMARY_UPDATE", "MARK_PRICE_UPDATE"})
PLACE_TYPES = ("PLACE_LIMIT_ORDER", "PLACE_MARKET_ORDER", "POST /v1/orders/limit", "POST /v2/orders/limit",
               "POST /v1/orders/market", "POST /v2/orders/market")
_ID_KEYS = ("orderId", "customerOrderId", "order_id", "customer_order_id", "exchange_order_id", "client_order_id")
_CID_KEYS = ("customerOrderId", "customer_order_id", "client_order_id")
_SCENARIO_NAME_OK = re.compile(r"[^A-Za-z0-9_-]+")


class CutError(ValueError):
    """Bad input for a cut: the message names the option or value (one line)."""


@dataclass
class OrderInfo:
    """One order of the capture: its ids and the span of the records about it (ns)."""

    order_id: str | None
    customer_order_id: str | None
    first_t: int
    last_t: int

    @property
    def name(self) -> str:
        parts = [p for p in (self.order_id, self.customer_order_id) if p]
        return " / ".join(parts) if parts else "?"

    def overlaps(self, start: int, end: int) -> bool:
        return self.first_t <= end and self.last_t >= start


@dataclass
class CutResult:
    """What a cut kept: ``records`` (the new capture's, in order, ``t`` rebased), ``header``."""

    header: dict[str, Any]
    records: list[dict[str, Any]]
    orders: list[OrderInfo]
    window: tuple[int, int]  # ns, in the original capture's time
    shift_ns: int
    duration_ns: int  # the cut session's quoting time (its last request, in the cut's time)
    total: int  # records in the original
    requests_kept: int = 0
    market_kept: int = 0
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- classification


def _data(rec: dict[str, Any]) -> dict[str, Any]:
    data = rec.get("data")
    return data if isinstance(data, dict) else {}


def is_market(rec: dict[str, Any]) -> bool:
    """A trade-stream frame from the server that is market data (not part of connecting)."""
    return (str(rec.get("conn", "")).startswith("trade-") and rec.get("kind") == "ws" and rec.get("dir") == "in"
            and rec.get("type") not in HANDSHAKE_TYPES)


def _rest_method(rec: dict[str, Any]) -> str:
    return str(_data(rec).get("method") or str(rec.get("type", "")).split(" ")[0]).upper()


def is_request(rec: dict[str, Any]) -> bool:
    """A client request as the playback segments by (an account WS command, a REST call not a GET)."""
    conn, kind, typ = str(rec.get("conn", "")), rec.get("kind"), rec.get("type")
    if rec.get("dir") != "out":
        return False
    if kind == "ws" and conn.startswith("account-"):
        return bool(typ) and typ not in KEEPALIVE and typ not in ("CONNECT", "DISCONNECT")
    if kind == "rest":
        return _rest_method(rec) not in ("GET", "HEAD")
    return False


def _ids_in(obj: Any, out: list[tuple[str, str]], depth: int = 0) -> None:
    """(key, value) of order ids in ``obj``, down to a few levels, not into lists (snapshots)."""
    if not isinstance(obj, dict) or depth > 3:
        return
    for key, value in obj.items():
        if key in _ID_KEYS and isinstance(value, str) and value:
            out.append((key, value))
        elif isinstance(value, dict):
            _ids_in(value, out, depth + 1)


def order_ids(rec: dict[str, Any]) -> tuple[str | None, str | None]:
    """(exchange order id, customerOrderId) the record is about (None where it names none).
    Snapshots (lists of orders) name none."""
    found: list[tuple[str, str]] = []
    data = _data(rec)
    if rec.get("kind") == "rest":
        _ids_in(data.get("body"), found)
        body = data.get("body")
        if rec.get("dir") == "in" and isinstance(body, dict) and isinstance(body.get("id"), str):
            found.append(("orderId", body["id"]))
    else:
        _ids_in(data, found)
    oid = next((v for k, v in found if k not in _CID_KEYS), None)
    cid = next((v for k, v in found if k in _CID_KEYS), None)
    return oid, cid


# --------------------------------------------------------------------------- orders


def order_index(records: Iterable[dict[str, Any]]) -> list[OrderInfo]:
    """Every order the capture names (linked by exchange id and customerOrderId), by first mention."""
    seen: list[tuple[int, str | None, str | None]] = []
    cid_of: dict[str, str] = {}
    for rec in records:
        if rec.get("conn") == "client" or rec.get("kind") in ("client", "strategy", "meta"):
            continue
        oid, cid = order_ids(rec)
        if oid is None and cid is None:
            continue
        if oid and cid:
            cid_of.setdefault(oid, cid)
        seen.append((int(rec["t"]), oid, cid))
    by_key: dict[str, OrderInfo] = {}
    for t, oid, cid in seen:
        cid = cid or (cid_of.get(oid) if oid else None)
        key = cid or oid
        assert key is not None
        info = by_key.get(key)
        if info is None:
            by_key[key] = OrderInfo(oid, cid, t, t)
        else:
            info.order_id = info.order_id or oid
            info.first_t, info.last_t = min(info.first_t, t), max(info.last_t, t)
    return sorted(by_key.values(), key=lambda o: (o.first_t, o.name))


def find_order(orders: list[OrderInfo], ident: str) -> OrderInfo:
    """The order named by its exchange id or customerOrderId (or a unique tail of its exchange id,
    6 characters or more, as ``show`` prints them)."""
    ident = ident.strip()
    for o in orders:
        if ident and ident in (o.order_id, o.customer_order_id):
            return o
    if len(ident) >= 6:
        tails = [o for o in orders if o.order_id and o.order_id.endswith(ident.lstrip("…"))]
        if len(tails) == 1:
            return tails[0]
    if not orders:
        raise CutError(f"--order {ident}: the capture holds no orders")
    few = ", ".join(o.customer_order_id or o.order_id or "?" for o in orders[:5])
    more = f" (and {len(orders) - 5} more)" if len(orders) > 5 else ""
    raise CutError(f"--order {ident}: no such order in the capture; it has {len(orders)}: {few}{more}")


# --------------------------------------------------------------------------- times


def _wall_ns(value: Any) -> int | None:
    ms = wall_ms(value)
    return None if ms is None else ms * MS


def capture_origin_ns(records: Iterable[dict[str, Any]]) -> int | None:
    """Epoch ns of the capture's ``t = 0`` from its records' ``wall`` times (None without any)."""
    best: int | None = None
    for rec in records:
        ms = _wall_ns(rec.get("wall"))
        if ms is not None and (best is None or ms - int(rec["t"]) > best):
            best = ms - int(rec["t"])
    return best


def parse_offset(text: str, option: str) -> int:
    """A duration: ``2`` / ``2.5s`` (seconds) or ``1500ms``, in ns (>= 0)."""
    s = text.strip().lower()
    unit = NS
    if s.endswith("ms"):
        s, unit = s[:-2], MS
    elif s.endswith("s"):
        s = s[:-1]
    try:
        value = float(s)
    except ValueError:
        raise CutError(f"{option} {text}: not a time (seconds, e.g. 2.5 or 2.5s, or 1500ms)") from None
    if not math.isfinite(value) or value < 0:
        raise CutError(f"{option} {text}: must be a non-negative time")
    return round(value * unit)


def parse_time(text: str, option: str, records: list[dict[str, Any]]) -> int:
    """``T`` of --from/--until: seconds since the capture's start (``12.5``, ``12.5s``, ``800ms``)
    or an ISO wall time (``2026-01-01T00:00:03Z``, placed by the records' ``wall``), in ns."""
    s = text.strip()
    if re.match(r"^\d{4}-\d{2}-\d{2}[T ]", s):
        at = _wall_ns(s if ("Z" in s or "+" in s[10:]) else s + "Z")
        if at is None:
            raise CutError(f"{option} {text}: not an ISO time (e.g. 2026-01-01T00:00:03.500Z)")
        origin = capture_origin_ns(records)
        if origin is None:
            raise CutError(f"{option} {text}: the capture has no wall times; give seconds since its start")
        return at - origin
    return parse_offset(s, option)


def _fmt_s(ns: int) -> str:
    return f"{ns / NS:.3f} s"


# --------------------------------------------------------------------------- the cut


def cut_capture(
    header: dict[str, Any],
    records: list[dict[str, Any]],
    *,
    order: str | None = None,
    start: int | None = None,
    end: int | None = None,
    around: int = 2 * NS,
    source: str = "",
) -> CutResult:
    """Cut ``records`` to an order (``order``: its lifetime widened by ``around`` ns either side)
    or to a window (``start``..``end``, ns since the capture's start). See the module docstring."""
    if order is not None and (start is not None or end is not None):
        raise CutError("--order goes without --from/--until: give one or the other")
    if order is None and (start is None or end is None):
        raise CutError("give --order ID, or both --from T and --until T")
    if not records:
        raise CutError(f"{source or 'the capture'}: holds no records")
    t_end = max(int(r["t"]) for r in records)
    orders = order_index(records)
    if order is not None:
        target = find_order(orders, order)
        involved = [o for o in orders if o.overlaps(target.first_t, target.last_t)]
        w0, w1 = target.first_t - around, target.last_t + around
    else:
        assert start is not None and end is not None
        if end <= start:
            raise CutError(f"--from {_fmt_s(start)} / --until {_fmt_s(end)}: the window is empty (until <= from)")
        if start > t_end or end < 0:
            raise CutError(f"--from {_fmt_s(start)} --until {_fmt_s(end)}: the window is outside the capture "
                           f"(0 s to {_fmt_s(t_end)})")
        w0, w1 = start, end
        involved = [o for o in orders if o.overlaps(w0, w1)]
        if not involved:
            raise CutError(f"--from {_fmt_s(start)} --until {_fmt_s(end)}: no order is active in the window "
                           f"(the capture has {len(orders)} orders, between "
                           + (f"{_fmt_s(orders[0].first_t)} and {_fmt_s(max(o.last_t for o in orders))})"
                              if orders else "none)"))
    keys = {k for o in involved for k in (o.order_id, o.customer_order_id) if k}

    # The playback's own attribution of account messages to requests.
    pb = Playback(records, header=header)
    requests = [r for r in records if is_request(r)]
    if len(requests) != len(pb.requests):  # the two must classify alike
        raise AssertionError(f"cut: {len(requests)} requests, the playback indexed {len(pb.requests)}")
    if not requests:
        raise CutError(f"{source or 'the capture'}: holds no client requests (nothing to replay)")
    first_request_t = int(requests[0]["t"])

    def about(rec: dict[str, Any]) -> bool:
        oid, cid = order_ids(rec)
        return bool((oid and oid in keys) or (cid and cid in keys))

    order_reqs = [i for i, r in enumerate(requests) if about(r)]
    if not order_reqs:
        raise CutError(f"{', '.join(sorted(keys))}: no client request names the order(s) "
                       "(orders placed by another client cannot be replayed)")
    r0, r1 = int(requests[order_reqs[0]]["t"]), int(requests[order_reqs[-1]]["t"])
    chosen = set(order_reqs)
    chosen.update(i for i, r in enumerate(requests)
                  if order_ids(r) == (None, None) and r0 <= int(r["t"]) <= r1)

    keep: dict[int, dict[str, Any]] = {}  # id(record) -> record
    for rec in pb.pre:
        keep[id(rec)] = rec
    account_end = r1
    for i in sorted(chosen):
        req = pb.requests[i]
        for rec in [requests[i], req.response, *req.segment]:
            if rec is not None:
                keep[id(rec)] = rec
                account_end = max(account_end, int(rec["t"]))

    shift = r0 - first_request_t
    rest_out: dict[str, dict[str, Any]] = {}
    last_state: dict[tuple[str, str, str], dict[str, Any]] = {}
    market_kept = 0
    for rec in records:
        t = int(rec["t"])
        conn = str(rec.get("conn", ""))
        if is_market(rec):
            if w0 <= t <= w1:
                keep[id(rec)] = rec
                market_kept += 1
            elif t < w0 and rec.get("type") in STATE_TYPES:
                data = _data(rec)
                pair = str(data.get("currencyPairSymbol") or data.get("ps") or data.get("pair") or "")
                last_state[(conn, str(rec.get("type")), pair)] = rec
            continue
        if rec.get("kind") == "rest" and not is_request(rec) and rec.get("dir") in ("out", "in"):
            # a GET and its reply: kept in the preamble and among the kept requests
            if rec.get("dir") == "out":
                rest_out[conn] = rec
            elif conn in rest_out:
                out = rest_out.pop(conn)
                if int(out["t"]) < first_request_t or r0 <= int(out["t"]) <= account_end:
                    keep[id(out)] = out
                    keep[id(rec)] = rec
            continue
        account_message = conn.startswith("account-") and rec.get("dir") in ("in", "out")
        if t < first_request_t and rec.get("kind") != "event" and not account_message:
            keep[id(rec)] = rec  # connection opens, the trade subscription, notes
        elif rec.get("dir") == "local" and rec.get("kind") != "event" and w0 <= t <= w1:
            keep[id(rec)] = rec
    for rec in last_state.values():
        keep[id(rec)] = rec
        market_kept += 1

    floor = max((int(r["t"]) for r in keep.values() if int(r["t"]) < first_request_t), default=0)
    out_records: list[tuple[int, int, dict[str, Any]]] = []
    for n, rec in enumerate(records):
        if id(rec) not in keep:
            continue
        t = int(rec["t"])
        if t >= first_request_t or is_market(rec):
            t = max(t - shift, floor)
        new = dict(rec)
        new["t"] = t
        out_records.append((t, n, new))
    out_records.sort(key=lambda x: (x[0], x[1]))
    kept = [rec for _, _, rec in out_records]
    duration = r1 - shift
    new_header = {k: v for k, v in header.items() if k not in ("format", "version")}
    new_header["cut"] = {
        "from": source,
        "order": order,
        "window_s": [round(w0 / NS, 6), round(w1 / NS, 6)],
        "orders": [o.customer_order_id or o.order_id for o in involved],
        "shift_s": round(shift / NS, 6),
        "records": [len(kept), len(records)],
    }
    return CutResult(header=new_header, records=kept, orders=involved, window=(w0, w1), shift_ns=shift,
                     duration_ns=duration, total=len(records), requests_kept=len(chosen), market_kept=market_kept)


# --------------------------------------------------------------------------- the scenario


def _duration_text(ns: int) -> str:
    ms = max(1, math.ceil(ns / MS))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _dec_text(value: Decimal) -> str:
    return format(value.normalize(), "f")


def infer_bot(records: list[dict[str, Any]], header: dict[str, Any]) -> dict[str, Any]:
    """The quoting bot's settings as the capture shows them: pair, order amount and levels,
    refresh time (the typical gap between request bursts), spreads (from the first burst that
    placed both sides: distance from their mid), policy (the header's, else reconcile)."""
    bot: dict[str, Any] = {"connector": "reference", "policy": str(header.get("policy") or "reconcile")}
    places: list[tuple[int, str, Decimal, Decimal, str]] = []
    burst_starts: list[int] = []
    last = None
    for rec in records:
        if not is_request(rec):
            continue
        t = int(rec["t"])
        if last is None or t - last > 100 * MS:
            burst_starts.append(t)
        last = t
        if rec.get("type") not in PLACE_TYPES:
            continue
        data = _data(rec)
        body = data.get("payload") if rec.get("kind") == "ws" else data.get("body")
        if not isinstance(body, dict):
            continue
        try:
            price = Decimal(str(body.get("price")))
            qty = Decimal(str(body.get("quantity", body.get("baseAmount"))))
        except (InvalidOperation, ValueError):
            continue
        places.append((t, str(body.get("side", "")).upper(), price, qty, str(body.get("pair", "")).upper()))
    if places:
        bot["pair"] = places[0][4] or "BTCZAR"
        bot["order_amount"] = _dec_text(places[0][3])
    gaps = [b - a for a, b in zip(burst_starts, burst_starts[1:], strict=False)]
    if gaps:
        bot["order_refresh_time"] = _duration_text(int(median(gaps)))
    by_burst: dict[int, list[tuple[str, Decimal]]] = {}
    for t, side, price, _qty, _pair in places:
        start = max(s for s in burst_starts if s <= t)
        by_burst.setdefault(start, []).append((side, price))
    for quotes in by_burst.values():
        bids = [p for s, p in quotes if s == "BUY"]
        asks = [p for s, p in quotes if s == "SELL"]
        if bids and asks:
            bid, ask = max(bids), min(asks)
            mid = (bid + ask) / 2
            if mid > 0:
                bot["bid_spread"] = round(float((mid - bid) / mid), 6)
                bot["ask_spread"] = round(float((ask - mid) / mid), 6)
            levels = max(len(bids), len(asks))
            if levels > 1:
                bot["order_levels"] = levels
            break
    return bot


def scenario_name(stem: str) -> str:
    name = _SCENARIO_NAME_OK.sub("-", stem).strip("-")
    return name or "cut"


def scenario_data(
    result: CutResult,
    capture_rel: str,
    name: str,
    records: list[dict[str, Any]],
    base: dict[str, Any] | None = None,
    duration: int | None = None,
) -> dict[str, Any]:
    """The scenario replaying the cut (a TOML document as a dict): ``base`` (a scenario file read
    with tomllib) with its name, duration and ``[market] capture`` replaced; without one, the bot
    inferred from ``records`` (the whole original capture) and the default expectations.
    ``duration`` (ns): the scenario's; default the cut's quoting time (to its last request)."""
    run_for = _duration_text(duration if duration is not None else result.duration_ns)
    description = (f"cut from {result.header.get('cut', {}).get('from') or 'a capture'}: "
                   + ", ".join(o.customer_order_id or o.order_id or "?" for o in result.orders))
    if base is not None:
        doc = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
        scen = dict(doc.get("scenario") or {})
        scen.update(name=name, description=description, duration=run_for)
        doc["scenario"] = scen
        market = dict(doc.get("market") or {})
        market["capture"] = capture_rel
        doc["market"] = market
        return {"scenario": doc.pop("scenario"), "market": doc.pop("market"), **doc}
    header = result.header
    seed = header.get("seed")
    return {
        "scenario": {"name": name, "description": description, "duration": run_for,
                     "seed": seed if isinstance(seed, int) and not isinstance(seed, bool) else 0},
        "market": {"capture": capture_rel},
        "bot": infer_bot(records, header),
    }


def scenario_comment(result: CutResult, command: str, base_path: str | None) -> str:
    """The comment lines heading the scenario file."""
    w0, w1 = result.window
    lines = [
        f"# Made by: {command}",
        f"# The part of {result.header.get('cut', {}).get('from') or 'a capture'} from {w0 / NS:.3f} s to "
        f"{w1 / NS:.3f} s: orders " + ", ".join(o.name for o in result.orders) + ";",
        f"# {len(result.records)} of {result.total} records, moved {result.shift_ns / NS:.3f} s earlier "
        "(replay/cut.py says what is kept).",
    ]
    if base_path:
        lines.append(f"# Bot, expectations and the rest copied from {base_path}.")
    else:
        lines.append("# Bot inferred from the capture; no [expect]: every check must hold (copy yours with "
                     "--scenario FILE).")
    return "\n".join(lines) + "\n\n"
