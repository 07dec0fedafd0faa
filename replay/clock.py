"""One clock per run, shared by the fake server, the connector and the trace.

The clock reads the running event loop's ``time()``. Under a normal loop that is real
monotonic time; under a virtual-time loop (``looptime``) it is virtual time, so a
60 s scenario runs as fast as the CPU allows without changing what happens.
Wall-clock (epoch) time is derived from the loop time and a fixed epoch origin, so a
run with a fixed origin produces the same timestamps every time.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping


class Clock:
    """Loop time as monotonic seconds, nanoseconds since start, and epoch milliseconds."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, *, epoch_origin_ms: int | None = None):
        self._loop = loop
        self._start: float | None = None
        self._epoch_origin_ms = epoch_origin_ms
        self._last_stamp: tuple[float, tuple[int, str]] | None = None  # (loop time, stamp()'s answer)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _started(self) -> float:
        if self._start is None:
            self._start = self.loop.time()
            if self._epoch_origin_ms is None:
                self._epoch_origin_ms = int(time.time() * 1000)
        return self._start

    def monotonic(self) -> float:
        """Seconds on the loop's clock (virtual under looptime)."""
        self._started()
        return self.loop.time()

    def elapsed_ns(self) -> int:
        """Nanoseconds since the clock was first read."""
        start = self._started()
        return int(round((self.loop.time() - start) * 1e9))

    def epoch_ms(self) -> int:
        """Milliseconds since the Unix epoch, as the exchange would stamp them."""
        start = self._started()
        assert self._epoch_origin_ms is not None
        return self._epoch_origin_ms + int((self.loop.time() - start) * 1000)

    def epoch_s(self) -> float:
        """Seconds since the Unix epoch as a float: what ``time.time()`` reads on this clock.

        ``int(epoch_s() * 1000)`` agrees with :meth:`epoch_ms` (both count from the same origin),
        so a connector that stamps requests with ``time.time()`` while the run presents this clock
        as the wall clock (replay/hummingbot/wallclock.py) and the exchange agree to the ms."""
        start = self._started()
        assert self._epoch_origin_ms is not None  # set by _started()
        return self._epoch_origin_ms / 1000 + (self.loop.time() - start)

    @property
    def is_virtual(self) -> bool:
        """True on a virtual-time loop (looptime with time compaction on)."""
        return bool(getattr(self.loop, "looptime_on", False))

    def wall_iso(self) -> str:
        return iso_ms(self.epoch_ms())

    def stamp(self) -> tuple[int, str]:
        """``(elapsed_ns(), wall_iso())`` from one reading of the loop's clock (a trace record's stamps;
        records come in bursts at one time: the last reading's stamps are kept)."""
        start = self._started()
        now = self.loop.time()
        last = self._last_stamp
        if last is not None and last[0] == now:
            return last[1]
        since = now - start
        assert self._epoch_origin_ms is not None  # set by _started()
        stamps = int(round(since * 1e9)), iso_ms(self._epoch_origin_ms + int(since * 1000))
        self._last_stamp = (now, stamps)
        return stamps


#: ``"%Y-%m-%dT%H:%M:%S."`` of recent whole epoch seconds: a run stamps thousands of records and
#: messages per simulated second, and strftime is most of the cost of a stamp
_ISO_SECONDS: dict[int, str] = {}
_ISO_SECONDS_MAX = 4096


def iso_ms(epoch_ms: int) -> str:
    """VALR's timestamp spelling: ISO 8601, UTC, millisecond precision, trailing Z."""
    second, ms = divmod(epoch_ms, 1000)
    head = _ISO_SECONDS.get(second)
    if head is None:
        if len(_ISO_SECONDS) >= _ISO_SECONDS_MAX:
            _ISO_SECONDS.clear()
        head = _ISO_SECONDS[second] = datetime.fromtimestamp(second, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
    return f"{head}{ms:03d}Z"


def wall_ms(value: object) -> int | None:
    """Epoch ms of an ISO 8601 wall time with its zone, as traces write it (``...T16:07:28.971Z``);
    None for anything else (the inverse of :func:`iso_ms`)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return round(dt.timestamp() * 1000)


def trace_origin_ns(header: Mapping[str, Any], records: Iterable[Mapping[str, Any]]) -> int | None:
    """Epoch ns of the trace's ``t = 0``.

    A record's ``wall`` is the origin plus its elapsed time truncated to whole ms, so
    ``wall - t`` is at most the origin, and reaches it for a record just past a ms boundary:
    the largest value over the records is the origin (to within microseconds). Without
    ``wall`` fields, the header's ``created_at`` (ms) stands in."""
    best: int | None = None
    for rec in records:
        ms = wall_ms(rec.get("wall"))
        if ms is None:
            continue
        value = ms * 1_000_000 - int(rec["t"])
        if best is None or value > best:
            best = value
    if best is None:
        ms = wall_ms(header.get("created_at"))
        best = None if ms is None else ms * 1_000_000
    return best
