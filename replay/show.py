"""``valr-replay show``: a capture or run trace as a readable timeline, one line per record.

The formatting (``format_record``, ``timeline``, ``OrderLabels``) is pure and testable;
the click command ``show`` is the thin I/O shell around it.

A line reads::

    +1234.567ms  account-1   <-  OPEN_ORDERS_UPDATE        n=2 [o1 …c0ffee, o3 …d12e9a]

relative time since the capture start, connection, direction (``->`` client to server,
``<-`` server to client, ``·`` local), type, and a short summary of the payload. Each
distinct order (exchange id and customer id linked where a message carries both) gets a
short stable label ``o1``, ``o2``, ... in order of first appearance.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from datetime import datetime
from typing import Any, Iterable, Iterator

import click

from .capture import CaptureError, CaptureProblem, _plain, open_capture

ARROWS = {"out": "->", "in": "<-", "local": "·"}

# Keys that hold an exchange order id / a client (customer) order id, at any depth.
ORDER_ID_KEYS = ("orderId", "order_id", "exchange_order_id", "maker_order_id", "taker_order_id")
CLIENT_ID_KEYS = ("customerOrderId", "customer_order_id", "client_order_id")
ID_KEYS = ORDER_ID_KEYS + CLIENT_ID_KEYS
_ID_KEYS_SET = set(ID_KEYS)

SUMMARY_WIDTH = 240
_PALETTE = ("cyan", "magenta", "green", "yellow", "blue", "red", "bright_cyan", "bright_magenta", "bright_green")


def _jsonish(obj: Any) -> Any:
    """In-memory trace records may hold dataclasses, enums and decimals: make them plain."""
    obj = _plain(obj)
    if isinstance(obj, dict):
        return {k: _jsonish(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonish(v) for v in obj]
    return obj


def plain_record(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with its ``data`` as plain JSON values, as a trace line holds it: a record a run keeps in
    memory may carry dataclasses, enums and decimals."""
    data = record.get("data")
    if isinstance(data, (str, int, float, bool)) or data is None:
        return record
    return {**record, "data": _jsonish(data)}


def short_id(value: str) -> str:
    """A short form of a long id. VALR order ids are UUIDv7, whose leading digits are a
    timestamp shared by orders placed close together, so keep the tail."""
    value = str(value)
    return value if len(value) <= 10 else "…" + value[-6:]


