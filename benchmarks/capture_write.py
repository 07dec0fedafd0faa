"""``capture_write``: messages/s and MB/s that ``CaptureWriter`` writes, plain and gzip.

Baseline: the same records, serialised beforehand, written as raw lines with the same
per-line durability (plain: ``write`` + ``flush`` per line; gzip: deflate + ``Z_SYNC_FLUSH``
per line), i.e. what the disk and zlib allow. The writer additionally scrubs (a deep copy)
and serialises every record. Rounds alternate writer / baseline; the median round counts.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import zlib
from itertools import islice
from pathlib import Path

from replay.capture import CaptureWriter, dumps

from .common import Figure, capture_records, pick, ratio


def _writer_round(path: Path, records: list[dict]) -> float:
    t0 = time.perf_counter()
    with CaptureWriter(path, {"source": "simulated", "pairs": ["BTCZAR"]}) as w:
        for rec in records:
            w.write(rec)
    return time.perf_counter() - t0


def _raw_round(path: Path, lines: list[bytes], gz: bool) -> float:
    t0 = time.perf_counter()
    with open(path, "wb") as fh:
        if gz:
            z = zlib.compressobj(6, zlib.DEFLATED, 31)
            for line in lines:
                fh.write(z.compress(line) + z.flush(zlib.Z_SYNC_FLUSH))
                fh.flush()
            fh.write(z.flush(zlib.Z_FINISH))
        else:
            for line in lines:
                fh.write(line)
                fh.flush()
    return time.perf_counter() - t0


def measure(size: str = "quick") -> list[Figure]:
    n = pick(size, 500, 2_000, 100_000)
    rounds = pick(size, 1, 3, 5)
    records = list(islice(capture_records(seed=3), n))
    lines = [(dumps(r) + "\n").encode() for r in records]
    mb = sum(len(x) for x in lines) / 1e6
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-capture-") as tmp:
        for gz in (False, True):
            suffix = ".jsonl.gz" if gz else ".jsonl"
            w_times, b_times = [], []
            for _ in range(rounds):
                w_times.append(_writer_round(Path(tmp) / f"w{suffix}", records))
                b_times.append(_raw_round(Path(tmp) / f"b{suffix}", lines, gz))
            w, b = statistics.median(w_times), statistics.median(b_times)
            kind = "gzip" if gz else "plain"
            note = (f"{n} records, {mb / n * 1000:.2f} KB each; baseline: raw pre-serialised lines, "
                    f"same per-line flush{' + zlib sync flush' if gz else ''}")
            for unit, v, bv in (("msg/s", n / w, n / b), ("MB/s", mb / w, mb / b)):
                figures.append(Figure("capture_write", v, unit, bv, ratio(v, bv), "report", None,
                                      variant=f"{kind} {unit}", note=note,
                                      details={"records": n, "megabytes": round(mb, 3), "rounds": rounds}))
    return figures
