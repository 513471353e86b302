"""Issue 10's attacks that broke other people's streams, replayed against a real relay carrying
a real `moq-publish --input testsrc` and watched by a real `moq-view`: the publisher stays
connected, the viewer gets every object, and its p99 latency (from the LOC capture timestamp)
stays under 50 ms while the attack runs.  The attackers are library sessions sending
hand-made draft-18 requests (through `conn.session`, so nothing checks them first) or raw
transport sessions writing bytes.

1. a FETCH whose End Location is before its Start (standalone, and an absolute joining one)
4. SUBSCRIBE floods: 2 sessions x 2000 made-up tracks in the live namespace, 2000 in unknown
   namespaces, and the same missing track asked again and again (negative cache)
5. TRACK_STATUS and REQUEST_UPDATE floods (3000 each)
6. an object over --max-object-size (counted and logged) and sessions that end around SETUP
   (the `sessions` gauge comes back down)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from moq.connection import RequestRejectedError
from moq.errors import RequestErrorCode
from moq.transport import base as tb
from moq.transport import endpoint
from moq.wire import control as c
from moq.wire.data import SubgroupHeader, encode_subgroup_object
from moq.wire.types import Location, Parameters, namespace_from_str
from tests.media.procs import PublisherProcess
from viewer.stats import percentile

from .relayproc import ROOT, RelayProcess, bad_session, connect, python_env, wait_until

pytestmark = pytest.mark.timeout(60)

NS_TEXT = "live/attacked"
NS = namespace_from_str(NS_TEXT)
FPS = 30
PUBLISH = ("--input", "testsrc", "--size", "320x180", "--fps", str(FPS), "--video-bitrate", "300k", "--gop", "0.5")
MAX_OBJECT = 100_000
AFTER_ATTACK = 3.0  # seconds the viewer goes on watching once the attack is over
P99_MS = 50.0
#: a p99 over ~100 objects on a shared 2-core machine is at the mercy of the neighbours' load
#: (a quiet run of a flood measures 10-40 ms; the same viewer with no attack at all reached
#: 100-240 ms while other test runs kept 15 processes runnable); a regression is deterministic
#: (without the limits the floods are not even answered in 12 s), so a rerun is no free pass
LATENCY_RERUNS = pytest.mark.flaky(reruns=2)


@pytest.fixture(scope="module")
def stage():
    """One relay and one publisher for every attack (each test brings its own viewer)."""
    with RelayProcess("--drain-timeout", "1", "--max-object-size", str(MAX_OBJECT),
                      "--cache-groups-per-track", "1") as relay, \
            PublisherProcess(relay.url(), NS_TEXT, *PUBLISH, fingerprint=relay.fingerprint) as pub:
        deadline = time.monotonic() + 20
        while relay.metrics()["moq_relay_namespaces"] < 1:
            assert time.monotonic() < deadline and pub.proc.poll() is None, pub.output()
            time.sleep(0.1)
        yield relay, pub
        assert relay.alive(), relay.log_tail()


class Viewer:
    """`moq-view --track video --json` until SIGINT (at most 30 s); its lines in a temporary file."""

    def __init__(self, relay: RelayProcess) -> None:
        self.out = tempfile.NamedTemporaryFile(prefix="moq-view-", suffix=".jsonl", delete=False)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "viewer", relay.url("moqt"), "--namespace", NS_TEXT, "--track", "video", "--json",
             "--duration", "30", "--fingerprint", relay.fingerprint],
            cwd=ROOT, env=python_env(), stdout=self.out, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)

    def lines(self) -> list[dict]:
        text = Path(self.out.name).read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip().endswith("}")]

    async def started(self, objects: int = 3) -> None:
        await wait_until(lambda: sum("group" in x for x in self.lines()) >= objects, timeout=15,
                         what="the viewer's first objects")

    def finish(self) -> tuple[list[dict], dict]:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(20)
        err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
        lines = self.lines()
        assert self.proc.returncode == 0 and lines and lines[-1].get("summary"), err[-3000:]
        return [x for x in lines if "group" in x], lines[-1]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.out.close()
        with contextlib.suppress(OSError):
            Path(self.out.name).unlink()


def run_attack(stage, attack) -> dict:
    """Start a viewer, run `attack(relay)` once it receives, and check what issue 10 asks of
    each attack: the publisher stayed connected, the viewer got every object, p99 < 50 ms."""
    relay, pub = stage
    viewer = Viewer(relay)
    try:
        async def main() -> dict:
            await viewer.started()
            info = {"before": sum("group" in x for x in viewer.lines())}
            t0 = time.monotonic()
            info.update(await asyncio.wait_for(attack(relay), 20) or {})
            info["attack_s"] = round(time.monotonic() - t0, 2)
            info["during"] = sum("group" in x for x in viewer.lines()) - info["before"]
            await asyncio.sleep(AFTER_ATTACK)
            return info

        info = asyncio.run(main())
        objects, summary = viewer.finish()
    finally:
        viewer.close()
    # latency of what arrived from the attack's start on (the viewer's own start-up is not the attack's)
    during = [o["latency_ms"] for o in objects[info["before"]:]]
    info.update(p99_ms=percentile(during, 99), p50_ms=percentile(during, 50), objects=len(objects),
                whole_run_p99_ms=summary["latency_ms_p99"])
    print(f"attack figures: {info}")
    print("latencies (ms) from the attack on:", [round(x) for x in during])
    assert pub.proc.poll() is None and "relay_connection_lost" not in pub.stderr(), pub.output()
    assert relay.metrics()["moq_relay_namespaces"] == 1
    # every object: no hole inside a group nor a missing group, and objects all along
    assert summary["gaps"] == 0, summary
    groups = sorted({o["group"] for o in objects})
    assert groups == list(range(groups[0], groups[-1] + 1)), groups
    # objects all along: through the attack and after it, at the publisher's frame rate
    assert info["during"] >= FPS * info["attack_s"] * 0.5, info
    assert len(objects) - info["before"] - info["during"] >= FPS * AFTER_ATTACK * 0.5, info
    assert info["p99_ms"] < P99_MS, (summary, info)
    return info


SETUP = c.Setup(((c.SetupOption.MOQT_IMPLEMENTATION, b"attacker/0"),)).encode()


class RawPeer:
    """A raw transport session that floods hand-encoded requests, one per bidirectional
    stream, and only counts what comes back (FINs of answered request streams, the close):
    the attacker must cost this shared test machine as little as possible."""

    def __init__(self) -> None:
        self.transport = None
        self.next_id = 0
        self.finished = 0  # request streams the relay answered and closed
        self.closed: tb.SessionClosed | None = None
        self.setup = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(cls, relay: RelayProcess) -> RawPeer:
        peer = cls()
        peer.transport = await endpoint.connect(relay.url("moqt"), fingerprint=relay.fingerprint)
        peer.transport.set_handler(peer._on_event)
        peer.transport.send_stream_data(peer.transport.open_stream(True), SETUP)
        await asyncio.wait_for(peer.setup, 5)
        return peer

    def _on_event(self, e) -> None:
        if isinstance(e, tb.SessionClosed):
            self.closed = e
        elif isinstance(e, tb.StreamData):
            if not e.bidirectional and not self.setup.done():
                self.setup.set_result(None)
            elif e.bidirectional and e.end_stream:
                self.finished += 1

    def rid(self) -> int:
        rid, self.next_id = self.next_id, self.next_id + 2
        return rid

    def request(self, msg: c.Message, fin: bool = False) -> int:
        sid = self.transport.open_stream(False)
        self.transport.send_stream_data(sid, msg.encode(), fin)
        return sid

    def close(self) -> None:
        if self.closed is None:
            self.transport.close()


@contextlib.contextmanager
def polite():
    """The attacker yields the shared CPUs to the relay, publisher and viewer under test: on a
    real network it runs elsewhere, here it would otherwise measure the machine, not the relay."""
    before = os.getpriority(os.PRIO_PROCESS, 0)
    os.setpriority(os.PRIO_PROCESS, 0, before + 10)
    try:
        yield
    finally:
        with contextlib.suppress(PermissionError):
            os.setpriority(os.PRIO_PROCESS, 0, before)


async def answered(peers: list[RawPeer], count: int, timeout: float = 12.0) -> None:
    """Until `count` request streams were answered or the attackers' sessions closed."""
    await wait_until(lambda: sum(p.finished for p in peers) >= count or all(p.closed for p in peers),
                     timeout=timeout, interval=0.05, what="answers to the flood")


