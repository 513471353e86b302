"""Send priorities the session gives its streams (§ Priorities, § Scheduling Algorithm)."""

from __future__ import annotations

from moq.session import events as ev
from moq.wire.types import GroupOrder, Parameters

from .pair import Pair


def keys(p: Pair, sender) -> dict[int, tuple]:
    out: dict[int, tuple] = {}
    for a in p.sent(sender, ev.SetStreamPriority):
        out[a.stream_id] = a.key
    return out


def subscribe(p: Pair, name: bytes, **params) -> int:
    rid = p.client.subscribe((b"live",), name, Parameters(**params))
    p.pump()
    p.server.accept_subscribe(rid)
    p.pump()
    return rid


def test_control_before_requests_before_objects():
    p = Pair()
    rid = subscribe(p, b"video")
    sid = p.server.data.open_subgroup(rid, 0, 0)
    p.pump()
    k = keys(p, p.server)
    control = next(key for s, key in k.items() if key == (0,))
    assert control < k[sid]
    request_key = keys(p, p.client)[p.client.request(rid).stream_id]
    assert control < request_key < k[sid]


def test_subscriber_priority_then_publisher_priority_then_group_order():
    p = Pair()
    urgent = subscribe(p, b"urgent", subscriber_priority=10)
    bulk = subscribe(p, b"bulk", subscriber_priority=200)
    d = p.server.data
    s_bulk = d.open_subgroup(bulk, 5, 0, publisher_priority=0)
    s_urgent = d.open_subgroup(urgent, 5, 0, publisher_priority=255)
    s_urgent_hi = d.open_subgroup(urgent, 5, 1, publisher_priority=1)
    s_urgent_next = d.open_subgroup(urgent, 6, 0, publisher_priority=1)
    s_urgent_sg2 = d.open_subgroup(urgent, 5, 2, publisher_priority=1)
    p.pump()
    k = keys(p, p.server)
    assert k[s_urgent] < k[s_bulk]  # subscriber priority wins over publisher priority
    assert k[s_urgent_hi] < k[s_urgent]  # then publisher priority
    assert k[s_urgent_hi] < k[s_urgent_sg2] < k[s_urgent_next]  # ascending: older group, then lower subgroup


def test_descending_group_order_sends_newer_groups_first():
    p = Pair()
    rid = subscribe(p, b"video", group_order=GroupOrder.DESCENDING)
    old = p.server.data.open_subgroup(rid, 3, 0)
    new = p.server.data.open_subgroup(rid, 4, 0)
    p.pump()
    k = keys(p, p.server)
    assert k[new] < k[old]


def test_subscriber_priority_update_rekeys_open_streams():
    p = Pair()
    a = subscribe(p, b"a", subscriber_priority=50)
    b = subscribe(p, b"b", subscriber_priority=100)
    sa = p.server.data.open_subgroup(a, 0, 0)
    sb = p.server.data.open_subgroup(b, 0, 0)
    p.pump()
    assert keys(p, p.server)[sa] < keys(p, p.server)[sb]
    uid = p.client.request_update(a, Parameters(subscriber_priority=250))
    p.pump()
    p.server.accept_update(uid)
    p.server.apply_update(a, Parameters(subscriber_priority=250))
    p.pump()
    assert keys(p, p.server)[sa] > keys(p, p.server)[sb]
