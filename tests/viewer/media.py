"""A small live broadcast for the viewer tests, built with the library only (moq-publish may
not exist yet): real H.264 (PyAV libx264, 160x90 at 15 fps, zerolatency, one group per
1-second GOP, one object per frame, AVC length-prefixed with the avcC as LOC VIDEO_CONFIG on
key frames), Opus 48 kHz stereo (20 ms packets, 1-second groups) and an MSF catalog; a LOC
capture TIMESTAMP on every media object."""

from __future__ import annotations

import asyncio
import math
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction

import av

from moq import api
from moq.broadcast import Publisher
from moq.media.catalog import Catalog, CatalogTrack
from moq.media.h264 import NAL_PPS, NAL_SPS, AvcConfig, annexb_to_avcc, make_avcc, nal_type, split_annexb
from moq.media.loc import LocProperties, now_us
from moq.wire.types import TrackNamespace, namespace_from_str
from tests.relay.relayproc import ROOT, RelayProcess, python_env

WIDTH, HEIGHT, FPS, GOP = 160, 90, 15, 15
AUDIO_RATE, AUDIO_SAMPLES, AUDIO_GROUP = 48000, 960, 50


class VideoSource:
    """A moving test pattern through libx264; yields (AVC access unit, key frame)."""

    def __init__(self, width: int = WIDTH, height: int = HEIGHT, fps: int = FPS, gop: int = GOP) -> None:
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
        enc.time_base, enc.framerate = Fraction(1, fps), fps
        enc.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(gop), "keyint_min": str(gop),
                       "sc_threshold": "0", "bframes": "0"}
        enc.flags |= 1 << 22  # AV_CODEC_FLAG_GLOBAL_HEADER: SPS/PPS in extradata, not in every key frame
        enc.open()
        units = split_annexb(enc.extradata)
        self.avcc = make_avcc([u for u in units if nal_type(u) == NAL_SPS], [u for u in units if nal_type(u) == NAL_PPS])
        self.config = AvcConfig.parse(self.avcc)
        self.enc, self.width, self.height, self.index = enc, width, height, 0
        self._ramp = bytes(range(256)) * (width // 256 + 2)

    def encode(self) -> list[tuple[bytes, bool]]:
        i = self.index
        self.index += 1
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        y = frame.planes[0]
        row = y.line_size
        ramp = self._ramp
        y.update(b"".join(ramp[(r + 3 * i) % 256:(r + 3 * i) % 256 + row] for r in range(self.height)))
        for plane in frame.planes[1:]:
            plane.update(bytes([128 + (i % 32)]) * plane.buffer_size)
        frame.pts = i
        return [(annexb_to_avcc(bytes(p)), bool(p.is_keyframe)) for p in self.enc.encode(frame)]


class AudioSource:
    """A 440 Hz tone through libopus; yields Opus packets of 20 ms."""

    def __init__(self) -> None:
        enc = av.CodecContext.create("libopus", "w")
        enc.sample_rate, enc.layout, enc.format = AUDIO_RATE, "stereo", "s16"
        enc.open()
        self.enc, self.index = enc, 0
        self.pcm = b"".join(struct.pack("<hh", s, s) for s in (
            int(6000 * math.sin(2 * math.pi * 440 * n / AUDIO_RATE)) for n in range(AUDIO_SAMPLES)))

    def encode(self) -> list[bytes]:
        frame = av.AudioFrame(format="s16", layout="stereo", samples=AUDIO_SAMPLES)
        frame.planes[0].update(self.pcm)
        frame.sample_rate = AUDIO_RATE
        frame.pts = self.index * AUDIO_SAMPLES
        self.index += 1
        return [bytes(p) for p in self.enc.encode(frame)]


@dataclass
class Broadcast:
    """catalog + video + audio tracks of `namespace`, produced in real time by `run()`."""

    publisher: Publisher
    namespace: TrackNamespace
    audio: bool = True
    with_video: bool = True  # False: an audio-only broadcast (no video track in the catalog, no frames)
    video_frames: list[int] = field(default_factory=list)  # capture timestamps (µs) of the video frames
    audio_packets: int = 0
    video_subscribed_at: int | None = None  # µs: when the video track first had a subscriber

    def __post_init__(self) -> None:
        self.vsrc = VideoSource()
        self.asrc = AudioSource() if self.audio else None
        tracks = [CatalogTrack("video", role="video", codec=self.vsrc.config.codec, width=WIDTH, height=HEIGHT,
                               framerate=FPS)] if self.with_video else []
        if self.audio:
            tracks.append(CatalogTrack("audio", role="audio", codec="opus", samplerate=AUDIO_RATE, channel_config="2"))
        self.catalog = Catalog(tuple(tracks)).stamped()
        self.catalog_track = self.publisher.create_track(self.namespace, b"catalog")
        self.video = self.publisher.create_track(self.namespace, b"video")
        self.audio_track = self.publisher.create_track(self.namespace, b"audio") if self.audio else None
        self.catalog_track.write(0, 0, self.catalog.encode())
        self.catalog_track.end_group(0)

    async def run(self, seconds: float | None = None) -> None:
        """Publish until cancelled, or for `seconds` and then end every track (PUBLISH_DONE)."""
        tasks = [asyncio.create_task(self._video())] if self.with_video else []
        if self.audio:
            tasks.append(asyncio.create_task(self._audio()))
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), seconds)
        except TimeoutError:
            for track in (self.catalog_track, self.video, self.audio_track):
                if track is not None:
                    track.finish()
        finally:
            for t in tasks:
                t.cancel()

    async def _video(self) -> None:
        group, obj, start = -1, 0, time.monotonic()
        while True:
            ts = now_us()
            if self.video_subscribed_at is None and self.video.sinks:
                self.video_subscribed_at = ts
            for data, key in self.vsrc.encode():
                if key:
                    if group >= 0:
                        self.video.end_group(group)
                    group, obj = group + 1, 0
                if group < 0:
                    continue
                props = LocProperties(timestamp=ts, video_config=self.vsrc.avcc if key else None)
                self.video.write(group, obj, data, properties=props.encode())
                self.video_frames.append(ts)
                obj += 1
            await _sleep_until(start + self.vsrc.index / FPS)

    async def _audio(self) -> None:
        assert self.asrc is not None and self.audio_track is not None
        start, n = time.monotonic(), 0
        while True:
            ts = now_us()
            for packet in self.asrc.encode():
                group, obj = divmod(n, AUDIO_GROUP)
                self.audio_track.write(group, obj, packet, properties=LocProperties(timestamp=ts).encode())
                if obj == AUDIO_GROUP - 1:
                    self.audio_track.end_group(group)
                n += 1
                self.audio_packets = n
            await _sleep_until(start + self.asrc.index * AUDIO_SAMPLES / AUDIO_RATE)


