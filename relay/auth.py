"""Who may publish and watch what: the relay's one decision point (DESIGN.md, Auth).

`Authorizer.authorize(session, action, namespace)` answers every request before the relay routes it:
"put" for PUBLISH_NAMESPACE and PUBLISH, "get" for SUBSCRIBE, FETCH, TRACK_STATUS, SUBSCRIBE_NAMESPACE
and SUBSCRIBE_TRACKS (the prefix of a namespace subscription must itself lie inside a grant).  A
session's grants come from its tokens (moq.token; moq-dev/moq's claims): SETUP's AUTHORIZATION TOKEN
options, else a `?jwt=` query on the WebTransport URL or in the raw-QUIC PATH option.  A request may
carry its own token (AUTHORIZATION TOKEN parameter, USE_VALUE) that adds to the session's grants for
that request.  `--public` prefixes may be watched by anyone.

Error codes (§ Session Termination, § REQUEST_ERROR): a bad token in SETUP closes the session with
MALFORMED_AUTH_TOKEN (not a JWT), EXPIRED_AUTH_TOKEN or UNAUTHORIZED (bad signature, unknown key, not
yet valid); a request outside the grants gets REQUEST_ERROR UNAUTHORIZED, a bad per-request token
MALFORMED_AUTH_TOKEN / EXPIRED_AUTH_TOKEN / UNAUTHORIZED.  We advertise no token cache
(MAX_AUTH_TOKEN_CACHE_SIZE 0), so a request that REGISTERs an alias closes the session with
AUTH_TOKEN_CACHE_OVERFLOW and one that uses an alias with UNKNOWN_AUTH_TOKEN_ALIAS.

Expiry: the session closes with EXPIRED_AUTH_TOKEN when the earliest `exp` of the tokens it relies
on passes (SETUP tokens, and per-request tokens that were needed), even if valid at connect.

Publishing over someone else (`namespace_takeover`, `track_takeover`): with authorization on, a
session whose token allows a namespace or track that another live session publishes replaces it
(the relay cancels the older PUBLISH_NAMESPACE and ends the tracks it fed with PUBLISH_DONE);
without, the relay keeps its old behaviour and logs a warning naming both peers.  Tokens never
reach a log line or an error reason.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from moq import token as tk
from moq.errors import KeyValueFormattingError, RequestErrorCode, SessionErrorCode
from moq.wire import control as c
from moq.wire.control import SetupOption
from moq.wire.types import EMPTY_PARAMETERS, AliasType, Parameters, Token, TrackNamespace, namespace_to_str

if TYPE_CHECKING:
    from moq.connection import Connection

    from .config import RelayConfig
    from .relay import Relay, RelayTrack

log = structlog.get_logger(__name__)

PUT, GET = "put", "get"
ENV_SECRET = "MOQ_RELAY_AUTH_SECRET"  # the HS256 secret itself (never a flag)
ENV_INTERNAL = "MOQ_RELAY_INTERNAL_SECRET"  # --workers: the supervisor's per-run secret for worker links
INTERNAL_KID = "moq-relay-internal"

_SESSION_CODE = {tk.TokenError.MALFORMED: SessionErrorCode.MALFORMED_AUTH_TOKEN,
                 tk.TokenError.EXPIRED: SessionErrorCode.EXPIRED_AUTH_TOKEN}
_REQUEST_CODE = {tk.TokenError.MALFORMED: RequestErrorCode.MALFORMED_AUTH_TOKEN,
                 tk.TokenError.EXPIRED: RequestErrorCode.EXPIRED_AUTH_TOKEN}
#: session close codes that mean "refused by authorization" (counted as reason="unauthorized")
AUTH_CLOSE_CODES = frozenset({SessionErrorCode.UNAUTHORIZED, SessionErrorCode.MALFORMED_AUTH_TOKEN,
                              SessionErrorCode.EXPIRED_AUTH_TOKEN, SessionErrorCode.AUTH_TOKEN_CACHE_OVERFLOW,
                              SessionErrorCode.UNKNOWN_AUTH_TOKEN_ALIAS})


@dataclass(frozen=True, slots=True)
class Refusal:
    code: int
    reason: str


@dataclass(slots=True)
class _Grants:
    """One session's verified tokens and the moment the earliest of them expires (Unix s)."""

    claims: list[tk.Claims] = field(default_factory=list)
    deadline: float | None = None
    timer: asyncio.TimerHandle | None = None
    failed: bool = False


