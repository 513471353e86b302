"""The token library (moq/token.py): sign/verify round trips per algorithm, moq-token's claims and
aliases, times against an injected `now`, segment-aware scopes, key files, and redaction."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from moq import token as tk

NOW = 1_800_000_000


def public(key: tk.Key) -> tk.Key:
    return key if key.algorithm == "HS256" else tk.Key.from_pem(key.public_pem())


@pytest.mark.parametrize("alg", tk.ALGORITHMS)
def test_sign_verify_round_trip(alg):
    key = tk.generate_key(alg)
    claims = tk.Claims(root="live", put=("demo",), get=("", "x"), exp=NOW + 60, nbf=NOW - 1, iat=NOW)
    token = tk.sign(key, claims)
    assert jwt.get_unverified_header(token)["alg"] == alg
    assert tk.verify(token, [public(key)], NOW) == claims
    assert tk.verify(token.encode(), [tk.generate_key(alg), public(key)], NOW) == claims  # rotation: any key


@pytest.mark.parametrize("alg", tk.ALGORITHMS)
def test_wrong_key_and_tampering_are_invalid(alg):
    key, other = tk.generate_key(alg), tk.generate_key(alg)
    token = tk.sign(key, tk.Claims(get=("live",)))
    with pytest.raises(tk.TokenError) as err:
        tk.verify(token, [public(other)], NOW)
    assert err.value.kind == tk.TokenError.INVALID
    head, payload, sig = token.split(".")
    forged = base64.urlsafe_b64encode(json.dumps({"get": [""]}).encode()).rstrip(b"=").decode()
    with pytest.raises(tk.TokenError) as err:
        tk.verify(f"{head}.{forged}.{sig}", [public(key)], NOW)
    assert err.value.kind == tk.TokenError.INVALID


def test_algorithm_confusion_and_none_are_refused():
    key = tk.generate_key("ES256")
    pub = public(key)
    # HS256 "signed" with the public key's PEM as the secret: no HS256 key is configured
    forged = jwt.encode({"get": [""]}, "x" * 40, algorithm="HS256")
    with pytest.raises(tk.TokenError) as err:
        tk.verify(forged, [pub], NOW)
    assert err.value.kind == tk.TokenError.INVALID and "HS256" in err.value.reason
    unsigned = jwt.encode({"get": [""]}, None, algorithm="none")
    with pytest.raises(tk.TokenError) as err:
        tk.verify(unsigned, [pub], NOW)
    assert err.value.kind == tk.TokenError.INVALID


def test_moq_token_claims_pub_sub_aliases_and_strings():
    secret = tk.Key.secret(b"s" * 32)
    token = jwt.encode({"root": "r", "pub": "a", "put": ["b"], "sub": ["c"], "get": "d"}, secret.material,
                       algorithm="HS256")
    claims = tk.verify(token, [secret], NOW)
    assert claims.put == ("b", "a") and claims.get == ("d", "c")
    assert claims.grants("put") == ("r/b", "r/a")
    for bad in ({"put": 5}, {"get": ["ok", 3]}, {"root": ["x"], "get": ""}, {"get": "", "exp": "soon"}):
        with pytest.raises(tk.TokenError) as err:
            tk.verify(jwt.encode(bad, secret.material, algorithm="HS256"), [secret], NOW)
        assert err.value.kind == tk.TokenError.MALFORMED, bad
    with pytest.raises(tk.TokenError) as err:  # grants nothing (moq-token refuses these too)
        tk.verify(jwt.encode({"root": "r"}, secret.material, algorithm="HS256"), [secret], NOW)
    assert err.value.kind == tk.TokenError.USELESS
    with pytest.raises(ValueError):
        tk.sign(secret, tk.Claims(root="r"))


def test_expiry_and_not_before_use_now():
    key = tk.generate_key("EdDSA")
    token = tk.sign(key, tk.Claims(get=("",), nbf=NOW, exp=NOW + 10))
    assert tk.verify(token, [public(key)], NOW).exp == NOW + 10
    assert tk.verify(token, [public(key)], NOW + 9.9)
    for now, kind in ((NOW + 10, tk.TokenError.EXPIRED), (NOW + 1e6, tk.TokenError.EXPIRED),
                      (NOW - 0.5, tk.TokenError.NOT_YET_VALID)):
        with pytest.raises(tk.TokenError) as err:
            tk.verify(token, [public(key)], now)
        assert err.value.kind == kind, now
    assert tk.verify(token, [public(key)], NOW + 10, leeway=5)  # a leeway stretches both ends
    assert tk.verify(token, [public(key)], NOW - 2, leeway=5)
    forever = tk.sign(key, tk.Claims(get=("",)))  # no exp: valid at any time
    assert tk.verify(forever, [public(key)], 4e9).exp is None


@pytest.mark.parametrize(("root", "grant", "path", "allowed"), [
    ("live", "demo", "live/demo", True),
    ("live", "demo", "live/demo/cam1", True),
    ("live", "demo", "live/demox", False),  # segment boundaries
    ("live", "demo", "live", False),  # a parent is not covered
    ("live", "", "live/anything/below", True),  # "" = all of root
    ("live", "", "lively", False),
    ("", "", "", True),
    ("", "", "x/y", True),
    ("/live/", "/demo//", "live/demo/a", True),  # slashes at the ends are implicit
    ("live/", "demo", "live//demo", True),
    ("", "live/demo", "live/demo", True),
])
def test_scope_matching(root, grant, path, allowed):
    assert tk.Claims(root=root, put=(grant,)).allows("put", path) is allowed
    assert tk.Claims(root=root, put=(grant,)).allows("get", path) is False  # roles are separate


def test_namespace_path():
    assert tk.namespace_path((b"live", b"demo")) == "live/demo"
    assert tk.namespace_path(()) == ""
    assert tk.namespace_path((b"live", b"", b"x")) == "live/x"
    claims = tk.Claims(get=("live/demo",))
    assert claims.allows("get", tk.namespace_path((b"live", b"demo", b"cam")))
    assert not claims.allows("get", tk.namespace_path((b"live", b"demox")))
    assert not claims.allows("get", tk.namespace_path((b"live/demox",)))


def test_malformed_input():
    key = tk.generate_key("ES256")
    for junk in ("", "abc", "a.b.c", "x" * 9000, b"\xff\xfe", "eyJhbGciOiJFUzI1NiJ9.!!.!!"):
        with pytest.raises(tk.TokenError) as err:
            tk.verify(junk, [key], NOW)
        assert err.value.kind in (tk.TokenError.MALFORMED, tk.TokenError.INVALID), junk
        assert "x" * 100 not in str(err.value)


def test_key_files(tmp_path):
    key = tk.generate_key("ES256")
    tk.write_key_pair(key, tmp_path / "priv.pem", tmp_path / "pub.pem")
    assert (tmp_path / "priv.pem").stat().st_mode & 0o077 == 0
    with pytest.raises(FileExistsError):
        tk.write_key_pair(key, tmp_path / "priv.pem", tmp_path / "other.pem")
    priv, pub = tk.load_key(tmp_path / "priv.pem"), tk.load_key(tmp_path / "pub.pem", allow_secret=False)
    assert priv.private and not pub.private and pub.algorithm == "ES256"
    assert tk.verify(tk.sign(priv, tk.Claims(get=("",))), [pub], NOW)
    with pytest.raises(ValueError, match="public key"):
        tk.sign(pub, tk.Claims(get=("",)))
    (tmp_path / "secret").write_bytes(b"t" * 40 + b"\n")
    assert tk.load_secret(tmp_path / "secret").material == b"t" * 40
    assert tk.load_key(tmp_path / "secret").algorithm == "HS256"
    with pytest.raises(ValueError, match="PEM or JWK"):
        tk.load_key(tmp_path / "secret", allow_secret=False)
    (tmp_path / "short").write_bytes(b"short")
    with pytest.raises(ValueError, match="32 bytes"):
        tk.load_secret(tmp_path / "short")
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError, match="P-256"):
        tk.Key.from_pem(tk.Key("ES256", p384, True).private_pem())
    with pytest.raises(ValueError, match="no such file|No such file"):
        tk.load_key(tmp_path / "missing.pem")


def test_jwk_keys_as_moq_token_writes_them():
    secret = b"k" * 32
    oct_jwk = {"kty": "oct", "alg": "HS256", "k": base64.urlsafe_b64encode(secret).rstrip(b"=").decode(), "kid": "a"}
    key = tk.Key.from_jwk(json.dumps(oct_jwk))
    assert key.algorithm == "HS256" and key.kid == "a"
    token = jwt.encode({"root": "live", "get": [""]}, secret, algorithm="HS256", headers={"kid": "a"})
    assert tk.verify(token, [tk.generate_key("HS256"), key], NOW).grants("get") == ("live",)
    ed = tk.generate_key("EdDSA")
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(ed.verifier))
    assert tk.verify(tk.sign(ed, tk.Claims(get=("",))), [tk.Key.from_jwk(jwk)], NOW)


def test_redact_and_query_token():
    assert tk.redact("/moq?jwt=aaa.bbb.ccc&x=1") == "/moq?jwt=<redacted>&x=1"
    assert tk.redact("https://h:1/?x=1&JWT=abc") == "https://h:1/?x=1&JWT=<redacted>"
    assert tk.redact("/plain/path") == "/plain/path"
    assert tk.token_from_query("/moq?x=1&jwt=a.b.c") == "a.b.c"
    assert tk.token_from_query("/moq?jwt=") is None
    assert tk.token_from_query("/moq") is None
