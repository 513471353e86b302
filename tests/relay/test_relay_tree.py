"""Relays chained into a tree (`--upstream`): publisher → edge A → origin → edge B → viewer.

Edge A announces its publisher's namespace to the origin; edge B routes a subscription for a
namespace it does not know to the origin, which routes it to edge A.  One upstream
subscription per hop, whatever the number of viewers."""

from __future__ import annotations

import asyncio

import pytest

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
