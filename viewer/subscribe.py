"""moq-view's subscriber: the catalog first, then the tracks it lists, with cheap per-object
measurements.

* Catalog (MSF § Catalog): SUBSCRIBE plus a joining FETCH with offset 0, so the latest
  complete catalog (object 0 of its current group) arrives at once, then every update.
* Media tracks: SUBSCRIBE from the live edge.  A video track that is being recorded also
  gets a joining FETCH of its current group, so the recording starts at that group's key
  frame instead of waiting up to a GOP for the next one (audio: of its last groups, so the
  recording starts with both).  Objects from the fetch are handed to the recorder before the
  subscription's (which wait until the fetch is done); see `reader.TrackReader`.
* No --track: the media tracks the catalog lists.
* Every object is measured on arrival: latency = now − LOC capture timestamp (wall-clock µs
  since the epoch), counts per group for gaps.  `on_object` sees objects in arrival order;
  `on_media` sees each track's objects in track order (fetched ones first).

`Viewer.run()` returns when the duration is over, every media track has ended, or `stop`
is set; `ViewResult.problems()` says what went wrong, if anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from moq import api
from moq.connection import Connection, RequestRejectedError
from moq.errors import MoQError, SessionClosedError
from moq.media.catalog import CATALOG_TRACK, Catalog, CatalogError, CatalogTrack
from moq.token import redact
from moq.transport.tls import CertificateMismatch, CertificateUntrusted
from moq.wire.types import namespace_from_str

from .reader import REQUEST_TIMEOUT, Received, TrackReader
from .stats import Stats

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_UNREACHABLE = 3  # cannot reach the relay, TLS certificate mismatch, no answer
EXIT_NOT_FOUND = 4  # unknown namespace or track (the subscription was refused)
EXIT_NO_DATA = 5  # nothing received, a track ended early or stalled

DEFAULT_MEDIA = ("video", "audio")  # what moq-publish names its tracks
AUTO = ""  # no --track: the media tracks the catalog lists
CATALOG_WAIT = 5.0  # seconds to wait for the first catalog with --track all
STALL = 2.0  # a media track silent this long at the end did not deliver "for the whole duration"
END_SLACK = 0.5  # a track ending this close to the end of the duration ended on time
BACKOFF_START, BACKOFF_MAX = 0.5, 4.0  # between reconnection attempts
RECONNECT_FOR = 30.0  # a relay that stays away this long ends the run (exit 3)
CERT_GRACE = 10.0  # a relay whose certificate stopped matching is retried this long
WATCH_INTERVAL = 1.0  # seconds between checks of the session (GOAWAY, closed, PING unanswered)
DEAD_AFTER = 4.0  # no acknowledgement from the relay for this long: it is gone

_VIDEO_CODECS = ("avc1", "avc3", "hev1", "hvc1", "vp8", "vp09", "av01")
_AUDIO_CODECS = ("opus", "mp4a", "flac", "ac-3", "ec-3", "pcm")


class ViewError(Exception):
    """A failure that ends moq-view with `code` and a one-line message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class CertificateError(ViewError):
    """The relay's certificate is untrusted or not the pinned one: retrying cannot fix it."""


def kind_of(name: str, entry: CatalogTrack | None) -> str:
    """video, audio, catalog or data: from the catalog entry's role or codec, else the name."""
    if name == CATALOG_TRACK and entry is None:
        return "catalog"
    if entry is not None:
        if entry.role in ("video", "audio"):
            return entry.role
        codec = (entry.codec or "").lower()
        if codec.startswith(_VIDEO_CODECS) or entry.width:
            return "video"
        if codec.startswith(_AUDIO_CODECS) or entry.samplerate:
            return "audio"
    return name if name in DEFAULT_MEDIA else "data"


