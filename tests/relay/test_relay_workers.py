"""`moq-relay --workers N`: worker processes behind one SO_REUSEPORT UDP port, linked to worker 0
like relays in a tree, so a track enters each worker once; /metrics labels every sample with its
worker; SIGTERM drains every worker; a worker's death stops the relay with a non-zero code."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.error

import pytest

from moq.session import events as ev
from moq.wire.types import namespace_from_str
from relay.config import load_config, usable_cores

from .relayproc import CountingPublisher, RelayProcess, connect, take, wait_until

pytestmark = pytest.mark.timeout(120)
NS = namespace_from_str("live/workers")
SUBSCRIBERS = 20
GROUPS, PER_GROUP = 4, 10


def payload(g: int, o: int) -> bytes:
    return b"g%do%d-" % (g, o) * 20


def healthz(relay: RelayProcess) -> int:
    try:
        relay.http_get("/healthz")
        return 200
    except urllib.error.HTTPError as exc:
        return exc.code


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return False


async def connect_on(relay: RelayProcess, worker: str) -> tuple:
    """A session (with a publisher as handler) that the kernel's hash put on `worker`: new source
    ports until it does."""
    for _ in range(40):  # each attempt lands there with probability 1/2
        before = relay.by_worker("moq_relay_sessions_accepted_total")
        total = sum(before.values())
        pub = CountingPublisher()
        conn = await connect(relay, "moqt", handler=pub)
        await wait_until(lambda t=total: sum(relay.by_worker("moq_relay_sessions_accepted_total").values()) > t,
                         what="the session accepted")
        if relay.by_worker("moq_relay_sessions_accepted_total")[worker] > before[worker]:
            return conn, pub
        await conn.aclose()
    raise AssertionError(f"no session landed on worker {worker}")


@pytest.mark.parametrize("pub_worker", ["0", "1"], ids=["publisher-on-hub", "publisher-on-worker-1"])
def test_two_workers_every_subscriber_gets_every_object_one_upstream_subscription_per_worker(pub_worker):
    async def main(relay: RelayProcess) -> None:
        pconn, pub = await connect_on(relay, pub_worker)
        track = pub.create_track(NS, b"video")
        await pconn.publish_namespace(NS)
        # wherever the publisher landed, its namespace reaches worker 0, the hub
        await wait_until(lambda: relay.by_worker("moq_relay_namespaces").get("0", 0) >= 1, timeout=10,
                         what="worker 0 learning the namespace")
        accepted = "moq_relay_sessions_accepted_total"  # a counter: sessions closing meanwhile do not matter
        before = relay.by_worker(accepted)
        conns = [await connect(relay, "moqt" if i % 2 else "https") for i in range(SUBSCRIBERS)]

        def per_worker() -> dict[str, float]:
            now = relay.by_worker(accepted)
            return {k: now[k] - before[k] for k in now}

        await wait_until(lambda: sum(per_worker().values()) == SUBSCRIBERS, timeout=10, what="20 sessions")
        spread = per_worker()
        assert set(spread) == {"0", "1"} and min(spread.values()) >= 1, f"subscribers per worker: {spread}"

        subs = await asyncio.gather(*(c.subscribe(NS, b"video") for c in conns))
        await wait_until(lambda: len(track.sinks) == 1, what="one subscription at the publisher")
        for g in range(GROUPS):
            for o in range(PER_GROUP):
                track.write(g, o, payload(g, o))
            track.end_group(g)
        got = await asyncio.gather(*(take(s, GROUPS * PER_GROUP, timeout=30) for s in subs))
        for objs in got:
            for g in range(GROUPS):  # each group in order, intact; nothing missing or twice
                assert [(o.object_id, bytes(o.payload)) for o in objs if o.group_id == g] == [
                    (o, payload(g, o)) for o in range(PER_GROUP)]
            assert len(objs) == GROUPS * PER_GROUP

        assert pub.requests["SubscribeRequested"] == 1, "the track leaves the publisher once"
        assert relay.by_worker("moq_relay_upstream_subscriptions") == {"0": 1, "1": 1}, \
            "each worker holds one upstream subscription for the track"
        # 20 subscribers, plus one worker subscribing from the other
        assert sum(relay.by_worker("moq_relay_subscriptions").values()) == SUBSCRIBERS + 1
        assert relay.by_worker("moq_relay_worker_up") == {"0": 1, "1": 1}
        assert relay.metrics()["moq_relay_workers"] == 2
        for name in ("datagrams_sent", "bytes_sent", "send_calls", "datagrams_received", "bytes_received"):
            assert set(relay.by_worker(f"moq_relay_udp_{name}_total")) == {"0", "1"}, name
        assert all(v > 0 for v in relay.by_worker("moq_relay_udp_datagrams_received_total").values())
        await asyncio.gather(*(c.aclose() for c in [*conns, pconn]))

    with RelayProcess("--workers", "2", "--drain-timeout", "5") as relay:
        assert len(relay.worker_pids) == 2 and relay.pid not in relay.worker_pids
        assert healthz(relay) == 200
        assert len(relay.http_get("/fingerprint").decode().strip()) == 64
        asyncio.run(main(relay))
        assert relay.stop(timeout=30) == 0, relay.log_tail()
        lines = [json.loads(line) for line in relay.log_text().splitlines() if line.startswith("{")]
        assert lines and all("worker" in e for e in lines), [e for e in lines if "worker" not in e][:3]
        assert {e["worker"] for e in lines} == {"0", "1", "supervisor"}
        subscribed = [e["worker"] for e in lines if e["event"] == "upstream_subscribed"]
        assert sorted(subscribed) == ["0", "1"], "one upstream SUBSCRIBE per worker"


def test_a_pushed_track_on_one_worker_reaches_subscribers_on_both():
    """PUBLISH (push) on worker 1: worker 0 learns the namespace over the link and subscribes."""
    async def main(relay: RelayProcess) -> None:
        pconn, pub = await connect_on(relay, "1")
        track = pub.create_track(NS, b"pushed")
        await pub.push(pconn, track)
        await wait_until(lambda: relay.by_worker("moq_relay_namespaces").get("0", 0) >= 1, timeout=10,
                         what="worker 0 learning the pushed track's namespace")
        s0, _ = await connect_on(relay, "0")
        s1, _ = await connect_on(relay, "1")
        subs = [await s.subscribe(NS, b"pushed") for s in (s0, s1)]
        for o in range(PER_GROUP):
            track.write(0, o, payload(0, o))
        track.end_group(0)
        for sub in subs:
            got = await take(sub, PER_GROUP, timeout=20)
            assert [(x.group_id, x.object_id, bytes(x.payload)) for x in got] == [
                (0, o, payload(0, o)) for o in range(PER_GROUP)]
        # worker 1 is fed by the PUBLISH itself; worker 0 subscribes once, from worker 1
        assert relay.by_worker("moq_relay_upstream_subscriptions") == {"0": 1, "1": 0}
        await asyncio.gather(*(c.aclose() for c in (s0, s1, pconn)))

    with RelayProcess("--workers", "2", "--drain-timeout", "5") as relay:
        asyncio.run(main(relay))
        assert relay.stop(timeout=30) == 0, relay.log_tail()


@pytest.mark.parametrize("pub_worker", ["0", "1"], ids=["publisher-on-hub", "publisher-on-worker-1"])
def test_namespace_discovery_sees_publishers_on_every_worker(pub_worker):
    """SUBSCRIBE_NAMESPACE on either worker learns a namespace published on either (moq-rs
    subscribers discover broadcasts this way), and its end."""
    async def main(relay: RelayProcess) -> None:
        watchers = [(await connect_on(relay, w))[0] for w in ("0", "1")]
        queues = [(await c.subscribe_namespace(namespace_from_str("live")))[1] for c in watchers]
        pconn, _ = await connect_on(relay, pub_worker)
        await pconn.publish_namespace(NS)
        for q in queues:
            got = await asyncio.wait_for(q.get(), 15)
            assert isinstance(got, ev.NamespaceReceived) and got.track_namespace_suffix == NS[1:]
        await pconn.aclose()
        for q in queues:
            got = await asyncio.wait_for(q.get(), 15)
            assert isinstance(got, ev.NamespaceDoneReceived) and got.track_namespace_suffix == NS[1:]
        await asyncio.gather(*(c.aclose() for c in watchers))

    with RelayProcess("--workers", "2", "--drain-timeout", "5") as relay:
        asyncio.run(main(relay))
        assert relay.stop(timeout=30) == 0, relay.log_tail()


def test_sigterm_drains_every_worker_and_exits_0():
    drain = 30.0  # far more than the test needs: the relay must end early once its sessions have left

    async def main(relay: RelayProcess) -> None:
        conns = [await connect(relay, "moqt") for _ in range(8)]
        # the link between the workers counts once on each side
        await wait_until(lambda: sum(relay.by_worker("moq_relay_sessions").values()) == len(conns) + 2, timeout=10,
                         what="every session accepted")
        t0 = time.monotonic()
        relay.signal(signal.SIGTERM)
        await wait_until(lambda: all(c.goaway is not None for c in conns), timeout=10, what="GOAWAY to every session")
        assert healthz(relay) == 503, "draining: /healthz reports unavailable"
        assert all(alive(pid) for pid in relay.worker_pids), "workers hold the port until every one has drained"
        await asyncio.gather(*(c.aclose() for c in conns))  # what a client does on GOAWAY
        code = await asyncio.to_thread(relay.proc.wait, drain)
        assert code == 0, relay.log_tail()
        assert time.monotonic() - t0 < drain, "the drain ended when the sessions had left"
        await wait_until(lambda: not any(alive(pid) for pid in relay.worker_pids), what="workers gone")

    with RelayProcess("--workers", "2", "--drain-timeout", str(drain)) as relay:
        asyncio.run(main(relay))
        assert "relay_draining" in relay.log_text() and relay.log_text().count('"event": "worker_drained"') == 2


def test_a_dead_worker_stops_the_relay_with_an_error():
    with RelayProcess("--workers", "2", "--drain-timeout", "2") as relay:
        victim, other = relay.worker_pids[1], relay.worker_pids[0]
        os.kill(victim, signal.SIGKILL)
        assert relay.proc.wait(20) == 1, relay.log_tail()
        assert not alive(other), "the other worker was stopped too"
        died = [json.loads(line) for line in relay.log_text().splitlines() if '"worker_died"' in line]
        assert len(died) == 1 and died[0]["dead_worker"] == "1" and died[0]["returncode"] == -signal.SIGKILL


def test_workers_auto_is_one_per_usable_core():
    cores = len(os.sched_getaffinity(0))
    assert load_config(["--workers", "auto"], {}).worker_count == usable_cores() == cores
    with RelayProcess("--workers", "auto", "--drain-timeout", "1") as relay:
        if cores > 1:
            assert len(relay.worker_pids) == cores and relay.metrics()["moq_relay_workers"] == cores
        else:  # one core: auto is the plain single-process relay
            assert relay.worker_pids == []
        assert relay.stop(timeout=20) == 0, relay.log_tail()


def test_one_worker_is_one_process():
    with RelayProcess("--workers", "1", "--drain-timeout", "1") as relay:
        assert relay.worker_pids == [], "no supervisor, no worker banner"
        assert not any(k.startswith("moq_relay_worker") for k in relay.metrics())
        assert "moq_relay_udp_datagrams_sent_total" in relay.metrics()
        assert relay.stop(timeout=20) == 0, relay.log_tail()


def test_merged_metrics_label_every_sample_and_keep_one_family_each():
    from prometheus_client.parser import text_string_to_metric_families

    from relay.metrics import RelayMetrics
    from relay.workers import merge_metrics

    a, b = RelayMetrics(), RelayMetrics()
    a.objects_in.inc(3)
    b.objects_in.inc(4)
    b.requests_refused.labels(reason="not_found").inc()
    text = merge_metrics({0: a.render().decode(), 1: b.render().decode()}).decode()
    assert text.count("# TYPE moq_relay_objects_in_total counter") == 1
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert {s.labels["worker"]: s.value for s in fams["moq_relay_objects_in"].samples
            if s.name.endswith("_total")} == {"0": 3, "1": 4}
    refused = {(s.labels["worker"], s.labels["reason"]): s.value for s in fams["moq_relay_requests_refused"].samples
               if s.name.endswith("_total")}
    assert refused[("1", "not_found")] == 1 and refused[("0", "not_found")] == 0
    assert all("worker" in s.labels for f in fams.values() for s in f.samples)
