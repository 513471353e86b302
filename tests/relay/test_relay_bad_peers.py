"""Peers that break the protocol on their control stream (or a request stream) lose their
session with PROTOCOL_VIOLATION (0x3) (draft-18 § Control Messages, § SETUP), while the
relay process and everyone else's sessions carry on.  The bad peers are raw transport
sessions writing hand-made bytes (relayproc.bad_session); the close code is what the
transport reports: the CONNECTION_CLOSE application error code (raw QUIC) or the
CLOSE_WEBTRANSPORT_SESSION capsule's code (WebTransport)."""

from __future__ import annotations

import asyncio

import pytest

from moq.errors import SessionErrorCode
from moq.wire import control as c
from moq.wire.control import SetupOption
from moq.wire.types import namespace_from_str

from .relayproc import CountingPublisher, RelayProcess, bad_session, connect, frame, take, wait_until

pytestmark = pytest.mark.timeout(30)

SETUP = c.Setup(((SetupOption.MOQT_IMPLEMENTATION, b"bad-peer/0"),)).encode()  # its type opens the stream
GOAWAY_PAYLOAD = c.GoAway(b"", 0).encode()[3:]  # a client's GOAWAY: empty URI, timeout 0 (2 bytes)
SUBSCRIBE_PAYLOAD = c.Subscribe(0, namespace_from_str("live/x"), b"video").encode()[3:]

# (bytes on our control stream, bytes on a request stream opened once the relay's SETUP is in)
CASES = {
    # not a stream type at all where the control stream should start
    "garbage": (bytes.fromhex("7f 13 37 de ad be ef 00 ff 42") * 8, None),
    # SETUP, then bytes that are no known control message
    "unknown_message_type": (SETUP + frame(0x3F3F, b"\x01\x02\x03"), None),
    # a GOAWAY whose Length claims 3 bytes more than its fields
    "length_too_long": (SETUP + frame(c.GoAway.TYPE, GOAWAY_PAYLOAD + b"\x00\x00\x00"), None),
    # a GOAWAY whose Length cuts its fields short (the rest follows as if it were a message)
    "length_too_short": (SETUP + frame(c.GoAway.TYPE, GOAWAY_PAYLOAD, length=1), None),
    # § SETUP: exactly one per session
    "second_setup": (SETUP + SETUP, None),
    # the same rules on a request stream: an unknown type, a SUBSCRIBE with a wrong Length
    "request_unknown_type": (SETUP, frame(0x3F3F, b"ab")),
    "request_length_too_long": (SETUP, frame(c.Subscribe.TYPE, SUBSCRIBE_PAYLOAD + b"\x00\x00")),
}


@pytest.fixture(scope="module")
def relay():
    with RelayProcess("--drain-timeout", "1") as r:
        yield r
        assert r.alive(), "the relay process died"
        assert r.stop() == 0, r.log_tail()


@pytest.mark.parametrize("scheme", ["moqt", "https"])
@pytest.mark.parametrize("case", list(CASES))
def test_bad_control_stream_is_protocol_violation(relay, scheme, case):
    ns = namespace_from_str(f"live/bad/{case}/{scheme}")

    async def main() -> None:
        pub = CountingPublisher()
        pconn = await connect(relay, scheme, handler=pub)
        track = pub.create_track(ns, b"video")
        await pconn.publish_namespace(ns)
        good_conn = await connect(relay, "https" if scheme == "moqt" else "moqt")
        good = await good_conn.subscribe(ns, b"video")
        await wait_until(lambda: len(track.sinks) == 1, what="the upstream subscription")

        track.write(0, 0, b"before")
        assert [bytes(o.payload) for o in await take(good, 1)] == [b"before"]

        closed = await bad_session(relay, scheme, *CASES[case])
        assert closed.error_code == SessionErrorCode.PROTOCOL_VIOLATION, closed

        # the good subscriber's session is untouched and keeps receiving
        for o in range(1, 4):
            track.write(0, o, b"after%d" % o)
        track.end_group(0)
        assert [bytes(o.payload) for o in await take(good, 3)] == [b"after1", b"after2", b"after3"]
        assert not good_conn.is_closed and not pconn.is_closed
        await good_conn.aclose()
        await pconn.aclose()

    asyncio.run(main())
    assert relay.alive()
    assert relay.http_get("/healthz").startswith(b"ok")