class OrderLabels:
    """Gives each distinct order a short stable label (o1, o2, ...) in first-seen order.

    An exchange order id and a customer order id seen in the same object (a placement
    reply, an ORDER_STATUS_UPDATE, a client ORDER_STATE) are linked to one label.
    """

    def __init__(self) -> None:
        self._labels: dict[str, str] = {}
        self._members: dict[str, list[str]] = {}  # label -> its ids (a merge relabels only those)
        self._count = 0
        self._rest_cid: dict[str, Any] = {}  # rest conn -> customer id of its request

    def __len__(self) -> int:
        return self._count

    def get(self, ident: Any) -> str | None:
        return self._labels.get(str(ident)) if ident not in (None, "") else None

    def label(self, ident: Any) -> str:
        """The label of ``ident``, assigning a new one if unseen."""
        key = str(ident)
        lab = self._labels.get(key)
        if lab is None:
            self._count += 1
            lab = self._labels[key] = f"o{self._count}"
            self._members[lab] = [key]
        return lab

    def link(self, *idents: Any) -> str | None:
        """One label for ids that name the same order.

        An existing label wins; if the ids already carry different labels they are merged
        into the earliest (so ``show`` runs a first pass of ``observe`` then ``compact``).
        """
        ids = [str(i) for i in idents if i not in (None, "")]
        if not ids:
            return None
        have = sorted({self._labels[i] for i in ids if i in self._labels}, key=lambda lab: int(lab[1:]))
        lab = have[0] if have else self.label(ids[0])
        members = self._members.setdefault(lab, [])
        for other in have[1:]:
            for i in self._members.pop(other, ()):
                self._labels[i] = lab
                members.append(i)
        for i in ids:
            if self._labels.get(i) != lab:
                self._labels[i] = lab
                members.append(i)
        return lab

    def compact(self) -> None:
        """Renumber labels o1, o2, ... in order of first appearance (after merges left gaps)."""
        renum: dict[str, str] = {}
        for lab in self._labels.values():
            if lab not in renum:
                renum[lab] = f"o{len(renum) + 1}"
        self._labels = {i: renum[lab] for i, lab in self._labels.items()}
        self._members = {}
        for i, lab in self._labels.items():
            self._members.setdefault(lab, []).append(i)
        self._count = len(renum)

    def ids_of(self, label: str) -> list[str]:
        return [i for i, lab in self._labels.items() if lab == label]

    def observe(self, record: dict[str, Any]) -> None:
        """Assign labels to every order id the record mentions."""
        record = plain_record(record)
        for oid, cid in _id_pairs(record.get("data")):
            self.link(oid, cid)
        if record.get("kind") == "rest":
            # A REST placement reply carries the new order's id as "id"; a rest-N
            # connection is one request/response pair, so link it to the request's customer id.
            data = record.get("data")
            body = data.get("body") if isinstance(data, dict) else None
            conn = str(record.get("conn"))
            if record.get("dir") == "out":
                cid = next((body[k] for k in CLIENT_ID_KEYS if isinstance(body, dict) and body.get(k)), None)
                if cid is not None:
                    self._rest_cid[conn] = cid
            elif isinstance(body, dict) and isinstance(body.get("id"), str) and "/orders" in record.get("type", ""):
                self.link(body["id"], self._rest_cid.pop(conn, None))


def _id_pairs(obj: Any) -> Iterator[tuple[Any, Any]]:
    """(order id, customer id) per object that holds either, at any depth."""
    stack = [obj]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            oid = next((cur[k] for k in ORDER_ID_KEYS if isinstance(cur.get(k), (str, int)) and cur.get(k) != ""), None)
            cid = next((cur[k] for k in CLIENT_ID_KEYS if isinstance(cur.get(k), (str, int)) and cur.get(k) != ""),
                       None)
            if oid is not None or cid is not None:
                yield oid, cid
            for k in ("maker_order_id", "taker_order_id"):
                if isinstance(cur.get(k), str) and cur[k] != oid:
                    yield cur[k], None
            stack.extend(reversed([v for v in cur.values() if isinstance(v, (dict, list))]))
        elif isinstance(cur, list):
            stack.extend(reversed([v for v in cur if isinstance(v, (dict, list))]))


def mentioned_ids(obj: Any) -> set[str]:
    """Every order / customer id value under an id key, at any depth."""
    found: set[str] = set()
    stack = [obj]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            for k, v in cur.items():
                if k in _ID_KEYS_SET and isinstance(v, (str, int)):
                    found.add(str(v))
                elif isinstance(v, (dict, list)):
                    stack.append(v)
        elif isinstance(cur, list):
            stack.extend(v for v in cur if isinstance(v, (dict, list)))
    return found


def record_mentions(record: dict[str, Any], wanted: str, labels: OrderLabels | None = None) -> bool:
    """Does the record mention order ``wanted`` (an id, a shown short id, or a label like ``o3``)?

    With ``labels``, ids linked to the same order (its exchange and customer ids) count too.
    """
    record = plain_record(record)
    wanted = wanted.strip()
    wanted_tail = wanted.lstrip("…")
    wanted_labels: set[str] = set()
    if labels is not None:
        if re.fullmatch(r"o\d+", wanted):
            wanted_labels.add(wanted)
        lab = labels.get(wanted)
        if lab:
            wanted_labels.add(lab)
    ids = mentioned_ids(record.get("data"))
    data = record.get("data")
    if record.get("kind") == "rest" and isinstance(data, dict):
        body = data.get("body")
        if isinstance(body, dict) and isinstance(body.get("id"), str):
            ids.add(body["id"])
        path = data.get("path")
        if isinstance(path, str) and wanted in path:
            return True
    for i in ids:
        if (i == wanted or (len(wanted_tail) >= 6 and i.endswith(wanted_tail))
                or (len(wanted) >= 8 and i.startswith(wanted))):
            return True
        if wanted_labels and labels is not None and labels.get(i) in wanted_labels:
            return True
    return False


