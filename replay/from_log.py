"""From a bot's log to a scenario: the inference behind ``valr-replay from-log``.

Pure: log lines in, events out, scenario text out (the only file this module reads is a
pattern file, in :func:`load_pattern_file` and :func:`builtin_patterns`). The click command
is ``replay/from_log_command.py``.

1. **Patterns** (:func:`parse_patterns`): a TOML file of ``[[pattern]]`` entries, each a regular
   expression with the named groups ``time`` and ``order`` (others optional) and the ``event`` a
   matching line stands for. The shipped sets are ``replay/log_patterns/*.toml``.
2. **Events** (:func:`parse_log`): each line matched by the first pattern that matches it, its
   time read (``16:07:29,071``, ``2025-07-21 16:07:29,071``, ISO times, ``+1006.412ms`` offsets,
   or a bare number in the entry's ``time_unit``). A line no pattern matches is counted and kept
   as an example, never guessed at.
3. **Orders** (:func:`infer`): events are gathered per order, by the ids they name. A log line
   may name only the exchange's id: a placement confirmed by exchange id alone, right after a
   snapshot handled without an order whose placement was not yet confirmed, is taken to be that
   order (nothing else links them: their order and closeness).
4. **Constraints**: each order's consecutive deliveries become ``[[ordering]]`` constraints
   (first = the earlier event's message, then = the later's, gap = their time difference),
   merged per (first, first_when, then); the client's own cancel gives timing (a latency), not
   a delivery. :func:`scenario_text` writes the scenario, quoting the log lines.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

from .schedule import ORDER_MESSAGE_TYPES

#: event -> (wire message, first_when when it is the first message of a constraint); None: no delivery
EVENTS: dict[str, tuple[str | None, str]] = {
    "snapshot-without": ("OPEN_ORDERS_UPDATE", "omits-order"),
    "placement-confirmed": ("PLACE_LIMIT_WS_RESPONSE", "mentions-order"),
    "cancel-sent": (None, ""),
    "cancel-confirmed": ("CANCEL_ORDER_WS_RESPONSE", "mentions-order"),
    "status": ("ORDER_STATUS_UPDATE", "mentions-order"),
    "fill": ("NEW_ACCOUNT_TRADE", "mentions-order"),
}
EVENT_HELP = {
    "snapshot-without": "an OPEN_ORDERS_UPDATE handled without the order (e.g. 'not found in exchange open orders')",
    "placement-confirmed": "the order's placement reply (PLACE_LIMIT_WS_RESPONSE)",
    "cancel-sent": "the bot sent a cancel (its own command: timing, not a delivery)",
    "cancel-confirmed": "the cancel's reply (CANCEL_ORDER_WS_RESPONSE)",
    "status": "an ORDER_STATUS_UPDATE about the order",
    "fill": "a fill (NEW_ACCOUNT_TRADE)",
}
#: Message types an entry's ``message`` may name instead of its event's own: what an [[ordering]] may name.
ORDER_MESSAGES = ORDER_MESSAGE_TYPES
PATTERN_KEYS = {"name", "event", "regex", "prefix", "order_id", "message", "time_unit"}
TIME_UNITS_US = {"ns": 0.001, "us": 1.0, "ms": 1000.0, "s": 1_000_000.0}
BUILTIN_SETS = ("hummingbot", "reference")

#: events of one order and one message this close are one delivery logged twice
SAME_DELIVERY_US = 1_000
#: a cancel "confirmed" this soon after a snapshot handled without the order is the tracker's own echo of it
ECHO_US = 1_000
#: a placement confirmed by exchange id alone is linked to a "not found" at most this long before it
LINK_WINDOW_US = 2_000_000
#: consecutive deliveries further apart than this are not one race (``--max-gap``)
DEFAULT_MAX_GAP_US = 1_000_000
#: how many recognised lines and orders the scenario's header lists
SHOW_EVENTS = 40
SHOW_ORDERS = 12
#: message -> short name, for constraint names
SHORT = {
    "OPEN_ORDERS_UPDATE": "snapshot", "PLACE_LIMIT_WS_RESPONSE": "ack", "CANCEL_ORDER_WS_RESPONSE": "cancel-reply",
    "ORDER_STATUS_UPDATE": "status", "NEW_ACCOUNT_TRADE": "trade", "NEW_ACCOUNT_HISTORY_RECORD": "history",
}
# The checks the open-orders race breaks under the naive handler (scenarios/open_orders_race.toml).
RACE_VIOLATIONS = ("max_open_orders", "false_cancels", "orphans", "nothing_open_after_shutdown", "orders_closed",
                   "final_state_exit")


class PatternError(ValueError):
    """A bad pattern file: the message names the file and the entry/key."""


class FromLogError(ValueError):
    """Nothing to infer from (no recognisable line, times that cannot be compared)."""


@dataclass(frozen=True)
class Pattern:
    name: str
    event: str
    regex: re.Pattern[str]
    order_id: str = "client"  # which id the ``order`` group holds: "client" or "exchange"
    message: str | None = None  # the wire message, when not the event's own
    time_unit: str = "s"  # of a bare-number time
    source: str = ""

    @property
    def wire(self) -> str | None:
        return self.message or EVENTS[self.event][0]


@dataclass
class LogEvent:
    line_no: int
    text: str
    time_us: int
    time_text: str
    kind: str  # "date" (epoch), "clock" (time of day), "offset"
    event: str
    message: str | None
    when: str
    ids: list[tuple[str, str]]  # (kind "client"/"exchange", id); the first is the ``order`` group's
    pattern: str
    order: "Order | None" = None
    link_note: str = ""
    echo_of: "LogEvent | None" = None
    merged_into: "LogEvent | None" = None

    @property
    def delivery(self) -> bool:
        return self.message is not None and self.echo_of is None and self.merged_into is None


@dataclass
class Order:
    label: str
    client_ids: list[str] = field(default_factory=list)
    exchange_ids: list[str] = field(default_factory=list)
    events: list[LogEvent] = field(default_factory=list)
    link_notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = []
        if self.client_ids:
            parts.append("client id " + ", ".join(self.client_ids))
        if self.exchange_ids:
            parts.append("exchange id " + ", ".join(self.exchange_ids))
        return "; ".join(parts) or "(no id)"


@dataclass
class ParsedLog:
    events: list[LogEvent]
    unmatched: list[tuple[int, str]]  # (line number, text), every one
    lines: int  # non-blank lines read

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.events:
            out[e.event] = out.get(e.event, 0) + 1
        return out


@dataclass
class Constraint:
    name: str
    first: str
    first_when: str
    then: str
    gap_us: int
    gaps_us: list[int]
    pairs: list[tuple[LogEvent, LogEvent]]


@dataclass
class Inference:
    parsed: ParsedLog
    orders: list[Order]
    constraints: list[Constraint]
    latencies: dict[str, tuple[int, int]]  # latency key -> (min, max) us
    latency_notes: list[str]
    skipped: list[str]  # pairs of events that gave no constraint, and why
    max_gap_us: int


# --- patterns -----------------------------------------------------------------------------


def _key(source: str, where: str, message: str) -> PatternError:
    return PatternError(f"{source}: {where}: {message}")


def parse_patterns(text: str, source: str) -> list[Pattern]:
    """The ``[[pattern]]`` entries of a pattern file's text; :class:`PatternError` names ``source`` and the key."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PatternError(f"{source}: invalid TOML: {exc}") from None
    unknown = sorted(set(doc) - {"prefix", "time_unit", "pattern"})
    if unknown:
        raise _key(source, unknown[0], "unknown key: a pattern file has `prefix` and `time_unit` (both optional) and "
                   "[[pattern]] entries")
    prefix = doc.get("prefix", "")
    if not isinstance(prefix, str):
        raise _key(source, "prefix", f"expected a string (a regular expression), got {type(prefix).__name__}")
    file_unit = doc.get("time_unit", "s")
    if file_unit not in TIME_UNITS_US:
        raise _key(source, "time_unit", f"expected one of {', '.join(TIME_UNITS_US)}, got {file_unit!r}")
    entries = doc.get("pattern")
    if not isinstance(entries, list) or not entries:
        raise _key(source, "pattern", "expected [[pattern]] entries (an array of tables), none found")
    out = []
    for i, entry in enumerate(entries):
        where = f"pattern[{i}]"
        if not isinstance(entry, dict):
            raise _key(source, where, "expected a table")
        bad = sorted(set(entry) - PATTERN_KEYS)
        if bad:
            raise _key(source, f"{where}.{bad[0]}", f"unknown key; expected {', '.join(sorted(PATTERN_KEYS))}")
        name = entry.get("name", where)
        if not isinstance(name, str) or not name:
            raise _key(source, f"{where}.name", "expected a non-empty string")
        event = entry.get("event")
        if event not in EVENTS:
            got = "missing" if event is None else f"unknown event {event!r}"
            raise _key(source, f"{where}.event", f"{got}: expected one of {', '.join(EVENTS)}")
        raw = entry.get("regex")
        if not isinstance(raw, str) or not raw:
            raise _key(source, f"{where}.regex", "expected a regular expression (a string; '''...''' needs no escapes)")
        entry_prefix = entry.get("prefix", prefix)
        if not isinstance(entry_prefix, str):
            raise _key(source, f"{where}.prefix", "expected a string (a regular expression)")
        try:
            regex = re.compile(entry_prefix + raw)
        except re.error as exc:
            raise _key(source, f"{where}.regex", f"bad regular expression: {exc}") from None
        for group in ("time", "order"):
            if group not in regex.groupindex:
                raise _key(source, f"{where}.regex", f"no named group `{group}`: write (?P<{group}>...)")
        order_id = entry.get("order_id", "client")
        if order_id not in ("client", "exchange"):
            raise _key(source, f"{where}.order_id", f"expected 'client' or 'exchange', got {order_id!r}")
        message = entry.get("message")
        if message is not None:
            if event in ("snapshot-without", "cancel-sent"):
                raise _key(source, f"{where}.message", f"event {event!r} has a fixed meaning: no `message` for it")
            if message not in ORDER_MESSAGES:
                raise _key(source, f"{where}.message",
                           f"{message!r} is not an account message about an order: expected one of "
                           + ", ".join(ORDER_MESSAGES))
        unit = entry.get("time_unit", file_unit)
        if unit not in TIME_UNITS_US:
            raise _key(source, f"{where}.time_unit", f"expected one of {', '.join(TIME_UNITS_US)}, got {unit!r}")
        out.append(Pattern(name, event, regex, order_id, message, unit, source))
    return out


