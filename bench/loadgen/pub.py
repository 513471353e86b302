"""moq-rs publisher for the benchmark: one track, objects on a fixed schedule, each payload
stamped with its group, object, global sequence and send time (see common.py).

Runs under .venv-interop.  Announces, prints {"ready": true}, waits for "go" on stdin, then
publishes object k at t0 + k/rate (group k // per_group) until "stop" or --max-seconds.
Prints {"t0": ns} at the start and {"sent": n, "behind_ms": x, "cpu_s": c} at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from common import HEADER, cpu_seconds, emit, run, stdin_lines

import moq  # PyPI moq-rs, not our package


async def main(a: argparse.Namespace) -> None:
    commands: asyncio.Queue[str] = asyncio.Queue()
    stdin_lines(asyncio.get_running_loop(), commands)
    async with moq.Client(a.url, tls_verify=True, tls_fingerprints=[a.fingerprint], tls_system_roots=False,
                          reconnect=False, websocket_enabled=False) as client:
        bc = client.create_broadcast(a.broadcast)
        track = bc.publish_track(a.track, moq.TrackInfo(max_age_us=10_000_000))  # keep late groups
        bc.announce()
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
        k, group, behind = 0, None, 0.0
        while commands.empty():
            now = time.monotonic_ns()
            if now > deadline:
                break
            due = int((now - t0) / period) + 1
            behind = max(behind, (due - 1 - k) * period / 1e6) if due - 1 > k else behind
            while k < due:
                g, o = divmod(k, a.per_group)
                size = a.first_size if o == 0 else a.size
                payload = HEADER.pack(g, o, k, time.monotonic_ns()) + pad[:size - HEADER.size]
                if a.datagram:
                    track.append_datagram(payload)
                else:
                    if o == 0:
                        if group is not None:
                            group.finish()
                        group = track.create_group(g)
                    group.write_frame(payload)
                    if o == a.per_group - 1:
                        group.finish()
                        group = None
                k += 1
            next_at = t0 + k * period
            await asyncio.sleep(max(0.0, (next_at - time.monotonic_ns()) / 1e9))
        emit({"sent": k, "behind_ms": round(behind, 2), "cpu_s": round(cpu_seconds() - cpu0, 3)})


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("fingerprint")
    p.add_argument("--broadcast", default="bench/load")
    p.add_argument("--track", default="data")
    p.add_argument("--rate", type=float, default=625.0, help="objects per second")
    p.add_argument("--size", type=int, default=1000, help="object payload bytes")
    p.add_argument("--first-size", type=int, default=0, help="first object of each group (default: --size)")
    p.add_argument("--per-group", type=int, default=30)
    p.add_argument("--datagram", action="store_true", help="send each object as a datagram")
    p.add_argument("--max-seconds", type=float, default=120.0)
    args = p.parse_args()
    args.first_size = args.first_size or args.size
    run(main(args))