# --------------------------------------------------------------------------- formatting


def _fmt_t(t: Any) -> str:
    try:
        return f"+{float(t) / 1e6:.3f}ms"
    except (TypeError, ValueError):
        return f"+?ms({t!r})"


def _order_ref(d: dict[str, Any], labels: OrderLabels | None) -> list[str]:
    oid = next((d[k] for k in ORDER_ID_KEYS if d.get(k) not in (None, "")), None)
    cid = next((d[k] for k in CLIENT_ID_KEYS if d.get(k) not in (None, "")), None)
    parts: list[str] = []
    if labels is not None and (oid is not None or cid is not None):
        lab = labels.link(oid, cid)
        if lab:
            parts.append(lab)
    if oid is not None:
        parts.append(f"id={short_id(oid)}")
    if cid is not None:
        parts.append(f"cid={cid}")
    return parts


def _order_summary(d: dict[str, Any], labels: OrderLabels | None) -> str:
    parts = _order_ref(d, labels)
    side = d.get("side")
    if side:
        parts.append(str(side).upper())
    qty = next((d[k] for k in ("quantity", "amount", "qty", "baseAmount", "remainingQuantity", "remaining_quantity",
                               "original_quantity") if d.get(k) not in (None, "")), None)
    price = next((d[k] for k in ("price", "originalPrice") if d.get(k) not in (None, "")), None)
    if qty is not None and price not in (None, ""):
        parts.append(f"{qty}@{price}")
    elif qty is not None:
        parts.append(f"qty={qty}")
    elif price not in (None, ""):
        parts.append(f"@{price}")
    if "remainingQuantity" in d and qty != d.get("remainingQuantity"):
        parts.append(f"rem={d['remainingQuantity']}")
    status = next((d[k] for k in ("orderStatusType", "status") if d.get(k) not in (None, "")), None)
    if status is not None:
        parts.append(str(status))
    for k in ("success", "requested", "accepted"):
        if k in d:
            parts.append(f"{k}={d[k]}")
    reason_keys = ("failedReason", "failureReason", "failed_reason", "failure_reason", "message", "reason")
    reason = next((d[k] for k in reason_keys if d.get(k) not in (None, "")), None)
    if reason is not None:
        parts.append(f"({reason})")
    return " ".join(str(p) for p in parts)


def _list_summary(orders: list[Any], labels: OrderLabels | None) -> str:
    items = []
    for o in orders:
        if isinstance(o, dict):
            ref = _order_ref(o, labels)
            items.append(" ".join(p for p in ref if not p.startswith("cid=")) or "?")
        else:
            items.append(str(o))
    return f"n={len(orders)} [" + ", ".join(items) + "]"


def _scalars(d: dict[str, Any], limit: int = 6) -> str:
    parts = []
    for k, v in d.items():
        if isinstance(v, (str, int, float, bool)) or v is None:
            parts.append(f"{k}={v}")
        if len(parts) >= limit:
            break
    return " ".join(parts)


