"""Child process for ``proxy_overhead``: a bare TCP relay and a RecordingProxy (recording into
a plain capture in a temporary directory), both in front of ``UPSTREAM``.

    python -m benchmarks.hop_child ws://127.0.0.1:PORT

Prints one JSON line ``{"relay": port, "proxy": port}`` when both listen, then runs until its
stdin closes. In its own process, like a real proxy: the work it does after forwarding a
frame (recording) overlaps with the client's and the upstream's, as it would in production.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path


async def serve(upstream: str) -> None:
    from replay.capture import CaptureWriter
    from replay.record.proxy import RecordingProxy

    from .stack import TcpRelay

    host, port = upstream.removeprefix("ws://").split(":")
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="bench-hop-") as tmp:
        writer = CaptureWriter(Path(tmp) / "proxy.jsonl", {"source": "proxy", "upstream": upstream})
        proxy = RecordingProxy(upstream.replace("ws://", "http://"), writer)
        await proxy.start("127.0.0.1", 0)
        try:
            async with TcpRelay(host, int(port)) as relay:
                print(json.dumps({"relay": relay.port, "proxy": proxy.port}), flush=True)
                await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
        finally:
            await proxy.stop()
            writer.close()


def main() -> int:
    if len(sys.argv) != 2 or not sys.argv[1].startswith("ws://"):
        print("usage: python -m benchmarks.hop_child ws://127.0.0.1:PORT", file=sys.stderr)
        return 2
    asyncio.run(serve(sys.argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
