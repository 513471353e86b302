"""Entry points applications use: `connect()` to a MoQ server, `serve()` MoQ sessions.

    async with await moq.api.connect("moqt://127.0.0.1:4443/", insecure=True) as conn:
        sub = await conn.subscribe(namespace_from_str("live/demo"), b"video")
        async for obj in sub: ...
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from . import versions
from .connection import Connection, RequestHandler
from .session import SessionConfig
from .transport import endpoint
from .transport.tls import ServerCredentials


async def connect(url: str, *, fingerprint: str | None = None, insecure: bool = False, cafile: str | None = None,
                  handler: RequestHandler | None = None, config: SessionConfig | None = None,
                  timeout: float = 10.0, alpns: Sequence[str] = versions.SUPPORTED_ALPNS,
                  token: str | None = None) -> Connection:
    """Connect and complete SETUP.  `moqt://` = raw QUIC, `https://` = WebTransport.
    `token` (a JWT, see moq.token) goes in SETUP's AUTHORIZATION TOKEN option."""
    if token:
        config = config or SessionConfig()
        config.auth_token = token.strip().encode()
    transport = await endpoint.connect(url, fingerprint=fingerprint, insecure=insecure, cafile=cafile,
                                       alpns=alpns, timeout=timeout)
    conn = Connection(transport, config=config, handler=handler)
    try:
        await conn.ready(timeout)
    except BaseException:
        transport.close(0, "setup failed")
        raise
    return conn


OnConnection = Callable[[Connection], Awaitable[None] | None]


async def serve(host: str, port: int, *, credentials: ServerCredentials | None = None,
                handler: RequestHandler | Callable[[], RequestHandler] | None = None,
                on_connection: OnConnection | None = None, config: Callable[[], SessionConfig] | None = None,
                alpns: Sequence[str] = versions.SUPPORTED_ALPNS) -> endpoint.Server:
    """Accept MoQ sessions on one UDP port (raw QUIC and WebTransport).

    `handler` serves the peers' requests (one shared object, or a factory called per
    session); `on_connection(conn)` runs once SETUP completes (an awaitable runs as a task
    owned by the server).  Without credentials a development certificate is generated.
    """
    creds = credentials or ServerCredentials.dev()

    async def on_session(transport) -> None:
        h = handler() if callable(handler) and not hasattr(handler, "on_request") else handler
        conn = Connection(transport, handler=h, config=config() if config else None)  # type: ignore[arg-type]
        try:
            await conn.ready()
        except (TimeoutError, Exception):
            conn.close()
            return
        if on_connection is not None:
            result = on_connection(conn)
            if asyncio.iscoroutine(result):
                await result
        await conn.wait_closed()

    return await endpoint.serve(host, port, creds, on_session, alpns=alpns)
