"""The relay survives malformed input (issue 10, "The relay survives"): garbage and truncated
control messages, oversized length fields, unknown message types, invalid varints, request-id
abuse and objects over --max-object-size.

Each test runs a good publisher and a good subscriber (library sessions over raw QUIC in a
process of their own, tests/relay/goodload.py: 100 objects/s stamped with their send time)
through one real relay process, then a handful of bad peers (raw transport sessions writing hand-made bytes).  It checks that each bad
peer is closed with the code draft-18 gives its fault (or, for request floods and objects
too large, refused per request or per stream while its session lives on), and that while the
bad input ran the good subscriber got every object with p99 latency under 50 ms, and the
relay's RSS stayed bounded.  (Stream and datagram floods, churn and Initial floods are
tests/relay/hostile.py's; this module is about what the bytes say.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import select
import subprocess
import sys
import time

import pytest

from moq.errors import RequestErrorCode, SessionErrorCode, StreamResetCode
from moq.transport import base as tb
from moq.transport import endpoint
from moq.wire import control as c
from moq.wire.control import SetupOption
from moq.wire.data import SubgroupHeader, encode_subgroup_object
from moq.wire.framing import MessageDecoder
from moq.wire.types import namespace_from_str
from moq.wire.varint import encode_varint

from .relayproc import ROOT, RelayProcess, connect, frame, python_env, wait_until

pytestmark = pytest.mark.timeout(120)

MAX_OBJECT = 65_536
MAX_REQUESTS = 16  # --max-requests-per-session: concurrently open requests of one session
PEERS = 3  # bad peers per case
STAGGER = 0.06  # seconds between two bad peers' starts: the input is the test, not a burst of handshakes
RATE = 100  # good objects per second
P99_MS = 50.0
RSS_GROWTH_KB = 20_000  # per attack (measured: 0-2.5 MB)
RSS_MAX_KB = 150_000  # the relay's whole RSS (measured: ~60 MB)
MACHINE_RETRIES = 5
PV, BAD_ID, KVP = SessionErrorCode.PROTOCOL_VIOLATION, SessionErrorCode.INVALID_REQUEST_ID, \
    SessionErrorCode.KEY_VALUE_FORMATTING_ERROR

SETUP = c.Setup(((SetupOption.MOQT_IMPLEMENTATION, b"bad-input/0"), (SetupOption.PATH, b"/"))).encode()
SUB_PAYLOAD = c.Subscribe(0, namespace_from_str("live/nobody"), b"t").encode()[3:]


@pytest.fixture(scope="module")
def relay():
    with RelayProcess("--drain-timeout", "1", "--max-object-size", str(MAX_OBJECT),
                      "--max-requests-per-session", str(MAX_REQUESTS)) as r:
        yield r
        assert r.alive(), r.log_tail()
        assert r.stop() == 0, r.log_tail()


# --- the good load -------------------------------------------------------------------------


class GoodLoad:
    """tests/relay/goodload.py: a publisher and a subscriber in a process of their own (so the
    bad peers' cost to this process does not show as the relay's latency)."""

    def __init__(self, relay: RelayProcess, name: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.relay.goodload", relay.url("moqt"), relay.fingerprint, f"live/good/{name}",
             "--rate", str(RATE)], cwd=ROOT, env=python_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, bufsize=1)
        assert self.ask(None, 20) == {"ready": True}

    def ask(self, command: str | None, timeout: float = 10.0) -> dict:
        if command is not None:
            self.proc.stdin.write(command + "\n")  # type: ignore[union-attr]
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        if not line:
            self.proc.kill()
            raise AssertionError(f"goodload: no answer to {command!r}: {self.proc.stderr.read()[-3000:]}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.proc.stdin.write("stop\n")  # type: ignore[union-attr]
                self.proc.stdin.flush()  # type: ignore[union-attr]
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# --- bad peers ---------------------------------------------------------------------------------


class Peer:
    """A raw transport session (no MoQ session: it can write anything) that records what the
    relay does to it: the close, STOP_SENDINGs, and the messages on each bidirectional stream."""

    def __init__(self, transport) -> None:
        self.t = transport
        loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[tb.SessionClosed] = loop.create_future()
        self.relay_setup: asyncio.Future[None] = loop.create_future()
        self.stopped: dict[int, int] = {}
        self.messages: dict[int, list] = {}
        self._decoders: dict[int, MessageDecoder] = {}
        self.control: int | None = None
        transport.set_handler(self._on_event)

    @classmethod
    async def open(cls, relay: RelayProcess) -> Peer:
        return cls(await endpoint.connect(relay.url("moqt"), fingerprint=relay.fingerprint))

    def _on_event(self, e) -> None:
        if isinstance(e, tb.SessionClosed) and not self.closed.done():
            self.closed.set_result(e)
        elif isinstance(e, tb.StopSending):
            self.stopped[e.stream_id] = e.error_code
        elif isinstance(e, tb.StreamData) and not e.bidirectional and not self.relay_setup.done():
            self.relay_setup.set_result(None)
        elif isinstance(e, tb.StreamData) and e.bidirectional:
            dec = self._decoders.setdefault(e.stream_id, MessageDecoder())
            self.messages.setdefault(e.stream_id, []).extend(dec.feed(e.data))

    def send_control(self, data: bytes, fin: bool = False) -> None:
        if self.control is None:
            self.control = self.t.open_stream(True)
        self.t.send_stream_data(self.control, data, fin)

    async def setup(self) -> None:
        self.send_control(SETUP)
        await asyncio.wait_for(self.relay_setup, 20)

    def request(self, data: bytes, fin: bool = False) -> int:
        sid = self.t.open_stream(False)
        self.t.send_stream_data(sid, data, fin)
        return sid

    async def close_code(self, timeout: float = 20.0) -> int:
        return (await asyncio.wait_for(self.closed, timeout)).error_code

    def close(self) -> None:
        self.t.close()


async def survive(relay: RelayProcess, load: GoodLoad, name: str, attack, *args) -> dict:
    """Run `attack()` (which checks its own bad peers) while the good load runs; measure what
    the good subscriber got meanwhile and the relay's RSS."""
    rss0 = relay.rss_kb()
    first = load.ask("mark")["seq"]
    t0 = time.monotonic()
    await asyncio.wait_for(attack(*args), 45)
    await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))  # at least a second of load
    last = load.ask("mark")["seq"]
    report = load.ask(f"report {first} {last}")
    rss1 = relay.rss_kb()
    info = {"objects": last - first, "missing": report["missing"][:10], "closed": report["closed"],
            "p99_ms": round(report["p99_ms"], 1), "p50_ms": round(report["p50_ms"], 1),
            "goodload_lag_max_ms": round(report["own_lag_max_ms"], 1), "rss_kb": rss1, "rss_growth_kb": rss1 - rss0,
            "attack_s": round(time.monotonic() - t0, 2)}
    print(f"{name}: {info}")
    return info


