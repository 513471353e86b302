"""The relay's limits on a real process: subscribers per track (REQUEST_ERROR
EXCESSIVE_LOAD), sessions (closed when the relay is full), object size (the stream is
given up with EXCESSIVE_LOAD, the track goes on), and their counters on /metrics."""

from __future__ import annotations

import asyncio

import pytest

from moq.connection import RequestRejectedError
from moq.errors import RequestErrorCode, SessionClosedError, SessionErrorCode, StreamResetCode
from moq.wire import control as c
from moq.wire.types import namespace_from_str

from .relayproc import CountingPublisher, RelayProcess, bad_session, connect, take, wait_until

pytestmark = pytest.mark.timeout(30)
NS = namespace_from_str("live/limits")
MAX_OBJECT = 100_000


class Recorder:
    """An ObjectListener: objects and stream ends (with reset codes) as they arrive."""

    def __init__(self) -> None:
        self.objects: list[tuple[int, int, int]] = []
        self.ends: list[tuple[int | None, int | None]] = []
        self.done = False

    def on_object(self, e) -> None:
        self.objects.append((e.group_id, e.object_id, len(e.payload)))

    def on_stream_end(self, e) -> None:
        self.ends.append((e.group_id, e.reset_code))

    def on_done(self, stream) -> None:
        self.done = True


async def publish(relay: RelayProcess, scheme: str = "moqt"):
    pub = CountingPublisher()
    pconn = await connect(relay, scheme, handler=pub)
    track = pub.create_track(NS, b"video")
    await pconn.publish_namespace(NS)
    return pub, pconn, track


def test_subscriber_and_session_limits():
    async def main(relay: RelayProcess) -> None:
        _, pconn, track = await publish(relay)
        conns = [await connect(relay, scheme) for scheme in ("https", "moqt", "https")]
        subs = [await c.subscribe(NS, b"video") for c in conns[:2]]
        # a third subscriber to the track (--max-subscribers-per-track 2)
        with pytest.raises(RequestRejectedError) as rej:
            await conns[2].subscribe(NS, b"video")
        assert rej.value.code == RequestErrorCode.EXCESSIVE_LOAD
        # a fifth session: the relay is full (--max-sessions 4)
        try:
            late = await connect(relay, "moqt")
            closed = await asyncio.wait_for(late.wait_closed(), 5)
            code, reason = closed.error_code, closed.reason
        except SessionClosedError as exc:
            code, reason = exc.code, exc.reason
        assert code == SessionErrorCode.INTERNAL_ERROR and "full" in reason, (code, reason)

        track.write(0, 0, b"still fine")
        for s in subs:
            assert [bytes(o.payload) for o in await take(s, 1)] == [b"still fine"]
        m = relay.metrics()
        assert m['moq_relay_requests_refused_total{reason="session_limit"}'] == 1
        assert m['moq_relay_requests_refused_total{reason="subscriber_limit"}'] == 1
        for conn in [*conns, pconn]:
            await conn.aclose()

    with RelayProcess("--drain-timeout", "1", "--max-sessions", "4", "--max-subscribers-per-track", "2") as relay:
        asyncio.run(main(relay))
        assert relay.stop() == 0, relay.log_tail()


@pytest.mark.parametrize("scheme", ["moqt", "https"])
def test_oversized_object_gives_up_its_stream_only(scheme):
    """--max-object-size: the relay stops reading a subgroup stream whose object is too large
    and resets that subgroup downstream (EXCESSIVE_LOAD); sessions and track go on."""

    async def main(relay: RelayProcess) -> None:
        pub, pconn, track = await publish(relay, scheme)
        conn = await connect(relay, scheme)
        rec = Recorder()
        await conn.subscribe(NS, b"video", listener=rec)
        await wait_until(lambda: len(track.sinks) == 1, what="the upstream subscription")
        track.write(0, 0, b"small")
        await wait_until(lambda: rec.objects, what="the first object")
        track.write(0, 1, bytes(2 * MAX_OBJECT))
        track.write(0, 2, b"lost")
        track.end_group(0)
        for o in range(3):
            track.write(1, o, b"g1")
        track.end_group(1)
        await wait_until(lambda: len(rec.ends) == 2, what="both subgroup streams to end")
        assert rec.objects == [(0, 0, 5), (1, 0, 2), (1, 1, 2), (1, 2, 2)]
        assert sorted(rec.ends, key=lambda e: e[0]) == [(0, StreamResetCode.EXCESSIVE_LOAD), (1, None)]
        assert not conn.is_closed and not pconn.is_closed and not rec.done
        await conn.aclose()
        await pconn.aclose()

    with RelayProcess("--drain-timeout", "1", "--max-object-size", str(MAX_OBJECT)) as relay:
        asyncio.run(main(relay))
        assert relay.stop() == 0, relay.log_tail()


def test_refusals_are_counted_by_reason():
    """/metrics exports moq_relay_requests_refused_total with reasons "object_too_large" and
    "protocol" (relay/metrics.py REFUSAL_REASONS): an oversized object and a peer's protocol
    violation must show there."""

    async def main(relay: RelayProcess) -> None:
        _, pconn, track = await publish(relay)
        conn = await connect(relay, "moqt")
        rec = Recorder()
        await conn.subscribe(NS, b"video", listener=rec)
        await wait_until(lambda: len(track.sinks) == 1, what="the upstream subscription")
        track.write(0, 0, b"small")
        await wait_until(lambda: rec.objects, what="the first object")
        track.write(0, 1, bytes(2 * MAX_OBJECT))
        track.end_group(0)
        await wait_until(lambda: rec.ends, what="the oversized object's stream to be given up")
        setup = c.Setup(()).encode()
        closed = await bad_session(relay, "moqt", setup + setup, None)  # a second SETUP
        assert closed.error_code == SessionErrorCode.PROTOCOL_VIOLATION
        await conn.aclose()
        await pconn.aclose()
        m = relay.metrics()
        counts = {r: m[f'moq_relay_requests_refused_total{{reason="{r}"}}'] for r in ("object_too_large", "protocol")}
        assert counts == {"object_too_large": 1, "protocol": 1}, counts

    with RelayProcess("--drain-timeout", "1", "--max-object-size", str(MAX_OBJECT)) as relay:
        asyncio.run(main(relay))
        assert relay.stop() == 0, relay.log_tail()
