"""Listening and dialing: one UDP port serves raw QUIC (``moqt-18``) and WebTransport (``h3``).

The server offers both ALPNs; each connection becomes a :class:`~moq.transport.quic.QuicSession`
or a :class:`~moq.transport.webtransport.WebTransportSession` once the handshake tells which
one the client picked.  The client picks by URL scheme: ``moqt://`` is raw QUIC, ``https://``
is WebTransport.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import urllib.parse
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from functools import partial

import structlog
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicErrorCode

from . import aioquic_seam as seam
from .admission import HANDSHAKE_TIMEOUT, SourceLimits
from .quic import DEFAULT_ALPNS, ConnectionProtocol, QuicSession, SessionBase, make_configuration
from .tls import CertificateMismatch, ClientVerification, ServerCredentials
from .udp import DatagramSender, grow_socket_buffers
from .webtransport import WebTransportSession

log = structlog.get_logger(__name__)

H3_ALPN = "h3"
DEFAULT_PORT = 443
HANDSHAKE_TIMEOUT_S = 10.0  # a connection not usable by then (QUIC handshake, WebTransport CONNECT) is dropped
_SOCKET_BUFFER = 8 * 1024 * 1024

OnSession = Callable[[SessionBase], Awaitable[None] | None]


def _grow_socket_buffers(sock: socket.socket) -> None:
    """Best effort: bulk media overflows the default UDP buffers on a busy loop."""
    grow_socket_buffers(sock, _SOCKET_BUFFER)


class _Listener(seam.ListenerBase):
    """The UDP socket's protocol: aioquic's server, asking the Server before a new connection."""

    def __init__(self, server: Server, **kwargs) -> None:
        super().__init__(**kwargs)
        self.server = server

    def admit(self, addr: tuple) -> bool:
        return self.server.limits.check(addr) is None


class Server:
    """A listening endpoint.  ``close()`` closes every connection at once and stops listening;
    ``await wait_closed()`` (or ``await aclose()``, or ``async with``) also waits for the
    ``on_session`` tasks, which are cancelled.

    ``limits`` (per-source connections and handshake rate) are checked before an Initial creates
    any state; ``retry`` answers every new Initial with a QUIC Retry first, so a connection costs
    a handshake only once its source address is proven; a connection not usable within
    ``handshake_timeout`` seconds is dropped (counted in ``limits.refused``)."""

    def __init__(
        self,
        credentials: ServerCredentials,
        on_session: OnSession,
        alpns: Sequence[str],
        idle_timeout: float | None,
        limits: SourceLimits | None = None,
        retry: bool = False,
        handshake_timeout: float = HANDSHAKE_TIMEOUT_S,
    ) -> None:
        self._on_session = on_session
        self.limits = limits if limits is not None else SourceLimits()
        self.retry = retry
        self.handshake_timeout = handshake_timeout
        self.alpns = tuple(alpns)
        self.credentials = credentials
        config = make_configuration(
            is_client=False,
            alpns=[*self.alpns, H3_ALPN],
            **({"idle_timeout": idle_timeout} if idle_timeout else {}),
        )
        credentials.configure(config)
        self._config = config
        self._listener: _Listener | None = None
        self._sender: DatagramSender | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._connections: set[ConnectionProtocol] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.host = ""
        self.port = 0

    async def _start(self, host: str, port: int, reuse_port: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self._transport, self._listener = await loop.create_datagram_endpoint(
            lambda: _Listener(self, configuration=self._config, create_protocol=self._create_protocol,
                              retry=self.retry),
            local_addr=(host, port),
            reuse_port=reuse_port or None,
        )
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            _grow_socket_buffers(sock)
        self._sender = DatagramSender(self._transport)  # one for every connection on this socket
        sockname = self._transport.get_extra_info("sockname")
        self.host, self.port = sockname[0], sockname[1]
        log.info("listening", host=self.host, port=self.port, alpns=[*self.alpns, H3_ALPN])

    def _create_protocol(self, quic: QuicConnection, stream_handler: object = None) -> ConnectionProtocol:
        conn = ConnectionProtocol(quic, app_factory=self._make_app, sender=self._sender)
        self._connections.add(conn)
        source = self.limits.opened(self._listener.incoming or ("", 0))  # type: ignore[union-attr]
        expiry = conn.loop.call_later(self.handshake_timeout, self._handshake_expired, conn)
        conn.on_terminated.append(partial(self._ended, source, expiry))
        conn.ready.add_done_callback(self._session_ready)
        conn.ready.add_done_callback(lambda _: expiry.cancel())
        return conn

    def _ended(self, source: str, expiry: asyncio.TimerHandle, conn: ConnectionProtocol) -> None:
        expiry.cancel()
        self._connections.discard(conn)
        self.limits.closed(source)
        if conn.aborted and self._listener is not None and not self._closed:  # (close() drops them all)
            self._listener.forget(conn)

    def _handshake_expired(self, conn: ConnectionProtocol) -> None:
        if not conn.ready.done() and not conn.dead:
            self.limits.refuse(HANDSHAKE_TIMEOUT)
            conn.abort(QuicErrorCode.CONNECTION_REFUSED, "handshake timeout")

    def _make_app(self, conn: ConnectionProtocol, alpn: str) -> QuicSession | WebTransportSession | None:
        if alpn == H3_ALPN:
            return WebTransportSession(conn, is_client=False, alpns=self.alpns)
        if alpn in self.alpns:
            return QuicSession(conn, is_client=False, protocol=alpn)
        return None

    def _session_ready(self, ready: asyncio.Future[SessionBase]) -> None:
        if ready.cancelled() or ready.exception() is not None or self._closed:
            return
        session = ready.result()
        try:
            result = self._on_session(session)
        except Exception:
            log.exception("on_session_failed", peer=session.peer)
            session.close(1, "internal error")
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(partial(self._task_done, session))

    def _task_done(self, session: SessionBase, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("on_session_failed", peer=session.peer, exc_info=task.exception())
            session.close(1, "internal error")

    def set_credentials(self, credentials: ServerCredentials) -> None:
        """Serve `credentials` to new connections (a rotated certificate); established ones keep theirs
        (aioquic reads the configuration's certificate when a connection's first packet arrives)."""
        credentials.configure(self._config)
        self.credentials = credentials

    @property
    def sessions(self) -> list[SessionBase]:
        """Sessions that are currently established (diagnostics)."""
        return [
            c.app
            for c in self._connections
            if isinstance(c.app, SessionBase) and c.ready.done() and not c.ready.exception()
        ]

    def close(self, error_code: int = 0, reason: str = "server shutting down") -> None:
        if self._closed:
            return
        self._closed = True
        for conn in list(self._connections):
            conn.abort(error_code, reason)
        self._connections.clear()
        for task in self._tasks:
            task.cancel()
        if self._transport is not None:
            self._transport.close()
        if self._sender is not None:
            self._sender.close()
        log.info("stopped_listening", port=self.port)

    async def wait_closed(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self) -> None:
        self.close()
        await self.wait_closed()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def serve(
    host: str,
    port: int,
    credentials: ServerCredentials,
    on_session: OnSession,
    *,
    alpns: Sequence[str] = DEFAULT_ALPNS,
    idle_timeout: float | None = None,
    reuse_port: bool = False,
    limits: SourceLimits | None = None,
    retry: bool = False,
    handshake_timeout: float = HANDSHAKE_TIMEOUT_S,
) -> Server:
    """Listen on ``host:port`` (IPv4 or IPv6 literal or name; port 0 picks a free port, see
    ``Server.port``) for raw QUIC (``alpns``) and WebTransport (``h3``) connections.
    ``reuse_port`` sets SO_REUSEPORT, so several processes can share the port (moq-relay --workers).
    ``limits``, ``retry`` and ``handshake_timeout``: see :class:`Server`.

    ``on_session(session)`` is called once per established session.  It may be a plain
    function or return an awaitable; the server runs the latter in a task it cancels on close.
    """
    server = Server(credentials, on_session, alpns, idle_timeout, limits, retry, handshake_timeout)
    await server._start(host, port, reuse_port)
    return server


@dataclass(frozen=True)
class ParsedURL:
    kind: str  # "quic" or "webtransport"
    host: str
    port: int
    authority: str
    path: str  # path and query, at least "/"


def parse_url(url: str) -> ParsedURL:
    """Parse ``moqt://host[:port]/path`` (raw QUIC) or ``https://host[:port]/path`` (WebTransport)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid MoQ URL {url!r}: {exc}") from None
    kinds = {"moqt": "quic", "https": "webtransport"}
    if parts.scheme not in kinds:
        raise ValueError(
            f"unsupported URL scheme in {url!r}: use moqt://host[:port]/path (raw QUIC) "
            "or https://host[:port]/path (WebTransport)"
        )
    if not parts.hostname:
        raise ValueError(f"URL {url!r} has no host")
    host = parts.hostname
    host_part = f"[{host}]" if ":" in host else host
    authority = host_part if port is None else f"{host_part}:{port}"
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return ParsedURL(kinds[parts.scheme], host, port or DEFAULT_PORT, authority, path)


