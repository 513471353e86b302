"""Forwarding a track's objects to one downstream subscription (§ Relays, § Priorities).

The relay's hot path.  Per object and subscriber: one dict lookup for the subgroup
stream, the object's fields encoded once for all subscribers in step (memoized on the
object), the payload passed by reference, no flush (the connection flushes once per
loop turn).  When the subscriber's connection falls
behind (its unsent backlog exceeds its limit), whole late groups are dropped for
it: their streams are reset (so the receiver knows objects are missing, never a
silently truncated object) and the rest of those groups is skipped, which keeps its
latency and the relay's memory bounded without touching other subscribers.

The limit is `backlog_seconds` of what the connection carries (the bitrates of the
tracks it receives, as the backlog probe is per connection), at least `max_backlog`:
at 27 Mbit/s one key frame alone is more than a fixed 2 MiB, and a fast subscriber
must not lose the group it opens (nor the audio group that opens behind it).  Each
track's bitrate is a running estimate from its byte counter, sampled when a sink
opens a group: no per-object work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from weakref import WeakKeyDictionary, WeakSet

from .connection import Connection
from .errors import PublishDoneCode, StreamResetCode
from .model.track import CachedObject, Track
from .wire.types import FilterType, Location, Parameters

DEFAULT_MAX_BACKLOG = 2 << 20
DEFAULT_BACKLOG_SECONDS = 2.0
RATE_WINDOW = 1.0  # seconds between bitrate samples of a track


class TrackRate:
    """A track's bitrate (bytes/s), O(1): its byte counter sampled at most once per window
    (when a sink opens a group).  It rises at once with a burst (a key frame counts from the
    first sample on) and halves per window when the track slows down."""

    __slots__ = ("t0", "b0", "rate")

    def __init__(self, now: float, bytes_in: int) -> None:
        self.t0, self.b0, self.rate = now, bytes_in, 0.0

    def estimate(self, now: float, bytes_in: int) -> float:
        dt = now - self.t0
        current = (bytes_in - self.b0) / max(dt, RATE_WINDOW)
        if dt >= RATE_WINDOW:
            self.rate = max(current, self.rate / 2)
            self.t0, self.b0 = now, bytes_in
        return max(self.rate, current)


class _ConnLoad:
    """The tracks one connection receives and their summed bitrate, recomputed at most once
    per window (a relay link may carry thousands of tracks)."""

    __slots__ = ("tracks", "at", "rate")

    def __init__(self) -> None:
        self.tracks: WeakSet[Track] = WeakSet()
        self.at: float | None = None
        self.rate = 0.0


_rates: WeakKeyDictionary[Track, TrackRate] = WeakKeyDictionary()
_loads: WeakKeyDictionary[Connection, _ConnLoad] = WeakKeyDictionary()


def track_rate(track: Track, now: float, just_written: int = 0) -> float:
    """The running bitrate estimate of `track`, bytes/s (`just_written`: the bytes of the
    object being forwarded, counted in the first window)."""
    r = _rates.get(track)
    if r is None:
        r = _rates[track] = TrackRate(now, track.bytes_in - just_written)
    return r.estimate(now, track.bytes_in)


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


def sink_state(params: Parameters) -> dict:
    """A SUBSCRIBE's forward state and subscriber priority, as SubscriberSink arguments."""
    prio = params.subscriber_priority
    return {"forward": params.forward != 0, "subscriber_priority": 128 if prio is None else prio}


