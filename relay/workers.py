"""moq-relay --workers N: one relay process per core behind one UDP port (DESIGN.md, Scale).

Why processes: one asyncio loop (and aioquic) saturates one core, so a relay that should use every
core runs N relays.  They bind the same UDP port with SO_REUSEPORT, and the kernel hashes each
datagram's 4-tuple to one of them, so a QUIC connection stays on one worker for its life.  QUIC
connection migration (a client whose address or port changes) is therefore NOT supported across
workers: after a NAT rebinding the new 4-tuple may hash to another worker, which does not know the
connection.  Likewise the hash changes when a socket leaves the group, so a worker keeps its socket
open until every worker has drained.  (Linux admits only sockets of the same user to the group.)

How tracks cross workers: like relays in a tree, and with the same code (relay/upstream.py).
Worker 0 is the hub: it also listens on a private loopback port (not the shared one, where a
connection would land on a random worker), and workers 1..N-1 take it as their `--upstream`,
pinned by the fingerprint of a per-run certificate of its own (the public one rotates; a pin ignores
expiry, so the link's certificate never needs to).  A publisher on worker 2 is announced to worker 0; a
subscriber on worker 1 routes to worker 0, which subscribes from worker 2; so a track enters each
worker once, and workers share no mutable state.  Worker 0 keeps the operator's --upstream, so the
machine is one node of a larger tree.  (A full mesh would save the hub hop, but the tree code
routes through one parent and never announces what it learned from one, so a mesh would need
relay changes; the hub costs one extra hop only between two non-hub workers.)

Certificates: with the dev certificate kept in --state-dir, every worker loads it from there and
runs the rotation itself (relay/state.py): they wake at the same announcement and switch times, the
first to take the directory's lock generates or promotes the next certificate and the others read
it, so each worker switches live at the switch time.  An operator's --cert/--key, or a certificate
that is not kept (--state-dir ''), is loaded once by this process and handed to the workers as files
in a private directory (mode 0700), with the hub link's key, removed as soon as every worker has
loaded them.  This process serves --http for all of them: /fingerprint merges the workers' documents
(the hashes any of them serves or announces; "current" is the oldest still served, so "next" is
announced until every worker has switched); /metrics merges each worker's metrics (fetched from the worker's
private 127.0.0.1 port) with a `worker="k"` label on every sample (sum them with
`sum without (worker)`), plus `moq_relay_workers` and `moq_relay_worker_up{worker}`; /healthz is 200
only while every worker answers 200.  SIGTERM/SIGINT are forwarded to every worker, each drains
with GOAWAY as a single relay does, and the supervisor exits 0 once all have.  A worker that dies
unexpectedly is logged (`worker_died`); the supervisor then drains the others and exits 1, leaving
the restart to the service manager: a lone restarted worker would re-hash the port's connections.
Every log line carries a `worker` field ("0".."N-1", "supervisor" for this process).

Workers are `python -m relay.workers SPEC` processes; they report to the supervisor with one-line
JSON messages on stdout, and a worker whose stdin reaches EOF (the supervisor released it, or died)
stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from moq.log import configure_logging
from moq.transport.loop import run
from moq.transport.tls import ServerCredentials

from .config import RelayConfig
from .http import start_http
from .state import load_credentials

log = structlog.get_logger("relay.workers")

MARK = "@moq-relay-worker "  # prefix of a worker's report lines on its stdout
START_TIMEOUT = 30.0  # for a worker to bind, and for workers 1.. to link to worker 0
RELEASE_TIMEOUT = 10.0  # after release (stdin EOF), for a worker to exit before it is killed
SCRAPE_TIMEOUT = 3.0


class LineLogger:
    """Writes each log line with one write(2) on stderr.  The workers and the supervisor share that
    file; structlog's PrintLogger makes two writes per line under PYTHONUNBUFFERED (usual in
    containers), so lines of different processes would interleave mid-line."""

    def __init__(self, fd: int = 2) -> None:
        self.fd = fd

    def msg(self, message: str) -> None:
        data = memoryview((message + "\n").encode(errors="replace"))
        with contextlib.suppress(OSError):
            while data:
                data = data[os.write(self.fd, data):]

    log = debug = info = warn = warning = error = critical = exception = fatal = failure = err = msg


def tag_logs(worker: str) -> None:
    """Add `worker` to every log line of this process, each line one write (after configure_logging)."""
    def add(_logger: Any, _method: str, event: dict) -> dict:
        event.setdefault("worker", worker)
        return event

    line = LineLogger()
    structlog.configure(processors=[add, *structlog.get_config()["processors"]], logger_factory=lambda *_: line)


# --- the worker side ----------------------------------------------------------------------------
@dataclass
class WorkerRole:
    """What makes serve_relay a worker: reports on stdout, release on stdin EOF, link-aware drain."""

    index: int
    hub: bool
    link: ServerCredentials | None = None  # worker 0: the certificate of its private port for the others' links
    released: asyncio.Event = field(default_factory=asyncio.Event)

    @staticmethod
    def report(event: str, **info: Any) -> None:
        print(MARK + json.dumps({"event": event, **info}), flush=True)

    def linked(self, relay: Any) -> bool:
        """Workers 1.. are healthy only while linked to worker 0 (worker 0's operator upstream is
        not a health condition, as for a single relay)."""
        link = relay.upstream
        return self.index == 0 or link is not None and link.conn is not None and not link.conn.is_closed

    async def started(self, relay: Any, stop: asyncio.Event, *, port: int, hub: int | None, http: int) -> None:
        loop = asyncio.get_running_loop()

        def watch_stdin() -> None:  # EOF: released after the drain, or the supervisor is gone
            with contextlib.suppress(OSError, ValueError):
                while sys.stdin.buffer.read(4096):
                    pass
            loop.call_soon_threadsafe(self.released.set)
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=watch_stdin, name="supervisor-watch", daemon=True).start()
        if self.index > 0 and relay.upstream is not None:
            async with asyncio.timeout(START_TIMEOUT):
                await relay.upstream.connected.wait()
        self.report("ready", port=port, hub=hub, http=http, pid=os.getpid())
        log.info("worker_started", port=port, hub=hub, upstream=relay.config.upstream)

    async def drain(self, relay: Any, timeout: float) -> None:
        """relay.drain, ending early once only our own upstream link is left (an upstream link never
        leaves by itself, and worker 0 waits for the others' links); then hold the shared socket
        until the supervisor releases us, because closing it re-hashes the other workers' peers."""
        async def close_link_when_alone() -> None:
            while True:
                link = relay.upstream.conn if relay.upstream is not None else None
                if all(c.is_closed for c in relay.connections if c is not link):
                    if link is not None and not link.is_closed:
                        link.close(0, "worker drained")
                    return
                await asyncio.sleep(0.05)

        closer = asyncio.ensure_future(close_link_when_alone())
        try:
            await relay.drain(timeout)
        finally:
            closer.cancel()
        self.report("drained")
        log.info("worker_drained")
        await self.released.wait()


ENV_UPSTREAM_TOKEN = "MOQ_RELAY_UPSTREAM_TOKEN"


def config_to_json(cfg: RelayConfig) -> dict[str, Any]:
    def plain(v: Any) -> Any:
        return str(v) if isinstance(v, Path) else [plain(x) for x in v] if isinstance(v, tuple) else v

    # a secret stays off the workers' command lines (visible to local users): it goes in their environment
    return {f.name: plain(getattr(cfg, f.name)) for f in fields(cfg) if f.name != "upstream_token"}


def config_from_json(data: dict[str, Any]) -> RelayConfig:
    kinds = {f.name: f.metadata["kind"] for f in fields(RelayConfig)}
    def typed(k: str, v: Any) -> Any:
        if kinds[k] in ("paths", "strs"):  # repeatable options (--auth-key, --public)
            return tuple(Path(x) if kinds[k] == "paths" else x for x in v)
        return Path(v) if kinds[k] == "path" and v is not None else v

    return RelayConfig(**{k: typed(k, v) for k, v in data.items()})


def worker_main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    cfg = replace(config_from_json(spec["config"]), upstream_token=os.environ.get(ENV_UPSTREAM_TOKEN) or None)
    configure_logging(cfg.log_format, cfg.log_level)
    tag_logs(str(spec["index"]))
    from .app import serve_relay

    link = ServerCredentials.load(*spec["link"]) if spec.get("link") else None
    try:
        return run(serve_relay(cfg, worker=WorkerRole(spec["index"], hub=spec["index"] == 0, link=link)))
    except OSError as exc:  # e.g. the port is taken by a socket without SO_REUSEPORT
        log.error("worker_failed", error=str(exc), bind=cfg.bind)
        return 1


# --- the supervisor side --------------------------------------------------------------------------
def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def worker_config(cfg: RelayConfig, index: int, port: int, cert: Path | None, key: Path | None,
                  hub_url: str | None, fingerprint: str) -> RelayConfig:
    """Worker k's configuration: the shared port, the certificate files (None: the --state-dir's dev
    certificate, rotated by each worker), no --http, and for k > 0 worker 0 as its only upstream,
    pinned to the link certificate (the one place to change when --upstream becomes a list)."""
    changes: dict[str, Any] = dict(bind=_hostport(cfg.bind_address[0], port), cert=cert, key=key, http=None,
                                   workers=1, node_name=f"{cfg.node_name}-w{index}")
    if index > 0:
        changes.update(upstream=hub_url, upstream_fingerprint=fingerprint)
    return replace(cfg, **changes)


class WorkerProcess:
    def __init__(self, index: int, proc: asyncio.subprocess.Process) -> None:
        self.index = index
        self.proc = proc
        self.ready: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
        self.drained = asyncio.Event()
        self.http_port = 0
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := (await self.proc.stdout.readline()).decode(errors="replace"):
            if not line.startswith(MARK):
                sys.stdout.write(line)  # a stray print in a worker: pass it on
                continue
            msg = json.loads(line[len(MARK):])
            if msg["event"] == "ready" and not self.ready.done():
                self.http_port = msg["http"]
                self.ready.set_result(msg)
            elif msg["event"] == "drained":
                self.drained.set()
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"worker {self.index} exited before it was ready"))

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def signal(self, sig: int) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def release(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    """One GET to a worker's private HTTP port: (status, body)."""
    async with asyncio.timeout(SCRAPE_TIMEOUT):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            data = await reader.read()
        finally:
            writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def merge_metrics(texts: dict[int, str], extra: tuple[Metric, ...] = ()) -> bytes:
    """Workers' Prometheus texts as one exposition, each sample labelled worker="k"."""
    merged: dict[str, Metric] = {}
    for index, text in texts.items():
        for fam in text_string_to_metric_families(text):
            into = merged.setdefault(fam.name, Metric(fam.name, fam.documentation, fam.type, fam.unit))
            into.samples += [s._replace(labels={"worker": str(index), **s.labels}) for s in fam.samples]

    class Merged:
        def collect(self):
            yield from extra
            yield from merged.values()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Merged())
    return generate_latest(registry)