def load_pattern_file(path: str | Path) -> list[Pattern]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PatternError(f"{path}: cannot read: {exc}") from None
    return parse_patterns(text, str(path))


def builtin_patterns(names: Iterable[str] = BUILTIN_SETS) -> list[Pattern]:
    """The shipped pattern sets (package data ``replay/log_patterns/NAME.toml``), in the order named."""
    out: list[Pattern] = []
    folder = resources.files("replay") / "log_patterns"
    for name in names:
        item = folder / f"{name}.toml"
        out.extend(parse_patterns(item.read_text(encoding="utf-8"), f"log_patterns/{name}.toml"))
    return out


# --- times --------------------------------------------------------------------------------

_CLOCK = re.compile(r"(\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?")
_OFFSET = re.compile(r"\+?(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|µs|ms|s)")
_NUMBER = re.compile(r"[+-]?(\d+(?:\.\d*)?|\.\d+)")


def _fraction_us(digits: str | None) -> int:
    return int((digits or "0")[:6].ljust(6, "0"))


def parse_time(text: str, unit: str = "s") -> tuple[str, int]:
    """(kind, microseconds) of a log line's time: ``("date", epoch us)`` for a date and time
    (``2025-07-21 16:07:29,071``, ISO 8601; UTC unless an offset is given), ``("clock", us since
    midnight)`` for a time of day (``16:07:29,071``), ``("offset", us)`` for ``+1006.412ms`` / ``1.5s``,
    or ``("offset", us)`` for a bare number in ``unit``. ValueError otherwise."""
    t = text.strip()
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})[ T](\d{1,2}:\d{2}:\d{2})(?:[.,](\d{1,9}))?\s*(Z|[+-]\d{2}:?\d{2})?", t)
    if m:
        zone = m.group(4) or "+00:00"
        zone = "+00:00" if zone == "Z" else zone if ":" in zone else zone[:3] + ":" + zone[3:]
        dt = datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}{zone}").astimezone(timezone.utc)
        return "date", int(dt.timestamp()) * 1_000_000 + _fraction_us(m.group(3))
    m = _CLOCK.fullmatch(t)
    if m:
        h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if h > 23 or mi > 59 or s > 60:
            raise ValueError(f"bad time of day {text!r}")
        return "clock", ((h * 60 + mi) * 60 + s) * 1_000_000 + _fraction_us(m.group(4))
    m = _OFFSET.fullmatch(t)
    if m:
        scale = {"ns": 0.001, "us": 1.0, "µs": 1.0, "ms": 1000.0, "s": 1_000_000.0}[m.group(2)]
        return "offset", round(float(m.group(1)) * scale)
    if _NUMBER.fullmatch(t):
        return "offset", round(float(t) * TIME_UNITS_US[unit])
    raise ValueError(f"cannot read a time from {text!r}")