async def expect_closes(relay: RelayProcess, cases: list[tuple[int, bytes | None, bytes | None, bool]]) -> None:
    """Each case is (expected code, control bytes after SETUP or None for none at all,
    request-stream bytes or None, FIN on the last stream written); PEERS copies of every case
    start STAGGER s apart, and each must be closed with its code."""
    async def one(code: int, control: bytes | None, request: bytes | None, fin: bool, raw: bytes | None) -> None:
        peer = await Peer.open(relay)
        try:
            if raw is not None:
                peer.send_control(raw, fin)
            else:
                await peer.setup()
                if control is not None:
                    peer.send_control(control, fin and request is None)
                if request is not None:
                    peer.request(request, fin)
            got = await peer.close_code()
            assert got == code, (got, code, control, request)
        finally:
            peer.close()

    async def later(delay: float, job) -> None:
        await asyncio.sleep(delay)
        await job

    jobs = [one(code, control, request, fin, raw[0] if raw else None)
            for _ in range(PEERS) for code, control, request, fin, *raw in cases]
    await asyncio.gather(*(later(i * STAGGER, job) for i, job in enumerate(jobs)))


def run(relay, name, attack) -> dict:
    """The attack against a good load: every object delivered, p99 < 50 ms, RSS bounded.

    On a busy machine the good load's process (or the relay's) is descheduled for tens of ms
    now and then, which shows as latency the attack did not cause.  So when an attempt's p99
    fails, a quiet second (same load, no attack) is measured right after: if it is slow too
    (p99 over half the bound) or the good load's own event loop was that late, the machine is
    to blame and the attempt is run again (up to MACHINE_RETRIES times); otherwise the attack
    slowed the relay and the test fails."""
    load = GoodLoad(relay, name)
    try:
        for attempt in range(MACHINE_RETRIES + 1):
            info = asyncio.run(survive(relay, load, name, attack))
            assert not info["missing"] and not info["closed"], info
            assert info["objects"] >= RATE * 0.8, info
            assert info["rss_growth_kb"] < RSS_GROWTH_KB and info["rss_kb"] < RSS_MAX_KB, info
            assert relay.alive()
            if info["p99_ms"] < P99_MS:
                return info
            quiet = asyncio.run(survive(relay, load, name + " (quiet)", asyncio.sleep, 0))
            noisy = quiet["p99_ms"] >= P99_MS / 2 or info["goodload_lag_max_ms"] >= P99_MS / 2
            assert noisy and attempt < MACHINE_RETRIES, (info, quiet)
    finally:
        load.close()
    raise AssertionError("unreachable")


