"""DataStreamRefused: the session reports every data stream it stops reading for a limit, even
when the oversized object is the stream's first (the header and the object's length arrive in
one chunk, before the stream is attached to its request), so a relay can count and log it."""

from __future__ import annotations

from moq.errors import StreamResetCode
from moq.session import SessionConfig
from moq.session import events as ev
from moq.wire.data import SubgroupHeader, encode_subgroup_object

from .pair import Pair, close_code, of, subscribed

LIMIT = 1000


def oversized_first_object(alias: int) -> bytes:
    return SubgroupHeader(track_alias=alias, group_id=7, subgroup_id=0).encode() + \
        encode_subgroup_object(None, 0, 5 * LIMIT) + bytes(100)


def test_oversized_first_object_of_a_known_track_is_refused_and_ends_its_stream() -> None:
    p = Pair(client_config=SessionConfig(path="/moq", max_object_size=LIMIT))
    rid, alias = subscribed(p)
    sid = p.server_ids(True)
    p.client.receive_stream_data(sid, oversized_first_object(alias), False)
    events = p.events(p.client)
    (refused,) = of(events, ev.DataStreamRefused)
    assert (refused.stream_id, refused.request_id, refused.error_code, refused.limit) == \
        (sid, rid, StreamResetCode.EXCESSIVE_LOAD, "max_object_size")
    (ended,) = of(events, ev.DataStreamEnded)
    assert (ended.request_id, ended.group_id, ended.reset_code, ended.abandoned) == \
        (rid, 7, StreamResetCode.EXCESSIVE_LOAD, True)
    assert not of(events, ev.ObjectReceived)
    assert close_code(p.client) is None


def test_oversized_object_for_an_unknown_alias_is_still_reported() -> None:
    p = Pair(client_config=SessionConfig(path="/moq", max_object_size=LIMIT))
    sid = p.server_ids(True)
    p.client.receive_stream_data(sid, oversized_first_object(4242), False)
    (refused,) = of(p.events(p.client), ev.DataStreamRefused)
    assert (refused.request_id, refused.error_code) == (None, StreamResetCode.EXCESSIVE_LOAD)
    p.pump()
    assert ev.StopSending(sid, StreamResetCode.EXCESSIVE_LOAD) in p.sent(p.client, ev.StopSending)
    assert close_code(p.client) is None
