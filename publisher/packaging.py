"""Encoded media → MoQ objects: LOC objects, group = GOP, the MSF catalog (the H.264/AAC
bitstream plumbing lives in `moq.media.h264`/`moq.media.aac` and is re-exported here).

Pure functions and small state machines, no I/O, no clock (times are arguments), so every
rule here is unit-tested without a relay or an encoder:

- H.264 arrives as Annex B (start codes; our libx264 encoder, MPEG-TS) or as AVC
  (length-prefixed NAL units with an avcC record; MP4, FLV/RTMP).  LOC carries the
  "canonical" form (draft-ietf-moq-loc § Video Payload Format): 4-byte length prefixes in
  the payload and the avcC ("extradata") in the Video Config property, i.e. WebCodecs
  `avc1.PPCCLL` with `description` = avcC.
- One MoQ group per GOP: a keyframe opens a new group; one object per frame, object ids
  0, 1, 2… within a group, subgroup 0 (draft-ietf-moq-msf § LOC packaging).
- Every object carries a LOC Timestamp (wall-clock µs since the epoch, no Timescale);
  keyframes carry Video Config; the first object of each audio group carries Audio Config
  (AAC AudioSpecificConfig).
- Audio goes in its own track, one group per ~second.
"""

from __future__ import annotations

from dataclasses import dataclass

from moq.media.aac import AacConfig, is_adts, strip_adts  # noqa: F401  (re-exported for the publisher)
from moq.media.catalog import Catalog, CatalogTrack
from moq.media.h264 import (  # noqa: F401  (re-exported: packaging is the publisher's public face)
    NAL_AUD,
    NAL_IDR,
    NAL_PPS,
    NAL_SEI,
    NAL_SPS,
    AvcConfig,
    BitstreamError,
    H264Normalizer,
    SpsInfo,
    annexb_to_avc,
    avc_config_from_extradata,
    is_annexb,
    is_keyframe_avc,
    join_avc,
    nal_type,
    parse_sps,
    split_annexb,
    split_avc,
)
from moq.media.loc import LocProperties

# --- LOC objects -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocObject:
    """One object to write: `Track.write(group_id, object_id, payload, properties=...)`.
    `closes` is the previous group of the same track, to end before this one is written."""

    group_id: int
    object_id: int
    payload: bytes
    properties: bytes
    closes: int | None = None


class _Grouper:
    def __init__(self, first_group: int) -> None:
        self.next_group = first_group
        self.group: int | None = None
        self.object = 0
        self.want_new_group = False
        self.objects = 0
        self.groups = 0

    def restart(self) -> None:
        """After a reconnect: the next object opens a new group (never reusing an id)."""
        self.want_new_group = True

    def _emit(self, new_group: bool, payload: bytes, props: LocProperties) -> LocObject:
        closes = None
        if new_group:
            closes = self.group
            self.group, self.object = self.next_group, 0
            self.next_group += 1
            self.groups += 1
            self.want_new_group = False
        obj = LocObject(self.group, self.object, payload, props.encode(), closes)  # type: ignore[arg-type]
        self.object += 1
        self.objects += 1
        return obj


class VideoPackager(_Grouper):
    """One group per GOP: a keyframe opens a group; frames before the first keyframe (or,
    after `restart()`, before the next one) are dropped, since they cannot be decoded."""

    def __init__(self, first_group: int = 0) -> None:
        super().__init__(first_group)
        self.dropped = 0

    @property
    def waiting_for_keyframe(self) -> bool:
        return self.group is None or self.want_new_group

    def push(self, payload: bytes, keyframe: bool, timestamp_us: int, config: bytes | None) -> LocObject | None:
        if not keyframe and self.waiting_for_keyframe:
            self.dropped += 1
            return None
        props = LocProperties(timestamp=timestamp_us, video_config=config if keyframe else None)
        return self._emit(keyframe, payload, props)


