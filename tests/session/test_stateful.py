"""A hypothesis state machine drives a pair of sans-IO sessions with random legal and illegal
sequences: requests of every kind from either side, answers, bad ranges, cancels, updates,
GOAWAY, objects, and (at most once per run) one protocol violation injected as raw bytes.

test_fuzz.py throws random bytes and message soups at a pair and checks only that nothing
escapes; here each violation has the code draft-18 gives it, and the machine checks that
the receiver closes with exactly that code, the other session sees the same code as a peer
close, and until then both sessions agree (requests answered, objects delivered in full).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from moq.errors import PublishDoneCode, RequestErrorCode, SessionErrorCode
from moq.session import SessionConfig
from moq.session import events as ev
from moq.wire import control as c
from moq.wire.data import FetchObject, ObjectDatagram, SubgroupHeader
from moq.wire.types import Location, Parameters
from moq.wire.varint import encode_varint

from .pair import CLIENT_CONTROL, SERVER_CONTROL, Pair, setup_bytes

NS = (b"live",)
TRACKS = (b"a", b"b", b"c")
LIMIT = 4  # max_incoming_requests on both sides, so that "too many" is reachable
E = SessionErrorCode
REQUEST_CODES = {int(code) for code in RequestErrorCode}
SIDES = st.sampled_from(["client", "server"])
KINDS = st.sampled_from(["subscribe", "subscribe", "publish", "publish", "fetch", "fetch_bad_range", "track_status",
                         "publish_namespace", "subscribe_namespace", "subscribe_tracks"])


def frame(msg_type: int, payload: bytes, length: int | None = None) -> bytes:
    return encode_varint(msg_type) + (len(payload) if length is None else length).to_bytes(2, "big") + payload


class SessionPair(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.p = Pair(client_config=SessionConfig(path="/moq", max_incoming_requests=LIMIT),
                      server_config=SessionConfig(max_incoming_requests=LIMIT))
        self.violation: tuple[str, int] | None = None  # (receiving side, expected close code)
        self.incoming: dict[str, dict[int, ev.IncomingRequest]] = {"client": {}, "server": {}}
        self.updates: dict[str, list[int]] = {"client": [], "server": []}
        self.publishing: dict[str, dict[int, int]] = {"client": {}, "server": {}}  # side -> {rid: next group}
        self.used: dict[str, set[int]] = {"client": set(), "server": set()}  # request IDs each side sent
        self.received: list[ev.ObjectReceived] = []
        self.rejected: dict[int, int] = {}  # request id -> REQUEST_ERROR code, as the requester saw it
        self.goaway_sent = {"client": False, "server": False}
        self.bad_fetches: set[tuple[str, int]] = set()
        self.steps = 0

    # --- plumbing -----------------------------------------------------------------------
    def s(self, side: str):
        return self.p.client if side == "client" else self.p.server

    @staticmethod
    def other(side: str) -> str:
        return "server" if side == "client" else "client"

    def open(self) -> bool:
        return self.p.client.closed is None and self.p.server.closed is None

    def settle(self) -> None:
        self.steps += 1
        self.p.pump()
        for side in ("client", "server"):
            for e in self.p.events(self.s(side)):
                if isinstance(e, ev.IncomingRequest):
                    self.incoming[side][e.request_id] = e
                elif isinstance(e, ev.RequestUpdateReceived):
                    self.updates[side].append(e.update_id)
                elif isinstance(e, ev.ObjectReceived):
                    self.received.append(e)
                elif isinstance(e, ev.RequestRejected):
                    assert e.error.error_code in REQUEST_CODES, e
                    self.rejected[e.request_id] = e.error.error_code
                elif isinstance(e, (ev.RequestCancelled, ev.PublishDoneReceived, ev.RequestEnded)):
                    self.publishing[side].pop(e.request_id, None)
                    self.incoming[side].pop(e.request_id, None)
        for side in ("client", "server"):  # requests the session itself refused or forgot
            live = {r.request_id for r in self.s(side).requests()}
            for rid in [r for r in self.incoming[side] if r not in live]:
                del self.incoming[side][rid]
            for rid in [r for r in self.publishing[side] if r not in live]:
                del self.publishing[side][rid]

    def violate(self, receiver: str, code: int, stream_id: int, data: bytes, fin: bool = False) -> None:
        self.violation = (receiver, int(code))
        self.s(receiver).receive_stream_data(stream_id, data, fin, self.p.now)
        self.settle()

    # --- legal traffic -----------------------------------------------------------------------
    @precondition(lambda self: self.open())
    @rule(side=SIDES, kind=KINDS, track=st.sampled_from(TRACKS))
    def request(self, side: str, kind: str, track: bytes) -> None:
        me, peer = self.s(side), self.s(self.other(side))
        busy = sum(1 for r in peer.requests() if not r.outgoing) >= LIMIT
        going = self.goaway_sent[self.other(side)]
        if kind == "subscribe":
            rid = me.subscribe(NS, track)
        elif kind == "publish":
            rid = me.publish(NS, track)
        elif kind in ("fetch", "fetch_bad_range"):
            start, end = (Location(5, 0), Location(2, 0)) if kind == "fetch_bad_range" else (Location(0, 0), Location(3, 0))
            rid = me.fetch(c.Fetch(standalone=c.StandaloneFetch(NS, track, start, end)))
            if kind == "fetch_bad_range":
                self.bad_fetches.add((self.other(side), rid))
        elif kind == "track_status":
            rid = me.track_status(NS, track)
        elif kind == "publish_namespace":
            rid = me.publish_namespace(NS + (track,))
        elif kind == "subscribe_namespace":
            rid = me.subscribe_namespace(NS + (track,))
        else:
            rid = me.subscribe_tracks(NS + (track,))
        self.used[side].add(rid)
        self.settle()
        if busy and not going:  # § too many requests: refused, the session lives on
            assert self.rejected.get(rid) == RequestErrorCode.EXCESSIVE_LOAD, (rid, self.rejected.get(rid))
        if going:
            assert self.rejected.get(rid) in (RequestErrorCode.GOING_AWAY, None), self.rejected.get(rid)

    @precondition(lambda self: self.open())
    @rule(side=SIDES, publish=st.booleans(), track=st.sampled_from(TRACKS))
    def subscription(self, side: str, publish: bool, track: bytes) -> None:
        """SUBSCRIBE (or PUBLISH) answered at once: established subscriptions for the rules below."""
        self.request(side, "publish" if publish else "subscribe", track)
        rid = max(self.used[side])
        if rid in self.incoming[self.other(side)]:
            self.answer_one(self.other(side), rid, True)

    @precondition(lambda self: self.open() and any(self.incoming.values()))
    @rule(data=st.data(), accept=st.sampled_from([True, True, True, False]))
    def answer(self, data, accept: bool) -> None:
        side = data.draw(st.sampled_from([s for s in ("client", "server") if self.incoming[s]]))
        self.answer_one(side, data.draw(st.sampled_from(sorted(self.incoming[side]))), accept)

    def answer_one(self, side: str, rid: int, accept: bool) -> None:
        e = self.incoming[side].pop(rid)
        me = self.s(side)
        if not me.has_request(rid):
            return
        if (side, rid) in self.bad_fetches:  # End before Start: the responder refuses the range
            me.reject(rid, RequestErrorCode.INVALID_RANGE, "end before start")
            self.settle()
            assert self.rejected.get(rid) == RequestErrorCode.INVALID_RANGE
            return
        if not accept:
            me.reject(rid, RequestErrorCode.DOES_NOT_EXIST, "no")
            self.settle()
            assert self.rejected.get(rid) == RequestErrorCode.DOES_NOT_EXIST
            return
        if isinstance(e, ev.SubscribeRequested):
            me.accept_subscribe(rid)
            self.publishing[side][rid] = 0
        elif isinstance(e, ev.PublishRequested):
            me.accept_publish(rid)
            self.publishing[self.other(side)][rid] = 0
        elif isinstance(e, ev.FetchRequested):
            self.fetch_reply(side, rid, e.message)
        else:
            me.accept(rid)
        self.settle()

    def fetch_reply(self, side: str, rid: int, msg: c.Fetch) -> None:
        me = self.s(side)
        me.accept_fetch(rid, msg.standalone.end)  # type: ignore[union-attr]
        before = len(self.received)
        me.data.open_fetch_stream(rid)
        for obj in range(2):
            me.data.send_fetch_object(rid, FetchObject(0, 0, obj, 128, b"f%d" % obj))
        me.data.end_fetch_stream(rid)
        self.settle()
        got = [(o.object_id, bytes(o.payload)) for o in self.received[before:] if o.request_id == rid and o.fetch]
        assert got == [(0, b"f0"), (1, b"f1")], got

    @precondition(lambda self: self.open() and any(self.publishing.values()))
    @rule(data=st.data(), n=st.integers(1, 3), datagram=st.booleans())
    def send_objects(self, data, n: int, datagram: bool) -> None:
        side = data.draw(st.sampled_from([s for s in ("client", "server") if self.publishing[s]]))
        rid = data.draw(st.sampled_from(sorted(self.publishing[side])))
        me = self.s(side)
        req = me.request(rid)
        group = self.publishing[side][rid]
        self.publishing[side][rid] = group + 1
        before = len(self.received)
        if datagram:
            for obj in range(n):
                me.data.send_datagram(rid, ObjectDatagram(req.track_alias, group, obj, payload=b"d%d" % obj))
        else:
            sid = me.data.open_subgroup(rid, group)
            for obj in range(n):
                me.data.send_object(sid, obj, b"o%d" % obj)
            me.data.end_subgroup(sid)
        self.settle()
        got = [(o.group_id, o.object_id, bytes(o.payload)) for o in self.received[before:]]
        expect = [(group, obj, (b"d%d" if datagram else b"o%d") % obj) for obj in range(n)]
        assert got == expect, (got, expect)  # (forward 0 is the publisher's to honour, not the session's)

    @precondition(lambda self: self.open())
    @rule(side=SIDES, data=st.data())
    def cancel(self, side: str, data) -> None:
        mine = [r.request_id for r in self.s(side).requests() if r.outgoing]
        if mine:
            self.s(side).cancel(data.draw(st.sampled_from(sorted(mine))))
            self.settle()

    @precondition(lambda self: self.open() and any(self.publishing.values()))
    @rule(data=st.data())
    def publish_done(self, data) -> None:
        side = data.draw(st.sampled_from([s for s in ("client", "server") if self.publishing[s]]))
        rid = data.draw(st.sampled_from(sorted(self.publishing[side])))
        self.s(side).publish_done(rid, PublishDoneCode.TRACK_ENDED)
        del self.publishing[side][rid]
        self.settle()

    @precondition(lambda self: self.open())
    @rule(side=SIDES, data=st.data(), forward=st.sampled_from([0, 1]))
    def update(self, side: str, data, forward: int) -> None:
        me = self.s(side)
        subs = [r.request_id for r in me.requests() if r.outgoing and r.responded and r.kind.value == "subscribe"]
        if subs:
            uid = me.request_update(data.draw(st.sampled_from(sorted(subs))), Parameters(forward=forward))
            self.used[side].add(uid)
            self.settle()

    @precondition(lambda self: self.open() and any(self.updates.values()))
    @rule(data=st.data(), accept=st.booleans())
    def answer_update(self, data, accept: bool) -> None:
        side = data.draw(st.sampled_from([s for s in ("client", "server") if self.updates[s]]))
        uid = self.updates[side].pop(0)
        me = self.s(side)
        owner = next((r for r in me.requests() if r.updates_in_flight and r.updates_in_flight[0] == uid), None)
        if owner is None or owner.send_closed:
            return  # its request ended meanwhile (we sent PUBLISH_DONE, say): nothing to answer on
        if accept:
            me.accept_update(uid)
        else:
            me.reject_update(uid, RequestErrorCode.INTERNAL_ERROR, "no")
        self.settle()

    @precondition(lambda self: self.open())
    @rule(side=SIDES, uri=st.booleans())
    def goaway(self, side: str, uri: bool) -> None:
        """GOAWAY may be called again: the session must not send a second one (a violation)."""
        self.s(side).goaway("moqt://elsewhere/" if uri and side == "server" else "")
        self.goaway_sent[side] = True
        self.settle()

    @rule()
    def time_passes(self) -> None:
        self.p.now += 3.0
        for side in ("client", "server"):
            self.s(side).handle_timer(self.p.now)
        self.settle()

    # --- violations (one per run, after some legal traffic) -----------------------------------------
    @precondition(lambda self: self.open() and self.steps >= 4)
    @rule(receiver=SIDES, data=st.data(), kind=st.sampled_from(
        ["wrong_parity", "reused_request_id", "bad_request_stream", "bad_control_stream", "bad_data",
         "duplicate_track_alias"]))
    def inject_violation(self, receiver: str, data, kind: str) -> None:
        getattr(self, kind)(receiver, data)

    def wrong_parity(self, receiver: str, data) -> None:
        sender = self.s(self.other(receiver))
        rid = 1001 if receiver == "server" else 1000  # the receiver's own parity
        self.violate(receiver, E.INVALID_REQUEST_ID, self.p.fresh_bidi(sender), c.Subscribe(rid, NS, b"x").encode())

    def reused_request_id(self, receiver: str, data) -> None:
        sender = self.other(receiver)
        if not self.used[sender]:
            return self.wrong_parity(receiver, data)
        rid = data.draw(st.sampled_from(sorted(self.used[sender])))
        msg = data.draw(st.sampled_from([c.Subscribe(rid, NS, b"again"), c.TrackStatus(rid, NS, b"t"),
                                         c.PublishNamespace(rid, (b"other",))]))
        self.violate(self.other(sender), E.INVALID_REQUEST_ID, self.p.fresh_bidi(self.s(sender)), msg.encode())

    def bad_request_stream(self, receiver: str, data) -> None:
        case = data.draw(st.sampled_from(["unknown_type", "not_a_request", "length_too_long", "truncated_fin",
                                          "oversized_length_fin", "bad_param_delta", "truncated_kvp",
                                          "varint_cut_by_length"]))
        sender = self.s(self.other(receiver))
        rid = 2000 + (0 if receiver == "server" else 1)
        sub = c.Subscribe(rid, NS, b"x").encode()[3:]
        code, fin = E.PROTOCOL_VIOLATION, False
        payload = {
            "unknown_type": frame(0x3F3F, b"ab"),
            "not_a_request": c.SubscribeOk(7).encode(),
            "length_too_long": frame(c.Subscribe.TYPE, sub + b"\x00\x00"),
            "truncated_fin": frame(c.Subscribe.TYPE, sub)[:-2],
            "oversized_length_fin": frame(c.Subscribe.TYPE, sub, length=0xFFFF),
            # Number of Parameters 2; the second Type Delta takes the type past 2^64-1
            "bad_param_delta": frame(c.Subscribe.TYPE, sub[:-1] + b"\x02\x20\x01" + b"\xff" + b"\xff" * 8 + b"\x00"),
            # Track Properties of a PUBLISH: a pair whose value length runs past the message
            "truncated_kvp": frame(c.Publish.TYPE, c.Publish(rid, NS, b"x", 99).encode()[3:] + b"\x01\x05ab"),
            # a two-byte varint (the track name length) whose second byte is cut off by Length
            "varint_cut_by_length": frame(c.Subscribe.TYPE, encode_varint(rid) + b"\x01\x04live\x80"),
        }[case]
        if case in ("truncated_fin", "oversized_length_fin"):
            fin = True
        if case == "truncated_kvp":
            code = E.KEY_VALUE_FORMATTING_ERROR
        self.violate(receiver, code, self.p.fresh_bidi(sender), payload, fin)

    def bad_control_stream(self, receiver: str, data) -> None:
        case = data.draw(st.sampled_from(["request_on_control", "second_setup", "fin", "reset", "goaway_wrong_parity",
                                          "unknown_message"]))
        me = self.s(receiver)
        sid = CLIENT_CONTROL if receiver == "server" else SERVER_CONTROL
        code = E.PROTOCOL_VIOLATION
        if case == "reset":
            self.violation = (receiver, int(code))
            me.receive_stream_reset(sid, 0, self.p.now)
            self.settle()
            return
        if case == "goaway_wrong_parity":
            # its Request ID names one of the receiver's requests: the sender's parity is wrong
            data = c.GoAway(b"", 0, 0 if receiver == "server" else 1).encode()
            code = E.PROTOCOL_VIOLATION if me.goaway_received is not None else E.INVALID_REQUEST_ID
        else:
            data = {"request_on_control": c.Subscribe(3000, NS, b"x").encode(), "second_setup": setup_bytes(),
                    "fin": b"", "unknown_message": frame(0x3F00, b"")}[case]
        self.violate(receiver, code, sid, data, fin=case == "fin")

    def bad_data(self, receiver: str, data) -> None:
        case = data.draw(st.sampled_from(["own_uni_stream", "unknown_stream_type", "second_control_stream",
                                          "bad_object_status", "bad_datagram"]))
        me, sender = self.s(receiver), self.s(self.other(receiver))
        if case == "bad_datagram":
            self.violation = (receiver, int(E.PROTOCOL_VIOLATION))
            me.receive_datagram(b"\x30\x00\x00", self.p.now)  # type 0x30 is no datagram type
            self.settle()
            return
        if case == "own_uni_stream":  # a stream id only the receiver may open
            sid, data = self.p.fresh_uni(me), SubgroupHeader(0, 0).encode()
        else:
            sid = self.p.fresh_uni(sender)
            data = {"unknown_stream_type": b"\x04\x00",
                    "second_control_stream": setup_bytes(),
                    "bad_object_status": SubgroupHeader(0, 0).encode() + b"\x00\x00\x01"}[case]
        self.violate(receiver, E.PROTOCOL_VIOLATION, sid, data)

    def duplicate_track_alias(self, receiver: str, data) -> None:
        """A PUBLISH reusing the alias of another track the receiver is subscribed to."""
        publisher = self.other(receiver)
        if not self.publishing[publisher]:
            return self.wrong_parity(receiver, data)
        rid = data.draw(st.sampled_from(sorted(self.publishing[publisher])))
        alias = self.s(publisher).request(rid).track_alias
        new_id = 4000 + (0 if publisher == "client" else 1)
        msg = c.Publish(new_id, NS, b"hijack", alias)
        self.violate(self.other(publisher), E.DUPLICATE_TRACK_ALIAS, self.p.fresh_bidi(self.s(publisher)),
                     msg.encode())

    # --- invariants ----------------------------------------------------------------------------
    @invariant()
    def closes_carry_the_violations_code(self) -> None:
        if not hasattr(self, "p"):
            return
        client, server = self.p.client, self.p.server
        if self.violation is None:
            assert client.closed is None and server.closed is None, (client.closed, server.closed)
            return
        receiver, code = self.violation
        me, peer = self.s(receiver), self.s(self.other(receiver))
        assert me.closed is not None and not me.closed.by_peer and me.closed.error_code == code, (me.closed, code)
        assert [a.error_code for a in self.p.sent(me, ev.CloseSession)] == [code]
        assert peer.closed is not None and peer.closed.by_peer and peer.closed.error_code == code, peer.closed
        assert self.p.sent(peer, ev.CloseSession) == []

    @invariant()
    def both_sides_agree_on_open_requests(self) -> None:
        """While the pair is open and quiet, every request one side has open as requester is
        open at the responder too, or was answered (and so forgotten) there."""
        if not hasattr(self, "p") or not self.open():
            return
        for side in ("client", "server"):
            peer = self.s(self.other(side))
            for r in self.s(side).requests():
                if r.outgoing and r.state.value != "done" and not r.responded:
                    assert peer.has_request(r.request_id), (side, r.request_id, r.kind)


SessionPair.TestCase.settings = settings(
    max_examples=int(os.environ.get("MOQ_STATEFUL_EXAMPLES", "100")), stateful_step_count=40, deadline=None,
    derandomize="MOQ_STATEFUL_EXAMPLES" not in os.environ, suppress_health_check=[HealthCheck.too_slow])
test_session_pair_state_machine = SessionPair.TestCase



# --- what the machine found, pinned ------------------------------------------------------------


def test_request_update_crossing_publish_done_is_not_passed_on() -> None:
    """The subscriber's REQUEST_UPDATE crosses the publisher's PUBLISH_DONE: the publisher has
    closed its side of the stream and could not answer, so it must not be asked to."""
    p = Pair()
    rid = p.client.subscribe(NS, b"a")
    p.pump()
    p.server.accept_subscribe(rid)
    p.pump()
    p.events(p.server)
    uid = p.client.request_update(rid, Parameters(forward=0))  # in flight ...
    updates = p.take(p.client)
    p.server.publish_done(rid, PublishDoneCode.TRACK_ENDED)  # ... while the publisher ends the track
    p.deliver(updates, p.server)
    p.pump()
    assert not [e for e in p.events(p.server) if isinstance(e, ev.RequestUpdateReceived)], uid
    assert p.client.closed is None and p.server.closed is None


def test_fetch_stream_with_an_object_over_max_object_size_ends_the_fetch() -> None:
    """Fetch streams had no object size limit (fuzz/: fetch_stream); now the stream is stopped
    with EXCESSIVE_LOAD, and the FETCH hears of it as of a reset instead of waiting forever."""
    from moq.errors import StreamResetCode
    from moq.wire.data import FetchHeader, FetchObjectCodec

    p = Pair(client_config=SessionConfig(path="/moq", max_object_size=1000))
    rid = p.client.fetch(c.Fetch(standalone=c.StandaloneFetch(NS, b"a", Location(0, 0), Location(1, 0))))
    p.pump()
    p.server.accept_fetch(rid, Location(1, 0))
    p.pump()
    p.events(p.client)
    sid = p.fresh_uni(p.server)
    head = FetchObjectCodec().encode(FetchObject(0, 0, 0, 128, bytes(5000)))
    p.client.receive_stream_data(sid, FetchHeader(rid).encode() + head + bytes(100))
    ended = [e for e in p.events(p.client) if isinstance(e, ev.DataStreamEnded)]
    assert [(e.request_id, e.fetch, e.reset_code, e.abandoned) for e in ended] == [
        (rid, True, StreamResetCode.EXCESSIVE_LOAD, True)]
    assert any(isinstance(a, ev.StopSending) and a.stream_id == sid and a.error_code == StreamResetCode.EXCESSIVE_LOAD
               for a in p.take(p.client))
    assert p.client.closed is None


def test_empty_objects_held_for_an_unknown_alias_count_against_the_bound() -> None:
    """Objects of a stream whose Track Alias is not known yet are held, up to
    max_alias_wait_bytes; only payload bytes counted, so a stream of empty objects (3 bytes
    each) was held without limit: 900 kB became 31 MB of Python objects, never refused."""
    from moq.errors import StreamResetCode
    from moq.wire.data import SubgroupHeader

    p = Pair(client_config=SessionConfig(path="/moq", max_alias_wait_bytes=1 << 20))
    sid = p.fresh_uni(p.server)
    p.client.receive_stream_data(sid, SubgroupHeader(99, 0).encode())
    for _ in range(30):
        p.client.receive_stream_data(sid, b"\x00\x00\x00" * 10_000)  # Normal, no payload
    assert [a.error_code for a in p.take(p.client) if isinstance(a, ev.StopSending) and a.stream_id == sid] == [
        StreamResetCode.EXCESSIVE_LOAD]
    assert p.client.closed is None


def test_tiny_chunks_before_setup_count_against_the_bound() -> None:
    """Data that arrives before the peer's SETUP is held up to max_alias_wait_bytes; only its
    bytes counted, so 1-byte STREAM frames were held 80x over (200 kB -> 16 MB), unrefused."""
    p = Pair(start=False, server_config=SessionConfig(max_alias_wait_bytes=1 << 20))
    p.server.start()
    for _ in range(20_000):
        p.server.receive_stream_data(0, b"\x03")
        if p.server.closed is not None:
            break
    assert p.server.closed is not None and p.server.closed.error_code == 0x3, p.server.closed
