"""Authorization in a real relay process (relay/auth.py): tokens from SETUP, a request's parameter
and ?jwt= on the WebTransport URL; scopes, --public, the draft's error codes, expiry ending a
session, no token in the log, refusals in /metrics, and no hijack of a live namespace or track
(issue 10, attacks 2 and 3)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from moq import token as tk
from moq.connection import RequestRejectedError
from moq.errors import RequestErrorCode, SessionErrorCode
from moq.wire.types import AliasType, Parameters, Token, namespace_from_str

from .relayproc import CountingPublisher, RelayProcess, connect, take, wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("auth")
    key = tk.generate_key("ES256")
    tk.write_key_pair(key, d / "priv.pem", d / "pub.pem")
    return key, d / "pub.pem"


@pytest.fixture(scope="module")
def relay(keys):
    with RelayProcess("--auth-key", str(keys[1]), "--public", "open", "--drain-timeout", "1") as r:
        yield r
        assert r.stop() == 0, r.log_tail()


def mint(keys, *, put=(), get=(), exp_in: float | None = 600, root="") -> str:
    now = int(time.time())
    return tk.sign(keys[0], tk.Claims(root=root, put=tuple(put), get=tuple(get), iat=now,
                                      exp=None if exp_in is None else now + int(exp_in)))


async def publisher(relay, ns: str, token: str | None, scheme: str = "moqt"):
    pub = CountingPublisher()
    conn = await connect(relay, scheme, handler=pub, token=token)
    track = pub.create_track(namespace_from_str(ns), b"video")
    await conn.publish_namespace(namespace_from_str(ns))
    return pub, conn, track


async def refused(coro) -> int:
    with pytest.raises(RequestRejectedError) as err:
        await coro
    return err.value.code


def test_scopes_public_prefix_request_token_and_web_transport_jwt(relay, keys):
    ns = namespace_from_str("live/demo")

    async def main() -> None:
        anon = await connect(relay, "moqt")
        assert await refused(anon.publish_namespace(ns)) == RequestErrorCode.UNAUTHORIZED
        _, pconn, track = await publisher(relay, "live/demo", mint(keys, put=["demo"], root="live"))

        viewer = await connect(relay, "moqt", token=mint(keys, get=["live/demo"]))
        sub = await viewer.subscribe(ns, b"video")
        await wait_until(lambda: len(track.sinks) == 1, what="the upstream subscription")
        track.write(0, 0, b"a")
        assert [bytes(o.payload) for o in await take(sub, 1)] == [b"a"]

        # outside the scope: segment-aware prefixes (live/demo does not cover live/demox)
        other = await connect(relay, "moqt", token=mint(keys, get=["live/demox"]))
        assert await refused(other.subscribe(ns, b"video")) == RequestErrorCode.UNAUTHORIZED
        assert await refused(other.track_status(ns, b"video")) == RequestErrorCode.UNAUTHORIZED
        assert await refused(other.subscribe_namespace(namespace_from_str("live"))) == RequestErrorCode.UNAUTHORIZED
        assert await refused(anon.subscribe(ns, b"video")) == RequestErrorCode.UNAUTHORIZED
        # a watch-only token cannot publish
        assert await refused(viewer.publish_namespace(namespace_from_str("live/demo/x"))) == \
            RequestErrorCode.UNAUTHORIZED
        # the request's own AUTHORIZATION TOKEN parameter; a bad one: MALFORMED_AUTH_TOKEN
        own = Token(AliasType.USE_VALUE, token_type=0, value=mint(keys, get=["live"]).encode())
        sub2 = await anon.subscribe(ns, b"video", Parameters(authorization_tokens=(own,)))
        junk = Token(AliasType.USE_VALUE, token_type=0, value=b"not a jwt")
        anon2 = await connect(relay, "moqt")
        assert await refused(anon2.subscribe(ns, b"video", Parameters(authorization_tokens=(junk,)))) == \
            RequestErrorCode.MALFORMED_AUTH_TOKEN

        # --public open: anyone may watch it, nobody may publish it without a token
        assert await refused(anon.publish_namespace(namespace_from_str("open/cam"))) == RequestErrorCode.UNAUTHORIZED
        _, oconn, otrack = await publisher(relay, "open/cam", mint(keys, put=["open"]))
        osub = await anon.subscribe(namespace_from_str("open/cam"), b"video")

        # a browser's token: ?jwt= on the WebTransport URL (and in the raw-QUIC PATH option)
        web_token = mint(keys, get=["live/demo"])
        web = await connect_path(relay, "https", f"/?jwt={web_token}")
        wsub = await web.subscribe(ns, b"video")
        raw_token = mint(keys, get=["live/demo"], exp_in=601)
        raw = await connect_path(relay, "moqt", f"/moq?x=1&jwt={raw_token}")
        rsub = await raw.subscribe(ns, b"video")
        await wait_until(lambda: len(track.sinks) == 1 and len(otrack.sinks) == 1, what="subscriptions")
        track.write(0, 1, b"b")
        otrack.write(0, 0, b"o")
        assert [bytes(o.payload) for o in await take(sub2, 1)] == [b"b"]
        assert [bytes(o.payload) for o in await take(wsub, 1)] == [b"b"]
        assert [bytes(o.payload) for o in await take(rsub, 1)] == [b"b"]
        assert [bytes(o.payload) for o in await take(osub, 1)] == [b"o"]
        assert not any(c.is_closed for c in (anon, anon2, pconn, viewer, other, oconn, web, raw))
        for c in (anon, anon2, pconn, viewer, other, oconn, web, raw):
            await c.aclose()
        log = relay.log_text()
        for t in (web_token, raw_token, own.value.decode()):
            assert t not in log and t.split(".")[2] not in log, "a token reached the log"
        assert relay.metrics()['moq_relay_requests_refused_total{reason="unauthorized"}'] >= 8

    asyncio.run(main())


async def connect_path(relay, scheme: str, path: str):
    from moq import api

    return await api.connect(relay.url(scheme, path), fingerprint=relay.fingerprint)


@pytest.mark.parametrize("case", ["tampered", "garbage", "expired", "other_key"])
def test_bad_token_in_setup_closes_the_session_with_the_drafts_code(relay, keys, case):
    good = mint(keys, get=["live"])
    token, code = {
        "tampered": (good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"), SessionErrorCode.UNAUTHORIZED),
        "garbage": ("garbage", SessionErrorCode.MALFORMED_AUTH_TOKEN),
        "expired": (mint(keys, get=["live"], exp_in=-5), SessionErrorCode.EXPIRED_AUTH_TOKEN),
        "other_key": (tk.sign(tk.generate_key("EdDSA"), tk.Claims(get=("live",))), SessionErrorCode.UNAUTHORIZED),
    }[case]

    async def main() -> None:
        try:
            conn = await connect(relay, "moqt", token=token)
        except Exception as exc:  # closed before SETUP completed
            assert getattr(exc, "code", None) == code, exc
            return
        closed = await asyncio.wait_for(conn.wait_closed(), 5)
        assert closed.error_code == code, closed

    asyncio.run(main())


def test_token_expiring_during_the_session_ends_it(relay, keys):
    async def main() -> None:
        conn = await connect(relay, "https", token=mint(keys, get=["open"], exp_in=2))
        await conn.subscribe_namespace(namespace_from_str("open"))  # authorized while valid
        t0 = time.monotonic()
        closed = await asyncio.wait_for(conn.wait_closed(), 6)
        assert closed.error_code == SessionErrorCode.EXPIRED_AUTH_TOKEN, closed
        assert time.monotonic() - t0 < 4

    asyncio.run(main())


def test_no_hijack_with_auth(relay, keys):
    """Attacks 2 and 3: with a token that does not cover live/a, a PUBLISH of live/a:video and a
    PUBLISH_NAMESPACE of live/a are refused; the real publisher stays connected and the viewer
    gets only its objects.  A token that does cover it replaces the older publisher."""
    ns = namespace_from_str("live/a")

    async def main() -> None:
        real, rconn, track = await publisher(relay, "live/a", mint(keys, put=["live/a"]))
        attacker = await connect(relay, "moqt", token=mint(keys, put=["live/evil"], get=[""]))
        rid = attacker.publish(ns, b"video")  # attack 2, while nobody is subscribed
        assert await refused(attacker.wait_response(rid, 5)) == RequestErrorCode.UNAUTHORIZED
        assert await refused(attacker.publish_namespace(ns)) == RequestErrorCode.UNAUTHORIZED  # attack 3
        viewer = await connect(relay, "https", token=mint(keys, get=["live"]))
        sub = await viewer.subscribe(ns, b"video")
        await wait_until(lambda: len(track.sinks) == 1, what="the upstream subscription to the real publisher")
        track.write(0, 0, b"real")
        assert [bytes(o.payload) for o in await take(sub, 1)] == [b"real"]
        assert real.requests["SubscribeRequested"] == 1
        assert not rconn.is_closed and not attacker.is_closed
        # a publisher that is allowed (its reconnect, say) takes over: the older one's subscribers
        # get PUBLISH_DONE and new subscriptions go to the newer
        newer, nconn, ntrack = await publisher(relay, "live/a", mint(keys, put=["live"]))
        rest = await asyncio.wait_for(drain(sub), 5)
        assert rest == [] and sub.done is not None
        sub = await viewer.subscribe(ns, b"video")
        await wait_until(lambda: len(ntrack.sinks) == 1, what="the subscription to the newer publisher")
        ntrack.write(0, 0, b"newer")
        assert [bytes(o.payload) for o in await take(sub, 1)] == [b"newer"]
        assert newer.requests["SubscribeRequested"] == 1 and real.requests["SubscribeRequested"] == 1
        assert not rconn.is_closed
        for c in (rconn, attacker, viewer, nconn):
            await c.aclose()
        assert "namespace_publisher_replaced" in relay.log_text()

    asyncio.run(main())


async def drain(sub) -> list:
    return [o async for o in sub]


def test_open_relay_warns_at_start_and_on_a_second_publisher():
    with RelayProcess("--drain-timeout", "1") as relay:
        async def main() -> None:
            _, c1, _ = await publisher(relay, "live/a", None)
            _, c2, _ = await publisher(relay, "live/a", None)  # today's behaviour: accepted
            other = await connect(relay, "moqt")
            rid = other.publish(namespace_from_str("live/a"), b"video")
            await other.wait_response(rid, 5)
            await wait_until(lambda: "track_publisher_conflict" in relay.log_text(), what="the warning")
            peers = [json.loads(line) for line in relay.log_text().splitlines() if line.startswith("{")]
            ns_warn = next(e for e in peers if e.get("event") == "namespace_publisher_conflict")
            assert ns_warn["level"] == "warning" and ns_warn["peer"] and ns_warn["existing"]
            assert ns_warn["peer"] not in ns_warn["existing"]
            for c in (c1, c2, other):
                await c.aclose()

        asyncio.run(main())
        start = [json.loads(line) for line in relay.log_text().splitlines() if '"auth_disabled"' in line]
        assert start and start[0]["level"] == "warning"
        assert relay.stop() == 0


def test_upstream_link_presents_upstream_token(keys):
    """A child relay's --upstream link needs --upstream-token to announce to an authorizing parent."""
    with RelayProcess("--auth-key", str(keys[1]), "--drain-timeout", "1") as parent, \
            RelayProcess("--upstream", parent.url("moqt"), "--upstream-fingerprint", parent.fingerprint,
                         "--upstream-token", mint(keys, put=["tree"], get=[""]), "--drain-timeout", "1",
                         http=False) as child:
        async def main() -> None:
            _, pconn, track = await publisher(child, "tree/cam", None)  # the child relay is open
            viewer = await connect(parent, "moqt", token=mint(keys, get=["tree"]))
            deadline = time.monotonic() + 10
            while True:  # the child announces upstream asynchronously
                try:
                    sub = await viewer.subscribe(namespace_from_str("tree/cam"), b"video")
                    break
                except RequestRejectedError as exc:
                    assert exc.code == RequestErrorCode.DOES_NOT_EXIST and time.monotonic() < deadline, exc
                    await asyncio.sleep(0.1)
            await wait_until(lambda: len(track.sinks) == 1, what="the subscription through both relays")
            track.write(0, 0, b"t")
            assert [bytes(o.payload) for o in await take(sub, 1)] == [b"t"]
            await viewer.aclose()
            await pconn.aclose()

        asyncio.run(main())