def request_scope(msg: c.Message) -> tuple[str, TrackNamespace] | None:
    """(action, namespace) a request needs, or None for requests that need nothing of their own
    (a joining FETCH rides on its subscription, which was authorized)."""
    if isinstance(msg, (c.PublishNamespace, c.Publish)):
        return PUT, msg.track_namespace
    if isinstance(msg, (c.Subscribe, c.TrackStatus)):
        return GET, msg.track_namespace
    if isinstance(msg, (c.SubscribeNamespace, c.SubscribeTracks)):
        return GET, msg.track_namespace_prefix
    if isinstance(msg, c.Fetch) and msg.standalone is not None:
        return GET, msg.standalone.track_namespace
    return None


class Authorizer:
    """Per-process authorization state: the accepted keys, the public prefixes and each session's grants."""

    def __init__(self, keys: Sequence[tk.Key] = (), public: Sequence[str] = (), *,
                 on_refused: Callable[[], None] | None = None, clock: Callable[[], float] = time.time) -> None:
        self.keys = list(keys)
        self.public = tuple(tk.normalize(p) for p in public)
        self.on_refused = on_refused or (lambda: None)
        self.clock = clock
        self._sessions: dict[Any, _Grants] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    @classmethod
    def from_config(cls, cfg: RelayConfig, environ: Mapping[str, str] | None = None, **kw) -> Authorizer:
        """Keys from --auth-key files, --auth-secret-file or $MOQ_RELAY_AUTH_SECRET; ValueError if unusable."""
        env = os.environ if environ is None else environ
        keys = [tk.load_key(path, allow_secret=False) for path in cfg.auth_key]
        if cfg.auth_secret_file is not None:
            keys.append(tk.load_secret(cfg.auth_secret_file))
        if env.get(ENV_SECRET):
            try:
                keys.append(tk.Key.secret(env[ENV_SECRET].encode()))
            except ValueError as exc:
                raise ValueError(f"environment {ENV_SECRET}: {exc}") from None
        if keys and env.get(ENV_INTERNAL):  # workers of one --workers relay trust each other's links
            keys.append(tk.Key.secret(env[ENV_INTERNAL].encode(), kid=INTERNAL_KID))
        return cls(keys, cfg.public, **kw)

    def log_mode(self) -> None:
        if not self.enabled:
            log.warning("auth_disabled", detail="no --auth-key/--auth-secret-file: anyone may publish and watch "
                        "any namespace")
            if self.public:
                log.warning("public_ignored", detail="--public needs authorization on (--auth-key or "
                            "--auth-secret-file): everything is public already")
        else:
            log.info("auth_enabled", keys=len(self.keys), public=[p or "(all)" for p in self.public])

    # --- sessions -------------------------------------------------------------------------------
    def admit(self, conn: Connection) -> bool:
        """Check the tokens a new session presented; False if it was closed for them."""
        return not self.enabled or not self._grants(conn).failed

    def forget(self, conn: Connection) -> None:
        grants = self._sessions.pop(conn, None)
        if grants is not None and grants.timer is not None:
            grants.timer.cancel()

    def _grants(self, conn: Connection) -> _Grants:
        grants = self._sessions.get(conn)
        if grants is None:
            grants = self._sessions[conn] = _Grants()
            self._open(conn, grants)
        return grants

    def _open(self, conn: Connection, grants: _Grants) -> None:
        values: list[bytes] = []
        setup = conn.session.peer_setup
        try:
            for key, value in setup.options if setup is not None else ():
                if key != SetupOption.AUTHORIZATION_TOKEN or not isinstance(value, bytes):
                    continue
                tok = Token.decode(value)
                if tok.alias_type in (AliasType.DELETE, AliasType.USE_ALIAS):  # § AUTHORIZATION TOKEN
                    return self._fail(conn, grants, SessionErrorCode.PROTOCOL_VIOLATION, "token alias in SETUP")
                values.append(tok.value or b"")  # REGISTER beyond our cache size (0) counts as USE_VALUE
        except KeyValueFormattingError as exc:
            return self._fail(conn, grants, SessionErrorCode.KEY_VALUE_FORMATTING_ERROR, exc.reason)
        query = tk.token_from_query(conn.session.path or conn.transport.path or "")
        if query is not None:
            values.append(query.encode())
        now = self.clock()
        for value in values:
            try:
                claims = tk.verify(value, self.keys, now)
            except tk.TokenError as exc:
                return self._fail(conn, grants, _SESSION_CODE.get(exc.kind, SessionErrorCode.UNAUTHORIZED),
                                  exc.reason)
            grants.claims.append(claims)
            self._expires(conn, grants, claims.exp)
        if grants.claims:
            log.info("session_authorized", peer=conn.transport.peer, tokens=len(grants.claims),
                     put=sorted({g for cl in grants.claims for g in cl.grants(PUT)}),
                     get=sorted({g for cl in grants.claims for g in cl.grants(GET)}), expires=grants.deadline)

    def _fail(self, conn: Connection, grants: _Grants, code: int, reason: str) -> None:
        grants.failed = True
        self.on_refused()
        log.warning("session_unauthorized", peer=conn.transport.peer, code=int(code), reason=reason)
        if not conn.is_closed:
            conn.close(code, reason)

    def _expires(self, conn: Connection, grants: _Grants, exp: int | None) -> None:
        if exp is None or (grants.deadline is not None and grants.deadline <= exp):
            return
        grants.deadline = exp
        if grants.timer is not None:
            grants.timer.cancel()
        delay = max(0.0, exp - self.clock())
        grants.timer = asyncio.get_running_loop().call_later(delay, self._expire, conn)

    def _expire(self, conn: Connection) -> None:
        grants = self._sessions.get(conn)
        if grants is None or conn.is_closed:
            return
        if grants.deadline is not None and self.clock() < grants.deadline:  # the loop ran early
            grants.timer = asyncio.get_running_loop().call_later(grants.deadline - self.clock(), self._expire, conn)
            return
        grants.failed = True
        log.info("session_token_expired", peer=conn.transport.peer, expired_at=grants.deadline)
        conn.close(SessionErrorCode.EXPIRED_AUTH_TOKEN, "authorization token expired")

    # --- requests -------------------------------------------------------------------------------
    def check(self, conn: Connection, msg: c.Message) -> Refusal | None:
        """`authorize` for one incoming request message."""
        scope = request_scope(msg)
        if scope is None:
            return None
        return self.authorize(conn, scope[0], scope[1], getattr(msg, "parameters", EMPTY_PARAMETERS))

    def authorize(self, conn: Connection, action: str, namespace: TrackNamespace,
                  parameters: Parameters = EMPTY_PARAMETERS) -> Refusal | None:
        """None if `conn` may `action` ("put" or "get") at `namespace`, else why not (the session
        may have been closed, for a bad token in SETUP or an alias)."""
        if not self.enabled:
            return None
        grants = self._grants(conn)
        if grants.failed:
            return Refusal(RequestErrorCode.UNAUTHORIZED, "session not authorized")
        path = tk.namespace_path(namespace)
        if any(cl.allows(action, path) for cl in grants.claims):
            return None
        if action == GET and any(tk.has_prefix(path, p) for p in self.public):
            return None
        refusal = Refusal(RequestErrorCode.UNAUTHORIZED, f"not authorized to {_VERB[action]} {path or '(root)'}")
        for tok in parameters.authorization_tokens:
            if tok.alias_type == AliasType.REGISTER:  # we advertise a token cache of 0
                self._fail(conn, grants, SessionErrorCode.AUTH_TOKEN_CACHE_OVERFLOW, "no token cache (size 0)")
                return Refusal(RequestErrorCode.UNAUTHORIZED, "session closed")
            if tok.alias_type != AliasType.USE_VALUE:
                self._fail(conn, grants, SessionErrorCode.UNKNOWN_AUTH_TOKEN_ALIAS, "no token alias registered")
                return Refusal(RequestErrorCode.UNAUTHORIZED, "session closed")
            try:
                claims = tk.verify(tok.value or b"", self.keys, self.clock())
            except tk.TokenError as exc:
                refusal = Refusal(_REQUEST_CODE.get(exc.kind, RequestErrorCode.UNAUTHORIZED), exc.reason)
                continue
            if claims.allows(action, path):
                self._expires(conn, grants, claims.exp)
                return None
        return refusal

    # --- publishing over another session --------------------------------------------------------
    def upstream_token(self, cfg: RelayConfig, *, to_hub: bool = False, environ: Mapping[str, str] | None = None
                       ) -> str | None:
        """What our --upstream link presents: --upstream-token; but a --workers worker linking to
        worker 0 (`to_hub`, authorization on) presents a token of the supervisor's per-run secret."""
        env = os.environ if environ is None else environ
        if not to_hub:
            return cfg.upstream_token
        if self.enabled and env.get(ENV_INTERNAL):
            key = tk.Key.secret(env[ENV_INTERNAL].encode(), kid=INTERNAL_KID)
            return tk.sign(key, tk.Claims(put=("",), get=("",)))
        return None


