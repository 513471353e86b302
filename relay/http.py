"""The relay's plain-HTTP side door: /fingerprint, /metrics, /healthz and the static web viewer.

A page needs the dev certificate's SHA-256 before it can open WebTransport (Chrome's
serverCertificateHashes), Prometheus needs a scrape target and an orchestrator a health probe. That is
a handful of GETs, so this is a deliberately tiny HTTP/1.1 server on asyncio streams rather than a web
framework: one request per connection, bounded head size and read time, GET and HEAD only.
`metrics.render()` and `health()` may return awaitables: the --workers supervisor answers them by
asking its workers (relay/workers.py).

/fingerprint answers the current certificate's hex SHA-256 as plain text, as it always has; a request
with `Accept: application/json` (or `?format=json`) gets the rotation document instead:
{"current": HEX, "next": HEX or null, "hashes": [current, next], "expires": ISO, "switch_at": ISO or null},
so a page can pin both certificates across a switch (relay/state.py).  The --workers supervisor
builds that document from its workers' (an awaitable; None when none answered: 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import structlog

log = structlog.get_logger(__name__)

MAX_HEAD = 8192  # request line + headers; a browser GET is well under 2 KiB
READ_TIMEOUT = 5.0
WRITE_TIMEOUT = 30.0
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".txt": "text/plain; charset=utf-8",
    ".ico": "image/x-icon",
}
_TEXT = "text/plain; charset=utf-8"

Response = tuple[int, dict[str, str], bytes]
Health = Callable[[], bool | Awaitable[bool]]
Fingerprint = str | Callable[[], dict | Awaitable[dict | None]]  # a fixed hash, or the rotation document's source


class MetricsSource(Protocol):
    """What /metrics serves: RelayMetrics, or the supervisor's view of all workers."""

    content_type: str

    def render(self) -> bytes | Awaitable[bytes]: ...


def _plain(status: int, text: str | None = None, **headers: str) -> Response:
    body = (text if text is not None else HTTPStatus(status).phrase + "\n").encode()
    return status, {"Content-Type": _TEXT, **headers}, body


class _Handler:
    """Routes one parsed request; built once per server, shared by its connections."""

    def __init__(self, fingerprint: Fingerprint, metrics: MetricsSource, web_root: Path | None,
                 health: Health, read_timeout: float) -> None:
        self.fingerprint = fingerprint
        self.metrics = metrics
        self.web_root = web_root.resolve() if web_root is not None else None
        self.health = health
        self.read_timeout = read_timeout

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method = "GET"
        try:
            try:
                async with asyncio.timeout(self.read_timeout):
                    head = await reader.readuntil(b"\r\n\r\n")
            except TimeoutError:
                resp = _plain(408)
            except asyncio.IncompleteReadError:
                return  # the client went away before finishing its request
            except asyncio.LimitOverrunError:
                resp = _plain(431)
            else:
                method, resp = await self._respond(head)
            async with asyncio.timeout(WRITE_TIMEOUT):  # a client that stops reading must not pin us
                await self._write(writer, method, resp)
        except (ConnectionError, TimeoutError):
            pass
        except Exception:  # a bug here must not take the relay down; log it and drop the connection
            log.exception("http_handler_failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _respond(self, head: bytes) -> tuple[str, Response]:
        try:
            method, target, version = head.split(b"\r\n", 1)[0].decode("ascii").split(" ")
        except (UnicodeDecodeError, ValueError):
            return "GET", _plain(400)
        if version not in ("HTTP/1.0", "HTTP/1.1"):
            return "GET", _plain(400)
        if method not in ("GET", "HEAD"):
            return "GET", _plain(405, Allow="GET, HEAD")
        if target.startswith(("http://", "https://")):  # absolute-form, as sent to proxies
            target = urlsplit(target).path or "/"
        if not target.startswith("/"):
            return method, _plain(400)
        path, _, query = target.split("#", 1)[0].partition("?")
        if path == "/fingerprint":
            return method, await self._fingerprint(head, query)
        return method, await self._route(path)

    async def _fingerprint(self, head: bytes, query: str) -> Response:
        doc = self.fingerprint() if callable(self.fingerprint) else {
            "current": self.fingerprint, "next": None, "hashes": [self.fingerprint], "expires": None,
            "switch_at": None}
        if inspect.isawaitable(doc):
            doc = await doc
        headers = {"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store", "Vary": "Accept"}
        if doc is None:
            return _plain(503, "unavailable\n", **headers)
        accept = b"".join(line.split(b":", 1)[1] for line in head.split(b"\r\n")[1:]
                          if line[:7].lower() == b"accept:")
        if b"application/json" in accept.lower() or "format=json" in query.split("&"):
            return 200, {"Content-Type": "application/json", **headers}, json.dumps(doc).encode()
        return _plain(200, doc["current"], **headers)

    async def _route(self, path: str) -> Response:
        if path == "/metrics":
            body = self.metrics.render()
            if inspect.isawaitable(body):
                body = await body
            return 200, {"Content-Type": self.metrics.content_type, "Cache-Control": "no-store"}, body
        if path == "/healthz":
            try:
                ok = self.health()
                ok = bool(await ok) if inspect.isawaitable(ok) else bool(ok)
            except Exception:
                log.exception("health_check_failed")
                ok = False
            return _plain(200, "ok\n") if ok else _plain(503, "unavailable\n")
        file = self._static_file(path)
        if file is None:
            return _plain(404)
        try:
            body = await asyncio.to_thread(file.read_bytes)
        except OSError:
            return _plain(404)
        ctype = CONTENT_TYPES.get(file.suffix.lower(), "application/octet-stream")
        return 200, {"Content-Type": ctype, "Cache-Control": "no-cache"}, body

    def _static_file(self, path: str) -> Path | None:
        """The file under web_root for a URL path, or None; refuses anything that could escape the root."""
        if self.web_root is None:
            return None
        try:
            decoded = unquote(path, errors="strict")
        except UnicodeDecodeError:
            return None
        if "\\" in decoded or "\0" in decoded:
            return None
        parts = [p for p in decoded.split("/") if p]
        if any(p.startswith(".") for p in parts):  # "..", "." and hidden files such as .git
            return None
        file = self.web_root.joinpath(*parts)
        if decoded.endswith("/") or not parts:
            file = file / "index.html"
        try:
            file = file.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not file.is_relative_to(self.web_root) or not file.is_file():
            return None  # a symlink pointing out of the root, or a directory
        return file

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, method: str, resp: Response) -> None:
        status, headers, body = resp
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "Server: moq-relay",
                 f"Content-Length: {len(body)}", "Connection: close", "X-Content-Type-Options: nosniff"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if method != "HEAD":
            writer.write(body)
        await writer.drain()


async def start_http(host: str, port: int, *, fingerprint: Fingerprint, metrics: MetricsSource, web_root: Path | None,
                     health: Health, read_timeout: float = READ_TIMEOUT) -> asyncio.Server:
    """Listen on host:port (port 0 picks a free one; see server.sockets) and serve until closed.

    Close with `server.close(); await server.wait_closed()`; each connection ends by itself within
    read_timeout, so no handler outlives the server for long.  `fingerprint` is the certificate's hash,
    or a function returning the /fingerprint JSON document (a rotating dev certificate).
    """
    handler = _Handler(fingerprint, metrics, web_root, health, read_timeout)
    return await asyncio.start_server(handler, host, port, limit=MAX_HEAD)
