"""Peers that vanished without closing: a killed publisher, viewer or parent relay sends nothing,
and QUIC would only give up at its idle timeout (60 s).  Until then a killed publisher's tracks
look live but deliver nothing (subscribers never see PUBLISH_DONE) and a killed subscriber pins
its upstream subscription.  So once a second the relay looks at how long each peer has been
silent: past half of --peer-timeout it sends a PING (live peers answer, and a peer exchanging
media is never silent, so this costs nothing on busy sessions), and past --peer-timeout with its
probes unanswered the session is abandoned, which ends its tracks and subscriptions as a close does.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog
from prometheus_client import Counter

from .metrics import PREFIX

if TYPE_CHECKING:
    from .metrics import RelayMetrics
    from .relay import Relay

log = structlog.get_logger(__name__)

INTERVAL = 1.0


class PeerWatch:
    def __init__(self, relay: Relay, timeout: float, metrics: RelayMetrics | None = None) -> None:
        self.relay = relay
        self.timeout = timeout
        self.dropped = None if metrics is None else Counter(
            PREFIX + "peers_unresponsive", "Sessions dropped because the peer stopped answering (--peer-timeout).",
            registry=metrics.registry)

    def sweep(self) -> None:
        for conn in list(self.relay.connections):
            t = conn.transport
            silent_for = getattr(t, "silent_for", None)
            if silent_for is None or conn.is_closed:  # an in-memory test transport
                continue
            silent = silent_for()
            if silent > self.timeout and t.unanswered_probes() > 0:
                log.warning("peer_unresponsive", peer=t.peer, silent_s=round(silent, 1))
                if self.dropped is not None:
                    self.dropped.inc()
                t.abandon("peer unresponsive")
            elif silent > self.timeout / 2:
                t.ping()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(min(INTERVAL, self.timeout / 4))
            try:
                self.sweep()
            except Exception:  # a bug here must not stop the watch for good
                log.exception("peer_watch_failed")