@LATENCY_RERUNS
def test_attack1_fetch_with_end_before_start_is_refused_not_forwarded(stage):
    async def attack(relay: RelayProcess) -> dict:
        conn = await connect(relay, "moqt")
        sub = await conn.subscribe(NS, b"video")
        g = sub.parameters.largest_object.group  # group ids are clock-based: far from 0
        refusals = []
        # older than the relay's cache (--cache-groups-per-track 1): only the publisher has them
        for start, end in ((Location(g - 2, 5), Location(g - 2, 2)), (Location(g - 1, 0), Location(g - 2, 0)),
                           (Location(g, 3), Location(g, 1))):
            with pytest.raises(RequestRejectedError) as err:
                res = await conn.fetch(NS, b"video", start, end)
                async for _ in res:
                    pass
            refusals.append((err.value.code, err.value.reason))
        # an absolute joining fetch starting after the subscription's Joining Location
        with pytest.raises(RequestRejectedError) as err:
            await conn.joining_fetch(sub, g + 10, absolute=True)
        refusals.append((err.value.code, err.value.reason))
        assert all(code == RequestErrorCode.INVALID_RANGE for code, _ in refusals), refusals
        # a valid whole-group fetch whose End {g, 0} is numerically below its Start {g, 3}
        # (the rest of group g): served, and no session is closed for it
        res = await conn.fetch(NS, b"video", Location(g, 1), Location(g, 0))
        got = [o async for o in res]
        assert got and all(o.group_id == g and o.object_id >= 1 for o in got), got
        assert not conn.is_closed
        await conn.aclose()
        return {"refusals": len(refusals), "fetched": len(got)}

    run_attack(stage, attack)


