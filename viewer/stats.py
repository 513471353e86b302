"""What moq-view measures, per track: objects, groups, bytes, bitrate, frame rate, latency
(now − LOC capture timestamp) and gaps.  Recording an object is a few dict/list operations;
percentiles are computed once, at the end.

A gap is lost media, whatever lost it: a subgroup stream that was reset (the relay gave up a
late group for us, TOO_FAR_BEHIND, or the publisher's upstream stream broke: what followed
the last object received is gone), a group id missing between received groups (dropped
before any of it was sent), or object ids missing inside a group."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from moq.errors import StreamResetCode

MAX_GAP_ROWS = 1000  # --json gap rows per track at the end of the run
# a jump of more group ids than this is a new numbering, not loss: moq-publish numbers groups
# from the wall clock in ms (MSF), so a restarted publisher continues far ahead
MAX_MISSING_RUN = 1000


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of unsorted `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(slots=True)
class TrackStats:
    name: str
    kind: str = "data"  # video, audio, catalog or data
    objects: int = 0
    bytes: int = 0
    groups: dict[int, set[int]] = field(default_factory=dict)  # group id -> object ids received
    latencies: list[float] = field(default_factory=list)
    first_arrival: float | None = None  # monotonic seconds
    last_arrival: float | None = None
    first_ts: int | None = None  # capture timestamps (µs), lowest and highest seen
    last_ts: int | None = None
    timestamped: int = 0
    resets: dict[tuple[int, int | None], int] = field(default_factory=dict)  # (group, subgroup) -> reset code

    def reset(self, group: int, subgroup: int | None, code: int) -> bool:
        """A subgroup stream of this track was reset; False if already known."""
        key = (group, subgroup)
        if key in self.resets:
            return False
        self.resets[key] = code
        return True

    def record(self, group: int, obj: int, nbytes: int, latency_ms: float | None, ts_us: int | None,
               now: float) -> bool:
        """Count one object; False (and nothing counted) for a duplicate."""
        ids = self.groups.get(group)
        if ids is None:
            ids = self.groups[group] = set()
        elif obj in ids:
            return False
        ids.add(obj)
        self.objects += 1
        self.bytes += nbytes
        if self.first_arrival is None:
            self.first_arrival = now
        self.last_arrival = now
        if latency_ms is not None:
            self.latencies.append(latency_ms)
        if ts_us is not None:
            self.timestamped += 1
            if self.first_ts is None or ts_us < self.first_ts:
                self.first_ts = ts_us
            if self.last_ts is None or ts_us > self.last_ts:
                self.last_ts = ts_us
        return True

    def missing_groups(self) -> list[int]:
        """Group ids between the first and last received group that never arrived and whose
        stream was not reported reset (those count as resets)."""
        if not self.groups:
            return []
        reset = {g for g, _ in self.resets}
        order = sorted(self.groups)
        return [g for a, b in zip(order, order[1:]) if b - a - 1 <= MAX_MISSING_RUN
                for g in range(a + 1, b) if g not in reset]

    def missing_objects(self) -> dict[int, int]:
        """Object ids missing inside each received group (from 0, except in the first group,
        which may have been joined part-way): group -> count."""
        out = {}
        for i, g in enumerate(sorted(self.groups)):
            ids = self.groups[g]
            low = min(ids) if i == 0 else 0
            n = max(ids) - low + 1 - len(ids)
            if n:
                out[g] = n
        return out

    def gaps(self) -> int:
        """Reset subgroup streams + missing groups + missing objects inside groups."""
        return len(self.resets) + len(self.missing_groups()) + sum(self.missing_objects().values())

    def gap_rows(self) -> list[dict]:
        """The --json rows for the gaps found only at the end (missing groups and objects;
        resets are reported as they happen)."""
        rows = [{"track": self.name, "group": g, "gap": "missing"} for g in self.missing_groups()]
        rows += [{"track": self.name, "group": g, "gap": "objects", "missing": n}
                 for g, n in self.missing_objects().items()]
        return rows[:MAX_GAP_ROWS]

    def describe_gaps(self) -> str | None:
        """One line for stderr, or None without gaps."""
        parts = []
        if self.resets:
            codes = sorted({reset_name(c) for c in self.resets.values()})
            groups = sorted({g for g, _ in self.resets})
            parts.append(f"{len(self.resets)} reset (group{'s' if len(groups) > 1 else ''} {_ids(groups)}: "
                         f"{', '.join(codes)})")
        missing = self.missing_groups()
        if missing:
            parts.append(f"{len(missing)} missing group{'s' if len(missing) > 1 else ''} ({_ids(missing)})")
        objects = self.missing_objects()
        if objects:
            parts.append(f"{sum(objects.values())} missing objects in group{'s' if len(objects) > 1 else ''} "
                         f"{_ids(sorted(objects))}")
        if not parts:
            return None
        return f"track {self.name}: {self.gaps()} gaps: " + "; ".join(parts)

    def _span_s(self, elapsed: float) -> float:
        """Seconds of media covered: the capture-time span stretched by one object interval
        when there are timestamps, else the viewing time."""
        if self.timestamped >= 2 and self.last_ts is not None and self.first_ts is not None \
                and self.last_ts > self.first_ts:
            return (self.last_ts - self.first_ts) / 1e6 * self.timestamped / (self.timestamped - 1)
        return elapsed

    def rate(self, elapsed: float) -> float | None:
        """Objects per second (frames per second for video)."""
        span = self._span_s(elapsed)
        return self.objects / span if span > 0 else None

    def bitrate(self, elapsed: float) -> float | None:
        span = self._span_s(elapsed)
        return self.bytes * 8 / span if span > 0 else None


class Stats:
    """All tracks of one run."""

    def __init__(self) -> None:
        self.tracks: dict[str, TrackStats] = {}

    def track(self, name: str, kind: str = "data") -> TrackStats:
        ts = self.tracks.get(name)
        if ts is None:
            ts = self.tracks[name] = TrackStats(name, kind)
        else:
            ts.kind = kind
        return ts

    @property
    def objects(self) -> int:
        return sum(t.objects for t in self.tracks.values())

    def latencies(self) -> list[float]:
        return [x for t in self.tracks.values() for x in t.latencies]

    def summary(self) -> dict:
        """The --json summary line."""
        lat = self.latencies()
        return {"summary": True, "objects": self.objects, "groups": sum(len(t.groups) for t in self.tracks.values()),
                "gaps": sum(t.gaps() for t in self.tracks.values()),
                "latency_ms_p50": _round(percentile(lat, 50)), "latency_ms_p99": _round(percentile(lat, 99))}

    def table(self, elapsed: float) -> list[str]:
        """The human summary: one row per track and a total."""
        head = f"{'track':<12} {'objects':>8} {'groups':>7} {'bytes':>11} {'bitrate':>12} {'fps':>7} " \
               f"{'latency p50/p99 ms':>20} {'gaps':>6}"
        rows = [head]
        for t in self.tracks.values():
            rate = t.rate(elapsed) if t.kind in ("video", "audio") else None
            rows.append(_row(t.name, t.objects, len(t.groups), t.bytes, t.bitrate(elapsed), rate, t.latencies, t.gaps()))
        if len(self.tracks) > 1:
            total_bytes = sum(t.bytes for t in self.tracks.values())
            rows.append(_row("total", self.objects, sum(len(t.groups) for t in self.tracks.values()), total_bytes,
                             total_bytes * 8 / elapsed if elapsed > 0 else None, None, self.latencies(),
                             sum(t.gaps() for t in self.tracks.values())))
        return rows


def reset_name(code: int) -> str:
    try:
        return f"{StreamResetCode(code).name} {code:#x}"
    except ValueError:
        return f"code {code:#x}"


def _ids(ids: list[int], limit: int = 5) -> str:
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _row(name: str, objects: int, groups: int, nbytes: int, bitrate: float | None, fps: float | None,
         latencies: list[float], gaps: int) -> str:
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    lat = "-" if p50 is None else f"{p50:.1f}/{p99:.1f}"
    return (f"{name:<12} {objects:>8} {groups:>7} {nbytes:>11} {format_bitrate(bitrate):>12} "
            f"{'-' if fps is None else f'{fps:.1f}':>7} {lat:>20} {gaps:>6}")


def format_bitrate(bps: float | None) -> str:
    if bps is None:
        return "-"
    for unit, scale in (("Mb/s", 1e6), ("kb/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.1f} {unit}"
    return f"{bps:.0f} b/s"
