"""A small wrapper process for ``soak_memory``: run one command, report its peak RSS.

    python -m benchmarks.rss_child [--cap-mb MB] [--timeout S] [--log FILE] -- COMMAND...

Runs COMMAND as its only child (stdout and stderr to ``--log``, or discarded), waits for it and
prints one JSON line: ``returncode``, ``maxrss_kib`` (``getrusage(RUSAGE_CHILDREN).ru_maxrss``:
the peak RSS of COMMAND, KiB on Linux), ``polled_hwm_kib`` (the largest ``VmHWM`` read from
/proc while it ran, a cross-check), ``wall_seconds`` (start to exit, interpreter start-up
included) and ``killed`` (``"cap"`` when its RSS passed ``--cap-mb``, ``"timeout"`` after
``--timeout`` seconds, else null).

Why a wrapper: a child's ``ru_maxrss`` counts the memory of the process it was forked from
(Linux carries the parent's high-water mark over ``exec``), so a command started straight from
the benchmark process would be charged the benchmark's own memory. This wrapper imports nothing
heavy (a few MB), far below any command measured here.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import subprocess
import sys
import time


def status_kib(pid: int, field: str) -> int | None:
    """A ``/proc/PID/status`` field in KiB (``VmHWM``: the peak RSS so far), None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rss_child")
    parser.add_argument("--cap-mb", type=float, default=None, help="kill COMMAND when its RSS passes this (MB)")
    parser.add_argument("--timeout", type=float, default=None, help="kill COMMAND after this many seconds")
    parser.add_argument("--log", default=None, help="COMMAND's stdout and stderr go here")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no COMMAND after --")
    out = open(args.log, "wb") if args.log else subprocess.DEVNULL
    killed: str | None = None
    polled = 0
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            polled = max(polled, status_kib(proc.pid, "VmHWM") or 0)
            if args.cap_mb is not None and polled * 1024 > args.cap_mb * 1e6:
                killed = "cap"
            elif args.timeout is not None and time.perf_counter() - t0 > args.timeout:
                killed = "timeout"
            if killed:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                break
            time.sleep(0.05)
        wall = time.perf_counter() - t0
    finally:
        if args.log:
            out.close()  # type: ignore[union-attr]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"returncode": proc.returncode, "maxrss_kib": usage.ru_maxrss, "polled_hwm_kib": polled,
                      "wall_seconds": round(wall, 3), "killed": killed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
