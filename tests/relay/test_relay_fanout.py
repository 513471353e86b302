"""A real moq-relay process between a library publisher and library subscribers, over raw
QUIC (moqt://) and WebTransport (https://): in-order fan-out per subgroup, late joiners
starting at the live edge, joining and standalone FETCH answered from the relay's cache
(draft-18 § Relays, § Subscription Filters, § Joining Fetches)."""

from __future__ import annotations

import asyncio

import pytest

from moq.wire.types import Location, namespace_from_str

from .relayproc import CountingPublisher, RelayProcess, connect, take, wait_until

pytestmark = [pytest.mark.timeout(40), pytest.mark.parametrize("scheme", ["moqt", "https"])]
NS = namespace_from_str("live/fanout")
PER_GROUP = 6  # objects per group, alternating between subgroups 0 and 1


def payload(g: int, o: int) -> bytes:
    return f"g{g}o{o}".encode() * 10


def write_group(track, g: int, objects=range(PER_GROUP), end: bool = True) -> None:
    for o in objects:
        track.write(g, o, payload(g, o), subgroup_id=o % 2)
    if end:
        track.end_group(g)


def check_in_order(objs, groups) -> None:
    """Every object of `groups` exactly once, each subgroup in publish order, intact payloads."""
    for g in groups:
        for sg in (0, 1):
            got = [o.object_id for o in objs if o.group_id == g and o.subgroup_id == sg]
            assert got == [o for o in range(PER_GROUP) if o % 2 == sg], f"group {g} subgroup {sg}: {got}"
    assert sorted((o.group_id, o.object_id) for o in objs) == [(g, o) for g in groups for o in range(PER_GROUP)]
    for o in objs:
        assert bytes(o.payload) == payload(o.group_id, o.object_id)


def test_fanout_late_join_and_cached_fetches(scheme):
    async def main(relay: RelayProcess) -> None:
        pub = CountingPublisher()
        pconn = await connect(relay, scheme, handler=pub)
        track = pub.create_track(NS, b"video")
        await pconn.publish_namespace(NS)

        conns = [await connect(relay, scheme) for _ in range(3)]
        subs = [await c.subscribe(NS, b"video") for c in conns]
        assert all(s.largest is None for s in subs)  # nothing published yet
        await wait_until(lambda: len(track.sinks) == 1, what="the relay's upstream subscription")

        for g in range(3):
            write_group(track, g)
        for s in subs:
            check_in_order(await take(s, 3 * PER_GROUP), range(3))

        # group 3 is under way: objects 0..2 are published, and every subscriber has them
        write_group(track, 3, range(3), end=False)
        for s in subs:
            got = await take(s, 3)  # two subgroups: no order between them
            assert sorted((o.group_id, o.object_id) for o in got) == [(3, 0), (3, 1), (3, 2)]

        late_conn = await connect(relay, scheme)
        late = await late_conn.subscribe(NS, b"video")
        assert late.largest == Location(3, 2), "SUBSCRIBE_OK carries the Largest Object"
        joined = await late_conn.joining_fetch(late, 0)
        got = [(o.group_id, o.subgroup_id, o.object_id, bytes(o.payload)) async for o in joined]
        assert got == [(3, o % 2, o, payload(3, o)) for o in range(3)], "joining FETCH: the current group so far"
        joined = await late_conn.joining_fetch(late, 1)
        got = [(o.group_id, o.object_id) async for o in joined]
        assert got == [(2, o) for o in range(PER_GROUP)] + [(3, 0), (3, 1), (3, 2)], "joining FETCH, one group back"

        write_group(track, 3, range(3, PER_GROUP))
        write_group(track, 4)
        tail = await take(late, 3 + PER_GROUP)
        assert min((o.group_id, o.object_id) for o in tail) == (3, 3), "the late joiner starts after Largest"
        assert sorted((o.group_id, o.object_id) for o in tail) == [(3, o) for o in range(3, PER_GROUP)] + [
            (4, o) for o in range(PER_GROUP)]
        for s in subs:
            rest = await take(s, 3 + PER_GROUP)
            assert sorted((o.group_id, o.object_id) for o in rest) == sorted((o.group_id, o.object_id) for o in tail)

        # standalone FETCH of a cached range: [(1, 1), (2, 4)) exactly
        fetched = await late_conn.fetch(NS, b"video", Location(1, 1), Location(2, 4))
        got = [(o.group_id, o.subgroup_id, o.object_id, bytes(o.payload)) async for o in fetched]
        want = [(1, o % 2, o, payload(1, o)) for o in range(1, PER_GROUP)] + [
            (2, o % 2, o, payload(2, o)) for o in range(4)]
        assert got == want

        assert pub.requests["SubscribeRequested"] == 1, "one upstream SUBSCRIBE for four subscribers"
        assert pub.requests["FetchRequested"] == 0, "the FETCHes so far were answered from the relay's cache"

        # group 0 has left the relay's cache (--cache-groups-per-track 4, groups 1..4 are in it):
        # that FETCH goes to the publisher, and the answer is the same
        fetched = await late_conn.fetch(NS, b"video", Location(0, 4), Location(1, 2))
        got = [(o.group_id, o.subgroup_id, o.object_id, bytes(o.payload)) async for o in fetched]
        assert got == [(0, 0, 4, payload(0, 4)), (0, 1, 5, payload(0, 5)), (1, 0, 0, payload(1, 0)),
                       (1, 1, 1, payload(1, 1))]
        assert pub.requests["FetchRequested"] == 1
        for c in [*conns, late_conn, pconn]:
            await c.aclose()

    with RelayProcess("--drain-timeout", "1", "--cache-groups-per-track", "4") as relay:
        asyncio.run(main(relay))
        assert relay.stop() == 0, relay.log_tail()
