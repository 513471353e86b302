"""Stream priorities (draft-18 § Priorities) on aioquic: lower keys are served first."""

from __future__ import annotations

import asyncio

import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from moq.transport.base import StreamData
from moq.transport.quic import PrioritizedQuicConnection, tune_connection

from .test_support import KINDS, run_async, session_pair


def test_send_queue_is_ordered_by_priority_key_and_stable():
    quic = QuicConnection(configuration=QuicConfiguration(is_client=True))
    tune_connection(quic)
    assert isinstance(quic, PrioritizedQuicConnection)
    for sid in (2, 6, 10, 14):  # client unidirectional streams
        quic.send_stream_data(sid, b"x")
    quic.set_stream_priority(2, (2, 200))
    quic.set_stream_priority(6, (2, 10))
    quic.set_stream_priority(10, (2, 200))
    # 14 has no key: like control streams, it goes first
    assert [s.stream_id for s in quic._streams_queue] == [14, 6, 2, 10]
    quic._streams_queue = [quic._streams[10], quic._streams[2], quic._streams[6], quic._streams[14]]
    assert [s.stream_id for s in quic._streams_queue] == [14, 6, 10, 2]  # equal keys keep their order


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", KINDS)
def test_higher_priority_stream_overtakes_a_backlog(kind):
    """A large low-priority backlog is queued first; a small high-priority stream written
    afterwards must arrive (almost) without low-priority bytes interleaved."""
    order: list[tuple[int, int]] = []

    def record(rec, event) -> None:
        if isinstance(event, StreamData) and event.data:
            order.append((event.stream_id, len(event.data)))

    async def main() -> None:
        async with session_pair(kind, server_on_event=record) as (client, server, _):
            low = client.session.open_stream(unidirectional=True)
            high = client.session.open_stream(unidirectional=True)
            client.session.set_priority(low, (2, 255))
            client.session.set_priority(high, (2, 0))
            client.session.send_stream_data(low, bytes(3_000_000), end_stream=True)
            await asyncio.sleep(0.01)  # the low stream is now being sent, cwnd-limited
            client.session.send_stream_data(high, bytes(60_000), end_stream=True)
            await server.wait(lambda: server.finished(low) and server.finished(high))
        first_high = next(i for i, (sid, _) in enumerate(order) if sid == high)
        last_high = max(i for i, (sid, _) in enumerate(order) if sid == high)
        interleaved = sum(n for sid, n in order[first_high:last_high] if sid == low)
        high_done = sum(n for sid, n in order[: last_high + 1] if sid == low)
        assert interleaved < 8_000, f"{interleaved} low-priority bytes arrived among the high-priority ones"
        assert high_done < 3_000_000, "the high-priority stream finished before the low one"

    run_async(main())
