"""Graceful shutdown of a real relay process: SIGTERM (or SIGINT) → GOAWAY to every
session (draft-18 § GOAWAY), /healthz reports 503 while draining, then exit 0 within
--drain-timeout, or as soon as the sessions have left."""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.error

import pytest

from moq.connection import RequestRejectedError
from moq.errors import RequestErrorCode, SessionClosedError, SessionErrorCode
from moq.wire.types import namespace_from_str

from .relayproc import CountingPublisher, RelayProcess, connect, take, wait_until

pytestmark = pytest.mark.timeout(30)
NS = namespace_from_str("live/drain")


async def publisher_and_subscriber(relay: RelayProcess, pub_scheme: str, sub_scheme: str):
    pub = CountingPublisher()
    pconn = await connect(relay, pub_scheme, handler=pub)
    track = pub.create_track(NS, b"video")
    await pconn.publish_namespace(NS)
    sconn = await connect(relay, sub_scheme)
    sub = await sconn.subscribe(NS, b"video")
    track.write(0, 0, b"hello")
    assert [bytes(o.payload) for o in await take(sub, 1)] == [b"hello"]
    return pconn, sconn


def healthz_status(relay: RelayProcess) -> int:
    try:
        relay.http_get("/healthz")
        return 200
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize(("pub_scheme", "sub_scheme"), [("moqt", "https"), ("https", "moqt")])
def test_sigterm_sends_goaway_and_exits_within_drain_timeout(pub_scheme, sub_scheme):
    drain = 2.0

    async def main(relay: RelayProcess) -> None:
        pconn, sconn = await publisher_and_subscriber(relay, pub_scheme, sub_scheme)
        assert healthz_status(relay) == 200
        t0 = time.monotonic()
        relay.signal(signal.SIGTERM)
        await wait_until(lambda: pconn.goaway is not None and sconn.goaway is not None, timeout=drain,
                         what="GOAWAY on both sessions")
        assert pconn.goaway.new_session_uri == "" and sconn.goaway.new_session_uri == ""
        assert healthz_status(relay) == 503, "draining: /healthz reports unavailable"
        # the clients stay: the relay waits out --drain-timeout, closes them, and exits 0
        code = await asyncio.to_thread(relay.proc.wait, drain + 5)
        elapsed = time.monotonic() - t0
        assert code == 0, relay.log_tail()
        assert elapsed < drain + 1.5, f"exited {elapsed:.2f} s after SIGTERM (drain timeout {drain} s)"
        await wait_until(lambda: pconn.is_closed and sconn.is_closed, timeout=5, what="sessions closed")

    with RelayProcess("--drain-timeout", str(drain)) as relay:
        asyncio.run(main(relay))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_drain_ends_early_once_sessions_leave(sig):
    drain = 10.0

    async def main(relay: RelayProcess) -> None:
        pconn, sconn = await publisher_and_subscriber(relay, "moqt", "https")
        t0 = time.monotonic()
        relay.signal(sig)
        await wait_until(lambda: pconn.goaway is not None and sconn.goaway is not None, timeout=5,
                         what="GOAWAY on both sessions")
        await asyncio.gather(sconn.aclose(), pconn.aclose())  # what a client does on GOAWAY
        code = await asyncio.to_thread(relay.proc.wait, drain + 5)
        elapsed = time.monotonic() - t0
        assert code == 0, relay.log_tail()
        assert elapsed < 3.0, f"exited {elapsed:.2f} s after {sig.name} though every session had left"

    with RelayProcess("--drain-timeout", str(drain)) as relay:
        asyncio.run(main(relay))


def test_sessions_still_open_at_drain_timeout_are_closed_with_goaway_timeout():
    """§ Session Migration / § GOAWAY: "The sender closes the session with a GOAWAY_TIMEOUT if
    the peer doesn't close the session within the indicated Timeout" (0x10), seen here as the
    CONNECTION_CLOSE code (publisher, raw QUIC) and the CLOSE_WEBTRANSPORT_SESSION code
    (subscriber, WebTransport)."""
    drain = 1.0

    async def main(relay: RelayProcess) -> None:
        pconn, sconn = await publisher_and_subscriber(relay, "moqt", "https")
        relay.signal(signal.SIGTERM)
        await wait_until(lambda: pconn.goaway is not None and sconn.goaway is not None, timeout=drain,
                         what="GOAWAY on both sessions")
        assert pconn.goaway.timeout_ms == int(drain * 1000)
        assert await asyncio.to_thread(relay.proc.wait, drain + 5) == 0, relay.log_tail()
        await wait_until(lambda: pconn.is_closed and sconn.is_closed, timeout=5, what="sessions closed")
        codes = {name: c._closed.result().error_code for name, c in (("publisher", pconn), ("subscriber", sconn))}
        assert codes == {"publisher": SessionErrorCode.GOAWAY_TIMEOUT, "subscriber": SessionErrorCode.GOAWAY_TIMEOUT}, \
            f"close codes after the drain timeout: {codes}"

    with RelayProcess("--drain-timeout", str(drain)) as relay:
        asyncio.run(main(relay))


@pytest.mark.parametrize("scheme", ["moqt", "https"])
def test_session_arriving_while_draining_is_told_to_go_away(scheme):
    """A session that connects after SIGTERM must not be served as if nothing happened (it
    would be cut without warning at the drain timeout): it is refused, or it gets GOAWAY at
    once and its requests are refused with GOING_AWAY (§ GOAWAY)."""
    drain = 3.0

    async def main(relay: RelayProcess) -> None:
        pconn, sconn = await publisher_and_subscriber(relay, "moqt", scheme)
        relay.signal(signal.SIGTERM)
        await wait_until(lambda: sconn.goaway is not None, timeout=drain, what="GOAWAY")
        try:
            late = await connect(relay, scheme, timeout=2)
        except (ConnectionError, TimeoutError, SessionClosedError):
            return  # refused: fine
        try:
            await wait_until(lambda: late.goaway is not None or late.is_closed, timeout=1.0,
                             what="GOAWAY (or a close) for a session opened while draining")
            if not late.is_closed:
                with pytest.raises((RequestRejectedError, SessionClosedError)) as err:
                    await late.subscribe(NS, b"video", timeout=2)
                if isinstance(err.value, RequestRejectedError):
                    assert err.value.code == RequestErrorCode.GOING_AWAY
        finally:
            late.close()

    with RelayProcess("--drain-timeout", str(drain)) as relay:
        asyncio.run(main(relay))
        relay.kill()
