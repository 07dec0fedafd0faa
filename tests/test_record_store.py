"""RecordStore: records appended in order come back by index, across blocks, from disk."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import Enum

import pytest

from replay.record_store import BLOCK, RecordStore


class Side(Enum):
    BUY = "BUY"


@dataclass
class Event:
    side: Side
    amount: str


def _rec(i: int) -> dict:
    return {"t": i * 1000, "kind": "event", "type": "X", "data": Event(Side.BUY, str(i)) if i % 3 else {"i": i}}


def test_index_len_and_iteration_across_blocks():
    n = 2 * BLOCK + 7
    with RecordStore() as store:
        for i in range(n):
            store.append(_rec(i))
        assert len(store) == n
        for i in (0, 1, BLOCK - 1, BLOCK, 2 * BLOCK, n - 1, -1):
            j = i % n
            assert store[i]["t"] == j * 1000
        assert store[5]["data"] == Event(Side.BUY, "5")  # objects come back as they were stored
        assert [r["t"] for r in store] == [i * 1000 for i in range(n)]
        assert [r["t"] for r in store[BLOCK - 2:BLOCK + 2]] == [i * 1000 for i in range(BLOCK - 2, BLOCK + 2)]
        assert store.bytes_written > 0
        with pytest.raises(IndexError):
            store[n]


def test_unpicklable_data_is_kept_as_text():
    lock = threading.Lock()
    with RecordStore() as store:
        for i in range(BLOCK):
            store.append({"t": i, "kind": "meta", "type": "X", "data": {"lock": lock} if i == 3 else {"i": i}})
        assert store[4]["data"] == {"i": 4}
        assert "lock" in str(store[3]["data"])
