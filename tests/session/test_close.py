"""§ Termination: closing a session locally, and the peer going away."""

from __future__ import annotations

import pytest

from moq.errors import LocalUsageError
from moq.errors import SessionErrorCode as E
from moq.session import events as ev

from .pair import Pair, of, subscribed

NS = (b"live",)


def test_close_sends_close_session_and_the_peer_sees_it_by_peer() -> None:
    p = Pair()
    p.events(p.client)
    p.events(p.server)
    p.client.close(E.NO_ERROR, "bye")
    assert p.client.closed == ev.SessionTerminated(0, "bye", by_peer=False)
    p.pump()
    assert p.sent(p.client, ev.CloseSession) == [ev.CloseSession(0, "bye")]
    assert p.events(p.client) == [ev.SessionTerminated(0, "bye", False)]
    assert p.events(p.server) == [ev.SessionTerminated(0, "bye", True)]
    assert not p.sent(p.server, ev.CloseSession)  # the peer does not answer a close
    assert not p.client.ready and not p.server.ready


def test_close_with_an_error_code() -> None:
    p = Pair()
    p.server.close(E.GOAWAY_TIMEOUT, "too slow")
    p.pump()
    (terminated,) = of(p.events(p.client), ev.SessionTerminated)
    assert (terminated.error_code, terminated.reason, terminated.by_peer) == (0x10, "too slow", True)


def test_close_is_idempotent() -> None:
    p = Pair()
    p.client.close(E.NO_ERROR)
    p.client.close(E.INTERNAL_ERROR, "again")
    p.pump()
    assert len(p.sent(p.client, ev.CloseSession)) == 1
    assert p.client.closed.error_code == 0


def test_connection_lost_reports_by_peer_and_sends_nothing() -> None:
    p = Pair()
    p.events(p.client)
    p.client.connection_lost(0x1, "idle timeout")
    assert p.events(p.client) == [ev.SessionTerminated(0x1, "idle timeout", True)]
    assert p.take(p.client) == []


def test_input_after_close_is_ignored() -> None:
    p = Pair()
    rid, _ = subscribed(p)
    sid = p.server.data.open_subgroup(rid, 0)
    p.server.data.send_object(sid, 0, b"x")
    late = p.take(p.server)
    p.client.close()
    p.events(p.client)
    p.deliver(late, to=p.client)
    p.client.receive_stream_data(999, b"\xff\xff\xff")
    p.client.receive_datagram(b"\x7f")
    assert p.events(p.client) == []
    assert [type(a) for a in p.take(p.client)] == [ev.CloseSession]


def test_new_requests_on_a_closed_session_are_local_usage_errors() -> None:
    p = Pair()
    p.client.close()
    with pytest.raises(LocalUsageError):
        p.client.subscribe(NS, b"video")
    with pytest.raises(LocalUsageError):
        p.client.publish_namespace(NS)


def test_session_closed_by_the_peer_rejects_new_requests_locally() -> None:
    p = Pair()
    p.server.close(E.NO_ERROR)
    p.pump()
    with pytest.raises(LocalUsageError):
        p.client.subscribe(NS, b"video")


def test_local_misuse_raises_local_usage_error() -> None:
    p = Pair()
    rid, _ = subscribed(p)
    with pytest.raises(LocalUsageError):
        p.server.accept_subscribe(rid)  # already answered
    with pytest.raises(LocalUsageError):
        p.client.accept_subscribe(rid)  # not an incoming request
    with pytest.raises(LocalUsageError):
        p.client.data.open_subgroup(rid, 0)  # the subscriber does not publish
    with pytest.raises(LocalUsageError):
        p.server.accept_update(12345)
    with pytest.raises(LocalUsageError):
        p.client.start()  # already started
    assert p.client.closed is None and p.server.closed is None
