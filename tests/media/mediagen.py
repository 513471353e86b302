"""Media made with PyAV for the publisher tests: short files and an RTMP (FLV) push, the
way OBS does it (H.264 + AAC, real-time paced)."""

from __future__ import annotations

import socket
import time
from fractions import Fraction

import av
import numpy as np


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _picture(i: int, width: int, height: int) -> av.VideoFrame:
    img = np.zeros((height, width, 3), np.uint8)
    img[:, :, 0] = (np.arange(width) * 255 // width)[None, :]
    img[:, :, 1] = (i * 8) % 256
    x = (i * 4) % max(1, width - 16)
    img[height // 3:height // 3 + 16, x:x + 16] = 255
    return av.VideoFrame.from_ndarray(img, format="rgb24")


def _tone(n0: int, count: int, rate: int) -> av.AudioFrame:
    t = (np.arange(n0, n0 + count) / rate).astype(np.float32)
    s = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(np.stack([s, s]), format="fltp", layout="stereo")
    frame.sample_rate = rate
    frame.pts = n0
    frame.time_base = Fraction(1, rate)
    return frame


def write_media(target: str, seconds: float, *, width: int = 320, height: int = 180, fps: int = 15,
                fmt: str | None = None, audio: bool = True, gop: int | None = None, realtime: bool = False,
                open_timeout: float = 15.0) -> None:
    """Encode `seconds` of H.264 (+ AAC) to `target` (a file, or rtmp://… with fmt="flv").
    With `realtime`, frames are muxed at the pace they would be captured (an RTMP push).
    A refused RTMP connection is retried until `open_timeout`."""
    deadline = time.monotonic() + open_timeout
    while True:
        out = av.open(target, "w", format=fmt)
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        v.options = {"preset": "ultrafast", "tune": "zerolatency", "bf": "0"}
        v.codec_context.gop_size = gop or fps
        a = None
        if audio:
            a = out.add_stream("aac", rate=44100)
            a.layout = "stereo"
        try:
            out.start_encoding()  # opens the file, or connects to the RTMP server
            break
        except (av.FFmpegError, OSError):
            out.close()
            if not target.startswith("rtmp://") or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        frames = int(seconds * fps)
        start = time.monotonic()
        n_audio = 0
        for i in range(frames):
            if realtime:
                time.sleep(max(0.0, start + i / fps - time.monotonic()))
            frame = _picture(i, width, height)
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for p in v.encode(frame):
                out.mux(p)
            if a is not None:
                while n_audio < (i + 1) * 44100 // fps:
                    for p in a.encode(_tone(n_audio, 1024, 44100)):
                        out.mux(p)
                    n_audio += 1024
        for p in v.encode():
            out.mux(p)
        if a is not None:
            for p in a.encode():
                out.mux(p)
    finally:
        out.close()
