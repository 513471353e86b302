"""§ Request ID: client even from 0, server odd from 1, +2 per request; duplicates and wrong
parity close the session with INVALID_REQUEST_ID."""

from __future__ import annotations

from moq.errors import SessionErrorCode as E
from moq.session import events as ev
from moq.wire import control as c
from moq.wire.types import Location, Parameters

from .pair import SERVER_CONTROL, Pair, close_code, decode_messages, of

NS = (b"live",)


def first_message(p: Pair, sender, stream_id: int):
    return decode_messages(p.stream_bytes(sender, stream_id))[0]


def test_client_request_ids_are_even_from_zero_in_steps_of_two() -> None:
    p = Pair()
    ids = [
        p.client.subscribe(NS, b"a"),
        p.client.track_status(NS, b"b"),
        p.client.publish_namespace(NS),
        p.client.subscribe_namespace((b"x",)),
        p.client.subscribe_tracks((b"y",)),
        p.client.publish(NS, b"c"),
        p.client.fetch(c.Fetch(standalone=c.StandaloneFetch(NS, b"d", Location(0, 0), Location(1, 0)))),
    ]
    assert ids == [0, 2, 4, 6, 8, 10, 12]
    p.pump()
    incoming = of(p.events(p.server), ev.IncomingRequest)
    assert [e.request_id for e in incoming] == ids
    assert [e.message.request_id for e in incoming] == ids
    assert close_code(p.server) is None


def test_server_request_ids_are_odd_from_one_in_steps_of_two() -> None:
    p = Pair()
    ids = [p.server.subscribe(NS, b"a"), p.server.publish_namespace(NS), p.server.track_status(NS, b"b")]
    assert ids == [1, 3, 5]
    p.pump()
    assert [e.request_id for e in of(p.events(p.client), ev.IncomingRequest)] == ids
    assert close_code(p.client) is None


def test_request_update_consumes_a_request_id() -> None:
    p = Pair()
    rid = p.client.subscribe(NS, b"a")
    p.pump()
    p.server.accept_subscribe(rid)
    p.pump()
    uid = p.client.request_update(rid, Parameters(forward=0))
    assert uid == 2
    assert p.client.subscribe(NS, b"b") == 4
    p.pump()
    events = p.events(p.server)
    (update,) = of(events, ev.RequestUpdateReceived)
    assert (update.request_id, update.update_id) == (0, 2)
    assert of(events, ev.SubscribeRequested)[-1].request_id == 4


def test_request_ids_may_arrive_out_of_order() -> None:
    p = Pair()
    for rid, sid in ((4, 8), (0, 0), (2, 4)):
        p.inject(p.server, sid, c.Subscribe(rid, NS, b"t%d" % rid).encode())
    assert close_code(p.server) is None
    assert [e.request_id for e in of(p.events(p.server), ev.SubscribeRequested)] == [4, 0, 2]


def test_duplicate_request_id_closes_invalid_request_id() -> None:
    p = Pair()
    p.inject(p.server, p.fresh_bidi(p.client), c.Subscribe(0, NS, b"a").encode())
    assert close_code(p.server) is None
    p.inject(p.server, p.fresh_bidi(p.client), c.Subscribe(0, NS, b"b").encode())
    assert close_code(p.server) == E.INVALID_REQUEST_ID == 0x4
    (terminated,) = of(p.events(p.client), ev.SessionTerminated)
    assert terminated.by_peer and terminated.error_code == 0x4


def test_duplicate_request_id_of_a_finished_request_closes_invalid_request_id() -> None:
    p = Pair()
    rid = p.client.track_status(NS, b"a")
    p.pump()
    p.server.reject(rid, 0x10, "nope")
    p.pump()
    p.inject(p.server, p.fresh_bidi(p.client), c.Subscribe(rid, NS, b"b").encode())
    assert close_code(p.server) == 0x4


def test_duplicate_request_id_in_request_update_closes_invalid_request_id() -> None:
    p = Pair()
    rid = p.client.subscribe(NS, b"a")
    p.pump()
    p.server.accept_subscribe(rid)
    p.pump()
    (stream,) = {a.stream_id for a in p.sent(p.client, ev.SendStreamData) if a.stream_id % 4 == 0}
    p.inject(p.server, stream, c.RequestUpdate(rid, Parameters(forward=0)).encode())  # reuses the SUBSCRIBE's ID
    assert close_code(p.server) == 0x4


def test_wrong_parity_from_client_closes_invalid_request_id() -> None:
    p = Pair()
    p.inject(p.server, p.fresh_bidi(p.client), c.Subscribe(1, NS, b"a").encode())
    assert close_code(p.server) == E.INVALID_REQUEST_ID


def test_wrong_parity_from_server_closes_invalid_request_id() -> None:
    p = Pair()
    p.inject(p.client, p.fresh_bidi(p.server), c.PublishNamespace(2, NS).encode())
    assert close_code(p.client) == E.INVALID_REQUEST_ID


def test_wrong_parity_in_request_update_closes_invalid_request_id() -> None:
    p = Pair()
    rid = p.client.subscribe(NS, b"a")
    p.pump()
    p.server.accept_subscribe(rid)
    p.pump()
    p.inject(p.server, 0, c.RequestUpdate(3, Parameters(forward=0)).encode())
    assert close_code(p.server) == 0x4


def test_goaway_request_id_with_wrong_parity_closes_invalid_request_id() -> None:
    """The GOAWAY Request ID names the receiver's requests: a server must send an even one."""
    p = Pair()
    p.inject(p.client, SERVER_CONTROL, c.GoAway(b"", 0, 1).encode())
    assert close_code(p.client) == E.INVALID_REQUEST_ID


def test_sent_request_carries_its_request_id_on_the_wire() -> None:
    p = Pair()
    p.client.subscribe(NS, b"a")
    sid = p.take(p.client)[0].stream_id
    rid = p.client.subscribe(NS, b"b")
    sid2 = [a.stream_id for a in p.take(p.client)][0]
    assert sid % 4 == 0 and sid2 % 4 == 0 and sid2 != sid  # client-initiated bidi streams
    assert first_message(p, p.client, sid2).request_id == rid == 2
