"""What keeps one peer's request flood its own problem (issue 10, "Request-rate limits").

- `RequestLimiter`: token buckets for new requests (and REQUEST_UPDATEs) per session and per
  source address, plus a cap on the requests of one source waiting on an upstream answer,
  so a burst of cache misses never reaches a publisher as a burst.
- `NegativeCache`: upstream refusals of a full track name, remembered for a few seconds so a
  flood of SUBSCRIBEs for a missing track costs the publisher one request; a PUBLISH or a
  PUBLISH_NAMESPACE that covers the name forgets it.
- `RefusalLog`: an info line for the first refusal of each kind in an interval, a debug line
  for the others and one info summary line per interval, so a flood of refusals does not
  become a flood of log lines.
- `public_reason`: what a downstream peer is told for a refusal that came from upstream (the
  upstream's own text goes to the log only).

All of it is O(1) per request; the tables are bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from moq.errors import LocalUsageError, PublishDoneCode, SessionErrorCode, StreamResetCode
from moq.errors import RequestErrorCode as E
from moq.session import events as ev
from moq.wire.types import TrackNamespace

if TYPE_CHECKING:
    from moq.connection import Connection
    from moq.fanout import SubscriberSink

    from .relay import Relay

log = structlog.get_logger("relay.guard")

BURST_SECONDS = 1.0  # a bucket holds this many seconds of its rate
MAX_SOURCES = 4096  # source buckets kept; full (idle) ones are dropped past this
MAX_NEGATIVE = 10_000  # cached refusals kept
SUMMARY_INTERVAL = 5.0  # seconds between info summaries of refusals
STRIKES = 10  # refusals a session may ignore in a burst before it is closed for flooding

#: upstream REQUEST_ERROR codes passed on as they are (with a generic reason); the others
#: describe the relay's own upstream session (GOING_AWAY, token trouble, duplicates) or are
#: unsafe to forward without their payload (REDIRECT), and become INTERNAL_ERROR
_FORWARDED = {E.DOES_NOT_EXIST, E.INVALID_RANGE, E.TIMEOUT, E.NOT_SUPPORTED, E.EXCESSIVE_LOAD, E.UNAUTHORIZED,
              E.MALFORMED_TRACK, E.UNSUPPORTED_EXTENSION, E.INTERNAL_ERROR}
_REASONS = {
    E.DOES_NOT_EXIST: "track does not exist",
    E.INVALID_RANGE: "range cannot be satisfied",
    E.TIMEOUT: "upstream timeout",
    E.NOT_SUPPORTED: "not supported upstream",
    E.EXCESSIVE_LOAD: "upstream overloaded",
    E.UNAUTHORIZED: "not authorized upstream",
    E.MALFORMED_TRACK: "malformed track",
    E.UNSUPPORTED_EXTENSION: "unsupported track property",
    E.INTERNAL_ERROR: "upstream error",
}
#: refusals that say something about the track itself (worth remembering for a while)
_CACHEABLE = {E.DOES_NOT_EXIST, E.NOT_SUPPORTED, E.MALFORMED_TRACK, E.UNSUPPORTED_EXTENSION}


def public_reason(code: int) -> tuple[int, str]:
    """(code, reason) to tell a downstream peer for an upstream refusal with `code`."""
    out = code if code in _FORWARDED else E.INTERNAL_ERROR
    return out, _REASONS[out]


@functools.lru_cache(maxsize=MAX_SOURCES)
def source_of(peer: str) -> str:
    """The source a transport's "host:port" (or "[v6]:port") counts under: the IPv4 address,
    or the IPv6 /64 (one subscriber line holds a whole /64; per-address limits would be free to
    dodge there)."""
    host = peer.rpartition(":")[0].strip("[]") or peer
    if ":" in host:
        with contextlib.suppress(ValueError):
            return str(ipaddress.IPv6Network(f"{host}/64", strict=False))
    return host


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, now: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = max(1.0, rate * BURST_SECONDS if burst is None else burst)
        self.tokens = self.burst
        self.stamp = now

    def take(self, now: float) -> bool:
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False

    def idle(self, now: float) -> bool:
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


class RequestLimiter:
    """Admission of new requests: `admit()` gives None, or the metrics reason of a refusal.

    A session that goes on sending while refused (more than STRIKES refusals, refilled at a
    tenth of its rate) is flooding: `strike()` says when to close it.  Refusing costs about
    as much as answering (the request stream is opened, read and answered either way), so
    only closing bounds what a flood costs the relay and its other sessions: a closed QUIC
    connection's queued packets are dropped unread."""

    def __init__(self, per_session: float, per_source: float, pending_per_source: int,
                 clock: Callable[[], float]) -> None:
        self.per_session, self.per_source, self.pending_per_source = per_session, per_source, pending_per_source
        self.clock = clock
        self.sessions: dict[int, TokenBucket] = {}
        self.strikes: dict[int, TokenBucket] = {}
        self.sources: dict[str, TokenBucket] = {}
        self.pending: Counter[str] = Counter()  # source -> requests waiting on an upstream answer

    def admit(self, session_key: int, source: str) -> str | None:
        now = self.clock()
        bucket = self.sessions.get(session_key)
        if bucket is None:
            bucket = self.sessions[session_key] = TokenBucket(self.per_session, now)
        if not bucket.take(now):
            return "request_rate"
        src = self.sources.get(source)
        if src is None:
            if len(self.sources) >= MAX_SOURCES:
                self._prune(now)
            src = self.sources[source] = TokenBucket(self.per_source, now)
        if not src.take(now):
            return "source_request_rate"
        return None

    def _prune(self, now: float) -> None:
        for key in [k for k, b in self.sources.items() if b.idle(now) and not self.pending[k]]:
            del self.sources[key]

    def strike(self, session_key: int) -> bool:
        """Count a refusal against the session; True when it is out of patience."""
        now = self.clock()
        bucket = self.strikes.get(session_key)
        if bucket is None:
            bucket = self.strikes[session_key] = TokenBucket(self.per_session / 10, now, burst=STRIKES)
        return not bucket.take(now)

    def forget(self, session_key: int) -> None:
        self.sessions.pop(session_key, None)
        self.strikes.pop(session_key, None)

    # requests sent upstream on a downstream peer's behalf
    def start_upstream(self, source: str | None) -> bool:
        """One more request waiting upstream for `source` (None: an exempt session), if allowed."""
        if source is None:
            return True
        if self.pending[source] >= self.pending_per_source:
            return False
        self.pending[source] += 1
        return True

    def end_upstream(self, source: str | None) -> None:
        if source is None:
            return
        n = self.pending[source] - 1
        if n > 0:
            self.pending[source] = n
        else:
            self.pending.pop(source, None)


