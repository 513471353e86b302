"""Admission of new connections: per-source limits checked at the first packet (before any TLS
work), QUIC Retry, the handshake timeout, and the one path rule for both transports."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl

import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from moq.connection import Connection
from moq.errors import SessionErrorCode
from moq.session import SessionConfig
from moq.transport.admission import HANDSHAKE_TIMEOUT, RATE, SESSIONS, SourceLimits, source_of
from moq.transport.endpoint import connect, serve
from moq.wire.path import MALFORMED, NOT_FOUND, check_path

from .test_support import CREDS, run_async

pytestmark = pytest.mark.timeout(60)

BAD_PATHS = {
    "/a#b": MALFORMED, "/../etc/passwd": NOT_FOUND, "/a/%2e%2E/b": NOT_FOUND, "/a/./b": NOT_FOUND,
    "/x\x00y": MALFORMED, "/x\ty": MALFORMED, "/caf\u00e9": MALFORMED, "/sp ace": MALFORMED, "/a%00b": MALFORMED,
    "/" + "a" * 3000: MALFORMED, "live": MALFORMED,
}
GOOD_PATHS = ("/", "/live/room?jwt=eyJhbGciOi.eyJyb290Ijo.sig", "/a/b..c/", "/%7Euser")


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_handshake_rate_is_a_token_bucket_per_source() -> None:
    clock = Clock()
    limits = SourceLimits(handshakes_per_second=4, burst=2, clock=clock)
    assert [limits.check(("10.0.0.1", p)) for p in range(3)] == [None, None, RATE]  # the burst, then refused
    assert limits.check(("10.0.0.2", 1)) is None  # another source has its own bucket
    clock.t += 0.25  # one token back
    assert [limits.check(("10.0.0.1", 9)) for _ in range(2)] == [None, RATE]
    assert limits.refused == {RATE: 2}
    assert SourceLimits(handshakes_per_second=100).burst == 50  # default: half a second's worth


def test_concurrent_connections_per_source_and_ipv6_prefix() -> None:
    seen: list[str] = []
    limits = SourceLimits(max_sessions=2, on_refused=seen.append)
    keys = [limits.opened(("2001:db8:1:2::5", 1)), limits.opened(("2001:db8:1:2:ffff::9", 2, 0, 0))]
    assert keys == ["2001:db8:1:2::/64"] * 2  # one IPv6 /64 is one source
    assert limits.check(("2001:db8:1:2::7", 3)) == SESSIONS
    assert limits.check(("2001:db8:1:3::7", 3)) is None  # the next /64 is another
    limits.closed(keys[0])
    assert limits.check(("2001:db8:1:2::7", 3)) is None
    assert seen == [SESSIONS]
    assert source_of(("::ffff:192.0.2.7", 5)) == "192.0.2.7"


def test_idle_sources_are_forgotten() -> None:
    clock = Clock()
    limits = SourceLimits(handshakes_per_second=10, clock=clock)
    for i in range(20_000):  # a spoofed flood: every Initial from a new address
        limits.check((f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 1))
        clock.t += 0.01
    assert len(limits._sources) < 9000  # swept as it grows, not kept forever


def test_one_path_rule() -> None:
    for path, kind in BAD_PATHS.items():
        result = check_path(path.encode("utf-8"))
        assert result is not None and result[0] == kind, (path, result)
    for path in GOOD_PATHS:
        assert check_path(path.encode()) is None, path


def _initial(port: int) -> bytes:
    """A client's first datagram (Initial + ClientHello), from a client that never continues."""
    q = QuicConnection(configuration=QuicConfiguration(is_client=True, alpn_protocols=["moqt-18"],
                                                       verify_mode=ssl.CERT_NONE, server_name="localhost"))
    q.connect(("127.0.0.1", port), now=0.0)
    return q.datagrams_to_send(now=0.0)[0][0]


