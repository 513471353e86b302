"""The aioquic ceiling: one bulk stream between two processes through our own transport.

Same stack as the relay (moq.transport.endpoint serve/connect on a raw QUIC session, the same
QUIC configuration and packet size, moq.transport.loop.run for uvloop with the high-resolution
clock), but no MoQ on top: what one core can push through aioquic here bounds any relay on it.

    python -m bench.ceiling recv            # prints {"port": P, "fingerprint": F}
    python -m bench.ceiling send URL FP --warmup 1 --measure 5
                                            # prints {"bytes": B, "seconds": S, "datagrams": D, "cpu_s": C}

The receiver acknowledges what it got (8-byte running totals on its own stream) so the sender
keeps at most WINDOW bytes in flight, with no private aioquic state.  `datagrams` is the sender's
moq.transport.stats.STATS.datagrams_sent over the measured time (0 if the counter is not wired).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import time

from moq.transport import base as tb
from moq.transport import endpoint
from moq.transport.loop import run
from moq.transport.stats import STATS
from moq.transport.tls import ServerCredentials

WINDOW = 4 << 20
CHUNK = 64 << 10
ACK_EVERY = 256 << 10


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


async def receive() -> None:
    sessions: list = []

    def on_session(session) -> None:
        state = {"got": 0, "acked": 0, "sid": None}

        def on_event(event: tb.TransportEvent) -> None:
            if isinstance(event, tb.StreamData):
                state["got"] += len(event.data)
                if state["got"] - state["acked"] >= ACK_EVERY or event.end_stream:
                    if state["sid"] is None:
                        state["sid"] = session.open_stream(True)
                    session.send_stream_data(state["sid"], struct.pack(">Q", state["got"]))
                    state["acked"] = state["got"]

        session.set_handler(on_event)
        sessions.append(session)

    creds = ServerCredentials.dev()
    server = await endpoint.serve("127.0.0.1", 0, creds, on_session)
    print(json.dumps({"port": server.port, "fingerprint": creds.fingerprint}), flush=True)
    try:
        await asyncio.sleep(3600)  # killed by the harness
    finally:
        server.close()


async def send(url: str, fingerprint: str, warmup: float, measure: float) -> None:
    session = await endpoint.connect(url, fingerprint=fingerprint)
    acked = 0
    buf = b""
    wake = asyncio.Event()

    def on_event(event: tb.TransportEvent) -> None:
        nonlocal acked, buf
        if isinstance(event, tb.StreamData):
            buf += event.data
            whole = len(buf) // 8 * 8
            if whole:
                acked = struct.unpack_from(">Q", buf, whole - 8)[0]
                buf = buf[whole:]
                wake.set()

    session.set_handler(on_event)
    sid = session.open_stream(True)
    chunk = memoryview(bytes(CHUNK))
    sent = 0
    start = time.monotonic()
    marks: list[tuple[float, int, int, float]] = []
    for edge in (start + warmup, start + warmup + measure):
        while time.monotonic() < edge:
            while sent - acked < WINDOW:
                session.send_stream_data(sid, chunk)
                sent += CHUNK
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), 5)
            except TimeoutError:
                break
        marks.append((time.monotonic(), acked, STATS.datagrams_sent, _cpu()))
    (t0, b0, d0, c0), (t1, b1, d1, c1) = marks
    print(json.dumps({"bytes": b1 - b0, "seconds": round(t1 - t0, 3), "datagrams": d1 - d0,
                      "cpu_s": round(c1 - c0, 3)}), flush=True)
    session.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="role", required=True)
    sub.add_parser("recv")
    s = sub.add_parser("send")
    s.add_argument("url")
    s.add_argument("fingerprint")
    s.add_argument("--warmup", type=float, default=1.0)
    s.add_argument("--measure", type=float, default=5.0)
    a = p.parse_args()
    run(receive() if a.role == "recv" else send(a.url, a.fingerprint, a.warmup, a.measure))


if __name__ == "__main__":
    main()