class NegativeCache:
    """Upstream refusals by full track name, for `ttl` seconds."""

    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self.ttl = ttl
        self.clock = clock
        self.by_ns: dict[TrackNamespace, dict[bytes, tuple[float, int]]] = {}
        self.size = 0

    def get(self, ns: TrackNamespace, name: bytes) -> int | None:
        """The cached refusal code for the track, or None."""
        names = self.by_ns.get(ns)
        entry = names.get(name) if names else None
        if entry is None:
            return None
        if entry[0] <= self.clock():
            self._drop(ns, name)
            return None
        return entry[1]

    def put(self, ns: TrackNamespace, name: bytes, code: int) -> None:
        if self.ttl <= 0 or code not in _CACHEABLE:
            return
        if self.size >= MAX_NEGATIVE:
            self._expire()
            if self.size >= MAX_NEGATIVE:
                return  # full of live entries: cache nothing more rather than grow
        names = self.by_ns.setdefault(ns, {})
        if name not in names:
            self.size += 1
        names[name] = (self.clock() + self.ttl, code)

    def clear(self, ns: TrackNamespace, name: bytes | None = None) -> None:
        """A PUBLISH of (ns, name), or a PUBLISH_NAMESPACE of ns (name None: every track
        under ns and its sub-namespaces): the refusals no longer hold."""
        if name is not None:
            self._drop(ns, name)
            return
        for key in [k for k in self.by_ns if k[: len(ns)] == ns]:
            self.size -= len(self.by_ns.pop(key))

    def _drop(self, ns: TrackNamespace, name: bytes) -> None:
        names = self.by_ns.get(ns)
        if names and names.pop(name, None) is not None:
            self.size -= 1
            if not names:
                del self.by_ns[ns]

    def _expire(self) -> None:
        now = self.clock()
        for ns in list(self.by_ns):
            names = self.by_ns[ns]
            for name in [n for n, (until, _) in names.items() if until <= now]:
                del names[name]
                self.size -= 1
            if not names:
                del self.by_ns[ns]