def fmt_duration(us: int) -> str:
    """A scenario duration for ``us`` microseconds: ``"5ms"``, ``"6.438ms"``, ``"1.5s"``, ``"0ms"``."""
    if us >= 1_000_000 and us % 1000 == 0:
        return f"{us / 1_000_000:g}s"
    ms = us / 1000
    return f"{ms:.3f}".rstrip("0").rstrip(".") + "ms"


# --- events -------------------------------------------------------------------------------


def parse_log(lines: Iterable[str], patterns: Sequence[Pattern]) -> ParsedLog:
    """Match each line against ``patterns`` (the first that matches wins) and read its time.

    A line whose time cannot be read is left unmatched (it shows among the examples)."""
    events: list[LogEvent] = []
    unmatched: list[tuple[int, str]] = []
    count = 0
    for line_no, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        count += 1
        for p in patterns:
            m = p.regex.search(line)
            if m is None:
                continue
            groups = m.groupdict()
            order = groups.get("order")
            stamp = groups.get("time")
            if not order or not stamp:
                continue
            try:
                kind, us = parse_time(stamp, p.time_unit)
            except ValueError:
                continue
            ids = [(p.order_id, order)]
            for group, id_kind in (("client_id", "client"), ("exchange_id", "exchange")):
                value = groups.get(group)
                if value and (id_kind, value) not in ids:
                    ids.append((id_kind, value))
            message = p.wire
            events.append(LogEvent(line_no, line, us, stamp, kind, p.event, message, EVENTS[p.event][1], ids, p.name))
            break
        else:
            unmatched.append((line_no, line))
    return ParsedLog(events, unmatched, count)


