"""``replay_throughput``: messages/s pushed from a large capture at maximum speed to websockets
clients, over a bare websockets server sending the same pre-serialised frames.

Measured path (the goal row): ``valr-replay replay``'s, in-process: ``replay.playback.Playback``
served by ``FakeValr(playback=...)`` at ``--speed 1e9`` to a websockets trade client (all the
capture's market frames; see ``replay_drive.replay_playback``). Second row (informational):
the server's dispatcher path alone (``replay_drive.replay_dispatcher``: CaptureReader ->
``FakeValr.send`` -> DeliverySchedule -> aiohttp, account and trade frames). If the playback
shell is missing, the dispatcher row carries the goal.

Baselines: ``replay_drive.bare_send``, the same frames serialised beforehand, to the same
number of clients. Rounds alternate baseline / measured; the median round counts.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
from pathlib import Path

from .capgen import generate
from .common import Figure, pick, ratio
from .replay_drive import MAX_SPEED, bare_send, capture_streams, playback_available, replay_dispatcher, replay_playback

GOAL = "ratio >= 0.7"


async def _rounds(rounds: int, baseline, measured) -> tuple[float, float, list[float], list[float], dict]:  # type: ignore[no-untyped-def]
    m_rates, b_rates = [], []
    last: dict = {}
    for _ in range(rounds):
        b = await baseline()
        b_rates.append(b["messages"] / b["seconds"])
        m = await measured()
        m_rates.append(m["messages"] / m["seconds"])
        if m["messages"] != b["messages"]:
            raise RuntimeError(f"benchmark: replay sent {m['messages']} frames, baseline {b['messages']}")
        last = m
    return statistics.median(m_rates), statistics.median(b_rates), m_rates, b_rates, last


async def _measure(size: str) -> list[Figure]:
    nbytes = pick(size, 500_000, 10_000_000, 200_000_000)
    rounds = pick(size, 1, 3, 3)
    figures: list[Figure] = []
    with_playback = playback_available()
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        path = Path(tmp) / "capture.jsonl"
        info = generate(path, nbytes)
        account, trade = capture_streams(path)
        common = {"capture_bytes": info["bytes"], "rounds": rounds}
        if with_playback:
            v, bv, ms, bs, last = await _rounds(
                rounds, lambda: bare_send([trade]), lambda: replay_playback(path, len(trade)))
            figures.append(Figure(
                "replay_throughput", v, "msg/s", bv, ratio(v, bv), GOAL, (ratio(v, bv) or 0) >= 0.7,
                variant="replay (playback)",
                note=f"replay: Playback + FakeValr(playback=) at speed {MAX_SPEED:g}, market frames to a trade "
                     "client; dispatcher: CaptureReader -> FakeValr.send -> DeliverySchedule -> aiohttp; "
                     "baselines: bare websockets server, same frames pre-serialised, same clients",
                details={**common, "frames": len(trade), "measured_msg_s": [round(x) for x in ms],
                         "baseline_msg_s": [round(x) for x in bs],
                         "index_seconds": round(last.get("index_seconds", 0.0), 2)},
            ))
        v, bv, ms, bs, _ = await _rounds(rounds, lambda: bare_send([account, trade]),
                                         lambda: replay_dispatcher(path))
        goal = "report" if with_playback else GOAL
        note = ("replay.playback has no server shell: measured the server's dispatcher path (CaptureReader -> "
                "FakeValr.send -> DeliverySchedule -> aiohttp) instead; baseline: bare websockets server, "
                "same frames pre-serialised")
        figures.append(Figure(
            "replay_throughput", v, "msg/s", bv, ratio(v, bv), goal,
            None if with_playback else (ratio(v, bv) or 0) >= 0.7,
            variant="dispatcher path", note="" if with_playback else note,
            details={**common, "frames": len(account) + len(trade), "measured_msg_s": [round(x) for x in ms],
                     "baseline_msg_s": [round(x) for x in bs]},
        ))
    return figures


def measure(size: str = "quick") -> list[Figure]:
    return asyncio.run(_measure(size))
