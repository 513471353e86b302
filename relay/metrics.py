"""Prometheus metrics for one relay, in a registry of its own.

A private CollectorRegistry (not prometheus_client's global one) lets tests and several relays share
a process without "duplicated timeseries" errors. The metric objects are plain attributes so the hot
path pays one attribute lookup and one locked add per call; callers should count a fan-out batch with
one `inc(n)` rather than one call per object per subscriber.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from moq.transport.admission import REASONS as CONNECTION_REFUSAL_REASONS
from moq.transport.stats import STATS, TransportStats

PREFIX = "moq_relay_"

#: reasons the relay refuses a request or session; the `reason` label of requests_refused
REFUSAL_REASONS = ("session_limit", "request_limit", "subscriber_limit", "object_too_large", "not_found",
                   "unauthorized", "draining", "protocol",
                   # relay/guard.py: rate limits per session and per source address, cache misses of one
                   # source waiting upstream; malformed requests; upstream failures
                   "request_rate", "source_request_rate", "upstream_pending", "invalid_range", "invalid_request",
                   "upstream_unavailable", "stream_limit", "request_flood")


class RelayMetrics:
    """The relay's gauges and counters; counters are exposed with Prometheus' `_total` suffix."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(PREFIX + name, doc, registry=r)

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(PREFIX + name, doc, labels, registry=r)

        self.sessions = gauge("sessions", "Open MoQ sessions (publishers, subscribers and peer relays).")
        self.subscriptions = gauge("subscriptions", "Active downstream subscriptions.")
        self.tracks = gauge("tracks", "Tracks the relay currently forwards or caches.")
        self.cache_bytes = gauge("cache_bytes", "Object payload bytes held in the cache.")
        self.sessions_total = counter("sessions_accepted", "Sessions accepted since start.")
        self.objects_in = counter("objects_in", "Objects received from publishers and upstream relays.")
        self.objects_out = counter("objects_out", "Objects sent to subscribers (one per subscriber).")
        self.bytes_in = counter("bytes_in", "Object payload bytes received.")
        self.bytes_out = counter("bytes_out", "Object payload bytes sent to subscribers.")
        self.dropped_groups = counter("dropped_groups", "Late groups dropped for slow subscribers.")
        self.requests_refused = counter("requests_refused", "Sessions and requests refused, by reason.",
                                        ("reason",))
        for reason in REFUSAL_REASONS:  # export zeros so rate() and alerts work before the first refusal
            self.requests_refused.labels(reason=reason)
        # moq.transport.admission: per-source limits checked at a connection's first packet
        self.connections_refused = counter("connections_refused", "QUIC connections dropped before they became "
                                           "sessions, by reason (source_sessions, source_handshake_rate: "
                                           "per-source limits; handshake_timeout).", ("reason",))
        for reason in CONNECTION_REFUSAL_REASONS:
            self.connections_refused.labels(reason=reason)
        self.negative_cache_hits = counter("negative_cache_hits", "Requests refused again from the cache of "
                                           "upstream refusals (--negative-cache-ttl) without asking upstream.")
        self.upstream_subscriptions = gauge("upstream_subscriptions", "Live tracks fed by a SUBSCRIBE this relay "
                                            "sent (to a publisher, a parent relay or another worker): one per track.")
        self.namespaces = gauge("namespaces", "Namespaces with a live announcer this relay routes to.")
        r.register(UdpCollector(STATS))

    def observe(self, relay: Any) -> None:
        """Feed the routing gauges from a Relay's public state, read only at scrape time."""
        self.upstream_subscriptions.set_function(
            lambda: sum(1 for t in relay.tracks.values() if t.state == "live" and not t.pushed))
        self.namespaces.set_function(lambda: sum(1 for pubs in relay.announced.values() if pubs))

    def render(self) -> bytes:
        """The Prometheus text exposition of this relay's metrics (serve with `content_type`)."""
        return generate_latest(self.registry)


class UdpCollector(Collector):
    """The transport's process-wide UDP counters (moq.transport.stats) as Prometheus counters."""

    DOCS = {
        "datagrams_sent": "UDP datagrams sent (each GSO segment counts once).",
        "bytes_sent": "UDP payload bytes sent.",
        "send_calls": "Send syscalls that carried those datagrams.",
        "datagrams_received": "UDP datagrams received.",
        "bytes_received": "UDP payload bytes received.",
    }

    def __init__(self, stats: TransportStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        for name, value in self.stats.snapshot().items():
            yield CounterMetricFamily(f"{PREFIX}udp_{name}", self.DOCS.get(name, name.replace("_", " ")), value=value)
