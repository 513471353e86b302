"""Dev certificates, fingerprints and the client's verification modes."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from moq.transport.endpoint import connect, serve
from moq.transport.tls import (
    CertificateMismatch,
    ServerCredentials,
    certificate_fingerprint,
    generate_dev_certificate,
    normalize_fingerprint,
)

from .test_support import CREDS, KINDS, run_async, session_pair, url_for

pytestmark = pytest.mark.timeout(30)


def test_dev_certificate_is_p256_and_short_lived() -> None:
    cert_pem, key_pem = generate_dev_certificate(("localhost", "127.0.0.1", "::1", "relay.test"), days=10)
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    validity = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert validity <= datetime.timedelta(days=14)
    assert cert.not_valid_before_utc <= datetime.datetime.now(datetime.UTC) < cert.not_valid_after_utc
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "relay.test"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    der = cert.public_bytes(serialization.Encoding.DER)
    assert certificate_fingerprint(cert_pem) == hashlib.sha256(der).hexdigest()
    with pytest.raises(ValueError):
        generate_dev_certificate(days=14)  # plus the backdating, that exceeds Chrome's limit


def test_fingerprint_normalization() -> None:
    fp = CREDS.fingerprint
    assert len(fp) == 64 and fp == fp.lower()
    colon = ":".join(fp[i : i + 2] for i in range(0, 64, 2)).upper()
    assert normalize_fingerprint(colon) == fp
    with pytest.raises(ValueError, match="SHA-256"):
        normalize_fingerprint("abc")


def test_credentials_load_from_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cert_pem, key_pem = generate_dev_certificate()
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    creds = ServerCredentials.load(tmp_path / "cert.pem", tmp_path / "key.pem")
    assert creds.fingerprint == certificate_fingerprint(cert_pem)
    assert creds.cert_pem == cert_pem


@pytest.mark.parametrize("kind", KINDS)
def test_pinned_fingerprint_with_colons_connects(kind: str) -> None:
    colon = ":".join(CREDS.fingerprint[i : i + 2] for i in range(0, 64, 2)).upper()

    async def main() -> None:
        async with session_pair(kind, fingerprint=colon) as (client, server, _):
            assert client.session.kind == kind

    run_async(main())


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_fingerprint_fails_clearly(kind: str) -> None:
    other = ServerCredentials.dev()
    sessions: list[object] = []

    async def main() -> None:
        server = await serve("127.0.0.1", 0, CREDS, sessions.append)
        try:
            with pytest.raises(CertificateMismatch) as info:
                await connect(url_for(kind, server), fingerprint=other.fingerprint, timeout=5)
            assert info.value.expected == other.fingerprint
            assert info.value.got == CREDS.fingerprint
            assert "fingerprint mismatch" in str(info.value)
        finally:
            await server.aclose()

    run_async(main())
    assert sessions == []


def test_insecure_and_cafile_modes() -> None:
    async def main(tmp: str) -> None:
        async with session_pair("quic", fingerprint=None, insecure=True) as (client, _, _):
            assert client.session.protocol == "moqt-18"
        async with session_pair("webtransport", fingerprint=None, cafile=tmp) as (client, _, _):
            assert client.session.protocol == "moqt-18"
        server = await serve("127.0.0.1", 0, CREDS, lambda s: None)
        try:  # default: CA verification against certifi, which does not know our dev cert
            with pytest.raises(ConnectionError):
                await connect(url_for("quic", server), timeout=5)
        finally:
            await server.aclose()

    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".pem") as f:
        f.write(CREDS.cert_pem)
        f.flush()
        run_async(main(f.name))
