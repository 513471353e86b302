"""Interop with moq-rs (Rust, PyPI `moq-rs`) at draft-18, raw QUIC and WebTransport.

moq-rs negotiates moq-lite when both ends are moq-rs; with us it speaks IETF draft-18
because we offer (client) or select (server) only `moqt-18`.
"""

from __future__ import annotations

import asyncio

import pytest

from moq import api
from moq.broadcast import Publisher
from moq.transport.tls import ServerCredentials
from moq.wire.types import namespace_from_str

from .harness import free_udp_port, interop_available, run_peer

pytestmark = pytest.mark.timeout(90)
NS = namespace_from_str("live/demo")


def test_interop_venv_installed():
    assert interop_available(), "make test installs moq-rs into .venv-interop"


@pytest.mark.parametrize("scheme", ["moqt", "https"])
def test_our_client_receives_every_object_from_moqrs_server(scheme):
    async def main():
        port = free_udp_port()
        async with run_peer("moqrs_server.py", f"127.0.0.1:{port}", "3", "0.15") as server:
            hello = await server.read_json(30)
            assert hello and hello["fingerprints"], await server.stderr_tail()
            conn = await api.connect(f"{scheme}://127.0.0.1:{port}/", fingerprint=hello["fingerprints"][0])
            assert conn.transport.protocol == "moqt-18"
            sub = await conn.subscribe(NS, b"video")
            objects = []
            async def collect():
                async for obj in sub:
                    objects.append((obj.group_id, obj.object_id, bytes(obj.payload)))
                    groups = {g for g, _, _ in objects}
                    if len(groups) >= 6:
                        return
            await asyncio.wait_for(collect(), 30)
            await conn.aclose()
        groups = sorted({g for g, _, _ in objects})
        assert groups == list(range(groups[0], groups[0] + len(groups))), "consecutive groups"
        for g in groups[:-1]:  # the last group may still be arriving
            got = [(o, p) for gg, o, p in objects if gg == g]
            assert got == [(o, f"g{g}o{o}".encode()) for o in range(3)], f"group {g}: {got}"
    asyncio.run(main())


@pytest.mark.parametrize("scheme", ["moqt", "https"])
def test_moqrs_client_receives_every_object_from_our_server(scheme):
    async def main():
        creds = ServerCredentials.dev()
        pub = Publisher()
        track = pub.create_track(NS, b"video")
        seen: list[str] = []
        server = await api.serve("127.0.0.1", 0, credentials=creds, handler=pub,
                                 on_connection=lambda conn: seen.append(conn.transport.protocol))

        async def produce():
            g = 0
            while True:
                for o in range(3):
                    track.write(g, o, f"g{g}o{o}".encode())
                track.end_group(g)
                g += 1
                await asyncio.sleep(0.1)

        producer = asyncio.create_task(produce())
        try:
            url = f"{scheme}://127.0.0.1:{server.port}/"
            async with run_peer("moqrs_subscriber.py", url, "live/demo", "video", "5", creds.fingerprint) as sub:
                lines = []
                while True:
                    item = await sub.read_json(30)
                    if item is None:
                        break
                    if "group" in item:
                        lines.append(item)
                assert await sub.proc.wait() == 0, await sub.stderr_tail()
            assert seen and set(seen) == {"moqt-18"}, seen
            assert sub.lines[0] == {"announced": "live/demo"}
        finally:
            producer.cancel()
            server.close()
            await server.wait_closed()
        groups = sorted({x["group"] for x in lines})
        assert len(groups) == 5, lines
        assert groups == list(range(groups[0], groups[0] + 5))
        for g in groups:
            got = [(x["object"], x["payload"]) for x in lines if x["group"] == g]
            assert got == [(o, f"g{g}o{o}") for o in range(3)], f"group {g}: {got}"
    asyncio.run(main())
