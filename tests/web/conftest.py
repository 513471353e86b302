"""Fixtures for the browser tests: Debian's Chromium (installed by `make test` when missing),
one relay process serving viewer/web, and the test publisher."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time

import pytest

from tests.relay.relayproc import ROOT, RelayProcess, python_env

from .cdp import Chromium, find_chromium

WEB_ROOT = ROOT / "viewer" / "web"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if find_chromium() is None:  # `make test` installs it first; a bare pytest run may not have
        pytest.fail("chromium is not installed: run `make test` (it installs it) or apt-get install chromium")
    with Chromium(tmp_path_factory.mktemp("chromium")) as b:
        yield b


@pytest.fixture(scope="module")
def relay():
    with RelayProcess("--web-root", str(WEB_ROOT)) as r:
        yield r


class PublisherProcess:
    """`python -m tests.web.testpub` (or any publisher command) against the relay; always killed."""

    def __init__(self, cmd: list[str], ready_text: str | None = "publishing") -> None:
        self.cmd = cmd
        self.ready_text = ready_text
        self.lines: list[str] = []
        self.proc: subprocess.Popen | None = None
        self._ready = threading.Event()

    def start(self, timeout: float = 20.0) -> PublisherProcess:
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=python_env(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        threading.Thread(target=self._drain, daemon=True).start()
        if self.ready_text is not None and not self._ready.wait(timeout):
            self.kill()
            raise RuntimeError(f"publisher not ready in {timeout} s: {self.output()}")
        return self

    def _drain(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            for line in self.proc.stdout:  # type: ignore[union-attr]
                self.lines.append(line.rstrip("\n"))
                if self.ready_text is not None and self.ready_text in line:
                    self._ready.set()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return "\n".join(self.lines[-40:])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)

    def __enter__(self) -> PublisherProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def run_testpub(relay: RelayProcess, namespace: str, *extra: str) -> PublisherProcess:
    return PublisherProcess([sys.executable, "-m", "tests.web.testpub", relay.url("moqt"), "--fingerprint",
                             relay.fingerprint, "--namespace", namespace, "--duration", "120", *extra])


def page_url(relay: RelayProcess, namespace: str, **extra: str) -> str:
    query = f"url=https://127.0.0.1:{relay.port}/&namespace={namespace}"
    for k, v in extra.items():
        query += f"&{k}={v}"
    return f"http://127.0.0.1:{relay.http_port}/?{query}"


def wait_for(page, predicate_js: str, timeout: float, interval: float = 0.2):
    """Poll a JS expression until truthy; returns (value, seconds) or raises with the last stats."""
    start = time.monotonic()
    while True:
        value = page.evaluate(predicate_js)
        if value:
            return value, time.monotonic() - start
        if time.monotonic() - start > timeout:
            stats = page.evaluate("JSON.stringify(window.moqStats ?? null)")
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate_js}; moqStats = {stats}\n"
                                 + "\n".join(page.browser.console[-30:]))
        time.sleep(interval)


__all__ = ["PublisherProcess", "run_testpub", "page_url", "wait_for", "WEB_ROOT"]
