"""Shared pieces: the ``Figure`` record, sizes (tiny / quick / full) and small statistics."""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

SIZES = ("tiny", "quick", "full")


@dataclass
class Figure:
    """One row of the table / one object of the JSON list.

    ``value`` is the measured path, ``baseline`` the same quantity on the bare stack
    underneath, ``ratio`` = value / baseline. ``met`` is None when the row is informational
    (no goal). ``variant`` distinguishes rows of one figure (``p99 @ 5k/s``).
    """

    name: str
    value: float | None
    unit: str
    baseline: float | None
    ratio: float | None
    goal: str
    met: bool | None
    variant: str = ""
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("value", "baseline", "ratio"):
            v = out[key]
            if isinstance(v, float) and not math.isfinite(v):
                out[key] = None
        return out


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


def percentile(samples: list[float], p: float) -> float:
    """The p-th percentile (0..100), nearest-rank on sorted samples; nan when empty."""
    if not samples:
        return float("nan")
    s = sorted(samples)
    k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
    return s[k]


def pick(size: str, tiny: Any, quick: Any, full: Any) -> Any:
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    return {"tiny": tiny, "quick": quick, "full": full}[size]


# --- synthetic VALR traffic ------------------------------------------------------------------

PAIRS = ("BTCZAR", "ETHZAR")


def _levels(rng: random.Random, mid: float, side: int, n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        price = mid * (1 + side * 0.0005 * (i + 1))
        out.append({"side": "sell" if side > 0 else "buy", "quantity": f"{rng.uniform(0.001, 2):.8f}",
                    "price": f"{price:.0f}", "currencyPair": "BTCZAR", "orderCount": rng.randint(1, 9)})
    return out


def synthetic_messages(seed: int = 1) -> Iterator[dict[str, Any]]:
    """An endless stream of VALR-shaped stream messages: book updates (20 levels a side,
    ~3 KB), trades, market summaries, account updates (open orders, order status)."""
    rng = random.Random(seed)
    mid = 1_200_000.0
    seq = 0
    while True:
        seq += 1
        mid *= 1 + rng.uniform(-0.0002, 0.0002)
        pair = PAIRS[seq % 2]
        r = rng.random()
        if r < 0.45:
            yield {"type": "AGGREGATED_ORDERBOOK_UPDATE", "currencyPairSymbol": pair, "data": {
                "Asks": _levels(rng, mid, 1, 20), "Bids": _levels(rng, mid, -1, 20),
                "LastChange": 1767225600000 + seq, "SequenceNumber": seq}}
        elif r < 0.65:
            yield {"type": "NEW_TRADE", "currencyPairSymbol": pair, "data": {
                "price": f"{mid:.0f}", "quantity": f"{rng.uniform(0.0001, 0.5):.8f}", "currencyPair": pair,
                "tradedAt": "2026-01-01T00:00:00.000Z", "takerSide": rng.choice(("buy", "sell")), "id": f"t{seq}"}}
        elif r < 0.8:
            yield {"type": "MARKET_SUMMARY_UPDATE", "currencyPairSymbol": pair, "data": {
                "currencyPairSymbol": pair, "askPrice": f"{mid * 1.0005:.0f}", "bidPrice": f"{mid * 0.9995:.0f}",
                "lastTradedPrice": f"{mid:.0f}", "baseVolume": f"{rng.uniform(1, 100):.8f}",
                "changeFromPrevious": "0.12", "created": "2026-01-01T00:00:00.000Z"}}
        elif r < 0.9:
            yield {"type": "OPEN_ORDERS_UPDATE", "data": [
                {"orderId": f"0192{seq:08x}-{k}", "side": "buy" if k % 2 else "sell", "quantity": "0.001",
                 "price": f"{mid * (1 + (0.003 if k % 2 else -0.003)):.0f}", "currencyPair": pair,
                 "createdAt": "2026-01-01T00:00:00.000Z", "originalQuantity": "0.001",
                 "filledPercentage": "0.00", "customerOrderId": f"bot-{seq}-{k}", "type": "post-only limit"}
                for k in range(2)]}
        else:
            yield {"type": "ORDER_STATUS_UPDATE", "data": {
                "orderId": f"0192{seq:08x}", "orderStatusType": rng.choice(("Placed", "Cancelled", "Filled")),
                "currencyPair": pair, "originalPrice": f"{mid:.0f}", "remainingQuantity": "0.001",
                "originalQuantity": "0.001", "orderSide": "buy", "orderType": "post-only limit",
                "failedReason": "", "orderUpdatedAt": "2026-01-01T00:00:00.000Z",
                "orderCreatedAt": "2026-01-01T00:00:00.000Z", "customerOrderId": f"bot-{seq}"}}


def capture_records(seed: int = 1, step_ns: int = 1_000_000) -> Iterator[dict[str, Any]]:
    """Capture records (``dir`` ``in``, ``kind`` ``ws``) wrapping ``synthetic_messages``: account
    messages on ``account-1``, market data on ``trade-1``, ``step_ns`` apart."""
    t = 0
    for msg in synthetic_messages(seed):
        t += step_ns
        conn = "account-1" if msg["type"] in ("OPEN_ORDERS_UPDATE", "ORDER_STATUS_UPDATE") else "trade-1"
        ms = 1767225600000 + t // 1_000_000
        yield {"t": t, "wall": _iso(ms), "conn": conn, "dir": "in", "kind": "ws", "type": msg["type"], "data": msg}


def _iso(ms: int) -> str:
    from replay.clock import iso_ms

    return iso_ms(ms)


def frames(n: int, seed: int = 1) -> list[str]:
    """``n`` pre-serialised synthetic messages (as the server would put them on the wire)."""
    out = []
    for msg in synthetic_messages(seed):
        out.append(json.dumps(msg, separators=(",", ":")))
        if len(out) >= n:
            break
    return out
