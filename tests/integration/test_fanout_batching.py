"""Fan-out without per-object overhead: a burst of objects written to a track reaches each
subscriber connection in one flush per event-loop turn, every subscriber in step shares one
encoding of each object's fields, and payloads go to the transport as the very objects
written (never copied).  Subscribers are real `Connection`s over an in-memory transport,
each driven by a sans-IO client session that decodes what it receives."""

from __future__ import annotations

import asyncio

from moq.broadcast import Publisher
from moq.connection import Connection
from moq.session import Role, Session, SessionConfig
from moq.session import events as ev
from moq.transport import base as tb
from moq.wire.types import namespace_from_str
from tests.session.pair import StreamIds

NS = namespace_from_str("live/batch")


class MemoryTransport:
    """A TransportSession that records what the connection sends."""

    is_client = False
    kind = "quic"
    protocol = "moqt-18"
    path = ""
    authority = ""
    peer = "memory"

    def __init__(self) -> None:
        self.ids = StreamIds(True)
        self.handler = None
        self.sent: list[tuple] = []  # ("stream", sid, data, fin) / ("datagram", data)

    def set_handler(self, handler) -> None:
        self.handler = handler

    def open_stream(self, unidirectional: bool) -> int:
        return self.ids(unidirectional)

    def send_stream_data(self, stream_id: int, data, end_stream: bool = False) -> None:
        self.sent.append(("stream", stream_id, data, end_stream))

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        self.sent.append(("reset", stream_id, error_code))

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        pass

    def send_datagram(self, data: bytes) -> None:
        self.sent.append(("datagram", data))

    def max_datagram_size(self) -> int:
        return 1400

    def close(self, error_code: int = 0, reason: str = "") -> None:
        pass

    def transmit(self) -> None:
        pass


class CountingConnection(Connection):
    def __init__(self, *args, **kwargs) -> None:
        self.flushes = 0
        super().__init__(*args, **kwargs)

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


class Subscriber:
    """A client session subscribed through a server-side Connection."""

    def __init__(self, publisher: Publisher, name: bytes) -> None:
        self.transport = MemoryTransport()
        self.conn = CountingConnection(self.transport, handler=publisher)
        self.client = Session(Role.CLIENT, "moqt-18", StreamIds(False), config=SessionConfig(path="/"))
        self.client.start(0.0)
        self.seen = 0
        self.client.subscribe(NS, name)
        self.to_server()

    def to_server(self) -> None:
        for a in self.client.take_actions():
            if isinstance(a, ev.SendStreamData):
                self.transport.handler(tb.StreamData(a.stream_id, bytes(a.data), a.end_stream, not a.stream_id & 2))

    def objects(self) -> list[ev.ObjectReceived]:
        """Feed what the server sent since last time to the client; the objects it decoded."""
        for item in self.transport.sent[self.seen:]:
            if item[0] == "stream":
                self.client.receive_stream_data(item[1], bytes(item[2]), item[3])
            elif item[0] == "datagram":
                self.client.receive_datagram(item[1])
        self.seen = len(self.transport.sent)
        out = []
        while (e := self.client.next_event()) is not None:
            if isinstance(e, ev.ObjectReceived):
                out.append(e)
        return out

    def payload_writes(self, payloads: list[bytes]) -> list:
        return [item[2] for item in self.transport.sent if item[0] == "stream" and any(item[2] is p for p in payloads)]


def stream_writes_before(sub: Subscriber, payload: bytes):
    """The write just before `payload` on its stream: that object's header fields."""
    sent = sub.transport.sent
    i = next(i for i, item in enumerate(sent) if item[0] == "stream" and item[2] is payload)
    return sent[i - 1][2]


def test_a_burst_is_one_flush_per_subscriber_and_encoded_once():
    async def main():
        pub = Publisher()
        track = pub.create_track(NS, b"video")
        subs = [Subscriber(pub, b"video") for _ in range(3)]
        await asyncio.sleep(0)
        assert len(track.sinks) == 3
        for s in subs:
            s.objects()  # SUBSCRIBE_OK and setup
            s.conn.flushes = 0
        payloads = [b"object %d " % i * 50 for i in range(20)]
        for i, p in enumerate(payloads):
            assert track.write(0, i, p) == 3
        # nothing is flushed per object: the burst waits for the end of this loop turn
        assert all(not any(item[0] == "stream" and item[2] in payloads for item in s.transport.sent) for s in subs)
        await asyncio.sleep(0)
        for s in subs:
            assert s.conn.flushes == 1
            got = s.objects()
            assert [(o.group_id, o.object_id, bytes(o.payload)) for o in got] == [(0, i, p) for i, p in enumerate(payloads)]
            assert len(s.payload_writes(payloads)) == 20  # the written objects themselves, not copies
        for p in payloads:  # one encoding of each object's fields shared by all three
            heads = [stream_writes_before(s, p) for s in subs]
            assert heads[0] is heads[1] is heads[2]

        # a joiner's first object on the stream has its own encoding, then it is in step
        late = Subscriber(pub, b"video")
        await asyncio.sleep(0)
        late.objects()
        more = [b"later %d" % i for i in range(20, 25)]
        for i, p in enumerate(more, start=20):
            assert track.write(0, i, p) == 4
        await asyncio.sleep(0)
        assert [o.object_id for o in late.objects()] == [20, 21, 22, 23, 24]
        assert [o.object_id for o in subs[0].objects()] == [20, 21, 22, 23, 24]
        assert stream_writes_before(late, more[0]) is not stream_writes_before(subs[0], more[0])
        for p in more[1:]:
            assert stream_writes_before(late, p) is stream_writes_before(subs[0], p)

    asyncio.run(main())


def test_datagrams_are_encoded_once_per_alias():
    async def main():
        pub = Publisher()
        track = pub.create_track(NS, b"audio")
        subs = [Subscriber(pub, b"audio") for _ in range(3)]
        await asyncio.sleep(0)
        for s in subs:
            s.objects()
        for i in range(10):
            track.write(i, 0, b"frame %d" % i, subgroup_id=None)
        await asyncio.sleep(0)
        sent = [[item[1] for item in s.transport.sent if item[0] == "datagram"] for s in subs]
        assert all(len(d) == 10 for d in sent)
        for a, b, c in zip(*sent, strict=True):  # each session's first subscription: the same alias
            assert a is b is c
        for s in subs:
            assert [(o.group_id, bytes(o.payload)) for o in s.objects()] == [(i, b"frame %d" % i) for i in range(10)]

    asyncio.run(main())
