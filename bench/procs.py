"""Processes of one benchmark run: start, talk JSON lines, sample CPU/RSS from /proc, always kill.

Every process goes into a `Procs` group whose `aclose()` kills whatever is still running (also on
error or Ctrl-C); every read has a timeout.  CPU and peak RSS of a relay sum the process and all
its descendants (`--workers N` forks children).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import re
import signal
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOADGEN = Path(__file__).resolve().parent / "loadgen"
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
INTEROP_PYTHON = os.environ.get("MOQ_INTEROP_PYTHON", str(ROOT / ".venv-interop" / "bin" / "python"))
TICK = os.sysconf("SC_CLK_TCK")

_QUIC = re.compile(r"raw QUIC:\s+moqt://([^\s/]+):(\d+)/")
_FP = re.compile(r"sha256:\s+([0-9a-fA-F]{64})")
_METRIC = re.compile(r"moq_relay_(\w+?)(?:_total)?(?:\{[^}]*\})?\s")
_WORKER = re.compile(r'worker="([^"]*)"')


class BenchError(RuntimeError):
    """A scenario could not run (a process failed to start, answer or report)."""


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """pid and every live descendant (from /proc/*/stat parent ids)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """user+system CPU of these processes (and their reaped children), seconds."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / TICK


def _status_kb(pids: list[int], field: str) -> float:
    """Sum of one /proc/PID/status memory field (kB) over the processes, in MiB."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, AttributeError):
            with open(f"/proc/{pid}/status") as f:
                total += int(re.search(field + r":\s+(\d+)", f.read()).group(1))
    return total / 1024


def peak_rss_mb(pids: list[int]) -> float:
    """Sum of VmHWM (peak resident set) over the processes, MiB."""
    return _status_kb(pids, "VmHWM")


def rss_mb(pids: list[int]) -> float:
    """Sum of VmRSS (resident set now) over the processes, MiB."""
    return _status_kb(pids, "VmRSS")


class Proc:
    """A child process that prints JSON lines on stdout and may read commands on stdin."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc, self.name = proc, name
        self.text: list[str] = []  # non-JSON stdout lines
        self._err: collections.deque[bytes] = collections.deque(maxlen=40)
        self._tasks = [asyncio.create_task(self._keep(proc.stderr, self._err))] if proc.stderr else []

    @staticmethod
    async def _keep(stream: asyncio.StreamReader, tail: collections.deque) -> None:
        """Read a pipe to its end, keeping the last lines: a full pipe would block the child."""
        with contextlib.suppress(ValueError, ConnectionError):
            while line := await stream.readline():
                tail.append(line)

    def drain_stdout(self) -> None:
        """Stop reading stdout as JSON; just keep it flowing (for relays that log there)."""
        self._tasks.append(asyncio.create_task(self._keep(self.proc.stdout, collections.deque(maxlen=1))))

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def line(self, timeout: float) -> str:
        try:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            raise BenchError(f"{self.name}: no output within {timeout:.0f} s{await self.stderr_tail()}") from None
        if not raw:
            raise BenchError(f"{self.name} exited (code {await self._code()}){await self.stderr_tail()}")
        return raw.decode(errors="replace").rstrip("\n")

    async def json(self, timeout: float, key: str | None = None) -> dict:
        """The next JSON line (with `key`, the next one holding it); text lines are kept in .text."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            raw = await self.line(max(0.1, end - loop.time()))
            try:
                obj = json.loads(raw)
            except ValueError:
                self.text.append(raw)
                continue
            if isinstance(obj, dict) and (key is None or key in obj):
                return obj

    def send(self, command: str) -> None:
        if self.proc.returncode is None and self.proc.stdin is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                self.proc.stdin.write(command.encode() + b"\n")

    async def _code(self) -> int | None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 2)
        return self.proc.returncode

    async def stderr_tail(self) -> str:
        if self.proc.returncode is None:
            self.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 3)
        tail = b"".join(self._err).decode(errors="replace").strip()[-1500:]
        return f"; stderr: {tail}" if tail else ""

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                for pid in reversed(descendants(self.proc.pid)):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)


#: every child still alive, whatever scenario started it: `kill_all()` at exit, on error or Ctrl-C
LIVE: set[Proc] = set()


def kill_all() -> None:
    for p in list(LIVE):
        p.kill()
    LIVE.clear()


class Procs:
    """Every process of one scenario; `aclose()` kills the lot (bounded waits)."""

    def __init__(self) -> None:
        self.items: list[Proc] = []

    async def start(self, name: str, *cmd: str, stdin: bool = True, interop: bool = False,
                    merge_stderr: bool = False, own_session: bool = False) -> Proc:
        """own_session: a session of its own, hence (with Linux's autogroup scheduling) its own share of
        the CPUs, as a relay service would have, instead of a part of the share of the session that
        also runs its load generators.  (Children are killed by pid, never by process group.)"""
        full_env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "error"), "PYTHONUNBUFFERED": "1"}
        if interop:  # moq-rs's import name is `moq` too: never let ours onto its path
            full_env.pop("PYTHONPATH", None)
        else:
            full_env["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT), os.environ.get("PYTHONPATH")) if x)
        proc = await asyncio.create_subprocess_exec(
            *cmd, cwd=str(ROOT), env=full_env, stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
            limit=1 << 24, start_new_session=own_session)
        p = Proc(proc, name)
        self.items.append(p)
        LIVE.add(p)
        return p

    async def loadgen(self, name: str, script: str, *args: str, own_session: bool = False) -> Proc:
        return await self.start(name, INTEROP_PYTHON, str(LOADGEN / script), *args, interop=True,
                                own_session=own_session)

    async def aclose(self) -> None:
        for p in self.items:
            p.kill()
        for p in self.items:
            with contextlib.suppress(TimeoutError, ProcessLookupError):
                await asyncio.wait_for(p.proc.wait(), 5)
            for t in p._tasks:
                t.cancel()
            LIVE.discard(p)
        self.items.clear()


class Relay:
    """A relay under test: where to connect, which processes to measure, which protocol ran."""

    def __init__(self, kind: str, proc: Proc, host: str, port: int, fingerprint: str, http_port: int | None,
                 protocol: str) -> None:
        self.kind, self.proc, self.host, self.port = kind, proc, host, port
        self.fingerprint, self.http_port, self.protocol = fingerprint, http_port, protocol

    def url(self, scheme: str = "moqt") -> str:
        return f"{scheme}://{self.host}:{self.port}/"

    def pids(self) -> list[int]:
        return descendants(self.proc.pid)

    async def metrics(self, per_worker: bool = False) -> dict | None:
        """Counters from our relay's /metrics, summed over labels and workers (per_worker: one such
        dict per `worker` label, "" without one); None without /metrics."""
        if self.http_port is None:
            return None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.http_port), 2)
            writer.write(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            body = (await asyncio.wait_for(reader.read(), 3)).decode(errors="replace")
            writer.close()
        except (OSError, TimeoutError):
            return None
        by_worker = parse_metrics(body)
        if per_worker:
            return by_worker
        out: dict[str, float] = {}
        for values in by_worker.values():
            for k, v in values.items():
                out[k] = out.get(k, 0.0) + v
        return out


def parse_metrics(body: str) -> dict[str, dict[str, float]]:
    """Prometheus text -> {worker label: {metric: value summed over its other labels}}."""
    out: dict[str, dict[str, float]] = {}
    for line in body.splitlines():
        if m := _METRIC.match(line):
            with contextlib.suppress(ValueError, IndexError):
                w = _WORKER.search(m.group(0))
                d = out.setdefault(w.group(1) if w else "", {})
                d[m.group(1)] = d.get(m.group(1), 0.0) + float(line.rsplit(None, 1)[1])
    return out


#: every load generator connects from 127.0.0.1, so the relay's per-source limits (issue 10: a
#: flood from one address costs only that address) would measure themselves, not the data path
LOAD_TEST_LIMITS = ("--max-sessions-per-source", "100000", "--max-handshakes-per-second-per-source", "100000",
                    "--max-requests-per-second-per-source", "1000000", "--max-upstream-requests-per-source", "100000",
                    "--max-requests-per-second", "100000")


async def start_our_relay(procs: Procs, *flags: str, name: str = "relay") -> Relay:
    """`python -m relay.app` on free ports; a flag it rejects (e.g. --workers before it exists) raises BenchError."""
    http = free_port(socket.SOCK_STREAM)
    p = await procs.start(name, PYTHON, "-m", "relay.app", "--bind", "127.0.0.1:0", "--http", f"127.0.0.1:{http}",
                          "--log-level", "warning", "--drain-timeout", "1", *LOAD_TEST_LIMITS, *flags,
                          own_session=True)
    host = port = fp = None
    while port is None or fp is None:
        line = await p.line(30)
        if m := _QUIC.search(line):
            host, port = m.group(1), int(m.group(2))
        if m := _FP.search(line):
            fp = m.group(1).lower()
    p.drain_stdout()
    return Relay("ours", p, host, port, fp, http, "IETF moqt-18")


async def start_moqrs_relay(procs: Procs) -> Relay:
    p = await procs.loadgen("moq-rs relay", "moqrs_relay.py", "127.0.0.1:0", own_session=True)
    info = await p.json(30, "listening")
    host, _, port = info["listening"].rpartition(":")
    return Relay("moq-rs", p, host.strip("[]"), int(port), info["fingerprints"][0], None, "moq-lite")