def test_sessions_per_source_are_capped_before_the_handshake() -> None:
    async def main() -> None:
        limits = SourceLimits(max_sessions=2)
        server = await serve("127.0.0.1", 0, CREDS, lambda s: None, limits=limits)
        url = f"moqt://127.0.0.1:{server.port}/"
        try:
            first = [await connect(url, insecure=True) for _ in range(2)]
            with pytest.raises(TimeoutError):  # dropped at its first packet: no answer at all
                await connect(url, insecure=True, timeout=1.0)
            assert limits.refused[SESSIONS] >= 1
            first[0].close()
            await first[0].wait_closed()
            await asyncio.sleep(0.1)
            again = await connect(url, insecure=True)  # a slot is free again
            again.close()
            first[1].close()
        finally:
            await server.aclose()

    run_async(main())


def test_handshake_rate_drops_then_the_client_retransmits() -> None:
    async def main() -> None:
        limits = SourceLimits(handshakes_per_second=2, burst=1)
        server = await serve("127.0.0.1", 0, CREDS, lambda s: None, limits=limits)
        url = f"moqt://127.0.0.1:{server.port}/"
        try:
            a = await connect(url, insecure=True)
            b = await connect(url, insecure=True, timeout=5)  # its first Initial dropped, a retransmission admitted
            assert limits.refused[RATE] >= 1
            a.close()
            b.close()
        finally:
            await server.aclose()

    run_async(main())


def test_retry_proves_the_address_before_any_state() -> None:
    async def main() -> None:
        server = await serve("127.0.0.1", 0, CREDS, lambda s: None, retry=True)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.bind(("127.0.0.1", 0))
            loop = asyncio.get_running_loop()
            await loop.sock_sendto(sock, _initial(server.port), ("127.0.0.1", server.port))
            reply = await asyncio.wait_for(loop.sock_recv(sock, 2048), 5)
            sock.close()
            assert reply[0] & 0x80 and (reply[0] & 0x30) >> 4 == 3, reply[:1].hex()  # a long-header Retry (v1)
            assert server.sessions == [] and server.limits.open_count(("127.0.0.1", 0)) == 0  # nothing kept
            session = await connect(f"moqt://127.0.0.1:{server.port}/", insecure=True)  # a real client passes
            assert server.limits.open_count(("127.0.0.1", 0)) == 1
            session.close()
            await session.wait_closed()
        finally:
            await server.aclose()

    run_async(main())


def test_a_handshake_that_never_completes_is_dropped() -> None:
    async def main() -> None:
        server = await serve("127.0.0.1", 0, CREDS, lambda s: None, handshake_timeout=0.3)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.sendto(_initial(server.port), ("127.0.0.1", server.port))
            for _ in range(100):
                await asyncio.sleep(0.05)
                if server.limits.refused[HANDSHAKE_TIMEOUT]:
                    break
            sock.close()
            assert server.limits.refused[HANDSHAKE_TIMEOUT] == 1
            assert server.limits.open_count(("127.0.0.1", 0)) == 0
        finally:
            await server.aclose()

    run_async(main())


@pytest.mark.parametrize("path", list(BAD_PATHS))
def test_bad_paths_are_refused_on_both_transports(path: str) -> None:
    async def main() -> None:
        server = await serve("127.0.0.1", 0, CREDS, lambda s: Connection(s) and None)
        try:
            transport = await connect(f"moqt://127.0.0.1:{server.port}/", insecure=True)
            conn = Connection(transport, config=SessionConfig(path=path))
            closed = await asyncio.wait_for(conn.wait_closed(), 5)  # the server's SETUP may come first
            assert closed.error_code == SessionErrorCode.MALFORMED_PATH, closed
            await transport.wait_closed()

            dial = connect(f"https://127.0.0.1:{server.port}/", insecure=True, timeout=5)
            dial._target = dataclasses.replace(dial._target, path=path)
            with pytest.raises(ConnectionError) as err:
                await dial
            status = "404" if BAD_PATHS[path] == NOT_FOUND else "400"
            # (a NUL is refused by HTTP/3 itself, H3_MESSAGE_ERROR, before the CONNECT reaches us)
            assert f"rejected with status {status}" in str(err.value) or (
                "\x00" in path and "forbidden characters" in str(err.value)), err.value
        finally:
            await server.aclose()

    run_async(main())


