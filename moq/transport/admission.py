"""Per-source admission of new QUIC connections: concurrent connections and a handshake rate.

A server's costliest work for a stranger is the TLS handshake (a few milliseconds of CPU in
aioquic, on the event loop every other session shares), and each connection it accepts holds
state until it ends.  So the listening endpoint asks :class:`SourceLimits` before it lets an
Initial packet create a connection, and a refusal costs one header parse: the datagram is
dropped (no state, no reply, nothing to amplify).  A source is an IPv4 address, or an IPv6
/64 prefix (one subscriber's allocation).  Without QUIC Retry the source address of an Initial
is not proven, so a spoofed flood can use up another address's handshake allowance; with
``retry`` on, only Initials that echo a Retry token reach these limits.

The handshake rate is a token bucket per source: ``handshakes_per_second`` refilled, up to
``burst`` (default: half a second's worth) held; the endpoint then starts admitted handshakes
one per event-loop turn (moq.transport.aioquic_seam.ListenerBase).  Buckets that are full and sources with no
connection are forgotten, so the table stays bounded by the sources that are active now.
"""

from __future__ import annotations

import ipaddress
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

SESSIONS = "source_sessions"
RATE = "source_handshake_rate"
HANDSHAKE_TIMEOUT = "handshake_timeout"
REASONS = (SESSIONS, RATE, HANDSHAKE_TIMEOUT)
_PRUNE_AT = 4096  # sources tracked before idle ones are swept


def source_of(addr: tuple | str) -> str:
    """The admission key of a peer address: the IPv4 address, or the IPv6 /64 prefix."""
    host = addr[0] if isinstance(addr, tuple) else addr
    host = str(host).removeprefix("::ffff:")
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return host
    if ip.version == 6:
        return str(ipaddress.IPv6Network((ip, 64), strict=False).network_address) + "/64"
    return str(ip)


@dataclass(slots=True)
class _Source:
    tokens: float
    stamp: float
    open: int = 0


@dataclass
class SourceLimits:
    """Concurrent connections and new handshakes per second, per source (0 = no limit)."""

    max_sessions: int = 0
    handshakes_per_second: float = 0.0
    burst: float | None = None
    on_refused: Callable[[str], None] | None = None
    clock: Callable[[], float] = time.monotonic
    refused: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._sources: dict[str, _Source] = {}
        self._prune_at = _PRUNE_AT
        if self.burst is None:
            self.burst = max(1.0, self.handshakes_per_second / 2)

    def check(self, addr: tuple | str) -> str | None:
        """May ``addr`` start a handshake now?  None, or the refusal reason (counted).  Takes one
        token from the source's bucket when admitted; :meth:`opened` then counts the connection."""
        key = source_of(addr)
        now = self.clock()
        src = self._sources.get(key)
        if src is None:
            if len(self._sources) >= self._prune_at:
                self._prune(now)
            src = self._sources[key] = _Source(float(self.burst), now)  # type: ignore[arg-type]
        if self.max_sessions and src.open >= self.max_sessions:
            return self.refuse(SESSIONS)
        if self.handshakes_per_second:
            src.tokens = min(float(self.burst), src.tokens + (now - src.stamp) * self.handshakes_per_second)  # type: ignore[arg-type]
            src.stamp = now
            if src.tokens < 1.0:
                return self.refuse(RATE)
            src.tokens -= 1.0
        return None

    def refuse(self, reason: str) -> str:
        """Count a refusal (also used by the endpoint for handshakes that time out)."""
        self.refused[reason] += 1
        if self.on_refused is not None:
            self.on_refused(reason)
        return reason

    def opened(self, addr: tuple | str) -> str:
        """A connection from ``addr`` now exists; returns its key for :meth:`closed`."""
        key = source_of(addr)
        src = self._sources.get(key)
        if src is None:
            src = self._sources[key] = _Source(float(self.burst), self.clock())  # type: ignore[arg-type]
        src.open += 1
        return key

    def closed(self, key: str) -> None:
        src = self._sources.get(key)
        if src is not None and src.open > 0:
            src.open -= 1

    def open_count(self, addr: tuple | str) -> int:
        src = self._sources.get(source_of(addr))
        return src.open if src is not None else 0

    def _prune(self, now: float) -> None:
        """Forget sources with no connection whose bucket has refilled (they start full anyway)."""
        rate = self.handshakes_per_second
        for key in [k for k, s in self._sources.items()
                    if not s.open and (not rate or s.tokens + (now - s.stamp) * rate >= self.burst)]:  # type: ignore[operator]
            del self._sources[key]
        self._prune_at = max(_PRUNE_AT, 2 * len(self._sources))  # a sweep per doubling, not per source