class RefusalLog:
    """Refusals: info for the first of each kind per interval, debug for the rest, and every
    SUMMARY_INTERVAL one info line with the counts by reason and the sources refused most."""

    def __init__(self, interval: float = SUMMARY_INTERVAL) -> None:
        self.interval = interval
        self.reasons: Counter[str] = Counter()
        self.sources: Counter[str] = Counter()
        self._handle: asyncio.TimerHandle | None = None

    def record(self, metric: str, source: str, **fields) -> None:
        if metric in self.reasons:
            log.debug("request_refused", metric=metric, peer=source, **fields)
        else:  # the first of its kind in this interval is shown at once; the rest are counted
            log.info("request_refused", metric=metric, peer=source, more_in_summary_s=self.interval, **fields)
        self.reasons[metric] += 1
        self.sources[source] += 1
        if self._handle is None:
            try:
                self._handle = asyncio.get_running_loop().call_later(self.interval, self.flush)
            except RuntimeError:  # no loop (unit use): summarize at once
                self.flush()

    def flush(self) -> None:
        self._handle = None
        if not self.reasons:
            return
        log.info("requests_refused_summary", interval_s=self.interval, total=sum(self.reasons.values()),
                 by_reason=dict(self.reasons), top_sources=dict(self.sources.most_common(3)))
        self.reasons.clear()
        self.sources.clear()


# --- the relay's side of a refusal ---------------------------------------------------------------
def strike(relay: Relay, conn: Connection) -> None:
    """A rate-limited request: a session that keeps flooding after its refusals is closed."""
    if relay.limiter.strike(id(conn)) and not conn.is_closed:
        relay.metrics.requests_refused.labels(reason="request_flood").inc()
        log.warning("session_closed_for_flooding", peer=conn.transport.peer,
                    limit_per_s=relay.config.max_requests_per_second)
        conn.close(SessionErrorCode.INTERNAL_ERROR, "request rate limit exceeded")


def refuse_update(relay: Relay, conn: Connection, event: ev.RequestUpdateReceived, sink: SubscriberSink | None,
                  metric: str) -> None:
    """REQUEST_ERROR for a rate-limited REQUEST_UPDATE.  § REQUEST_UPDATE: a failed update ends
    its request (PUBLISH_DONE UPDATE_FAILED for a subscription, the fetch's data stream reset,
    a namespace request's stream closed)."""
    relay.metrics.requests_refused.labels(reason=metric).inc()
    relay.refusals.record(metric, source_of(conn.transport.peer), request="request_update",
                          request_id=event.request_id)
    with contextlib.suppress(LocalUsageError):  # its stream may be half-closed already
        conn.session.reject_update(event.update_id, E.EXCESSIVE_LOAD, "request rate limit")
    strike(relay, conn)
    if conn.is_closed:
        return
    if sink is not None and not sink.ended:
        conn.publish_done(event.request_id, PublishDoneCode.UPDATE_FAILED, "request rate limit")
    else:
        conn.session.end_request(event.request_id)
    conn.cancel(event.request_id)  # stop reading it (and reset a fetch's data stream)
    relay.on_cancelled(conn, event.request_id, StreamResetCode.CANCELLED)  # the relay forgets it too


__all__ = ["NegativeCache", "RefusalLog", "RequestLimiter", "TokenBucket", "public_reason", "refuse_update",
           "source_of", "strike"]
