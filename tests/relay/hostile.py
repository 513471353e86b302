"""Hostile peers and a good load, as separate processes, for the relay's hostile-peer tests.

    python -m tests.relay.hostile good URL FINGERPRINT [--subscribers 5 --rate 625 --size 1000]
    python -m tests.relay.hostile attack URL KIND [--rate 15 --duration 3 --bind 127.0.0.2]

``good`` publishes ``live/good:t`` (``--rate`` objects/s of ``--size`` bytes, each carrying its
sequence number and a CLOCK_MONOTONIC send time) and subscribes ``--subscribers`` sessions to
it, all in this one process.  It prints ``{"ready": true}`` and then answers commands on stdin,
one JSON line each: ``mark`` (the next sequence number), ``report A B`` (for objects A..B-1:
how many each subscriber got, and the latency percentiles over all of them) and ``stop``.

``attack`` opens about ``--rate`` connections per second for ``--duration`` seconds from
``--bind`` (a loopback address of its own, so the relay's per-source limits see it apart from
the good load) and misbehaves on each (see ``KINDS``); ``initials`` instead sends ``--rate``
QUIC Initials per second that nobody follows up.  Each connection gives the relay ``--hold``
seconds to close it, then closes it itself.  The last stdout line is a JSON summary.
The clients are aioquic's own (not our transport), so they can break every rule.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import ssl
import struct
import sys
import time
from collections import Counter

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from moq.wire import control as c
from moq.wire.control import SetupOption
from moq.wire.varint import encode_varint

NAMESPACE, TRACK = "live/good", b"t"
STAMP = struct.Struct("!QQ")  # sequence number, send time (ns, CLOCK_MONOTONIC)
SETUP = c.Setup(((SetupOption.MOQT_IMPLEMENTATION, b"hostile/0"), (SetupOption.PATH, b"/"))).encode()


def boost(pid: int = 0, nice: int = -10) -> tuple | None:
    """Run a process (0: this one) ahead of the rest of a shared machine; returns what to give
    :func:`unboost`, or None when not allowed.  Latency tests boost the relay and the good load:
    what they measure is what hostile or stalled peers cost the relay, not what other test runs
    on the same two cores cost it (hostile clients, on other machines in real life, stay at
    normal priority).  With Linux's autogroup scheduling a niceness counts only inside the
    process's session, sessions sharing the CPUs evenly, so the session's autogroup is raised
    too (and restored by unboost)."""
    try:
        before = os.getpriority(os.PRIO_PROCESS, pid)
        os.setpriority(os.PRIO_PROCESS, pid, nice)
    except OSError:  # not allowed here: measure as we are
        return None
    group = f"/proc/{pid or 'self'}/autogroup"
    group_before = None
    try:
        with open(group) as fh:
            group_before = int(fh.read().split("nice")[1])
        with open(group, "w") as fh:
            fh.write(str(min(nice, group_before)))
    except (OSError, ValueError, IndexError):
        group_before = None
    return pid or os.getpid(), before, group_before


def unboost(state: tuple | None) -> None:
    if state is None:
        return
    pid, before, group_before = state
    try:
        os.setpriority(os.PRIO_PROCESS, pid, before)  # raising niceness is always allowed
    except OSError:  # the process is gone
        pass
    if group_before is not None:  # the process's session is ours (a child's), so is its autogroup
        for path in (f"/proc/{pid}/autogroup", "/proc/self/autogroup"):
            try:
                with open(path, "w") as fh:
                    fh.write(str(group_before))
                break
            except OSError:
                continue


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# --- the good load ------------------------------------------------------------------------


class Meter:
    """One subscriber's receive log: sequence number -> latency (ns)."""

    def __init__(self) -> None:
        self.lat: dict[int, int] = {}

    def on_object(self, event) -> None:
        seq, sent = STAMP.unpack_from(event.payload)
        self.lat[seq] = time.monotonic_ns() - sent

    def on_stream_end(self, event) -> None:
        pass

    def on_done(self, stream) -> None:
        pass


