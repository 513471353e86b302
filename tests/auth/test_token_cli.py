"""moq-token as real processes: keygen -> sign -> verify, and a bad token's reason with exit 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from moq.token_cli import main

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(60)


def moq_token(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "moq.token_cli", *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=30)


def test_keygen_sign_verify(tmp_path):
    """Real processes, as an operator runs them."""
    priv, pub = tmp_path / "priv.pem", tmp_path / "pub.pem"
    r = moq_token("keygen", "--private", str(priv), "--public", str(pub))
    assert r.returncode == 0, r.stderr
    assert b"PRIVATE KEY" in priv.read_bytes() and b"PUBLIC KEY" in pub.read_bytes()

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


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """moq-token's main() in this process (the cheap way to cover every usage case)."""
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_eddsa_hs256_expired_garbage_and_bad_usage(tmp_path, capsys):
    priv, pub = tmp_path / "ed.pem", tmp_path / "ed.pub"
    assert run_main(capsys, "keygen", "--private", str(priv), "--public", str(pub), "--algorithm", "EdDSA")[0] == 0
    code, _, err = run_main(capsys, "keygen", "--private", str(priv), "--public", str(pub))
    assert code == 1 and "not overwriting" in err
    code, token, _ = run_main(capsys, "sign", "--key", str(priv), "--put", "a", "--expires", "never")
    assert code == 0 and "exp" not in json.loads(run_main(capsys, "verify", "--key", str(pub), token.strip())[1])
    assert run_main(capsys, "keygen", "--private", str(priv) + "x")[0] == 2  # EdDSA needs --public

    secret = tmp_path / "secret"
    assert run_main(capsys, "keygen", "--private", str(secret), "--algorithm", "HS256")[0] == 0
    code, token, err = run_main(capsys, "sign", "--key", str(secret), "--sub", "", "--expires", "10m",
                                "--not-before", "0s")
    assert code == 0 and token.strip(), err
    code, _, err = run_main(capsys, "verify", "--key", str(secret), "garbage")
    assert code == 1 and "invalid token (malformed)" in err
    code, _, err = run_main(capsys, "sign", "--key", str(secret), "--root", "live")  # grants nothing
    assert code == 1 and "grants nothing" in err
    assert run_main(capsys, "sign", "--key", str(secret), "--sub", "x", "--expires", "soon")[0] == 2
    assert run_main(capsys, "sign", "--key", str(secret), "--sub", "x", "--expires", "-1s")[0] == 2
    code, out, _ = run_main(capsys, "--help")
    assert code == 0 and "keygen" in out and "root" in out


def test_expired_token_reason(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s" * 40)
    token = jwt.encode({"get": [""], "exp": 1000}, "s" * 40, algorithm="HS256")
    r = moq_token("verify", "--key", str(secret), token)
    assert r.returncode == 1 and "invalid token (expired)" in r.stderr and '"exp": 1000' in r.stderr
