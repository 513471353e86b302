"""§ Session initialization, § SETUP, § Setup Options, § Termination: control streams and SETUP."""

from __future__ import annotations

import pytest

from moq.errors import SessionErrorCode as E
from moq.session import SessionConfig
from moq.session import events as ev
from moq.wire import control as c
from moq.wire.control import SetupOption
from moq.wire.data import SubgroupHeader, encode_subgroup_object

from .pair import CLIENT_CONTROL, SERVER_CONTROL, Pair, close_code, decode_messages, of, setup_bytes


def server_receiving(setup: bytes, *, webtransport: bool = False) -> Pair:
    """A started server whose (crafted) client sends `setup` on its control stream."""
    p = Pair(start=False, webtransport=webtransport)
    p.server.start()
    p.inject(p.server, CLIENT_CONTROL, setup)
    return p


def client_receiving(setup: bytes, *, webtransport: bool = False) -> Pair:
    p = Pair(start=False, webtransport=webtransport)
    p.client.start()
    p.inject(p.client, SERVER_CONTROL, setup)
    return p


def sent_setup(p: Pair, sender) -> c.Setup:
    control = CLIENT_CONTROL if sender is p.client else SERVER_CONTROL
    (msg, *_) = decode_messages(p.stream_bytes(sender, control))
    assert isinstance(msg, c.Setup)
    return msg


# --- the happy path -------------------------------------------------------------------


def test_both_sides_complete_setup() -> None:
    p = Pair()
    (client_done,) = p.events(p.client)
    (server_done,) = p.events(p.server)
    assert client_done == ev.SetupCompleted("moqt-18", "/moq", "", "moq-py/0.1")
    assert server_done == ev.SetupCompleted("moqt-18", "/moq", "", "moq-py/0.1")
    assert p.client.ready and p.server.ready
    # each side opened exactly one unidirectional control stream of its own
    assert [a.stream_id for a in p.sent(p.client, ev.SendStreamData)] == [CLIENT_CONTROL]
    assert [a.stream_id for a in p.sent(p.server, ev.SendStreamData)] == [SERVER_CONTROL]
    # ... and gave it the highest send priority (§ Priorities: control streams first)
    assert [(a.stream_id, a.key) for a in p.sent(p.client, ev.SetStreamPriority)] == [(CLIENT_CONTROL, (0,))]


def test_raw_quic_client_sends_path_and_authority() -> None:
    p = Pair(client_config=SessionConfig(path="/live/room?token=abc", authority="relay.example:4443"))
    setup = sent_setup(p, p.client)
    assert setup.option(SetupOption.PATH) == b"/live/room?token=abc"
    assert setup.option(SetupOption.AUTHORITY) == b"relay.example:4443"
    (done,) = p.events(p.server)
    assert done.path == "/live/room?token=abc"
    assert done.authority == "relay.example:4443"


def test_raw_quic_client_sends_empty_path_for_root_uri() -> None:
    """moqt://host has an empty path-abempty; PATH is still sent (and is well-formed)."""
    p = Pair(client_config=SessionConfig(path=""))
    assert sent_setup(p, p.client).option(SetupOption.PATH) == b""
    assert p.server.ready and p.events(p.server)[0].path == ""


def test_server_sends_no_path_or_authority() -> None:
    p = Pair(client_config=SessionConfig(path="/moq", authority="example.com"))
    setup = sent_setup(p, p.server)
    assert setup.option(SetupOption.PATH) is None
    assert setup.option(SetupOption.AUTHORITY) is None


def test_webtransport_client_sends_no_path_or_authority() -> None:
    p = Pair(webtransport=True, client_config=SessionConfig(path="/moq", authority="example.com"))
    setup = sent_setup(p, p.client)
    assert setup.option(SetupOption.PATH) is None
    assert setup.option(SetupOption.AUTHORITY) is None
    assert setup.option(SetupOption.MOQT_IMPLEMENTATION) == b"moq-py/0.1"
    assert p.client.ready and p.server.ready


def test_unknown_and_repeated_unknown_setup_options_are_ignored() -> None:
    p = server_receiving(setup_bytes((SetupOption.PATH, b"/x"), (0x3F, b"a"), (0x3F, b"b"), (0x42, 7)))
    assert close_code(p.server) is None
    assert p.server.ready
    assert of(p.events(p.server), ev.SetupCompleted)[0].path == "/x"


def test_peer_implementation_is_reported() -> None:
    p = server_receiving(setup_bytes((SetupOption.PATH, b"/"), implementation=b"other-impl/2.0"))
    assert of(p.events(p.server), ev.SetupCompleted)[0].peer_implementation == "other-impl/2.0"


