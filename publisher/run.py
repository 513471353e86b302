"""A publishing session: connect to the relay, announce the namespace, pump the source's
packets (paced at real time) through the packager into the tracks, reconnect when the
relay goes away, show a status line, stop cleanly.

The `moq.broadcast.Publisher` serves SUBSCRIBE/FETCH for the `video`, `audio` and
`catalog` tracks from their caches; this module only writes objects into them.  Tracks
outlive connections: after a reconnect every track continues with a new group.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from concurrent.futures import CancelledError as ConcurrentCancelled
from dataclasses import dataclass, field

import structlog

from moq import api
from moq.broadcast import Publisher
from moq.connection import Connection, RequestRejectedError
from moq.errors import SessionClosedError
from moq.model.track import Track
from moq.transport.tls import CertificateMismatch, CertificateUntrusted
from moq.wire.types import TrackNamespace, namespace_to_str

from .ingest import IngestError, MediaPacket, Source, now_us
from .packaging import AUDIO_TRACK, CATALOG_TRACK, VIDEO_TRACK, BroadcastPackager, LocObject
from .status import Stats, StatusLine

log = structlog.get_logger("moq-publish")

FIRST_ATTEMPTS = 3
CONNECT_TIMEOUT = 5.0
BACKOFF_START, BACKOFF_MAX = 0.5, 10.0
PING_INTERVAL = 1.0
DEAD_AFTER = 4.0  # seconds without any acknowledgement from the relay: it is gone
STABLE_AFTER = 10.0  # a session that lasted this long resets the backoff
CERT_GRACE = 10.0  # a relay whose certificate stopped matching is retried this long, then we exit 3
QUEUE = 16  # packets between the source thread and the event loop
PRIORITIES = {CATALOG_TRACK: 0, AUDIO_TRACK: 64, VIDEO_TRACK: 128}  # lower is more urgent
EXIT_OK, EXIT_BUG, EXIT_INPUT, EXIT_RELAY = 0, 1, 2, 3


class RelayUnreachable(Exception):
    pass


def _alert(exc: BaseException) -> str:
    """The TLS reason in a connection error ("self-signed certificate"), else the whole message."""
    text = str(exc)
    return text.rsplit(": ", 1)[-1].rstrip(")") if "(code 0x" in text else text


@dataclass
class Options:
    url: str
    namespace: TrackNamespace
    fingerprint: str | None = None
    insecure: bool = False
    duration: float | None = None
    gop: float = 2.0
    token: str | None = None  # --token / MOQ_TOKEN: sent in SETUP


class SourceFeed:
    """Runs `source.packets()` in a daemon thread and hands the packets to the event loop
    through a bounded queue (the thread blocks while it is full).  A daemon, because a
    thread waiting for an RTMP client cannot be interrupted; it dies with the process."""

    def __init__(self, source: Source, loop: asyncio.AbstractEventLoop) -> None:
        self.source = source
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue(QUEUE)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="moq-publish-source", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _put(self, item) -> bool:
        try:
            asyncio.run_coroutine_threadsafe(self.queue.put(item), self.loop).result()
            return True
        except (RuntimeError, asyncio.CancelledError, ConcurrentCancelled):
            return False  # the loop is gone: we are shutting down

    def _run(self) -> None:
        try:
            for pkt in self.source.packets():
                if not self._put(pkt):
                    return
        except Exception as exc:  # reported by the loop (IngestError) or logged as a bug
            self.error = exc
        self._put(None)

    async def get(self) -> MediaPacket | None:
        return await self.queue.get()

    def stop(self) -> None:
        self.source.stop()


class Liveness:
    """Notices a relay that vanished without closing (killed, unplugged): QUIC only gives
    up after its idle timeout (60 s), so we PING every second and call the connection dead
    once nothing has been acknowledged for DEAD_AFTER seconds (the transport's count of
    unanswered probe timeouts)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.healthy_at = time.monotonic()

    def dead(self) -> bool:
        transport = self.conn.transport
        probes = getattr(transport, "unanswered_probes", None)
        if probes is None:  # a transport without QUIC loss recovery (tests' in-memory pairs)
            return False
        now = time.monotonic()
        if probes() == 0:
            self.healthy_at = now
        transport.ping()
        return now - self.healthy_at > DEAD_AFTER

    def abort(self, reason: str) -> None:
        abandon = getattr(self.conn.transport, "abandon", None)
        if abandon is not None:
            abandon(reason)
        else:
            self.conn.close(0, reason)


