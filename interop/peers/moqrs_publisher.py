"""moq-rs client that publishes BROADCAST/TRACK to a relay at URL: group g holds objects
0..per_group-1 with payload b"g{g}o{o}", one group every `interval` s, for N groups.

Runs under the interop venv (PyPI moq-rs).  Prints {"published": g} per group.
Usage: moqrs_publisher.py URL BROADCAST TRACK N_GROUPS FINGERPRINT [PER_GROUP] [INTERVAL]
"""

import asyncio
import json
import sys

import moq  # PyPI moq-rs (the interop venv), not our package


async def main(url: str, broadcast: str, track_name: str, groups: str, fingerprint: str,
               per_group: str = "3", interval: str = "0.1") -> None:
    async with moq.Client(url, tls_verify=True, tls_fingerprints=[fingerprint], tls_system_roots=False,
                          reconnect=False, websocket_enabled=False) as client:
        bc = client.create_broadcast(broadcast)
        track = bc.publish_track(track_name)
        bc.announce()
        for g in range(int(groups)):
            group = track.create_group(g)
            for o in range(int(per_group)):
                group.write_frame(f"g{g}o{o}".encode(), timestamp_us=g * 1000 + o)
            group.finish()
            print(json.dumps({"published": g}), flush=True)
            await asyncio.sleep(float(interval))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:8]))