def _payload_summary(payload: Any, labels: OrderLabels | None) -> str:
    if isinstance(payload, list):
        if payload and all(isinstance(o, dict) for o in payload) and any(mentioned_ids(o) for o in payload):
            return _list_summary(payload, labels)
        return f"n={len(payload)}"
    if isinstance(payload, dict):
        # domain events wrap the interesting part: {"order": ...}, {"orders": [...]}, ...
        for k in ("order", "orders", "balance", "trade"):
            if isinstance(payload.get(k), (dict, list)):
                inner = _payload_summary(payload[k], labels)
                rest = _scalars({kk: vv for kk, vv in payload.items() if kk not in (k, "ts_ms", "account")}, 4)
                return (inner + (" " + rest if rest else "")).strip()
        if set(payload) & _ID_KEYS_SET or "orderStatusType" in payload or "side" in payload:
            return _order_summary(payload, labels)
        return _scalars(payload)
    if payload is None:
        return ""
    return str(payload)


def summarize(record: dict[str, Any], labels: OrderLabels | None = None) -> str:
    """A short summary of the record's payload (no time, conn or type)."""
    kind = record.get("kind")
    typ = record.get("type")
    data = record.get("data")
    if kind == "rest" and isinstance(data, dict):
        body = data.get("body")
        if "status" in data:  # response
            head = f"{data.get('status')}"
        else:  # request: method and path are the record's type already
            q = data.get("query")
            head = (f"?{q}" if isinstance(q, str) else f"query={q}") if q else ""
            path = data.get("path")
            if isinstance(path, str) and typ and not str(typ).endswith(path.split("?")[0]):
                head = f"{path} {head}".strip()
        tail = ""
        if isinstance(body, dict) and isinstance(body.get("id"), str) and not (set(body) & _ID_KEYS_SET):
            lab = labels.label(body["id"]) if labels is not None else None
            tail = " ".join(p for p in (lab, f"id={short_id(body['id'])}") if p)
            rest = _scalars({k: v for k, v in body.items() if k != "id"}, 4)
            tail = (tail + " " + rest).strip()
        elif body not in (None, "", {}, []):
            tail = _payload_summary(body, labels)
        return f"{head} {tail}".strip()
    if kind == "ws" and isinstance(data, dict):
        if typ in ("CONNECT", "DISCONNECT"):
            return _scalars(data)
        if "raw" in data and len(data) == 1:
            return f"raw {str(data['raw'])[:80]!r}"
        inner = data.get("data", data.get("payload"))
        parts = []
        if "clientMsgId" in data:
            parts.append(f"msg={data['clientMsgId']}")
        if inner is not None:
            parts.append(_payload_summary(inner, labels))
        elif set(data) - {"type"}:
            parts.append(_scalars({k: v for k, v in data.items() if k != "type"}))
        return " ".join(p for p in parts if p)
    if kind == "client" and isinstance(data, dict):
        base = _order_summary({k: v for k, v in data.items() if k not in ("reason",)}, labels)
        extra = []
        if "from" in data or "to" in data:
            extra.append(f"{data.get('from')}→{data.get('to')}")
        if data.get("reason"):
            extra.append(f"({data['reason']})")
        if data.get("where"):
            extra.append(f"[{data['where']}]")
        return " ".join(p for p in [base, *extra] if p)
    if kind == "event" and isinstance(data, dict):
        if typ == "CommandSubmitted":
            head = str(data.get("command", ""))
            ref = " ".join(_order_ref(data, labels))
            return f"{head} {ref}".strip() + (f" via {data['conn']}" if data.get("conn") else "")
        return _payload_summary(data, labels)
    return _payload_summary(data, labels)


def format_record(record: dict[str, Any], labels: OrderLabels | dict[str, str] | None = None) -> str:
    """One timeline line: ``+t ms  conn  arrow  type  summary``. Pure; assigns labels as it goes."""
    if isinstance(labels, dict):
        lab = OrderLabels()
        for ident, name in labels.items():
            lab._labels[str(ident)] = name
            lab._members.setdefault(name, []).append(str(ident))
            lab._count = max(lab._count, int(name[1:]) if re.fullmatch(r"o\d+", name) else 0)
        labels = lab
    record = plain_record(record)
    summary = summarize(record, labels)
    if len(summary) > SUMMARY_WIDTH:
        summary = summary[: SUMMARY_WIDTH - 1] + "…"
    arrow = ARROWS.get(str(record.get("dir")), "?")
    conn = str(record.get("conn", "?"))
    rtype = str(record.get("type", "?"))
    return f"{_fmt_t(record.get('t')):>14}  {conn:<11} {arrow:<2}  {rtype:<26} {summary}".rstrip()


