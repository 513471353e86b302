"""Shared harness for the transport tests (no tests here): real UDP sockets on 127.0.0.1.

No pytest-asyncio: each test is a sync function that runs a coroutine with :func:`run_async`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from moq.transport import loop as moq_loop
from moq.transport.base import SessionClosed, StreamData, TransportEvent
from moq.transport.endpoint import Server, connect, serve
from moq.transport.quic import SessionBase
from moq.transport.tls import ServerCredentials

KINDS = ("quic", "webtransport")
CREDS = ServerCredentials.dev()


def run_async(
    coro: Coroutine[Any, Any, Any], *, use_uvloop: bool | None = None, timeout: float = 20.0
) -> Any:
    """Run ``coro`` on a fresh loop: plain asyncio, or uvloop when asked (or MOQ_TEST_UVLOOP=1)."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    if use_uvloop is None:
        use_uvloop = os.environ.get("MOQ_TEST_UVLOOP") == "1"
    return moq_loop.run(bounded(), use_uvloop=use_uvloop)


class Recorder:
    """Collects a session's events and lets a test wait for a condition on them."""

    def __init__(
        self, session: SessionBase, on_event: Callable[[Recorder, TransportEvent], None] | None = None
    ):
        self.session = session
        self.events: list[TransportEvent] = []
        self._data: dict[int, bytearray] = {}
        self._fin: set[int] = set()
        self._on_event = on_event
        self._changed = asyncio.Event()
        session.set_handler(self.handle)

    def handle(self, event: TransportEvent) -> None:
        if isinstance(event, StreamData):  # keep bulk payloads out of the event list
            self._data.setdefault(event.stream_id, bytearray()).extend(event.data)
            if event.end_stream:
                self._fin.add(event.stream_id)
            if len(event.data) > 4096:
                event = StreamData(event.stream_id, b"", event.end_stream, event.bidirectional)
        self.events.append(event)
        if self._on_event is not None:
            self._on_event(self, event)
        self._changed.set()

    async def wait(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        async with asyncio.timeout(timeout):
            while not (result := predicate()):
                self._changed.clear()
                await self._changed.wait()
        return result

    def of(self, cls: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]

    def data(self, stream_id: int) -> bytes:
        return bytes(self._data.get(stream_id, b""))

    def finished(self, stream_id: int) -> bool:
        return stream_id in self._fin

    def streams(self) -> list[int]:
        return list(dict.fromkeys(e.stream_id for e in self.of(StreamData)))

    def closed(self) -> SessionClosed | None:
        found = self.of(SessionClosed)
        return found[0] if found else None


def url_for(kind: str, server: Server, path: str = "/moq") -> str:
    scheme = "moqt" if kind == "quic" else "https"
    return f"{scheme}://127.0.0.1:{server.port}{path}"


@asynccontextmanager
async def session_pair(
    kind: str,
    *,
    path: str = "/moq",
    server_alpns: tuple[str, ...] = ("moqt-18",),
    server_on_event: Callable[[Recorder, TransportEvent], None] | None = None,
    **connect_kwargs: Any,
) -> AsyncIterator[tuple[Recorder, Recorder, Server]]:
    """A server and one connected client; yields (client recorder, server recorder, server)."""
    accepted: asyncio.Queue[SessionBase] = asyncio.Queue()
    server = await serve("127.0.0.1", 0, CREDS, accepted.put_nowait, alpns=server_alpns)
    try:
        connect_kwargs.setdefault("fingerprint", CREDS.fingerprint)
        client = await connect(url_for(kind, server, path), timeout=5, **connect_kwargs)
        srv = await asyncio.wait_for(accepted.get(), 5)
        server_rec = Recorder(srv, server_on_event)
        client_rec = Recorder(client)
        try:
            yield client_rec, server_rec, server
        finally:
            client.close()
            await asyncio.wait_for(client.wait_closed(), 5)
    finally:
        await server.aclose()


def echo(rec: Recorder, event: TransportEvent) -> None:
    """Server behaviour: echo every bidirectional stream back, FIN included."""
    if isinstance(event, StreamData) and event.bidirectional:
        rec.session.send_stream_data(event.stream_id, event.data, event.end_stream)
