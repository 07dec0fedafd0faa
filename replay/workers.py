"""Where many short runs execute: in this process, in local worker processes, or on a Dask cluster.

A seed sweep (``run --seeds``) and the schedule explorer (``explore``) both hand out independent
runs and collect their results as they finish; the explorer decides what to submit next from what
came back, so the interface is submit-one / take-the-next-finished rather than a fixed ``map``.

* ``workers=1``: in this process, one at a time (a debugger and a profiler see everything);
* ``workers=N`` (default: the cores this process may use): ``concurrent.futures`` worker processes,
  started with ``forkserver`` so that a thread in the parent (rich's live display) is never forked;
* ``dask="tcp://scheduler:8786"`` (or a ``distributed.Client``): Dask's ``distributed`` schedules the
  runs on its cluster. We use its scheduler rather than writing one: it already does placement,
  retries on lost workers and back pressure across machines.

A task is a module-level function and picklable arguments; a worker imports the function by name, so
every machine of a Dask cluster needs the same ``valr-replay`` installed (and the scenario files at
the same paths, or the Scenario object passed by value, as the explorer and the sweep do).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import multiprocessing
import os
from collections import deque
from typing import Any, Callable


def default_workers() -> int:
    """The number of cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class TaskFailed(RuntimeError):
    """A task raised: ``ticket`` says which, ``__cause__`` (or ``text`` from a remote worker) says why."""

    def __init__(self, ticket: int, error: BaseException):
        super().__init__(f"task {ticket} failed: {type(error).__name__}: {error}")
        self.ticket = ticket
        self.error = error


class RunPool:
    """Submit ``fn(*args)`` tasks; take results back in the order they finish.

    Use as a context manager: leaving it cancels what has not started and shuts the workers down.
    """

    def __init__(self, workers: int | None = None, dask: Any = None):
        self.dask_address = dask if isinstance(dask, str) else None
        self._tickets = 0
        self._inline: deque[tuple[int, Any, BaseException | None]] = deque()
        self._local: dict[cf.Future, int] = {}
        self._executor: cf.ProcessPoolExecutor | None = None
        self._client: Any = None
        self._own_client = False
        self._dask_done: Any = None  # distributed.as_completed
        self._dask: dict[str, tuple[int, Any]] = {}  # future key -> (ticket, future)
        if dask is not None:
            try:
                import distributed
            except ImportError:
                raise RuntimeError("--dask needs Dask's distributed package: pip install 'valr-replay[dask]'") from None
            if isinstance(dask, str):
                self._client = distributed.Client(dask, set_as_default=False)
                self._own_client = True
            else:
                self._client = dask
            # on the client's own loop: as_completed's default is the default client's, which is
            # none (set_as_default=False above), or another client's
            self._dask_done = distributed.as_completed([], loop=self._client.loop, with_results=False)
            self.workers = sum(self._client.nthreads().values()) or 1
        else:
            self.workers = workers if workers is not None else default_workers()
            if self.workers < 1:
                raise ValueError(f"workers must be at least 1, got {self.workers}")
            if self.workers > 1:
                self._executor = cf.ProcessPoolExecutor(
                    max_workers=self.workers, mp_context=multiprocessing.get_context("forkserver"))

    @property
    def where(self) -> str:
        """Where the tasks run, for a progress line: ``in-process``, ``4 local processes``, ``dask tcp://...``."""
        if self._client is not None:
            return f"dask {self._client.scheduler.address} ({self.workers} threads)"
        return "in-process" if self.workers == 1 else f"{self.workers} local processes"

    @property
    def pending(self) -> int:
        """Tasks submitted and not yet taken back with :meth:`next_done`."""
        return len(self._inline) + len(self._local) + len(self._dask)

    def submit(self, fn: Callable[..., Any], *args: Any) -> int:
        """Queue ``fn(*args)``; returns its ticket. With one in-process worker it runs now."""
        self._tickets += 1
        ticket = self._tickets
        if self._client is not None:
            future = self._client.submit(fn, *args, pure=False)
            self._dask[future.key] = (ticket, future)
            self._dask_done.add(future)
        elif self._executor is not None:
            self._local[self._executor.submit(fn, *args)] = ticket
        else:
            try:
                self._inline.append((ticket, fn(*args), None))
            except Exception as exc:  # noqa: BLE001 - handed back to the caller by next_done
                self._inline.append((ticket, None, exc))
        return ticket

    def next_done(self) -> tuple[int, Any]:
        """Block until a task finishes; return ``(ticket, result)``. A task that raised raises
        :class:`TaskFailed`. Calling it with nothing pending is a programming error."""
        if self._inline:
            ticket, value, error = self._inline.popleft()
        elif self._local:
            done, _ = cf.wait(self._local, return_when=cf.FIRST_COMPLETED)
            future = min(done, key=lambda f: self._local[f])
            ticket = self._local.pop(future)
            error = future.exception()
            value = None if error is not None else future.result()
        elif self._dask:
            remote: Any = next(self._dask_done)
            ticket, _ = self._dask.pop(remote.key)
            value, error = None, None
            try:  # a task that raised raises here; so does one cancelled or lost (whose status is not "error")
                value = remote.result()
            except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 - handed back as TaskFailed
                error = exc
        else:
            raise RuntimeError("next_done: no task pending")
        if error is not None:
            raise TaskFailed(ticket, error) from error
        return ticket, value

    def close(self) -> None:
        """Cancel what has not started, wait for what has, and stop the workers."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
            self._local.clear()
        if self._client is not None:
            if self._dask:
                self._client.cancel([future for _, future in self._dask.values()])
            self._dask.clear()
            if self._own_client:
                self._client.close()
            self._client = None
        self._inline.clear()

    def __enter__(self) -> "RunPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
