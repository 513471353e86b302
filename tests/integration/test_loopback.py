"""Real UDP loopback sessions through the library API, raw QUIC and WebTransport."""

from __future__ import annotations

import asyncio

import pytest

from moq import api
from moq.broadcast import Publisher
from moq.connection import Connection, RequestRejectedError
from moq.errors import RequestErrorCode, SessionClosedError
from moq.session import events as ev
from moq.transport.tls import ServerCredentials
from moq.wire.data import ObjectDatagram, ObjectStatus
from moq.wire.types import FilterType, Location, Parameters, SubscriptionFilter, namespace_from_str

pytestmark = [pytest.mark.timeout(60), pytest.mark.parametrize("scheme", ["moqt", "https"])]
NS = namespace_from_str("live/test")
CREDS = ServerCredentials.dev()


class Served:
    """A server with a Publisher on a free port, and a connected client."""

    def __init__(self, scheme: str, handler=None, on_connection=None) -> None:
        self.scheme = scheme
        self.pub = Publisher()
        self.handler = handler or self.pub
        self.on_connection = on_connection

    async def __aenter__(self):
        self.server = await api.serve("127.0.0.1", 0, credentials=CREDS, handler=self.handler,
                                      on_connection=self.on_connection)
        self.url = f"{self.scheme}://127.0.0.1:{self.server.port}/test"
        self.client = await api.connect(self.url, fingerprint=CREDS.fingerprint)
        return self

    async def __aexit__(self, *exc):
        await self.client.aclose()
        self.server.close()
        await self.server.wait_closed()


async def take(iterator, n: int, timeout: float = 10.0) -> list:
    out = []

    async def run():
        async for item in iterator:
            out.append(item)
            if len(out) == n:
                return

    await asyncio.wait_for(run(), timeout)
    return out


def write_group(track, g: int, n: int, subgroups: int = 1) -> None:
    for o in range(n):
        track.write(g, o, f"g{g}o{o}".encode(), subgroup_id=o % subgroups, properties=b"")
    track.end_group(g)


def test_subscribe_objects_in_order_per_subgroup(scheme):
    async def main():
        async with Served(scheme) as s:
            track = s.pub.create_track(NS, b"video")
            write_group(track, 0, 3)
            sub = await s.client.subscribe(NS, b"video")
            assert sub.largest == Location(0, 2)
            for g in range(1, 4):
                write_group(track, g, 6, subgroups=2)
            objs = await take(sub, 18)
            for g in range(1, 4):
                for sg in range(2):
                    ids = [o.object_id for o in objs if o.group_id == g and o.subgroup_id == sg]
                    assert ids == [i for i in range(6) if i % 2 == sg]
            assert all(bytes(o.payload) == f"g{o.group_id}o{o.object_id}".encode() for o in objs)
    asyncio.run(main())


def test_filters(scheme):
    async def main():
        async with Served(scheme) as s:
            track = s.pub.create_track(NS, b"video")
            track.write(0, 0, b"a")  # group 0 stays open
            nxt = await s.client.subscribe(
                NS, b"video", Parameters(subscription_filter=SubscriptionFilter(FilterType.NEXT_GROUP_START)))
            rng = await s.client.subscribe(NS, b"audio") if False else None
            track2 = s.pub.create_track(NS, b"audio")
            write_group(track2, 0, 2)
            rng = await s.client.subscribe(NS, b"audio", Parameters(subscription_filter=SubscriptionFilter(
                FilterType.ABSOLUTE_RANGE, Location(2, 1), 1)))
            track.write(0, 1, b"b")  # before the next group: filtered out
            track.end_group(0)
            write_group(track, 1, 2)
            for g in range(1, 5):
                write_group(track2, g, 3)
            got = await take(nxt, 2)
            assert [(o.group_id, o.object_id) for o in got] == [(1, 0), (1, 1)]
            got = await take(rng, 5)
            assert [(o.group_id, o.object_id) for o in got] == [(2, 1), (2, 2), (3, 0), (3, 1), (3, 2)]
            done = await take(rng, 1, timeout=3) if not rng.ended else []
            assert done == [] and rng.done is not None  # PUBLISH_DONE at the end of the range
    asyncio.run(main())


def test_fetch_standalone_and_joining(scheme):
    async def main():
        async with Served(scheme) as s:
            track = s.pub.create_track(NS, b"video")
            for g in range(3):
                write_group(track, g, 4)
            track.write(3, 0, b"g3o0")
            track.write(3, 1, b"g3o1")
            f = await s.client.fetch(NS, b"video", Location(0, 2), Location(2, 0))
            got = [(o.group_id, o.object_id) async for o in f]
            assert got == [(0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3), (2, 0), (2, 1), (2, 2), (2, 3)]
            assert all(o for o in got)
            sub = await s.client.subscribe(NS, b"video")
            jf = await s.client.joining_fetch(sub, 0)
            assert [(o.group_id, o.object_id, bytes(o.payload)) async for o in jf] == [
                (3, 0, b"g3o0"), (3, 1, b"g3o1")]
            jf = await s.client.joining_fetch(sub, 1)
            assert [(o.group_id, o.object_id) async for o in jf] == [(2, i) for i in range(4)] + [(3, 0), (3, 1)]
            with pytest.raises(RequestRejectedError) as err:
                await s.client.fetch(NS, b"video", Location(9, 0), Location(10, 0))
            assert err.value.code == RequestErrorCode.INVALID_RANGE
    asyncio.run(main())


