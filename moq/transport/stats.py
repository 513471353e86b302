"""Process-wide UDP counters of the transport, for metrics and benchmarks.

Plain integers bumped on the send/receive path (no locks: one event loop per process).
`datagrams_sent` counts UDP datagrams (GSO segments each count once); `send_calls` counts
the syscalls that carried them, so their ratio shows how well sends are batched.
"""

from __future__ import annotations


class TransportStats:
    __slots__ = ("datagrams_sent", "bytes_sent", "send_calls", "datagrams_received", "bytes_received")

    def __init__(self) -> None:
        self.datagrams_sent = 0
        self.bytes_sent = 0
        self.send_calls = 0
        self.datagrams_received = 0
        self.bytes_received = 0

    def snapshot(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


STATS = TransportStats()