class AudioPackager(_Grouper):
    """Audio frames in groups of about `group_us` of media time; the first object of each
    group carries the Audio Config (when the codec has one, e.g. AAC)."""

    def __init__(self, first_group: int = 0, group_us: int = 1_000_000) -> None:
        super().__init__(first_group)
        self.group_us = group_us
        self._group_start: int | None = None

    def push(self, payload: bytes, timestamp_us: int, config: bytes | None = None) -> LocObject:
        new = (self.group is None or self.want_new_group or self._group_start is None
               or not 0 <= timestamp_us - self._group_start < self.group_us)
        if new:
            self._group_start = timestamp_us
        props = LocProperties(timestamp=timestamp_us, audio_config=config if new else None)
        return self._emit(new, payload, props)


# --- the MSF catalog -------------------------------------------------------------------------------

VIDEO_TRACK, AUDIO_TRACK, CATALOG_TRACK = "video", "audio", "catalog"
RENDER_GROUP = 1


@dataclass(frozen=True)
class VideoInfo:
    codec: str
    width: int
    height: int
    framerate: float | None
    bitrate: int


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    samplerate: int
    channels: int
    bitrate: int


def video_info(config: AvcConfig, framerate: float | None, bitrate: int) -> VideoInfo:
    sps = config.sps_info()
    return VideoInfo(config.codec, sps.width, sps.height, framerate, bitrate)


def build_catalog(video: VideoInfo | None, audio: AudioInfo | None, *, generated_at: int | None = None,
                  gop_ms: int | None = None) -> Catalog:
    """A complete MSF catalog for our tracks (names relative to the catalog's namespace)."""
    tracks = []
    if video is not None:
        fps = video.framerate
        if fps is not None and float(fps).is_integer():
            fps = int(fps)
        tracks.append(CatalogTrack(
            name=VIDEO_TRACK, packaging="loc", is_live=True, role="video", codec=video.codec,
            width=video.width, height=video.height, framerate=fps, bitrate=video.bitrate,
            render_group=RENDER_GROUP, max_gop_duration=gop_ms))
    if audio is not None:
        tracks.append(CatalogTrack(
            name=AUDIO_TRACK, packaging="loc", is_live=True, role="audio", codec=audio.codec,
            samplerate=audio.samplerate, channel_config=str(audio.channels), bitrate=audio.bitrate,
            render_group=RENDER_GROUP))
    return Catalog(tuple(tracks), generated_at=generated_at)


def final_catalog(generated_at: int | None = None) -> Catalog:
    """The catalog that ends a live broadcast (MSF § Terminating a live broadcast)."""
    return Catalog((), generated_at=generated_at, is_complete=True)


class CatalogPublisher:
    """Decides when the catalog needs a new group: when its content changes (ignoring the
    generatedAt stamp), or after `restart()`."""

    def __init__(self, first_group: int = 0) -> None:
        self.next_group = first_group
        self.current: Catalog | None = None
        self._want_new = False

    def restart(self) -> None:
        self._want_new = True

    def update(self, catalog: Catalog, now_ms: int) -> LocObject | None:
        if catalog == self.current and not self._want_new:
            return None
        prev = self.next_group - 1 if self.current is not None else None
        self.current = catalog
        self._want_new = False
        stamped = Catalog(catalog.tracks, catalog.version, now_ms, catalog.is_complete)
        obj = LocObject(self.next_group, 0, stamped.encode(), b"", prev)
        self.next_group += 1
        return obj


def parse_bitrate(text: str) -> int:
    """'2500k' → 2500000, '2.5M' → 2500000, '800000' → 800000."""
    t = text.strip().lower()
    mult = 1
    if t.endswith(("k", "m")):
        mult = 1000 if t[-1] == "k" else 1_000_000
        t = t[:-1]
    try:
        value = int(float(t) * mult)
    except ValueError:
        raise ValueError(f"bad bitrate {text!r} (e.g. 2500k, 2.5M)") from None
    if value <= 0:
        raise ValueError(f"bad bitrate {text!r}")
    return value


# --- a whole broadcast --------------------------------------------------------------------------


