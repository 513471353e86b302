"""Stream, datagram, reset and close behaviour, identical over raw QUIC and WebTransport."""

from __future__ import annotations

import asyncio

import pytest

from moq.transport.base import (
    DatagramReceived,
    SessionClosed,
    SessionReady,
    StopSending,
    StreamData,
    StreamReset,
)

from .test_support import KINDS, Recorder, echo, run_async, session_pair

pytestmark = [pytest.mark.timeout(30), pytest.mark.parametrize("kind", KINDS)]


def test_client_bidi_echo(kind: str) -> None:
    payload = bytes(range(256)) * 400  # ~100 kB: several packets and flow-control updates

    async def main() -> None:
        async with session_pair(kind, server_on_event=echo) as (client, server, _):
            sid = client.session.open_stream(unidirectional=False)
            assert sid % 4 == 0  # client-initiated bidi QUIC stream id
            client.session.send_stream_data(sid, payload[:1000])
            client.session.send_stream_data(sid, memoryview(payload)[1000:], end_stream=True)
            await client.wait(lambda: client.finished(sid))
            assert client.data(sid) == payload
            assert server.data(sid) == payload
            assert all(e.bidirectional for e in server.of(StreamData))

    run_async(main())


def test_events_before_handler_are_buffered(kind: str) -> None:
    async def main() -> None:
        async with session_pair(kind) as (client, server, _):
            # SessionReady was emitted before the handler was set and still comes first.
            assert isinstance(client.events[0], SessionReady)
            assert isinstance(server.events[0], SessionReady)
            assert client.session.kind == server.session.kind == kind

    run_async(main())


def test_server_opens_bidi_and_uni(kind: str) -> None:
    """Server-opened streams reach the client, and the client's reply on the server-opened
    bidi stream reaches the server (the aioquic WebTransport pitfall, server role)."""

    async def main() -> None:
        async with session_pair(kind) as (client, server, _):
            bidi = server.session.open_stream(unidirectional=False)
            uni = server.session.open_stream(unidirectional=True)
            assert bidi % 4 == 1 and uni % 4 == 3
            server.session.send_stream_data(bidi, b"ping", end_stream=False)
            server.session.send_stream_data(uni, b"subgroup", end_stream=True)
            await client.wait(lambda: client.data(bidi) == b"ping" and client.finished(uni))
            assert client.data(uni) == b"subgroup"
            flags = {e.stream_id: e.bidirectional for e in client.of(StreamData)}
            assert flags == {bidi: True, uni: False}
            client.session.send_stream_data(bidi, b"pong", end_stream=True)
            await server.wait(lambda: server.finished(bidi))
            assert server.data(bidi) == b"pong"

    run_async(main())


def test_client_opens_uni_and_many_streams(kind: str) -> None:
    async def main() -> None:
        async with session_pair(kind) as (client, server, _):
            ids = [client.session.open_stream(unidirectional=True) for _ in range(200)]
            assert len(set(ids)) == 200 and all(i % 4 == 2 for i in ids)  # > aioquic's default 128
            for n, sid in enumerate(ids):
                client.session.send_stream_data(sid, b"obj%d" % n, end_stream=True)
            await server.wait(lambda: all(server.finished(sid) for sid in ids))
            assert [server.data(sid) for sid in ids] == [b"obj%d" % n for n in range(200)]
            assert not any(e.bidirectional for e in server.of(StreamData))

    run_async(main())


def test_datagrams_both_ways(kind: str) -> None:
    async def main() -> None:
        async with session_pair(kind) as (client, server, _):
            size = client.session.max_datagram_size()
            assert 1200 <= size < 1452
            assert server.session.max_datagram_size() >= 1200
            big = b"x" * size
            for _ in range(3):  # datagrams may be lost in theory; loopback does not lose them
                client.session.send_datagram(b"c2s")
                client.session.send_datagram(big)
                server.session.send_datagram(b"s2c")
            await server.wait(lambda: {e.data for e in server.of(DatagramReceived)} >= {b"c2s", big})
            await client.wait(lambda: any(e.data == b"s2c" for e in client.of(DatagramReceived)))
            with pytest.raises(ValueError, match="max_datagram_size"):
                client.session.send_datagram(big + b"!")
            # an oversized datagram must not block later ones
            client.session.send_datagram(b"after")
            await server.wait(lambda: any(e.data == b"after" for e in server.of(DatagramReceived)))

    run_async(main())


