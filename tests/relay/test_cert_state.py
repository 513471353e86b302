"""The relay's kept dev certificate (relay/state.py): reuse, announcement, switch, expiry, files,
concurrent starts, and /fingerprint's two formats.  The clock is injected: days pass instantly."""

from __future__ import annotations

import asyncio
import datetime
import json
import stat
import threading

import pytest

from relay.http import start_http
from relay.metrics import RelayMetrics
from relay.state import (
    ANNOUNCE_BEFORE,
    SCHEDULE_ENV,
    SWITCH_BEFORE,
    CertificateStore,
    Rotation,
    StateError,
    default_state_dir,
    load_credentials,
    schedule_from_env,
)
from relay.workers import merge_fingerprints

from .relayproc import RelayProcess, wait_until

pytestmark = pytest.mark.timeout(30)
T0 = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime.datetime:
        return self.now


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def info(self, event: str, **kw) -> None:
        self.events.append((event, kw))

    error = info


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_reused_across_loads_with_private_files(tmp_path, clock):
    store = CertificateStore(tmp_path / "state", clock=clock)
    first = store.load()
    assert first.generated and first.next is None
    clock.now += datetime.timedelta(days=2)
    again = CertificateStore(tmp_path / "state", clock=clock).load()  # a restart two days later
    assert not again.generated
    assert again.current.fingerprint == first.current.fingerprint
    assert again.hashes == [first.current.fingerprint]
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    pem = tmp_path / "state" / "current.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in pem.read_bytes()


def test_next_announced_then_switched(tmp_path, clock):
    store = CertificateStore(tmp_path, clock=clock)
    first = store.load()
    expires = first.current.not_after
    clock.now = expires - ANNOUNCE_BEFORE - datetime.timedelta(minutes=1)
    assert store.load().next is None
    clock.now = expires - ANNOUNCE_BEFORE
    announced = store.load()
    assert announced.current.fingerprint == first.current.fingerprint
    assert announced.next is not None and announced.next.fingerprint != first.current.fingerprint
    assert announced.hashes == [first.current.fingerprint, announced.next.fingerprint]
    assert announced.switch_at == expires - SWITCH_BEFORE
    assert announced.refresh_at() == announced.switch_at
    doc = announced.describe()
    assert doc["current"] == first.current.fingerprint and doc["next"] == announced.next.fingerprint
    clock.now += datetime.timedelta(hours=5)
    assert store.load().next.fingerprint == announced.next.fingerprint  # stable while waiting
    clock.now = announced.switch_at
    switched = store.load()
    assert switched.current.fingerprint == announced.next.fingerprint  # the announced hash takes over
    assert switched.next is None and not switched.generated
    assert (tmp_path / "next.pem").exists() is False
    # the new current one lasts until its own announcement
    assert switched.announce_at == switched.current.not_after - ANNOUNCE_BEFORE > clock.now


def test_expired_state_is_replaced(tmp_path, clock):
    store = CertificateStore(tmp_path, clock=clock)
    old = store.load()
    clock.now += datetime.timedelta(days=30)  # the relay was off for a month: next and current both too old
    new = store.load()
    assert new.generated and new.current.fingerprint != old.current.fingerprint
    assert new.current.not_before <= clock.now < new.current.not_after
    assert (new.current.not_after - new.current.not_before) <= datetime.timedelta(days=14)


def test_damaged_file_is_replaced(tmp_path, clock):
    store = CertificateStore(tmp_path, clock=clock)
    store.load()
    (tmp_path / "current.pem").write_bytes(b"not a certificate")
    assert store.load().generated


def test_concurrent_starts_agree(tmp_path, clock):
    """Eight relays starting at once on an empty state dir (--workers, a restart loop) serve one certificate."""
    got: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        got.append(CertificateStore(tmp_path / "s", clock=clock).load().current.fingerprint)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and len(set(got)) == 1


def test_rotation_switches_live(tmp_path, clock):
    store = CertificateStore(tmp_path, clock=clock)
    certs = store.load()
    installed = []
    log = Log()
    rotation = Rotation(store, certs, installed.append, log)
    assert rotation.due_in() == (certs.announce_at - T0).total_seconds()
    clock.now = certs.announce_at
    rotation.refresh()
    assert installed == [] and [e for e, _ in log.events] == ["certificate_next"]
    nxt = rotation.document()["next"]
    clock.now = rotation.certs.switch_at
    rotation.refresh()
    assert [c.fingerprint for c in installed] == [nxt]
    assert rotation.document()["current"] == nxt and log.events[-1][0] == "certificate_switched"


