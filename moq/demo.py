"""`make demo`: a MoQ server and two subscribers on loopback, one over raw QUIC and one
over WebTransport, exchanging objects end to end; prints what flowed and exits.

    python -m moq.demo [--groups 5] [--objects 4] [--interval 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from . import api
from .broadcast import Publisher
from .log import configure_logging
from .transport.loop import run
from .transport.tls import ServerCredentials
from .wire.types import namespace_from_str


async def demo(groups: int, objects: int, interval: float) -> int:
    ns = namespace_from_str("demo/clock")
    pub = Publisher()
    track = pub.create_track(ns, b"ticks")
    creds = ServerCredentials.dev()
    server = await api.serve("127.0.0.1", 0, credentials=creds, handler=pub)
    print(f"server   listening on udp/127.0.0.1:{server.port} (raw QUIC moqt-18 + WebTransport h3)")
    print(f"         certificate sha256 {creds.fingerprint}")
    clients = {}
    for scheme in ("moqt", "https"):
        url = f"{scheme}://127.0.0.1:{server.port}/demo"
        conn = await api.connect(url, fingerprint=creds.fingerprint)
        sub = await conn.subscribe(ns, b"ticks")
        clients[scheme] = (conn, sub)
        print(f"client   {url:<40} {conn.transport.kind:<13} {conn.transport.protocol} track_alias={sub.track_alias}")

    async def produce() -> None:
        for g in range(groups):
            for o in range(objects):
                track.write(g, o, f"group {g} object {o} sent {time.monotonic():.6f}".encode())
            track.end_group(g)
            await asyncio.sleep(interval)
        track.finish()

    async def consume(scheme: str) -> int:
        _, sub = clients[scheme]
        count = 0
        async for obj in sub:
            sent = float(bytes(obj.payload).rsplit(b" ", 1)[1])
            print(f"{scheme:<6} <- group={obj.group_id} subgroup={obj.subgroup_id} object={obj.object_id} "
                  f"{len(obj.payload):>3} bytes  {1000 * (time.monotonic() - sent):6.2f} ms")
            count += 1
        return count

    producer = asyncio.create_task(produce())
    counts = await asyncio.wait_for(asyncio.gather(*(consume(s) for s in clients)), groups * interval + 10)
    await producer
    for conn, _ in clients.values():
        await conn.aclose()
    server.close()
    await server.wait_closed()
    expected = groups * objects
    ok = all(c == expected for c in counts)
    print(f"summary  published {expected} objects; received {dict(zip(clients, counts))}: {'OK' if ok else 'LOSS'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m moq.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--groups", type=int, default=5, help="groups to publish (default 5)")
    p.add_argument("--objects", type=int, default=4, help="objects per group (default 4)")
    p.add_argument("--interval", type=float, default=0.2, help="seconds between groups (default 0.2)")
    p.add_argument("--log-level", default="warning", help="log level (default warning)")
    args = p.parse_args(argv)
    configure_logging("console", args.log_level)
    return run(demo(args.groups, args.objects, args.interval))


if __name__ == "__main__":
    sys.exit(main())
