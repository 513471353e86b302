"""Bad input never raises out of the session API: the only observable effect of random or
hostile bytes is nothing, events, or a close with one of the draft's codes (h11-style)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from moq.errors import SessionErrorCode
from moq.session import events as ev
from moq.wire import control as c
from moq.wire.data import FetchHeader, SubgroupHeader
from moq.wire.types import GroupOrder, Location, Parameters

from .pair import CLIENT_CONTROL, SERVER_CONTROL, Pair, close_code, of, request_stream, setup_bytes, subscribed

# The default run is derandomized (reproducible in CI); MOQ_FUZZ_EXAMPLES=5000 gives a long random run.
EXAMPLES = int(os.environ.get("MOQ_FUZZ_EXAMPLES", "150"))
DERANDOMIZE = "MOQ_FUZZ_EXAMPLES" not in os.environ
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=DERANDOMIZE,
                suppress_health_check=[HealthCheck.too_slow])
CODES = {int(code) for code in SessionErrorCode}
NS = (b"live",)


def assert_sane(p: Pair, session) -> None:
    """Closed locally with a draft code and a matching CloseSession action, or not closed."""
    p.pump()
    closes = [a.error_code for a in p.sent(session, ev.CloseSession)]
    if session.closed is None:
        assert closes == []
    elif not session.closed.by_peer:
        assert session.closed.error_code in CODES
        assert closes == [session.closed.error_code]


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    out, prev = [], 0
    for point in points + [len(data)]:
        out.append(data[prev:point])
        prev = point
    return out


@FUZZ
@given(data=st.binary(max_size=300), fin=st.booleans())
def test_random_bytes_on_the_control_stream(data: bytes, fin: bool) -> None:
    p = Pair()
    p.server.receive_stream_data(CLIENT_CONTROL, data, fin)
    assert_sane(p, p.server)


@FUZZ
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 400), max_size=4))
def test_random_bytes_as_the_peer_setup(data: bytes, cuts: list[int]) -> None:
    p = Pair(start=False)
    p.server.start()
    for piece in chunked(setup_bytes((1, b"/"))[:4] + data, cuts):
        p.server.receive_stream_data(CLIENT_CONTROL, piece)
    assert_sane(p, p.server)


@FUZZ
@given(data=st.binary(max_size=300), fin=st.booleans(), cuts=st.lists(st.integers(0, 400), max_size=4))
def test_random_bytes_on_a_new_bidi_stream(data: bytes, fin: bool, cuts: list[int]) -> None:
    p = Pair()
    sid = p.fresh_bidi(p.client)
    pieces = chunked(data, cuts)
    for i, piece in enumerate(pieces):
        p.server.receive_stream_data(sid, piece, fin and i == len(pieces) - 1)
    assert_sane(p, p.server)


@FUZZ
@given(data=st.binary(max_size=300), fin=st.booleans())
def test_random_bytes_on_an_established_request_stream(data: bytes, fin: bool) -> None:
    p = Pair()
    rid, _ = subscribed(p)
    p.client.receive_stream_data(request_stream(p, p.client, rid), data, fin)
    assert_sane(p, p.client)
    p.server.receive_stream_data(request_stream(p, p.client, rid), data, fin)
    assert_sane(p, p.server)


@FUZZ
@given(
    prefix=st.sampled_from(["none", "subgroup", "subgroup-props", "fetch", "fetch-desc"]),
    data=st.binary(max_size=300),
    fin=st.booleans(),
    cuts=st.lists(st.integers(0, 400), max_size=4),
)
def test_random_bytes_on_a_unidirectional_stream(prefix: str, data: bytes, fin: bool, cuts: list[int]) -> None:
    p = Pair()
    _, alias = subscribed(p)
    order = GroupOrder.DESCENDING if prefix == "fetch-desc" else None
    fetch_id = p.client.fetch(c.Fetch(standalone=c.StandaloneFetch(NS, b"v", Location(0, 0), Location(9, 0)),
                                      parameters=Parameters(group_order=order)))
    p.pump()
    head = {
        "none": b"",
        "subgroup": SubgroupHeader(alias, 1, 2).encode(),
        "subgroup-props": SubgroupHeader(alias, 1, None, 5, has_properties=True).encode(),
        "fetch": FetchHeader(fetch_id).encode(),
        "fetch-desc": FetchHeader(fetch_id).encode(),
    }[prefix]
    sid = p.fresh_uni(p.server)
    pieces = chunked(head + data, cuts)
    for i, piece in enumerate(pieces):
        p.client.receive_stream_data(sid, piece, fin and i == len(pieces) - 1)
    assert_sane(p, p.client)


@FUZZ
@given(data=st.binary(max_size=200))
def test_random_datagrams(data: bytes) -> None:
    p = Pair()
    subscribed(p)
    p.client.receive_datagram(data)
    assert_sane(p, p.client)


POOL = [
    c.Subscribe(0, NS, b"a").encode(),
    c.Subscribe(1, NS, b"a").encode(),
    c.Subscribe(2, (b".",), b"a").encode(),
    c.SubscribeOk(0, Parameters(largest_object=Location(1, 1))).encode(),
    c.SubscribeOk(1).encode(),
    c.Publish(4, NS, b"b", 0).encode(),
    c.Publish(6, NS, b"c", 1, Parameters(forward=0)).encode(),
    c.PublishOk().encode(),
    c.PublishDone(2, 3, "x").encode(),
    c.Fetch(8, standalone=c.StandaloneFetch(NS, b"a", Location(0, 0), Location(1, 0))).encode(),
    c.Fetch(10, c.FetchType.RELATIVE_JOINING, joining=c.JoiningFetch(0, 1)).encode(),
    c.FetchOk(False, Location(0, 0)).encode(),
    c.TrackStatus(12, NS, b"a").encode(),
    c.PublishNamespace(14, NS).encode(),
    c.SubscribeNamespace(16, NS).encode(),
    c.SubscribeTracks(18, NS).encode(),
    c.Namespace((b"x",)).encode(),
    c.NamespaceDone((b"x",)).encode(),
    c.PublishBlocked((b"x",), b"y").encode(),
    c.RequestUpdate(20, Parameters(forward=1)).encode(),
    c.RequestOk().encode(),
    c.RequestError(0x10, 0, "no").encode(),
    c.GoAway(b"", 0, 0).encode(),
    c.GoAway(b"moqt://x/", 0).encode(),
    c.Setup(()).encode(),
    SubgroupHeader(0, 0).encode(),
    FetchHeader(8).encode(),
    b"\x00\x00",
    b"\xff",
]

STEP = st.tuples(
    st.sampled_from(["client", "server"]),  # receiving side
    st.integers(0, 11),  # stream choice
    st.sampled_from(POOL),
    st.sampled_from(["data", "fin", "reset", "stop"]),
)


@settings(max_examples=EXAMPLES + 50, deadline=None, derandomize=DERANDOMIZE,
          suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEP, max_size=12))
@example(steps=[("client", 4, POOL[0], "reset"), ("client", 4, POOL[0], "data")])  # the server's control stream
def test_random_sequences_of_real_messages_on_random_streams(steps) -> None:
    # FAILS until fix (the @example): a RESET_STREAM on the peer's control stream followed by more
    # control data raises KeyError out of receive_stream_data -- see test_setup.py
    # test_control_stream_reset_is_a_protocol_violation (core.py Session._stream_reset).
    p = Pair()
    subscribed(p)
    for side, stream, data, how in steps:
        dst = p.client if side == "client" else p.server
        src = p.peer(dst)
        # streams 0-3: the sender's bidi streams 0..3 by index; 4-7: its uni streams; 8-11: the receiver's
        base = 1 if src is p.server else 0
        if stream < 4:
            sid = base + 4 * stream
        elif stream < 8:
            sid = base + 2 + 4 * (stream - 4)
        else:
            sid = (1 - base) + 4 * (stream - 8)
        if how == "reset":
            dst.receive_stream_reset(sid, 1)
        elif how == "stop":
            dst.receive_stop_sending(sid, 1)
        else:
            dst.receive_stream_data(sid, data, how == "fin")
        p.pump()
    assert_sane(p, p.client)
    assert_sane(p, p.server)


@settings(max_examples=max(EXAMPLES // 3, 20), deadline=None, derandomize=DERANDOMIZE)
@given(data=st.binary(min_size=1, max_size=100))
def test_timers_and_api_after_random_input_do_not_raise(data: bytes) -> None:
    p = Pair()
    rid, _ = subscribed(p)
    p.client.receive_stream_data(p.fresh_uni(p.server), data)
    p.client.handle_timer(p.now + 10)
    p.client.next_timer()
    p.events(p.client)
    assert_sane(p, p.client)


def test_a_bad_request_closes_only_its_own_session() -> None:
    bad, good = Pair(), Pair()
    for pair in (bad, good):
        subscribed(pair)
    bad.inject(bad.server, bad.fresh_bidi(bad.client), c.Subscribe(1, NS, b"wrong parity").encode())
    good.client.subscribe(NS, b"fine")
    good.pump()
    assert close_code(bad.server) == 0x4
    assert of(bad.events(bad.client), ev.SessionTerminated)[0].by_peer
    assert good.client.closed is None and good.server.closed is None
    assert of(good.events(good.server), ev.SubscribeRequested)


def test_a_bad_request_stream_does_not_disturb_the_other_direction_of_a_pair_until_it_closes() -> None:
    p = Pair()
    rid, _ = subscribed(p)
    sid = p.server.data.open_subgroup(rid, 0)
    p.server.data.send_object(sid, 0, b"ok")
    p.pump()
    assert of(p.events(p.client), ev.ObjectReceived)
    p.inject(p.client, SERVER_CONTROL, b"\x3f\x00\x00")
    assert close_code(p.client) == 0x3
    assert p.server.closed is not None and p.server.closed.by_peer
