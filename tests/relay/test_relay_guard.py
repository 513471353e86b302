"""relay/guard.py's parts on their own (token buckets, the negative cache, generic reasons), the
FETCH range rule shared by the session, moq.broadcast and the relay, and two behaviours end to
end: a publisher refuses a FETCH whose End precedes its Start instead of echoing it, and a
PUBLISH_NAMESPACE ends a cached refusal at the relay."""

from __future__ import annotations

import asyncio

import pytest

from moq import api
from moq.broadcast import Publisher
from moq.connection import RequestRejectedError
from moq.errors import RequestErrorCode
from moq.session.requests import end_before_start
from moq.transport.tls import ServerCredentials
from moq.wire.types import Location, Parameters, namespace_from_str
from relay.guard import STRIKES, NegativeCache, RequestLimiter, TokenBucket, public_reason, source_of

from .relayproc import RelayProcess, connect, wait_until

pytestmark = pytest.mark.timeout(30)
NS = namespace_from_str("live/guard")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_end_before_start_reads_object_zero_as_the_whole_group():
    assert end_before_start(Location(5, 3), Location(5, 2))
    assert end_before_start(Location(5, 0), Location(4, 0))  # all of group 4 is before group 5
    assert not end_before_start(Location(5, 3), Location(5, 0))  # the rest of group 5
    assert not end_before_start(Location(5, 3), Location(5, 3))  # "the same" Location is allowed
    assert not end_before_start(Location(5, 3), Location(7, 1))


def test_token_bucket_bursts_then_refills_at_its_rate():
    b = TokenBucket(10, now=0.0)
    assert sum(b.take(0.0) for _ in range(30)) == 10  # one second's worth at once
    assert not b.take(0.05)
    assert b.take(0.1) and not b.take(0.1)  # 10/s: one more every 0.1 s
    assert b.idle(5.0)


def test_limiter_per_session_per_source_pending_and_strikes():
    clock = Clock()
    lim = RequestLimiter(per_session=5, per_source=8, pending_per_source=2, clock=clock)
    assert [lim.admit(1, "10.0.0.1") for _ in range(6)] == [None] * 5 + ["request_rate"]
    # a second session from the same address has its own 5, but the address only 8 in all
    assert [lim.admit(2, "10.0.0.1") for _ in range(4)] == [None, None, None, "source_request_rate"]
    assert lim.admit(3, "10.0.0.2") is None  # another address is not affected
    # a session that goes on sending while refused is out of patience after STRIKES refusals
    assert [lim.strike(1) for _ in range(STRIKES + 1)] == [False] * STRIKES + [True]
    lim.forget(1)
    assert lim.strike(1) is False
    assert lim.start_upstream("10.0.0.1") and lim.start_upstream("10.0.0.1")
    assert not lim.start_upstream("10.0.0.1")
    lim.end_upstream("10.0.0.1")
    assert lim.start_upstream("10.0.0.1")


def test_negative_cache_expires_and_is_cleared_by_publish_and_namespace():
    clock = Clock()
    cache = NegativeCache(5.0, clock)
    a, sub = namespace_from_str("live/a"), namespace_from_str("live/a/b")
    cache.put(a, b"x", RequestErrorCode.DOES_NOT_EXIST)
    cache.put(a, b"y", RequestErrorCode.DOES_NOT_EXIST)
    cache.put(sub, b"z", RequestErrorCode.DOES_NOT_EXIST)
    cache.put(a, b"t", RequestErrorCode.TIMEOUT)  # not about the track: not remembered
    assert cache.get(a, b"x") == RequestErrorCode.DOES_NOT_EXIST and cache.get(a, b"t") is None
    cache.clear(a, b"x")  # a PUBLISH of live/a:x
    assert cache.get(a, b"x") is None and cache.get(a, b"y") is not None
    cache.clear(a)  # a PUBLISH_NAMESPACE of live/a covers live/a/b too
    assert cache.get(a, b"y") is None and cache.get(sub, b"z") is None and cache.size == 0
    cache.put(a, b"x", RequestErrorCode.DOES_NOT_EXIST)
    clock.now += 5.0
    assert cache.get(a, b"x") is None and cache.size == 0


