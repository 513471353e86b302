"""Our library's publisher for the benchmark, with the same command line and stdin/stdout protocol
as bench/loadgen/pub.py (moq-rs).  `--publisher ours` uses it, to tell whether a relay's ingest is
limited by the moq-rs draft-18 publisher or by the relay.  Runs under .venv.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from moq import api
from moq.broadcast import Publisher
from moq.transport.loop import run
from moq.wire.types import namespace_from_str

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "loadgen"))
from common import HEADER, cpu_seconds, emit, stdin_lines  # noqa: E402


async def main(a: argparse.Namespace) -> None:
    commands: asyncio.Queue[str] = asyncio.Queue()
    stdin_lines(asyncio.get_running_loop(), commands)
    ns = namespace_from_str(a.broadcast)
    pub = Publisher()
    track = pub.create_track(ns, a.track.encode())
    conn = await api.connect(a.url, fingerprint=a.fingerprint, handler=pub)
    await conn.publish_namespace(ns)
    emit({"ready": True})
    while (cmd := await commands.get()) != "go":
        if cmd == "stop":
            return
    pad = bytes(max(a.size, a.first_size))
    t0 = time.monotonic_ns()
    emit({"t0": t0})
    cpu0 = cpu_seconds()
    period = 1e9 / a.rate
    deadline = t0 + int(a.max_seconds * 1e9)
    k, behind = 0, 0.0
    while commands.empty():
        now = time.monotonic_ns()
        if now > deadline:
            break
        due = int((now - t0) / period) + 1
        if due - 1 > k:
            behind = max(behind, (due - 1 - k) * period / 1e6)
        while k < due:
            g, o = divmod(k, a.per_group)
            size = a.first_size if o == 0 else a.size
            payload = HEADER.pack(g, o, k, time.monotonic_ns()) + pad[:size - HEADER.size]
            track.write(g, o, payload, subgroup_id=None if a.datagram else 0)
            if o == a.per_group - 1 and not a.datagram:
                track.end_group(g)
            k += 1
        await asyncio.sleep(max(0.0, (t0 + k * period - time.monotonic_ns()) / 1e9))
    emit({"sent": k, "behind_ms": round(behind, 2), "cpu_s": round(cpu_seconds() - cpu0, 3)})
    conn.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("fingerprint")
    p.add_argument("--broadcast", default="bench/load")
    p.add_argument("--track", default="data")
    p.add_argument("--rate", type=float, default=625.0)
    p.add_argument("--size", type=int, default=1000)
    p.add_argument("--first-size", type=int, default=0)
    p.add_argument("--per-group", type=int, default=30)
    p.add_argument("--datagram", action="store_true")
    p.add_argument("--max-seconds", type=float, default=120.0)
    args = p.parse_args()
    args.first_size = args.first_size or args.size
    run(main(args))
