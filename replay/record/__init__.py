"""``valr-replay record``: capture live VALR traffic.

- ``RecordingProxy``: a local proxy in front of VALR (REST, ``/ws/account``, ``/ws/trade``)
  recording both directions.
- ``DirectRecorder``: subscribes to the streams itself and records every frame.
- ``RecordSink`` / ``RecordStats`` / ``StatusDisplay``: stamping, counting, live status.

Captures are written with ``replay.capture.CaptureWriter``, which scrubs secrets on write.
"""

from .direct import DirectRecorder, subscribe_message
from .proxy import DEFAULT_UPSTREAM, RecordingProxy, UpstreamError, split_upstream
from .status import RecordSink, RecordStats, StatusDisplay

__all__ = [
    "DEFAULT_UPSTREAM",
    "DirectRecorder",
    "RecordSink",
    "RecordStats",
    "RecordingProxy",
    "StatusDisplay",
    "UpstreamError",
    "split_upstream",
    "subscribe_message",
]
