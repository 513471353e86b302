"""§ FETCH, § FETCH_OK, § Fetch Header, § Fetch State Management."""

from __future__ import annotations

from moq.errors import RequestErrorCode, StreamResetCode
from moq.session import events as ev
from moq.wire import control as c
from moq.wire.data import EndOfRange, FetchHeader, FetchObject, FetchObjectCodec
from moq.wire.types import GroupOrder, Location, Parameters, encode_kvp_block

from .pair import Pair, close_code, of, subscribed

NS = (b"live",)


ORIGIN, TEN = Location(0, 0), Location(10, 0)


def standalone(start: Location = ORIGIN, end: Location = TEN, order: int | None = None) -> c.Fetch:
    return c.Fetch(
        fetch_type=c.FetchType.STANDALONE,
        standalone=c.StandaloneFetch(NS, b"video", start, end),
        parameters=Parameters(group_order=order),
    )


def joining(request_id: int, start: int, absolute: bool = False) -> c.Fetch:
    kind = c.FetchType.ABSOLUTE_JOINING if absolute else c.FetchType.RELATIVE_JOINING
    return c.Fetch(fetch_type=kind, joining=c.JoiningFetch(request_id, start))


def fetched(p: Pair, fetch: c.Fetch) -> int:
    p.events(p.client)
    p.events(p.server)
    rid = p.client.fetch(fetch)
    p.pump()
    return rid


def serve(p: Pair, rid: int, items, end: bool = True) -> int:
    sid = p.server.data.open_fetch_stream(rid)
    for item in items:
        p.server.data.send_fetch_object(rid, item)
    if end:
        p.server.data.end_fetch_stream(rid)
    return sid


def received(events) -> list[tuple]:
    return [(e.group_id, e.subgroup_id, e.object_id, e.publisher_priority, bytes(e.payload))
            for e in of(events, ev.ObjectReceived)]


SEVERAL_GROUPS = [
    FetchObject(0, 0, 0, 10, b"g0o0"),
    FetchObject(0, 0, 1, 10, b"g0o1"),
    FetchObject(2, 0, 0, 10, b"g2o0"),
    FetchObject(2, 1, 3, 20, b"g2o3"),
    FetchObject(5, 7, 0, 20, b"g5o0"),
]


def test_standalone_fetch_request_reaches_the_publisher() -> None:
    p = Pair()
    rid = fetched(p, standalone(Location(1, 2), Location(4, 0)))
    (req,) = of(p.events(p.server), ev.FetchRequested)
    assert req.request_id == rid
    assert req.message.standalone == c.StandaloneFetch(NS, b"video", Location(1, 2), Location(4, 0))
    assert req.message.joining is None


def test_fetch_ok_carries_end_location_and_end_of_track() -> None:
    p = Pair()
    rid = fetched(p, standalone())
    p.server.accept_fetch(rid, Location(6, 1), end_of_track=True, track_properties=((0x0E, 5),))
    p.pump()
    (ok,) = of(p.events(p.client), ev.FetchAccepted)
    assert ok.request_id == rid
    assert ok.message.end_location == Location(6, 1) and ok.message.end_of_track
    assert ok.message.track_properties == ((0x0E, 5),)


def test_fetch_objects_in_ascending_order_across_several_groups() -> None:
    p = Pair()
    rid = fetched(p, standalone())
    p.server.accept_fetch(rid, Location(5, 1))
    sid = serve(p, rid, SEVERAL_GROUPS)
    assert sid % 4 == 3  # a server-initiated unidirectional stream
    p.pump()
    events = p.events(p.client)
    assert received(events) == [(o.group_id, o.subgroup_id, o.object_id, o.publisher_priority, o.payload)
                                for o in SEVERAL_GROUPS]
    assert all(e.fetch and e.request_id == rid and e.stream_id == sid for e in of(events, ev.ObjectReceived))
    (ended,) = of(events, ev.DataStreamEnded)
    assert (ended.request_id, ended.stream_id, ended.fetch, ended.reset_code) == (rid, sid, True, None)
    assert close_code(p.client) is None


def test_fetch_objects_in_descending_group_order() -> None:
    p = Pair()
    rid = fetched(p, standalone(order=GroupOrder.DESCENDING))
    p.server.accept_fetch(rid, Location(9, 1))
    items = [FetchObject(9, 0, 0, 1, b"a"), FetchObject(9, 0, 1, 1, b"b"),
             FetchObject(4, 0, 0, 1, b"c"), FetchObject(1, 2, 5, 1, b"d")]
    serve(p, rid, items)
    p.pump()
    assert [(g, o) for g, _, o, _, _ in received(p.events(p.client))] == [(9, 0), (9, 1), (4, 0), (1, 5)]