@dataclass
class PublishRun:
    source: Source
    opts: Options
    status: StatusLine
    publisher: Publisher = field(default_factory=Publisher)
    stats: Stats = field(default_factory=Stats)

    def __post_init__(self) -> None:
        ns = self.opts.namespace
        self.tracks: dict[str, Track] = {
            name: self.publisher.create_track(ns, name.encode(), priority=PRIORITIES[name], max_groups=8)
            for name in (CATALOG_TRACK, VIDEO_TRACK, AUDIO_TRACK)
        }
        # Group ids start at the wall clock in ms (MSF § Group numbering): a restarted
        # publisher never reuses an id it sent before.
        self.packager = BroadcastPackager(int(time.time() * 1000), gop_ms=int(self.opts.gop * 1000))
        self.conn: Connection | None = None
        self.stopping = asyncio.Event()
        self.exit_code = EXIT_OK
        self.fatal: str | None = None  # the one-line reason for a non-zero exit, printed after the summary
        self.stats.input = self.source.describe()

    # --- connecting ------------------------------------------------------------------------
    async def _open_session(self) -> Connection:
        o = self.opts
        conn = await api.connect(o.url, fingerprint=o.fingerprint, insecure=o.insecure, handler=self.publisher,
                                 timeout=CONNECT_TIMEOUT, token=o.token)
        try:
            await conn.publish_namespace(o.namespace, timeout=CONNECT_TIMEOUT)
        except BaseException:
            conn.close()
            raise
        return conn

    async def connect_first(self) -> None:
        delay = BACKOFF_START
        last: BaseException | None = None
        for attempt in range(1, FIRST_ATTEMPTS + 1):
            try:
                self.conn = await self._open_session()
                log.info("connected", url=self.opts.url, namespace=namespace_to_str(self.opts.namespace))
                self.stats.connected = True
                return
            except (CertificateMismatch, CertificateUntrusted) as exc:  # a retry cannot fix a certificate
                raise RelayUnreachable(self._certificate_problem(exc)) from None
            except RequestRejectedError as exc:
                last = RelayUnreachable(f"the relay refused namespace {namespace_to_str(self.opts.namespace)}: "
                                        f"{exc.reason or 'refused'} (code {exc.code:#x})")
            except (ConnectionError, TimeoutError, OSError, SessionClosedError) as exc:
                last = exc
            log.warning("connect_failed", attempt=attempt, of=FIRST_ATTEMPTS, error=str(last))
            if attempt < FIRST_ATTEMPTS:
                await asyncio.sleep(delay)
                delay *= 2
        if isinstance(last, RelayUnreachable):
            raise last
        raise RelayUnreachable(f"cannot reach {self.opts.url} after {FIRST_ATTEMPTS} attempts: {last}")

    def _certificate_problem(self, exc: ConnectionError, retried: float | None = None) -> str:
        """One line that says what is wrong with the relay's certificate and what to do."""
        url, tail = self.opts.url, f"; gave up after {retried:.0f} s of retries" if retried is not None else ""
        if isinstance(exc, CertificateMismatch):
            return (f"the relay at {url} presents certificate sha256 {exc.got}, not the pinned --fingerprint "
                    f"{exc.expected} (a relay with a new dev certificate keeps it only with the same --state-dir; "
                    f"or pin the fingerprint it prints now){tail}")
        return (f"the relay at {url} has an untrusted TLS certificate ({_alert(exc)}): trust it with "
                f"--fingerprint HEX, as the relay prints it, or --insecure for development{tail}")

    async def _supervise(self) -> None:
        """Watch the session; when it ends (closed, GOAWAY, unresponsive), reconnect with
        exponential backoff and continue every track with a new group.  The backoff only
        starts over once a session has lasted a while (a draining relay that keeps
        sending GOAWAY is not hammered)."""
        delay = BACKOFF_START
        while not self.stopping.is_set():
            conn = self.conn
            assert conn is not None
            since = time.monotonic()
            reason = await self._wait_for_loss(conn)
            if reason is None:
                return
            lasted = time.monotonic() - since
            if lasted > STABLE_AFTER:
                delay = BACKOFF_START
            self.stats.connected = False
            self.conn = None
            log.warning("relay_connection_lost", reason=reason, url=self.opts.url, lasted_s=round(lasted, 1))
            if not conn.is_closed:
                conn.close(0, "reconnecting")
            attempt = 0
            cert_since: float | None = None  # when the relay's certificate first failed in this outage
            if lasted <= STABLE_AFTER:
                await self._sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
            while not self.stopping.is_set():
                attempt += 1
                self.stats.reconnect_attempts += 1
                try:
                    new = await self._open_session()
                except (CertificateMismatch, CertificateUntrusted) as exc:
                    # a relay restarted with a new certificate: retried briefly (its operator may be
                    # restarting it again with the old --state-dir), then given up
                    now = time.monotonic()
                    cert_since = now if cert_since is None else cert_since
                    if now - cert_since + delay > CERT_GRACE:
                        self.fatal = self._certificate_problem(exc, now - cert_since)
                        log.error("reconnect_given_up", attempt=attempt, error=str(exc))
                        self.exit_code = EXIT_RELAY
                        self.stopping.set()
                        return
                    log.error("reconnect_failed", attempt=attempt, error=str(exc), retry_in=delay)
                except (ConnectionError, TimeoutError, OSError, SessionClosedError, RequestRejectedError) as exc:
                    cert_since = None
                    log.info("reconnect_failed", attempt=attempt, error=str(exc), retry_in=delay)
                else:
                    self.conn = new
                    break
                await self._sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
            if self.conn is None:
                return
            self.packager.restart()
            self.source.request_keyframe()
            self.stats.connected = True
            self.stats.reconnects += 1
            log.info("reconnected", url=self.opts.url, attempts=attempt, reconnects=self.stats.reconnects)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def _wait_for_loss(self, conn: Connection) -> str | None:
        live = Liveness(conn)
        closed = asyncio.ensure_future(conn.wait_closed())
        try:
            while not self.stopping.is_set():
                done, _ = await asyncio.wait({closed}, timeout=PING_INTERVAL)
                if done:
                    info = closed.result()
                    return f"session closed (code {info.error_code:#x} {info.reason})".rstrip()
                if conn.goaway is not None:
                    return "relay sent GOAWAY"
                if live.dead():
                    live.abort("relay unresponsive")
                    return f"no answer from the relay for {DEAD_AFTER:g} s"
            return None
        finally:
            closed.cancel()

    # --- media -------------------------------------------------------------------------------
    def _write(self, name: str, obj: LocObject) -> None:
        track = self.tracks[name]
        if obj.closes is not None:
            track.end_group(obj.closes)
        track.write(obj.group_id, obj.object_id, obj.payload, properties=obj.properties)
        if name == CATALOG_TRACK:
            track.end_group(obj.group_id)  # object 0 is the whole catalog; no deltas follow
        self.stats.on_object(name, obj, len(obj.payload))

    async def _pump(self, feed: SourceFeed) -> None:
        paced = not self.source.live
        while True:
            pkt = await feed.get()
            if pkt is None:
                break
            if paced:
                delay = (pkt.send_us - now_us()) / 1e6
                if delay > 0:
                    await asyncio.sleep(delay)
            self.packager.expected = self.source.kinds
            for name, obj in self.packager.push(pkt, int(time.time() * 1000)):
                try:
                    self._write(name, obj)
                except Exception:  # a sink on a dying session must not stop the broadcast
                    log.exception("write_failed", track=name, group=obj.group_id, object=obj.object_id)
            self.stats.on_packet(pkt)
        if feed.error is not None:
            if isinstance(feed.error, IngestError):
                log.error("input_failed", error=str(feed.error))
                self.stats.error = str(feed.error)
                self.exit_code = EXIT_INPUT
            else:
                log.error("input_crashed", error=repr(feed.error), exc_info=feed.error)
                self.exit_code = EXIT_INPUT
        else:
            log.info("input_ended", input=self.source.describe())
        self.stopping.set()

    async def _show_status(self) -> None:
        while not self.stopping.is_set():
            self.stats.subscribers = sum(len(t.sinks) for t in self.tracks.values())
            self.stats.input = self.source.describe()
            self.status.update(self.stats)
            await self._sleep(self.status.interval)

    # --- the whole run -------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            first = asyncio.create_task(self.connect_first())
            stop = asyncio.create_task(self.stopping.wait())
            await asyncio.wait({first, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not first.done():  # a signal while connecting
                first.cancel()
                await asyncio.gather(first, return_exceptions=True)
                return EXIT_OK
            try:
                first.result()
            except RelayUnreachable as exc:
                self.status.stop()
                self.status.error(f"moq-publish: {exc}")
                return EXIT_RELAY
            feed = SourceFeed(self.source, loop)
            feed.start()
            self.stats.start()
            tasks = [asyncio.create_task(self._guard(self._pump(feed)), name="pump"),
                     asyncio.create_task(self._guard(self._supervise()), name="supervise"),
                     asyncio.create_task(self._guard(self._show_status()), name="status")]
            try:
                if self.opts.duration is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stopping.wait(), self.opts.duration)
                else:
                    await self.stopping.wait()
            finally:
                self.stopping.set()
                feed.stop()
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            await self._close()
            self.status.stop()
            self.status.summary(self.stats)
            if self.fatal:
                self.status.error(f"moq-publish: {self.fatal}")
            return self.exit_code
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    async def _guard(self, coro) -> None:
        """A task that fails stops the whole run (exit 1) instead of leaving it hanging."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("internal_error")
            self.exit_code = EXIT_BUG
            self.stopping.set()

    def _on_signal(self, sig: int) -> None:
        log.info("stopping", signal=signal.Signals(sig).name)
        self.stopping.set()

    async def _close(self) -> None:
        """Final catalog (the broadcast is complete), PUBLISH_DONE on every track, close."""
        with contextlib.suppress(Exception):
            self._write(CATALOG_TRACK, self.packager.finish(int(time.time() * 1000)))
        self.publisher.finish()
        conn, self.conn = self.conn, None
        if conn is not None and not conn.is_closed:
            await asyncio.sleep(0.05)  # let PUBLISH_DONE leave before CONNECTION_CLOSE
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.aclose(), 2.0)
        log.info("stopped", **self.stats.summary_fields())
