"""moq-relay: a caching, fan-out MoQ relay; raw QUIC and WebTransport on one UDP port.

Configuration precedence: defaults < TOML file (--config) < MOQ_RELAY_* environment < flags.
SIGTERM or SIGINT starts a graceful drain: GOAWAY to every session, up to --drain-timeout
seconds for them to leave, then exit 0.  `--workers N` (N > 1, or auto) runs N of these relays
as worker processes behind one UDP port under a supervisor: see relay/workers.py.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from moq import versions
from moq.connection import Connection
from moq.log import configure_logging
from moq.session import SessionConfig
from moq.token import redact
from moq.transport import endpoint
from moq.transport.admission import SourceLimits
from moq.transport.loop import run, settle_heap
from moq.transport.tls import ServerCredentials

from .auth import Authorizer
from .config import ConfigError, RelayConfig, build_parser, load_config
from .http import start_http
from .liveness import PeerWatch
from .metrics import RelayMetrics
from .relay import Relay
from .state import Rotation, StateError, fingerprint_document, load_credentials

if TYPE_CHECKING:
    from .workers import WorkerRole

log = structlog.get_logger("relay")


def default_web_root() -> Path | None:
    """The web viewer shipped with the package (viewer/web), served at / on --http."""
    import viewer

    root = Path(viewer.__file__).resolve().parent / "web"
    return root if (root / "index.html").is_file() else None


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1" if host != "::" else "[::1]"
    return f"[{host}]" if ":" in host else host


async def _listen(host: str, port: int, creds: ServerCredentials, relay: Relay, on_connection, session_config,
                  reuse_port: bool, limits: SourceLimits | None = None, retry: bool = False) -> endpoint.Server:
    """What api.serve does, plus SO_REUSEPORT for workers, per-source limits and QUIC Retry
    (moq.transport.admission: checked at a connection's first packet, before any TLS work)."""

    async def on_session(transport) -> None:  # what api.serve does per session
        conn = Connection(transport, handler=relay, config=session_config())
        try:
            await conn.ready()
        except Exception:
            conn.close()
            return
        on_connection(conn)
        await conn.wait_closed()

    return await endpoint.serve(host, port, creds, on_session, alpns=versions.SUPPORTED_ALPNS, reuse_port=reuse_port,
                                limits=limits, retry=retry)


async def serve_relay(cfg: RelayConfig, *, ready: asyncio.Event | None = None, worker: WorkerRole | None = None
                      ) -> int:
    """Run one relay until SIGTERM/SIGINT, then drain; `worker` is set in a --workers worker process."""
    try:  # --cert/--key, else the dev certificate kept in --state-dir (relay/state.py)
        creds, store, certs = await asyncio.to_thread(load_credentials, cfg.cert, cfg.key, cfg.state_dir)
    except StateError as exc:
        print(f"moq-relay: {exc} (choose another --state-dir, or --state-dir '' for a certificate that is "
              "not kept)", file=sys.stderr, flush=True)
        return 2
    metrics = RelayMetrics()
    try:  # --auth-key / --auth-secret-file / MOQ_RELAY_AUTH_SECRET (relay/auth.py)
        auth = Authorizer.from_config(cfg, on_refused=metrics.requests_refused.labels(reason="unauthorized").inc)
    except ValueError as exc:
        print(f"moq-relay: {exc}", file=sys.stderr, flush=True)
        return 2
    auth.log_mode()
    relay = Relay(cfg, metrics, auth)
    metrics.observe(relay)
    host, port = cfg.bind_address
    full = 0

    def session_config() -> SessionConfig:
        return SessionConfig(implementation="moq-relay/0.1", max_incoming_requests=cfg.max_requests_per_session,
                             max_object_size=cfg.max_object_size)

    def on_connection(conn) -> None:
        nonlocal full
        if len(relay.connections) >= cfg.max_sessions:
            full += 1
            metrics.requests_refused.labels(reason="session_limit").inc()
            log.warning("session_refused", reason="max_sessions", peer=conn.transport.peer)
            conn.close(0x1, "relay is full")
            return
        if not auth.admit(conn):  # a bad or expired token in SETUP / ?jwt=: closed with the draft's code
            return
        relay.add_connection(conn)

    limits = SourceLimits(max_sessions=cfg.max_sessions_per_source,
                          handshakes_per_second=cfg.max_handshakes_per_second_per_source,
                          on_refused=lambda reason: metrics.connections_refused.labels(reason=reason).inc())
    server = await _listen(host, port, creds, relay, on_connection, session_config, reuse_port=worker is not None,
                           limits=limits, retry=cfg.retry)
    hub = None  # worker 0's private loopback port, where the other workers' upstream links arrive
    if worker is not None and worker.hub:
        def on_link(conn) -> None:  # another worker's link: exempt from the per-peer request limits
            relay.trust(conn)
            on_connection(conn)

        hub = await _listen("127.0.0.1", 0, worker.link or creds, relay, on_link, session_config,
                            reuse_port=False)  # its own certificate: the links' pin survives a rotation
    rotation = None
    if store is not None and certs is not None:
        rotation = Rotation(store, certs, server.set_credentials, log)
        rotating = asyncio.create_task(rotation.run(), name="certificate rotation")
    fingerprint = rotation.document if rotation is not None else (lambda: fingerprint_document(creds))
    stop = asyncio.Event()
    http = None
    if worker is not None:  # a private port: the supervisor serves --http for every worker
        http = await start_http("127.0.0.1", 0, fingerprint=fingerprint, metrics=metrics, web_root=None,
                                health=lambda: not stop.is_set() and worker.linked(relay))
    elif cfg.http_address is not None:
        hh, hp = cfg.http_address
        http = await start_http(hh, hp, fingerprint=fingerprint, metrics=metrics,
                                web_root=cfg.web_root or default_web_root(), health=lambda: not stop.is_set())
        hp = http.sockets[0].getsockname()[1]
    watch = asyncio.create_task(PeerWatch(relay, cfg.peer_timeout, metrics).run()) if cfg.peer_timeout else None
    if cfg.upstream:
        relay.start_upstream(cfg.upstream, cfg.upstream_fingerprint, token=auth.upstream_token(cfg, to_hub=worker is not None and worker.index > 0))
        link = relay.upstream

        async def stop_if_upstream_gives_up() -> None:  # a pinned parent changed certificate: exit 3
            await link.gave_up.wait()
            stop.set()

        relay.spawn(stop_if_upstream_gives_up())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    settle_heap()
    if worker is not None:
        await worker.started(relay, stop, port=server.port, hub=hub.port if hub else None,
                             http=http.sockets[0].getsockname()[1])
        return await _drain(cfg, relay, [server, hub, http], stop, worker)
    uh = _url_host(host)
    print(f"moq-relay {cfg.node_name}: listening on udp {host}:{server.port}", flush=True)
    print(f"  raw QUIC:     moqt://{uh}:{server.port}/", flush=True)
    print(f"  WebTransport: https://{uh}:{server.port}/", flush=True)
    print(f"  certificate sha256: {creds.fingerprint}", flush=True)
    if certs is not None:
        kept = "new, kept" if certs.generated else "kept"
        nxt = f"; next {certs.next.fingerprint[:16]}… from {certs.switch_at:%Y-%m-%d %H:%M} UTC" if certs.next else ""
        print(f"  certificate:  dev ({kept} in {cfg.state_dir}), expires {certs.current.not_after:%Y-%m-%d}{nxt}",
              flush=True)
    if http is not None:
        print(f"  http:         http://{_url_host(hh)}:{hp}/ (/fingerprint /metrics /healthz)", flush=True)
    if cfg.upstream:
        print(f"  upstream:     {redact(cfg.upstream)}", flush=True)
    log.info("relay_started", bind=f"{host}:{server.port}", http=cfg.http, node=cfg.node_name)
    if ready is not None:
        ready.set()
    try:
        code = await _drain(cfg, relay, [server, http], stop, None)
        if relay.upstream is not None and relay.upstream.failure:
            print(f"moq-relay: {relay.upstream.failure}", file=sys.stderr, flush=True)
            return 3
        return code
    finally:
        for task in (rotating if rotation is not None else None, watch):
            if task is not None:
                task.cancel()


async def _drain(cfg: RelayConfig, relay: Relay, servers: list, stop: asyncio.Event, worker: WorkerRole | None
                 ) -> int:
    """Wait for the stop signal, drain (GOAWAY, --drain-timeout), close the listeners."""
    await stop.wait()
    log.info("relay_draining", sessions=len(relay.connections), timeout_s=cfg.drain_timeout)
    if worker is None:
        await relay.drain(cfg.drain_timeout)
    else:
        await worker.drain(relay, cfg.drain_timeout)  # keeps the shared port open until every worker drained
    for s in servers:
        if s is not None:
            s.close()
    try:
        await asyncio.wait_for(servers[0].wait_closed(), 2.0)
    except TimeoutError:
        pass
    log.info("relay_stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = load_config(argv)
    except ConfigError as exc:
        print(f"moq-relay: {exc}", file=sys.stderr)
        return 2
    configure_logging(cfg.log_format, cfg.log_level)
    if cfg.worker_count > 1:
        from .workers import supervise

        try:
            return run(supervise(cfg))
        except StateError as exc:
            print(f"moq-relay: {exc}", file=sys.stderr)
            return 2
    return run(serve_relay(cfg))


__all__ = ["main", "serve_relay", "build_parser"]

if __name__ == "__main__":
    sys.exit(main())
