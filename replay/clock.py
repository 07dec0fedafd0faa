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


class Clock:
    """Loop time as monotonic seconds, nanoseconds since start, and epoch milliseconds."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, *, epoch_origin_ms: int | None = None):
        self._loop = loop
        self._start: float | None = None
        self._epoch_origin_ms = epoch_origin_ms

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


def iso_ms(epoch_ms: int) -> str:
    """VALR's timestamp spelling: ISO 8601, UTC, millisecond precision, trailing Z."""
    dt = datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"