def _tried(target: ParsedURL, family: int, addr: tuple, infos: list) -> str:
    """The address an error message names: what was tried, and why it may be the wrong one
    (a URL without a port; a name whose first address is IPv6 while the relay may listen on
    IPv4 only, as `localhost` -> [::1] against a relay bound to 127.0.0.1)."""
    host = f"[{addr[0]}]" if family == socket.AF_INET6 else addr[0]
    out = f"tried UDP {host}:{addr[1]}"
    notes = []
    if f":{target.port}" not in target.authority:
        notes.append(f"the URL gives no port: {target.port} is the default")
    if family == socket.AF_INET6 and ":" not in target.host and any(i[0] == socket.AF_INET for i in infos):
        v4 = next(i[4][0] for i in infos if i[0] == socket.AF_INET)
        notes.append(f"{target.host} is also {v4}: a relay listening on IPv4 only is not at {host}")
    return out + "".join(f"; {n}" for n in notes)


class connect:  # noqa: N801 - used like a function, as ``await connect(...)`` or ``async with``
    """Open a MoQ transport session to ``url``.

    ``session = await connect(url)`` returns the established session (close it with
    ``session.close()`` and ``await session.wait_closed()``); ``async with connect(url) as s:``
    does the same and closes it on exit.  Certificate checks: ``fingerprint`` (SHA-256 hex of
    the server certificate, colons allowed), ``insecure=True`` (none), or CA verification
    against ``cafile`` (default: certifi).  Raises ValueError for a bad URL, TimeoutError when
    nothing answers within ``timeout`` seconds, ConnectionError (e.g. CertificateMismatch) when
    the server refuses or cannot be verified.
    """

    def __init__(
        self,
        url: str,
        *,
        fingerprint: str | None = None,
        insecure: bool = False,
        cafile: str | None = None,
        alpns: Sequence[str] = DEFAULT_ALPNS,
        timeout: float = 10.0,
    ) -> None:
        self._target = parse_url(url)
        self._url = url
        self._verification = ClientVerification(fingerprint=fingerprint, insecure=insecure, cafile=cafile)
        self._alpns = tuple(alpns)
        self._timeout = timeout
        self._session: SessionBase | None = None

    def __await__(self) -> Generator[object, None, SessionBase]:
        return self._connect().__await__()

    async def __aenter__(self) -> SessionBase:
        self._session = await self._connect()
        return self._session

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.__aexit__(*exc)

    async def _connect(self) -> SessionBase:
        target, loop = self._target, asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_DGRAM)
        except socket.gaierror as exc:
            raise ConnectionError(f"cannot resolve {target.host!r}: {exc}") from None
        family, _, _, _, addr = infos[0]
        tried = _tried(target, family, addr, infos)
        wt = target.kind == "webtransport"
        config = make_configuration(is_client=True, alpns=[H3_ALPN] if wt else self._alpns)
        config.server_name = target.host
        self._verification.configure(config)

        def make_app(conn: ConnectionProtocol, alpn: str) -> SessionBase:
            if wt:
                return WebTransportSession(
                    conn, is_client=True, alpns=self._alpns, path=target.path, authority=target.authority
                )
            return QuicSession(
                conn, is_client=True, protocol=alpn, path=target.path, authority=target.authority
            )

        # A connected UDP socket: the kernel filters strangers and reports ICMP unreachable.
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            _grow_socket_buffers(sock)
            sock.connect(addr)
            transport, conn = await loop.create_datagram_endpoint(
                lambda: ConnectionProtocol(
                    QuicConnection(configuration=config),
                    app_factory=make_app,
                    verification=self._verification,
                    owns_transport=True,
                ),
                sock=sock,
            )
        except OSError as exc:
            sock.close()
            raise ConnectionError(f"cannot connect to {self._url} ({tried}): {exc}") from None
        conn.connect(addr)
        try:
            session = await asyncio.wait_for(asyncio.shield(conn.ready), self._timeout)
        except TimeoutError:
            conn.abort(0, "connect timeout")
            raise TimeoutError(f"no answer from {self._url} ({tried}) within {self._timeout} s") from None
        except asyncio.CancelledError:
            conn.abort(0, "cancelled")
            raise
        except CertificateMismatch:
            conn.abort(0, "certificate mismatch")  # the close frame is out; free the socket now
            raise
        except ConnectionError as exc:
            conn.abort(0, "setup failed")
            raise type(exc)(f"cannot connect to {self._url} ({tried}): {exc}") from exc
        log.info("connected", url=self._url, kind=session.kind, protocol=session.protocol)
        return session
