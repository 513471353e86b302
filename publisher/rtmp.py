"""The RTMP listener's edges, around FFmpeg's one-client listen mode: a port that is
already taken, the app/key check (FFmpeg only warns), and a second encoder that pushes
while one is publishing."""

from __future__ import annotations

import socket
import threading

import av
import av.logging
import structlog

log = structlog.get_logger("publisher.ingest")


def av_message(exc: BaseException) -> str:
    """PyAV's error text without its "[Errno 1094995529]" prefix (FFmpeg's AVERROR tag)."""
    text = getattr(exc, "strerror", None)
    return str(text) if text else str(exc)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def port_busy(host: str, port: int) -> str | None:
    """Why we cannot listen on host:port (another moq-publish listens there), or None.
    FFmpeg would only log "Address already in use" and we would publish nothing."""
    try:
        with socket.socket(_family(host), socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as FFmpeg does: TIME_WAIT is fine
            s.bind((host, port))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def listen(url: str, options: dict) -> tuple[av.container.InputContainer, str | None]:
    """Wait for an RTMP client (OBS) to publish: the container and, when the client's app or
    stream key differ from the URL's, FFmpeg's reason (it only *warns*; we read its log; the
    container is then closed)."""
    level = av.logging.get_level()
    av.logging.set_level(av.logging.WARNING)
    # PyAV holds back a repeated message and emits it when the next, different one comes:
    # the previous client's reason would show up in this client's capture.
    skip = av.logging.get_skip_repeated()
    av.logging.set_skip_repeated(False)
    try:
        with av.logging.Capture(local=True) as logs:
            c = av.open(url, options=options, timeout=(None, 15.0))
    finally:
        av.logging.set_level(level)
        av.logging.set_skip_repeated(skip)
    wrong = [m.strip() for _, _, m in logs if m.startswith(("Unexpected stream", "App field don't match"))]
    if wrong:
        c.close()
        return c, wrong[-1]
    return c, None


class PushGuard:
    """Holds the RTMP port while a client publishes.  FFmpeg's listener accepts one client
    and closes its listening socket, so a second encoder pushing at the same time would be
    refused by the kernel and nobody would know; we accept it, log it and hang up."""

    def __init__(self, host: str, port: int, url: str) -> None:
        self.url = url
        self._closed = threading.Event()
        try:
            self.sock: socket.socket | None = socket.create_server((host, port), family=_family(host))
            self.sock.settimeout(0.2)
        except OSError as exc:
            log.warning("rtmp_guard_failed", error=exc.strerror or str(exc))
            self.sock = None
            return
        self.thread = threading.Thread(target=self._run, name="moq-publish-rtmp-guard", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        assert self.sock is not None
        while not self._closed.is_set():
            try:
                client, peer = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            log.warning("rtmp_refused", url=self.url, peer=f"{peer[0]}:{peer[1]}",
                        reason="another client is already publishing to this stream")
            client.close()

    def close(self) -> None:
        if self.sock is not None:
            self._closed.set()
            self.thread.join(2.0)
            self.sock.close()