# --- PATH / AUTHORITY errors --------------------------------------------------------------


def test_server_receiving_path_over_webtransport_closes_invalid_path() -> None:
    p = server_receiving(setup_bytes((SetupOption.PATH, b"/moq")), webtransport=True)
    assert close_code(p.server) == E.INVALID_PATH == 0x8
    assert p.sent(p.server, ev.CloseSession)[0].error_code == 0x8


def test_server_receiving_authority_over_webtransport_closes_invalid_authority() -> None:
    p = server_receiving(setup_bytes((SetupOption.AUTHORITY, b"example.com")), webtransport=True)
    assert close_code(p.server) == E.INVALID_AUTHORITY == 0x19


def test_client_receiving_path_from_server_closes_invalid_path() -> None:
    p = client_receiving(setup_bytes((SetupOption.PATH, b"/moq")))
    assert close_code(p.client) == E.INVALID_PATH == 0x8
    assert not p.client.ready


def test_client_receiving_authority_from_server_closes_invalid_authority() -> None:
    p = client_receiving(setup_bytes((SetupOption.AUTHORITY, b"example.com")))
    assert close_code(p.client) == E.INVALID_AUTHORITY == 0x19


@pytest.mark.parametrize("path", [b"moq", b"/a b", b"/a#frag", b"relative/path"])
def test_malformed_path_closes_malformed_path(path: bytes) -> None:
    p = server_receiving(setup_bytes((SetupOption.PATH, path)))
    assert close_code(p.server) == E.MALFORMED_PATH == 0x9


@pytest.mark.parametrize("path", [b"", b"/", b"/moq", b"/a/b?x=1&y=2", b"/%20x"])
def test_well_formed_paths_are_accepted(path: bytes) -> None:
    p = server_receiving(setup_bytes((SetupOption.PATH, path)))
    assert close_code(p.server) is None and p.server.ready
    assert of(p.events(p.server), ev.SetupCompleted)[0].path == path.decode()


@pytest.mark.parametrize("authority", [b"", b"host/path", b"a b"])
def test_malformed_authority_closes_malformed_authority(authority: bytes) -> None:
    p = server_receiving(setup_bytes((SetupOption.PATH, b"/"), (SetupOption.AUTHORITY, authority)))
    assert close_code(p.server) == E.MALFORMED_AUTHORITY == 0x1A


# --- version negotiation ----------------------------------------------------------------


def test_unsupported_version_closes_version_negotiation_failed() -> None:
    # FAILS until fix: core.py Session.start calls self._close(code, reason) without `by_peer`, so
    # start() raises TypeError instead of closing with VERSION_NEGOTIATION_FAILED.
    p = Pair(version="moqt-99")
    for side in (p.client, p.server):
        assert [a.error_code for a in p.sent(side, ev.CloseSession)] == [0x15]
        (terminated,) = of(p.events(side), ev.SessionTerminated)
        assert terminated.error_code == E.VERSION_NEGOTIATION_FAILED == 0x15
        assert not side.ready
    assert not p.sent(p.client, ev.SendStreamData)  # no SETUP was sent


LEGACY_CLIENT_SETUP = bytes([0x20, 0x00, 0x06, 0x01, 0xC0, 0x00, 0x00, 0x0E, 0x00])  # draft-14-style CLIENT_SETUP


def test_legacy_client_setup_on_bidi_stream_0_closes_version_negotiation_failed() -> None:
    # FAILS until fix: a peer speaking draft <= 16 never sends SETUP, so the bidi stream is
    # buffered forever as an "early" request stream (core.py _stream_data, bidi branch) and the
    # legacy check in _new_peer_stream is never reached.  Fix: run that check before parking
    # a bidi stream in self._early.
    p = Pair(start=False)
    p.server.start()
    p.inject(p.server, 0, LEGACY_CLIENT_SETUP)
    assert close_code(p.server) == E.VERSION_NEGOTIATION_FAILED == 0x15


def test_legacy_client_setup_on_bidi_stream_0_after_setup_closes_version_negotiation_failed() -> None:
    p = Pair()
    p.inject(p.server, 0, LEGACY_CLIENT_SETUP)
    assert close_code(p.server) == 0x15


# --- control stream rules -----------------------------------------------------------------


