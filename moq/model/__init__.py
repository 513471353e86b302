"""Object model without I/O: tracks with their cached groups, and fan-out to subscriptions."""

from .track import CachedObject, Group, Track, TrackSink

__all__ = ["CachedObject", "Group", "Track", "TrackSink"]