def test_public_reasons_hide_the_upstream_text():
    assert public_reason(RequestErrorCode.DOES_NOT_EXIST) == (RequestErrorCode.DOES_NOT_EXIST, "track does not exist")
    # codes about the relay's own upstream session are not passed on as they are
    assert public_reason(RequestErrorCode.GOING_AWAY)[0] == RequestErrorCode.INTERNAL_ERROR
    assert public_reason(RequestErrorCode.REDIRECT)[0] == RequestErrorCode.INTERNAL_ERROR
    assert source_of("127.0.0.1:4443") == "127.0.0.1"
    assert source_of("[2001:db8::1]:4443") == source_of("[2001:db8::2:3]:5000") == "2001:db8::/64"


def test_publisher_refuses_a_fetch_whose_end_precedes_its_start():
    """moq.broadcast must not echo such a range in FETCH_OK: the peer would have to close the
    session (§ FETCH_OK)."""

    async def main() -> None:
        pub = Publisher()
        track = pub.create_track(NS, b"video")
        for o in range(5):
            track.write(3, o, b"x")
        server = await api.serve("127.0.0.1", 0, credentials=ServerCredentials.dev(), handler=pub)
        try:
            conn = await api.connect(f"moqt://127.0.0.1:{server.port}/", insecure=True)
            with pytest.raises(RequestRejectedError) as err:
                await conn.fetch(NS, b"video", Location(3, 4), Location(3, 2))
            assert err.value.code == RequestErrorCode.INVALID_RANGE
            res = await conn.fetch(NS, b"video", Location(3, 2), Location(3, 0))  # the rest of group 3
            assert [o.object_id async for o in res] == [2, 3, 4]
            assert not conn.is_closed
            await conn.aclose()
        finally:
            server.close()

    asyncio.run(main())


def test_publish_namespace_ends_a_cached_refusal():
    async def main(relay: RelayProcess) -> None:
        first = await connect(relay, "moqt", handler=Publisher())
        await first.publish_namespace(NS)
        viewer = await connect(relay, "moqt")
        for _ in range(2):  # the second comes from the cache
            with pytest.raises(RequestRejectedError) as err:
                await viewer.subscribe(NS, b"late")
            assert (err.value.code, err.value.reason) == (RequestErrorCode.DOES_NOT_EXIST, "track does not exist")
        assert relay.metrics()["moq_relay_negative_cache_hits_total"] == 1
        await first.aclose()
        # the publisher comes back with the track: its PUBLISH_NAMESPACE ends the cached refusal
        pub = Publisher()
        track = pub.create_track(NS, b"late")
        again = await connect(relay, "moqt", handler=pub)
        await again.publish_namespace(NS)
        sub = await viewer.subscribe(NS, b"late")
        track.write(0, 0, b"here")
        async for obj in sub:
            assert bytes(obj.payload) == b"here"
            break
        await viewer.aclose()
        await again.aclose()

    with RelayProcess("--drain-timeout", "1", "--negative-cache-ttl", "30") as relay:
        asyncio.run(main(relay))
        assert relay.stop() == 0, relay.log_tail()


def test_refused_update_ends_a_namespace_request_at_the_relay():
    """Past the rate limit a REQUEST_UPDATE is refused, which ends its request (§ REQUEST_UPDATE:
    the responder closes a PUBLISH_NAMESPACE's stream): the relay stops routing to it."""

    async def main(relay: RelayProcess) -> None:
        pconn = await connect(relay, "moqt", handler=Publisher())
        rid = await pconn.publish_namespace(NS)
        assert relay.metrics()["moq_relay_namespaces"] == 1
        for _ in range(8):  # --max-requests-per-second 5: the PUBLISH_NAMESPACE and 4 updates pass
            pconn.session.request_update(rid, Parameters())
        await wait_until(lambda: relay.metrics()["moq_relay_namespaces"] == 0, what="the namespace withdrawn")
        viewer = await connect(relay, "moqt")
        with pytest.raises(RequestRejectedError) as err:
            await viewer.subscribe(NS, b"video")
        assert err.value.code == RequestErrorCode.DOES_NOT_EXIST
        assert not pconn.is_closed  # one refusal: the session itself goes on
        await viewer.aclose()
        await pconn.aclose()

    with RelayProcess("--drain-timeout", "1", "--max-requests-per-second", "5") as relay:
        asyncio.run(main(relay))
        assert relay.stop() == 0, relay.log_tail()
