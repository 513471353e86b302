"""A real `python -m relay.app` process for tests: free ports, parsed URLs, clean teardown.

    with RelayProcess("--subscriber-queue-bytes", "262144") as relay:
        url = relay.url("moqt")                      # or relay.url("https") for WebTransport
        conn = await api.connect(url, fingerprint=relay.fingerprint)
        ...
        assert relay.stop() == 0                     # SIGTERM, then the exit code

The relay binds UDP and HTTP to 127.0.0.1 port 0 and prints the ports it got, so there is
no window in which another process can take a port picked in advance.  Its log (stderr,
JSON lines) goes to a temporary file: `log_tail()` for failure messages.  The process is
always killed on exit of the `with` block, whatever happened.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

from moq import api
from moq.broadcast import Publisher
from moq.transport import base as tb
from moq.transport import endpoint
from moq.wire.varint import encode_varint

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0

_QUIC = re.compile(r"raw QUIC:\s+moqt://([^\s/]+):(\d+)/")
_FP = re.compile(r"certificate sha256:\s+([0-9a-fA-F]{64})")
_HTTP = re.compile(r"http:\s+http://([^\s/]+):(\d+)/")
_WORKERS = re.compile(r"workers:\s+(\d+) \(pids ([\d ]+)\)")  # --workers N > 1 only


#: XDG_DATA_HOME of every process the tests start: a relay without --state-dir keeps its dev certificate
#: here (one for the test run, shared by those relays) instead of in the user's ~/.local/share/moq-relay
TEST_DATA_HOME = tempfile.mkdtemp(prefix="moq-test-data-")
atexit.register(shutil.rmtree, TEST_DATA_HOME, True)


def python_env() -> dict[str, str]:
    """Environment for our own tools run as processes (relay, moq-view)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "XDG_DATA_HOME": TEST_DATA_HOME}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


