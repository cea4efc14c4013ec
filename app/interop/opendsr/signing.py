"""The processor's signature on every OpenDSR response and callback: RSA-SHA256 (PKCS#1 v1.5)
over the exact body bytes, base64 in `X-OpenDSR-Signature`, beside the domain the certificate
is issued to in `X-OpenDSR-Processor-Domain`. The certificate is published at the discovery's
`processor_certificate` URL so controllers verify with it."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from app.core.config import Environment, Settings

DEVELOPMENT_DOMAIN = "localhost"


class NotConfigured(Exception):
    """No signing key and certificate: OpenDSR is not served (the message names settings)."""


@dataclass(frozen=True, slots=True)
class ProcessorSigner:
    domain: str
    key: rsa.RSAPrivateKey
    certificate_pem: bytes

    def sign(self, body: bytes) -> str:
        signature = self.key.sign(body, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode("ascii")

    def headers(self, body: bytes) -> dict[str, str]:
        signature = self.sign(body)
        return {
            "X-OpenDSR-Processor-Domain": self.domain,
            "X-OpenDSR-Signature": signature,
            # The protocol's earlier name: its clients read these (spec 10.1).
            "X-OpenGDPR-Processor-Domain": self.domain,
            "X-OpenGDPR-Signature": signature,
        }


def processor_signer(settings: Settings) -> ProcessorSigner:
    """The configured key and certificate; development creates a self-signed pair in
    data_dir on first use (a production controller refuses self-signed certificates)."""
    key_path, cert_path = settings.opendsr_signing_key_path, settings.opendsr_certificate_path
    domain = settings.opendsr_processor_domain
    if key_path is None or cert_path is None or domain is None:
        if settings.env is Environment.production:
            raise NotConfigured(
                "OpenDSR needs SPIX_DSR_OPENDSR_PROCESSOR_DOMAIN, "
                "SPIX_DSR_OPENDSR_SIGNING_KEY_PATH and SPIX_DSR_OPENDSR_CERTIFICATE_PATH"
            )
        domain = domain or DEVELOPMENT_DOMAIN
        key_path = key_path or settings.data_dir / "opendsr.key"
        cert_path = cert_path or settings.data_dir / "opendsr.pem"
        if not cert_path.exists():
            _development_pair(key_path, cert_path, domain)
    return _load(key_path, cert_path, domain)


@lru_cache(maxsize=8)
def _load(key_path: Path, cert_path: Path, domain: str) -> ProcessorSigner:
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        certificate_pem = cert_path.read_bytes()
        certificate = x509.load_pem_x509_certificate(certificate_pem)
    except (OSError, ValueError) as exc:
        raise NotConfigured(f"the OpenDSR key or certificate cannot be read: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise NotConfigured("the OpenDSR signing key must be an RSA key")
    public = key.public_key().public_numbers()
    if certificate.public_key().public_numbers() != public:  # type: ignore[union-attr]
        raise NotConfigured("the OpenDSR certificate is not the signing key's")
    return ProcessorSigner(domain, key, certificate_pem)


def _development_pair(key_path: Path, cert_path: Path, domain: str) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
