"""moq-rs relay for the benchmark: a moq.Server whose one OriginProducer is both the publish and
the subscribe origin, so whatever a publisher announces is served to every subscriber.

Runs under .venv-interop (PyPI moq-rs).  Prints {"listening": ADDR, "fingerprints": [...]} once bound.
Usage: moqrs_relay.py BIND
"""

import asyncio
import json
import sys

import moq  # PyPI moq-rs, not our package


async def main(bind: str) -> None:
    origin = moq.OriginProducer()
    async with moq.Server(bind, tls_generate=["localhost", "127.0.0.1"], publish=origin, subscribe=origin) as server:
        print(json.dumps({"listening": str(server.local_addr), "fingerprints": server.cert_fingerprints()}), flush=True)
        await server.serve()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
