"""`make bench`: 1 publisher → moq-relay (a real process) → N subscribers on loopback.

Reports delivered objects/s (summed over subscribers), payload throughput and the relay
process's CPU use over the measurement window.  Not a test: numbers, not assertions.

    python -m tests.bench.relay_fanout [--subscribers 10] [--seconds 5] [--size 1000] [--rate 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
import time

from moq import api
from moq.broadcast import Publisher
from moq.transport.loop import run
from moq.wire.types import namespace_from_str

NS = namespace_from_str("bench/fanout")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


async def bench(subscribers: int, seconds: float, size: int, rate: int, scheme: str) -> None:
    relay = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay.app", "--bind", "127.0.0.1:0", "--log-level", "warning",
        "--subscriber-queue-bytes", "64MiB", stdout=asyncio.subprocess.PIPE)
    try:
        port = fp = None
        while port is None or fp is None:
            line = (await asyncio.wait_for(relay.stdout.readline(), 20)).decode()
            if m := re.search(r"moqt://[^:]+:(\d+)/", line):
                port = int(m.group(1))
            if m := re.search(r"sha256: ([0-9a-f]+)", line):
                fp = m.group(1)
        url = f"{scheme}://127.0.0.1:{port}/"
        pub = Publisher()
        track = pub.create_track(NS, b"data")
        pconn = await api.connect(url, fingerprint=fp, handler=pub)
        await pconn.publish_namespace(NS)
        conns = [await api.connect(url, fingerprint=fp) for _ in range(subscribers)]
        subs = [await c.subscribe(NS, b"data") for c in conns]
        counts = [0] * subscribers

        async def drain(i: int) -> None:
            async for _ in subs[i]:
                counts[i] += 1

        readers = [asyncio.create_task(drain(i)) for i in range(subscribers)]
        payload = bytes(size)
        per_group, sent, g = 30, 0, 0
        cpu0, t0 = cpu_seconds(relay.pid), time.monotonic()
        while time.monotonic() - t0 < seconds:
            burst = max(1, int(rate * 0.01))
            for _ in range(burst):
                track.write(g, sent % per_group, payload)
                sent += 1
                if sent % per_group == 0:
                    track.end_group(g)
                    g += 1
            await asyncio.sleep(max(0.0, sent / rate - (time.monotonic() - t0)))
        pub_end = time.monotonic()
        target = sent * subscribers
        while sum(counts) < target and time.monotonic() - pub_end < 10:  # let in-flight objects land
            await asyncio.sleep(0.05)
        wall = time.monotonic() - t0
        cpu = cpu_seconds(relay.pid) - cpu0
        delivered = sum(counts)
        print(f"transport {scheme:<5} subscribers {subscribers}  object {size} B  offered {rate}/s for {seconds:.0f} s")
        print(f"  published {sent} objects; delivered {delivered} ({delivered / max(1, sent * subscribers):.1%})")
        print(f"  delivered {delivered / wall:,.0f} objects/s = {delivered * size * 8 / wall / 1e6:,.1f} Mbit/s "
              f"(wall {wall:.1f} s incl. {wall - (pub_end - t0):.1f} s tail)")
        print(f"  relay CPU {cpu:.2f} s over {wall:.1f} s = {100 * cpu / wall:.0f}% of one core; "
              f"RSS {rss_mb(relay.pid):.0f} MB")
        for t in readers:
            t.cancel()
        for c in [pconn, *conns]:
            c.close()
    finally:
        relay.send_signal(signal.SIGTERM)
        await asyncio.wait_for(relay.wait(), 15)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--subscribers", type=int, default=10)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--size", type=int, default=1000, help="object payload bytes")
    p.add_argument("--rate", type=int, default=2000, help="objects per second offered by the publisher")
    p.add_argument("--transport", choices=("moqt", "https"), default="moqt")
    a = p.parse_args()
    run(bench(a.subscribers, a.seconds, a.size, a.rate, a.transport))


if __name__ == "__main__":
    main()
