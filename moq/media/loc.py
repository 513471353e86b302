"""LOC (draft-ietf-moq-loc-04) object properties: the relay-visible metadata of a media
object.  The payload itself is the codec's "internal data" (a WebCodecs chunk) and is not
touched here.

Timestamps: without a Timescale property, TIMESTAMP is wall-clock microseconds since the
Unix epoch (§ Timestamp), which is what our publisher sends as the capture time, so a
viewer's latency is simply now − timestamp.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..errors import MoQError
from ..wire.types import KeyValuePairs, decode_kvp_block, encode_kvp_block

TIMESCALE = 0x08
VIDEO_FRAME_MARKING = 0x09
AUDIO_LEVEL = 0x0C
VIDEO_CONFIG = 0x0D
AUDIO_CONFIG = 0x0F
TIMESTAMP = 0x10

_KNOWN = {TIMESCALE, VIDEO_FRAME_MARKING, AUDIO_LEVEL, VIDEO_CONFIG, AUDIO_CONFIG, TIMESTAMP}


@dataclass(frozen=True, slots=True)
class LocProperties:
    timestamp: int | None = None  # units of `timescale`, or wall-clock µs since the epoch when None
    timescale: int | None = None
    video_config: bytes | None = None  # codec "extradata" (avcC for H.264), on key frames
    audio_config: bytes | None = None  # e.g. AudioSpecificConfig for AAC
    frame_marking: bytes | None = None
    audio_level: int | None = None
    other: KeyValuePairs = ()  # properties LOC does not define, kept verbatim

    def encode(self) -> bytes:
        pairs: list[tuple[int, int | bytes]] = list(self.other)
        for key, value in ((TIMESCALE, self.timescale), (VIDEO_FRAME_MARKING, self.frame_marking),
                           (AUDIO_LEVEL, self.audio_level), (VIDEO_CONFIG, self.video_config),
                           (AUDIO_CONFIG, self.audio_config), (TIMESTAMP, self.timestamp)):
            if value is not None:
                pairs.append((key, value))
        return encode_kvp_block(tuple(pairs))

    @classmethod
    def decode(cls, data: bytes | memoryview) -> LocProperties:
        """Parse Object Properties; raises MoQError subclasses for malformed bytes."""
        values: dict[str, object] = {}
        other = []
        names = {TIMESCALE: "timescale", VIDEO_FRAME_MARKING: "frame_marking", AUDIO_LEVEL: "audio_level",
                 VIDEO_CONFIG: "video_config", AUDIO_CONFIG: "audio_config", TIMESTAMP: "timestamp"}
        for key, value in decode_kvp_block(data):
            if key in _KNOWN and names[key] not in values:
                values[names[key]] = value
            else:
                other.append((key, value))
        return cls(other=tuple(other), **values)  # type: ignore[arg-type]

    def wallclock_us(self) -> int | None:
        """The capture time as wall-clock µs, when the timestamp is one (no timescale)."""
        return self.timestamp if self.timescale is None else None


def now_us() -> int:
    return time.time_ns() // 1000


def latency_ms(props: LocProperties, now: int | None = None) -> float | None:
    ts = props.wallclock_us()
    if ts is None:
        return None
    return ((now if now is not None else now_us()) - ts) / 1000.0


__all__ = ["LocProperties", "latency_ms", "now_us", "MoQError", "TIMESTAMP", "TIMESCALE", "VIDEO_CONFIG",
           "AUDIO_CONFIG", "VIDEO_FRAME_MARKING", "AUDIO_LEVEL"]