@dataclass(eq=False)
class SubscriberSink:
    """One downstream subscription of a track on one connection.

    Its forward state and subscriber priority live here (from the SUBSCRIBE or PUBLISH_OK
    and later REQUEST_UPDATEs), so the per-object path reads no session tables."""

    conn: Connection
    request_id: int
    start: Location
    end_group: int | None = None
    joining: Location | None = None  # Largest Location in SUBSCRIBE_OK (§ Joining Fetches)
    max_backlog: int = DEFAULT_MAX_BACKLOG  # the floor of the backlog limit; <= 0: no limit
    backlog_seconds: float = DEFAULT_BACKLOG_SECONDS
    on_drop: Callable[[int], None] | None = None  # count of groups dropped, for metrics
    forward: bool = True
    subscriber_priority: int = 128
    streams: dict[tuple[int, int], int] = field(default_factory=dict)
    dropped: set[int] = field(default_factory=set)
    dropped_groups: int = 0
    sent_objects: int = 0
    ended: bool = False  # PUBLISH_DONE sent: nothing more goes out
    limit: int = field(init=False)  # the backlog limit now (bytes), updated when a group opens
    _backlog: Callable[[], int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.data = self.conn.data
        probe = getattr(self.conn.transport, "send_backlog", None)
        self._backlog = probe if probe is not None else _no_backlog
        self.limit = self.max_backlog
        load = _loads.get(self.conn)
        if load is None:
            load = _loads[self.conn] = _ConnLoad()
        self._load = load

    def update(self, params: Parameters) -> None:
        """The subscriber's new parameters (SUBSCRIBE, PUBLISH_OK or REQUEST_UPDATE):
        forward state, subscriber priority, subscription filter."""
        if params.forward is not None:
            self.forward = params.forward == 1
        if params.subscriber_priority is not None:
            self.subscriber_priority = params.subscriber_priority
        flt = params.subscription_filter
        if flt is not None and flt.start is not None:
            self.start, self.end_group = flt.start, flt.end_group

    @property
    def forwarding(self) -> bool:
        return self.forward and not self.ended

    def on_object(self, track: Track, obj: CachedObject) -> bool:
        """Forward one object; False when this subscription does not get it."""
        g = obj.group_id
        start = self.start
        if (not self.forward or self.ended or g < start.group or (g == start.group and obj.object_id < start.object)
                or g in self.dropped or (self.end_group is not None and g > self.end_group)):
            return False
        if obj.subgroup_id is None:  # datagram preference: best effort, no backlog to manage
            if not self.conn.is_live(self.request_id):
                return False
            self.data.send_datagram(self.request_id, obj.datagram(), wire=obj.wire)
            self.sent_objects += 1
            return True
        key = (g, obj.subgroup_id)
        sid = self.streams.get(key)
        if sid is not None:
            if self.max_backlog > 0 and self._backlog() > 4 * self.limit:  # one huge late group: give it up
                self._drop_group(g)
                return False
            if self.data.send_object(sid, obj.object_id, obj.payload, status=obj.status, properties=obj.properties,
                                     wire=obj.wire):
                self.sent_objects += 1
                return True
        # a new subgroup stream (or the old one was stopped by the subscriber)
        if not self.conn.is_live(self.request_id) or not self._admit_group(track, obj):
            return False
        sid = self.data.open_subgroup(self.request_id, g, obj.subgroup_id, has_properties=True,
                                      publisher_priority=obj.priority, first_object=obj.object_id == 0)
        self.streams[key] = sid
        self.data.send_object(sid, obj.object_id, obj.payload, status=obj.status, properties=obj.properties,
                              wire=obj.wire)
        self.sent_objects += 1
        return True

    def _update_limit(self, track: Track, obj: CachedObject) -> None:
        """`backlog_seconds` of every track this connection receives, at least `max_backlog`."""
        now = self.conn.loop.time()
        load = self._load
        own = track_rate(track, now, len(obj.payload))
        if track not in load.tracks or load.at is None or now - load.at >= RATE_WINDOW:
            load.tracks.add(track)
            load.rate = sum(track_rate(t, now) for t in load.tracks)
            load.at = now
        self.limit = max(self.max_backlog, int(max(load.rate, own) * self.backlog_seconds))

    def _admit_group(self, track: Track, obj: CachedObject) -> bool:
        """Before opening a stream: if the subscriber is behind, drop its older groups and
        start this one; with no older group left to drop, drop this one too.  (The resets
        reach the transport at the end of this loop turn, so the backlog probe cannot see
        their effect yet: one probe per stream opened.)"""
        if self.max_backlog <= 0:
            return True
        self._update_limit(track, obj)
        if self._backlog() <= self.limit:
            return True
        group_id = obj.group_id
        older = sorted({g for g, _ in self.streams if g < group_id})
        for old in older:
            self._drop_group(old)
        if older:
            return True
        self._drop_group(group_id)
        return False

    def _drop_group(self, group_id: int) -> None:
        if group_id in self.dropped:
            return
        self.dropped.add(group_id)
        if len(self.dropped) > 64:
            self.dropped.discard(min(self.dropped))
        for key in [k for k in self.streams if k[0] == group_id]:
            self.data.reset_subgroup(self.streams.pop(key), StreamResetCode.TOO_FAR_BEHIND)
        self.dropped_groups += 1
        if self.on_drop is not None:
            self.on_drop(1)

    def on_subgroup_end(self, track: Track, group_id: int, subgroup_id: int) -> None:
        sid = self.streams.pop((group_id, subgroup_id), None)
        if sid is not None:
            self.data.end_subgroup(sid)
        if self.end_group is not None and group_id >= self.end_group and not self.streams:
            self.on_track_end(track, PublishDoneCode.SUBSCRIPTION_ENDED, "end of subscription range")
            track.remove_sink(self)

    def on_subgroup_reset(self, track: Track, group_id: int, subgroup_id: int, error_code: int) -> None:
        sid = self.streams.pop((group_id, subgroup_id), None)
        if sid is not None:
            self.data.reset_subgroup(sid, error_code)

    def on_track_end(self, track: Track, status_code: int, reason: str) -> None:
        if self.ended or not self.conn.is_live(self.request_id):
            return
        self.ended = True
        self.streams.clear()
        self.conn.publish_done(self.request_id, status_code, reason)


def _no_backlog() -> int:
    return 0


def accept_update(conn: Connection, event, sink: SubscriberSink | None) -> None:
    """Accept a peer's REQUEST_UPDATE: answer it, record it in the session (stream
    priorities) and in the sink (forward state, priority, filter)."""
    conn.accept_update(event)
    if sink is not None:
        sink.update(event.parameters)
