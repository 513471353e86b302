"""The relay's dev certificate, kept across restarts in a state directory, and its rotation.

A pinned client (`moq-publish --fingerprint`, a relay's --upstream-fingerprint, a browser's
serverCertificateHashes) trusts exactly one SHA-256.  A relay that made a new certificate on each
start stranded every pinned client at each restart, so the generated certificate and key live in
`--state-dir` and are reused until shortly before they expire.  Chrome pins only certificates
valid for at most 14 days, so the certificate must still change every few days: the next one is
generated ANNOUNCE_BEFORE its predecessor expires and its hash is served on /fingerprint from then
on, and the relay switches to it SWITCH_BEFORE the expiry.  A page that fetched both hashes keeps
working across the switch.

Files: `current.pem` and `next.pem`, each a certificate followed by its private key (one file, so
one atomic rename replaces both halves together), mode 0600.  Every read and write holds an
exclusive flock on `.lock`: concurrent starts and the --workers processes agree on one certificate.
The clock is injected, so the rotation rules are tested without waiting days; a real relay's
schedule can be shortened to seconds with MOQ_RELAY_TEST_CERT_SCHEDULE="VALIDITY,ANNOUNCE,SWITCH"
(seconds; for tests and demos of rotation across --workers processes, never for production).

With --workers every worker runs its own Rotation on the shared directory: they wake at the same
times, the first to take the lock generates or promotes, the others read what it wrote, so every
worker serves the same certificate within a moment of the switch time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from moq.transport.tls import DEFAULT_DEV_HOSTS, MAX_PINNED_VALIDITY, ServerCredentials

DAY = datetime.timedelta(days=1)
VALIDITY_DAYS = 10  # of a generated certificate (Chrome's limit is 14)
ANNOUNCE_BEFORE = 4 * DAY  # the next certificate is made and its hash served this long before expiry
SWITCH_BEFORE = 1 * DAY  # the relay switches this long before expiry (clients' clocks may lag)
SKEW = datetime.timedelta(minutes=5)  # a certificate "not valid before" this far ahead is still taken
_KEY_MARK = b"-----BEGIN PRIVATE KEY-----"

Clock = Callable[[], datetime.datetime]
SCHEDULE_ENV = "MOQ_RELAY_TEST_CERT_SCHEDULE"


class StateError(OSError):
    """The state directory cannot be created, locked, read or written; the message says which."""


def default_state_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """$XDG_DATA_HOME/moq-relay, or ~/.local/share/moq-relay (the XDG base directory default)."""
    base = environ.get("XDG_DATA_HOME") or ""
    root = Path(base) if os.path.isabs(base) else Path.home() / ".local" / "share"  # the spec ignores relative
    return root / "moq-relay"


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class Certificates:
    """What the relay serves now (`current`), what it will switch to (`next`, once announced)."""

    current: ServerCredentials
    next: ServerCredentials | None
    switch_at: datetime.datetime  # when `next` replaces `current`
    announce_at: datetime.datetime  # when `next` is (or was) generated and announced
    generated: bool = False  # this load made a new current certificate (first start, or expired state)
    generated_next: bool = False  # this load made `next` (other processes sharing the directory read it)

    @property
    def hashes(self) -> list[str]:
        """SHA-256 of current, then next: what a page passes in serverCertificateHashes."""
        return [self.current.fingerprint] + ([self.next.fingerprint] if self.next is not None else [])

    def refresh_at(self) -> datetime.datetime:
        """When the store must be loaded again: the announcement, else the switch."""
        return self.announce_at if self.next is None else self.switch_at

    def describe(self) -> dict:
        """The /fingerprint JSON document."""
        return {"current": self.current.fingerprint, "next": self.next.fingerprint if self.next else None,
                "hashes": self.hashes, "expires": _iso(self.current.not_after),
                "switch_at": _iso(self.switch_at) if self.next is not None else None}


def _iso(t: datetime.datetime) -> str:
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class CertificateStore:
    """The dev certificates in `directory`: `load()` returns the ones to serve now, rotating the
    files first when their time has come."""

    def __init__(self, directory: Path, *, hosts: tuple[str, ...] = DEFAULT_DEV_HOSTS,
                 days: float = VALIDITY_DAYS, announce_before: datetime.timedelta = ANNOUNCE_BEFORE,
                 switch_before: datetime.timedelta = SWITCH_BEFORE, clock: Clock = utcnow) -> None:
        if not datetime.timedelta(0) < switch_before < announce_before < datetime.timedelta(days=days):
            raise ValueError("need 0 < switch_before < announce_before < validity")
        self.directory = Path(directory)
        self.hosts = hosts
        self.days = days
        self.announce_before = announce_before
        self.switch_before = switch_before
        self.clock = clock

    # --- the rules ------------------------------------------------------------------------------
    def usable(self, creds: ServerCredentials, now: datetime.datetime) -> bool:
        """Valid now and until its switch time, and short-lived enough for Chrome to pin."""
        lifetime = creds.not_after - creds.not_before
        return (creds.not_before <= now + SKEW and now < creds.not_after - self.switch_before
                and lifetime <= MAX_PINNED_VALIDITY)

    def load(self) -> Certificates:
        """The certificates to serve at `clock()`: reuse what is stored; promote `next` when the
        current one reaches its switch time; generate `next` when the announcement is due."""
        with self._locked():
            now = self.clock()
            current, nxt = self._read("current.pem"), self._read("next.pem")
            if current is not None and not self.usable(current, now):
                current = None
            if nxt is not None and not self.usable(nxt, now):
                nxt = None
            generated = False
            if current is None:
                if nxt is not None:  # its switch time has come: the announced certificate takes over
                    current, nxt = nxt, None
                else:
                    current, generated = ServerCredentials.dev(self.hosts, self.days, now=now), True
                self._write("current.pem", current)
            announce_at = current.not_after - self.announce_before
            if nxt is not None and nxt.not_after <= current.not_after:
                nxt = None  # older than current (a clock that went back): not worth switching to
            generated_next = nxt is None and now >= announce_at
            if generated_next:
                nxt = ServerCredentials.dev(self.hosts, self.days, now=now)
                self._write("next.pem", nxt)
            elif nxt is None:
                self._remove("next.pem")
            return Certificates(current, nxt, current.not_after - self.switch_before, announce_at, generated,
                                generated_next)

    # --- files ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(f"state directory {str(self.directory)!r}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _read(self, name: str) -> ServerCredentials | None:
        """The credentials in `name`, or None when missing or unreadable (they are then replaced)."""
        try:
            data = (self.directory / name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"{str(self.directory / name)!r}: {exc.strerror or exc}") from None
        cert, mark, key = data.partition(_KEY_MARK)
        if not mark:
            return None
        try:
            return ServerCredentials.from_pem(cert, mark + key)
        except ValueError:
            return None

    def _write(self, name: str, creds: ServerCredentials) -> None:
        """Write atomically (temporary file, fsync, rename): a crash leaves the old file or the new."""
        path = self.directory / name
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=self.directory)  # mode 0600
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(creds.cert_pem + creds.key_pem)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise StateError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None

    def _remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / name).unlink()


def load_credentials(cert: Path | None, key: Path | None, state_dir: Path | None, clock: Clock = utcnow
                     ) -> tuple[ServerCredentials, CertificateStore | None, Certificates | None]:
    """The relay's credentials: --cert/--key when given, else the dev certificate kept in
    `state_dir` (with its store, for rotation), else (state_dir None) a fresh one."""
    if cert is not None and key is not None:
        return ServerCredentials.load(cert, key), None, None
    if state_dir is None:
        return ServerCredentials.dev(), None, None
    store = CertificateStore(state_dir, clock=clock, **schedule_from_env())
    certs = store.load()
    return certs.current, store, certs


def schedule_from_env(environ: Mapping[str, str] = os.environ) -> dict:
    """CertificateStore options from MOQ_RELAY_TEST_CERT_SCHEDULE ("VALIDITY,ANNOUNCE,SWITCH" in
    seconds), or none: the default schedule."""
    value = environ.get(SCHEDULE_ENV)
    if not value:
        return {}
    try:
        validity, announce, switch = (float(x) for x in value.split(","))
    except ValueError:
        raise StateError(f"{SCHEDULE_ENV}={value!r}: want VALIDITY,ANNOUNCE,SWITCH in seconds") from None
    if not 0 < switch < announce < validity <= 13 * 86400:
        raise StateError(f"{SCHEDULE_ENV}={value!r}: want 0 < SWITCH < ANNOUNCE < VALIDITY <= 13 days")
    second = datetime.timedelta(seconds=1)
    return {"days": validity / 86400, "announce_before": announce * second, "switch_before": switch * second}


def fingerprint_document(creds: ServerCredentials) -> dict:
    """/fingerprint's JSON for operator-supplied --cert/--key: one certificate, no rotation here."""
    return {"current": creds.fingerprint, "next": None, "hashes": [creds.fingerprint],
            "expires": _iso(creds.not_after), "switch_at": None}