def merge_fingerprints(docs: list[dict]) -> dict | None:
    """The workers' /fingerprint documents as one: every hash any worker serves or announces; as
    "current" the oldest one still served (a current that no worker announces as next), so around a
    switch, while some workers have switched and others not, the document stays the announcement."""
    if not docs:
        return None
    announced = {d["next"] for d in docs if d["next"]}
    base = next((d for d in docs if d["current"] not in announced), docs[0])
    hashes = list(dict.fromkeys(h for d in (base, *docs) for h in d["hashes"]))
    return {**base, "hashes": hashes, "next": next((h for h in hashes if h != base["current"]), None)}


class Supervisor:
    def __init__(self, cfg: RelayConfig) -> None:
        self.cfg = cfg
        self.count = cfg.worker_count
        self.workers: list[WorkerProcess] = []
        self.stop = asyncio.Event()
        self.content_type = CONTENT_TYPE_LATEST
        self.clean = True  # every worker exited 0 (or, stopped during startup, by our SIGTERM)

    # /metrics and /healthz for every worker
    async def render(self) -> bytes:
        ports = [w.http_port for w in self.workers]
        got = await asyncio.gather(*(http_get(p, "/metrics") for p in ports), return_exceptions=True)
        texts = {k: r[1].decode() for k, r in enumerate(got) if not isinstance(r, BaseException) and r[0] == 200}
        n = GaugeMetricFamily("moq_relay_workers", "Worker processes configured (--workers).", value=self.count)
        up = GaugeMetricFamily("moq_relay_worker_up", "1 if the worker answered this scrape.", labels=["worker"])
        for k in range(len(ports)):
            up.add_metric([str(k)], 1 if k in texts else 0)
        return merge_metrics(texts, (n, up))

    async def healthy(self) -> bool:
        if self.stop.is_set() or len(self.workers) < self.count or not all(w.alive for w in self.workers):
            return False
        got = await asyncio.gather(*(http_get(w.http_port, "/healthz") for w in self.workers),
                                   return_exceptions=True)
        return all(not isinstance(r, BaseException) and r[0] == 200 for r in got)

    # lifecycle
    async def fingerprint(self) -> dict | None:
        """/fingerprint: the workers' documents merged (None, a 503, if none answered)."""
        got = await asyncio.gather(*(http_get(w.http_port, "/fingerprint?format=json") for w in self.workers),
                                   return_exceptions=True)
        return merge_fingerprints([json.loads(r[1]) for r in got if not isinstance(r, BaseException) and r[0] == 200])

    async def _spawn(self, index: int, cfg: RelayConfig, link: tuple[Path, Path] | None = None) -> WorkerProcess:
        spec = json.dumps({"index": index, "config": config_to_json(cfg), "link": link and [str(p) for p in link]})
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "relay.workers", spec, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            start_new_session=True)  # signals come from us only (a terminal's Ctrl-C reaches the supervisor)
        w = WorkerProcess(index, proc)
        self.workers.append(w)
        return w

    async def _ready(self, w: WorkerProcess) -> dict:
        stop = asyncio.ensure_future(self.stop.wait())
        try:
            done, _ = await asyncio.wait([w.ready, stop], timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if w.ready in done:
            return w.ready.result()  # raises if the worker exited first
        raise RuntimeError("stopped during startup" if self.stop.is_set() else
                           f"worker {w.index} not ready within {START_TIMEOUT} s")

    async def run(self) -> int:
        cfg = self.cfg
        # --cert/--key, a fresh certificate (handed to the workers as files), or the dev certificate kept in
        # --state-dir (loaded here to fail early and for the banner; each worker loads and rotates it itself)
        creds, store, _ = load_credentials(cfg.cert, cfg.key, cfg.state_dir)
        link = ServerCredentials.dev(("127.0.0.1",))  # worker 0's private port, pinned by the other workers
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        secrets = Path(tempfile.mkdtemp(prefix="moq-relay-workers-"))  # mkdtemp: mode 0700
        http = None
        code = 0
        try:
            files = {secrets / "link-cert.pem": link.cert_pem, secrets / "link-key.pem": link.key_pem}
            cert, key = (None, None) if store is not None else (secrets / "cert.pem", secrets / "key.pem")
            if cert is not None and key is not None:
                files.update({cert: creds.cert_pem, key: creds.key_pem})
            for path, data in files.items():
                with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
                    fh.write(data)
            host, port = cfg.bind_address
            try:
                first = await self._ready(await self._spawn(0, worker_config(cfg, 0, port, cert, key, None, ""),
                                                            (secrets / "link-cert.pem", secrets / "link-key.pem")))
                hub_url = f"moqt://127.0.0.1:{first['hub']}/"
                rest = [await self._spawn(k, worker_config(cfg, k, first["port"], cert, key, hub_url,
                                                           link.fingerprint)) for k in range(1, self.count)]
                infos = [first, *await asyncio.gather(*(self._ready(w) for w in rest))]
            except RuntimeError as exc:
                if not self.stop.is_set():
                    log.error("workers_failed_to_start", error=str(exc))
                    code = 1
                return code
            shutil.rmtree(secrets, ignore_errors=True)  # every worker holds the key in memory now
            if cfg.http_address is not None:
                from .app import default_web_root

                hh, hp = cfg.http_address
                http = await start_http(hh, hp, fingerprint=self.fingerprint, metrics=self,
                                        web_root=cfg.web_root or default_web_root(), health=self.healthy)
            self._banner(host, first["port"], creds.fingerprint, http, [i["pid"] for i in infos])
            code = await self._watch()
            return code
        finally:
            await self._shutdown()
            shutil.rmtree(secrets, ignore_errors=True)
            if http is not None:
                http.close()
            log.info("supervisor_stopped", code=code)

    def _banner(self, host: str, port: int, fingerprint: str, http: asyncio.Server | None, pids: list[int]) -> None:
        from .app import _url_host

        uh, cfg = _url_host(host), self.cfg
        print(f"moq-relay {cfg.node_name}: listening on udp {host}:{port}", flush=True)
        print(f"  workers:      {self.count} (pids {' '.join(map(str, pids))})", flush=True)
        print(f"  raw QUIC:     moqt://{uh}:{port}/", flush=True)
        print(f"  WebTransport: https://{uh}:{port}/", flush=True)
        print(f"  certificate sha256: {fingerprint}", flush=True)
        if http is not None:
            hh, hp = http.sockets[0].getsockname()[:2]
            print(f"  http:         http://{_url_host(hh)}:{hp}/ (/fingerprint /metrics /healthz)", flush=True)
        if cfg.upstream:
            print(f"  upstream:     {cfg.upstream}", flush=True)
        log.info("relay_started", bind=f"{host}:{port}", http=cfg.http, node=cfg.node_name, workers=self.count)

    async def _watch(self) -> int:
        """Until SIGTERM/SIGINT (0) or a worker's unexpected exit (1)."""
        stop = asyncio.ensure_future(self.stop.wait())
        exits = {asyncio.ensure_future(w.proc.wait()): w for w in self.workers}
        done, _ = await asyncio.wait([stop, *exits], return_when=asyncio.FIRST_COMPLETED)
        for f in (stop, *exits):
            f.cancel()
        dead = [w for f, w in exits.items() if f in done or not w.alive]
        if not dead:
            return 0
        for w in dead:
            log.error("worker_died", dead_worker=str(w.index), pid=w.proc.pid, returncode=w.proc.returncode,
                      action="draining the other workers, then exiting 1")
        return 1

    async def _shutdown(self) -> None:
        """Forward SIGTERM; once every worker has drained (or exited), release them all together."""
        alive = [w for w in self.workers if w.alive]
        if alive:
            log.info("workers_draining", workers=len(alive), timeout_s=self.cfg.drain_timeout)
        for w in alive:
            w.signal(signal.SIGTERM)

        async def settled(w: WorkerProcess) -> None:
            drained = asyncio.ensure_future(w.drained.wait())
            await asyncio.wait([drained, asyncio.ensure_future(w.proc.wait())], return_when=asyncio.FIRST_COMPLETED)
            drained.cancel()

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.cfg.drain_timeout + START_TIMEOUT):
                await asyncio.gather(*(settled(w) for w in alive))
        for w in self.workers:
            w.release()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RELEASE_TIMEOUT):
                await asyncio.gather(*(w.proc.wait() for w in self.workers))
        for w in self.workers:
            if w.alive:
                log.error("worker_killed", dead_worker=str(w.index), pid=w.proc.pid, reason="did not exit")
                w.proc.kill()
                await w.proc.wait()
            w.reader.cancel()
        bad = [w.index for w in self.workers if w.proc.returncode not in (0, -signal.SIGTERM)]
        if bad:
            self.clean = False
            log.error("workers_failed", workers=bad)


async def supervise(cfg: RelayConfig) -> int:
    """The --workers entry point (relay.app.main): run cfg.worker_count workers until SIGTERM/SIGINT."""
    tag_logs("supervisor")
    from .auth import ENV_INTERNAL, internal_secret  # with --auth-*: the workers' links to worker 0 authorize

    os.environ.setdefault(ENV_INTERNAL, internal_secret())  # by a per-run secret in their environment
    if cfg.upstream_token:  # worker 0's --upstream-token, by environment rather than argv
        os.environ[ENV_UPSTREAM_TOKEN] = cfg.upstream_token
    sup = Supervisor(cfg)
    code = await sup.run()
    return code if sup.clean else 1


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