# --- the cases -------------------------------------------------------------------------------


def test_garbage_and_truncated_control_messages(relay):
    rng = random.Random(10)
    garbage = bytes(rng.randrange(256) for _ in range(400))
    cases = [
        (PV, None, None, False, b"\x00" + garbage),  # no stream type at all (0x00 is none)
        (PV, None, None, True, SETUP[:5]),  # SETUP cut short, then FIN
        (PV, None, frame(0x3F3F, garbage[:40]), False),  # after SETUP: a frame of garbage
        (PV, frame(c.GoAway.TYPE, b"\x00\x00")[:4], None, True),  # a GOAWAY cut short, then FIN
        (PV, None, frame(c.Subscribe.TYPE, SUB_PAYLOAD)[:-3], True),  # a SUBSCRIBE cut short, then FIN
    ]
    run(relay, "garbage", lambda: expect_closes(relay, cases))


def test_oversized_length_fields(relay):
    cases = [
        # the 16-bit Length at its maximum, every byte sent: a GOAWAY with 65 533 trailing bytes
        (PV, frame(c.GoAway.TYPE, b"\x00\x00" + bytes(0xFFFF - 2)), None, False),
        # Length says 0xFFFF, 9 bytes follow and the stream ends
        (PV, None, frame(c.Subscribe.TYPE, SUB_PAYLOAD, length=0xFFFF), True),
        # a Track Namespace Field length of 2^62 inside a SUBSCRIBE
        (PV, None, frame(c.Subscribe.TYPE, b"\x00\x01" + encode_varint(1 << 62) + b"abc"), False),
        # a GOAWAY New Session URI longer than the draft's 8192 bytes
        (PV, frame(c.GoAway.TYPE, encode_varint(9000) + bytes(9000) + b"\x00"), None, False),
        # 33 namespace fields (the limit is 32)
        (PV, None, frame(c.Subscribe.TYPE, b"\x00\x21" + b"\x01a" * 33 + b"\x01t\x00"), False),
        # an Object Payload Length of 2^62 on a data stream is an object too large (below)
    ]
    run(relay, "lengths", lambda: expect_closes(relay, cases))


def test_unknown_message_types(relay):
    cases = [
        (PV, frame(0x3F3F, b"\x01\x02\x03"), None, False),  # on the control stream
        (PV, frame(0x20, b""), None, False),  # draft-16 CLIENT_SETUP's type, after SETUP
        (PV, None, frame(0x7F00, b"ab"), False),  # on a request stream
        (PV, None, c.SubscribeOk(1).encode(), False),  # known, but cannot open a request stream
        (PV, None, None, False, b"\x04\x00\x00"),  # an unknown unidirectional stream type
    ]
    run(relay, "types", lambda: expect_closes(relay, cases))


def test_invalid_varints(relay):
    cases = [
        # a 9-byte Request ID whose 8 value bytes are past the message's Length
        (PV, None, frame(c.Subscribe.TYPE, b"\xff\x01"), False),
        # a two-byte varint (Track Name Length) cut off by the Length
        (PV, None, frame(c.Subscribe.TYPE, b"\x00\x01\x04live\x80"), False),
        # parameter Type Deltas summing past 2^64-1
        (PV, None, frame(c.Subscribe.TYPE, SUB_PAYLOAD[:-1] + b"\x02\x20\x01" + b"\xff" * 9 + b"\x00"), False),
        # Setup Option type deltas summing past 2^64-1
        (PV, None, None, False, frame(0x2F00, b"\x07\x01a" + b"\xff" * 9 + b"\x00")),
        # a Key-Value-Pair value length running past the message: KEY_VALUE_FORMATTING_ERROR
        (KVP, None, None, False, frame(0x2F00, b"\x07\x05ab")),
        # a unidirectional stream ending inside its type varint
        (PV, None, None, True, b"\xff\x00\x00"),
    ]
    run(relay, "varints", lambda: expect_closes(relay, cases))


