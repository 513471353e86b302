"""One upstream subscription per track, however many subscribers (draft-18 § Relays):
20 subscribers of one track cause exactly one SUBSCRIBE at the publisher, all of them get
every object, and the upstream subscription is cancelled when the last one leaves."""

from __future__ import annotations

import asyncio

import pytest

from moq.wire.types import namespace_from_str

from .relayproc import CountingPublisher, RelayProcess, connect, take, wait_until

pytestmark = pytest.mark.timeout(60)
NS = namespace_from_str("live/many")
SUBSCRIBERS = 20
GROUPS, PER_GROUP = 3, 4


def test_one_upstream_subscription_for_twenty_subscribers():
    async def main(relay: RelayProcess) -> None:
        pub = CountingPublisher()
        pconn = await connect(relay, "moqt", handler=pub)
        track = pub.create_track(NS, b"video")
        await pconn.publish_namespace(NS)

        # half over raw QUIC, half over WebTransport; one session each (a session may not
        # subscribe twice to one track: DUPLICATE_SUBSCRIPTION)
        conns = await asyncio.gather(*(connect(relay, "moqt" if i % 2 else "https") for i in range(SUBSCRIBERS)))
        subs = await asyncio.gather(*(c.subscribe(NS, b"video") for c in conns))
        await wait_until(lambda: len(track.sinks) == 1, what="the upstream subscription")
        assert pub.requests["SubscribeRequested"] == 1
        m = relay.metrics()
        assert m["moq_relay_subscriptions"] == SUBSCRIBERS and m["moq_relay_tracks"] == 1

        for g in range(GROUPS):
            for o in range(PER_GROUP):
                track.write(g, o, b"%d/%d" % (g, o))
            track.end_group(g)
        results = await asyncio.gather(*(take(s, GROUPS * PER_GROUP) for s in subs))
        want = [(g, o, b"%d/%d" % (g, o)) for g in range(GROUPS) for o in range(PER_GROUP)]
        for i, objs in enumerate(results):
            assert [(o.group_id, o.object_id, bytes(o.payload)) for o in objs] == want, f"subscriber {i}"
        assert len(track.sinks) == 1 and pub.requests["SubscribeRequested"] == 1

        for s in subs[:-1]:
            s.close()
        await asyncio.sleep(0.3)
        assert len(track.sinks) == 1, "the upstream subscription stays while one subscriber is left"
        subs[-1].close()
        await wait_until(lambda: not track.sinks, timeout=5, what="the upstream subscription to be cancelled")
        await wait_until(lambda: relay.metrics()["moq_relay_subscriptions"] == 0, what="no relay subscriptions")
        assert relay.metrics()["moq_relay_tracks"] == 0

        # a new subscriber after that opens a fresh upstream subscription
        again = await conns[0].subscribe(NS, b"video")
        await wait_until(lambda: len(track.sinks) == 1, what="a new upstream subscription")
        assert pub.requests["SubscribeRequested"] == 2
        track.write(GROUPS, 0, b"again")
        [obj] = await take(again, 1)
        assert (obj.group_id, obj.object_id, bytes(obj.payload)) == (GROUPS, 0, b"again")

        # subscribers whose sessions end (rather than unsubscribe) release it as well
        await asyncio.gather(*(c.aclose() for c in conns))
        await wait_until(lambda: not track.sinks, timeout=5, what="release after the sessions closed")
        await pconn.aclose()

    with RelayProcess("--drain-timeout", "1") as relay:
        asyncio.run(main(relay))
        assert relay.stop() == 0, relay.log_tail()
