"""A good publisher and a good subscriber in a process of their own, timing every object, so
that what a test's bad peers cost that process does not count as the relay's latency.

    python -m tests.relay.goodload URL FINGERPRINT NAMESPACE [--rate 100 --size 1000]

Publishes NAMESPACE:t (``--rate`` objects/s, each carrying its sequence number and send time)
and subscribes to it through the relay.  Prints ``{"ready": true}``, then answers one JSON line
per stdin command: ``mark`` (the next sequence number), ``report A B`` (objects A..B-1: the
missing ones, p50/p99 latency, this process's own worst event-loop lag, whether a session
closed) and ``stop``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import struct
import sys
import time

STAMP = struct.Struct("!QQ")  # sequence number, send time (ns, CLOCK_MONOTONIC)


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def percentile(values: list[float], q: float) -> float:
    """Nearest rank (as viewer.stats): p99 of 100 samples is the second largest."""
    values = sorted(values)
    return values[max(1, math.ceil(q * len(values))) - 1] if values else float("inf")


async def main(a: argparse.Namespace) -> None:
    from moq import api
    from moq.broadcast import Publisher
    from moq.wire.types import namespace_from_str

    ns = namespace_from_str(a.namespace)
    pub = Publisher()
    track = pub.create_track(ns, b"t")
    pconn = await api.connect(a.url, fingerprint=a.fingerprint, handler=pub)
    await pconn.publish_namespace(ns)
    sconn = await api.connect(a.url, fingerprint=a.fingerprint)
    sub = await sconn.subscribe(ns, b"t")
    latency: dict[int, float] = {}
    lag: list[tuple[float, float]] = []  # (when, ms late)
    seq = 0

    async def write() -> None:
        nonlocal seq
        t0, pad = time.monotonic(), bytes(a.size - STAMP.size)
        while True:
            group, obj = divmod(seq, 50)
            track.write(group, obj, STAMP.pack(seq, time.monotonic_ns()) + pad)
            if obj == 49:
                track.end_group(group)
            seq += 1
            await asyncio.sleep(max(0.0, t0 + seq / a.rate - time.monotonic()))

    async def read() -> None:
        async for o in sub:
            n, sent = STAMP.unpack_from(bytes(o.payload))
            latency[n] = (time.monotonic_ns() - sent) / 1e6

    async def watch_lag() -> None:
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.005)
            lag.append((t, (time.monotonic() - t - 0.005) * 1e3))
            del lag[:-2000]

    tasks = [asyncio.create_task(f()) for f in (write, read, watch_lag)]
    while len(latency) < 20:
        await asyncio.sleep(0.02)
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()
    loop.add_reader(sys.stdin.fileno(), lambda: commands.put_nowait(sys.stdin.readline()))
    emit({"ready": True})
    marks: dict[int, float] = {}  # sequence number -> when it was marked
    try:
        while True:
            line = (await commands.get()).split()
            if not line or line[0] == "stop":
                break
            if line[0] == "mark":
                marks[seq] = time.monotonic()
                emit({"seq": seq})
            elif line[0] == "report":
                lo, hi = int(line[1]), int(line[2])
                deadline = time.monotonic() + 5
                while any(s not in latency for s in range(lo, hi)) and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                got = [latency[s] for s in range(lo, hi) if s in latency]
                since = marks.get(lo, 0.0)
                emit({"missing": [s for s in range(lo, hi) if s not in latency], "p50_ms": percentile(got, 0.5),
                      "p99_ms": percentile(got, 0.99), "own_lag_max_ms": max((ms for t, ms in lag if t >= since), default=0.0),
                      "closed": pconn.is_closed or sconn.is_closed})
    finally:
        for t in tasks:
            t.cancel()
        await sconn.aclose()
        await pconn.aclose()


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="goodload")
    p.add_argument("url")
    p.add_argument("fingerprint")
    p.add_argument("namespace")
    p.add_argument("--rate", type=float, default=100)
    p.add_argument("--size", type=int, default=1000)
    args = p.parse_args()
    from moq.log import configure_logging
    from moq.transport.loop import run

    configure_logging("console", "warning")  # stdout carries the JSON answers
    run(main(args))