@LATENCY_RERUNS
def test_attack4_subscribe_floods_cost_only_the_flooder(stage):
    relay = stage[0]
    before = relay.metrics()

    async def attack(relay: RelayProcess) -> dict:
        with polite():
            peers = [await RawPeer.open(relay) for _ in range(3)]
            for i, peer in enumerate(peers[:2]):  # made-up tracks in the live namespace
                for k in range(2000):
                    peer.request(c.Subscribe(peer.rid(), NS, b"made-up-%d-%d" % (i, k)))
            for k in range(2000):  # namespaces nobody publishes
                peers[2].request(c.Subscribe(peers[2].rid(), namespace_from_str(f"nobody/{k}"), b"video"))
            await answered(peers, 6000)
            closed = [p.closed.error_code if p.closed else None for p in peers]
            for p in peers:
                p.close()
        # the same missing track again and again: asked upstream once, then refused from the cache
        ghost = await connect(relay, "moqt")
        codes = []
        for _ in range(10):
            with pytest.raises(RequestRejectedError) as err:
                await ghost.subscribe(NS, b"ghost")
            codes.append((err.value.code, err.value.reason))
        assert set(codes) == {(RequestErrorCode.DOES_NOT_EXIST, "track does not exist")}, codes
        await ghost.aclose()
        return {"flooders_closed": closed}

    info = run_attack(stage, attack)
    m = relay.metrics()

    def delta(reason: str) -> float:
        key = f'moq_relay_requests_refused_total{{reason="{reason}"}}'
        return m[key] - before[key]

    info = {r: delta(r) for r in ("request_rate", "source_request_rate", "upstream_pending", "not_found",
                                  "request_flood")}
    info["cache_hits"] = m["moq_relay_negative_cache_hits_total"] - before["moq_relay_negative_cache_hits_total"]
    print(f"attack 4 refusals: {info}")
    assert info["request_flood"] == 3, info  # each flooder was closed once it kept on while refused
    assert info["request_rate"] + info["source_request_rate"] >= 3 * 10, info
    assert info["cache_hits"] >= 9, info
    # refusals are summarized, not one info line each
    log = relay.log_text()
    info_refusals = sum(1 for line in log.splitlines() if '"request_refused"' in line and '"level": "info"' in line)
    assert info_refusals < 40, info_refusals


