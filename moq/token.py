"""Authorization tokens: JWTs carrying moq-dev/moq's moq-token claims, so either tool's tokens work.

Claims (all optional but a token must grant something):
  root   the path prefix the grants are relative to ("" = everything)
  put    prefixes under root the holder may publish (a string or a list; "" = all of root)
  get    prefixes under root the holder may watch   (idem)
  exp, nbf, iat   NumericDate seconds; exp and nbf are enforced, iat is informational
`pub` and `sub` are accepted as aliases of `put` and `get` (their values are merged).

Paths are moq-token's: slashes at the ends are implicit and repeated ones collapse, and prefixes
match on segment boundaries (`live/demo` covers `live/demo/cam` but not `live/demox`).  A track
namespace is the path of its fields joined by "/" (`namespace_path`).

Pure: nothing here reads a clock (`now` is an argument) or does I/O, except the key-file helpers
(`load_key`, `load_secret`, `write_key_pair`).  Signatures: ES256 (P-256) and EdDSA (Ed25519)
key pairs, HS256 for a shared secret; each key verifies only its own algorithm, so a token cannot
choose a weaker one (no `none`, no HS256 forged with a public key as the secret).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

ALGORITHMS = ("ES256", "EdDSA", "HS256")
KEYPAIR_ALGORITHMS = ("ES256", "EdDSA")
MIN_SECRET_BYTES = 32  # RFC 7518 § 3.2: an HS256 key at least as long as the hash
#: § AUTHORIZATION TOKEN: Token Type 0 = "negotiated out-of-band"; for us, a JWT.
TOKEN_TYPE_JWT = 0
MAX_TOKEN_BYTES = 8192


class TokenError(ValueError):
    """Why a token is refused.  `kind` is one of the constants below (the relay maps it to the
    draft's error codes); the message never contains the token itself."""

    MALFORMED = "malformed"  # not a JWT, or claims of the wrong type
    INVALID = "invalid"  # bad signature, no key for its algorithm
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    USELESS = "useless"  # grants nothing

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


# --- paths (moq-token's rules) ------------------------------------------------------------------


def normalize(path: str) -> str:
    """Drop leading, trailing and repeated slashes: "/live//demo/" -> "live/demo"."""
    return "/".join(part for part in path.split("/") if part)


def has_prefix(path: str, prefix: str) -> bool:
    """`prefix` is `path` or its ancestor on a segment boundary; "" is everyone's prefix.
    Both arguments normalized."""
    if not prefix:
        return True
    return path == prefix or path.startswith(prefix + "/")


def join(base: str, other: str) -> str:
    """Two normalized paths joined, with no slash when either side is empty."""
    return f"{base}/{other}" if base and other else base or other


def namespace_path(namespace: Iterable[bytes]) -> str:
    """A track namespace as a path: its fields joined by "/" (as moq-dev/moq maps broadcasts)."""
    return normalize("/".join(bytes(f).decode("utf-8", "replace") for f in namespace))


_QUERY_JWT = re.compile(r"(?i)([?&]jwt=)[^&#\s\"']*")


def redact(text: str) -> str:
    """`text` with every ?jwt= / &jwt= query value replaced, for logs and error messages."""
    return _QUERY_JWT.sub(r"\1<redacted>", text)


def token_from_query(path: str) -> str | None:
    """The `jwt` query parameter of a request path ("/moq?jwt=..."), or None (empty counts as none)."""
    _, sep, query = path.partition("?")
    if not sep:
        return None
    from urllib.parse import parse_qsl

    for key, value in parse_qsl(query.split("#", 1)[0], keep_blank_values=True):
        if key == "jwt" and value:
            return value
    return None


# --- claims -------------------------------------------------------------------------------------


def _prefixes(payload: Mapping[str, Any], names: Sequence[str]) -> tuple[str, ...]:
    out: list[str] = []
    for name in names:
        value = payload.get(name)
        if value is None:
            continue
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise TokenError(TokenError.MALFORMED, f"claim {name!r} must be a string or a list of strings")
        out += [v for v in items if v not in out]
    return tuple(out)


def _time(payload: Mapping[str, Any], name: str) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TokenError(TokenError.MALFORMED, f"claim {name!r} must be a number of seconds")
    return int(value)


@dataclass(frozen=True, slots=True)
class Claims:
    root: str = ""
    put: tuple[str, ...] = ()
    get: tuple[str, ...] = ()
    exp: int | None = None
    nbf: int | None = None
    iat: int | None = None

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Claims:
        """moq-token's claims from a decoded JWT payload (`pub`/`sub` merged into `put`/`get`)."""
        if not isinstance(payload, Mapping):
            raise TokenError(TokenError.MALFORMED, "the payload is not a JSON object")
        root = payload.get("root", "")
        if not isinstance(root, str):
            raise TokenError(TokenError.MALFORMED, "claim 'root' must be a string")
        return cls(root, _prefixes(payload, ("put", "pub")), _prefixes(payload, ("get", "sub")),
                   _time(payload, "exp"), _time(payload, "nbf"), _time(payload, "iat"))

    def to_payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.root:
            out["root"] = self.root
        if self.put:
            out["put"] = list(self.put)
        if self.get:
            out["get"] = list(self.get)
        for name in ("exp", "nbf", "iat"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    def grants(self, action: str) -> tuple[str, ...]:
        """The absolute, normalized prefixes this token grants for "put" or "get"."""
        root = normalize(self.root)
        return tuple(join(root, normalize(p)) for p in (self.put if action == "put" else self.get))

    def allows(self, action: str, path: str) -> bool:
        """May the holder "put" (publish) or "get" (watch) at `path` and below?"""
        path = normalize(path)
        return any(has_prefix(path, grant) for grant in self.grants(action))

    def check_time(self, now: float, leeway: float = 0.0) -> None:
        """TokenError unless `now` (Unix seconds) lies in [nbf, exp)."""
        if self.exp is not None and now >= self.exp + leeway:
            raise TokenError(TokenError.EXPIRED, f"the token expired at {self.exp} (now {int(now)})")
        if self.nbf is not None and now + leeway < self.nbf:
            raise TokenError(TokenError.NOT_YET_VALID, f"the token is not valid before {self.nbf} (now {int(now)})")


# --- keys ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Key:
    """One signing or verifying key.  `material` is a cryptography key object or the HS256 secret."""

    algorithm: str
    material: Any
    private: bool
    kid: str | None = None

    @property
    def verifier(self) -> Any:
        if self.algorithm == "HS256" or not self.private:
            return self.material
        return self.material.public_key()

    @classmethod
    def secret(cls, secret: bytes, kid: str | None = None) -> Key:
        secret = secret.strip()
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"an HS256 secret needs at least {MIN_SECRET_BYTES} bytes, got {len(secret)}")
        return cls("HS256", secret, True, kid)

    @classmethod
    def from_pem(cls, data: bytes, kid: str | None = None) -> Key:
        """A PEM private or public key; the algorithm follows from its type (P-256 or Ed25519)."""
        try:
            if b"PRIVATE KEY" in data:
                material, private = serialization.load_pem_private_key(data, password=None), True
            else:
                material, private = serialization.load_pem_public_key(data), False
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not a usable PEM key: {exc}") from None
        return cls(_algorithm_of(material), material, private, kid)

    @classmethod
    def from_jwk(cls, data: str | Mapping[str, Any]) -> Key:
        """A JWK (moq-token's key files are JWKs): EC P-256, OKP Ed25519 or oct (HS256)."""
        try:
            fields = json.loads(data) if isinstance(data, str) else dict(data)
            jwk = jwt.PyJWK(fields)
        except (jwt.PyJWKError, ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a usable JWK: {exc}") from None
        kid = jwk.key_id
        if fields.get("kty") == "oct":
            return cls.secret(jwk.key, kid)
        material = jwk.key
        private = hasattr(material, "public_key")
        return cls(_algorithm_of(material), material, private, kid)

    def public_pem(self) -> bytes:
        if self.algorithm == "HS256":
            raise ValueError("an HS256 secret has no public part")
        return self.verifier.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def private_pem(self) -> bytes:
        if self.algorithm == "HS256" or not self.private:
            raise ValueError("not a private key")
        return self.material.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())


def _algorithm_of(material: Any) -> str:
    if isinstance(material, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "EdDSA"
    if isinstance(material, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        if isinstance(material.curve, ec.SECP256R1):
            return "ES256"
        raise ValueError(f"EC curve {material.curve.name} is not supported (ES256 needs P-256)")
    raise ValueError(f"unsupported key type {type(material).__name__} (use ES256 or EdDSA keys)")


def generate_key(algorithm: str = "ES256") -> Key:
    """A new private key: ES256 or EdDSA key pair, or a random HS256 secret (URL-safe text)."""
    if algorithm == "ES256":
        return Key("ES256", ec.generate_private_key(ec.SECP256R1()), True)
    if algorithm == "EdDSA":
        return Key("EdDSA", ed25519.Ed25519PrivateKey.generate(), True)
    if algorithm == "HS256":
        import base64

        return Key.secret(base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"="))
    raise ValueError(f"unknown algorithm {algorithm!r} (expected one of {', '.join(ALGORITHMS)})")


def parse_key(data: bytes, *, allow_secret: bool = True) -> Key:
    """A key from a file's bytes: PEM, JWK (JSON), or else (allow_secret) the raw HS256 secret."""
    text = data.lstrip()
    if text.startswith(b"-----BEGIN"):
        return Key.from_pem(data)
    if text.startswith(b"{"):
        return Key.from_jwk(data.decode("utf-8", "replace"))
    if not allow_secret:
        raise ValueError("not a PEM or JWK key (an HS256 secret goes in a secret file instead)")
    return Key.secret(data)


def load_key(path: str | os.PathLike, *, allow_secret: bool = True) -> Key:
    """`parse_key` of a file; ValueError names the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    try:
        return parse_key(data, allow_secret=allow_secret)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def load_secret(path: str | os.PathLike) -> Key:
    """An HS256 secret from a file (surrounding whitespace ignored)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    try:
        return Key.secret(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def write_key_pair(key: Key, private_path: str | os.PathLike, public_path: str | os.PathLike | None) -> None:
    """Write a private key (mode 0600) and its public PEM; refuses to overwrite a file."""
    body = key.material if key.algorithm == "HS256" else key.private_pem()
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(body + (b"\n" if key.algorithm == "HS256" else b""))
    if public_path is not None:
        fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.public_pem())


# --- sign and verify ----------------------------------------------------------------------------


def sign(key: Key, claims: Claims) -> str:
    """A compact JWS of `claims` (which must grant something) signed with a private key or secret."""
    if not key.private:
        raise ValueError("signing needs a private key or an HS256 secret, not a public key")
    if not claims.put and not claims.get:
        raise ValueError("the token grants nothing: give at least one put/pub or get/sub prefix")
    headers = {"kid": key.kid} if key.kid else None
    return jwt.encode(claims.to_payload(), key.material, algorithm=key.algorithm, headers=headers)


_NO_CHECKS = {"verify_signature": True, "verify_exp": False, "verify_nbf": False, "verify_iat": False,
              "verify_aud": False, "verify_iss": False, "verify_sub": False, "verify_jti": False,
              "require": []}


def verify(token: str | bytes, keys: Sequence[Key], now: float, *, leeway: float = 0.0) -> Claims:
    """The claims of a token signed by one of `keys` and valid at `now`; TokenError otherwise."""
    if isinstance(token, (bytes, bytearray, memoryview)):
        try:
            token = bytes(token).decode("ascii")
        except UnicodeDecodeError:
            raise TokenError(TokenError.MALFORMED, "the token is not ASCII") from None
    token = token.strip()
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenError(TokenError.MALFORMED, f"the token is longer than {MAX_TOKEN_BYTES} bytes")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError:
        raise TokenError(TokenError.MALFORMED, "not a JWT (expected header.payload.signature)") from None
    alg = header.get("alg")
    candidates = [k for k in keys if k.algorithm == alg]
    if not candidates:
        raise TokenError(TokenError.INVALID, f"no key for algorithm {alg!r}")
    kid = header.get("kid")
    candidates.sort(key=lambda k: k.kid != kid)  # the named key first, then the others (rotation)
    payload = None
    for key in candidates:
        try:
            payload = jwt.decode(token, key.verifier, algorithms=[key.algorithm], options=_NO_CHECKS)
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.DecodeError as exc:
            raise TokenError(TokenError.MALFORMED, f"undecodable token: {type(exc).__name__}") from None
        except jwt.InvalidTokenError as exc:
            raise TokenError(TokenError.INVALID, f"invalid token: {type(exc).__name__}") from None
    if payload is None:
        raise TokenError(TokenError.INVALID, "the signature does not match any key")
    claims = Claims.from_payload(payload)
    claims.check_time(now, leeway)
    if not claims.put and not claims.get:
        raise TokenError(TokenError.USELESS, "the token grants nothing (no put/get prefixes)")
    return claims


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload without checking anything (for `moq-token verify` to show what was refused)."""
    try:
        return jwt.decode(token.strip(), options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return {}


__all__ = ["ALGORITHMS", "Claims", "Key", "TokenError", "TOKEN_TYPE_JWT", "generate_key", "has_prefix", "join",
           "load_key", "load_secret", "namespace_path", "normalize", "parse_key", "redact", "sign",
           "token_from_query", "unverified_claims", "verify", "write_key_pair"]