_VERB = {PUT: "publish", GET: "watch"}


def internal_secret() -> str:
    """A fresh secret for one --workers run (the supervisor puts it in its workers' environment)."""
    return secrets.token_urlsafe(32)


def _peer(conn: Connection | None) -> str:
    return str(conn.transport.peer) if conn is not None else "?"


def _parent(relay: Relay) -> Connection | None:
    return relay.upstream.conn if relay.upstream is not None else None


def namespace_takeover(relay: Relay, conn: Connection, ns: TrackNamespace) -> list[tuple[Connection, int]]:
    """PUBLISH_NAMESPACE of `ns` by `conn`: the other live sessions' announcements of exactly `ns`
    that it replaces (authorization on), else [] (and, without authorization, a warning)."""
    others = [(o, rid) for o, rid in relay.announced.get(ns, ()) if o is not conn and not o.is_closed
              and o is not _parent(relay)]
    if not others:
        return []
    if not relay.auth.enabled:
        log.warning("namespace_publisher_conflict", namespace=namespace_to_str(ns), peer=_peer(conn),
                    existing=[_peer(o) for o, _ in others],
                    detail="no authorization: both kept, requests go to the earliest")
        return []
    log.warning("namespace_publisher_replaced", namespace=namespace_to_str(ns), peer=_peer(conn),
                replaced=[_peer(o) for o, _ in others])
    return others