def test_request_id_abuse(relay):
    ns = namespace_from_str("live/abuse")

    async def too_many() -> None:
        """More concurrently open requests than --max-requests-per-session: the excess is
        refused with EXCESSIVE_LOAD, the session stays, earlier requests stay answered."""
        peer = await Peer.open(relay)
        try:
            await peer.setup()
            sids = [peer.request(c.SubscribeNamespace(2 * i, ns + (b"p%d" % i,)).encode())
                    for i in range(MAX_REQUESTS + 10)]

            def answers() -> list:
                return [peer.messages.get(s, [None])[0] for s in sids]
            await wait_until(lambda: all(a is not None for a in answers()), timeout=20, what="every answer")
            codes = [a.error_code if isinstance(a, c.RequestError) else "ok" for a in answers()]
            assert codes.count(RequestErrorCode.EXCESSIVE_LOAD) >= 10 and "ok" in codes, codes
            assert not peer.closed.done()
        finally:
            peer.close()

    cases = [
        (BAD_ID, None, c.Subscribe(1, ns, b"t").encode(), False),  # a server's (odd) ID from a client
    ]

    async def attack() -> None:
        reuse = []
        for _ in range(PEERS):  # the same ID on two request streams
            peer = await Peer.open(relay)
            await peer.setup()
            peer.request(c.SubscribeNamespace(4, ns + (b"x",)).encode())
            peer.request(c.Subscribe(4, ns, b"t").encode())
            reuse.append(peer)
        try:
            await asyncio.gather(too_many(), expect_closes(relay, cases),
                                 *(p.close_code() for p in reuse))
            assert [p.closed.result().error_code for p in reuse] == [BAD_ID] * PEERS
        finally:
            for p in reuse:
                p.close()

    run(relay, "request_ids", attack)


def test_objects_over_max_object_size(relay):
    """A publisher whose objects exceed --max-object-size: each such data stream is stopped with
    EXCESSIVE_LOAD as soon as the object's length is read; its session and everyone else's go on."""
    async def one(i: int) -> None:
        ns = namespace_from_str(f"live/big/{i}")
        bad = await Peer.open(relay)
        viewer = await connect(relay, "moqt")
        try:
            await bad.setup()
            bad.request(c.PublishNamespace(0, ns).encode())
            await wait_until(lambda: any(isinstance(m, c.RequestOk) for ms in bad.messages.values() for m in ms),
                             timeout=20, what="PUBLISH_NAMESPACE's REQUEST_OK")
            sub_task = asyncio.create_task(viewer.subscribe(ns, b"t"))

            def upstream_subscribe() -> int | None:
                return next((sid for sid, ms in bad.messages.items() if ms and isinstance(ms[0], c.Subscribe)), None)
            await wait_until(lambda: upstream_subscribe() is not None, timeout=20, what="the relay's SUBSCRIBE")
            bad.t.send_stream_data(upstream_subscribe(), c.SubscribeOk(7).encode())
            streams = []
            for group, size in enumerate((MAX_OBJECT + 1, 1 << 62)):
                sid = bad.t.open_stream(True)
                head = SubgroupHeader(7, group).encode() + encode_subgroup_object(None, 0, size)
                bad.t.send_stream_data(sid, head + bytes(4096))
                streams.append(sid)
            await wait_until(lambda: all(s in bad.stopped for s in streams), timeout=20, what="STOP_SENDING")
            assert [bad.stopped[s] for s in streams] == [StreamResetCode.EXCESSIVE_LOAD] * 2
            sub = await sub_task
            assert sub is not None and not bad.closed.done() and not viewer.is_closed
        finally:
            await viewer.aclose()
            bad.close()

    run(relay, "too_large", lambda: asyncio.gather(*(one(i) for i in range(3))))
