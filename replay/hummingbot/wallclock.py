"""Present the run's clock as the wall clock to code that reads ``time.time()``.

Hummingbot's ``Clock``, its connectors, throttler and order tracker read the time with
``time.time()`` and ``time.perf_counter()``, looked up on the ``time`` module at call time
(in ``.py`` and compiled ``.pyx`` modules alike). Under a virtual-time loop those reads must
follow the loop, or Hummingbot's ``Clock`` ticks the same second many times and every request
is signed with a timestamp the exchange's clock calls stale. So, for the length of a run:

- ``time.time()`` returns ``clock.epoch_s()``: the exchange's epoch origin plus loop time, so a
  signature stamped by the connector and the exchange's own timestamps agree to the millisecond;
- ``time.perf_counter()`` returns loop time (``TimeSynchronizer``'s offset arithmetic, the
  order-book tracker's staleness checks).

``time.monotonic`` is left alone: asyncio, looptime and aiohttp read it for real-time work.
``cachetools.TTLCache`` binds ``time.monotonic`` when the cache is made; :func:`loop_timer`
gives such a cache the loop's clock instead (the tracker's 30 s cache of finished orders).

Patching the ``time`` module is a plain attribute swap, undone on exit; freezegun would do
the same job more slowly and also rewrites ``perf_counter`` references in code that measures
the run from outside, which is why it is not used here.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

from replay.clock import Clock

#: The real clocks, for code that measures the run itself while the patch is in place.
real_time: Callable[[], float] = time.time
real_perf_counter: Callable[[], float] = time.perf_counter


@contextlib.contextmanager
def presented_as_wall_clock(clock: Clock) -> Iterator[None]:
    """Within the block, ``time.time()`` and ``time.perf_counter()`` read ``clock``."""
    saved = (time.time, time.perf_counter)
    loop = clock.loop
    time.time = clock.epoch_s
    time.perf_counter = loop.time
    try:
        yield
    finally:
        time.time, time.perf_counter = saved


def loop_timer(clock: Clock) -> Callable[[], float]:
    """A monotonic timer on the run's clock, for caches that take a ``timer``."""
    return clock.loop.time
