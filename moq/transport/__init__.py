"""Transport adapters (the only package that imports aioquic): raw QUIC and WebTransport.

Use :func:`serve` / :func:`connect`; both hand out :class:`TransportSession` objects whose
events are defined in :mod:`moq.transport.base`.  Only ``base`` is imported eagerly, so the
sans-IO core can import ``moq.transport.base`` without pulling in aioquic or asyncio loops;
the other names load on first access.
"""

from importlib import import_module
from typing import Any

from .base import (
    DatagramReceived,
    SessionClosed,
    SessionReady,
    StopSending,
    StreamData,
    StreamReset,
    TransportEvent,
    TransportSession,
)

_LAZY = {
    "Server": "endpoint",
    "connect": "endpoint",
    "parse_url": "endpoint",
    "serve": "endpoint",
    "new_event_loop": "loop",
    "run": "loop",
    "CertificateMismatch": "tls",
    "ClientVerification": "tls",
    "ServerCredentials": "tls",
    "certificate_fingerprint": "tls",
    "generate_dev_certificate": "tls",
}

__all__ = [
    "DatagramReceived",
    "SessionClosed",
    "SessionReady",
    "StopSending",
    "StreamData",
    "StreamReset",
    "TransportEvent",
    "TransportSession",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
