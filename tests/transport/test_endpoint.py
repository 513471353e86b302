"""serve()/connect(): URLs, binding, one port for both transports, task ownership, failures."""

from __future__ import annotations

import asyncio
import socket

import pytest

from moq.transport.base import StreamData
from moq.transport.endpoint import connect, parse_url, serve
from moq.transport.quic import SessionBase

from .test_support import CREDS, Recorder, run_async, url_for

pytestmark = pytest.mark.timeout(30)


def test_parse_url() -> None:
    u = parse_url("moqt://relay.example:4443/app/room?x=1")
    assert (u.kind, u.host, u.port, u.authority, u.path) == (
        "quic",
        "relay.example",
        4443,
        "relay.example:4443",
        "/app/room?x=1",
    )
    u = parse_url("https://[::1]/")
    assert (u.kind, u.host, u.port, u.authority, u.path) == ("webtransport", "::1", 443, "[::1]", "/")
    assert parse_url("moqt://h").path == "/"
    for bad, match in [
        ("http://h/", "scheme"),
        ("moqt:///path", "no host"),
        ("moqt://h:99999/", "invalid"),
        ("relay:443", "scheme"),
    ]:
        with pytest.raises(ValueError, match=match):
            parse_url(bad)


def test_one_port_serves_both_and_runs_async_handlers() -> None:
    """Both transports on one port; async on_session handlers run in tasks cancelled on close."""
    started: list[SessionBase] = []
    cancelled: list[str] = []

    async def on_session(session: SessionBase) -> None:
        started.append(session)
        rec = Recorder(session)
        try:
            await rec.wait(lambda: rec.of(StreamData))
            session.send_stream_data(rec.of(StreamData)[0].stream_id, session.kind.encode(), end_stream=True)
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(session.kind)
            raise

    async def main() -> None:
        server = await serve("127.0.0.1", 0, CREDS, on_session)
        assert server.port > 0
        clients = []
        for kind in ("quic", "webtransport"):
            client = await connect(url_for(kind, server), fingerprint=CREDS.fingerprint)
            rec = Recorder(client)
            sid = client.open_stream(unidirectional=False)
            client.send_stream_data(sid, b"hi")
            await rec.wait(lambda rec=rec, sid=sid: rec.finished(sid))
            assert rec.data(sid) == kind.encode()
            clients.append(rec)
        assert len(server.sessions) == 2
        await server.aclose()
        for rec in clients:
            await rec.wait(lambda rec=rec: rec.closed())
            await asyncio.wait_for(rec.session.wait_closed(), 5)

    run_async(main())
    assert sorted(s.kind for s in started) == ["quic", "webtransport"]
    assert sorted(cancelled) == ["quic", "webtransport"]


def test_ipv6_and_async_context_manager() -> None:
    assert socket.has_ipv6, "the machines this runs on have IPv6 loopback (::1)"

    async def main() -> None:
        server = await serve("::1", 0, CREDS, lambda s: None)
        async with server:
            for scheme in ("moqt", "https"):
                async with connect(f"{scheme}://[::1]:{server.port}/v6", fingerprint=CREDS.fingerprint) as s:
                    assert s.peer == f"[::1]:{server.port}"
                    assert s.authority == f"[::1]:{server.port}"
                assert s.closed.is_set()

    run_async(main())


def test_unreachable_fails_clearly() -> None:
    async def main() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()  # nothing listens there now
        with pytest.raises((ConnectionError, TimeoutError), match=f"127.0.0.1:{port}"):
            await connect(f"moqt://127.0.0.1:{port}/", insecure=True, timeout=2)

        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound but never answers
        silent.bind(("127.0.0.1", 0))
        try:
            with pytest.raises(TimeoutError, match="within 0.5 s"):
                await connect(f"https://127.0.0.1:{silent.getsockname()[1]}/", insecure=True, timeout=0.5)
        finally:
            silent.close()
        with pytest.raises(ValueError):
            await connect("ftp://127.0.0.1/")

    run_async(main())


def test_keepalive_outlives_idle_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    import moq.transport.quic as quic_module

    monkeypatch.setattr(quic_module, "KEEPALIVE_INTERVAL", 0.2)

    async def main() -> None:
        accepted: list[SessionBase] = []
        server = await serve("127.0.0.1", 0, CREDS, accepted.append, idle_timeout=0.8)
        async with server:
            for kind in ("quic", "webtransport"):
                async with connect(url_for(kind, server), fingerprint=CREDS.fingerprint) as client:
                    await asyncio.sleep(2.0)  # silent application, but the connection stays up
                    assert not client.closed.is_set() and client.close_info is None

    run_async(main())
