"""moq-token as real processes: keygen -> sign -> verify, and a bad token's reason with exit 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(60)


def moq_token(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "moq.token_cli", *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_keygen_sign_verify(tmp_path, alg):
    priv, pub = tmp_path / "priv.pem", tmp_path / "pub.pem"
    r = moq_token("keygen", "--private", str(priv), "--public", str(pub), "--algorithm", alg)
    assert r.returncode == 0, r.stderr
    assert b"PRIVATE KEY" in priv.read_bytes() and b"PUBLIC KEY" in pub.read_bytes()
    assert moq_token("keygen", "--private", str(priv), "--public", str(pub)).returncode == 1  # no overwrite

    r = moq_token("sign", "--key", str(priv), "--root", "live", "--pub", "demo", "--sub", "demo", "--get", "x",
                  "--expires", "1h")
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert token.count(".") == 2

    r = moq_token("verify", "--key", str(pub), token)
    assert r.returncode == 0, r.stderr
    claims = json.loads(r.stdout)
    assert claims["root"] == "live" and claims["put"] == ["demo"] and claims["get"] == ["demo", "x"]
    assert claims["allows"] == {"put": ["live/demo"], "get": ["live/demo", "live/x"]}
    assert 3500 <= claims["exp"] - claims["iat"] <= 3600

    r = moq_token("verify", "--key", str(pub), "-", stdin=token[:-6] + "AAAAAA")  # a broken signature
    assert r.returncode == 1 and "invalid token (invalid)" in r.stderr and "signature" in r.stderr, r.stderr


def test_expired_and_garbage_tokens_and_bad_usage(tmp_path):
    secret = tmp_path / "secret"
    assert moq_token("keygen", "--private", str(secret), "--algorithm", "HS256").returncode == 0
    r = moq_token("sign", "--key", str(secret), "--sub", "", "--expires", "1s", "--not-before", "0")
    token = r.stdout.strip()
    assert r.returncode == 0 and token, r.stderr
    r = moq_token("verify", "--key", str(secret), "garbage")
    assert r.returncode == 1 and "invalid token (malformed)" in r.stderr
    r = moq_token("sign", "--key", str(secret), "--root", "live")  # grants nothing
    assert r.returncode == 1 and "grants nothing" in r.stderr
    r = moq_token("sign", "--key", str(secret), "--sub", "x", "--expires", "soon")
    assert r.returncode == 2 and "duration" in r.stderr
    r = moq_token("sign", "--key", str(secret), "--sub", "x", "--expires", "-1s")
    assert r.returncode == 2
    r = moq_token("--help")
    assert r.returncode == 0 and "keygen" in r.stdout and "root" in r.stdout


def test_expired_token_reason(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s" * 40)
    import jwt

    token = jwt.encode({"get": [""], "exp": 1000}, "s" * 40, algorithm="HS256")
    r = moq_token("verify", "--key", str(secret), token)
    assert r.returncode == 1 and "invalid token (expired)" in r.stderr and '"exp": 1000' in r.stderr