@LATENCY_RERUNS
def test_attack5_track_status_and_request_update_floods(stage):
    relay = stage[0]

    async def attack(relay: RelayProcess) -> dict:
        with polite():
            status = await RawPeer.open(relay)
            for k in range(3000):
                name = b"video" if k % 2 else b"made-up-status-%d" % k
                status.request(c.TrackStatus(status.rid(), NS, name), fin=True)
            updater = await RawPeer.open(relay)
            sid = updater.request(c.Subscribe(updater.rid(), NS, b"video"))
            blob = b"".join(c.RequestUpdate(updater.rid(), Parameters(subscriber_priority=k % 256)).encode()
                            for k in range(3000))
            updater.transport.send_stream_data(sid, blob)
            await answered([status], 3000)
            # past the rate limit an update is refused, which ends its subscription (PUBLISH_DONE
            # UPDATE_FAILED and FIN, § REQUEST_UPDATE); the updater's session itself goes on
            await answered([updater], 1)
            info = {"status_closed": status.closed is not None, "updater_closed": updater.closed is not None}
            status.close()
            updater.close()
        assert not info["updater_closed"], info
        return info

    before = relay.metrics()
    run_attack(stage, attack)
    m = relay.metrics()
    limited = {r: m[f'moq_relay_requests_refused_total{{reason="{r}"}}']
               - before[f'moq_relay_requests_refused_total{{reason="{r}"}}']
               for r in ("request_rate", "source_request_rate", "request_flood")}
    print(f"attack 5 refusals: {limited}")
    assert limited["request_rate"] + limited["source_request_rate"] >= 10, limited


@LATENCY_RERUNS
def test_attack6_oversized_objects_and_ended_sessions_are_visible(stage):
    relay = stage[0]

    async def attack(relay: RelayProcess) -> dict:
        baseline = relay.metrics()
        # an object over --max-object-size, first on its stream (the header came in the same write)
        transport = await endpoint.connect(relay.url("moqt"), fingerprint=relay.fingerprint)
        setup = c.Setup(((c.SetupOption.MOQT_IMPLEMENTATION, b"attacker/0"),)).encode()
        transport.send_stream_data(transport.open_stream(True), setup)
        header = SubgroupHeader(track_alias=777, group_id=0, subgroup_id=0).encode()
        transport.send_stream_data(transport.open_stream(True), header + encode_subgroup_object(None, 0, 2 * MAX_OBJECT)
                                   + bytes(4096))
        key = 'moq_relay_requests_refused_total{reason="object_too_large"}'
        await wait_until(lambda: relay.metrics()[key] == baseline[key] + 1, timeout=5, what="object_too_large")
        transport.close()
        # sessions that end around SETUP: SETUP and a violation in one write, closed at once
        # after SETUP, closed before SETUP
        for _ in range(10):
            await bad_session(relay, "moqt", setup + setup, None)
        for _ in range(5):
            conn = await connect(relay, "moqt")
            conn.close()
        for _ in range(5):
            t = await endpoint.connect(relay.url("moqt"), fingerprint=relay.fingerprint)
            t.close()
        await wait_until(lambda: relay.metrics()["moq_relay_sessions"] <= baseline["moq_relay_sessions"], timeout=5,
                         what="the sessions gauge back to where it was")
        return {"sessions": relay.metrics()["moq_relay_sessions"]}

    run_attack(stage, attack)
    log = relay.log_text()
    assert '"metric": "object_too_large"' in log, log[-3000:]
