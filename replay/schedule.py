"""When each outbound message is delivered (pure, seeded).

First cut: the interface the server's pumps drive, with zero latency and no
perturbations. The latency model and perturbations are filled in with the race issue.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from sortedcontainers import SortedList


@dataclass(frozen=True, order=True)
class Delivery:
    deliver_at: float
    seq: int
    conn: str = field(compare=False)
    kind: str = field(compare=False)  # "message" or "disconnect"
    msg_type: str = field(compare=False)
    message: Any = field(compare=False)


@dataclass(frozen=True)
class HttpFault:
    """Answer a REST request with ``status`` (429, 5xx) or, with status 0, never answer (a timeout)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class DeliverySchedule:
    """Holds outbound messages until their delivery time. Times are loop seconds."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._queue: SortedList = SortedList()
        self._seq = itertools.count()

    # --- outbound WebSocket messages -------------------------------------------------
    def push(self, now: float, conn: str, msg_type: str, message: Any) -> None:
        self._queue.add(Delivery(now, next(self._seq), conn, "message", msg_type, message))

    def pop_due(self, now: float) -> list[Delivery]:
        due: list[Delivery] = []
        while self._queue and self._queue[0].deliver_at <= now:
            due.append(self._queue.pop(0))
        return due

    def next_at(self) -> float | None:
        return self._queue[0].deliver_at if self._queue else None

    def connection_opened(self, now: float, conn: str) -> None:
        """A WebSocket connection started; timed disconnect perturbations hook in here."""

    def connection_closed(self, conn: str) -> None:
        """Forget what is still queued for a closed connection."""
        self._queue = SortedList(d for d in self._queue if d.conn != conn)

    # --- REST and the matching engine -------------------------------------------------
    def http_fault(self, now: float, method: str, route: str) -> HttpFault | None:
        return None

    def http_delay(self, now: float, method: str, route: str) -> float:
        return 0.0

    def engine_delay(self, now: float, command: str) -> float:
        """Seconds between a command's acceptance and its processing by the engine."""
        return 0.0
