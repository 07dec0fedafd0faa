#!/usr/bin/env python3
"""Regenerate the shipped captures (deterministic: virtual time, fixed seeds, fixed epoch).

    python tools/make_captures.py [--out captures]

* ``captures/reference_session.jsonl``: a reference-connector session (policy ``reconcile``)
  recorded through the recording proxy (``RecordingProxy``) in front of the fake server
  (header: source ``proxy``, upstream = the fake server's URL; its port is ephemeral, so the
  header's ``upstream`` is rewritten to ``http://127.0.0.1:0`` to keep the file identical
  from one regeneration to the next).
* ``captures/seed_log.jsonl``: built to match the original log. Fixed latencies make every
  placement pair race: the bid and the ask reach the engine 1 ms after they are sent, the
  ``OPEN_ORDERS_UPDATE`` built when the bid reached the book (without the ask) goes out 2 ms
  later, and the ask's ``PLACE_LIMIT_WS_RESPONSE`` 8 ms after the send: the snapshot lacking the
  just-placed ask is delivered 5 ms before that ask's placement reply. The session is the one a
  correct client (policy ``reconcile``) has; it is the server's trace (``simulated``), with the
  exchange's own events (the truth the checks judge by) and without the client's and the
  strategy's own records. The script checks the 5 ms race is in the file.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from replay.capture import CaptureWriter, read_capture  # noqa: E402
from replay.runner import run_scenario  # noqa: E402
from replay.scenario import loads_scenario  # noqa: E402

BOT = """
[bot]
connector = "reference"
policy = "reconcile"
pair = "BTCZAR"
order_refresh_time = "1s"
bid_spread = 0.003
ask_spread = 0.003
order_amount = "0.001"
filled_order_delay = "1s"
"""

REFERENCE = """
[scenario]
name = "reference-session"
duration = "30s"
seed = 11

[latency]
default = "1ms..4ms"
engine = "1ms..3ms"
rest = "5ms..15ms"
""" + BOT

SEED_LOG = """
[scenario]
name = "seed-log"
duration = "4s"
seed = 5

[latency]
default = "1ms"
engine = "1ms"
OPEN_ORDERS_UPDATE = "2ms"
PLACE_LIMIT_WS_RESPONSE = "8ms"
rest = "5ms"
""" + BOT

KEEP_KINDS = ("ws", "rest", "event", "meta")
# exchange events kept in the seed log: the account's truth (not the background market's book)
KEEP_EVENTS = ("OrderStatusChanged", "OpenOrdersChanged", "OrderProcessed", "OrderFailed", "CancelFailed",
               "BalanceChanged", "AccountTrade", "CommandSubmitted")
FIXED_CREATED_AT = "2026-01-01T00:00:00.000Z"  # the runner's simulated epoch


_PORT = re.compile(r"127\.0\.0\.1:\d+")


def _normalise(value, wall: str):
    """Ephemeral ports -> 0, HTTP Date headers -> the record's own (virtual) wall time."""
    if isinstance(value, str):
        return _PORT.sub("127.0.0.1:0", value)
    if isinstance(value, list):
        return [_normalise(v, wall) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k.lower() == "date" and isinstance(v, str):
                dt = datetime.strptime(wall, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
                v = format_datetime(dt, usegmt=True)
            out[k] = _normalise(v, wall)
        return out
    return value


def _rewrite(path: Path, header_update: dict, keep=lambda r: True) -> None:
    """Rewrite a capture so that regenerating it gives the same bytes."""
    header, records, problems = read_capture(path)
    if problems:
        raise SystemExit(f"{path}: {problems[0]}")
    header.update(header_update)
    header["created_at"] = FIXED_CREATED_AT
    path.unlink()
    with CaptureWriter(path, _normalise(header, FIXED_CREATED_AT)) as w:
        for r in records:
            if keep(r):
                w.write(_normalise(r, r.get("wall") or FIXED_CREATED_AT))


def race_gaps_ms(records: list[dict]) -> list[float]:
    """For each OPEN_ORDERS_UPDATE lacking an order whose PLACE_LIMIT_WS_RESPONSE comes later:
    how long before that reply it was delivered."""
    gaps = []
    inbound = [r for r in records if r["kind"] == "ws" and r["dir"] == "in"]
    for i, r in enumerate(inbound):
        if r["type"] != "OPEN_ORDERS_UPDATE":
            continue
        listed = {o.get("orderId") for o in r["data"].get("data") or []}
        for later in inbound[i + 1:]:
            if later["type"] == "PLACE_LIMIT_WS_RESPONSE" and later["data"]["data"].get("orderId") not in listed:
                gaps.append((later["t"] - r["t"]) / 1e6)
                break
            if later["t"] - r["t"] > 50e6:
                break
    return gaps


def make_reference(out: Path) -> Path:
    path = out / "reference_session.jsonl"
    path.unlink(missing_ok=True)
    result = run_scenario(loads_scenario(REFERENCE, "tools/make_captures.py:REFERENCE"), record_proxy=path)
    if result.violated:
        raise SystemExit(f"reference session violated {result.violated}")
    _rewrite(path, {})  # upstream http://127.0.0.1:<port> -> :0
    return path


def make_seed_log(out: Path) -> Path:
    path = out / "seed_log.jsonl"
    path.unlink(missing_ok=True)
    result = run_scenario(loads_scenario(SEED_LOG, "tools/make_captures.py:SEED_LOG"), trace_path=path)
    if result.violated:
        raise SystemExit(f"seed-log session violated {result.violated}")
    _rewrite(path, {"description": "OPEN_ORDERS_UPDATE without the just-placed order, delivered 5 ms "
                                   "before that order's placement reply (policy reconcile session)"},
             keep=lambda r: r["kind"] in KEEP_KINDS and (r["kind"] != "event" or r["type"] in KEEP_EVENTS))
    _, records, _ = read_capture(path)
    gaps = race_gaps_ms(records)
    if not any(4.5 <= g <= 5.5 for g in gaps):
        raise SystemExit(f"{path}: the 5 ms race is not in the capture (gaps {gaps})")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "captures")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for make in (make_reference, make_seed_log):
        p = make(args.out)
        print(json.dumps({"capture": str(p), "bytes": p.stat().st_size}))


if __name__ == "__main__":
    main()