async def _sleep_until(when: float) -> None:
    await asyncio.sleep(max(0.0, when - time.monotonic()))




class LiveRelay:
    """A relay process and a publisher on an event loop in a background thread, so that tests
    can run moq-view as a plain subprocess while the broadcast goes on."""

    def __init__(self) -> None:
        self.relay = RelayProcess(http=False).start()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-publisher", daemon=True)
        self.thread.start()
        self.publisher = Publisher()
        self.tasks: list[asyncio.Task] = []
        try:
            self.conn = self.call(api.connect(self.relay.url(), fingerprint=self.relay.fingerprint,
                                              handler=self.publisher))
        except BaseException:
            self.close()
            raise

    def call(self, coro, timeout: float = 20.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def broadcast(self, namespace: str, *, seconds: float | None = None, audio: bool = True,
                  video: bool = True) -> Broadcast:
        """Start publishing `namespace` (announced to the relay); ends its tracks after `seconds`."""
        async def start() -> Broadcast:
            b = Broadcast(self.publisher, namespace_from_str(namespace), audio=audio, with_video=video)
            await self.conn.publish_namespace(b.namespace)
            self.tasks.append(asyncio.create_task(b.run(seconds)))
            return b
        return self.call(start())

    @property
    def url(self) -> str:
        return self.relay.url()

    @property
    def fingerprint(self) -> str:
        return self.relay.fingerprint

    def view(self, *args: str, timeout: float = 40) -> subprocess.CompletedProcess:
        """`moq-view URL ARGS --fingerprint F` as a real process, run to its end."""
        return subprocess.run([sys.executable, "-m", "viewer", self.url, *args, "--fingerprint", self.fingerprint],
                              capture_output=True, text=True, env=python_env(), cwd=ROOT, timeout=timeout)

    def close(self) -> None:
        async def stop() -> None:
            for t in self.tasks:
                t.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            if getattr(self, "conn", None) is not None:
                await asyncio.wait_for(self.conn.aclose(), 5)
        try:
            if self.thread.is_alive():
                self.call(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            if not self.thread.is_alive():
                self.loop.close()
            self.relay.kill()
            self.relay.__exit__(None, None, None)


__all__ = ["Broadcast", "LiveRelay", "VideoSource", "AudioSource", "WIDTH", "HEIGHT", "FPS", "GOP"]
