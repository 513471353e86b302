"""moq-publish's live status line and exit summary.

On a terminal (console logs): a `rich` live line.  Otherwise plain text on stdout: a line
rewritten in place with \\r on a terminal (--log-format json), or one line per interval
when stdout is a pipe or a file (a \\r-rewritten line would reach a log file as one
endless line).
"""

from __future__ import annotations

import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TextIO

WINDOW = 2.0  # seconds of history behind fps and bitrate


@dataclass
class Stats:
    input: str = ""
    connected: bool = False
    reconnects: int = 0  # sessions re-established
    reconnect_attempts: int = 0  # tries, successful or not (a relay that stays away still counts up)
    subscribers: int = 0
    error: str = ""
    video_frames: int = 0
    audio_frames: int = 0
    bytes: int = 0
    groups: dict[str, int] = field(default_factory=dict)
    objects: dict[str, int] = field(default_factory=dict)
    started: float = 0.0
    _recent: deque = field(default_factory=deque)  # (monotonic time, is_video, bytes)

    def start(self) -> None:
        self.started = time.monotonic()

    def on_packet(self, pkt) -> None:
        now = time.monotonic()
        video = pkt.fmt.kind == "video"
        if video:
            self.video_frames += 1
        else:
            self.audio_frames += 1
        self._recent.append((now, video, len(pkt.data)))
        while self._recent and self._recent[0][0] < now - WINDOW:
            self._recent.popleft()

    def on_object(self, track: str, obj, size: int) -> None:
        self.bytes += size
        self.objects[track] = self.objects.get(track, 0) + 1
        if obj.object_id == 0:
            self.groups[track] = self.groups.get(track, 0) + 1

    def rates(self) -> tuple[float, float]:
        """(video frames per second, bits per second of all media) over the last WINDOW s."""
        now = time.monotonic()
        recent = [r for r in self._recent if r[0] >= now - WINDOW]
        span = min(WINDOW, max(1e-3, now - self.started)) if self.started else WINDOW
        fps = sum(1 for r in recent if r[1]) / span
        bps = sum(r[2] for r in recent) * 8 / span
        return fps, bps

    def elapsed(self) -> float:
        return time.monotonic() - self.started if self.started else 0.0

    def line(self) -> str:
        fps, bps = self.rates()
        state = "connected" if self.connected else "RECONNECTING"
        groups = " ".join(f"{k[0]}:{v}" for k, v in sorted(self.groups.items()))
        return (f"{state} | {self.input} | {fps:5.1f} fps | {bps / 1e6:6.2f} Mb/s | groups {groups or '-'} | "
                f"subscribers {self.subscribers} | {self.reconnect_text()} | {self.elapsed():6.1f} s")

    def reconnect_text(self) -> str:
        tries = f" ({self.reconnect_attempts} attempts)" if self.reconnect_attempts != self.reconnects else ""
        return f"reconnects {self.reconnects}{tries}"

    def summary_fields(self) -> dict:
        return {"seconds": round(self.elapsed(), 1), "video_frames": self.video_frames,
                "audio_frames": self.audio_frames, "bytes": self.bytes, "groups": dict(self.groups),
                "reconnects": self.reconnects, "reconnect_attempts": self.reconnect_attempts}


class StatusLine:
    """mode: "rich", "cr" (\\r-rewritten plain line), "lines" or "off"."""

    def __init__(self, mode: str, out: TextIO | None = None) -> None:
        self.mode = mode
        self.out = out or sys.stdout
        self.interval = 2.0 if mode == "lines" else 0.5
        self._live = None
        self._width = 0

    @classmethod
    def for_terminal(cls, log_format: str, out: TextIO | None = None) -> StatusLine:
        out = out or sys.stdout
        tty = out.isatty()
        if tty and log_format == "console":
            return cls("rich", out)
        return cls("cr" if tty else "lines", out)

    def start(self) -> None:
        if self.mode == "rich":
            from rich.console import Console
            from rich.live import Live

            self._live = Live("", console=Console(file=self.out), refresh_per_second=4, transient=False,
                              redirect_stderr=True, redirect_stdout=False)
            self._live.start()

    def update(self, stats: Stats) -> None:
        line = stats.line()
        if self.mode == "rich" and self._live is not None:
            from rich.text import Text

            style = "bold green" if stats.connected else "bold red"
            self._live.update(Text.assemble(("● ", style), line))
        elif self.mode == "cr":
            pad = max(0, self._width - len(line))
            self._width = len(line)
            self.out.write("\r" + line + " " * pad)
            self.out.flush()
        elif self.mode == "lines":
            self.out.write(line + "\n")
            self.out.flush()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        elif self.mode == "cr" and self._width:
            self.out.write("\n")
            self.out.flush()
            self._width = 0

    def error(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def summary(self, stats: Stats) -> None:
        f = stats.summary_fields()
        groups = ", ".join(f"{v} {k}" for k, v in sorted(f["groups"].items())) or "none"
        text = (f"moq-publish: {f['seconds']} s, {f['video_frames']} video frames, {f['audio_frames']} audio frames, "
                f"{f['bytes'] / 1e6:.2f} MB; groups: {groups}; {stats.reconnect_text().replace(' ', ': ', 1)}")
        if stats.error:
            text += f"; input error: {stats.error}"
        if self.mode != "off":
            self.out.write(text + "\n")
            self.out.flush()