async def connect(url: str, *, fingerprint: str | None, insecure: bool, timeout: float = REQUEST_TIMEOUT,
                  token: str | None = None) -> Connection:
    try:
        return await api.connect(url, fingerprint=fingerprint, insecure=insecure, timeout=timeout, token=token)
    except CertificateMismatch as exc:
        raise CertificateError(EXIT_UNREACHABLE, f"the relay at {url} presents certificate sha256 {exc.got}, not the pinned "
                        f"--fingerprint {exc.expected} (a relay keeps its dev certificate across restarts only "
                        "with the same --state-dir; or pin the fingerprint it prints now)") from None
    except CertificateUntrusted as exc:
        reason = str(exc).rsplit(": ", 1)[-1].rstrip(")") if "(code 0x" in str(exc) else str(exc)
        raise CertificateError(EXIT_UNREACHABLE, f"the relay at {url} has an untrusted TLS certificate ({reason}): trust it "
                        "with --fingerprint HEX, as the relay prints it, or --insecure for development") from None
    except (ConnectionError, TimeoutError, OSError, SessionClosedError, MoQError) as exc:
        raise ViewError(EXIT_UNREACHABLE, f"cannot reach {redact(url)}: {str(exc) or type(exc).__name__}") from None


@dataclass
class ViewResult:
    t0: float  # monotonic start and end of the run
    end: float
    interrupted: bool
    duration: float | None
    stats: Stats
    readers: list[TrackReader] = field(default_factory=list)
    complete: bool = False  # the catalog said the broadcast is over

    @property
    def elapsed(self) -> float:
        return self.end - self.t0

    def problems(self) -> list[str]:
        """Why the run did not receive data for the whole duration (empty when it did).  The
        rule (exit 5 when not empty): media for all of --duration, or, without it, until the
        tracks ended; a broadcast that is over before then, however it says so (PUBLISH_DONE,
        a complete catalog), did not deliver it."""
        media_objects = sum(r.stats.objects for r in self.readers
                            if r.visible and r.stats is not None and r.kind in ("video", "audio"))
        out = []
        if self.complete and not media_objects:
            of = f" before the end of --duration {self.duration:g} s" if self.duration is not None else ""
            out.append(f"the broadcast is over{of}: its catalog says it is complete, no media received")
        elif self.stats.objects == 0:
            return ["no objects received"]
        timed = self.duration is not None and not self.interrupted
        of = f" of {self.duration:g} s" if self.duration is not None else ""
        for r in self.readers:
            if not r.visible or r.stats is None:
                continue
            media = r.kind in ("video", "audio")
            if r.ended_at is not None and (r.failed or (timed and r.ended_at - self.t0 < self.duration - END_SLACK)):
                out.append(f"track {r.name} ended after {r.ended_at - self.t0:.1f} s{of}: {r.end_reason}")
            elif media and r.stats.objects == 0:
                out.append(f"track {r.name}: no objects received")
            elif media and timed and r.ended_at is None and r.stats.last_arrival is not None \
                    and self.end - r.stats.last_arrival > STALL:
                out.append(f"track {r.name}: nothing received in the last {self.end - r.stats.last_arrival:.1f} s{of}")
        return out


