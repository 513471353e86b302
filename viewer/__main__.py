"""moq-view: subscribe to a broadcast's tracks and report what arrives (one JSON line per
object with --json, else a human summary)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from moq import api
from moq.cli import add_logging_options, add_tls_client_options
from moq.connection import RequestRejectedError
from moq.errors import SessionClosedError
from moq.log import configure_logging
from moq.transport.loop import run
from moq.transport.tls import CertificateMismatch
from moq.wire.types import namespace_from_str

DEFAULT_TRACKS = ("catalog", "video", "audio")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moq-view", description=__doc__)
    p.add_argument("url", help="relay URL: moqt://host:port/path (raw QUIC) or https://host:port/path (WebTransport)")
    p.add_argument("--namespace", required=True, help="track namespace, e.g. live/demo")
    p.add_argument("--track", default="video", help="track name, or 'all' for catalog, video and audio (default video)")
    p.add_argument("--duration", type=float, metavar="SEC", help="stop after SEC seconds (default: until the end)")
    p.add_argument("--json", action="store_true", help="print one JSON line per object and a summary line")
    add_tls_client_options(p)
    add_logging_options(p)
    p.set_defaults(log_level="warning")
    return p


async def view(args: argparse.Namespace) -> int:
    ns = namespace_from_str(args.namespace)
    names = DEFAULT_TRACKS if args.track == "all" else (args.track,)
    try:
        conn = await api.connect(args.url, fingerprint=args.fingerprint, insecure=args.insecure)
    except CertificateMismatch as exc:
        print(f"moq-view: certificate mismatch: {exc}", file=sys.stderr)
        return 3
    except (ConnectionError, TimeoutError, OSError, SessionClosedError) as exc:
        print(f"moq-view: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 3
    subs = {}
    for name in names:
        try:
            subs[name] = await conn.subscribe(ns, name.encode())
        except RequestRejectedError as exc:
            if args.track != "all":
                print(f"moq-view: {args.namespace}/{name}: {exc.reason or 'refused'} (code {exc.code:#x})",
                      file=sys.stderr)
                await conn.aclose()
                return 4
    if not subs:
        print(f"moq-view: no track of {args.namespace} is available", file=sys.stderr)
        await conn.aclose()
        return 4
    stats = {"objects": 0, "bytes": 0, "groups": set(), "gaps": 0}
    last: dict[str, tuple[int, int]] = {}
    start = time.monotonic()

    async def read(name: str) -> None:
        async for obj in subs[name]:
            stats["objects"] += 1
            stats["bytes"] += len(obj.payload)
            stats["groups"].add((name, obj.group_id))
            prev = last.get(name)
            if prev is not None and obj.group_id == prev[0] and obj.object_id != prev[1] + 1:
                stats["gaps"] += 1
            last[name] = (obj.group_id, obj.object_id)
            if args.json:
                print(json.dumps({"track": name, "group": obj.group_id, "subgroup": obj.subgroup_id,
                                  "object": obj.object_id, "bytes": len(obj.payload)}), flush=True)

    tasks = [asyncio.create_task(read(n)) for n in subs]
    done, pending = await asyncio.wait(tasks, timeout=args.duration)
    for t in pending:
        t.cancel()
    elapsed = time.monotonic() - start
    ended_early = args.duration is not None and elapsed < args.duration - 0.5
    await conn.aclose()
    summary = {"summary": True, "objects": stats["objects"], "groups": len(stats["groups"]), "gaps": stats["gaps"]}
    if args.json:
        print(json.dumps(summary), flush=True)
    else:
        print(f"{args.namespace}: {stats['objects']} objects, {stats['bytes']} bytes, {len(stats['groups'])} groups, "
              f"{stats['gaps']} gaps in {elapsed:.1f} s")
    for t in done:
        if t.exception() is not None:
            print(f"moq-view: {t.exception()}", file=sys.stderr)
            return 5
    if stats["objects"] == 0 or ended_early:
        print("moq-view: the broadcast ended or sent nothing" if stats["objects"] else "moq-view: no objects received",
              file=sys.stderr)
        return 5
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_format, args.log_level)
    return run(view(args))


if __name__ == "__main__":
    sys.exit(main())
