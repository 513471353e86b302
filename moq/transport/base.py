"""What every transport adapter offers the MoQ session: streams, datagrams, close.

The session core is sans-IO; a transport adapter owns one QUIC connection (raw QUIC)
or one WebTransport session (HTTP/3) and translates between aioquic and these small
events/methods.  Stream ids are the adapter's own (QUIC stream ids); the session
treats them as opaque integers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StreamData:
    stream_id: int
    data: bytes
    end_stream: bool
    bidirectional: bool  # peer- or locally-opened bidirectional stream


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The peer reset its sending side of a stream (RESET_STREAM)."""

    stream_id: int
    error_code: int


@dataclass(frozen=True, slots=True)
class StopSending:
    """The peer asked us to stop sending on a stream (STOP_SENDING)."""

    stream_id: int
    error_code: int


@dataclass(frozen=True, slots=True)
class DatagramReceived:
    data: bytes


@dataclass(frozen=True, slots=True)
class SessionReady:
    """Handshake done (and, for WebTransport, CONNECT answered with 2xx)."""


@dataclass(frozen=True, slots=True)
class SessionClosed:
    error_code: int
    reason: str


TransportEvent = StreamData | StreamReset | StopSending | DatagramReceived | SessionReady | SessionClosed


class TransportSession(Protocol):
    """One MoQ transport session (raw QUIC connection or WebTransport session)."""

    is_client: bool
    kind: str  # "quic" or "webtransport"
    protocol: str  # negotiated MoQ version string, e.g. "moqt-18"
    path: str  # request path (WebTransport) or "" (raw QUIC: the path travels in SETUP)
    authority: str
    peer: str  # "host:port" of the peer, for logs

    def set_handler(self, handler: Callable[[TransportEvent], None]) -> None: ...
    def open_stream(self, unidirectional: bool) -> int: ...
    def send_stream_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool = False) -> None: ...
    def reset_stream(self, stream_id: int, error_code: int) -> None: ...
    def stop_stream(self, stream_id: int, error_code: int) -> None: ...
    def send_datagram(self, data: bytes) -> None: ...
    def max_datagram_size(self) -> int: ...
    def close(self, error_code: int = 0, reason: str = "") -> None: ...
    def transmit(self) -> None: ...