def _timeline(events: list[LogEvent]) -> list[LogEvent]:
    """The events in time order. A time of day that goes back by more than 12 h crossed midnight."""
    kinds = {e.kind for e in events}
    if len(kinds) > 1:
        first = {k: next(e for e in events if e.kind == k) for k in sorted(kinds)}
        detail = "; ".join(f"line {e.line_no}: {e.time_text!r} ({k})" for k, e in first.items())
        raise FromLogError(f"the matched lines' times are of different kinds and cannot be compared: {detail}")
    day = 0
    last: int | None = None
    for e in events:
        if e.kind == "clock":
            if last is not None and e.time_us + day < last - 12 * 3600 * 1_000_000:
                day += 24 * 3600 * 1_000_000
            e.time_us += day
            last = e.time_us
    return sorted(events, key=lambda e: (e.time_us, e.line_no))


# --- inference ----------------------------------------------------------------------------


def _placement_confirmed(order: Order) -> bool:
    """Has the order's placement been confirmed (or the order been seen) in the events gathered so far?
    (A cancel "confirmed" does not count: a tracker logs one as its own verdict on a snapshot, see ECHO_US.)"""
    return any(e.event in ("placement-confirmed", "status", "fill") for e in order.events)


def _candidate(orders: list[Order], event: LogEvent) -> tuple[Order, LogEvent] | None:
    """For a placement confirmed by exchange id alone: the order last handled as missing from a snapshot
    whose placement was not yet confirmed and which has no exchange id, not long before."""
    best: tuple[Order, LogEvent] | None = None
    for order in orders:
        if order.exchange_ids or _placement_confirmed(order):
            continue
        misses = [e for e in order.events if e.event == "snapshot-without"]
        if not misses:
            continue
        miss = misses[-1]
        if not 0 <= event.time_us - miss.time_us <= LINK_WINDOW_US:
            continue
        # right after: the latest such "not found"; at one time, the earliest line (first placed, first confirmed)
        if best is None or (miss.time_us, -miss.line_no) > (best[1].time_us, -best[1].line_no):
            best = (order, miss)
    return best


