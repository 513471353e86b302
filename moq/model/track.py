"""A track: its latest groups (bounded cache) and the subscriptions it feeds.

`Track` does not know where objects come from (a local encoder or an upstream relay
session) nor where they go: each downstream subscription is a `TrackSink`.  Payloads
are stored and forwarded as the same bytes objects, never copied per subscriber, and
each object's wire form is memoized on it (`CachedObject.wire`) so that every
subscriber in the same position on its stream shares one encoding.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from ..wire.data import ObjectDatagram, ObjectStatus
from ..wire.types import KeyValuePairs, Location, TrackNamespace


@dataclass(frozen=True, slots=True)
class CachedObject:
    group_id: int
    subgroup_id: int | None  # None: Datagram forwarding preference
    object_id: int
    payload: bytes | memoryview
    properties: bytes = b""
    status: int = ObjectStatus.NORMAL
    priority: int | None = None
    #: encodings shared by all subscribers, filled by the data plane on first use: per-object
    #: subgroup fields keyed by (previous object ID on the stream, has properties), whole
    #: datagrams keyed by track alias, and "dg" -> the ObjectDatagram itself
    wire: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def location(self) -> Location:
        return Location(self.group_id, self.object_id)

    def datagram(self) -> ObjectDatagram:
        """This object as a datagram (track alias 0: the data plane sets each subscriber's)."""
        dg = self.wire.get("dg")
        if dg is None:
            dg = self.wire["dg"] = ObjectDatagram(
                0, self.group_id, self.object_id, self.priority, self.properties or None,
                None if self.status == ObjectStatus.NORMAL else self.status, self.payload)
        return dg


@dataclass(slots=True)
class Group:
    group_id: int
    objects: list[CachedObject] = field(default_factory=list)
    open_subgroups: set[int] = field(default_factory=set)
    size: int = 0

    @property
    def complete(self) -> bool:
        return not self.open_subgroups


class TrackSink(Protocol):
    """A downstream consumer of a track (one subscription on one session)."""

    def on_object(self, track: Track, obj: CachedObject) -> bool: ...
    def on_subgroup_end(self, track: Track, group_id: int, subgroup_id: int) -> None: ...
    def on_subgroup_reset(self, track: Track, group_id: int, subgroup_id: int, error_code: int) -> None: ...
    def on_track_end(self, track: Track, status_code: int, reason: str) -> None: ...


class Track:
    def __init__(self, namespace: TrackNamespace, name: bytes, *, properties: KeyValuePairs = (),
                 max_groups: int = 8, max_bytes: int = 64 << 20, priority: int = 128) -> None:
        self.namespace = namespace
        self.name = name
        self.properties = properties
        self.priority = priority
        self.max_groups = max_groups
        self.max_bytes = max_bytes
        self.groups: OrderedDict[int, Group] = OrderedDict()
        self.cache_bytes = 0
        self.largest: Location | None = None
        self.sinks: list[TrackSink] = []
        self.ended: tuple[int, str] | None = None
        self.objects_in = 0
        self.bytes_in = 0

    def __repr__(self) -> str:
        return f"Track({'/'.join(p.decode(errors='replace') for p in self.namespace)}:{self.name.decode(errors='replace')})"

    # --- producing ------------------------------------------------------------------
    def write(self, group_id: int, object_id: int, payload: bytes | memoryview, *, subgroup_id: int | None = 0,
              properties: bytes = b"", status: int = ObjectStatus.NORMAL, priority: int | None = None) -> int:
        """Store an object and forward it to every sink; returns how many sinks took it."""
        obj = CachedObject(group_id, subgroup_id, object_id, payload, properties, status, priority)
        group = self.groups.get(group_id)
        if group is None:
            group = self.groups[group_id] = Group(group_id)
            self._evict()
        group.objects.append(obj)
        if subgroup_id is not None:
            group.open_subgroups.add(subgroup_id)
        group.size += len(payload)
        self.cache_bytes += len(payload)
        self.objects_in += 1
        self.bytes_in += len(payload)
        loc = Location(group_id, object_id)
        if self.largest is None or loc > self.largest:
            self.largest = loc
        sent = 0
        for sink in list(self.sinks):
            if sink.on_object(self, obj):
                sent += 1
        if self.cache_bytes > self.max_bytes:
            self._evict()
        return sent

    def end_subgroup(self, group_id: int, subgroup_id: int = 0) -> None:
        group = self.groups.get(group_id)
        if group is not None:
            group.open_subgroups.discard(subgroup_id)
        for sink in list(self.sinks):
            sink.on_subgroup_end(self, group_id, subgroup_id)

    def reset_subgroup(self, group_id: int, subgroup_id: int, error_code: int) -> None:
        """The source lost the rest of a subgroup (its stream was reset upstream)."""
        group = self.groups.get(group_id)
        if group is not None:
            group.open_subgroups.discard(subgroup_id)
        for sink in list(self.sinks):
            sink.on_subgroup_reset(self, group_id, subgroup_id, error_code)

    def end_group(self, group_id: int) -> None:
        group = self.groups.get(group_id)
        for sg in sorted(group.open_subgroups) if group else ():
            self.end_subgroup(group_id, sg)

    def finish(self, status_code: int = 0x2, reason: str = "track ended") -> None:
        """No more objects (PUBLISH_DONE TRACK_ENDED to subscribers)."""
        for gid, group in self.groups.items():
            for sg in sorted(group.open_subgroups):
                self.end_subgroup(gid, sg)
        self.ended = (status_code, reason)
        for sink in list(self.sinks):
            sink.on_track_end(self, status_code, reason)

    def _evict(self) -> None:
        while len(self.groups) > self.max_groups or (self.cache_bytes > self.max_bytes and len(self.groups) > 1):
            self.evict_oldest()

    def evict_oldest(self) -> None:
        if self.groups:
            _, old = self.groups.popitem(last=False)
            self.cache_bytes -= old.size

    # --- consuming ------------------------------------------------------------------
    def add_sink(self, sink: TrackSink) -> None:
        self.sinks.append(sink)

    def remove_sink(self, sink: TrackSink) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)

    def oldest_cached(self) -> Location | None:
        for group in self.groups.values():
            if group.objects:
                return group.objects[0].location
        return None

    def range(self, start: Location, end: Location, descending: bool = False) -> Iterator[CachedObject]:
        """Cached objects with start <= location < end (end.object 0 = all of end.group),
        groups in the requested order, objects ascending within a group."""
        end_excl = Location(end.group + 1, 0) if end.object == 0 else end
        groups = [g for g in self.groups.values() if start.group <= g.group_id <= end_excl.group]
        groups.sort(key=lambda g: g.group_id, reverse=descending)
        for group in groups:
            for obj in sorted(group.objects, key=lambda o: o.object_id):
                if start <= obj.location < end_excl:
                    yield obj
