"""A real `python -m publisher` process and a library subscriber for the publisher tests."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from moq import api
from moq.connection import RequestRejectedError
from moq.media.catalog import Catalog
from moq.media.loc import LocProperties
from moq.wire.types import namespace_from_str
from tests.relay.relayproc import ROOT, python_env


class PublisherProcess:
    """`python -m publisher URL --namespace NS ...`; output in temporary files; always killed."""

    def __init__(self, url: str, namespace: str, *flags: str, fingerprint: str | None = None) -> None:
        self.cmd = [sys.executable, "-m", "publisher", url, "--namespace", namespace, "--log-format", "json", *flags]
        if fingerprint:
            self.cmd += ["--fingerprint", fingerprint]
        self._out = tempfile.NamedTemporaryFile(prefix="moq-publish-", suffix=".out", delete=False)
        self._err = tempfile.NamedTemporaryFile(prefix="moq-publish-", suffix=".err", delete=False)
        self.proc: subprocess.Popen | None = None
        self._kept: dict[str, str] = {}  # the output, once the files are gone

    def __enter__(self) -> PublisherProcess:
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=python_env(), stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=self._err)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        self._kept = {"out": self.stdout(), "err": self.stderr()}
        for f in (self._out, self._err):
            f.close()
            with contextlib.suppress(OSError):
                Path(f.name).unlink()

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and the exit code (None if it hung; then it is killed)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None

    def stdout(self) -> str:
        return self._kept.get("out") or Path(self._out.name).read_text(errors="replace")

    def stderr(self) -> str:
        return self._kept.get("err") or Path(self._err.name).read_text(errors="replace")

    def output(self) -> str:
        return f"--- stdout\n{self.stdout()[-3000:]}\n--- stderr\n{self.stderr()[-5000:]}"

    def wait_log(self, event: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if f'"event": "{event}"' in self.stderr():
                return True
            if self.proc is not None and self.proc.poll() is not None:
                return f'"event": "{event}"' in self.stderr()
            time.sleep(0.1)
        return False


@dataclass
class Received:
    track: str
    group: int
    object: int
    size: int
    props: LocProperties
    payload: bytes = b""
    at: int = 0  # when it arrived, wall-clock µs


@dataclass
class Collected:
    objects: list[Received] = field(default_factory=list)
    catalogs: list[Catalog] = field(default_factory=list)

    def track(self, name: str) -> list[Received]:
        return [o for o in self.objects if o.track == name]

    def groups(self, name: str) -> list[int]:
        out: list[int] = []
        for o in self.track(name):
            if not out or out[-1] != o.group:
                out.append(o.group)
        return out


async def subscribe_retry(conn, ns, name: bytes, timeout: float):
    """SUBSCRIBE, retried while the relay does not know the namespace yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await conn.subscribe(ns, name)
        except RequestRejectedError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def collect(url: str, fingerprint: str, namespace: str, seconds: float, *, tracks=("catalog", "video", "audio"),
                  until=None, keep_payload: bool = False, wait: float = 15.0) -> Collected:
    """Subscribe (catalog with a joining FETCH for the current catalog) and gather what
    arrives for `seconds`, or until `until(collected)` is true."""
    ns = namespace_from_str(namespace)
    out = Collected()
    conn = await api.connect(url, fingerprint=fingerprint)
    try:
        subs = {name: await subscribe_retry(conn, ns, name.encode(), wait) for name in tracks}
        done = asyncio.Event()

        def add(name: str, obj) -> None:
            payload = bytes(obj.payload)
            if name == "catalog":
                out.catalogs.append(Catalog.decode(payload))
            out.objects.append(Received(name, obj.group_id, obj.object_id, len(payload),
                                        LocProperties.decode(obj.properties),
                                        payload if keep_payload or name == "catalog" else b"", time.time_ns() // 1000))
            if until is not None and until(out):
                done.set()

        async def read(name: str) -> None:
            if name == "catalog":
                with contextlib.suppress(RequestRejectedError):
                    async for obj in await conn.joining_fetch(subs[name], 0):
                        add(name, obj)
            async for obj in subs[name]:
                add(name, obj)

        tasks = [asyncio.create_task(read(n)) for n in subs]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), seconds)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.aclose(), 3)
    return out