def track_takeover(relay: Relay, conn: Connection, ns: TrackNamespace, name: bytes
                   ) -> tuple[Connection | None, RelayTrack | None]:
    """PUBLISH of (ns, name) by `conn` while another live session publishes it (a PUBLISH of the same
    track, or the namespace announcement it routes to).  Returns (that session, the live track it
    feeds that must end) when `conn` replaces it (authorization on), else (None, None)."""
    rt = relay.tracks.get((ns, name))
    owner = rt.source_conn if rt is not None and rt.state == "live" else None
    if owner is None:
        for n in range(len(ns), -1, -1):
            live = [o for o, _ in relay.announced.get(ns[:n], ()) if not o.is_closed]
            if live:
                owner = live[0]
                break
    if owner is None or owner is conn or owner.is_closed or owner is _parent(relay):
        return None, None
    track = f"{namespace_to_str(ns)}:{name.decode('utf-8', 'replace')}"
    if not relay.auth.enabled:
        log.warning("track_publisher_conflict", track=track, peer=_peer(conn), existing=_peer(owner),
                    detail="no authorization: relay behaviour unchanged")
        return None, None
    log.warning("track_publisher_replaced", track=track, peer=_peer(conn), replaced=_peer(owner))
    return owner, rt if rt is not None and rt.state == "live" and rt.source_conn is owner else None


__all__ = ["AUTH_CLOSE_CODES", "Authorizer", "ENV_INTERNAL", "ENV_SECRET", "GET", "PUT", "Refusal", "internal_secret",
           "namespace_takeover", "request_scope", "track_takeover"]