def test_second_setup_is_a_protocol_violation() -> None:
    p = Pair()
    p.inject(p.server, CLIENT_CONTROL, c.Setup(((SetupOption.PATH, b"/again"),)).encode())
    assert close_code(p.server) == E.PROTOCOL_VIOLATION == 0x3
    (terminated,) = of(p.events(p.client), ev.SessionTerminated)
    assert terminated.by_peer and terminated.error_code == 0x3


def test_unknown_message_type_on_control_stream_is_a_protocol_violation() -> None:
    p = Pair()
    p.inject(p.server, CLIENT_CONTROL, bytes([0x3F, 0x00, 0x00]))  # type 0x3F, empty payload
    assert close_code(p.server) == 0x3


@pytest.mark.parametrize("msg_type", [0x01, 0x20, 0x21, 0x40, 0x41])
def test_reserved_message_types_on_control_stream_are_a_protocol_violation(msg_type: int) -> None:
    p = Pair()
    p.inject(p.server, CLIENT_CONTROL, bytes([msg_type, 0x00, 0x00]))
    assert close_code(p.server) == 0x3


@pytest.mark.parametrize(
    "message",
    [
        c.Subscribe(0, (b"a",), b"b"),
        c.SubscribeOk(0),
        c.RequestOk(),
        c.RequestError(0x10, 0, "x"),
        c.Namespace((b"a",)),
        c.PublishDone(2, 0, ""),
    ],
    ids=lambda m: type(m).__name__,
)
def test_request_stream_messages_on_the_control_stream_are_a_protocol_violation(message) -> None:
    p = Pair()
    p.inject(p.server, CLIENT_CONTROL, message.encode())
    assert close_code(p.server) == 0x3


def test_control_stream_that_does_not_start_with_setup_is_an_unknown_stream_type() -> None:
    """A non-SETUP first message cannot be expressed: a unidirectional stream starting with
    e.g. SUBSCRIBE's type 0x3 is an unknown stream type, which closes the session."""
    p = Pair(start=False)
    p.server.start()
    p.inject(p.server, CLIENT_CONTROL, c.Subscribe(0, (b"a",), b"b").encode())
    assert close_code(p.server) == 0x3


def test_message_length_longer_than_its_fields_is_a_protocol_violation() -> None:
    p = Pair()
    # GOAWAY{uri="", timeout=5, request_id=1} followed by two stray bytes inside the Length
    p.inject(p.server, CLIENT_CONTROL, b"\x10\x00\x05" + b"\x00\x05\x01" + b"\x00\x00")
    assert close_code(p.server) == 0x3


def test_message_length_shorter_than_its_fields_is_a_protocol_violation() -> None:
    p = Pair()
    p.inject(p.server, CLIENT_CONTROL, b"\x10\x00\x01\x00")  # GOAWAY without its Timeout
    assert close_code(p.server) == 0x3


def test_control_stream_fin_is_a_protocol_violation() -> None:
    p = Pair()
    p.inject(p.server, CLIENT_CONTROL, b"", fin=True)
    assert close_code(p.server) == 0x3


def test_control_stream_reset_is_a_protocol_violation() -> None:
    # FAILS until fix: core.py _stream_reset hands every unidirectional stream to
    # data.receive_reset before the `sid == self._control_in` check, so the reset is
    # ignored and the control stream's decoder is dropped.
    p = Pair()
    p.server.receive_stream_reset(CLIENT_CONTROL, 0)
    p.pump()
    assert close_code(p.server) == 0x3


def test_control_data_after_control_stream_reset_does_not_raise() -> None:
    # FAILS until fix: after the reset above, DataPlane.feed_control
    # indexes self._in[sid] and a KeyError escapes receive_stream_data.
    p = Pair()
    p.server.receive_stream_reset(CLIENT_CONTROL, 0)
    p.server.receive_stream_data(CLIENT_CONTROL, c.GoAway().encode())


def test_stop_sending_on_our_control_stream_is_a_protocol_violation() -> None:
    p = Pair()
    p.server.receive_stop_sending(SERVER_CONTROL, 0)
    p.pump()
    assert close_code(p.server) == 0x3


def test_second_control_stream_is_a_protocol_violation() -> None:
    p = Pair()
    p.inject(p.server, p.fresh_uni(p.client), setup_bytes((SetupOption.PATH, b"/")))
    assert close_code(p.server) == 0x3


def test_data_on_our_own_unidirectional_stream_is_a_protocol_violation() -> None:
    p = Pair()
    p.inject(p.server, SERVER_CONTROL, b"\x00")
    assert close_code(p.server) == 0x3


# --- ordering and chunking ----------------------------------------------------------------