def test_descending_fetch_stream_arriving_in_one_chunk() -> None:
    """Regression: the FETCH_HEADER and the objects in one chunk.  The group order must be set
    (from the FETCH) before the objects after the header are decoded, or groups 9,4,1 would come
    out as 9,14,17."""
    p = Pair()
    rid = fetched(p, standalone(order=GroupOrder.DESCENDING))
    p.server.accept_fetch(rid, Location(9, 1))
    items = [FetchObject(9, 0, 0, 1, b"a"), FetchObject(4, 0, 0, 1, b"c"), FetchObject(1, 0, 0, 1, b"d")]
    sid = serve(p, rid, items)
    data = b"".join(bytes(a.data) for a in p.take(p.server) if isinstance(a, ev.SendStreamData) and a.stream_id == sid)
    p.client.receive_stream_data(sid, data, True)
    assert [e.group_id for e in of(p.events(p.client), ev.ObjectReceived)] == [9, 4, 1]


def test_ascending_fetch_stream_arriving_byte_by_byte() -> None:
    p = Pair()
    rid = fetched(p, standalone())
    p.server.accept_fetch(rid, Location(5, 1))
    serve(p, rid, SEVERAL_GROUPS)
    p.pump(chunk=1)
    assert len(of(p.events(p.client), ev.ObjectReceived)) == len(SEVERAL_GROUPS)


def test_fetch_objects_with_datagram_forwarding_preference() -> None:
    p = Pair()
    rid = fetched(p, standalone())
    p.server.accept_fetch(rid, Location(1, 3))
    serve(p, rid, [FetchObject(0, None, 0, 3, b"dg0"), FetchObject(0, 4, 1, 3, b"sg"),
                   FetchObject(1, None, 2, 3, b"dg2")])
    p.pump()
    assert [(g, sg, o) for g, sg, o, _, _ in received(p.events(p.client))] == [(0, None, 0), (0, 4, 1), (1, None, 2)]


def test_fetch_object_properties() -> None:
    p = Pair()
    rid = fetched(p, standalone())
    props = encode_kvp_block(((0x2, 9),))
    serve(p, rid, [FetchObject(0, 0, 0, 1, b"x", props), FetchObject(0, 0, 1, 1, b"y")])
    p.pump()
    first, second = of(p.events(p.client), ev.ObjectReceived)
    assert (first.properties, second.properties) == (props, b"")


def test_end_of_range_markers_are_not_objects() -> None:
    p = Pair()
    rid = fetched(p, standalone())
    serve(p, rid, [FetchObject(0, 0, 0, 1, b"a"), EndOfRange(2, 5), FetchObject(3, 0, 0, 1, b"b"),
                   EndOfRange(4, 0, unknown=True), FetchObject(4, 0, 1, 1, b"c")])
    p.pump()
    assert [(g, o) for g, _, o, _, _ in received(p.events(p.client))] == [(0, 0), (3, 0), (4, 1)]
    assert close_code(p.client) is None


def test_empty_fetch_stream() -> None:
    """§ Fetch Handling: no Objects → FETCH_HEADER and FIN."""
    p = Pair()
    rid = fetched(p, standalone())
    p.server.accept_fetch(rid, Location(0, 0))
    sid = serve(p, rid, [])
    p.pump()
    events = p.events(p.client)
    assert not of(events, ev.ObjectReceived)
    assert [(e.stream_id, e.fetch) for e in of(events, ev.DataStreamEnded)] == [(sid, True)]


def test_fetch_objects_before_fetch_ok() -> None:
    p = Pair()
    rid = fetched(p, standalone())
    serve(p, rid, SEVERAL_GROUPS[:2], end=False)
    p.pump()
    assert len(of(p.events(p.client), ev.ObjectReceived)) == 2
    p.server.accept_fetch(rid, Location(0, 2))
    p.server.data.end_fetch_stream(rid)
    p.pump()
    assert [type(e) for e in p.events(p.client)] == [ev.FetchAccepted, ev.DataStreamEnded]