def timeline(
    records: list[dict[str, Any]],
    center_index: int,
    before: int = 5,
    after: int = 5,
    labels: OrderLabels | None = None,
) -> list[str]:
    """The lines around ``records[center_index]``, the centre marked with ``>>``.

    Labels come from all of ``records`` (as ``show`` assigns them over a whole file).
    """
    if not records:
        return []
    center_index = max(0, min(center_index, len(records) - 1))
    lo = max(0, center_index - before)
    hi = min(len(records), center_index + after + 1)
    if labels is None:
        labels = OrderLabels()
        for rec in records:
            labels.observe(rec)
        labels.compact()
    out = []
    for i in range(lo, hi):
        mark = ">> " if i == center_index else "   "
        out.append(mark + format_record(records[i], labels))
    return out


# --------------------------------------------------------------------------- selection


def parse_time(value: str) -> tuple[str, float]:
    """``--around``: ("offset", ns) for a ms offset like ``1234.5`` / ``+1234.5ms``, or
    ("wall", epoch ms) for an ISO 8601 time."""
    v = value.strip()
    m = re.fullmatch(r"\+?(\d+(?:\.\d*)?)\s*(ms)?", v)
    if m:
        return "offset", float(m.group(1)) * 1e6
    m = re.fullmatch(r"\+?(\d+(?:\.\d*)?)\s*s", v)
    if m:
        return "offset", float(m.group(1)) * 1e9
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--around: {value!r} is neither a ms offset (1234.5) nor an ISO time") from None
    if dt.tzinfo is None:
        from datetime import timezone

        dt = dt.replace(tzinfo=timezone.utc)
    return "wall", dt.timestamp() * 1000


def _wall_ms(rec: dict[str, Any]) -> float | None:
    w = rec.get("wall")
    if not isinstance(w, str):
        return None
    try:
        return datetime.fromisoformat(w.replace("Z", "+00:00")).timestamp() * 1000
    except ValueError:
        return None


def select(
    records: Iterable[dict[str, Any]],
    labels: OrderLabels,
    *,
    types: tuple[str, ...] = (),
    kinds: tuple[str, ...] = (),
    order: str | None = None,
    around_ns: float | None = None,
    window_s: float = 2.0,
) -> Iterator[dict[str, Any]]:
    """Records passing the filters (types/kinds as case-insensitive globs)."""
    tpat = [t.lower() for t in types]
    kset = {k.lower() for k in kinds}
    for rec in records:
        if tpat and not any(fnmatch.fnmatchcase(str(rec.get("type", "")).lower(), p) for p in tpat):
            continue
        if kset and str(rec.get("kind", "")).lower() not in kset:
            continue
        if around_ns is not None and abs(float(rec.get("t", 0)) - around_ns) > window_s * 1e9:
            continue
        if order is not None and not record_mentions(rec, order, labels):
            continue
        yield rec


# --------------------------------------------------------------------------- command


def _styled(line: str, labels: OrderLabels):
    from rich.text import Text

    text = Text(line)
    for m in re.finditer(r"\bo(\d+)\b", line):
        text.stylize(_PALETTE[(int(m.group(1)) - 1) % len(_PALETTE)], m.start(), m.end())
    for arrow, style in (("->", "bold"), ("<-", "bold")):
        idx = line.find(f" {arrow} ")
        if idx >= 0:
            text.stylize(style, idx + 1, idx + 3)
            break
    return text


