"""`make demo`: the main job on embedded defaults — a relay (moq-relay), a test-pattern
publisher (moq-publish --input testsrc) and the links to watch it (Chrome, moq-view).
Runs until Ctrl-C (or --duration).

    python -m moq.demo [--bind 127.0.0.1:4443] [--http 127.0.0.1:8080] [--duration SEC]
    python -m moq.demo --loopback   # library only: a server and two subscribers exchange objects
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
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


async def _read_until(proc: asyncio.subprocess.Process, pattern: str, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), max(0.1, deadline - time.monotonic()))  # type: ignore[union-attr]
        if not line:
            raise RuntimeError("a demo process exited before it was ready")
        if m := re.search(pattern, line.decode(errors="replace")):
            return m


async def _discard(proc: asyncio.subprocess.Process) -> None:
    while await proc.stdout.readline():  # type: ignore[union-attr]
        pass


async def full_demo(bind: str, http: str, namespace: str, duration: float | None) -> int:
    """Relay + publisher as real processes; prints how to watch; stops them on exit."""
    py = sys.executable
    relay = await asyncio.create_subprocess_exec(
        py, "-m", "relay.app", "--bind", bind, "--http", http, "--log-level", "warning",
        stdout=asyncio.subprocess.PIPE)
    publisher = None
    try:
        fingerprint = (await _read_until(relay, r"certificate sha256: ([0-9a-f]{64})", 20)).group(1)
        http_url = (await _read_until(relay, r"http:\s+(http://\S+/)", 5)).group(1)
        host, port = bind.rsplit(":", 1)
        quic_url, wt_url = f"moqt://{host}:{port}/", f"https://{host}:{port}/"
        publisher = await asyncio.create_subprocess_exec(
            py, "-m", "publisher", wt_url, "--namespace", namespace, "--input", "testsrc",
            "--fingerprint", fingerprint, "--log-level", "warning",
            stdout=asyncio.subprocess.PIPE)
        await _read_until(publisher, r"connected", 30)  # the namespace is announced: links work now
        drain = asyncio.ensure_future(_discard(publisher))
        print(f"""
moq demo: relay on udp {bind}, publisher sending a 1280x720 test pattern with a clock and a tone

  Watch in Chrome:  {http_url}?url={wt_url}&namespace={namespace}
  Watch from here:  .venv/bin/moq-view {quic_url} --namespace {namespace} --track all --fingerprint {fingerprint}
  Record 10 s:      .venv/bin/moq-view {quic_url} --namespace {namespace} --track all --duration 10 --output demo.mp4 --fingerprint {fingerprint}
  Relay metrics:    {http_url}metrics
  Certificate:      sha256 {fingerprint} (generated for this run, valid 10 days)

Ctrl-C stops the relay and the publisher.""", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(relay.wait()),
                   asyncio.ensure_future(publisher.wait())]
        done, pending = await asyncio.wait(waiters, timeout=duration, return_when=asyncio.FIRST_COMPLETED)
        for w in pending:
            w.cancel()
        drain.cancel()
        if relay.returncode is not None or publisher.returncode is not None:
            print(f"moq demo: {'relay' if relay.returncode is not None else 'publisher'} exited early", file=sys.stderr)
            return 1
        return 0
    finally:
        for proc in (publisher, relay):
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
        print("moq demo: stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m moq.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--bind", default="127.0.0.1:4443", help="relay UDP address (default 127.0.0.1:4443)")
    p.add_argument("--http", default="127.0.0.1:8080", help="relay HTTP address for the web viewer (default 127.0.0.1:8080)")
    p.add_argument("--namespace", default="live/demo", help="namespace of the broadcast (default live/demo)")
    p.add_argument("--duration", type=float, help="stop after SEC seconds (default: run until Ctrl-C)")
    p.add_argument("--loopback", action="store_true", help="library-only demo: no relay or media, objects only")
    p.add_argument("--groups", type=int, default=5, help="--loopback: groups to publish (default 5)")
    p.add_argument("--objects", type=int, default=4, help="--loopback: objects per group (default 4)")
    p.add_argument("--interval", type=float, default=0.2, help="--loopback: seconds between groups (default 0.2)")
    p.add_argument("--log-level", default="warning", help="log level (default warning)")
    args = p.parse_args(argv)
    configure_logging("console", args.log_level)
    if args.loopback:
        return run(demo(args.groups, args.objects, args.interval))
    return run(full_demo(args.bind, args.http, args.namespace, args.duration))


if __name__ == "__main__":
    sys.exit(main())