def test_completed_fetch_releases_its_request_on_both_sides() -> None:
    # FAILS until fix: after FETCH_OK and the fetch stream's FIN neither side forgets the request or
    # closes the request stream (end_fetch_stream only forgets when both halves are already closed,
    # DataPlane.end_fetch_stream; DataPlane._deliver never ends the outgoing FETCH).  § Fetch State
    # Management: "A subscriber keeps FETCH state until ... the FETCH data stream receives a FIN" and
    # the publisher "can destroy all FETCH state after closing the data stream with a FIN".  Every
    # fetch leaks a Request and a bidi stream (stream credit) until the app cancels it by hand.
    # Fix: on the fetch stream's FIN (after FETCH_OK), the subscriber FINs its request stream and
    # forgets the request; end_fetch_stream FINs the publisher's half too.
    p = Pair()
    rid = fetched(p, standalone())
    p.server.accept_fetch(rid, Location(0, 2))
    serve(p, rid, SEVERAL_GROUPS[:2])
    p.pump()
    assert p.client.requests() == []
    assert p.server.requests() == []


def test_rejected_fetch() -> None:
    p = Pair()
    rid = fetched(p, standalone(Location(50, 0), Location(60, 0)))
    p.server.reject(rid, RequestErrorCode.INVALID_RANGE, "beyond largest")
    p.pump()
    (rejected,) = of(p.events(p.client), ev.RequestRejected)
    assert (rejected.request_id, rejected.error.error_code) == (rid, RequestErrorCode.INVALID_RANGE)
    assert p.client.requests() == []


def test_fetch_ok_end_before_the_start_is_a_protocol_violation() -> None:
    # FAILS until fix: § FETCH_OK: "If End Location is smaller than the Start Location in the
    # corresponding FETCH the receiver MUST close the session with a PROTOCOL_VIOLATION."
    # core.py _first_response (FetchOk branch) does not check.  Fix: for a standalone
    # (or absolute joining: start {joining_start, 0}) FETCH, raise ProtocolViolation when
    # msg.end_location < start.
    p = Pair()
    rid = fetched(p, standalone(Location(5, 0), Location(9, 0)))
    p.server.accept_fetch(rid, Location(2, 0))
    p.pump()
    assert close_code(p.client) == 0x3


def test_client_cancels_a_fetch() -> None:
    p = Pair()
    rid = fetched(p, standalone())
    p.server.accept_fetch(rid, Location(5, 1))
    sid = serve(p, rid, SEVERAL_GROUPS[:1], end=False)
    p.pump()
    p.client.cancel(rid)
    p.pump()
    (cancelled,) = of(p.events(p.server), ev.RequestCancelled)
    assert cancelled.request_id == rid
    assert p.reset_sent(p.server, sid)  # § Fetch State Management: reset the data stream
    before = len(p.log)
    p.server.data.send_fetch_object(rid, SEVERAL_GROUPS[1])  # no-op after cancel
    p.pump()
    assert len(p.log) == before
    assert close_code(p.client) is None and close_code(p.server) is None


def test_fetch_stream_for_an_unknown_request_is_stopped() -> None:
    p = Pair()
    p.events(p.client)
    sid = p.fresh_uni(p.server)
    codec = FetchObjectCodec()
    item = FetchObject(0, 0, 0, 1, b"x")
    p.inject(p.client, sid, FetchHeader(41).encode() + codec.encode(item) + item.payload)
    assert any(a.stream_id == sid for a in p.sent(p.client, ev.StopSending))
    assert not of(p.events(p.client), ev.ObjectReceived)
    assert close_code(p.client) is None


# --- joining fetches ---------------------------------------------------------------------------------


def test_relative_joining_fetch_is_passed_to_the_application() -> None:
    p = Pair()
    sub, _ = subscribed(p)
    rid = fetched(p, joining(sub, 2))
    (req,) = of(p.events(p.server), ev.FetchRequested)
    assert req.request_id == rid
    assert req.message.fetch_type == c.FetchType.RELATIVE_JOINING
    assert req.message.joining == c.JoiningFetch(sub, 2)
    assert req.message.standalone is None


def test_absolute_joining_fetch_is_passed_to_the_application() -> None:
    p = Pair()
    sub, _ = subscribed(p)
    fetched(p, joining(sub, 7, absolute=True))
    (req,) = of(p.events(p.server), ev.FetchRequested)
    assert req.message.fetch_type == c.FetchType.ABSOLUTE_JOINING
    assert req.message.joining == c.JoiningFetch(sub, 7)


def test_joining_fetch_for_a_pending_subscription_is_passed_to_the_application() -> None:
    """§ Joining Fetches: the subscription may be `Pending (subscriber)`."""
    p = Pair()
    sub = p.client.subscribe(NS, b"video")
    p.client.fetch(joining(sub, 0))
    p.pump()
    assert [type(e) for e in p.events(p.server)][-2:] == [ev.SubscribeRequested, ev.FetchRequested]