class Rotation:
    """Keeps a running relay's dev certificate current: loads the store again when the next
    certificate is due to be announced or switched to, and hands a new current one to `on_switch`
    (which installs it for new connections; established ones keep theirs)."""

    MAX_SLEEP = 3600.0  # wake up at least hourly: a suspended machine's clock jumps
    MIN_SLEEP = 0.05  # (a load always moves refresh_at past its clock, so this only bounds a busy loop)

    def __init__(self, store: CertificateStore, certs: Certificates,
                 on_switch: Callable[[ServerCredentials], None], log) -> None:
        self.store = store
        self.certs = certs
        self.on_switch = on_switch
        self.log = log

    def document(self) -> dict:
        return self.certs.describe()

    def due_in(self) -> float:
        return (self.certs.refresh_at() - self.store.clock()).total_seconds()

    def refresh(self) -> None:
        """One reload (blocking file I/O; the relay runs it in a thread)."""
        old, new = self.certs, self.store.load()
        self.certs = new
        if new.current.fingerprint != old.current.fingerprint:
            self.log.info("certificate_switched", fingerprint=new.current.fingerprint,
                          previous=old.current.fingerprint, expires=_iso(new.current.not_after))
            self.on_switch(new.current)
        if new.next is not None and (old.next is None or old.next.fingerprint != new.next.fingerprint):
            self.log.info("certificate_next", fingerprint=new.next.fingerprint, switch_at=_iso(new.switch_at),
                          generated=new.generated_next)  # False: another process sharing the directory made it

    async def run(self) -> None:
        while True:
            await asyncio.sleep(min(max(self.due_in(), self.MIN_SLEEP), self.MAX_SLEEP))
            if self.due_in() <= 0:
                try:
                    await asyncio.to_thread(self.refresh)
                except StateError as exc:  # keep serving the current certificate; try again later
                    self.log.error("certificate_refresh_failed", error=str(exc))
                    await asyncio.sleep(60.0)