def test_reset_and_stop_sending_codes(kind: str) -> None:
    """Plain codes arrive unchanged on both transports (WebTransport maps them via HTTP/3)."""

    async def main() -> None:
        async with session_pair(kind) as (client, server, _):
            a = client.session.open_stream(unidirectional=False)
            client.session.send_stream_data(a, b"start")
            await server.wait(lambda: server.data(a) == b"start")
            client.session.reset_stream(a, 0x42)
            await server.wait(lambda: server.of(StreamReset))
            assert server.of(StreamReset) == [StreamReset(a, 0x42)]

            b = client.session.open_stream(unidirectional=False)
            client.session.send_stream_data(b, b"more")
            await server.wait(lambda: server.data(b) == b"more")
            client.session.stop_stream(b, 0x17)
            await server.wait(lambda: server.of(StopSending))
            assert server.of(StopSending) == [StopSending(b, 0x17)]
            # aioquic answers STOP_SENDING with RESET_STREAM carrying the same code
            await client.wait(lambda: StreamReset(b, 0x17) in client.events)
            # writing after the peer's STOP_SENDING is silently dropped, not an error
            server.session.send_stream_data(b, b"late", end_stream=True)

            u = server.session.open_stream(unidirectional=True)
            server.session.send_stream_data(u, b"group")
            await client.wait(lambda: client.data(u) == b"group")
            server.session.reset_stream(u, 0xFFFFFFFF)
            await client.wait(lambda: [e for e in client.of(StreamReset) if e.stream_id == u])
            assert [e for e in client.of(StreamReset) if e.stream_id == u] == [StreamReset(u, 0xFFFFFFFF)]
            assert server.session.is_client is False and client.session.is_client is True

    run_async(main())


@pytest.mark.parametrize("closer", ["client", "server"])
def test_close_with_code(kind: str, closer: str) -> None:
    async def main() -> None:
        async with session_pair(kind) as (client, server, _):
            active, passive = (client, server) if closer == "client" else (server, client)
            active.session.close(0x15, "going away")
            await passive.wait(lambda: passive.closed())
            assert passive.closed() == SessionClosed(0x15, "going away")
            await active.wait(lambda: active.closed())
            assert active.closed() == SessionClosed(0x15, "going away")
            await asyncio.wait_for(passive.session.wait_closed(), 5)
            await asyncio.wait_for(active.session.wait_closed(), 5)
            for rec in (client, server):
                assert len(rec.of(SessionClosed)) == 1
            with pytest.raises(ConnectionError):
                active.session.open_stream(unidirectional=True)
            active.session.send_datagram(b"ignored after close")

    run_async(main())


def test_server_shutdown_closes_sessions(kind: str) -> None:
    async def main() -> None:
        async with session_pair(kind) as (client, server, listener):
            listener.close()
            await client.wait(lambda: client.closed())
            assert client.closed() == SessionClosed(0, "server shutting down")
            assert server.closed() is not None
            await asyncio.wait_for(client.session.wait_closed(), 5)

    run_async(main())


def test_handler_exception_closes_session(kind: str) -> None:
    def explode(rec: Recorder, event: object) -> None:
        if isinstance(event, StreamData):
            raise RuntimeError("bug in the session layer")

    async def main() -> None:
        async with session_pair(kind, server_on_event=explode) as (client, server, _):
            sid = client.session.open_stream(unidirectional=True)
            client.session.send_stream_data(sid, b"boom", end_stream=True)
            await client.wait(lambda: client.closed())
            assert client.closed().error_code == 1

    run_async(main())
