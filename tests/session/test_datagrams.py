"""§ Datagrams, § Object Datagram, § Padding Datagrams."""

from __future__ import annotations

import pytest

from moq.session import events as ev
from moq.wire.data import ObjectDatagram, ObjectStatus, padding_datagram
from moq.wire.types import encode_kvp_block

from .pair import Pair, close_code, of, subscribed


def test_datagram_objects_are_delivered_without_a_subgroup() -> None:
    p = Pair()
    rid, alias = subscribed(p, track_properties=((0x0E, 77),))
    props = encode_kvp_block(((0x2, 1),))
    d = p.server.data
    d.send_datagram(rid, ObjectDatagram(alias, 0, 0, payload=b"zero"))
    d.send_datagram(rid, ObjectDatagram(alias, 0, 1, publisher_priority=5, properties=props, payload=b"one"))
    d.send_datagram(rid, ObjectDatagram(alias, 0, 2, end_of_group=True, payload=b"two"))
    d.send_datagram(rid, ObjectDatagram(alias, 1, 0, status=ObjectStatus.END_OF_TRACK))
    p.pump()
    received = of(p.events(p.client), ev.ObjectReceived)
    assert [(e.request_id, e.group_id, e.subgroup_id, e.object_id, e.stream_id) for e in received] == [
        (rid, 0, None, 0, None), (rid, 0, None, 1, None), (rid, 0, None, 2, None), (rid, 1, None, 0, None),
    ]
    assert [bytes(e.payload) for e in received] == [b"zero", b"one", b"two", b""]
    assert [e.publisher_priority for e in received] == [77, 5, 77, 77]
    assert [e.properties for e in received] == [b"", props, b"", b""]
    assert [e.end_of_group for e in received] == [False, False, True, False]
    assert [e.status for e in received] == [ObjectStatus.NORMAL] * 3 + [ObjectStatus.END_OF_TRACK]
    assert close_code(p.client) is None


def test_send_datagram_uses_the_subscription_alias() -> None:
    p = Pair()
    subscribed(p, name=b"audio")
    rid, alias = subscribed(p, name=b"video")
    p.server.data.send_datagram(rid, ObjectDatagram(alias + 100, 3, 4, payload=b"x"))
    p.pump()
    (obj,) = of(p.events(p.client), ev.ObjectReceived)
    assert obj.request_id == rid


def test_datagram_with_unknown_alias_is_dropped_silently() -> None:
    """§ Datagrams: "MAY drop the datagram or choose to buffer it for a brief period"."""
    p = Pair()
    subscribed(p)
    p.client.receive_datagram(ObjectDatagram(999, 0, 0, payload=b"?").encode())
    p.pump()
    assert p.events(p.client) == []
    assert close_code(p.client) is None and not p.take(p.client)
    p.client.handle_timer(p.now + p.client.config.alias_wait + 1)
    assert p.events(p.client) == [] and close_code(p.client) is None and not p.take(p.client)
    assert p.client.next_timer() is None


def test_datagram_before_subscribe_ok_is_delivered_after_it() -> None:
    p = Pair()
    p.events(p.client)
    rid = p.client.subscribe((b"live",), b"video")
    p.pump()
    alias = p.server.accept_subscribe(rid)
    p.server.data.send_datagram(rid, ObjectDatagram(alias, 0, 0, payload=b"early"))
    ok, dgram = p.take(p.server)
    p.deliver([dgram], to=p.client)
    assert p.events(p.client) == []
    p.deliver([ok], to=p.client)
    events = p.events(p.client)
    assert [type(e) for e in events] == [ev.SubscribeAccepted, ev.ObjectReceived]
    assert bytes(events[1].payload) == b"early"


def test_held_datagram_expires() -> None:
    p = Pair()
    p.events(p.client)
    rid = p.client.subscribe((b"live",), b"video")
    p.pump()
    alias = p.server.accept_subscribe(rid)
    p.server.data.send_datagram(rid, ObjectDatagram(alias, 0, 0, payload=b"too early"))
    ok, dgram = p.take(p.server)
    p.deliver([dgram], to=p.client)
    p.client.handle_timer(p.now + p.client.config.alias_wait + 0.1)
    p.deliver([ok], to=p.client)
    assert [type(e) for e in p.events(p.client)] == [ev.SubscribeAccepted]


def test_datagram_after_unsubscribe_is_dropped() -> None:
    p = Pair()
    rid, alias = subscribed(p)
    p.client.cancel(rid)
    p.pump()
    p.events(p.client)
    p.client.receive_datagram(ObjectDatagram(alias, 5, 0, payload=b"late").encode())
    assert not of(p.events(p.client), ev.ObjectReceived)
    assert close_code(p.client) is None


def test_dropped_datagrams_are_just_missing() -> None:
    p = Pair()
    rid, alias = subscribed(p)
    p.server.data.send_datagram(rid, ObjectDatagram(alias, 0, 0, payload=b"lost"))
    p.pump(drop_datagrams=True)
    p.server.data.send_datagram(rid, ObjectDatagram(alias, 0, 1, payload=b"kept"))
    p.pump()
    assert [e.object_id for e in of(p.events(p.client), ev.ObjectReceived)] == [1]


@pytest.mark.parametrize("dtype", [0x22, 0x23, 0x26, 0x2F, 0x10, 0x30, 0x40, 0x7F])
def test_invalid_datagram_type_is_a_protocol_violation(dtype: int) -> None:
    p = Pair()
    subscribed(p)
    p.client.receive_datagram(bytes([dtype, 0x00, 0x00, 0x00, 0x00]))
    p.pump()
    assert close_code(p.client) == 0x3


def test_datagram_with_properties_bit_and_empty_properties_is_a_protocol_violation() -> None:
    p = Pair()
    _, alias = subscribed(p)
    p.client.receive_datagram(bytes([0x01 | 0x04 | 0x08, alias, 0x00, 0x00]) + b"payload")
    assert close_code(p.client) == 0x3


def test_status_datagram_with_unknown_status_is_a_protocol_violation() -> None:
    p = Pair()
    _, alias = subscribed(p)
    p.client.receive_datagram(bytes([0x20 | 0x04 | 0x08, alias, 0x00, 0x07]))
    assert close_code(p.client) == 0x3


def test_empty_datagram_is_a_protocol_violation() -> None:
    p = Pair()
    subscribed(p)
    p.client.receive_datagram(b"")
    assert close_code(p.client) == 0x3


def test_padding_datagram_is_ignored() -> None:
    p = Pair()
    subscribed(p)
    p.client.receive_datagram(padding_datagram(50))
    assert p.events(p.client) == [] and close_code(p.client) is None
