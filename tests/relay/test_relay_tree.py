"""Relays chained into a tree (`--upstream`): publisher → edge A → origin → edge B → viewer.

Edge A announces its publisher's namespace to the origin; edge B routes a subscription for a
namespace it does not know to the origin, which routes it to edge A.  One upstream
subscription per hop, whatever the number of viewers."""

from __future__ import annotations

import asyncio

import pytest

from moq.session import events as ev
from moq.wire.types import namespace_from_str

from .relayproc import CountingPublisher, RelayProcess, connect, take, wait_until

pytestmark = pytest.mark.timeout(60)
NS = namespace_from_str("live/tree")


def test_publisher_edge_origin_edge_viewer():
    with RelayProcess() as origin:
        up = ("--upstream", origin.url(), "--upstream-fingerprint", origin.fingerprint)
        with RelayProcess(*up) as edge_a, RelayProcess(*up) as edge_b:
            async def main() -> None:
                pub = CountingPublisher()
                pconn = await connect(edge_a, "moqt", handler=pub)
                track = pub.create_track(NS, b"video")
                await pconn.publish_namespace(NS)
                # the announcement travels edge A → origin
                await wait_until(lambda: b"namespace_published" in origin.log_tail().encode()
                                 or "upstream_announced" in edge_a.log_tail(), timeout=10,
                                 what="the announcement reaching the origin")
                viewers = [await connect(edge_b, scheme) for scheme in ("moqt", "https", "moqt")]
                subs = []
                for v in viewers:
                    for _ in range(50):  # edge B's link to the origin may still be coming up
                        try:
                            subs.append(await v.subscribe(NS, b"video"))
                            break
                        except Exception:
                            await asyncio.sleep(0.1)
                assert len(subs) == len(viewers)
                await wait_until(lambda: len(track.sinks) == 1, what="one subscription at the publisher")
                for g in range(3):
                    for o in range(4):
                        track.write(g, o, b"g%do%d" % (g, o))
                    track.end_group(g)
                for sub in subs:
                    got = await take(sub, 12)
                    assert [(x.group_id, x.object_id, bytes(x.payload)) for x in got] == [
                        (g, o, b"g%do%d" % (g, o)) for g in range(3) for o in range(4)]
                assert pub.requests["SubscribeRequested"] == 1  # one upstream subscription per hop
                for c in (*viewers, pconn):
                    await c.aclose()

            asyncio.run(main())


def test_namespace_discovery_crosses_the_tree_and_never_echoes_back():
    """A SUBSCRIBE_NAMESPACE on edge B learns a namespace published at edge A (through the
    origin), and its end; edge A, which announced it, is never told it back by the origin,
    so its withdrawal is not held up by its own echo."""
    with RelayProcess() as origin:
        up = ("--upstream", origin.url(), "--upstream-fingerprint", origin.fingerprint)
        with RelayProcess(*up) as edge_a, RelayProcess(*up) as edge_b:
            async def main() -> None:
                prefix = namespace_from_str("live")
                watch_b = await connect(edge_b, "moqt")
                watch_a = await connect(edge_a, "moqt")
                _, qb = await watch_b.subscribe_namespace(prefix)
                _, qa = await watch_a.subscribe_namespace(prefix)
                pub = CountingPublisher()
                pconn = await connect(edge_a, "moqt", handler=pub)
                track = pub.create_track(NS, b"video")
                await pconn.publish_namespace(NS)
                got = await asyncio.wait_for(qb.get(), 15)
                assert isinstance(got, ev.NamespaceReceived) and got.track_namespace_suffix == NS[1:]
                got = await asyncio.wait_for(qa.get(), 5)  # the local announcement, once
                assert isinstance(got, ev.NamespaceReceived) and got.track_namespace_suffix == NS[1:]
                sub = await watch_b.subscribe(NS, b"video")  # the learned name routes up the tree
                await wait_until(lambda: len(track.sinks) == 1, what="the subscription reaching the publisher")
                track.write(0, 0, b"hello")
                track.end_group(0)
                assert [o.payload for o in await take(sub, 1)] == [b"hello"]
                await pconn.aclose()
                for q in (qa, qb):
                    got = await asyncio.wait_for(q.get(), 15)
                    assert isinstance(got, ev.NamespaceDoneReceived) and got.track_namespace_suffix == NS[1:]
                assert qa.empty()
                await watch_a.aclose()
                await watch_b.aclose()

            asyncio.run(main())
