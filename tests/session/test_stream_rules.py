"""Which message may appear where (§ Control Messages table, § Session initialization), and
malformed data on request, subgroup and unknown streams (§ Message Parameters, § Streams)."""

from __future__ import annotations

import pytest

from moq.errors import RequestErrorCode
from moq.session import events as ev
from moq.wire import control as c
from moq.wire.data import ObjectStatus, SubgroupHeader, encode_subgroup_object, padding_stream_header
from moq.wire.types import Location, Parameters

from .pair import SERVER_CONTROL, Pair, close_code, of, request_stream, subscribed

NS = (b"live",)


def frame(msg_type: int, payload: bytes) -> bytes:
    assert msg_type < 0x80
    return bytes([msg_type]) + len(payload).to_bytes(2, "big") + payload


def subscribe_with_raw_parameters(rid: int, params: bytes) -> bytes:
    """SUBSCRIBE for live/v whose parameter block is `params` (count included)."""
    return frame(0x03, bytes([rid, 1, 4]) + b"live" + bytes([1]) + b"v" + params)


# --- messages on the wrong stream or at the wrong time -------------------------------------------


def test_subscribe_ok_on_the_control_stream_is_a_protocol_violation() -> None:
    p = Pair()
    p.inject(p.client, SERVER_CONTROL, c.SubscribeOk(3).encode())
    assert close_code(p.client) == 0x3


def test_namespace_on_a_subscribe_stream_is_a_protocol_violation() -> None:
    p = Pair()
    rid, _ = subscribed(p)
    p.inject(p.client, request_stream(p, p.client, rid), c.Namespace((b"x",)).encode())
    assert close_code(p.client) == 0x3


def test_second_subscribe_ok_is_a_protocol_violation() -> None:
    p = Pair()
    rid, alias = subscribed(p)
    p.inject(p.client, request_stream(p, p.client, rid), c.SubscribeOk(alias).encode())
    assert close_code(p.client) == 0x3


def test_request_error_after_subscribe_ok_without_update_is_a_protocol_violation() -> None:
    p = Pair()
    rid, _ = subscribed(p)
    p.inject(p.client, request_stream(p, p.client, rid), c.RequestError(RequestErrorCode.INTERNAL_ERROR).encode())
    assert close_code(p.client) == 0x3


@pytest.mark.parametrize(
    "message",
    [c.FetchOk(), c.RequestOk(), c.PublishDone(2, 0, ""), c.Namespace((b"a",)), c.PublishBlocked((b"a",), b"b")],
    ids=lambda m: type(m).__name__,
)
def test_wrong_first_response_to_subscribe_is_a_protocol_violation(message) -> None:
    p = Pair()
    rid = p.client.subscribe(NS, b"video")
    p.pump()
    p.inject(p.client, request_stream(p, p.client, rid), message.encode())
    assert close_code(p.client) == 0x3


def test_subscribe_ok_in_answer_to_a_fetch_is_a_protocol_violation() -> None:
    p = Pair()
    rid = p.client.fetch(c.Fetch(standalone=c.StandaloneFetch(NS, b"v", Location(0, 0), Location(1, 0))))
    p.pump()
    p.inject(p.client, request_stream(p, p.client, rid), c.SubscribeOk(0).encode())
    assert close_code(p.client) == 0x3


@pytest.mark.parametrize(
    "message",
    [c.SubscribeOk(0), c.RequestOk(), c.RequestError(0), c.GoAway(), c.Namespace((b"a",)), c.PublishDone(0, 0, ""),
     c.Setup(()), c.RequestUpdate(0, Parameters())],
    ids=lambda m: type(m).__name__,
)
def test_bidi_stream_starting_with_a_non_request_message_is_a_protocol_violation(message) -> None:
    p = Pair()
    p.inject(p.server, p.fresh_bidi(p.client), message.encode())
    assert close_code(p.server) == 0x3


def test_second_request_message_on_a_request_stream_is_a_protocol_violation() -> None:
    p = Pair()
    rid = p.client.subscribe(NS, b"a")
    p.pump()
    p.inject(p.server, request_stream(p, p.client, rid), c.Subscribe(2, NS, b"b").encode())
    assert close_code(p.server) == 0x3


def test_publish_done_from_the_subscriber_is_a_protocol_violation() -> None:
    p = Pair()
    rid, _ = subscribed(p)
    p.inject(p.server, request_stream(p, p.client, rid), c.PublishDone(0, 0, "").encode())
    assert close_code(p.server) == 0x3


def test_request_stream_ending_inside_a_message_is_a_protocol_violation() -> None:
    p = Pair()
    msg = c.Subscribe(0, NS, b"video").encode()
    p.inject(p.server, p.fresh_bidi(p.client), msg[:-2], fin=True)
    assert close_code(p.server) == 0x3


