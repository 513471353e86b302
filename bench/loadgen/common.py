"""Shared by the load generators (stdlib only: they run under .venv-interop or .venv).

Payload layout (big-endian, then zero padding to the object size):
  group u64 | object u32 | seq u64 (global object sequence) | send time u64 (time.monotonic_ns)
CLOCK_MONOTONIC is system-wide, so sender and receiver processes on one machine share it.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import threading

HEADER = struct.Struct(">QIQQ")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> float:
    """This process's user+system CPU (all threads, Rust runtime included)."""
    t = os.times()
    return t.user + t.system


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def stdin_lines(loop, queue) -> None:
    """Feed stdin lines into an asyncio.Queue from a daemon thread (EOF -> "stop")."""

    def reader() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line.strip())
        loop.call_soon_threadsafe(queue.put_nowait, "stop")

    threading.Thread(target=reader, daemon=True).start()


def bucket(us: int) -> int:
    """Latency histogram key with ~1% resolution (exact below 1 ms)."""
    if us < 1000:
        return us
    if us < 10_000:
        return us // 10 * 10
    if us < 100_000:
        return us // 100 * 100
    return us // 1000 * 1000


def run(coro) -> None:
    """asyncio.run on uvloop when present: moq-rs's Python bindings resolve every awaited frame
    with call_soon_threadsafe, which costs a self-pipe write per frame on the default loop."""
    if os.environ.get("BENCH_NO_UVLOOP") != "1":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(coro)
            return
    import asyncio

    asyncio.run(coro)
