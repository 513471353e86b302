"""Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe):
no browser download, no websocket library, only Debian's /usr/bin/chromium.

    with Chromium(tmp_path) as browser:
        page = browser.open("http://127.0.0.1:8080/")
        page.evaluate("window.moqStats.framesDecoded")
        page.screenshot(tmp_path / "page.png")

Chromium reads CDP messages (JSON, NUL-terminated) on fd 3 and writes replies on fd 4.
A reader thread collects replies by id and keeps console messages and exceptions for
failure reports.  The process is killed on exit whatever happened.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

# Flags that work as root in a container (DESIGN.md, "Chrome WebTransport to an aioquic server works").
# Never --disable-quic: WebTransport runs over QUIC.
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required", "--disable-renderer-backgrounding",
    "--disable-background-timer-throttling", "--disable-backgrounding-occluded-windows",
    "--window-size=1280,720", "--remote-debugging-pipe",
]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class CDPError(RuntimeError):
    pass


def _above_4(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Chromium:
    def __init__(self, tmp: Path, executable: str | None = None, extra_flags: list[str] | None = None) -> None:
        self.executable = executable or find_chromium()
        if self.executable is None:
            raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
        self.tmp = Path(tmp)
        self.flags = FLAGS + (extra_flags or [])
        self.proc: subprocess.Popen | None = None
        self._next_id = 0
        self._lock = threading.Lock()
        self._replies: dict[int, dict] = {}
        self._cond = threading.Condition()
        self.console: list[str] = []
        self._closed = False

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> Chromium:
        profile = self.tmp / "chromium-profile"
        profile.mkdir(parents=True, exist_ok=True)
        # our ends stay here; the child's ends are moved above 4 so that mapping them onto
        # fds 3 and 4 cannot clobber one another
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        to_chrome_r, from_chrome_w = _above_4(to_chrome_r), _above_4(from_chrome_w)
        self.log_path = self.tmp / "chromium.log"
        log = open(self.log_path, "wb")
        # bash maps the pipe ends onto fds 3 and 4 and execs chromium (dash cannot redirect fds > 9)
        script = f'exec "$0" "$@" 3<&{to_chrome_r} 4>&{from_chrome_w} {to_chrome_r}<&- {from_chrome_w}>&-'
        try:
            self.proc = subprocess.Popen(
                ["bash", "-c", script, self.executable, *self.flags, f"--user-data-dir={profile}", "about:blank"],
                pass_fds=(to_chrome_r, from_chrome_w), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )
        finally:
            os.close(to_chrome_r)
            os.close(from_chrome_w)
            log.close()
        self._out = os.fdopen(to_chrome_w, "wb", buffering=0)
        self._in = os.fdopen(from_chrome_r, "rb", buffering=0)
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        self.version = self.call("Browser.getVersion", timeout=30)
        return self

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self._send({"id": self._new_id(), "method": "Browser.close"})
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, 9)  # chromium and its helpers: a session we started
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(5)
        for f in (getattr(self, "_out", None), getattr(self, "_in", None)):
            with contextlib.suppress(Exception):
                f.close()

    def __enter__(self) -> Chromium:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # --- protocol -------------------------------------------------------------------------
    def _new_id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id

    def _send(self, msg: dict) -> None:
        self._out.write(json.dumps(msg).encode() + b"\0")

    def _read_loop(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self._in.read(65536)
            except (OSError, ValueError):
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cond:
                        self._replies[msg["id"]] = msg
                        self._cond.notify_all()
                else:
                    self._event(msg)
        with self._cond:
            self._closed_pipe = True
            self._cond.notify_all()

    def _event(self, msg: dict) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console.append(f"console.{params.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            self.console.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
        elif method == "Log.entryAdded":
            e = params.get("entry", {})
            self.console.append(f"log.{e.get('level')}: {e.get('text')} {e.get('url', '')}")

    def call(self, method: str, params: dict | None = None, session_id: str | None = None, timeout: float = 10.0):
        mid = self._new_id()
        msg: dict = {"id": mid, "method": method, "params": params or {}}
        if session_id:
            msg["sessionId"] = session_id
        self._send(msg)
        deadline = time.monotonic() + timeout
        with self._cond:
            while mid not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or getattr(self, "_closed_pipe", False):
                    raise CDPError(f"{method}: no reply in {timeout} s")
                self._cond.wait(left)
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def open(self, url: str) -> Page:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, target, session)
        for domain in ("Runtime", "Page", "Log"):
            self.call(f"{domain}.enable", session_id=session)
        page.navigate(url)
        return page


class Page:
    def __init__(self, browser: Chromium, target_id: str, session_id: str) -> None:
        self.browser = browser
        self.target_id = target_id
        self.session_id = session_id

    def call(self, method: str, params: dict | None = None, timeout: float = 10.0):
        return self.browser.call(method, params, self.session_id, timeout)

    def navigate(self, url: str) -> None:
        result = self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CDPError(f"navigate {url}: {result['errorText']}")

    def evaluate(self, expression: str, timeout: float = 10.0):
        """The JSON value of `expression` (promises are awaited)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                           timeout=timeout)
        if "exceptionDetails" in result:
            d = result["exceptionDetails"]
            raise CDPError(f"evaluate: {d.get('exception', {}).get('description') or d.get('text')}")
        return result.get("result", {}).get("value")

    def press_key(self, key: str) -> None:
        base = {"key": key, "code": f"Key{key.upper()}", "windowsVirtualKeyCode": ord(key.upper())}
        self.call("Input.dispatchKeyEvent", {"type": "keyDown", "text": key, **base})
        self.call("Input.dispatchKeyEvent", {"type": "keyUp", **base})

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", {"format": "png"}, timeout=20)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        with contextlib.suppress(CDPError):
            self.browser.call("Target.closeTarget", {"targetId": self.target_id})