# --- malformed message contents ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        b"\x01\x3c\x05",  # unknown parameter type 0x3c
        b"\x02\x20\x01\x00\x02",  # SUBSCRIBER_PRIORITY twice
        b"\x01\x08\x05",  # EXPIRES is not allowed in SUBSCRIBE
        b"\x01\x10\x02",  # FORWARD must be 0 or 1
        b"\x01\x22\x03",  # GROUP_ORDER must be 1 or 2
        b"\x01\x21\x01\x09",  # unknown filter type 9
        b"\x02\x20\x01\x7f",  # count says 2, only one present
    ],
    ids=["unknown", "duplicate", "not-allowed", "forward-2", "group-order-3", "filter-type-9", "short-count"],
)
def test_bad_message_parameters_are_a_protocol_violation(params: bytes) -> None:
    p = Pair()
    p.inject(p.server, p.fresh_bidi(p.client), subscribe_with_raw_parameters(0, params))
    assert close_code(p.server) == 0x3


def test_valid_raw_parameters_are_accepted() -> None:
    p = Pair()
    p.inject(p.server, p.fresh_bidi(p.client), subscribe_with_raw_parameters(0, b"\x02\x10\x00\x10\x07"))
    (req,) = of(p.events(p.server), ev.SubscribeRequested)
    assert req.message.parameters.forward == 0 and req.message.parameters.subscriber_priority == 7


def test_namespace_with_more_than_32_fields_is_a_protocol_violation() -> None:
    p = Pair()
    payload = bytes([0, 33]) + b"\x01a" * 33 + b"\x00"
    p.inject(p.server, p.fresh_bidi(p.client), frame(0x50, payload))
    assert close_code(p.server) == 0x3


def test_unknown_fetch_type_is_a_protocol_violation() -> None:
    p = Pair()
    p.inject(p.server, p.fresh_bidi(p.client), frame(0x16, bytes([0, 4, 0, 0, 0])))
    assert close_code(p.server) == 0x3


@pytest.mark.parametrize("accept", ["publish_namespace", "subscribe_namespace"])
def test_request_ok_with_track_properties_where_they_must_be_empty_is_a_protocol_violation(accept: str) -> None:
    # FAILS until fix: § REQUEST_OK: "Track Properties ... are empty in PUBLISH_OK, REQUEST_UPDATE_OK,
    # SUBSCRIBE_NAMESPACE_OK and PUBLISH_NAMESPACE_OK.  If an endpoint receives Track Properties in
    # one of these messages it MUST close the session with a PROTOCOL_VIOLATION."  core.py
    # _first_response (REQUEST_OK branch) passes them on (PUBLISH_OK is already checked in the codec).
    # Fix: raise ProtocolViolation when msg.track_properties is non-empty unless the request is a
    # TRACK_STATUS (first response only).
    p = Pair()
    rid = getattr(p.client, accept)(NS)
    p.pump()
    p.server.accept(rid, track_properties=((0x2, 1),))
    p.pump()
    assert close_code(p.client) == 0x3


def test_publish_ok_with_track_properties_is_a_protocol_violation() -> None:
    p = Pair()
    rid = p.client.publish(NS, b"video")
    p.pump()
    p.inject(p.client, request_stream(p, p.client, rid), frame(0x1E, b"\x00\x02\x01"))  # no params, {2: 1}
    assert close_code(p.client) == 0x3


def test_request_update_ok_with_track_properties_is_a_protocol_violation() -> None:
    # FAILS until fix: same rule as above for REQUEST_UPDATE_OK; core.py _update_answer passes
    # msg.track_properties on instead of raising ProtocolViolation when they are non-empty.
    p = Pair()
    rid, _ = subscribed(p)
    p.client.request_update(rid, Parameters(forward=0))
    p.pump()
    p.inject(p.client, request_stream(p, p.client, rid), c.RequestOk(Parameters(), ((0x2, 1),)).encode())
    assert close_code(p.client) == 0x3


def test_redirect_with_a_connect_uri_received_by_a_server_is_a_protocol_violation() -> None:
    # FAILS until fix: § Redirect Structure: "If a server receives a Redirect with a non-zero Connect
    # URI Length it MUST close the session with a PROTOCOL_VIOLATION."  core.py _first_response
    # does not look at msg.redirect.  Fix: when self.role is Role.SERVER and
    # msg.redirect and msg.redirect.connect_uri: raise ProtocolViolation.
    p = Pair()
    rid = p.server.subscribe(NS, b"video")
    p.pump()
    p.client.reject(rid, RequestErrorCode.REDIRECT, "elsewhere", redirect=c.Redirect(b"moqt://other/", NS, b"v2"))
    p.pump()
    assert close_code(p.server) == 0x3


