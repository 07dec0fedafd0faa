"""A run's records on disk, read back by index: what a streaming run keeps instead of a list.

A long run's checks are judged as the records are made (``checks.CheckEngine``), but a
violation's timeline shows the records around it, which can be hours back. ``RecordStore``
appends every record to an anonymous temporary file in compressed blocks of ``BLOCK`` records
and keeps only the blocks' offsets in memory (a few bytes per ``BLOCK`` records), so reading a
record back costs one block. It is a ``Sequence``: ``store[i]``, ``len(store)``, iteration.

Blocks are pickled, not JSON: the records read back are the records that were stored (event
objects, enums and all), so a timeline made from the store is the one the in-memory list gives.
The file is private to the process and removed when the store is closed (or the process ends);
it is never a trace (``--trace`` writes those, scrubbed).
"""

from __future__ import annotations

import json
import pickle
import tempfile
import zlib
from array import array
from collections.abc import Iterator, Sequence
from typing import Any, overload

from .capture import dumps

BLOCK = 512


def _picklable(rec: dict[str, Any]) -> dict[str, Any]:
    """A record as it can be stored: itself, else its JSON form (as a trace holds it), else its text."""
    try:
        pickle.dumps(rec, protocol=pickle.HIGHEST_PROTOCOL)
        return rec
    except Exception:
        pass
    try:
        plain: dict[str, Any] = json.loads(dumps(rec))
        return plain
    except (TypeError, ValueError):
        return {**rec, "data": repr(rec.get("data"))}


class RecordStore(Sequence[dict[str, Any]]):
    """Records appended in order, read back by index from a temporary file."""

    def __init__(self, directory: str | None = None) -> None:
        self._file = tempfile.TemporaryFile(prefix="valr-replay-records-", dir=directory)
        self._offsets = array("q")  # per block: where it starts in the file
        self._sizes = array("l")  # per block: its compressed size
        self._buffer: list[dict[str, Any]] = []  # the block being filled
        self._count = 0
        self._cached: tuple[int, list[dict[str, Any]]] | None = None  # the last block read back
        self._end = 0
        self.bytes_written = 0

    def append(self, rec: dict[str, Any]) -> None:
        self._buffer.append(rec)
        self._count += 1
        if len(self._buffer) >= BLOCK:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        try:
            raw = pickle.dumps(self._buffer, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            raw = pickle.dumps([_picklable(r) for r in self._buffer], protocol=pickle.HIGHEST_PROTOCOL)
        packed = zlib.compress(raw, 1)
        self._file.seek(self._end)
        self._file.write(packed)
        self._offsets.append(self._end)
        self._sizes.append(len(packed))
        self._end += len(packed)
        self.bytes_written += len(packed)
        self._buffer = []

    def _block(self, b: int) -> list[dict[str, Any]]:
        if b == len(self._offsets):
            return self._buffer
        if self._cached is not None and self._cached[0] == b:
            return self._cached[1]
        self._file.seek(self._offsets[b])
        records: list[dict[str, Any]] = pickle.loads(zlib.decompress(self._file.read(self._sizes[b])))
        self._cached = (b, records)
        return records

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(f"record {index} of {self._count}")
        return self._block(index // BLOCK)[index % BLOCK]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for b in range(len(self._offsets) + 1):
            yield from self._block(b)

    def close(self) -> None:
        self._buffer = []
        self._cached = None
        self._file.close()

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