def test_workers_link_to_the_hub_with_auth_on(keys):
    """--workers 2 with --auth-key: worker 1's link to worker 0 presents the supervisor's per-run
    internal token, so namespaces published on worker 1 reach the hub."""
    accepted = "moq_relay_sessions_accepted_total"
    with RelayProcess("--workers", "2", "--auth-key", str(keys[1]), "--drain-timeout", "2") as relay:
        async def main() -> None:
            token = mint(keys, put=["w"])
            conns = []
            before = relay.by_worker(accepted)
            while len(conns) < 20:
                _, conn, _ = await publisher(relay, f"w/{len(conns)}", token)
                conns.append(conn)
                now = relay.by_worker(accepted)
                if len(conns) >= 3 and now.get("1", 0) > before.get("1", 0):
                    break  # at least one publisher landed on worker 1
            assert relay.by_worker(accepted)["1"] > before["1"], "no session landed on worker 1"
            await wait_until(lambda: relay.by_worker("moq_relay_namespaces").get("0", 0) >= len(conns), timeout=10,
                             what="worker 0 learning every namespace, worker 1's over the authorized link")
            for c in conns:
                await c.aclose()

        asyncio.run(main())
        assert "session_unauthorized" not in relay.log_text()


def test_moq_view_token_option_and_env(relay, keys):
    """moq-view as a process: MOQ_TOKEN (or --token) goes in SETUP; without it the relay refuses (exit 4)."""
    import sys

    from .relayproc import ROOT, python_env

    ns = "live/cli"

    async def main() -> None:
        _, pconn, track = await publisher(relay, ns, mint(keys, put=[ns]))
        argv = [sys.executable, "-m", "viewer", relay.url("moqt"), "--namespace", ns, "--track", "video",
                "--fingerprint", relay.fingerprint, "--duration", "0.5", "--json"]
        env = {k: v for k, v in python_env().items() if k != "MOQ_TOKEN"}
        with_env = await asyncio.create_subprocess_exec(*argv, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.PIPE,
                                                        env={**env, "MOQ_TOKEN": mint(keys, get=[ns])})
        without = await asyncio.create_subprocess_exec(*argv, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                       stderr=asyncio.subprocess.PIPE, env=env)
        g = 0
        while with_env.returncode is None or without.returncode is None:
            track.write(g, 0, b"frame")
            track.end_group(g)
            g += 1
            await asyncio.sleep(0.05)
            if g > 400:
                raise AssertionError("moq-view did not exit")
        out, err = await with_env.communicate()
        assert with_env.returncode == 0, err.decode()
        assert '"summary": true' in out.decode() and '"track": "video"' in out.decode()
        _, err = await without.communicate()
        assert without.returncode == 4, err.decode()
        assert "UNAUTHORIZED" in err.decode() or "not authorized" in err.decode(), err.decode()
        await pconn.aclose()

    asyncio.run(main())


@pytest.mark.parametrize(("alias_type", "code"), [(AliasType.REGISTER, SessionErrorCode.AUTH_TOKEN_CACHE_OVERFLOW),
                                                  (AliasType.USE_ALIAS, SessionErrorCode.UNKNOWN_AUTH_TOKEN_ALIAS)])
def test_token_aliases_in_a_request_close_the_session(relay, keys, alias_type, code):
    """The relay advertises no token cache (MAX_AUTH_TOKEN_CACHE_SIZE 0): aliases are errors."""
    value = mint(keys, get=["live"]).encode() if alias_type == AliasType.REGISTER else None
    tok = Token(alias_type, alias=7, token_type=0 if value else None, value=value)

    async def main() -> None:
        conn = await connect(relay, "moqt")
        with pytest.raises(Exception):  # noqa: B017 (refused, or the session closed under it)
            await conn.subscribe(namespace_from_str("live/x"), b"video", Parameters(authorization_tokens=(tok,)))
        closed = await asyncio.wait_for(conn.wait_closed(), 5)
        assert closed.error_code == code, closed

    asyncio.run(main())
