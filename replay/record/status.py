"""Recording bookkeeping shared by the proxy and the direct recorder.

- ``RecordSink``: stamps records with the run's one clock, writes them (the
  ``CaptureWriter`` scrubs them), counts them per connection and tells listeners.
- ``RecordStats``: per-connection message counts and rates, total, bytes written.
- ``StatusDisplay``: the live status on stderr (a rich Live table on a terminal, else a
  plain line every few seconds at most).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable

from replay.capture import CaptureWriter
from replay.clock import Clock, iso_ms


@dataclass
class ConnStats:
    """Counts for one connection (``account-1``, ``trade-2``, ``rest``, ``run``)."""

    out: int = 0  # client -> upstream
    in_: int = 0  # upstream -> client
    local: int = 0  # CONNECT / DISCONNECT / meta records
    last_total: int = 0  # messages at the previous rate sample
    rate: float = 0.0  # messages per second over the last sample interval

    @property
    def messages(self) -> int:
        return self.out + self.in_

    def as_dict(self) -> dict[str, Any]:
        return {"out": self.out, "in": self.in_, "messages": self.messages, "rate": round(self.rate, 2)}


@dataclass
class RecordStats:
    """Per-connection counts; ``sample()`` updates messages/s since the previous sample."""

    conns: dict[str, ConnStats] = field(default_factory=dict)
    records: int = 0
    writer: CaptureWriter | None = None
    started: float = field(default_factory=time.monotonic)
    _last_sample: float = field(default_factory=time.monotonic)

    def count(self, conn: str, dir: str) -> None:
        # REST pairs each get their own conn id (rest-N); they share one "rest" row.
        key = "rest" if conn.startswith("rest-") else conn
        st = self.conns.get(key)
        if st is None:
            st = self.conns[key] = ConnStats()
        self.records += 1
        if dir == "out":
            st.out += 1
        elif dir == "in":
            st.in_ += 1
        else:
            st.local += 1

    def __getitem__(self, conn: str) -> ConnStats:
        return self.conns["rest" if conn.startswith("rest-") else conn]

    def get(self, conn: str) -> ConnStats | None:
        return self.conns.get("rest" if conn.startswith("rest-") else conn)

    @property
    def total_messages(self) -> int:
        return sum(st.messages for st in self.conns.values())

    @property
    def bytes_written(self) -> int:
        if self.writer is None:
            return 0
        try:
            return os.stat(self.writer.path).st_size
        except OSError:
            return 0

    def sample(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        dt = now - self._last_sample
        if dt <= 0:
            return
        for st in self.conns.values():
            st.rate = (st.messages - st.last_total) / dt
            st.last_total = st.messages
        self._last_sample = now

    def as_dict(self) -> dict[str, Any]:
        return {
            "conns": {name: st.as_dict() for name, st in sorted(self.conns.items())},
            "total_messages": self.total_messages,
            "records": self.records,
            "bytes_written": self.bytes_written,
        }

    def line(self) -> str:
        """One plain status line."""
        parts = [f"{name} {st.messages} ({st.rate:.1f}/s)" for name, st in sorted(self.conns.items())
                 if st.messages or name != "run"]
        elapsed = time.monotonic() - self.started
        return (f"recording {elapsed:.0f}s: {self.total_messages} messages, {_human(self.bytes_written)} written"
                + (" | " + ", ".join(parts) if parts else ""))


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


class RecordSink:
    """Stamps, writes (scrubbed by the writer) and counts records; calls listeners after."""

    def __init__(self, writer: CaptureWriter | None, clock: Clock | None = None, *, t_offset_ns: int = 0):
        self.writer = writer
        self.clock = clock if clock is not None else Clock()
        self.t_offset_ns = t_offset_ns  # added to every `t` (a continued capture keeps counting)
        self.stats = RecordStats(writer=writer)
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self.pairs_seen: set[str] = set()
        self._wall_ms = -1
        self._wall = ""

    def record(self, conn: str, dir: str, kind: str, type: str, data: Any) -> dict[str, Any]:
        clock = self.clock
        ms = clock.epoch_ms()
        if ms != self._wall_ms:  # format the wall time once per millisecond
            self._wall_ms, self._wall = ms, iso_ms(ms)
        rec = {
            "t": clock.elapsed_ns() + self.t_offset_ns,
            "wall": self._wall,
            "conn": conn,
            "dir": dir,
            "kind": kind,
            "type": type,
            "data": data,
        }
        if self.writer is not None and not self.writer.closed:
            self._write(rec)
        self.stats.count(conn, dir)
        if isinstance(data, dict):
            self._note_pairs(data)
        for listener in list(self.listeners):
            listener(rec)
        return rec

    def _write(self, rec: dict[str, Any]) -> None:
        assert self.writer is not None
        self.writer.write(rec)  # the writer skips its scrubber's copy when nothing needs scrubbing

    def _note_pairs(self, data: dict[str, Any]) -> None:
        # Cheap look at the usual places a pair is named (no deep walk on the hot path).
        for holder in (data, data.get("payload"), data.get("data")):
            if isinstance(holder, dict):
                for key in ("currencyPairSymbol", "pair", "currencyPair"):
                    v = holder.get(key)
                    if isinstance(v, str) and v.isalnum() and len(v) <= 20:
                        self.pairs_seen.add(v.upper())


class StatusDisplay:
    """Live status on ``stream`` (stderr): a rich Live table on a TTY, else a line every ``plain_every`` s."""

    def __init__(self, stats: RecordStats, *, stream: IO[str] | None = None, title: str = "valr-replay record",
                 refresh_s: float = 0.5, plain_every: float = 5.0, tty: bool | None = None):
        self.stats = stats
        self.stream = stream if stream is not None else sys.stderr
        self.title = title
        self.refresh_s = refresh_s
        self.plain_every = plain_every
        if tty is None:
            try:
                tty = self.stream.isatty()
            except (AttributeError, ValueError):
                tty = False
        self.tty = tty

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"{self.title}: {_human(self.stats.bytes_written)} written, "
                            f"{self.stats.total_messages} messages", title_justify="left")
        table.add_column("connection")
        table.add_column("out", justify="right")
        table.add_column("in", justify="right")
        table.add_column("msg/s", justify="right")
        for name, st in sorted(self.stats.conns.items()):
            if name == "run" and not st.messages:
                continue  # meta records only
            table.add_row(name, str(st.out), str(st.in_), f"{st.rate:.1f}")
        return table

    async def run(self, stop: asyncio.Event) -> None:
        """Show the status until ``stop`` is set (then one final update)."""
        if self.tty:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.stream, highlight=False)
            with Live(self._table(), console=console, auto_refresh=False, transient=False) as live:
                while not stop.is_set():
                    await _wait(stop, self.refresh_s)
                    self.stats.sample()
                    live.update(self._table(), refresh=True)
        else:
            while not stop.is_set():
                await _wait(stop, self.plain_every)
                self.stats.sample()
                if not stop.is_set():
                    print(self.stats.line(), file=self.stream, flush=True)


async def _wait(event: asyncio.Event, timeout: float) -> None:
    """Wait for ``event`` at most ``timeout`` seconds (a periodic tick that ends early on stop)."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        pass