def test_an_expired_handshake_leaves_nothing_behind() -> None:
    """Aborted connections (no closing period) are unregistered from the listener too."""
    async def main() -> None:
        server = await serve("127.0.0.1", 0, CREDS, lambda s: None, handshake_timeout=0.2)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            for _ in range(5):
                sock.sendto(_initial(server.port), ("127.0.0.1", server.port))
            for _ in range(100):
                await asyncio.sleep(0.05)
                if server.limits.refused[HANDSHAKE_TIMEOUT] == 5:
                    break
            sock.close()
            assert server.limits.refused[HANDSHAKE_TIMEOUT] == 5
            assert server._listener._protocols == {}  # aioquic would route to (and keep) them forever
        finally:
            await server.aclose()

    run_async(main())


def test_finished_streams_are_freed_without_the_garbage_collector() -> None:
    """A stream per group and subscriber: none may be left to the cyclic GC, whose full
    collections stall the event loop (each stream's seam hooks once referenced the stream)."""
    import gc

    from moq.transport.base import StreamData

    async def main() -> None:
        got: list[int] = []

        def on_session(session) -> None:
            session.set_handler(lambda e: got.append(e.stream_id) if isinstance(e, StreamData) and e.end_stream
                                else None)

        server = await serve("127.0.0.1", 0, CREDS, on_session)
        client = await connect(f"moqt://127.0.0.1:{server.port}/", insecure=True)
        try:
            for _ in range(5):  # warm up
                client.send_stream_data(client.open_stream(True), b"x" * 100, end_stream=True)
            await asyncio.sleep(0.3)
            gc.collect()
            gc.disable()
            for _ in range(200):
                client.send_stream_data(client.open_stream(True), b"x" * 1000, end_stream=True)
                await asyncio.sleep(0.002)
            for _ in range(100):
                if len(got) >= 205:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # the last acknowledgements
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            leaked = sum(1 for o in gc.garbage if type(o).__name__ == "QuicStream")
            assert len(got) >= 205 and leaked == 0, (len(got), leaked)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
            client.close()
            await server.aclose()

    run_async(main())


def test_incomplete_request_streams_are_capped() -> None:
    """A peer may not hold more than 64 request streams whose first message is incomplete (each
    may buffer up to a 64 KiB message): the next one is stopped and reset with EXCESSIVE_LOAD."""
    from moq.errors import StreamResetCode
    from moq.session import Role, Session
    from moq.session import events as ev
    from moq.session.core import MAX_PENDING_REQUEST_STREAMS
    from moq.wire import control as c
    from moq.wire.control import SetupOption

    ids = iter(range(3, 10_000, 4))
    server = Session(Role.SERVER, "moqt-18", lambda uni: next(ids))
    server.start()
    server.receive_stream_data(2, c.Setup(((SetupOption.PATH, b"/"),)).encode())
    assert server.ready
    server.take_actions()
    partial = c.Subscribe(0, (b"live",), b"video").encode()[:5]  # type and length, not the whole message
    for n in range(MAX_PENDING_REQUEST_STREAMS + 1):
        server.receive_stream_data(4 * n, partial)
    stopped = [a for a in server.take_actions() if isinstance(a, (ev.StopSending, ev.ResetStream))]
    last = 4 * MAX_PENDING_REQUEST_STREAMS
    assert [(type(a), a.stream_id, a.error_code) for a in stopped] == [
        (ev.StopSending, last, StreamResetCode.EXCESSIVE_LOAD), (ev.ResetStream, last, StreamResetCode.EXCESSIVE_LOAD)]
    server.receive_stream_data(last, b"more bytes")  # ignored
    assert server.closed is None
