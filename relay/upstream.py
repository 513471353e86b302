"""The link from this relay to its parent relay: how operators chain relays into a tree.

The link is an ordinary client session on which this relay is both publisher and
subscriber (DESIGN.md, Relay tree).  Namespaces announced *locally* (by publishers or
child relays connected to us) are announced upstream; subscriptions to namespaces not
announced here are routed upstream.  Nothing learned from the parent is announced back
to it, so announcements only flow towards the root and requests cannot loop.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from moq import api
from moq.connection import Connection, RequestRejectedError
from moq.errors import SessionClosedError
from moq.session import SessionConfig
from moq.token import redact
from moq.wire.types import TrackNamespace, namespace_to_str

if TYPE_CHECKING:
    from .relay import Relay

log = structlog.get_logger(__name__)


class UpstreamLink:
    def __init__(self, relay: Relay, url: str, fingerprint: str | None = None, token: str | None = None) -> None:
        self.relay = relay
        self.url = url
        self.fingerprint = fingerprint
        self.token = token  # --upstream-token: presented in SETUP (AUTHORIZATION TOKEN)
        self.conn: Connection | None = None
        self.announced: dict[TrackNamespace, int] = {}  # namespace -> PUBLISH_NAMESPACE request id
        self.connected = asyncio.Event()

    async def run(self) -> None:
        """Stay connected (exponential backoff between attempts) until cancelled."""
        delay = 0.5
        while True:
            try:
                conn = await api.connect(self.url, fingerprint=self.fingerprint, handler=self.relay,
                                         config=SessionConfig(implementation="moq-relay/0.1"), token=self.token)
            except (OSError, TimeoutError, SessionClosedError) as exc:
                log.warning("upstream_unreachable", url=redact(self.url), error=str(exc), retry_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = 0.5
            self.conn = conn
            self.relay.add_connection(conn)
            self.connected.set()
            log.info("upstream_connected", url=redact(self.url), peer=conn.transport.peer)
            for ns in sorted(self.relay.local_namespaces()):
                self.announce(ns)
            try:
                await conn.wait_closed()
            finally:
                self.conn = None
                self.announced.clear()
                self.connected.clear()
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
