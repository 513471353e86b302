"""Raw QUIC adapter: one aioquic connection per MoQ session, ALPN ``moqt-18``.

Three pieces live here because both transports share them:

* :func:`make_configuration` / :func:`tune_connection` — the QUIC settings MoQ needs
  (datagrams, large flow-control windows, many streams: one bidi stream per request and one
  uni stream per subgroup) and 1452-byte packets (DESIGN.md: pacing throughput).
* :class:`SessionBase` — the :class:`~moq.transport.base.TransportSession` plumbing: events
  are buffered until a handler is set, SessionClosed is delivered exactly once, and sends
  schedule one coalesced transmit per loop iteration.
* :class:`ConnectionProtocol` — the asyncio protocol.  It is created before ALPN is known, so
  it builds its "app" (a :class:`QuicSession` or a WebTransport session) only once the
  handshake completes, and it checks a pinned certificate fingerprint at that moment.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

import structlog
from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection, stream_is_unidirectional
from aioquic.quic.packet import QuicErrorCode, QuicFrameType

from . import aioquic_seam as seam
from .base import (
    DatagramReceived,
    SessionClosed,
    SessionReady,
    StopSending,
    StreamData,
    StreamReset,
    TransportEvent,
)
from .stats import STATS
from .tls import ClientVerification, peer_certificate, setup_failure
from .udp import DatagramSender

log = structlog.get_logger(__name__)

DEFAULT_ALPNS: tuple[str, ...] = ("moqt-18",)
MAX_DATAGRAM_SIZE = 1452  # UDP payload per packet (DESIGN.md: 1452-byte packets)
MAX_DATAGRAM_FRAME_SIZE = 65536
MAX_STREAM_DATA = 8 * 1024 * 1024
MAX_DATA = 64 * 1024 * 1024
IDLE_TIMEOUT = 60.0
KEEPALIVE_INTERVAL = 15.0  # MoQ control streams go quiet for minutes; aioquic never pings by itself
INTERNAL_ERROR = 0x1  # used when our own handler raises (MoQ INTERNAL_ERROR)
# aioquic keeps a DATAGRAM that does not fit a packet at the head of its queue forever, so
# we refuse those up front.  Worst case: short header (1 + 20-byte CID + 4-byte packet
# number), AEAD tag, DATAGRAM frame type and a 2-byte length.
_DATAGRAM_OVERHEAD = 1 + 20 + 4 + 16 + 1 + 2
_BAD_CERTIFICATE = QuicErrorCode.CRYPTO_ERROR + 42  # TLS alert bad_certificate


def make_configuration(
    *, is_client: bool, alpns: Sequence[str], idle_timeout: float = IDLE_TIMEOUT
) -> QuicConfiguration:
    return QuicConfiguration(
        is_client=is_client,
        alpn_protocols=list(alpns),
        max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE,
        max_datagram_size=MAX_DATAGRAM_SIZE,
        max_stream_data=MAX_STREAM_DATA,
        max_data=MAX_DATA,
        idle_timeout=idle_timeout,
    )


PrioritizedQuicConnection = seam.MoqQuicConnection  # the name older callers use
tune_connection = seam.tune_connection


def format_address(addr: tuple | None) -> str:
    if not addr:
        return ""
    host = str(addr[0]).removeprefix("::ffff:")
    return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"


class App(Protocol):
    """What :class:`ConnectionProtocol` drives once ALPN is known."""

    def quic_event(self, event: qe.QuicEvent) -> None: ...
    def terminated(self, error_code: int, reason: str) -> None: ...
    def abort(self, error_code: int, reason: str) -> None: ...


AppFactory = Callable[["ConnectionProtocol", str], App | None]


class SessionBase(ABC):
    """Shared TransportSession machinery (handler buffering, close-once, transmit scheduling)."""

    kind = ""

    def __init__(
        self,
        conn: ConnectionProtocol,
        *,
        is_client: bool,
        protocol: str = "",
        path: str = "",
        authority: str = "",
    ) -> None:
        self._conn = conn
        self._quic: seam.MoqQuicConnection = conn.quic
        self._loop = conn.loop
        self.is_client = is_client
        self.protocol = protocol
        self.path = path
        self.authority = authority
        self.peer = format_address(self._quic.get_peer_address())
        #: set once the QUIC connection has fully terminated (after the closing period)
        self.closed = asyncio.Event()
        #: the SessionClosed that was (or will be) delivered, once the session is over
        self.close_info: SessionClosed | None = None
        self._close_emitted = False
        self._closing = False
        self._handler: Callable[[TransportEvent], None] | None = None
        self._pending: deque[TransportEvent] = deque()
        self._flushing = False
        self._log = log.bind(peer=self.peer, kind=self.kind, role="client" if is_client else "server")

    # --- TransportSession ---------------------------------------------------------------

    def set_handler(self, handler: Callable[[TransportEvent], None]) -> None:
        """Install the event callback; events buffered so far are delivered synchronously now."""
        self._handler = handler
        self._flush()

    def transmit(self) -> None:
        self._conn.transmit()

    def set_priority(self, stream_id: int, key: tuple) -> None:
        """Send order among streams: lower keys first (see aioquic_seam.MoqQuicConnection)."""
        self._quic.set_stream_priority(stream_id, key)

    def send_backlog(self) -> int:
        """Stream bytes queued in aioquic and not yet sent or acknowledged (all streams): O(1),
        read by the relay per object to notice a subscriber that stopped reading."""
        return self._quic.send_backlog()

    def unanswered_probes(self) -> int:
        """Probe timeouts in a row with nothing acknowledged by the peer: above 0 for a while
        means the peer vanished without closing (QUIC itself waits for its idle timeout)."""
        return seam.pto_count(self._quic)

    def silent_for(self) -> float:
        """Seconds since the peer's last datagram: a relay pings peers silent for a while and drops
        those that stay silent with probes unanswered (a peer killed without closing)."""
        return self._loop.time() - self._conn.last_received

    def ping(self) -> None:
        """Send an ack-eliciting PING, so that a silent peer shows in unanswered_probes()."""
        if not self._closing:
            self._quic.send_ping(0)
            self._schedule()

    def abandon(self, reason: str = "") -> None:
        """Close at once and forget the connection, without a closing period (a dead peer)."""
        self._conn.abort(0, reason)

    def max_datagram_size(self) -> int:
        remote = seam.remote_max_datagram_frame_size(self._quic)
        if not remote:
            return 0
        return max(0, min(MAX_DATAGRAM_SIZE - _DATAGRAM_OVERHEAD, remote - 5) - self._datagram_prefix_size())

    async def wait_closed(self) -> None:
        await self.closed.wait()

    async def __aenter__(self) -> SessionBase:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()

    # --- helpers for subclasses ---------------------------------------------------------

    def _datagram_prefix_size(self) -> int:
        return 0

    def _check_datagram(self, data: bytes) -> None:
        limit = self.max_datagram_size()
        if len(data) > limit:
            raise ValueError(f"datagram of {len(data)} bytes exceeds max_datagram_size() = {limit}")

    def _schedule(self) -> None:
        self._conn.transmit_soon()

    def _send_dropped(self, stream_id: int) -> bool:
        return seam.send_dropped(self._quic, stream_id)

    def _emit(self, event: TransportEvent) -> None:
        """Queue an event for the handler; SessionClosed is delivered once and is the last event."""
        if self._close_emitted:
            return
        if isinstance(event, SessionClosed):
            if self.close_info is not None and self.close_info is not event:
                return
            self.close_info = event
            self._close_emitted = True
        self._pending.append(event)
        if self._handler is not None and not self._flushing:
            self._flush()

    def _emit_closed_soon(self, error_code: int, reason: str) -> None:
        """Local close: report it on the next loop iteration (never re-entering the caller)."""
        if self.close_info is None:
            info = self.close_info = SessionClosed(error_code, reason)
            self._loop.call_soon(self._emit, info)

    def _flush(self) -> None:
        if self._flushing:
            return
        self._flushing = True
        try:
            while self._pending and self._handler is not None:
                event = self._pending.popleft()
                try:
                    self._handler(event)
                except Exception:
                    self._log.exception("transport_handler_failed", event_type=type(event).__name__)
                    if not self._closing:
                        self.close(INTERNAL_ERROR, "internal error")
        finally:
            self._flushing = False

    def _ready(self) -> None:
        self._emit(SessionReady())
        self._conn.session_ready(self)

    def _finish(self, error_code: int, reason: str) -> None:
        """The QUIC connection is gone: report SessionClosed (if not yet) and set ``closed``."""
        self._closing = True
        if self.close_info is None:
            self._emit(SessionClosed(int(error_code), reason))
        if not self.closed.is_set():
            self.closed.set()
            info = self.close_info
            self._log.debug(  # the session's own session_closed line says it at info
                "connection_closed",
                error_code=info.error_code if info else error_code,
                reason=info.reason if info else reason,
            )

    @abstractmethod
    def close(self, error_code: int = 0, reason: str = "") -> None:
        """Close the session with an application error code (raw QUIC or WebTransport way)."""


class QuicSession(SessionBase):
    """TransportSession over a raw QUIC connection: stream ids and error codes pass unchanged."""

    kind = "quic"

    def __init__(
        self, conn: ConnectionProtocol, *, is_client: bool, protocol: str, path: str = "", authority: str = ""
    ) -> None:
        super().__init__(conn, is_client=is_client, protocol=protocol, path=path, authority=authority)
        if not is_client:
            self._log.debug("connection_accepted", protocol=protocol)  # session_ready follows at info
        self._ready()

    def quic_event(self, event: qe.QuicEvent) -> None:
        if isinstance(event, qe.StreamDataReceived):
            sid = event.stream_id
            self._emit(StreamData(sid, event.data, event.end_stream, not stream_is_unidirectional(sid)))
        elif isinstance(event, qe.DatagramFrameReceived):
            self._emit(DatagramReceived(event.data))
        elif isinstance(event, qe.StreamReset):
            self._emit(StreamReset(event.stream_id, event.error_code))
        elif isinstance(event, qe.StopSendingReceived):
            self._emit(StopSending(event.stream_id, event.error_code))

    def open_stream(self, unidirectional: bool) -> int:
        if self._closing:
            raise ConnectionError("session is closed")
        sid = self._quic.get_next_available_stream_id(is_unidirectional=unidirectional)
        self._quic.send_stream_data(sid, b"")  # allocate it now so the next call gets a new id
        return sid

    def send_stream_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool = False) -> None:
        if self._closing or self._send_dropped(stream_id):
            return
        self._quic.send_stream_data(stream_id, data, end_stream)
        self._schedule()

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        if self._closing:
            return
        self._quic.reset_stream(stream_id, error_code)
        self._schedule()

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        if self._closing or not seam.has_stream(self._quic, stream_id):
            return
        self._quic.stop_stream(stream_id, error_code)
        self._schedule()

    def send_datagram(self, data: bytes) -> None:
        if self._closing:
            return
        self._check_datagram(data)
        self._quic.send_datagram_frame(bytes(data))
        self._schedule()

    def close(self, error_code: int = 0, reason: str = "") -> None:
        """Send CONNECTION_CLOSE (application) with this code and reason; SessionClosed follows."""
        if self._closing:
            return
        self._closing = True
        self._quic.close(error_code=error_code, reason_phrase=reason)
        self._conn.transmit()
        self._emit_closed_soon(error_code, reason)

    # App protocol
    def terminated(self, error_code: int, reason: str) -> None:
        self._finish(error_code, reason)

    def abort(self, error_code: int, reason: str) -> None:
        self.close(error_code, reason)


class ConnectionProtocol(seam.ProtocolBase):
    """asyncio protocol for one QUIC connection; dispatches to an App chosen by ALPN.

    ``ready`` resolves with the TransportSession once it is usable (raw QUIC: handshake done;
    WebTransport: CONNECT answered) or fails with the reason the connection could not be set up.
    """

    def __init__(
        self,
        quic: QuicConnection,
        stream_handler: object = None,
        *,
        app_factory: AppFactory,
        verification: ClientVerification | None = None,
        owns_transport: bool = False,
        sender: DatagramSender | None = None,
    ) -> None:
        super().__init__(quic)
        tune_connection(quic)
        self._app_factory = app_factory
        self._verification = verification
        self._owns_transport = owns_transport
        self.sender = sender
        self.app: App | None = None
        self.ready: asyncio.Future[SessionBase] = self._loop.create_future()
        self.failure: Exception | None = None
        self._early: list[qe.QuicEvent] = []
        self._keepalive: asyncio.TimerHandle | None = None
        self.on_terminated: list[Callable[[ConnectionProtocol], None]] = []
        self.aborted = False
        self.last_received = self._loop.time()  # when the peer's last datagram arrived (silent_for)

    # --- called by apps -----------------------------------------------------------------

    def session_ready(self, session: SessionBase) -> None:
        if not self.ready.done():
            self.ready.set_result(session)

    def fail(self, exc: Exception) -> None:
        """Setting up the session failed: remember why (the caller closes the connection)."""
        self.failure = self.failure or exc
        if not self.ready.done():
            self.ready.set_exception(exc)

    # --- lifecycle ----------------------------------------------------------------------

    def abort(self, error_code: int = 0, reason: str = "") -> None:
        """Close now and forget the connection (server shutdown, client timeout): no closing period."""
        if self.dead:
            return
        if self.app is not None:
            self.app.abort(error_code, reason)
        self.quic.close(error_code=error_code, reason_phrase=reason)
        self.transmit()
        self.aborted = True  # aioquic never reports the end: a server must unregister it itself
        self._terminate(error_code, reason)

    def _terminate(self, error_code: int, reason: str) -> None:
        if self.dead:
            return
        self.dead = True
        self.cancel_handles()
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        self.closed_event.set()
        if self.app is not None:
            self.app.terminated(error_code, reason)
        if not self.ready.done():
            detail = f"code 0x{error_code:x}" + (f": {reason}" if reason else "")
            exc = self.failure or setup_failure(error_code, detail)  # CertificateUntrusted for a TLS certificate alert
            self.ready.set_exception(exc)
        if self.ready.done() and not self.ready.cancelled():
            self.ready.exception()  # mark retrieved; owners inspect ``failure``/``ready`` themselves
        for callback in self.on_terminated:
            callback(self)
        seam.release(self.quic)  # never driven again (datagrams and timers check `dead`)
        if self._owns_transport and self.udp_transport is not None:
            if self.sender is not None:
                self.sender.close()
            self.udp_transport.close()

    # --- asyncio / aioquic hooks ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._owns_transport:  # client: a connected socket (uvloop refuses sendto with an address)
            if self.sender is None:
                self.sender = DatagramSender(transport, connected=True)  # type: ignore[arg-type]
            transport = _ConnectedTransport(transport)  # type: ignore[arg-type]
        elif self.sender is None:
            self.sender = DatagramSender(transport)  # type: ignore[arg-type]
        super().connection_made(transport)

    def transmit(self) -> None:
        """Send what aioquic has queued: one packet-building pass, trains of equal-size
        datagrams in one GSO syscall each (moq.transport.udp), then the timer."""
        if self.dead:
            return
        self.take_transmit()
        batch = self.quic.datagrams_to_send(now=self.loop.time())
        if batch:
            addr = batch[0][1]
            if all(a == addr for _, a in batch):
                self.sender.send([data for data, _ in batch], addr)  # type: ignore[union-attr]
            else:  # a path change in the middle of a batch: keep each datagram's address
                for data, a in batch:
                    self.sender.send((data,), a)  # type: ignore[union-attr]
        self.arm_timer()

    def datagram_received(self, data: bytes | str, addr: tuple) -> None:
        """Process one datagram; the transmit it may cause waits for the end of this loop turn,
        so a burst of received datagrams (acknowledgements, objects) costs one transmit, and
        a datagram that leaves nothing to send (a subscriber's ACK) costs none."""
        if self.dead:
            return
        STATS.datagrams_received += 1
        STATS.bytes_received += len(data)
        quic = self.quic
        now = self.last_received = self.loop.time()
        quic.receive_datagram(data, addr, now=now)  # type: ignore[arg-type]
        self.process_events()
        if self.transmit_scheduled or not quic.nothing_to_send(now):  # type: ignore[attr-defined]
            self.transmit_soon()
        elif not self.dead:
            self.arm_timer()  # e.g. a new loss-detection deadline

    def error_received(self, exc: OSError) -> None:
        """ICMP errors reach connected (client) sockets; fatal only while connecting."""
        if not self.ready.done() and not self.dead:
            self.failure = ConnectionRefusedError(f"peer unreachable: {exc}")
            self.abort(QuicErrorCode.INTERNAL_ERROR, "unreachable")

    def quic_event_received(self, event: qe.QuicEvent) -> None:
        if isinstance(event, qe.HandshakeCompleted):
            self._handshake_completed(event)
        elif isinstance(event, qe.ConnectionTerminated):
            self._terminate(event.error_code, event.reason_phrase)
        elif self.app is not None:
            self.app.quic_event(event)
        elif isinstance(
            event, (qe.StreamDataReceived, qe.DatagramFrameReceived, qe.StreamReset, qe.StopSendingReceived)
        ):
            self._early.append(event)

    def _ping(self) -> None:
        """Keep an idle connection alive (an ack-eliciting PING resets both idle timers)."""
        self.quic.send_ping(0)
        self.transmit()
        self._keepalive = self._loop.call_later(KEEPALIVE_INTERVAL, self._ping)

    def _handshake_completed(self, event: qe.HandshakeCompleted) -> None:
        if self._verification is not None:
            try:
                self._verification.check(peer_certificate(self.quic))
            except ConnectionError as exc:
                self.fail(exc)
                self.quic.close(
                    error_code=_BAD_CERTIFICATE,
                    frame_type=QuicFrameType.CRYPTO,
                    reason_phrase="certificate fingerprint mismatch",
                )
                return
        self._keepalive = self._loop.call_later(KEEPALIVE_INTERVAL, self._ping)
        self.app = self._app_factory(self, event.alpn_protocol or "")
        if self.app is None:
            self.fail(ConnectionError(f"no MoQ transport for ALPN {event.alpn_protocol!r}"))
            self.quic.close(error_code=QuicErrorCode.NO_ERROR, reason_phrase="unsupported ALPN")
            return
        early, self._early = self._early, []
        for queued in early:
            self.app.quic_event(queued)


class _ConnectedTransport:
    """Datagram transport view for a connected UDP socket: drops aioquic's explicit address."""

    __slots__ = ("_transport",)

    def __init__(self, transport: asyncio.DatagramTransport) -> None:
        self._transport = transport

    def sendto(self, data: bytes, addr: object = None) -> None:
        self._transport.sendto(data)

    def close(self) -> None:
        self._transport.close()

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self._transport.get_extra_info(name, default)