def test_unknown_track_and_track_status(scheme):
    async def main():
        async with Served(scheme) as s:
            track = s.pub.create_track(NS, b"video")
            write_group(track, 7, 2)
            with pytest.raises(RequestRejectedError) as err:
                await s.client.subscribe(NS, b"nope")
            assert err.value.code == RequestErrorCode.DOES_NOT_EXIST
            st = await s.client.track_status(NS, b"video")
            assert st.parameters.largest_object == Location(7, 1)
    asyncio.run(main())


def test_client_publishes_to_server(scheme):
    """The other direction: the server subscribes to a track the client announced."""
    received: asyncio.Queue = asyncio.Queue()

    class Subscriber:
        def on_request(self, conn: Connection, event) -> None:
            if isinstance(event, ev.PublishNamespaceRequested):
                conn.accept(event.request_id)
                asyncio.get_running_loop().create_task(self._pull(conn, event.message.track_namespace))
            elif isinstance(event, ev.PublishRequested):
                sub = conn.accept_publish(event.request_id)
                asyncio.get_running_loop().create_task(self._drain(sub, "push"))
            else:
                conn.reject(event.request_id, RequestErrorCode.NOT_SUPPORTED)

        async def _pull(self, conn, ns):
            sub = await conn.subscribe(ns, b"mic")
            await self._drain(sub, "pull")

        async def _drain(self, sub, how):
            async for obj in sub:
                await received.put((how, obj.group_id, obj.object_id, bytes(obj.payload)))

        def on_cancelled(self, conn, request_id, code): ...
        def on_update(self, conn, event): ...
        def on_closed(self, conn): ...

    async def main():
        async with Served(scheme, handler=Subscriber()) as s:
            client_pub = Publisher()
            s.client.handler = client_pub
            mic = client_pub.create_track(NS, b"mic")
            await s.client.publish_namespace(NS)
            for _ in range(100):
                if mic.sinks:
                    break
                await asyncio.sleep(0.02)
            write_group(mic, 0, 3)
            cam = client_pub.create_track(NS, b"cam")
            await client_pub.push(s.client, cam)
            write_group(cam, 5, 2)
            got = [await asyncio.wait_for(received.get(), 10) for _ in range(5)]
            assert sorted(got) == [("pull", 0, i, f"g0o{i}".encode()) for i in range(3)] + [
                ("push", 5, i, f"g5o{i}".encode()) for i in range(2)]
    asyncio.run(main())


def test_datagrams_and_status_objects(scheme):
    class DatagramPublisher(Publisher):
        def on_request(self, conn, event):
            if isinstance(event, ev.SubscribeRequested):
                conn.accept_subscribe(event.request_id)
                for o in range(5):
                    conn.data.send_datagram(event.request_id, ObjectDatagram(0, 1, o, payload=b"dg%d" % o))
                conn.data.send_datagram(event.request_id, ObjectDatagram(0, 1, 5, status=ObjectStatus.END_OF_GROUP))
            else:
                super().on_request(conn, event)

    async def main():
        async with Served(scheme, handler=DatagramPublisher()) as s:
            sub = await s.client.subscribe(NS, b"dg")
            got = await take(sub, 6)
            assert [(o.subgroup_id, o.group_id, o.object_id, bytes(o.payload)) for o in got[:5]] == [
                (None, 1, i, b"dg%d" % i) for i in range(5)]
            assert got[5].status == ObjectStatus.END_OF_GROUP and got[5].payload == b""
    asyncio.run(main())


def test_goaway_and_session_loss(scheme):
    conns: list[Connection] = []

    async def main():
        async with Served(scheme, on_connection=conns.append) as s:
            track = s.pub.create_track(NS, b"video")
            sub = await s.client.subscribe(NS, b"video")
            for _ in range(100):
                if conns:
                    break
                await asyncio.sleep(0.01)
            conns[0].send_goaway("", 1000)
            for _ in range(100):
                if s.client.goaway is not None:
                    break
                await asyncio.sleep(0.01)
            assert s.client.goaway is not None and s.client.goaway.timeout_ms == 1000
            write_group(track, 0, 1)
            assert len(await take(sub, 1)) == 1
            conns[0].close(0x1, "bye")
            await asyncio.wait_for(s.client.wait_closed(), 10)
            assert track.sinks == []  # the server cleaned up the subscription
            with pytest.raises(SessionClosedError):
                await s.client.subscribe(NS, b"video")
    asyncio.run(main())


def test_request_update_changes_forward_state_and_filter(scheme):
    async def main():
        async with Served(scheme) as s:
            track = s.pub.create_track(NS, b"video")
            sub = await s.client.subscribe(NS, b"video")
            write_group(track, 0, 2)
            assert [(o.group_id, o.object_id) for o in await take(sub, 2)] == [(0, 0), (0, 1)]
            await s.client.request_update(sub.request_id, Parameters(forward=0))
            write_group(track, 1, 2)  # not forwarded
            await s.client.request_update(sub.request_id, Parameters(forward=1, subscription_filter=SubscriptionFilter(
                FilterType.ABSOLUTE_RANGE, Location(2, 1), 1)))
            for g in range(2, 5):
                write_group(track, g, 2)
            got = await take(sub, 3)
            assert [(o.group_id, o.object_id) for o in got] == [(2, 1), (3, 0), (3, 1)]
            rest = await asyncio.wait_for(_remaining(sub), 5)  # ends at PUBLISH_DONE after group 3
            assert rest == [] and sub.done is not None
    asyncio.run(main())


async def _remaining(sub) -> list:
    return [(o.group_id, o.object_id) async for o in sub]