class Viewer:
    """Subscribes to `track` ('video', 'audio', 'catalog', 'all' or any track name) of
    `namespace` on an open connection."""

    def __init__(self, conn: Connection, namespace: str, track: str, *, join_video: bool = False,
                 on_object: Callable[[Received], None] | None = None,
                 on_media: Callable[[Received], None] | None = None,
                 on_track: Callable[[str, str, CatalogTrack | None], None] | None = None,
                 on_track_failed: Callable[[str], None] | None = None,
                 on_warning: Callable[[str], None] | None = None,
                 on_gap: Callable[[dict], None] | None = None) -> None:
        self.conn = conn
        self.namespace_str = namespace
        self.namespace = namespace_from_str(namespace)
        self.track = track
        self.join_video = join_video
        self.on_object = on_object
        self.on_media = on_media
        self.on_track = on_track  # (name, kind, catalog entry) for each media track, again when the catalog tells more
        self.on_track_failed = on_track_failed  # a track announced by on_track could not be subscribed
        self.on_warning = on_warning
        self.on_gap = on_gap  # a reset subgroup stream, as its --json row, when it is noticed
        self.stats = Stats()
        self.readers: dict[str, TrackReader] = {}
        self.catalog: Catalog | None = None
        self.closing = False
        self.warnings: list[str] = []
        self.t0 = time.monotonic()
        self._first_catalog: asyncio.Future[Catalog] = asyncio.get_running_loop().create_future()
        self._changed = asyncio.Event()
        self._openers: set[asyncio.Task] = set()
        self._tried: set[str] = set()
        self._started = False
        self.chosen: list[str] = []  # the tracks picked from the catalog when no --track was given
        self.lost: str | None = None  # why the session was lost (GOAWAY, closed, silent): reconnect
        self.reconnects = 0

    # --- setting up -------------------------------------------------------------------------
    async def start(self) -> None:
        """Subscribe; ViewError when nothing can be subscribed."""
        self.t0 = time.monotonic()
        if self.track == "catalog":
            await self._open(CATALOG_TRACK, "catalog", visible=True, join=True)
        elif self.track == "all":
            await self._start_all()
        elif self.track == AUTO:
            await self._start_auto()
        else:
            await self._start_named(self.track)
        self._started = True
        if self.track == "all" and self.catalog is not None:  # an update that came during the set-up
            for entry in self.catalog.tracks:
                if entry.name != CATALOG_TRACK and entry.name not in self._tried:
                    self._spawn_open(entry)

    async def _start_named(self, name: str) -> None:
        """The named track, and the catalog alongside for what it says about the track (if
        there is no catalog, the track is subscribed all the same)."""
        async def read_catalog() -> None:
            with contextlib.suppress(ViewError):  # optional: no catalog, no problem
                await self._open(CATALOG_TRACK, "catalog", visible=False, join=True)

        catalog = asyncio.create_task(read_catalog())
        try:
            await self._open(name, kind_of(name, None), visible=True, join=None)
            # the catalog's subscription and joining fetch may answer after the track's own
            # SUBSCRIBE_OK: give it a moment rather than lose what it says about the track
            await asyncio.wait({catalog}, timeout=CATALOG_WAIT)
        finally:
            if not catalog.done():
                catalog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await catalog

    async def _start_auto(self) -> None:
        """No --track: the media tracks the catalog lists (the catalog itself only read);
        without a catalog, the publisher's default video track."""
        reason = await self._try_open(CATALOG_TRACK, "catalog", visible=False, join=True)
        entries: list[CatalogTrack] = []
        if reason is None:
            try:
                catalog = await asyncio.wait_for(asyncio.shield(self._first_catalog), CATALOG_WAIT)
                entries = [t for t in catalog.tracks if kind_of(t.name, t) in ("video", "audio")]
                if not entries:
                    reason = "no media track in the catalog"
            except TimeoutError:
                reason = f"no catalog within {CATALOG_WAIT:g} s"
        if not entries:
            if self._broadcast_over():
                return
            self._warn(f"catalog: {reason}; trying track video")
            await self._open("video", "video", visible=True, join=None)
            self.chosen = ["video"]
            return
        refusals = await asyncio.gather(*(self._try_open(t.name, kind_of(t.name, t), visible=True, join=None,
                                                         entry=t, namespace=t.namespace) for t in entries))
        for t, refused in zip(entries, refusals):
            if refused is not None:
                self._warn(f"{self.namespace_str}/{t.name}: {refused}")
        self.chosen = [t.name for t, refused in zip(entries, refusals) if refused is None]
        if not self.chosen:
            raise ViewError(EXIT_NOT_FOUND, f"{self.namespace_str}: no track could be subscribed: {refusals[0]}")

    async def _start_all(self) -> None:
        """The catalog, then every track it lists; without a catalog, the default names."""
        reason = await self._try_open(CATALOG_TRACK, "catalog", visible=True, join=True)
        entries: list[CatalogTrack] = []
        if reason is None:
            try:
                catalog = await asyncio.wait_for(asyncio.shield(self._first_catalog), CATALOG_WAIT)
                entries = [t for t in catalog.tracks if t.name != CATALOG_TRACK]
            except TimeoutError:
                reason = f"no catalog within {CATALOG_WAIT:g} s"
        if reason is not None:
            self._warn(f"catalog: {reason}; trying tracks {' and '.join(DEFAULT_MEDIA)}")
            entries = [CatalogTrack(n) for n in DEFAULT_MEDIA]
        refusals = await asyncio.gather(*(self._try_open(t.name, kind_of(t.name, t), visible=True, join=None,
                                                         entry=t, namespace=t.namespace) for t in entries))
        for t, refused in zip(entries, refusals):
            if refused is not None:
                self._warn(f"{self.namespace_str}/{t.name}: {refused}")
        if entries and all(r is not None for r in refusals):
            raise ViewError(EXIT_NOT_FOUND, f"{self.namespace_str}: no track could be subscribed: {refusals[0]}")

    async def _try_open(self, name: str, kind: str, **kw) -> str | None:
        """_open(), returning the reason instead of raising when the track is refused."""
        try:
            await self._open(name, kind, **kw)
            return None
        except ViewError as exc:
            if exc.code != EXIT_NOT_FOUND:
                raise
            return exc.message.split(": ", 1)[-1]

    async def _open(self, name: str, kind: str, *, visible: bool, join: bool | None,
                    entry: CatalogTrack | None = None, namespace: str | None = None) -> TrackReader:
        if name in self.readers:
            return self.readers[name]
        self._tried.add(name)
        ns = namespace_from_str(namespace) if namespace else self.namespace
        if join is None:
            join = kind in ("video", "audio") and self.join_video  # a recording starts with both
        known = name in self.stats.tracks  # subscribed before a reconnect: keep its statistics and recording
        reader = TrackReader(self, name, ns, kind, visible=visible, join=join)
        self.readers[name] = reader
        media = visible and kind in ("video", "audio")
        if media and self.on_track is not None:  # before any object can arrive
            self.on_track(name, kind, entry or (self.catalog.track(name) if self.catalog else None))
        try:
            await reader.open()
        except (RequestRejectedError, TimeoutError, SessionClosedError) as exc:
            self.readers.pop(name, None)
            if reader.stats is not None and not known:
                self.stats.tracks.pop(name, None)
            reader.close()
            if media and self.on_track_failed is not None and not known:
                self.on_track_failed(name)
            what = f"{self.namespace_str}/{name}"
            if isinstance(exc, RequestRejectedError):
                raise ViewError(EXIT_NOT_FOUND, f"{what}: {exc.reason or 'refused'} (code {exc.code:#x})") from None
            if isinstance(exc, TimeoutError):
                raise ViewError(EXIT_UNREACHABLE, f"no answer to SUBSCRIBE {what} within {REQUEST_TIMEOUT:g} s"
                                ) from None
            raise ViewError(EXIT_UNREACHABLE, f"connection closed: {exc}") from None
        reader.task = asyncio.create_task(reader.run(), name=f"moq-view {name}")
        return reader

    # --- objects ----------------------------------------------------------------------------------
    def object_received(self, rx: Received) -> None:
        if self.on_object is not None:
            self.on_object(rx)

    def gap_found(self, row: dict) -> None:
        if self.on_gap is not None:
            self.on_gap(row)

    def media_received(self, rx: Received) -> None:
        if self.on_media is not None:
            self.on_media(rx)

    def catalog_received(self, rx: Received) -> None:
        if rx.object != 0:
            self._warn("catalog delta updates are not supported; ignored")
            return
        try:
            catalog = Catalog.decode(rx.payload)
        except CatalogError as exc:
            self._warn(f"bad catalog in group {rx.group}: {exc}")
            return
        self.catalog = catalog
        if catalog.is_complete and self.track in ("all", AUTO):
            self._warn("the catalog says the broadcast is complete")
            self._changed.set()
        if not self._first_catalog.done():
            self._first_catalog.set_result(catalog)
        for entry in catalog.tracks:
            known = self.readers.get(entry.name)
            if known is not None:
                if not known.visible or known.kind == "catalog":
                    continue
                kind = kind_of(entry.name, entry)
                if known.kind == "data" and kind in ("video", "audio"):
                    known.kind = kind
                    if known.stats is not None:
                        known.stats.kind = kind
                if known.kind in ("video", "audio") and self.on_track is not None:
                    self.on_track(entry.name, known.kind, entry)
            elif self.track == "all" and self._started and entry.name != CATALOG_TRACK \
                    and entry.name not in self._tried:
                self._spawn_open(entry)
        reader = self.readers.get(CATALOG_TRACK)
        if reader is not None and not reader.visible:  # read for metadata only: done with it
            reader.close()

    def _spawn_open(self, entry: CatalogTrack) -> None:
        """A track added by a catalog update (--track all)."""
        async def open_it() -> None:
            reason = await self._try_open(entry.name, kind_of(entry.name, entry), visible=True, join=None,
                                          entry=entry, namespace=entry.namespace)
            if reason is not None:
                self._warn(f"{self.namespace_str}/{entry.name}: {reason}")

        task = asyncio.create_task(open_it())
        self._openers.add(task)
        task.add_done_callback(self._openers.discard)

    def _warn(self, msg: str) -> None:
        if msg not in self.warnings:
            self.warnings.append(msg)
            if self.on_warning is not None:
                self.on_warning(msg)

    def reader_ended(self, reader: TrackReader) -> None:
        self._changed.set()

    # --- running ----------------------------------------------------------------------------------
    def _finished(self) -> bool:
        visible = [r for r in self.readers.values() if r.visible]
        media = [r for r in visible if r.kind in ("video", "audio")]
        if not media and self._broadcast_over():  # nothing more will come
            return True
        media = media or visible
        return bool(media) and all(r.ended_at is not None for r in media)

    def _check_session(self, live: list[float]) -> None:
        """Set `lost` when the relay sent GOAWAY, closed the session or stopped answering (a killed
        relay sends nothing: QUIC alone would wait for its idle timeout)."""
        conn = self.conn
        if self.lost is not None or conn.is_closed:  # a close ends the readers; run() tells why
            return
        if conn.goaway is not None:
            if not self._broadcast_over():
                self.lost = "the relay is going away (GOAWAY)"
        else:
            probes = getattr(conn.transport, "unanswered_probes", None)
            if probes is None:
                return
            now = time.monotonic()
            if probes() == 0:
                live[0] = now
            conn.transport.ping()
            if now - live[0] > DEAD_AFTER:
                self.lost = f"no answer from the relay for {DEAD_AFTER:g} s"
                abandon = getattr(conn.transport, "abandon", None)
                if abandon is not None:
                    abandon("relay unresponsive")
        if self.lost is not None:
            self._changed.set()

    def _broadcast_over(self) -> bool:
        """The publisher said it is done (its final catalog): a GOAWAY then is no reason to come back."""
        return self.catalog is not None and self.catalog.is_complete

    async def _watch(self) -> None:
        live = [time.monotonic()]
        while self.lost is None:
            self._check_session(live)
            await asyncio.sleep(WATCH_INTERVAL)

    async def resume(self, conn: Connection) -> None:
        """Subscribe again on a new session after `lost`: the same tracks, the same statistics
        (groups missed while away count as gaps).  ViewError as from start()."""
        old = [r for r in self.readers.values()]
        self.closing = True  # the old readers' ends are not the tracks' ends
        for r in old:
            r.close()
            if r.task is not None:
                r.task.cancel()
        await asyncio.gather(*(r.task for r in old if r.task is not None), return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.conn.aclose(), 1.0)
        self.closing = False
        self.conn, self.lost = conn, None
        self.readers.clear()
        self._tried.clear()
        self._started = False
        if self._first_catalog.done():
            self._first_catalog = asyncio.get_running_loop().create_future()
        t0 = self.t0
        try:
            await self.start()
        finally:
            self.t0 = t0  # the duration still counts from the first start
        self.reconnects += 1

    async def run(self, duration: float | None, stop: asyncio.Event) -> ViewResult:
        deadline = None if duration is None else self.t0 + duration
        stopper = asyncio.create_task(stop.wait())
        watcher = asyncio.create_task(self._watch())
        interrupted = False
        try:
            while not self._finished() and self.lost is None:
                if stop.is_set():
                    interrupted = True
                    break
                timeout = None if deadline is None else deadline - time.monotonic()
                if timeout is not None and timeout <= 0:
                    break
                self._changed.clear()
                changed = asyncio.create_task(self._changed.wait())
                try:
                    await asyncio.wait({stopper, changed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()
        finally:
            stopper.cancel()
            watcher.cancel()
        if not interrupted and self.lost is None and self._finished():  # ended because the session went away?
            if self.conn.goaway is not None and not self._broadcast_over():
                self.lost = "the relay is going away (GOAWAY)"
            elif any(r.failed and (r.end_reason or "").startswith("connection lost") for r in self.readers.values()):
                self.lost = "the connection was lost"
        for r in self.readers.values():
            r.drain_resets()
        return ViewResult(self.t0, time.monotonic(), interrupted, duration, self.stats, list(self.readers.values()),
                          complete=self._broadcast_over())

    async def close(self) -> None:
        """Unsubscribe, stop the readers and close the session."""
        self.closing = True
        for task in list(self._openers):
            task.cancel()
        for reader in self.readers.values():
            reader.close()
        tasks = [r.task for r in self.readers.values() if r.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *self._openers, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.conn.aclose(), 2.0)


async def reconnect(viewer: Viewer, url: str, stop: asyncio.Event, deadline: float | None,
                    on_message: Callable[[str], None], **connect_kw) -> bool:
    """After `viewer.lost`: connect again and resubscribe, with backoff (the relay may still be
    restarting, its publisher not back yet).  False when stopped or past `deadline` (monotonic);
    ViewError(3) after RECONNECT_FOR s without success, or CERT_GRACE s of certificate errors."""
    reason, start, delay, attempt = viewer.lost, time.monotonic(), BACKOFF_START, 0
    cert_since: float | None = None
    on_message(f"connection lost: {reason}; reconnecting")
    while True:
        attempt += 1
        try:
            conn = await connect(url, **connect_kw)
            try:
                await viewer.resume(conn)
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.aclose(), 1.0)
                raise
            on_message(f"reconnected to {url} (attempt {attempt}, {time.monotonic() - start:.1f} s)")
            return True
        except CertificateError as exc:
            cert_since = cert_since or time.monotonic()
            last = exc
            if time.monotonic() - cert_since + delay > CERT_GRACE:
                raise ViewError(exc.code, f"{exc.message}; gave up after {attempt} attempts") from None
        except ViewError as exc:  # unreachable yet, or the namespace not announced again yet
            cert_since, last = None, exc
        log.info("reconnect_failed", attempt=attempt, error=last.message, retry_in=delay)
        now = time.monotonic()
        if now - start + delay > RECONNECT_FOR:
            raise ViewError(EXIT_UNREACHABLE, f"lost the relay at {url} ({reason}) and could not get back within "
                            f"{RECONNECT_FOR:g} s: {last.message}")
        if deadline is not None and now + delay >= deadline:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            return False
        delay = min(delay * 2, BACKOFF_MAX)


__all__ = ["Viewer", "ViewResult", "ViewError", "Received", "TrackReader", "connect", "kind_of", "EXIT_OK",
           "EXIT_UNREACHABLE", "EXIT_NOT_FOUND", "EXIT_NO_DATA", "reconnect", "CertificateError"]