class BroadcastPackager:
    """A source's packets → (track name, LocObject) for the `video`, `audio` and `catalog`
    tracks.  Packets need `.fmt` (kind, codec, extradata, framerate, bitrate, samplerate,
    channels), `.data`, `.keyframe` and `.ts_us`.

    The catalog is (re)published, as a new group, when what it says changes: the first one
    waits until every kind in `expected` has been seen (or `CATALOG_WAIT_US` of media went by)
    so that a start does not produce two catalogs."""

    CATALOG_WAIT_US = 1_000_000

    def __init__(self, first_group: int = 0, *, gop_ms: int | None = None, audio_group_us: int = 1_000_000) -> None:
        self.video = VideoPackager(first_group)
        self.audio = AudioPackager(first_group, audio_group_us)
        self.catalog = CatalogPublisher(first_group)
        self.gop_ms = gop_ms
        self.expected: frozenset[str] | None = None
        self.video_info: VideoInfo | None = None
        self.audio_info: AudioInfo | None = None
        self.video_config: AvcConfig | None = None
        self._vfmt = None
        self._afmt = None
        self._norm: H264Normalizer | None = None
        self._avc: bytes | None = None
        self._aconfig: bytes | None = None
        self._first_ts: int | None = None
        self._gop_ms: int | None = None
        self.errors = 0

    def restart(self) -> None:
        """A new session: every track continues with a new group (the catalog too)."""
        self.video.restart()
        self.audio.restart()
        self.catalog.restart()

    def push(self, pkt, now_ms: int) -> list[tuple[str, LocObject]]:
        out: list[tuple[str, LocObject]] = []
        if self._first_ts is None:
            self._first_ts = pkt.ts_us
        if pkt.fmt.kind == "video":
            obj = self._push_video(pkt)
        else:
            obj = self._push_audio(pkt)
        cat = self._catalog(pkt.ts_us, now_ms)
        if cat is not None:
            out.append((CATALOG_TRACK, cat))
        if obj is not None:
            out.append((VIDEO_TRACK if pkt.fmt.kind == "video" else AUDIO_TRACK, obj))
        return out

    def _push_video(self, pkt) -> LocObject | None:
        fmt = pkt.fmt
        try:
            if fmt != self._vfmt or self._norm is None:
                self._vfmt, self._norm = fmt, H264Normalizer(fmt.extradata)
                changed = True
            else:
                changed = False
            payload, in_band = self._norm.feed(pkt.data)
            config = self._norm.config
            if config is None:
                self.errors += 1  # no parameter sets yet: undecodable
                return None
            if changed or in_band or self.video_config is None:
                self.video_config = config
                self._avc = config.encode()
                self.video_info = video_info(config, fmt.framerate, fmt.bitrate)
                # our encoder's GOP is known; a passed-through stream's is not
                self._gop_ms = None if getattr(fmt, "origin", "") == "passthrough" else self.gop_ms
        except BitstreamError:
            self.errors += 1
            return None
        return self.video.push(payload, pkt.keyframe, pkt.ts_us, self._avc)

    def _push_audio(self, pkt) -> LocObject:
        fmt = pkt.fmt
        if fmt != self._afmt:
            self._afmt = fmt
            codec, rate, channels = "opus", fmt.samplerate, fmt.channels
            self._aconfig = None
            if fmt.codec == "aac":
                try:
                    asc = AacConfig.parse(fmt.extradata or b"")
                    codec, rate = asc.codec, asc.samplerate
                    channels = asc.channels or channels
                    self._aconfig = bytes(fmt.extradata)
                except BitstreamError:
                    codec = "mp4a.40.2"
            self.audio_info = AudioInfo(codec, rate, channels, fmt.bitrate)
            self.audio.restart()  # a new configuration starts a new group (it carries the config)
        return self.audio.push(pkt.data, pkt.ts_us, self._aconfig)

    def _catalog(self, ts_us: int, now_ms: int) -> LocObject | None:
        seen = {k for k, v in (("video", self.video_info), ("audio", self.audio_info)) if v is not None}
        if not seen:
            return None
        if self.catalog.current is None:
            waited = ts_us - (self._first_ts or ts_us) >= self.CATALOG_WAIT_US
            if not waited and (self.expected is None or not self.expected <= seen):
                return None
        return self.catalog.update(build_catalog(self.video_info, self.audio_info, gop_ms=self._gop_ms), now_ms)

    def finish(self, now_ms: int) -> LocObject:
        """The last catalog: the broadcast is complete."""
        return self.catalog.update(final_catalog(), now_ms)  # type: ignore[return-value]
