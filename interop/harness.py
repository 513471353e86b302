"""Running independent MoQ peers as real processes (their own venv), bounded in time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = Path(__file__).resolve().parent / "peers"
#: moq-rs (PyPI) lives in its own venv: its import name `moq` would shadow ours
INTEROP_PYTHON = Path(os.environ.get("MOQ_INTEROP_PYTHON", ROOT / ".venv-interop" / "bin" / "python"))


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Peer:
    """A subprocess printing JSON lines on stdout; killed on exit."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.lines: list[dict] = []

    async def read_json(self, timeout: float) -> dict | None:
        """Next JSON line (non-JSON lines are skipped); None at EOF."""
        while True:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)  # type: ignore[union-attr]
            if not raw:
                return None
            with contextlib.suppress(ValueError):
                item = json.loads(raw)
                self.lines.append(item)
                return item

    async def stderr_tail(self) -> str:
        if self.proc.returncode is None:
            self.proc.kill()
        try:
            data = await asyncio.wait_for(self.proc.stderr.read(), 5)  # type: ignore[union-attr]
        except TimeoutError:
            return ""
        return data.decode(errors="replace")[-3000:]


@contextlib.asynccontextmanager
async def run_peer(script: str, *args: str, python: Path | str = INTEROP_PYTHON, timeout: float = 60):
    cmd = [str(python), str(PEERS / script), *args] if script.endswith(".py") else [script, *args]
    env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn"), "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=str(ROOT)
    )
    peer = Peer(proc, script)
    killer = asyncio.get_running_loop().call_later(timeout, proc.kill)
    try:
        yield peer
    finally:
        killer.cancel()
        if proc.returncode is None:
            proc.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 10)


def interop_available() -> bool:
    return INTEROP_PYTHON.exists()


__all__ = ["Peer", "free_udp_port", "run_peer", "interop_available", "sys"]