@click.command("show")
@click.argument("capture", type=click.Path(dir_okay=False, path_type=str))
@click.option("--type", "types", multiple=True, metavar="T", help="Only records of this type (glob, repeatable).")
@click.option("--kind", "kinds", multiple=True, metavar="K",
              help="Only records of this kind: ws, rest, event, client, strategy, meta (repeatable).")
@click.option("--order", "order", metavar="ID",
              help="Only records that mention this order (order id, customer id, short id or label like o3).")
@click.option("--around", "around", metavar="TIME",
              help="Centre on a time: an offset from the start in ms (1234.5, +1234.5ms) or s (1.2s), "
                   "or an ISO wall time (2026-11-24T16:07:29.010Z).")
@click.option("--window", "window", type=float, default=2.0, show_default=True, metavar="S",
              help="Seconds either side of --around.")
@click.option("--limit", "limit", type=int, default=None, metavar="N", help="Print at most N records.")
@click.option("--color/--no-color", "color", default=None, help="Colour order labels (default: when a terminal).")
def show(capture: str, types: tuple[str, ...], kinds: tuple[str, ...], order: str | None, around: str | None,
         window: float, limit: int | None, color: bool | None) -> None:
    """Print CAPTURE (a capture or run trace, .jsonl or .jsonl.gz) as a timeline.

    Exit status: 0 when at least one record was selected; 1 when none was (the filters matched
    nothing, or the capture has no records), which stderr says, naming the filters; 2 for bad
    input (a missing or unreadable capture, a bad --around or --window).
    """
    from rich.console import Console

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        reader = open_capture(capture)
    except CaptureError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    around_ns: float | None = None
    wall_target: float | None = None
    if around is not None:
        try:
            how, value = parse_time(around)
        except ValueError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        if how == "offset":
            around_ns = value
        else:
            wall_target = value
    if window < 0:
        click.echo("error: --window must not be negative", err=True)
        sys.exit(2)

    # Pass 1: labels (so ids linked later, e.g. a customer id and the exchange id its reply
    # gives, share one label everywhere), and the wall-time anchor for an ISO --around.
    labels = OrderLabels()
    anchor: tuple[float, float] | None = None
    for rec in reader:
        labels.observe(rec)
        if anchor is None and wall_target is not None:
            w = _wall_ms(rec)
            if w is not None:
                anchor = (float(rec["t"]), w)
    if wall_target is not None:
        if anchor is None:
            click.echo(f"error: {capture}: no record has a wall time to place --around {around}", err=True)
            sys.exit(2)
        around_ns = anchor[0] + (wall_target - anchor[1]) * 1e6
    labels.compact()

    out = Console(highlight=False, soft_wrap=True, force_terminal=color if color else None,
                  no_color=(color is False))
    shown = 0
    selected = 0
    problems: list[CaptureProblem] = []
    reader.on_problem = problems.append
    stream = select(reader, labels, types=types, kinds=kinds, order=order, around_ns=around_ns, window_s=window)
    for rec in stream:
        selected += 1
        if limit is not None and shown >= limit:
            break
        out.print(_styled(format_record(rec, labels), labels))
        shown += 1
    if limit is not None and shown >= limit:
        # keep reading to report problems in the rest of the file
        for _ in stream:
            selected += 1
    for pr in problems:
        err.print(f"problem: {pr}", markup=False)
    if problems:
        err.print(f"{len(problems)} problem(s) in {capture}; listing continued past them", markup=False)
    if not selected:
        filters = [f"--type {t}" for t in types] + [f"--kind {k}" for k in kinds]
        if order is not None:
            filters.append(f"--order {order}")
        if around is not None:
            filters.append(f"--around {around} --window {window:g}")
        if filters:
            known = f"; its orders are o1..o{len(labels)}" if order is not None and len(labels) else ""
            err.print(f"no record in {capture} matches {' '.join(filters)}{known}", markup=False)
        else:
            err.print(f"no records in {capture}", markup=False)
        sys.exit(1)
