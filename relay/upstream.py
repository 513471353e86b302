"""The link from this relay to its parent relay: how operators chain relays into a tree.

The link reconnects with backoff while the parent is away (a parent killed without closing is
noticed by the relay's peer watch, relay/liveness.py), says so in its log (upstream_lost,
upstream_unreachable, upstream_connected) and in /metrics (moq_relay_upstream_connected 0/1,
moq_relay_upstream_reconnects_total).  A parent whose certificate no longer matches
--upstream-fingerprint is retried for CERT_GRACE seconds; then the link gives up (`failure`)
and the relay exits with code 3, since no retry can fix a pin.

The link is an ordinary client session on which this relay is both publisher and
subscriber (DESIGN.md, Relay tree).  Namespaces announced *locally* (by publishers or
child relays connected to us) are announced upstream; subscriptions to namespaces not
announced here are routed upstream.  Nothing learned from the parent is announced back
to it, so announcements only flow towards the root and requests cannot loop.

Namespaces flow down on demand: while a downstream session holds a SUBSCRIBE_NAMESPACE, the
link holds one for the same prefix at the parent (one per distinct prefix), and the names the
parent reports are known here as well (`learned`), so a subscriber that discovers broadcasts by
announcement (moq-rs does) finds one published on another relay or another `--workers` worker.
The parent never reports back a namespace that this relay announced to it (relay.py skips the
announcer), so nothing circulates.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog
from prometheus_client import Counter, Gauge

from moq import api
from moq.connection import Connection, RequestRejectedError
from moq.errors import SessionClosedError
from moq.session import SessionConfig
from moq.session import events as ev
from moq.token import redact
from moq.transport.tls import CertificateMismatch, CertificateUntrusted
from moq.wire.types import TrackNamespace, namespace_to_str

from .metrics import PREFIX

if TYPE_CHECKING:
    from .relay import Relay

log = structlog.get_logger(__name__)

CERT_GRACE = 10.0  # seconds of certificate errors before the link gives up


class UpstreamLink:
    def __init__(self, relay: Relay, url: str, fingerprint: str | None = None, token: str | None = None) -> None:
        self.relay = relay
        self.url = url
        self.fingerprint = fingerprint
        self.token = token  # --upstream-token: presented in SETUP (AUTHORIZATION TOKEN)
        self.conn: Connection | None = None
        self.announced: dict[TrackNamespace, int] = {}  # namespace -> PUBLISH_NAMESPACE request id
        self.watches: dict[TrackNamespace, asyncio.Task] = {}  # prefix -> its SUBSCRIBE_NAMESPACE upstream
        self.heard: dict[TrackNamespace, set[TrackNamespace]] = {}  # prefix -> full namespaces the parent reported
        self.connected = asyncio.Event()
        self.failure: str | None = None  # why the link gave up (a certificate that no retry can fix)
        self.gave_up = asyncio.Event()
        registry = relay.metrics.registry
        self.up_gauge = Gauge(PREFIX + "upstream_connected", "1 while the --upstream link to the parent relay is "
                              "connected, else 0.", registry=registry)
        self.reconnects = Counter(PREFIX + "upstream_reconnects", "Times the --upstream link was re-established "
                                  "after losing the parent relay.", registry=registry)

    async def run(self) -> None:
        """Stay connected (exponential backoff between attempts) until cancelled or given up."""
        delay = 0.5
        cert_since: float | None = None
        ever = False
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn = await api.connect(self.url, fingerprint=self.fingerprint, handler=self.relay,
                                         config=SessionConfig(implementation="moq-relay/0.1"), token=self.token)
            except (CertificateMismatch, CertificateUntrusted) as exc:
                cert_since = loop.time() if cert_since is None else cert_since
                if loop.time() - cert_since + delay > CERT_GRACE:
                    self.failure = (f"the parent relay at {redact(self.url)} "
                                    + (f"presents certificate sha256 {exc.got}, not --upstream-fingerprint "
                                       f"{exc.expected}" if isinstance(exc, CertificateMismatch) else
                                       f"has an untrusted certificate ({exc}); give --upstream-fingerprint")
                                    + f"; gave up after {loop.time() - cert_since:.0f} s")
                    log.error("upstream_given_up", url=redact(self.url), error=str(exc))
                    self.gave_up.set()
                    return
                log.error("upstream_certificate_error", url=redact(self.url), error=str(exc), retry_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            except (OSError, TimeoutError, SessionClosedError) as exc:
                cert_since = None
                log.warning("upstream_unreachable", url=redact(self.url), error=str(exc), retry_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay, cert_since = 0.5, None
            self.conn = conn
            self.relay.add_connection(conn)
            self.connected.set()
            self.up_gauge.set(1)
            if ever:
                self.reconnects.inc()
            ever = True
            log.info("upstream_connected", url=redact(self.url), peer=conn.transport.peer)
            for ns in sorted(self.relay.local_namespaces()):
                self.announce(ns)
            self.sync_watches()
            try:
                await conn.wait_closed()
            finally:
                self.conn = None
                self.announced.clear()
                self._drop_watches(set(self.watches))
                self.connected.clear()
                self.up_gauge.set(0)
            log.warning("upstream_lost", url=redact(self.url), retry_s=delay)
            await asyncio.sleep(delay)

    def announce(self, ns: TrackNamespace) -> None:
        conn = self.conn
        if conn is None or conn.is_closed or ns in self.announced:
            return
        rid = self.announced[ns] = conn.start_publish_namespace(ns)

        async def confirm() -> None:
            try:
                await conn.wait_response(rid, 10.0)
                log.info("upstream_announced", namespace=namespace_to_str(ns))
            except (RequestRejectedError, SessionClosedError, TimeoutError, ConnectionError) as exc:
                log.warning("upstream_announce_failed", namespace=namespace_to_str(ns), error=str(exc))
                if self.announced.get(ns) == rid:
                    del self.announced[ns]

        self.relay.spawn(confirm())

    def withdraw(self, ns: TrackNamespace) -> None:
        rid = self.announced.pop(ns, None)
        if rid is not None and self.conn is not None and not self.conn.is_closed:
            self.conn.cancel(rid)

    # --- namespaces from the parent, on demand -------------------------------------------
    def learned(self) -> set[TrackNamespace]:
        """Namespaces the parent reported for the prefixes downstream sessions watch."""
        return set().union(*self.heard.values()) if self.heard else set()

    def sync_watches(self) -> None:
        """Hold one SUBSCRIBE_NAMESPACE upstream per prefix that downstream sessions watch."""
        wanted = self.relay.watched_prefixes()
        self._drop_watches(set(self.watches) - wanted)
        conn = self.conn
        if conn is None or conn.is_closed:
            return
        for prefix in wanted - set(self.watches):
            self.watches[prefix] = asyncio.get_running_loop().create_task(self._watch(conn, prefix))

    def _drop_watches(self, prefixes: set[TrackNamespace]) -> None:
        for prefix in prefixes:
            task = self.watches.pop(prefix, None)
            if task is not None:
                task.cancel()
            for ns in self.heard.pop(prefix, set()):
                self.relay.namespace_gone(ns)

    async def _watch(self, conn: Connection, prefix: TrackNamespace) -> None:
        heard = self.heard.setdefault(prefix, set())
        rid = None
        try:
            rid, queue = await conn.subscribe_namespace(prefix)
            while (item := await queue.get()) is not None:
                ns = prefix + item.track_namespace_suffix
                if isinstance(item, ev.NamespaceDoneReceived):
                    heard.discard(ns)
                    self.relay.namespace_gone(ns)
                elif ns not in heard:
                    heard.add(ns)
                    self.relay.namespace_added(ns, conn)
        except (RequestRejectedError, SessionClosedError, TimeoutError, ConnectionError) as exc:
            log.info("upstream_namespace_watch_ended", prefix=namespace_to_str(prefix), error=str(exc))
        except asyncio.CancelledError:
            if rid is not None and not conn.is_closed:
                conn.cancel(rid)
            raise