class RelayProcess:
    def __init__(self, *flags: str, http: bool = True, python: str = sys.executable) -> None:
        self.flags = list(flags)
        self.http = http
        self.python = python
        self.proc: subprocess.Popen | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.http_port = 0
        self.fingerprint = ""
        self.stdout_lines: list[str] = []
        self.worker_pids: list[int] = []
        self._log = tempfile.NamedTemporaryFile(prefix="moq-relay-", suffix=".log", delete=False)
        self._drainer: threading.Thread | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> RelayProcess:
        cmd = [self.python, "-m", "relay.app", "--bind", "127.0.0.1:0", "--log-format", "json", *self.flags]
        if self.http:
            cmd += ["--http", "127.0.0.1:0"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=python_env(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1)
        self._drainer = threading.Thread(target=self._drain, daemon=True)  # the pipe never fills
        self._drainer.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not (self.port and self.fingerprint and (self.http_port or not self.http)):
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self.kill()
                raise RuntimeError(f"moq-relay did not start: {self.stdout_lines}\n{self.log_tail()}")
            if m := _QUIC.search(line):
                self.port = int(m[2])
            elif m := _FP.search(line):
                self.fingerprint = m[1].lower()
            elif m := _HTTP.search(line):
                self.http_port = int(m[2])
            elif m := _WORKERS.search(line):
                self.worker_pids = [int(p) for p in m[2].split()]
        return self

    def _drain(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            for line in self.proc.stdout:  # type: ignore[union-attr]
                self.stdout_lines.append(line.rstrip("\n"))
                self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)  # type: ignore[union-attr]

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (graceful drain), wait up to `timeout` s; the exit code, or None if it hung
        (then it is killed)."""
        if self.proc is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)

    def __enter__(self) -> RelayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
        for pid in self.worker_pids:  # --workers: a worker outliving its supervisor must not linger
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if self.proc is not None and self.proc.stdout is not None:
            with contextlib.suppress(OSError):
                self.proc.stdout.close()
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)

    # --- looking at it ----------------------------------------------------------------
    def url(self, scheme: str = "moqt", path: str = "/") -> str:
        return f"{scheme}://{self.host}:{self.port}{path}"

    def rss_kb(self) -> int:
        """Resident set size (VmRSS) in KiB."""
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def http_get(self, path: str, timeout: float = 5.0) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=timeout) as resp:
            return resp.read()

    def metrics(self) -> dict[str, float]:
        """The Prometheus text of /metrics as {"name{labels}": value} (comments skipped)."""
        out: dict[str, float] = {}
        for line in self.http_get("/metrics").decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def by_worker(self, name: str) -> dict[str, float]:
        """One metric of a --workers relay, {worker: value}, from the samples labelled worker="k"."""
        out: dict[str, float] = {}
        for key, value in self.metrics().items():
            if m := re.fullmatch(rf'{re.escape(name)}\{{worker="([^"]+)"\}}', key):
                out[m[1]] = value
        return out

    def log_text(self) -> str:
        """The whole log so far (stderr, JSON lines)."""
        return Path(self._log.name).read_text(errors="replace")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return Path(self._log.name).read_text(errors="replace")[-chars:]
        except OSError:
            return ""


# --- asyncio helpers shared by the relay tests ------------------------------------------
# (raw transport sessions for hand-made bytes: `frame` and `bad_session`, at the end)


async def connect(relay: RelayProcess, scheme: str, **kw):
    """A library client session to the relay (`moqt` = raw QUIC, `https` = WebTransport)."""
    return await api.connect(relay.url(scheme), fingerprint=relay.fingerprint, **kw)


async def take(iterator, n: int, timeout: float = 10.0) -> list:
    """The next `n` items of an async iterator; TimeoutError (with what arrived) if slower."""
    out: list = []

    async def run() -> None:
        async for item in iterator:
            out.append(item)
            if len(out) == n:
                return

    try:
        await asyncio.wait_for(run(), timeout)
    except TimeoutError:
        raise TimeoutError(f"got {len(out)} of {n} items in {timeout} s: {out[-5:]}") from None
    return out


async def wait_until(predicate, timeout: float = 5.0, interval: float = 0.02, what: str = "condition") -> None:
    """Poll `predicate()` until true; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


class CountingPublisher(Publisher):
    """A Publisher that also counts the requests reaching it, by event type (e.g.
    "SubscribeRequested", "FetchRequested")."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: Counter[str] = Counter()

    def on_request(self, conn, event) -> None:
        self.requests[type(event).__name__] += 1
        super().on_request(conn, event)


def frame(msg_type: int, payload: bytes, length: int | None = None) -> bytes:
    """Type (vi64), Length (16), Payload: a control message with any Length we like."""
    return encode_varint(msg_type) + (len(payload) if length is None else length).to_bytes(2, "big") + payload


async def bad_session(relay: RelayProcess, scheme: str, control: bytes, request: bytes | None
                      ) -> tb.SessionClosed:
    """Open a transport session, write `control` on a fresh unidirectional stream (where the
    control stream goes) and `request`, if any, on a bidirectional stream once the relay's
    SETUP has arrived; return how the relay closed the session."""
    transport = await endpoint.connect(relay.url(scheme), fingerprint=relay.fingerprint)
    loop = asyncio.get_running_loop()
    closed: asyncio.Future[tb.SessionClosed] = loop.create_future()
    relay_setup: asyncio.Future[None] = loop.create_future()

    def on_event(e: tb.TransportEvent) -> None:
        if isinstance(e, tb.SessionClosed) and not closed.done():
            closed.set_result(e)
        elif isinstance(e, tb.StreamData) and not e.bidirectional and not relay_setup.done():
            relay_setup.set_result(None)

    transport.set_handler(on_event)
    transport.send_stream_data(transport.open_stream(True), control)
    try:
        if request is not None:
            await asyncio.wait_for(relay_setup, 5)
            transport.send_stream_data(transport.open_stream(False), request)
        return await asyncio.wait_for(closed, 5)
    finally:
        transport.close()


__all__ = ["RelayProcess", "ROOT", "python_env", "connect", "take", "wait_until", "CountingPublisher", "bad_session",
           "frame"]
