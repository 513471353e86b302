"""The `testsrc` input's raw pictures and sound, drawn with numpy (no drawtext filter here).

Video: a moving colour pattern, a bouncing box and the capture wall-clock time
HH:MM:SS.mmm in large 7-segment digits, as yuv420p planes (no colour conversion needed).
Audio: a quiet 440 Hz tone with a 1 kHz beep during the first 100 ms of every wall-clock
second, so a viewer can check audio/video sync against the burnt-in clock.
"""

from __future__ import annotations

import time

import numpy as np

# segments: a b c d e f g (top, top-right, bottom-right, bottom, bottom-left, top-left, middle)
_DIGITS = {
    "0": "abcdef", "1": "bc", "2": "abged", "3": "abgcd", "4": "fgbc",
    "5": "afgcd", "6": "afgedc", "7": "abc", "8": "abcdefg", "9": "abcdfg",
}


def clock_text(wall_us: int) -> str:
    """HH:MM:SS.mmm of a wall-clock time (local time zone)."""
    secs, us = divmod(wall_us, 1_000_000)
    return time.strftime("%H:%M:%S", time.localtime(secs)) + f".{us // 1000:03d}"


class Painter:
    """Draws frames of one size; reuses its buffers between frames."""

    def __init__(self, width: int, height: int) -> None:
        if width < 32 or height < 32 or width % 2 or height % 2:
            raise ValueError(f"test pattern size must be even and at least 32x32, got {width}x{height}")
        self.w, self.h = width, height
        yy, xx = np.mgrid[0:height, 0:width]
        self._luma = ((xx + yy) % 256).astype(np.uint16)
        self._tmp = np.empty_like(self._luma)
        cy, cx = np.mgrid[0:height // 2, 0:width // 2]
        self._cu = (cx * 255 // max(1, width // 2 - 1)).astype(np.uint8)
        self._cv = (cy * 255 // max(1, height // 2 - 1)).astype(np.uint8)
        self.buf = np.empty((height * 3 // 2, width), np.uint8)
        self.dh = max(10, (height // 6) & ~1)  # digit height
        self.th = max(2, self.dh // 8)  # segment thickness

    def frame(self, index: int, wall_us: int) -> np.ndarray:
        """The yuv420p planes (shape (h*3/2, w)) of frame `index` captured at `wall_us`."""
        w, h, buf = self.w, self.h, self.buf
        y = buf[:h]
        np.add(self._luma, (index * 3) % 256, out=self._tmp)
        self._tmp &= 255
        self._tmp >>= 1
        self._tmp += 48
        y[:] = self._tmp
        u = buf[h:h + h // 4].reshape(h // 2, w // 2)
        v = buf[h + h // 4:].reshape(h // 2, w // 2)
        shift = (index * 2) % (w // 2)
        u[:, :shift] = self._cu[:, w // 2 - shift:]
        u[:, shift:] = self._cu[:, :w // 2 - shift]
        v[:] = self._cv
        v += np.uint8(index % 256)
        # a bouncing box
        bs = max(8, (h // 8) & ~1)
        period = max(1, 2 * (w - bs))
        p = (index * max(2, w // 80)) % period
        bx = (p if p < w - bs else period - p) & ~1
        by = (h // 3 - bs // 2 + int((h // 6) * np.sin(index / 15.0))) & ~1
        by = min(max(0, by), h - bs)
        y[by:by + bs, bx:bx + bs] = 235
        u[by // 2:(by + bs) // 2, bx // 2:(bx + bs) // 2] = 90
        v[by // 2:(by + bs) // 2, bx // 2:(bx + bs) // 2] = 240
        self._clock(y, u, v, clock_text(wall_us))
        return buf

    def _advance(self, ch: str) -> int:
        return self.dh * 3 // 5 if ch.isdigit() else self.dh * 3 // 10

    def _clock(self, y: np.ndarray, u: np.ndarray, v: np.ndarray, text: str) -> None:
        dh, th = self.dh, self.th
        total = sum(self._advance(c) for c in text)
        pad = th * 2
        x0 = max(0, ((self.w - total) // 2) & ~1)
        y0 = max(0, ((self.h - dh) * 4 // 5) & ~1)
        bx0, by0 = max(0, x0 - pad) & ~1, max(0, y0 - pad) & ~1
        bx1, by1 = min(self.w, x0 + total + pad), min(self.h, y0 + dh + pad)
        y[by0:by1, bx0:bx1] = 16
        u[by0 // 2:by1 // 2, bx0 // 2:bx1 // 2] = 128
        v[by0 // 2:by1 // 2, bx0 // 2:bx1 // 2] = 128
        x = x0
        for ch in text:
            if ch.isdigit():
                self._digit(y, x, y0, ch)
            elif ch == ":":
                for cy in (y0 + dh // 3, y0 + 2 * dh // 3):
                    y[cy - th // 2:cy - th // 2 + th, x + th // 2:x + th // 2 + th] = 235
            elif ch == ".":
                y[y0 + dh - th:y0 + dh, x + th // 2:x + th // 2 + th] = 235
            x += self._advance(ch)

    def _digit(self, y: np.ndarray, x: int, y0: int, ch: str) -> None:
        dh, th = self.dh, self.th
        dw = dh // 2
        half = dh // 2
        rects = {
            "a": (y0, x, th, dw), "b": (y0, x + dw - th, half, th), "c": (y0 + half, x + dw - th, dh - half, th),
            "d": (y0 + dh - th, x, th, dw), "e": (y0 + half, x, dh - half, th), "f": (y0, x, half, th),
            "g": (y0 + half - th // 2, x, th, dw),
        }
        for seg in _DIGITS[ch]:
            ry, rx, rh, rw = rects[seg]
            y[ry:ry + rh, rx:rx + rw] = 235


class Tone:
    """Stereo s16 samples at `rate`: a 440 Hz tone and a 1 kHz beep at each wall-clock second."""

    def __init__(self, rate: int = 48000, start_wall_us: int = 0) -> None:
        self.rate = rate
        self.start_wall_us = start_wall_us

    def samples(self, first: int, count: int) -> np.ndarray:
        """Interleaved s16 of shape (1, 2*count) for samples [first, first+count)."""
        n = np.arange(first, first + count, dtype=np.float64)
        t = n / self.rate
        wall = (self.start_wall_us / 1e6 + t) % 1.0
        sig = 0.08 * np.sin(2 * np.pi * 440.0 * t)
        sig = np.where(wall < 0.1, 0.3 * np.sin(2 * np.pi * 1000.0 * t), sig)
        s16 = (sig * 32767).astype(np.int16)
        return np.repeat(s16, 2).reshape(1, -1)
