"""A small live publisher for the browser tests: a synthetic test pattern (H.264, libx264
zerolatency) and a tone (Opus, libopus), packaged like moq-publish does (LOC + MSF catalog).

    python -m tests.web.testpub moqt://127.0.0.1:PORT/ --fingerprint HEX --namespace live/webtest

Tracks: `catalog` (MSF JSON, group 0 object 0), `video` (AVC length-prefixed frames, one group
per GOP, one object per frame, LOC TIMESTAMP on every object, VIDEO_CONFIG = avcC on key frames)
and `audio` (Opus 48 kHz stereo, 20 ms per object, ~1 s groups, LOC TIMESTAMP).  Prints
"publishing <namespace>" once the relay accepted PUBLISH_NAMESPACE.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from fractions import Fraction

import av
import numpy as np

from moq import api
from moq.broadcast import Publisher
from moq.log import configure_logging
from moq.media.catalog import Catalog, CatalogTrack
from moq.media.loc import LocProperties, now_us
from moq.transport.loop import run
from moq.wire.types import namespace_from_str

SAMPLE_RATE = 48000
AUDIO_FRAME = 960  # 20 ms
AUDIO_GROUP = 50  # objects per audio group: 1 s


# --- H.264 packaging: Annex B -> AVC (length-prefixed) + avcC --------------------------------

def split_annexb(data: bytes) -> list[bytes]:
    """NAL units of an Annex B byte stream (3- or 4-byte start codes)."""
    nals, i, n = [], 0, len(data)
    starts = []
    while i < n - 2:
        if data[i] == 0 and data[i + 1] == 0 and data[i + 2] == 1:
            starts.append(i + 3)
            i += 3
        else:
            i += 1
    for k, s in enumerate(starts):
        end = starts[k + 1] - 3 if k + 1 < len(starts) else n
        nal = data[s:end]
        while nal.endswith(b"\x00") and k + 1 < len(starts):  # the zero of a 4-byte start code
            nal = nal[:-1]
        if nal:
            nals.append(nal)
    return nals


def avcc(sps: bytes, pps: bytes) -> bytes:
    """AVCDecoderConfigurationRecord (ISO/IEC 14496-15 § 5.3.3.1) with one SPS and one PPS."""
    return (bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]) + len(sps).to_bytes(2, "big") + sps
            + b"\x01" + len(pps).to_bytes(2, "big") + pps)


class VideoSource:
    """Colour bars with a moving square and a frame counter strip, encoded with libx264."""

    def __init__(self, width: int, height: int, fps: int, gop: int) -> None:
        self.width, self.height, self.fps = width, height, fps
        cc = av.CodecContext.create("libx264", "w")
        cc.width, cc.height, cc.pix_fmt = width, height, "yuv420p"
        cc.time_base = Fraction(1, fps)
        cc.framerate = Fraction(fps, 1)
        cc.bit_rate = 400_000
        cc.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline",
                      "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:repeat-headers=1"}
        self.cc = cc
        self.n = 0
        bars = [(235, 235, 235), (235, 235, 16), (16, 235, 235), (16, 235, 16), (235, 16, 235), (235, 16, 16),
                (16, 16, 235)]
        self.base = np.zeros((height, width, 3), np.uint8)
        for i, colour in enumerate(bars):
            self.base[:, i * width // len(bars):(i + 1) * width // len(bars)] = colour
        self.avcc: bytes | None = None
        self.codec = "avc1.42C01E"

    def encode(self) -> list[tuple[bytes, bool]]:
        img = self.base.copy()
        s = self.height // 4
        x = (self.n * 4) % (self.width - s)
        img[s:2 * s, x:x + s] = (255, 255, 255)
        strip = self.height - self.height // 8
        for bit in range(16):
            on = (self.n >> bit) & 1
            img[strip:, bit * self.width // 16:(bit + 1) * self.width // 16] = (250, 250, 250) if on else (0, 0, 0)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = self.n
        self.n += 1
        out = []
        for pkt in self.cc.encode(frame):
            out.append(self._package(bytes(pkt), pkt.is_keyframe))
        return out

    def _package(self, annexb: bytes, key: bool) -> tuple[bytes, bool]:
        body = bytearray()
        sps = pps = None
        for nal in split_annexb(annexb):
            t = nal[0] & 0x1F
            if t == 7:
                sps = nal
            elif t == 8:
                pps = nal
            elif t != 9:  # access unit delimiters are not needed
                body += len(nal).to_bytes(4, "big") + nal
        if sps is not None and pps is not None:
            self.avcc = avcc(sps, pps)
            self.codec = "avc1." + sps[1:4].hex().upper()
        return bytes(body), key


class AudioSource:
    """A 440 Hz tone (beeping once a second) encoded with libopus, 20 ms per packet."""

    def __init__(self) -> None:
        cc = av.CodecContext.create("libopus", "w")
        cc.sample_rate = SAMPLE_RATE
        cc.layout = "stereo"
        cc.format = "s16"
        cc.bit_rate = 64_000
        cc.time_base = Fraction(1, SAMPLE_RATE)
        self.cc = cc
        self.samples = 0

    def encode(self) -> list[bytes]:
        t = (self.samples + np.arange(AUDIO_FRAME)) / SAMPLE_RATE
        tone = 0.2 * np.sin(2 * np.pi * 440 * t) * ((t % 1.0) < 0.25)
        pcm = (tone * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(pcm, 2).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self.samples
        self.samples += AUDIO_FRAME
        return [bytes(p) for p in self.cc.encode(frame)]


async def publish(args: argparse.Namespace) -> int:
    ns = namespace_from_str(args.namespace)
    pub = Publisher()
    catalog_track = pub.create_track(ns, b"catalog")
    video_track = pub.create_track(ns, b"video")
    audio_track = pub.create_track(ns, b"audio")
    w, h = (int(v) for v in args.size.split("x"))
    video = VideoSource(w, h, args.fps, gop=round(args.gop * args.fps))
    audio = AudioSource()
    conn = await api.connect(args.url, fingerprint=args.fingerprint, handler=pub)
    await conn.publish_namespace(ns)
    print(f"publishing {args.namespace}", flush=True)

    start = time.monotonic()
    deadline = start + args.duration if args.duration else None
    v_next = a_next = start
    v_group = a_group = -1
    v_obj = a_obj = 0
    a_count = 0
    catalog_sent = False
    offset_us = round(args.clock_offset_ms * 1000)
    while deadline is None or time.monotonic() < deadline:
        now = time.monotonic()
        if now >= v_next:
            v_next += 1 / args.fps
            ts = now_us() + offset_us  # capture time of this frame
            for payload, key in video.encode():
                if not catalog_sent:  # the codec string comes from the first SPS
                    tracks = [CatalogTrack("video", role="video", codec=video.codec, width=w, height=h,
                                           framerate=args.fps, bitrate=400_000, render_group=1)]
                    if not args.no_audio:
                        tracks.append(CatalogTrack("audio", role="audio", codec="opus", samplerate=SAMPLE_RATE,
                                                   channel_config="2", bitrate=64_000, render_group=1))
                    catalog_track.write(0, 0, Catalog(tuple(tracks)).stamped().encode())
                    catalog_track.end_group(0)
                    catalog_sent = True
                if key:
                    if v_group >= 0:
                        video_track.end_group(v_group)
                    v_group, v_obj = v_group + 1, 0
                elif v_group < 0:
                    continue
                props = LocProperties(timestamp=ts, video_config=video.avcc if key else None)
                video_track.write(v_group, v_obj, payload, properties=props.encode())
                v_obj += 1
        if not args.no_audio and now >= a_next:
            a_next += AUDIO_FRAME / SAMPLE_RATE
            ts = now_us() + offset_us
            for payload in audio.encode():
                if a_count % AUDIO_GROUP == 0:
                    if a_group >= 0:
                        audio_track.end_group(a_group)
                    a_group, a_obj = a_group + 1, 0
                audio_track.write(a_group, a_obj, payload, properties=LocProperties(timestamp=ts).encode())
                a_obj += 1
                a_count += 1
        if conn.is_closed:
            print("the relay closed the session", file=sys.stderr, flush=True)
            return 1
        await asyncio.sleep(max(0.0, min(v_next, a_next if not args.no_audio else v_next) - time.monotonic()))
    pub.finish()
    await conn.aclose()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.web.testpub", description=__doc__.split("\n\n")[0])
    p.add_argument("url")
    p.add_argument("--namespace", default="live/webtest")
    p.add_argument("--fingerprint")
    p.add_argument("--duration", type=float, help="seconds (default: forever)")
    p.add_argument("--size", default="320x180")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--gop", type=float, default=1.0, help="seconds per group of pictures")
    p.add_argument("--no-audio", action="store_true")
    p.add_argument("--clock-offset-ms", type=float, default=0.0,
                   help="add this to every LOC timestamp (negative: the media looks that much older)")
    p.add_argument("--log-level", default="warning")
    args = p.parse_args(argv)
    configure_logging("console", args.log_level)
    return run(publish(args))


if __name__ == "__main__":
    sys.exit(main())