def percentile(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] / 1e6


async def good(a: argparse.Namespace) -> None:
    from moq import api
    from moq.broadcast import Publisher
    from moq.wire.types import namespace_from_str

    ns = namespace_from_str(NAMESPACE)
    pub = Publisher()
    track = pub.create_track(ns, TRACK)
    pconn = await api.connect(a.url, fingerprint=a.fingerprint, handler=pub)
    await pconn.publish_namespace(ns)
    meters = [Meter() for _ in range(a.subscribers)]
    conns = []
    for m in meters:
        conn = await api.connect(a.url, fingerprint=a.fingerprint)
        await conn.subscribe(ns, TRACK, listener=m)
        conns.append(conn)
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()
    loop.add_reader(sys.stdin.fileno(), lambda: commands.put_nowait(sys.stdin.readline()))
    seq = 0
    pad = bytes(a.size - STAMP.size)
    period = 1e9 / a.rate
    t0 = time.monotonic_ns()

    async def publish() -> None:
        nonlocal seq
        while True:
            due = int((time.monotonic_ns() - t0) / period) + 1
            while seq < due:
                g, o = divmod(seq, a.per_group)
                track.write(g, o, STAMP.pack(seq, time.monotonic_ns()) + pad)
                if o == a.per_group - 1:
                    track.end_group(g)
                seq += 1
            await asyncio.sleep(max(0.0, (t0 + seq * period - time.monotonic_ns()) / 1e9))

    task = asyncio.create_task(publish())
    emit({"ready": True})
    try:
        while True:
            line = (await commands.get()).split()
            if not line or line[0] == "stop":
                break
            if line[0] == "mark":
                emit({"seq": seq})
            elif line[0] == "report":  # report A B [WAIT]: after up to WAIT s for every object to arrive
                lo, hi = int(line[1]), int(line[2])
                deadline = time.monotonic() + (float(line[3]) if len(line) > 3 else 0.0)
                while time.monotonic() < deadline and not all(s in m.lat for m in meters for s in range(lo, hi)):
                    await asyncio.sleep(0.05)
                lat = [m.lat[s] for m in meters for s in range(lo, hi) if s in m.lat]
                emit({"expected": hi - lo, "delivered": [sum(1 for s in range(lo, hi) if s in m.lat) for m in meters],
                      "p50_ms": percentile(lat, 0.5), "p99_ms": percentile(lat, 0.99),
                      "max_ms": percentile(lat, 1.0), "closed": [c.is_closed for c in conns] + [pconn.is_closed]})
                for m in meters:  # forget what was reported
                    for s in [s for s in m.lat if s < hi]:
                        del m.lat[s]
    finally:
        task.cancel()
        for conn in (*conns, pconn):
            conn.close()
        await asyncio.sleep(0.1)


# --- hostile clients -------------------------------------------------------------------------