def test_request_stream_before_peer_setup_is_buffered_until_setup() -> None:
    p = Pair(start=False)
    p.server.start()
    p.inject(p.server, 0, c.Subscribe(0, (b"live",), b"video").encode())
    p.inject(p.server, 4, c.TrackStatus(2, (b"live",), b"audio").encode())
    assert p.events(p.server) == []  # nothing happens before the peer's SETUP
    p.inject(p.server, CLIENT_CONTROL, setup_bytes((SetupOption.PATH, b"/moq")))
    events = p.events(p.server)
    assert [type(e) for e in events] == [ev.SetupCompleted, ev.SubscribeRequested, ev.TrackStatusRequested]
    assert events[1].message.track_name == b"video"
    assert close_code(p.server) is None


def test_request_stream_split_across_setup_is_reassembled() -> None:
    p = Pair(start=False)
    p.server.start()
    sub = c.Subscribe(0, (b"live",), b"video").encode()
    p.inject(p.server, 0, sub[:3])
    p.inject(p.server, CLIENT_CONTROL, setup_bytes((SetupOption.PATH, b"/moq")))
    p.inject(p.server, 0, sub[3:])
    assert [type(e) for e in p.events(p.server)] == [ev.SetupCompleted, ev.SubscribeRequested]


def test_request_and_data_streams_before_setup_are_processed_in_order() -> None:
    """The client publishes and sends an object before the server has its SETUP."""
    p = Pair(start=False)
    p.client.start()
    p.server.start()
    control = p.take(p.client)  # the client's SETUP, held back
    rid = p.client.publish((b"live",), b"video")
    sid = p.client.data.open_subgroup(rid, 0, 0)
    p.client.data.send_object(sid, 0, b"frame0")
    early = p.take(p.client)
    p.deliver(early, to=p.server)
    assert p.events(p.server) == []
    p.deliver(control, to=p.server)
    p.pump()
    events = p.events(p.server)
    assert [type(e) for e in events] == [ev.SetupCompleted, ev.PublishRequested, ev.ObjectReceived]
    assert events[2].payload == b"frame0"


def test_control_stream_delivered_byte_by_byte() -> None:
    # FAILS until fix: core.py _early_or_control gives up on recognising the control
    # stream when its first chunk is shorter than the SETUP type varint (2 bytes): the stream is
    # parked in self._early and, because _control_in stays None, SETUP is never processed.
    p = Pair(start=False)
    p.client.start()
    p.server.start()
    setup = b"".join(bytes(a.data) for a in p.take(p.client))
    for i in range(len(setup)):
        p.server.receive_stream_data(CLIENT_CONTROL, setup[i:i + 1])
    p.pump()
    assert p.server.ready


def test_setup_split_after_stream_type_is_reassembled() -> None:
    p = Pair(start=False)
    p.client.start()
    p.server.start()
    setup = b"".join(bytes(a.data) for a in p.take(p.client))
    p.server.receive_stream_data(CLIENT_CONTROL, setup[:2])
    p.server.receive_stream_data(CLIENT_CONTROL, setup[2:5])
    assert not p.server.ready
    p.server.receive_stream_data(CLIENT_CONTROL, setup[5:])
    assert p.server.ready


def test_server_may_send_requests_before_client_setup_arrives() -> None:
    """Pipelining: the server subscribes right after its SETUP; the client buffers it."""
    p = Pair(start=False)
    p.server.start()
    rid = p.server.subscribe((b"live",), b"video")
    p.client.start()
    p.pump()
    events = p.events(p.client)
    assert [type(e) for e in events] == [ev.SetupCompleted, ev.SubscribeRequested]
    assert events[1].request_id == rid == 1


def test_data_stream_header_before_setup_then_rest_after() -> None:
    p = Pair(start=False)
    p.client.start()
    p.server.start()
    control = p.take(p.client)
    rid = p.client.publish((b"live",), b"video")
    publish = p.take(p.client)
    header = SubgroupHeader(0, 0, 0).encode()
    obj = encode_subgroup_object(None, 0, 2) + b"hi"
    sid = p.fresh_uni(p.client)
    p.server.receive_stream_data(sid, header[:1])
    p.deliver(publish, to=p.server)
    p.deliver(control, to=p.server)
    p.server.receive_stream_data(sid, header[1:] + obj, True)
    p.pump()
    events = p.events(p.server)
    (obj_ev,) = of(events, ev.ObjectReceived)
    assert obj_ev.request_id == rid and obj_ev.payload == b"hi"
    assert of(events, ev.DataStreamEnded)
