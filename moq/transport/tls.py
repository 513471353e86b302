"""TLS material for MoQ endpoints: dev certificates, server credentials, client verification.

Browsers can trust a self-signed certificate through WebTransport's ``serverCertificateHashes``
only if it is ECDSA P-256 and valid for at most 14 days, so :func:`generate_dev_certificate`
produces exactly that.  Native clients pin the same SHA-256 fingerprint
(:class:`ClientVerification`): aioquic has no pinning hook, so chain verification is switched
off and the peer certificate is compared after the handshake (see :meth:`ClientVerification.check`).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from aioquic.quic.configuration import QuicConfiguration
from aioquic.tls import load_pem_private_key, load_pem_x509_certificates
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import aioquic_seam as seam

#: Chrome rejects serverCertificateHashes certificates valid for longer than this.
MAX_PINNED_VALIDITY = datetime.timedelta(days=14)

DEFAULT_DEV_HOSTS = ("localhost", "127.0.0.1", "::1")


class CertificateMismatch(ConnectionError):
    """The server's certificate does not have the pinned SHA-256 fingerprint."""

    def __init__(self, expected: str, got: str | None) -> None:
        super().__init__(f"server certificate fingerprint mismatch: expected {expected}, got {got}")
        self.expected = expected
        self.got = got


class CertificateUntrusted(ConnectionError):
    """The server's certificate failed verification (self-signed, unknown CA, expired, wrong host):
    retrying cannot help; pin it with a fingerprint, or trust its CA."""


#: TLS alerts about the peer's certificate (RFC 8446 § 6.2), as QUIC CRYPTO_ERROR codes (0x100 + alert).
_CERTIFICATE_ALERTS = frozenset(0x100 + a for a in (42, 43, 44, 45, 46, 48))


def setup_failure(error_code: int, detail: str) -> ConnectionError:
    """The exception for a QUIC connection that closed during its handshake with `error_code`."""
    message = f"QUIC connection closed during setup ({detail})"
    return CertificateUntrusted(message) if error_code in _CERTIFICATE_ALERTS else ConnectionError(message)


def generate_dev_certificate(
    hosts: tuple[str, ...] | list[str] = DEFAULT_DEV_HOSTS, days: int = 10, now: datetime.datetime | None = None
) -> tuple[bytes, bytes]:
    """Return ``(cert_pem, key_pem)``: a self-signed ECDSA P-256 certificate for ``hosts``.

    IP literals become IP SANs, everything else DNS SANs.  The validity window (including a
    one-minute backdating for clock skew) stays within Chrome's 14-day pinning limit.  ``now``
    (aware UTC) is the issue time, for callers with their own clock (certificate rotation tests).
    """
    if not hosts:
        raise ValueError("generate_dev_certificate needs at least one host")
    validity = datetime.timedelta(days=days)
    backdate = datetime.timedelta(minutes=1)
    if days <= 0 or validity + backdate > MAX_PINNED_VALIDITY:
        raise ValueError(f"days must be in 1..13 (Chrome pins certificates valid <= 14 days), got {days}")
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = now or datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(os.urandom(16), "big") >> 1)
        .not_valid_before(now - backdate)
        .not_valid_after(now + validity)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert_pem, key_pem


def certificate_fingerprint(cert: bytes | x509.Certificate) -> str:
    """Lowercase hex SHA-256 of the certificate's DER (what serverCertificateHashes expects).

    Accepts PEM bytes (the first certificate is used) or a parsed certificate.
    """
    if isinstance(cert, (bytes, bytearray)):
        cert = x509.load_pem_x509_certificate(bytes(cert))
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def normalize_fingerprint(fingerprint: str) -> str:
    """Accept ``ab:cd:..`` or ``abcd..`` (any case, spaces ignored); return 64 lowercase hex chars."""
    value = fingerprint.strip().replace(":", "").replace(" ", "").lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"not a SHA-256 fingerprint (64 hex digits, colons allowed): {fingerprint!r}")
    return value


@dataclass(frozen=True)
class ServerCredentials:
    """A server certificate chain and key (PEM), plus the leaf's SHA-256 fingerprint."""

    cert_pem: bytes
    key_pem: bytes
    fingerprint: str

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> ServerCredentials:
        load_pem_private_key(key_pem)  # fail early on a bad key
        return cls(cert_pem, key_pem, certificate_fingerprint(cert_pem))

    @classmethod
    def load(cls, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> ServerCredentials:
        return cls.from_pem(Path(cert_path).read_bytes(), Path(key_path).read_bytes())

    @classmethod
    def dev(cls, hosts: tuple[str, ...] | list[str] = DEFAULT_DEV_HOSTS, days: int = 10,
            now: datetime.datetime | None = None) -> ServerCredentials:
        """Fresh self-signed credentials (see :func:`generate_dev_certificate`)."""
        return cls.from_pem(*generate_dev_certificate(hosts, days, now))

    @property
    def not_before(self) -> datetime.datetime:
        return x509.load_pem_x509_certificate(self.cert_pem).not_valid_before_utc

    @property
    def not_after(self) -> datetime.datetime:
        """When the leaf certificate expires (aware UTC)."""
        return x509.load_pem_x509_certificate(self.cert_pem).not_valid_after_utc

    def configure(self, config: QuicConfiguration) -> None:
        """Install the chain and key into an aioquic server configuration."""
        certs = load_pem_x509_certificates(self.cert_pem)
        config.certificate = certs[0]
        config.certificate_chain = certs[1:]
        config.private_key = load_pem_private_key(self.key_pem)


@dataclass(frozen=True)
class ClientVerification:
    """How a client checks the server: pinned fingerprint, ``insecure``, or CA verification.

    With neither ``fingerprint`` nor ``insecure``, aioquic verifies the chain and host name
    against ``cafile`` (or certifi's bundle when ``cafile`` is None).
    """

    fingerprint: str | None = None
    insecure: bool = False
    cafile: str | None = None

    def __post_init__(self) -> None:
        if self.fingerprint is not None:
            object.__setattr__(self, "fingerprint", normalize_fingerprint(self.fingerprint))

    def configure(self, config: QuicConfiguration) -> None:
        if self.fingerprint is not None or self.insecure:
            config.verify_mode = ssl.CERT_NONE
        elif self.cafile is not None:
            config.load_verify_locations(cafile=str(self.cafile))

    def check(self, peer_certificate: x509.Certificate | None) -> None:
        """Raise :class:`CertificateMismatch` unless the pinned fingerprint matches (if any)."""
        if self.fingerprint is None:
            return
        got = certificate_fingerprint(peer_certificate) if peer_certificate is not None else None
        if got != self.fingerprint:
            raise CertificateMismatch(self.fingerprint, got)


def peer_certificate(quic: object) -> x509.Certificate | None:
    """The certificate the peer presented, read from aioquic's TLS context (private attribute)."""
    return seam.peer_certificate(quic)  # type: ignore[arg-type,return-value]