class Hostile(QuicConnectionProtocol):
    """aioquic's client protocol, remembering how the relay closed the connection."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ended: asyncio.Future[int] = self._loop.create_future()

    def quic_event_received(self, event: qe.QuicEvent) -> None:
        if isinstance(event, qe.ConnectionTerminated) and not self.ended.done():
            self.ended.set_result(event.error_code)
        super().quic_event_received(event)


def junk(n: int) -> bytes:
    return os.urandom(n)


async def _uni(p: Hostile, rng: random.Random) -> None:
    """300 unidirectional streams of 1-64 random bytes each, no SETUP."""
    q = p._quic
    for _ in range(300):
        sid = q.get_next_available_stream_id(is_unidirectional=True)
        q.send_stream_data(sid, junk(rng.randint(1, 64)), end_stream=rng.random() < 0.5)
        if sid % 40 == 2:
            p.transmit()
            await asyncio.sleep(0)
    p.transmit()


async def _uni_setup(p: Hostile, rng: random.Random) -> None:
    """SETUP, then 300 unidirectional streams of random bytes."""
    _control(p, SETUP)
    await _uni(p, rng)


def _control(p: Hostile, data: bytes, end: bool = False) -> int:
    q = p._quic
    sid = q.get_next_available_stream_id(is_unidirectional=True)
    q.send_stream_data(sid, data, end_stream=end)
    p.transmit()
    return sid


async def _bidi(p: Hostile, rng: random.Random) -> None:
    """SETUP, then 1-16 KiB of random bytes on a bidirectional stream."""
    _control(p, SETUP)
    q = p._quic
    sid = q.get_next_available_stream_id()
    q.send_stream_data(sid, junk(rng.randint(1024, 16384)))
    p.transmit()


async def _garbage_control(p: Hostile, rng: random.Random) -> None:
    """Random bytes where the control stream should start."""
    _control(p, junk(rng.randint(16, 4096)))


async def _length(p: Hostile, rng: random.Random) -> None:
    """SETUP, then a SUBSCRIBE whose Length claims 65535 bytes, trickled in."""
    _control(p, SETUP)
    q = p._quic
    sid = q.get_next_available_stream_id()
    q.send_stream_data(sid, encode_varint(c.Subscribe.TYPE) + b"\xff\xff")
    for _ in range(16):
        q.send_stream_data(sid, junk(1000))
        p.transmit()
        await asyncio.sleep(0.01)


async def _bad_setup(p: Hostile, rng: random.Random) -> None:
    """A SETUP with a malformed PATH, followed by a flood on the control stream and streams."""
    bad = c.Setup(((SetupOption.PATH, b"#" * 100),)).encode()
    sid = _control(p, bad)
    q = p._quic
    for _ in range(32):
        q.send_stream_data(sid, junk(1000))
        s2 = q.get_next_available_stream_id()
        q.send_stream_data(s2, junk(200))
    p.transmit()


async def _datagrams(p: Hostile, rng: random.Random) -> None:
    """SETUP, then 500 junk datagrams of 1-200 bytes."""
    _control(p, SETUP)
    q = p._quic
    for i in range(500):
        q.send_datagram_frame(junk(rng.randint(1, 200)))
        if i % 50 == 49:
            p.transmit()
            await asyncio.sleep(0)
    p.transmit()


async def _idle(p: Hostile, rng: random.Random) -> None:
    """Handshake, then nothing (the connection is held for --hold seconds)."""


async def _churn(p: Hostile, rng: random.Random) -> None:
    """SETUP, then close at once: a handshake and a session for nothing."""
    _control(p, SETUP)


KINDS = {
    "uni": _uni, "uni_setup": _uni_setup, "bidi": _bidi, "control": _garbage_control, "length": _length,
    "bad_setup": _bad_setup, "datagrams": _datagrams, "idle": _idle, "churn": _churn,
}
MIX = ("uni", "uni_setup", "bidi", "control", "length", "bad_setup", "datagrams", "idle")


def client_config(alpn: str = "moqt-18") -> QuicConfiguration:
    return QuicConfiguration(is_client=True, alpn_protocols=[alpn], verify_mode=ssl.CERT_NONE,
                             server_name="localhost", max_datagram_frame_size=65536, idle_timeout=10.0)


async def one(kind: str, target: tuple[str, int], bind: str, hold: float, stats: Counter, rng: random.Random) -> None:
    loop = asyncio.get_running_loop()
    quic = QuicConnection(configuration=client_config())
    try:
        transport, p = await loop.create_datagram_endpoint(lambda: Hostile(quic), local_addr=(bind, 0))
    except OSError:
        stats["socket_error"] += 1
        return
    try:
        p.connect(target)
        try:
            await asyncio.wait_for(p.wait_connected(), 5)
        except (TimeoutError, ConnectionError):
            stats["handshake_failed"] += 1
            return
        stats["handshakes"] += 1
        await KINDS[kind](p, rng)
        if kind == "churn":
            p.close()
            stats["closed_by_us"] += 1
            await asyncio.sleep(0.05)
            return
        try:
            code = await asyncio.wait_for(asyncio.shield(p.ended), hold)
            stats[f"closed_by_relay_0x{code:x}"] += 1
        except TimeoutError:
            p.close()
            stats["closed_by_us"] += 1
            await asyncio.sleep(0.05)
    finally:
        transport.close()


def initial_datagrams(target: tuple[str, int], count: int) -> list[bytes]:
    """``count`` distinct first flights (Initial + ClientHello) of clients that never continue."""
    out = []
    for _ in range(count):
        q = QuicConnection(configuration=client_config())
        q.connect(target, now=time.monotonic())
        out.append(q.datagrams_to_send(now=time.monotonic())[0][0])
    return out


async def flood_initials(a: argparse.Namespace, target: tuple[str, int], stats: Counter) -> None:
    """``--rate`` first flights per second, all distinct (made before the flood starts)."""
    total = int(a.rate * a.duration)
    pool = initial_datagrams(target, total)
    socks = []
    for _ in range(4):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((a.bind.split(",")[0], 0))
        s.setblocking(False)
        socks.append(s)
    t0, sent = time.monotonic(), 0
    try:
        while sent < total:
            due = min(total, int((time.monotonic() - t0) * a.rate) + 1)
            while sent < due:
                try:
                    socks[sent % len(socks)].sendto(pool[sent], target)
                    stats["initials"] += 1
                except BlockingIOError:
                    stats["initials_dropped"] += 1
                sent += 1
            await asyncio.sleep(0.005)
    finally:
        for s in socks:
            s.close()


async def attack(a: argparse.Namespace) -> None:
    host, _, port = a.url.removeprefix("moqt://").split("/")[0].rpartition(":")
    target = (host.strip("[]"), int(port))
    stats: Counter = Counter()
    t_start = time.monotonic()
    if a.kind == "initials":
        await flood_initials(a, target, stats)
        emit({"kind": a.kind, "seconds": round(time.monotonic() - t_start, 2), **stats})
        return
    rng = random.Random(a.seed)
    binds = a.bind.split(",")
    tasks: set[asyncio.Task] = set()
    n = 0
    total = int(a.rate * a.duration)
    while n < total:
        due = min(total, int((time.monotonic() - t_start) * a.rate) + 1)
        while n < due:
            kind = MIX[n % len(MIX)] if a.kind == "mix" else a.kind
            bind = binds[n % len(binds)]
            t = asyncio.create_task(one(kind, target, bind, a.hold, stats, rng))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            n += 1
            stats["attempts"] += 1
        await asyncio.sleep(0.01)
    if tasks:
        await asyncio.wait(tasks, timeout=a.hold + 10)
    emit({"kind": a.kind, "seconds": round(time.monotonic() - t_start, 2), **stats})


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="hostile")
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("good")
    g.add_argument("url")
    g.add_argument("fingerprint")
    g.add_argument("--subscribers", type=int, default=5)
    g.add_argument("--rate", type=float, default=625)
    g.add_argument("--size", type=int, default=1000)
    g.add_argument("--per-group", type=int, default=25)
    h = sub.add_parser("attack")
    h.add_argument("url")
    h.add_argument("kind", choices=[*KINDS, "mix", "initials"])
    h.add_argument("--rate", type=float, default=15)
    h.add_argument("--duration", type=float, default=3)
    h.add_argument("--bind", default="127.0.0.2", help="source address(es), comma-separated: round robin")
    h.add_argument("--hold", type=float, default=1.0)
    h.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    from moq.log import configure_logging

    configure_logging("console", "warning")  # stdout carries the JSON answers
    if a.cmd == "good":
        from moq.transport.loop import run

        run(good(a))
    else:
        asyncio.run(attack(a))


if __name__ == "__main__":
    main()
