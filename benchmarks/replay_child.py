"""Child process for ``replay_memory``: replay one capture, print a JSON line with the result
and this process's peak RSS (``VmHWM``).

    python -m benchmarks.replay_child CAPTURE [--mode dispatcher|idle]

``idle`` only imports and starts the same server and clients, and replays nothing: the
baseline (interpreter + libraries + sockets).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys


def peak_rss_bytes() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.replay_child")
    ap.add_argument("capture")
    ap.add_argument("--mode", choices=("dispatcher", "idle"), default="dispatcher")
    args = ap.parse_args(argv)
    from .replay_drive import replay_dispatcher

    result = asyncio.run(replay_dispatcher(args.capture, limit=0 if args.mode == "idle" else None))
    result["peak_rss_bytes"] = peak_rss_bytes()
    result["mode"] = args.mode
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
