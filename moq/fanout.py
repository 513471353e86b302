"""Forwarding a track's objects to one downstream subscription (§ Relays, § Priorities).

The relay's hot path.  Per object: one dict lookup for the subgroup stream, a few
varints, the payload passed by reference.  When the subscriber's connection falls
behind (its unsent backlog exceeds `max_backlog`), whole late groups are dropped for
it: their streams are reset (so the receiver knows objects are missing, never a
silently truncated object) and the rest of those groups is skipped, which keeps its
latency and the relay's memory bounded without touching other subscribers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .connection import Connection
from .errors import PublishDoneCode, StreamResetCode
from .model.track import CachedObject, Track
from .wire.data import ObjectDatagram, ObjectStatus
from .wire.types import FilterType, Location, Parameters

DEFAULT_MAX_BACKLOG = 2 << 20


def subscription_start(track: Track, params: Parameters) -> tuple[Location, int | None] | str:
    """(start, end_group) for a SUBSCRIBE's filter against the track's Largest Object
    (§ Subscription Filters), or an error reason for INVALID_RANGE."""
    largest = track.largest
    nxt = Location(largest.group, largest.object + 1) if largest else Location(0, 0)
    flt = params.subscription_filter
    if flt is None or flt.filter_type == FilterType.LARGEST_OBJECT:
        return nxt, None
    if flt.filter_type == FilterType.NEXT_GROUP_START:
        return (Location(largest.group + 1, 0) if largest else Location(0, 0)), None
    start = flt.start or Location(0, 0)
    end_group = flt.end_group
    if end_group is not None and largest is not None and end_group < largest.group:
        return "the end group was already published"
    return max(start, nxt), end_group


@dataclass(eq=False)
class SubscriberSink:
    """One downstream subscription of a track on one connection."""

    conn: Connection
    request_id: int
    start: Location
    end_group: int | None = None
    joining: Location | None = None  # Largest Location in SUBSCRIBE_OK (§ Joining Fetches)
    max_backlog: int = DEFAULT_MAX_BACKLOG
    on_drop: Callable[[int], None] | None = None  # count of groups dropped, for metrics
    streams: dict[tuple[int, int], int] = field(default_factory=dict)
    dropped: set[int] = field(default_factory=set)
    dropped_groups: int = 0
    sent_objects: int = 0

    def update(self, params: Parameters) -> None:
        """A REQUEST_UPDATE's new Subscription Filter (forward state lives in the session)."""
        flt = params.subscription_filter
        if flt is not None and flt.start is not None:
            self.start, self.end_group = flt.start, flt.end_group

    @property
    def forwarding(self) -> bool:
        req = self.conn.session._requests.get(self.request_id)
        return req is not None and req.forward == 1

    def _backlog(self) -> int:
        probe = getattr(self.conn.transport, "send_backlog", None)
        return probe() if probe is not None else 0

    def on_object(self, track: Track, obj: CachedObject) -> bool:
        """Forward one object; False when this subscription does not get it."""
        g = obj.group_id
        if g in self.dropped or obj.location < self.start or (self.end_group is not None and g > self.end_group):
            return False
        if not self.forwarding:
            return False
        data = self.conn.session.data
        if obj.subgroup_id is None:  # datagram preference: best effort, no backlog to manage
            prio = obj.priority if obj.priority is not None else None
            data.send_datagram(self.request_id, ObjectDatagram(
                0, g, obj.object_id, prio, obj.properties or None,
                None if obj.status == ObjectStatus.NORMAL else obj.status, obj.payload))
            self.sent_objects += 1
            self.conn.flush()
            return True
        key = (g, obj.subgroup_id)
        sid = self.streams.get(key)
        if sid is None or not data.is_open(sid):
            if not self._admit_group(g):
                return False
            sid = data.open_subgroup(self.request_id, g, obj.subgroup_id, has_properties=True,
                                     publisher_priority=obj.priority, first_object=obj.object_id == 0)
            self.streams[key] = sid
        elif self._backlog() > 4 * self.max_backlog:  # one huge late group: give it up too
            self._drop_group(g)
            return False
        data.send_object(sid, obj.object_id, obj.payload, status=obj.status, properties=obj.properties)
        self.sent_objects += 1
        self.conn.flush()
        return True

    def _admit_group(self, group_id: int) -> bool:
        """Before opening a stream: if the subscriber is behind, drop its older groups,
        then this one too if that was not enough."""
        if self.max_backlog <= 0 or self._backlog() <= self.max_backlog:
            return True
        for old in sorted({g for g, _ in self.streams if g < group_id}):
            self._drop_group(old)
        if self._backlog() <= self.max_backlog:
            return True
        self._drop_group(group_id)
        return False

    def _drop_group(self, group_id: int) -> None:
        if group_id in self.dropped:
            return
        self.dropped.add(group_id)
        if len(self.dropped) > 64:
            self.dropped.discard(min(self.dropped))
        data = self.conn.session.data
        for key in [k for k in self.streams if k[0] == group_id]:
            data.reset_subgroup(self.streams.pop(key), StreamResetCode.TOO_FAR_BEHIND)
        self.dropped_groups += 1
        if self.on_drop is not None:
            self.on_drop(1)
        self.conn.flush()

    def on_subgroup_end(self, track: Track, group_id: int, subgroup_id: int) -> None:
        sid = self.streams.pop((group_id, subgroup_id), None)
        if sid is not None:
            self.conn.session.data.end_subgroup(sid)
            self.conn.flush()
        if self.end_group is not None and group_id >= self.end_group and not self.streams:
            self.on_track_end(track, PublishDoneCode.SUBSCRIPTION_ENDED, "end of subscription range")
            track.remove_sink(self)

    def on_subgroup_reset(self, track: Track, group_id: int, subgroup_id: int, error_code: int) -> None:
        sid = self.streams.pop((group_id, subgroup_id), None)
        if sid is not None:
            self.conn.session.data.reset_subgroup(sid, error_code)
            self.conn.flush()

    def on_track_end(self, track: Track, status_code: int, reason: str) -> None:
        if self.conn.is_closed or self.request_id not in self.conn.session._requests:
            return
        self.conn.session.publish_done(self.request_id, status_code, reason)
        self.conn.flush()


def accept_update(conn: Connection, event, sink: SubscriberSink | None) -> None:
    """Accept a peer's REQUEST_UPDATE: answer it, record it in the session (forward state,
    priority) and narrow or widen the sink's filter."""
    conn.session.accept_update(event.update_id)
    conn.session.apply_update(event.request_id, event.parameters)
    if sink is not None:
        sink.update(event.parameters)
    conn.flush()
