"""moq-rs server that publishes `live/demo` track `video`: group g holds objects
0..per_group-1 with payload b"g{g}o{o}", one group every `interval` seconds.

Runs under the interop venv (PyPI moq-rs).  Prints one JSON line when listening.
Usage: moqrs_server.py BIND [PER_GROUP] [INTERVAL] [MAX_GROUPS]
"""

import asyncio
import json
import sys

import moq  # PyPI moq-rs (the interop venv), not our package


async def main(bind: str, per_group: int = 3, interval: float = 0.2, max_groups: int = 10_000) -> None:
    async with moq.Server(bind, tls_generate=["localhost", "127.0.0.1"]) as server:
        bc = server.create_broadcast("live/demo")
        track = bc.publish_track("video")
        bc.announce()
        print(json.dumps({"listening": str(server.local_addr), "fingerprints": server.cert_fingerprints()}), flush=True)

        async def produce() -> None:
            for g in range(max_groups):
                group = track.create_group(g)
                for o in range(per_group):
                    group.write_frame(f"g{g}o{o}".encode(), timestamp_us=g * 1000 + o)
                group.finish()
                await asyncio.sleep(interval)

        task = asyncio.create_task(produce())
        try:
            await server.serve()
        finally:
            task.cancel()


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(args[0], *(int(args[1]),) if len(args) > 1 else (), *(float(args[2]),) if len(args) > 2 else (),
                     *(int(args[3]),) if len(args) > 3 else ()))