def test_load_credentials_modes(tmp_path, clock):
    creds, store, certs = load_credentials(None, None, None)
    assert store is None and certs is None and len(creds.fingerprint) == 64
    (tmp_path / "c.pem").write_bytes(creds.cert_pem)
    (tmp_path / "k.pem").write_bytes(creds.key_pem)
    given, store, _ = load_credentials(tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "unused")
    assert given.fingerprint == creds.fingerprint and store is None and not (tmp_path / "unused").exists()
    kept, store, _ = load_credentials(None, None, tmp_path / "kept", clock)
    assert store is not None and load_credentials(None, None, tmp_path / "kept", clock)[0].fingerprint == \
        kept.fingerprint


def test_default_state_dir():
    assert default_state_dir({"XDG_DATA_HOME": "/srv/data"}).as_posix() == "/srv/data/moq-relay"
    assert default_state_dir({}).as_posix().endswith("/.local/share/moq-relay")
    assert default_state_dir({"XDG_DATA_HOME": "relative"}).as_posix().endswith("/.local/share/moq-relay")


def test_fingerprint_endpoint_text_and_json(tmp_path, clock):
    asyncio.run(_fingerprint_endpoint(tmp_path, clock))


async def _fingerprint_endpoint(tmp_path, clock):
    store = CertificateStore(tmp_path, clock=clock)
    certs = store.load()
    clock.now = certs.announce_at
    certs = store.load()
    server = await start_http("127.0.0.1", 0, fingerprint=certs.describe, metrics=RelayMetrics(), web_root=None,
                              health=lambda: True)
    port = server.sockets[0].getsockname()[1]

    async def get(path: str, *headers: str) -> tuple[str, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write((f"GET {path} HTTP/1.1\r\nHost: x\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode())
        data = await reader.read()
        writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        return head.decode(), body

    try:
        head, body = await get("/fingerprint")  # what old pages and scripts read: the current hash alone
        assert body.decode() == certs.current.fingerprint and "text/plain" in head
        for args in (("/fingerprint", "Accept: application/json"), ("/fingerprint?format=json",)):
            head, body = await get(*args)
            assert "application/json" in head and "Access-Control-Allow-Origin: *" in head
            doc = json.loads(body)
            assert doc["hashes"] == [certs.current.fingerprint, certs.next.fingerprint]
            assert doc["current"] == certs.current.fingerprint and doc["switch_at"].endswith("Z")
    finally:
        server.close()
        await server.wait_closed()


def test_server_switches_certificate_for_new_connections():
    """Rotation.on_switch installs the next certificate: new connections get it, open ones keep theirs."""
    from moq import api
    from moq.transport.tls import CertificateMismatch, ServerCredentials

    async def main() -> None:
        old, new = ServerCredentials.dev(), ServerCredentials.dev()
        server = await api.serve("127.0.0.1", 0, credentials=old)
        url = f"moqt://127.0.0.1:{server.port}/"
        try:
            before = await api.connect(url, fingerprint=old.fingerprint, timeout=5)
            server.set_credentials(new)
            after = await api.connect(url, fingerprint=new.fingerprint, timeout=5)
            with pytest.raises(CertificateMismatch):
                await api.connect(url, fingerprint=old.fingerprint, timeout=5)
            assert not before.is_closed  # the switch does not touch established sessions
            for conn in (before, after):
                await conn.aclose()
        finally:
            await server.aclose()

    asyncio.run(main())


def test_test_schedule_from_the_environment(tmp_path):
    opts = schedule_from_env({SCHEDULE_ENV: "10,6,3"})
    assert opts["announce_before"] == datetime.timedelta(seconds=6)
    store = CertificateStore(tmp_path, **opts)
    certs = store.load()
    assert certs.announce_at - certs.current.not_before == datetime.timedelta(seconds=60 + 4)  # 1 min backdated
    assert schedule_from_env({}) == {}
    for bad in ("10,3,6", "10,6", "x,y,z", "10,6,0"):
        with pytest.raises(StateError):
            schedule_from_env({SCHEDULE_ENV: bad})


def test_merged_fingerprint_stays_the_announcement_until_every_worker_switched():
    def doc(current, nxt=None):
        return {"current": current, "next": nxt, "hashes": [current] + ([nxt] if nxt else []), "expires": "E-" + current,
                "switch_at": "S" if nxt else None}

    assert merge_fingerprints([]) is None
    before = merge_fingerprints([doc("c", "n"), doc("c", "n")])
    assert before == doc("c", "n")
    # worker 0 switched, worker 1 not yet: still "c, then n", as before the switch
    assert merge_fingerprints([doc("n"), doc("c", "n")]) == doc("c", "n")
    assert merge_fingerprints([doc("n"), doc("n")]) == doc("n")
    odd = merge_fingerprints([doc("a"), doc("b")])  # unrelated certificates: both pinned, the first current
    assert odd["current"] == "a" and odd["hashes"] == ["a", "b"] and odd["next"] == "b"


def test_fingerprint_unavailable_when_no_worker_answers():
    async def main() -> None:
        async def nobody() -> None:
            return None

        server = await start_http("127.0.0.1", 0, fingerprint=nobody, metrics=RelayMetrics(), web_root=None,
                                  health=lambda: True)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        writer.write(b"GET /fingerprint HTTP/1.1\r\nHost: x\r\n\r\n")
        head = (await reader.read()).split(b"\r\n", 1)[0]
        writer.close()
        server.close()
        await server.wait_closed()
        assert head == b"HTTP/1.1 503 Service Unavailable"

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_workers_rotate_together_announced_ahead_on_fingerprint(tmp_path, monkeypatch):
    """--workers 2 on a schedule of seconds (a certificate every 4 s, announced 3 s before its
    switch): both workers announce the same next certificate, made by one of them; the merged
    /fingerprint serves it ahead; both switch live at the switch time, new connections on each
    worker get it and the old pin fails."""
    from moq import api
    from moq.transport.tls import CertificateMismatch

    monkeypatch.setenv(SCHEDULE_ENV, "10,6,3")  # validity, announce and switch before expiry, seconds

    def events(relay: RelayProcess, name: str) -> list[dict]:
        return [e for e in map(json.loads, (line for line in relay.log_text().splitlines() if line.startswith("{")))
                if e.get("event") == name]

    def by_worker(relay: RelayProcess, name: str, fingerprint: str) -> dict[str, dict]:
        return {e["worker"]: e for e in events(relay, name) if e["fingerprint"] == fingerprint}

    def fingerprint_doc(relay: RelayProcess) -> dict:
        return json.loads(relay.http_get("/fingerprint?format=json"))

    async def cycle(relay: RelayProcess, seen: set[str]) -> bool:
        """One rotation, watched; False when this test was too slow to watch it (a loaded machine)."""
        nxt = None

        def announced() -> bool:  # a next certificate both workers announce live (one that started after
            nonlocal nxt  # an announcement time found it at its first load, without a log line)
            nxt = next((e["fingerprint"] for e in events(relay, "certificate_next") if e["fingerprint"] not in seen
                        and set(by_worker(relay, "certificate_next", e["fingerprint"])) == {"0", "1"}), None)
            return nxt is not None

        def superseded() -> bool:  # the next rotation has made `nxt` old already
            return any(e["previous"] == nxt for e in events(relay, "certificate_switched"))

        await wait_until(announced, 20, what=f"both workers announcing a next certificate\n{relay.log_tail()}")
        seen.add(nxt)
        doc = fingerprint_doc(relay)  # 3 s before the switch: the current certificate, and the next one
        if doc["current"] == nxt:
            return False
        assert doc["next"] == nxt and doc["hashes"] == [doc["current"], nxt], doc
        old, switch_at = doc["current"], doc["switch_at"]
        made = by_worker(relay, "certificate_next", nxt)
        assert sorted(e["generated"] for e in made.values()) == [False, True], made  # one made it, one loaded it
        await wait_until(lambda: set(by_worker(relay, "certificate_switched", nxt)) == {"0", "1"}, 10,
                         what=f"both workers switching\n{relay.log_tail()}")
        for e in by_worker(relay, "certificate_switched", nxt).values():
            assert e["previous"] == old and switch_at <= e["timestamp"][:19] + "Z", (e, switch_at)  # not early
        # new connections on each worker get the new certificate (the old one is pinned in vain)
        accepted = "moq_relay_sessions_accepted_total"
        before = now = relay.by_worker(accepted)
        conns = []
        try:
            for _ in range(16):
                try:
                    conns.append(await api.connect(relay.url(), fingerprint=nxt, timeout=5))
                except CertificateMismatch:
                    if superseded():
                        return False
                    raise
                now = relay.by_worker(accepted)
                if all(now[k] > before[k] for k in ("0", "1")):
                    break
            assert all(now[k] > before[k] for k in ("0", "1")), (before, now)
            with pytest.raises(CertificateMismatch):
                await api.connect(relay.url(), fingerprint=old, timeout=5)
            assert relay.http_get("/fingerprint").decode() == nxt or superseded()
        finally:
            for conn in conns:
                await conn.aclose()
        return True

    async def main(relay: RelayProcess) -> None:
        seen: set[str] = set()
        for _ in range(3):
            if await cycle(relay, seen):
                return
        raise AssertionError(f"3 rotations went by too fast to watch: {seen}")

    with RelayProcess("--workers", "2", "--state-dir", str(tmp_path / "state"), "--drain-timeout", "1") as relay:
        asyncio.run(main(relay))
        assert relay.stop(timeout=20) == 0, relay.log_tail()
        assert not [e for e in events(relay, "certificate_refresh_failed")]
