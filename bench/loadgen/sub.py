"""moq-rs subscribers for the benchmark: K subscriptions (one QUIC connection each) in one process.

Runs under .venv-interop.  Prints {"ready": K} once every subscription is made, then counts the
objects whose global sequence lies in [--s0, --s1) (the measurement window) and their latency
(receive time - the send time in the payload, same CLOCK_MONOTONIC).  "mark" on stdin snapshots the
packets received by all connections (QUIC stats); "stop" prints
{"received": n, "per_sub_min": m, "hist": {us: count}, "max_us": x, "total": t, "cpu_s": c, "packets": [marks]}.

Cost: the client must cost less than the relay it measures.  The first --probes subscriptions read
every frame when it arrives and time it (the latency figures come from them only); the others count
objects, reading buffered frames every --batch-ms through fastread.py, which takes most of the
per-frame Python cost away (see there).  Every subscription still counts every object of the window.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections import Counter

import fastread
from common import HEADER, bucket, cpu_seconds, emit, run, stdin_lines

import moq  # PyPI moq-rs, not our package

#: moq-rs drops a group as stale once a newer one arrives unless the subscription tolerates its age
#: (default: none); a benchmark counts every object, so tolerate 10 s (the publisher sets the same).
MAX_AGE_US = 10_000_000
SEEN_MAX = 50_000  # longer windows keep no per-sequence sets (memory), hence no "missing" sample


class Stats:
    def __init__(self, s0: int, s1: int) -> None:
        self.s0, self.s1 = s0, s1
        self.hist: Counter[int] = Counter()
        self.max_us = 0
        self.total = 0
        self.reader = None
        #: per subscription, the window's sequences (for "missing"); None for long windows (a soak)
        self.seen: list[set[int] | None] = []

    def on_payload(self, payload: bytes, counts: list[int], i: int, probe: bool = True) -> None:
        now = time.monotonic_ns()
        _g, _o, seq, sent = HEADER.unpack_from(payload)
        self.total += 1
        if self.s0 <= seq < self.s1:
            counts[i] += 1
            if (seen := self.seen[i]) is not None:
                seen.add(seq)
            if not probe:
                return
            us = (now - sent) // 1000
            self.hist[bucket(us)] += 1
            if us > self.max_us:
                self.max_us = us


async def read_groups(track, stats: Stats, counts: list[int], i: int) -> None:
    async def read_group(group) -> None:
        while (frame := await group.read_frame()) is not None:
            stats.on_payload(frame.payload, counts, i)

    tasks: set[asyncio.Task] = set()
    while (group := await track.recv_group()) is not None:
        t = asyncio.create_task(read_group(group))
        tasks.add(t)
        t.add_done_callback(tasks.discard)


async def read_groups_fast(track, stats: Stats, counts: list[int], i: int, reader, probe: bool,
                           batch: float) -> None:
    async def read_group(group) -> None:
        while (got := await reader.read(group)) is not None:
            stats.on_payload(got[0], counts, i, probe)
            if batch and reader.waited:
                await asyncio.sleep(batch)

    tasks: set[asyncio.Task] = set()
    while (group := await track.recv_group()) is not None:
        t = asyncio.create_task(read_group(group))
        tasks.add(t)
        t.add_done_callback(tasks.discard)


async def read_datagrams(track, stats: Stats, counts: list[int], i: int) -> None:
    while (d := await track.recv_datagram()) is not None:
        stats.on_payload(d.payload, counts, i)


def missing_sample(stats: Stats, limit: int = 20) -> list[int]:
    """A few window sequences some subscription never got (to see where losses sit)."""
    out: set[int] = set()
    for seen in stats.seen:
        if seen is not None and len(seen) < stats.s1 - stats.s0:
            out.update(k for k in range(stats.s0, stats.s1) if k not in seen)
        if len(out) >= limit:
            break
    return sorted(out)[:limit]


def packets_received(clients: list) -> int | None:
    total = 0
    for c in clients:
        stats = c.session.stats() if c.session is not None else None
        if stats is None or stats.packets_received is None:
            return None
        total += stats.packets_received
    return total


async def main(a: argparse.Namespace) -> None:
    commands: asyncio.Queue[str] = asyncio.Queue()
    stdin_lines(asyncio.get_running_loop(), commands)
    stats = Stats(a.s0, a.s1)
    stats.seen = [set() if a.s1 - a.s0 <= SEEN_MAX else None for _ in range(a.count)]
    counts = [0] * a.count
    sem = asyncio.Semaphore(16)
    async with contextlib.AsyncExitStack() as stack:
        async def subscribe(i: int):
            async with sem:
                client = await stack.enter_async_context(moq.Client(
                    a.url, tls_verify=True, tls_fingerprints=[a.fingerprint], tls_system_roots=False,
                    reconnect=False, websocket_enabled=False))
                clients.append(client)
                bc = await client.announced_broadcast(a.broadcast)
                return await bc.subscribe_track(a.track, moq.Subscription(max_age_us=MAX_AGE_US))

        clients: list = []
        tracks = await asyncio.gather(*(subscribe(i) for i in range(a.count)))
        fast = not a.datagram and a.reader == "fast" and fastread.available()
        if fast:
            stats.reader = fastread.FrameReader(asyncio.get_running_loop(), HEADER.size)
            tasks = [asyncio.create_task(read_groups_fast(t, stats, counts, i, stats.reader, i < a.probes,
                                                          0.0 if i < a.probes else a.batch_ms / 1000))
                     for i, t in enumerate(tracks)]
        else:
            reader = read_datagrams if a.datagram else read_groups
            tasks = [asyncio.create_task(reader(t, stats, counts, i)) for i, t in enumerate(tracks)]
        emit({"ready": a.count})
        cpu0, py0 = cpu_seconds(), time.thread_time()
        marks = []  # packets received by all connections at each "mark" (window start, end)
        while (cmd := await commands.get()) != "stop":
            if cmd == "mark":
                marks.append(packets_received(clients))
        cpu, py = cpu_seconds() - cpu0, time.thread_time() - py0
        for t in tasks:
            t.cancel()
        emit({"received": sum(counts), "per_sub_min": min(counts), "hist": stats.hist, "max_us": stats.max_us,
              "total": stats.total, "cpu_s": round(cpu, 3), "py_cpu_s": round(py, 3),
              "packets": marks, "reader": "fast" if fast else "public", "probes": min(a.probes, a.count),
              "reads_waited": [stats.reader.waits, stats.reader.reads] if fast else None,
              "missing": missing_sample(stats)})
        for t in tracks:
            t.cancel()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("fingerprint")
    p.add_argument("--broadcast", default="bench/load")
    p.add_argument("--track", default="data")
    p.add_argument("--count", type=int, default=1, help="subscriptions (connections) in this process")
    p.add_argument("--s0", type=int, default=0, help="first global sequence of the measurement window")
    p.add_argument("--s1", type=int, default=1 << 62, help="end (exclusive) of the measurement window")
    p.add_argument("--datagram", action="store_true", help="read datagrams instead of streams")
    p.add_argument("--reader", choices=("fast", "public"), default="fast",
                   help="fast: fastread.py (public API if its bindings do not match); public: read_frame()")
    p.add_argument("--probes", type=int, default=1 << 30,
                   help="subscriptions 0..P-1 read each frame on arrival and time it; the others count only")
    p.add_argument("--batch-ms", type=float, default=0.0,
                   help="with the fast reader, non-probe subscriptions take buffered frames every this often")
    run(main(p.parse_args()))
