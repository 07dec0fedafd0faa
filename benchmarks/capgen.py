"""A synthetic capture of any size, generated fast (for replay throughput and memory).

The capture looks like a market-making session recorded by the proxy: one trade connection
with market data (book updates with 20 levels a side, trades, summaries: ~20 messages per
recorded second) and one account connection where, every recorded second, the bot places
two orders (``PLACE_LIMIT_ORDER`` out, ``PLACE_LIMIT_WS_RESPONSE`` in) and gets an
``ORDER_STATUS_UPDATE`` and an ``OPEN_ORDERS_UPDATE``. Lines are built from a pool of
pre-serialised messages, so generation runs at disk speed.
"""

from __future__ import annotations

import gzip
import json
from itertools import islice
from pathlib import Path

from replay.capture import dumps, make_header
from replay.clock import iso_ms

from .common import synthetic_messages

EPOCH_MS = 1_767_225_600_000
MARKET_PER_S = 20
POOL = 500


def _line(t_ns: int, conn: str, direction: str, typ: str, data: str) -> str:
    wall = iso_ms(EPOCH_MS + t_ns // 1_000_000)
    return (f'{{"t":{t_ns},"wall":"{wall}","conn":"{conn}","dir":"{direction}","kind":"ws",'
            f'"type":"{typ}","data":{data}}}\n')


def generate(path: str | Path, target_bytes: int, *, seed: int = 11) -> dict[str, int]:
    """Write a capture of about ``target_bytes`` (uncompressed; ``.gz`` suffix compresses).
    Returns counts: records, frames_in (server -> client WebSocket frames), market_frames
    (those of them on the trade connection), bytes."""
    path = Path(path)
    msgs = list(islice(synthetic_messages(seed), POOL * 3))
    market = [(m["type"], json.dumps(m, separators=(",", ":")))
              for m in msgs if m["type"] not in ("OPEN_ORDERS_UPDATE", "ORDER_STATUS_UPDATE")][:POOL]
    account = [(m["type"], json.dumps(m, separators=(",", ":")))
               for m in msgs if m["type"] in ("OPEN_ORDERS_UPDATE", "ORDER_STATUS_UPDATE")][:POOL]
    opener = gzip.open if path.suffix == ".gz" else open
    header = dumps(make_header("proxy", upstream="https://api.valr.com", pairs=["BTCZAR", "ETHZAR"])) + "\n"
    records = frames_in = n_market = 0
    written = 0
    step = 1_000_000_000 // MARKET_PER_S
    with opener(path, "wt", encoding="utf-8") as fh:  # type: ignore[operator]
        for line in (header,
                     _line(0, "account-1", "local", "CONNECT", '{"path":"/ws/account","code":null}'),
                     _line(0, "trade-1", "local", "CONNECT", '{"path":"/ws/trade","code":null}')):
            fh.write(line)
            written += len(line)
        t = 0
        i = 0
        second = 0
        buf: list[str] = []
        while written < target_bytes:
            t += step
            i += 1
            typ, data = market[i % len(market)]
            buf.append(_line(t, "trade-1", "in", typ, data))
            frames_in += 1
            n_market += 1
            if i % MARKET_PER_S == 0:
                second += 1
                for k, side in enumerate(("BUY", "SELL")):
                    cid = f"bot-{second}-{k}"
                    req = json.dumps({"type": "PLACE_LIMIT_ORDER", "clientMsgId": cid, "payload": {
                        "side": side, "quantity": "0.001", "price": str(1_200_000 + (k * 2 - 1) * 3600),
                        "pair": "BTCZAR", "postOnly": True, "customerOrderId": cid}}, separators=(",", ":"))
                    buf.append(_line(t + 1000 * k, "account-1", "out", "PLACE_LIMIT_ORDER", req))
                    rep = json.dumps({"type": "PLACE_LIMIT_WS_RESPONSE", "clientMsgId": cid, "data": {
                        "orderId": f"0192{second:08x}-{k}", "customerOrderId": cid}}, separators=(",", ":"))
                    buf.append(_line(t + 5_000_000 + k, "account-1", "in", "PLACE_LIMIT_WS_RESPONSE", rep))
                    frames_in += 1
                for j in range(2):
                    typ2, data2 = account[(2 * second + j) % len(account)]
                    buf.append(_line(t + 8_000_000 + j, "account-1", "in", typ2, data2))
                    frames_in += 1
            if len(buf) >= 256:
                chunk = "".join(buf)
                fh.write(chunk)
                written += len(chunk)
                records += len(buf)
                buf.clear()
        if buf:
            chunk = "".join(buf)
            fh.write(chunk)
            written += len(chunk)
            records += len(buf)
    return {"records": records + 2, "frames_in": frames_in, "market_frames": n_market, "bytes": written}
