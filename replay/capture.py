"""The capture format: a versioned header line, then one JSON object per message.

Minimal first cut (writer and in-memory trace); the streaming reader, gzip and
scrubbing are added with the capture issue work. See ``captures/README.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from .clock import Clock

FORMAT = "valr-replay-capture"
VERSION = 1


def _json_default(obj: Any) -> Any:
    from decimal import Decimal
    from enum import Enum

    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, Enum):
        return obj.value
    if hasattr(obj, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), default=_json_default)


class CaptureWriter:
    """Appends one line per record and flushes each line."""

    def __init__(self, path: str | Path, header: dict[str, Any]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: TextIO | None = open(self.path, "w", encoding="utf-8")
        self.write({"format": FORMAT, "version": VERSION, **header})

    def write(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            raise ValueError(f"{self.path}: capture already closed")
        self._fh.write(dumps(record) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "CaptureWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class TraceRecorder:
    """Stamps records with one clock and hands them to a writer and/or keeps them in memory.

    ``record(conn, dir, kind, type, data)``: ``dir`` is ``in`` (server to client),
    ``out`` (client to server) or ``local`` (a state change, not a message).
    """

    clock: Clock
    writer: CaptureWriter | None = None
    keep: bool = True
    records: list[dict[str, Any]] = field(default_factory=list)
    listeners: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)

    def record(self, conn: str, dir: str, kind: str, type: str, data: Any) -> dict[str, Any]:
        rec = {
            "t": self.clock.elapsed_ns(),
            "wall": self.clock.wall_iso(),
            "conn": conn,
            "dir": dir,
            "kind": kind,
            "type": type,
            "data": data,
        }
        if self.keep:
            self.records.append(rec)
        if self.writer is not None:
            self.writer.write(rec)
        for listener in self.listeners:
            listener(rec)
        return rec

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