def test_joining_fetch_with_an_unknown_request_id_is_rejected() -> None:
    p = Pair()
    rid = fetched(p, joining(40, 1))
    assert not of(p.events(p.server), ev.FetchRequested)
    (rejected,) = of(p.events(p.client), ev.RequestRejected)
    assert (rejected.request_id, rejected.error.error_code) == (rid, RequestErrorCode.INVALID_JOINING_REQUEST_ID)
    assert rejected.error.error_code == 0x32
    assert close_code(p.client) is None and close_code(p.server) is None


def test_joining_fetch_referencing_a_non_subscription_is_rejected() -> None:
    p = Pair()
    ns = p.client.publish_namespace(NS)
    p.pump()
    rid = fetched(p, joining(ns, 1))
    (rejected,) = of(p.events(p.client), ev.RequestRejected)
    assert (rejected.request_id, rejected.error.error_code) == (rid, 0x32)


def test_joining_fetch_referencing_a_cancelled_subscription_is_rejected() -> None:
    p = Pair()
    sub, _ = subscribed(p)
    p.client.cancel(sub)
    p.pump()
    rid = fetched(p, joining(sub, 1))
    (rejected,) = of(p.events(p.client), ev.RequestRejected)
    assert (rejected.request_id, rejected.error.error_code) == (rid, 0x32)


def test_joining_fetch_data_flows_like_a_standalone_fetch() -> None:
    p = Pair()
    sub, _ = subscribed(p)
    rid = fetched(p, joining(sub, 1))
    p.server.accept_fetch(rid, Location(3, 5))
    serve(p, rid, [FetchObject(2, 0, 0, 1, b"j0"), FetchObject(3, 0, 4, 1, b"j1")])
    p.pump()
    events = p.events(p.client)
    assert of(events, ev.FetchAccepted)[0].message.end_location == Location(3, 5)
    assert [bytes(e.payload) for e in of(events, ev.ObjectReceived)] == [b"j0", b"j1"]
    assert p.client.request(sub)  # the subscription is unaffected


def test_fetch_reset_by_publisher() -> None:
    p = Pair()
    rid = fetched(p, standalone())
    sid = serve(p, rid, SEVERAL_GROUPS[:1], end=False)
    p.pump()
    p.server.cancel(rid, StreamResetCode.UNKNOWN_OBJECT_STATUS)
    p.pump()
    events = p.events(p.client)
    assert (sid, True) in [(e.stream_id, e.fetch) for e in of(events, ev.DataStreamEnded)]
    assert close_code(p.client) is None


def test_joining_fetch_for_a_subscription_with_forward_zero_is_rejected_invalid_range() -> None:
    # FAILS until fix: § Joining Fetches: "A Joining Fetch is only permitted when the associated
    # subscription has Forward State 1; otherwise the publisher MUST respond with a REQUEST_ERROR with
    # error code INVALID_RANGE."  core.py _admit (joining branch) checks only that the subscription
    # exists; it already tracks `joined.forward`, so add
    # `elif joined.forward == 0: reject = (RequestErrorCode.INVALID_RANGE, "subscription has forward 0")`
    # (or document that the application must do this check).
    p = Pair()
    sub = p.client.subscribe(NS, b"video", Parameters(forward=0))
    p.pump()
    p.server.accept_subscribe(sub)
    p.pump()
    rid = fetched(p, joining(sub, 1))
    assert not of(p.events(p.server), ev.FetchRequested)
    (rejected,) = of(p.events(p.client), ev.RequestRejected)
    assert (rejected.request_id, rejected.error.error_code) == (rid, RequestErrorCode.INVALID_RANGE)


def test_joining_fetch_stream_is_scheduled_before_the_subscriptions_subgroup_streams() -> None:
    """§ Scheduling Algorithm: a Joining FETCH carries the head of the group its subscription
    is delivering, so at the same subscriber priority its stream sorts ahead of every subgroup
    stream, whatever their publisher priority or group order; behind them the head waited for
    the next group to start, and a receiver that gives up on a group once its successor starts
    (moq-rs by default) lost the joined group."""
    p = Pair()
    sub = p.client.subscribe(NS, b"video", Parameters(group_order=GroupOrder.DESCENDING))
    p.pump()
    p.server.accept_subscribe(sub, largest=Location(4, 2))
    p.pump()
    rid = fetched(p, joining(sub, 0))
    p.server.take_actions()
    live = [p.server.data.open_subgroup(sub, g, 0, publisher_priority=0) for g in (4, 5)]
    sid = p.server.data.open_fetch_stream(rid)
    keys = {a.stream_id: a.key for a in p.server.take_actions() if isinstance(a, ev.SetStreamPriority)}
    assert set(keys) == {*live, sid}
    assert sorted(keys, key=keys.get) == [sid, live[1], live[0]]
