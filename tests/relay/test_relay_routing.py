"""Routing through a real relay process: unknown namespaces, namespace discovery
(SUBSCRIBE_NAMESPACE → NAMESPACE / NAMESPACE_DONE) and the end of a track when its
publisher's session goes away (PUBLISH_DONE), over raw QUIC and WebTransport."""

from __future__ import annotations

import asyncio

import pytest

from moq.connection import RequestRejectedError
from moq.errors import PublishDoneCode, RequestErrorCode
from moq.session import events as ev
from moq.wire.types import Location, namespace_from_str

from .relayproc import CountingPublisher, RelayProcess, connect, take, wait_until

pytestmark = [pytest.mark.timeout(30), pytest.mark.parametrize("scheme", ["moqt", "https"])]


@pytest.fixture(scope="module")
def relay():
    with RelayProcess("--drain-timeout", "1") as r:
        yield r
        assert r.stop() == 0, r.log_tail()


def test_subscribe_unknown_namespace_does_not_exist(relay, scheme):
    async def main() -> None:
        pub = CountingPublisher()
        pconn = await connect(relay, scheme, handler=pub)
        pub.create_track(namespace_from_str(f"known/{scheme}"), b"video")
        await pconn.publish_namespace(namespace_from_str(f"known/{scheme}"))
        conn = await connect(relay, scheme)
        with pytest.raises(RequestRejectedError) as err:
            await conn.subscribe(namespace_from_str(f"unknown/{scheme}"), b"video")
        assert err.value.code == RequestErrorCode.DOES_NOT_EXIST
        # a known namespace but no such track: the publisher's refusal comes back
        with pytest.raises(RequestRejectedError) as err:
            await conn.subscribe(namespace_from_str(f"known/{scheme}"), b"nope")
        assert err.value.code == RequestErrorCode.DOES_NOT_EXIST
        assert not conn.is_closed
        await conn.aclose()
        await pconn.aclose()

    asyncio.run(main())


def test_subscribe_namespace_sees_announce_and_withdrawal(relay, scheme):
    prefix = namespace_from_str(f"disc-{scheme}")

    async def main() -> None:
        first = CountingPublisher()
        c1 = await connect(relay, scheme, handler=first)
        await c1.publish_namespace(prefix + (b"cam1",))
        watcher = await connect(relay, scheme)
        _, q = await watcher.subscribe_namespace(prefix)
        e = await asyncio.wait_for(q.get(), 5)
        assert isinstance(e, ev.NamespaceReceived) and e.track_namespace_suffix == (b"cam1",)

        second = CountingPublisher()
        c2 = await connect(relay, scheme, handler=second)
        await c2.publish_namespace(prefix + (b"cam2",))
        e = await asyncio.wait_for(q.get(), 5)
        assert isinstance(e, ev.NamespaceReceived) and e.track_namespace_suffix == (b"cam2",)

        await c1.aclose()  # the first publisher's session ends: its namespace is gone
        e = await asyncio.wait_for(q.get(), 5)
        assert isinstance(e, ev.NamespaceDoneReceived) and e.track_namespace_suffix == (b"cam1",)
        assert q.empty()
        await c2.aclose()
        e = await asyncio.wait_for(q.get(), 5)
        assert isinstance(e, ev.NamespaceDoneReceived) and e.track_namespace_suffix == (b"cam2",)
        await watcher.aclose()

    asyncio.run(main())


def test_publisher_session_loss_ends_subscriptions_with_publish_done(relay, scheme):
    ns = namespace_from_str(f"gone/{scheme}")

    async def main() -> None:
        pub = CountingPublisher()
        pconn = await connect(relay, scheme, handler=pub)
        track = pub.create_track(ns, b"video")
        await pconn.publish_namespace(ns)
        conns = [await connect(relay, scheme) for _ in range(2)]
        subs = [await c.subscribe(ns, b"video") for c in conns]
        await wait_until(lambda: len(track.sinks) == 1, what="the upstream subscription")
        track.write(0, 0, b"x")
        track.write(0, 1, b"y")
        for s in subs:
            assert [bytes(o.payload) for o in await take(s, 2)] == [b"x", b"y"]

        pconn.close(0x1, "publisher crashed")  # abrupt: no unsubscribe, no namespace withdrawal
        for s in subs:
            rest = await asyncio.wait_for(take_all(s), 5)  # the iterator ends
            assert rest == []
            assert s.done is not None, "PUBLISH_DONE"
            assert s.done.status_code in (PublishDoneCode.TRACK_ENDED, PublishDoneCode.INTERNAL_ERROR,
                                          PublishDoneCode.GOING_AWAY), s.done
        for c in conns:
            assert not c.is_closed
            with pytest.raises(RequestRejectedError) as err:  # and the track is gone from the relay
                await c.subscribe(ns, b"video")
            assert err.value.code == RequestErrorCode.DOES_NOT_EXIST
            await c.aclose()

    asyncio.run(main())


async def take_all(sub) -> list:
    return [obj async for obj in sub]


def test_track_status_and_track_end_pass_through(relay, scheme):
    ns = namespace_from_str(f"end/{scheme}")

    async def main() -> None:
        pub = CountingPublisher()
        pconn = await connect(relay, scheme, handler=pub)
        track = pub.create_track(ns, b"video")
        await pconn.publish_namespace(ns)
        track.write(4, 0, b"a")
        conn = await connect(relay, scheme)
        st = await conn.track_status(ns, b"video")  # no subscription at the relay yet: asked upstream
        assert st.parameters.largest_object == Location(4, 0)
        sub = await conn.subscribe(ns, b"video")
        track.write(4, 1, b"b")
        track.end_group(4)
        assert [bytes(o.payload) for o in await take(sub, 1)] == [b"b"]
        st = await conn.track_status(ns, b"video")  # answered by the relay from its live track
        assert st.parameters.largest_object == Location(4, 1)

        for o in range(3):
            track.write(5, o, b"c%d" % o)
        track.finish()  # PUBLISH_DONE TRACK_ENDED from the publisher, after every object
        rest = await asyncio.wait_for(take_all(sub), 5)
        assert [(o.group_id, o.object_id) for o in rest] == [(5, 0), (5, 1), (5, 2)]
        assert sub.done is not None and sub.done.status_code == PublishDoneCode.TRACK_ENDED
        await conn.aclose()
        await pconn.aclose()

    asyncio.run(main())