def _assign_orders(events: list[LogEvent]) -> list[Order]:
    orders: list[Order] = []
    by_id: dict[tuple[str, str], Order] = {}

    def attach(order: Order, ids: list[tuple[str, str]]) -> None:
        for kind, ident in ids:
            existing = by_id.get((kind, ident))
            if existing is not None and existing is not order:  # one line names ids of two known orders: merge
                for k, i in [("client", c) for c in existing.client_ids] + [("exchange", x) for x in
                                                                           existing.exchange_ids]:
                    by_id[(k, i)] = order
                    (order.client_ids if k == "client" else order.exchange_ids).append(i)
                order.events.extend(existing.events)
                order.events.sort(key=lambda e: (e.time_us, e.line_no))
                for e in existing.events:
                    e.order = order
                order.link_notes.extend(existing.link_notes)
                orders.remove(existing)
            elif existing is None:
                by_id[(kind, ident)] = order
                (order.client_ids if kind == "client" else order.exchange_ids).append(ident)

    for e in events:
        known = [by_id[i] for i in e.ids if i in by_id]
        order: Order | None = known[0] if known else None
        if order is None and e.event == "placement-confirmed" and all(k == "exchange" for k, _ in e.ids):
            found = _candidate(orders, e)
            if found is not None:
                order, miss = found
                e.link_note = (f"line {e.line_no} confirms the placement of exchange id {e.ids[0][1]} "
                               f"{fmt_duration(e.time_us - miss.time_us)} after line {miss.line_no} found "
                               f"{order.client_ids[0] if order.client_ids else order.label} missing from a "
                               "snapshot before its placement was confirmed: taken to be that order (nothing "
                               "in the log links them but their order and closeness)")
                order.link_notes.append(e.link_note)
        if order is None:
            order = Order(f"#{len(orders) + 1}")
            orders.append(order)
        attach(order, e.ids)
        e.order = order
        order.events.append(e)
    for i, order in enumerate(orders, start=1):
        order.label = f"#{i}"
    return orders


def _mark_echoes_and_repeats(order: Order) -> None:
    last_delivery: LogEvent | None = None
    last_miss: LogEvent | None = None
    sent_since_miss = False
    for e in order.events:
        if e.event == "cancel-sent":
            sent_since_miss = True
            last_delivery = None
            continue
        if (e.event == "cancel-confirmed" and last_miss is not None and not sent_since_miss
                and e.time_us - last_miss.time_us <= ECHO_US):
            e.echo_of = last_miss
            continue
        if (last_delivery is not None and last_delivery.message == e.message and last_delivery.when == e.when
                and e.time_us - last_delivery.time_us <= SAME_DELIVERY_US and last_delivery.event == e.event):
            e.merged_into = last_delivery
            continue
        if e.event == "snapshot-without":
            last_miss = e
            sent_since_miss = False
        last_delivery = e


def _name_for(first: str, when: str, then: str) -> str:
    a = SHORT.get(first, first.lower().replace("_", "-"))
    b = SHORT.get(then, then.lower().replace("_", "-"))
    return f"{a}-before-{b}"