def test_redirect_received_by_a_client_is_passed_on() -> None:
    p = Pair()
    rid = p.client.subscribe(NS, b"video")
    p.pump()
    p.server.reject(rid, RequestErrorCode.REDIRECT, "moved", redirect=c.Redirect(b"moqt://other/", NS, b"v2"))
    p.pump()
    (rejected,) = of(p.events(p.client), ev.RequestRejected)
    assert rejected.error.redirect == c.Redirect(b"moqt://other/", NS, b"v2")
    assert close_code(p.client) is None


def test_redirect_with_a_track_name_for_a_namespace_request_is_a_protocol_violation() -> None:
    # FAILS until fix: § Redirect Structure: "Track Name is not meaningful for namespace-scoped
    # requests (SUBSCRIBE_NAMESPACE, PUBLISH_NAMESPACE) and MUST be empty; an endpoint that receives
    # a non-empty Track Name in a Redirect for a namespace-scoped request MUST close the session with
    # a PROTOCOL_VIOLATION."  Not checked in core.py _first_response.
    p = Pair()
    rid = p.client.subscribe_namespace(NS)
    p.pump()
    p.server.reject(rid, RequestErrorCode.REDIRECT, "moved", redirect=c.Redirect(b"", (b"other",), b"name"))
    p.pump()
    assert close_code(p.client) == 0x3


# --- data streams --------------------------------------------------------------------------------------


def test_unknown_unidirectional_stream_type_is_a_protocol_violation() -> None:
    p = Pair()
    p.inject(p.client, p.fresh_uni(p.server), b"\x06\x00")
    assert close_code(p.client) == 0x3


@pytest.mark.parametrize("stream_type", [0x16, 0x17, 0x1E, 0x3F, 0x7F])
def test_reserved_subgroup_id_mode_is_a_protocol_violation(stream_type: int) -> None:
    p = Pair()
    subscribed(p)
    p.inject(p.client, p.fresh_uni(p.server), bytes([stream_type, 0, 0, 0, 0]))
    assert close_code(p.client) == 0x3


def test_subgroup_stream_ending_inside_an_object_is_a_protocol_violation() -> None:
    p = Pair()
    _, alias = subscribed(p)
    data = SubgroupHeader(alias, 0).encode() + encode_subgroup_object(None, 0, 10) + b"short"
    p.inject(p.client, p.fresh_uni(p.server), data, fin=True)
    assert close_code(p.client) == 0x3


def test_subgroup_stream_ending_inside_its_header_is_a_protocol_violation() -> None:
    p = Pair()
    _, alias = subscribed(p)
    p.inject(p.client, p.fresh_uni(p.server), SubgroupHeader(alias, 300, 5).encode()[:-1], fin=True)
    assert close_code(p.client) == 0x3


def test_unknown_object_status_is_a_protocol_violation() -> None:
    p = Pair()
    _, alias = subscribed(p)
    data = SubgroupHeader(alias, 0).encode() + bytes([0, 0, 0x05])  # id 0, length 0, status 5
    p.inject(p.client, p.fresh_uni(p.server), data)
    assert close_code(p.client) == 0x3


def test_properties_on_an_end_of_group_object_are_a_protocol_violation() -> None:
    p = Pair()
    _, alias = subscribed(p)
    header = SubgroupHeader(alias, 0, has_properties=True).encode()
    obj = bytes([0, 2, 0x02, 0x01, 0, ObjectStatus.END_OF_GROUP])  # id 0, props {2: 1}, length 0, status
    p.inject(p.client, p.fresh_uni(p.server), header + obj)
    assert close_code(p.client) == 0x3


def test_padding_stream_is_ignored() -> None:
    p = Pair()
    subscribed(p)
    sid = p.fresh_uni(p.server)
    p.inject(p.client, sid, padding_stream_header() + bytes(100))
    p.inject(p.client, sid, b"\xff" * 50, fin=True)
    assert p.events(p.client) == [] and close_code(p.client) is None


def test_fin_on_a_control_stream_of_the_client_is_a_protocol_violation_at_the_client() -> None:
    p = Pair()
    p.inject(p.client, SERVER_CONTROL, b"", fin=True)
    assert close_code(p.client) == 0x3


def test_reset_of_a_request_stream_is_not_a_session_error() -> None:
    p = Pair()
    rid, _ = subscribed(p)
    p.server.receive_stream_reset(request_stream(p, p.client, rid), 0x1)
    p.pump()
    assert close_code(p.server) is None and close_code(p.client) is None
    assert p.server.ready and p.client.ready
