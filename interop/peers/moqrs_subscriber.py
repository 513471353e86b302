"""moq-rs client that subscribes to BROADCAST/TRACK at URL and prints one JSON line per
object: {"group": G, "object": O, "payload": "..."}; exits after N groups.

Runs under the interop venv (PyPI moq-rs).
Usage: moqrs_subscriber.py URL BROADCAST TRACK N_GROUPS FINGERPRINT
"""

import asyncio
import json
import sys

import moq  # PyPI moq-rs (the interop venv), not our package


async def main(url: str, broadcast: str, track_name: str, groups: str, fingerprint: str) -> None:
    async with moq.Client(url, tls_verify=True, tls_fingerprints=[fingerprint], tls_system_roots=False,
                          reconnect=False, websocket_enabled=False) as client:
        bc = await client.announced_broadcast(broadcast)
        print(json.dumps({"announced": broadcast}), flush=True)
        async with await bc.subscribe_track(track_name) as track:
            for _ in range(int(groups)):
                group = await track.next_group()
                if group is None:
                    break
                oid = 0
                async for frame in group:
                    print(json.dumps({"group": group.sequence, "object": oid, "payload": frame.payload.decode()}),
                          flush=True)
                    oid += 1


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