def infer(parsed: ParsedLog, *, max_gap_us: int = DEFAULT_MAX_GAP_US) -> Inference:
    """Orders, ordering constraints and latencies from the matched events. FromLogError when there are none."""
    if not parsed.events:
        raise FromLogError("no recognisable line")
    events = _timeline(list(parsed.events))
    parsed.events = events
    orders = _assign_orders(events)
    skipped: list[str] = []
    grouped: dict[tuple[str, str, str], list[tuple[LogEvent, LogEvent]]] = {}
    cancel_trips: dict[str, list[int]] = {}
    for order in orders:
        _mark_echoes_and_repeats(order)
        prev: LogEvent | None = None
        sent: LogEvent | None = None
        for e in order.events:
            if e.event == "cancel-sent":
                sent, prev = e, None  # what follows answers the bot's own command
                continue
            if not e.delivery:
                continue
            if e.event == "cancel-confirmed" and sent is not None:
                assert e.message is not None
                cancel_trips.setdefault(e.message, []).append(e.time_us - sent.time_us)
                sent = None
            pending_miss = e.event == "snapshot-without" and not _confirmed_before(order, e)
            if prev is not None:
                why = _why_not(prev, e, order, max_gap_us)
                if why:
                    skipped.append(f"{order.label}: line {prev.line_no} -> line {e.line_no}: {why}")
                else:
                    assert prev.message is not None and e.message is not None
                    grouped.setdefault((prev.message, prev.when, e.message), []).append((prev, e))
            if e.event == "snapshot-without" and not pending_miss:
                prev = None  # a snapshot without an order already seen ties nothing to it
                continue
            prev = e
    constraints: list[Constraint] = []
    names: dict[str, int] = {}
    for (first, when, then), pairs in grouped.items():
        gaps = [b.time_us - a.time_us for a, b in pairs]
        gap = sorted(gaps)[(len(gaps) - 1) // 2]  # the median (the lower one of an even count: an observed gap)
        name = _name_for(first, when, then)
        names[name] = names.get(name, 0) + 1
        if names[name] > 1:
            name = f"{name}-{names[name]}"
        constraints.append(Constraint(name, first, when, then, gap, gaps, pairs))
    constraints.sort(key=lambda c: (c.pairs[0][0].time_us, c.pairs[0][0].line_no))
    latencies: dict[str, tuple[int, int]] = {}
    notes: list[str] = []
    for message, trips in sorted(cancel_trips.items()):
        key = message if message == "CANCEL_ORDER_WS_RESPONSE" else "engine.CANCEL_ORDER"
        latencies[key] = (min(trips), max(trips))
        what = ("the cancel reply's latency" if key == "CANCEL_ORDER_WS_RESPONSE"
                else f"the engine's cancel delay (the cancel was confirmed by {message})")
        notes.append(f"{key}: {what}, from {len(trips)} cancel round trip(s) in the log "
                     f"({', '.join(fmt_duration(t) for t in trips[:6])}{', ...' if len(trips) > 6 else ''})")
    return Inference(parsed, orders, constraints, latencies, notes, skipped, max_gap_us)


def _confirmed_before(order: Order, e: LogEvent) -> bool:
    return any(x.event in ("placement-confirmed", "status", "fill", "cancel-confirmed", "cancel-sent")
               and x.echo_of is None and (x.time_us, x.line_no) < (e.time_us, e.line_no) for x in order.events)


def _why_not(a: LogEvent, b: LogEvent, order: Order, max_gap_us: int) -> str:
    gap = b.time_us - a.time_us
    if gap > max_gap_us:
        return f"{fmt_duration(gap)} apart, more than --max-gap {fmt_duration(max_gap_us)}: not one race"
    if b.event == "snapshot-without":
        if any(x.event in ("cancel-sent", "cancel-confirmed") and x.echo_of is None
               and (x.time_us, x.line_no) < (b.time_us, b.line_no) for x in order.events):
            return "a snapshot without the order after its cancel: the order's ordinary end, no race"
        if _confirmed_before(order, b):
            return ("a snapshot without an order already seen: no [[ordering]] says that (omits-order is for an "
                    "order not yet seen); a stale snapshot is a [[perturb]] resend_stale")
        return "another snapshot without the still pending order: the later one is kept as the race's first message"
    if a.message == b.message and a.when == b.when:
        return f"two {a.message}s: messages of one type on one connection stay in order by themselves"
    return ""


# --- the scenario ------------------------------------------------------------------------


def _toml_str(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _quote(line: str, width: int = 160) -> str:
    clean = "".join(ch if ch.isprintable() else " " for ch in line).rstrip()
    return clean if len(clean) <= width else clean[: width - 1] + "…"


def _range(lo: int, hi: int) -> str:
    return fmt_duration(lo) if lo == hi else f"{fmt_duration(lo)}..{fmt_duration(hi)}"


def scenario_text(inference: Inference, *, name: str, log_name: str, duration: str = "30s", seed: int = 7) -> str:
    """The scenario file for an inference: the constraints, benign latencies, a bot like open_orders_race's."""
    parsed = inference.parsed
    out: list[str] = []
    w = out.append
    counts = parsed.counts()
    w(f"# Generated by `valr-replay from-log {log_name}`: {len(parsed.events)} of {parsed.lines} log lines "
      f"recognised ({len(parsed.unmatched)} not).")
    w("#")
    w("# What was inferred. Each recognised line is an event of one order, caused by one wire message:")
    for event in EVENTS:
        if counts.get(event):
            w(f"#   {event:<20} x{counts[event]:<3} {EVENT_HELP[event]}")
    w("# For consecutive events of the same order, the later message is delivered exactly the gap after the")
    w("# earlier one: an [[ordering]] constraint below (one per pair of message types; the median gap when the")
    w("# log shows several). The bot's own cancel gives timing, not a delivery: what follows it answers the")
    w("# cancel. Everything else is benign (latencies 1ms..4ms), so only the constraints make the race.")
    w("#")
    w("# The log, as read (line number, order, event):")
    for e in parsed.events[:SHOW_EVENTS]:
        assert e.order is not None
        tag = e.event
        if e.echo_of is not None:
            tag = f"(echo of line {e.echo_of.line_no})"
        elif e.merged_into is not None:
            tag = f"(as line {e.merged_into.line_no})"
        w(f"#   {e.line_no:>4} {e.order.label:<4} {tag:<20} | {_quote(e.text)}")
    if len(parsed.events) > SHOW_EVENTS:
        w(f"#   ... and {len(parsed.events) - SHOW_EVENTS} more recognised lines (each constraint quotes its own)")
    w("#")
    w("# Orders (ids as the log names them):")
    for order in inference.orders[:SHOW_ORDERS]:
        w(f"#   {order.label}: {order.describe()}")
        for note in order.link_notes:
            for part in _wrap(note, 100):
                w(f"#       {part}")
    if len(inference.orders) > SHOW_ORDERS:
        w(f"#   ... and {len(inference.orders) - SHOW_ORDERS} more")
    if any(e.echo_of is not None for e in parsed.events):
        w("# A cancel confirmed at the instant a snapshot was handled without the order, with no cancel sent, is")
        w("# the tracker's own verdict on that snapshot (an echo), not a message of its own.")
    if inference.skipped:
        w("#")
        w("# Consecutive events that gave no constraint:")
        for s in inference.skipped[:12]:
            for i, part in enumerate(_wrap(s, 100)):
                w(f"#   {'' if i == 0 else '    '}{part}")
        if len(inference.skipped) > 12:
            w(f"#   ... and {len(inference.skipped) - 12} more")
    w("#")
    w("# How to adjust it:")
    w('# - orders = "every" makes each constraint hold for every order of the bot (the log cannot tell which')
    w("#   of the live bot's orders these were); orders = 3 or [3, 7] makes it hold for those orders only.")
    w("# - gap: the time between the two log lines. A log's times are when the bot handled each message, which")
    w("#   can trail the delivery; adjust the gap if the bot was busy.")
    w("# - max_wait (default 2s) bounds how long the later message waits for the first when that does not come")
    w("#   (a reply waiting for a snapshot that omits its order goes as soon as the order is seen).")
    w("# - The ids above are the live bot's; the simulated bot has its own. Constraints name message types.")
    w("# - The [[ordering]] spelling is in scenarios/README.md.")
    w("# - Run it with: valr-replay run FILE --policy naive --policy reconcile")
    w("")
    w("[scenario]")
    w(f"name = {_toml_str(name)}")
    races = ", ".join(c.name for c in inference.constraints) or "no ordering inferred"
    w(f"description = {_toml_str(f'From the log {log_name}: {races}')}")
    w(f'duration = "{duration}"')
    w(f"seed = {seed}")
    w("")
    w("[latency]")
    w('default = "1ms..4ms"')
    engine_cancel = inference.latencies.get("engine.CANCEL_ORDER")
    if engine_cancel is None:
        w('engine = "1ms..4ms"')
    else:
        w(f'engine = {{ default = "1ms..4ms", CANCEL_ORDER = "{_range(*engine_cancel)}" }}   # from the log')
    for key, (lo, hi) in sorted(inference.latencies.items()):
        if key != "engine.CANCEL_ORDER":
            w(f'{key} = "{_range(lo, hi)}"   # from the log')
    for note in inference.latency_notes:
        w(f"# {note}")
    if not inference.constraints:
        w("")
        w("# No ordering constraint could be inferred from this log: see the events above.")
    for c in inference.constraints:
        w("")
        w("[[ordering]]")
        w(f"name = {_toml_str(c.name)}")
        shown = c.pairs[:3]
        for a, b in shown:
            w(f"# {_quote(a.text)}")
            w(f"# {_quote(b.text)}")
            label = a.order.label if a.order else "?"
            w(f"#   ({label}: {a.event} -> {b.event}, {fmt_duration(b.time_us - a.time_us)})")
        if len(c.pairs) > len(shown):
            w(f"# ... and {len(c.pairs) - len(shown)} more such pairs in the log")
        if len(set(c.gaps_us)) > 1:
            w(f"# gaps seen: {', '.join(fmt_duration(g) for g in sorted(c.gaps_us)[:10])}"
              f"{', ...' if len(c.gaps_us) > 10 else ''}; the median is used")
        w(f'first = "{c.first}"')
        if c.first_when != "mentions-order":
            w(f'first_when = "{c.first_when}"')
        w(f'then = "{c.then}"')
        w(f'gap = "{fmt_duration(c.gap_us)}"')
        w('orders = "every"')
    w("")
    w("[bot]")
    w('connector = "reference"')
    w('policy = "naive"')
    w('pair = "BTCZAR"')
    w('order_refresh_time = "1s"')
    w("bid_spread = 0.003")
    w("ask_spread = 0.003")
    w('order_amount = "0.001"')
    w('filled_order_delay = "1s"')
    w("")
    w("[expect]")
    w("max_open_orders = 2                     # one bid and one ask ...")
    w("open_orders_slack = 2                   # ... plus the next pair while a refresh hands over")
    w('grace = "2s"')
    w("false_cancels = 0")
    w("orphans_at_end = 0")
    w("nothing_open_after_shutdown = true")
    w("")
    race = any(c.first == "OPEN_ORDERS_UPDATE" and c.first_when == "omits-order" and c.then == "PLACE_LIMIT_WS_RESPONSE"
               for c in inference.constraints)
    w("# Run `valr-replay run FILE --policy naive` and declare what the buggy handler breaks, e.g.")
    if race:
        w("# (the open-orders race: a false cancel, then the late placement reply reopens the order)")
        w("# [expect.policy.naive]")
        w(f"# violated = [{', '.join(_toml_str(v) for v in RACE_VIOLATIONS)}]")
    else:
        w("# [expect.policy.naive]")
        w('# violated = ["false_cancels"]')
    return "\n".join(out) + "\n"


def _wrap(text: str, width: int) -> list[str]:
    words = text.split()
    lines: list[str] = []
    cur = ""
    for word in words:
        if cur and len(cur) + 1 + len(word) > width:
            lines.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}" if cur else word
    if cur:
        lines.append(cur)
    return lines


def from_log(lines: Iterable[str], patterns: Sequence[Pattern], *, name: str, log_name: str,
             max_gap_us: int = DEFAULT_MAX_GAP_US) -> tuple[str, Inference]:
    """Lines in, scenario text out (with the inference behind it). FromLogError when nothing is recognisable."""
    parsed = parse_log(lines, patterns)
    if not parsed.events:
        raise FromLogError(f"{log_name}: no recognisable line ({parsed.lines} non-blank lines, none matched a pattern)")
    inference = infer(parsed, max_gap_us=max_gap_us)
    return scenario_text(inference, name=name, log_name=log_name), inference


def scenario_name(out_stem: str) -> str:
    """A scenario name from an output file's stem: ``from_log_seed_report`` -> ``from-log-seed-report``."""
    name = re.sub(r"[^A-Za-z0-9]+", "-", out_stem).strip("-").lower()
    return name or "from-log"


__all__ = [
    "EVENTS", "EVENT_HELP", "FromLogError", "Inference", "LogEvent", "Order", "ParsedLog", "Pattern", "PatternError",
    "builtin_patterns", "fmt_duration", "from_log", "infer", "load_pattern_file", "parse_log", "parse_patterns",
    "parse_time", "scenario_name", "scenario_text",
]
