"""viewer.subscribe.Viewer in-process against a library server (no relay): catalog-driven
track discovery, catalog updates, stalls and track ends as the exit-code logic sees them."""

from __future__ import annotations

import asyncio

import pytest

from moq import api
from moq.broadcast import Publisher
from moq.media.catalog import Catalog, CatalogTrack
from moq.media.loc import LocProperties, now_us
from moq.transport.tls import ServerCredentials
from moq.wire.types import namespace_from_str
from viewer.subscribe import Viewer, ViewError

pytestmark = pytest.mark.timeout(30)
NS = "test/view"


async def serve(pub: Publisher):
    creds = ServerCredentials.dev()
    server = await api.serve("127.0.0.1", 0, credentials=creds, handler=pub)
    conn = await api.connect(f"moqt://127.0.0.1:{server.port}/", fingerprint=creds.fingerprint)
    return server, conn


def write_catalog(track, group: int, *entries: CatalogTrack) -> None:
    track.write(group, 0, Catalog(entries).encode())
    track.end_group(group)


async def produce(track, *, objects: int, interval: float = 0.02, per_group: int = 10) -> None:
    for i in range(objects):
        g, o = divmod(i, per_group)
        track.write(g, o, b"frame%d" % i, properties=LocProperties(timestamp=now_us()).encode())
        if o == per_group - 1:
            track.end_group(g)
        await asyncio.sleep(interval)


def test_all_follows_catalog_updates_and_names_its_tracks():
    async def main():
        pub = Publisher()
        ns = namespace_from_str(NS)
        cat, cam, mic = (pub.create_track(ns, n) for n in (b"catalog", b"cam", b"mic"))
        write_catalog(cat, 0, CatalogTrack("cam", role="video", codec="avc1.42C01E"))
        server, conn = await serve(pub)
        seen, infos = [], []
        viewer = Viewer(conn, NS, "all", on_object=lambda rx: seen.append((rx.track, rx.latency_ms is None)),
                        on_track=lambda name, kind, entry: infos.append((name, kind, entry and entry.codec)))
        tasks = []
        try:
            await viewer.start()
            assert set(viewer.readers) == {"catalog", "cam"} and viewer.readers["cam"].kind == "video"
            tasks = [asyncio.create_task(produce(cam, objects=40)), asyncio.create_task(produce(mic, objects=40))]
            await asyncio.sleep(0.2)
            write_catalog(cat, 1, CatalogTrack("cam", role="video", codec="avc1.42C01E"),
                          CatalogTrack("mic", codec="opus", samplerate=48000))
            result = await viewer.run(1.2, asyncio.Event())
        finally:
            for t in tasks:
                t.cancel()
            await viewer.close()
            server.close()
            await server.wait_closed()
        assert set(viewer.readers) == {"catalog", "cam", "mic"} and viewer.readers["mic"].kind == "audio"
        assert ("catalog", True) in seen and ("cam", False) in seen and ("mic", False) in seen
        assert ("cam", "video", "avc1.42C01E") in infos and ("mic", "audio", "opus") in infos
        assert result.problems() == [] and result.stats.summary()["gaps"] == 0
        assert len(result.stats.tracks["catalog"].groups) == 2  # the first catalog and its update
    asyncio.run(main())


def test_named_track_learns_its_kind_from_the_catalog_and_stalls_are_reported():
    async def main():
        pub = Publisher()
        ns = namespace_from_str(NS)
        cat, cam = pub.create_track(ns, b"catalog"), pub.create_track(ns, b"cam")
        write_catalog(cat, 0, CatalogTrack("cam", codec="avc1.42C01E", width=160, height=90))
        server, conn = await serve(pub)
        viewer = Viewer(conn, NS, "cam")
        try:
            await viewer.start()
            await produce(cam, objects=10)  # then silence, without ending the track
            result = await viewer.run(2.8, asyncio.Event())
        finally:
            await viewer.close()
            server.close()
            await server.wait_closed()
        assert viewer.readers["cam"].kind == "video"  # "cam" says nothing; the catalog does
        assert not viewer.readers["catalog"].visible and "catalog" not in result.stats.tracks
        assert result.stats.tracks["cam"].objects == 10
        problems = result.problems()
        assert len(problems) == 1 and "cam: nothing received in the last" in problems[0]
    asyncio.run(main())


def test_refusals_and_interruption():
    async def main():
        pub = Publisher()
        ns = namespace_from_str(NS)
        video = pub.create_track(ns, b"video")
        server, conn = await serve(pub)
        try:
            with pytest.raises(ViewError) as e:
                await Viewer(conn, NS, "nosuch").start()
            assert e.value.code == 4 and "test/view/nosuch: no such track" in e.value.message
            with pytest.raises(ViewError) as e:
                await Viewer(conn, NS, "catalog").start()
            assert e.value.code == 4
            viewer = Viewer(conn, NS, "video")  # no catalog: the named track alone
            await viewer.start()
            producer = asyncio.create_task(produce(video, objects=100))
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(0.5, stop.set)
            result = await viewer.run(10, stop)
            producer.cancel()
            await viewer.close()
        finally:
            server.close()
            await server.wait_closed()
        assert result.interrupted and result.elapsed < 2 and result.problems() == []
        assert set(viewer.readers) == {"video"} and result.stats.tracks["video"].objects > 10
    asyncio.run(main())
