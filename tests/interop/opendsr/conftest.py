"""An OpenDSR controller's world: the processor's key and certificate (made here), a database
whose commits are real (the relay is another connection), a loopback callback receiver."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response

from app.core.config import Settings
from app.core.db import Database
from app.main import create_app
from tests.builders import make_category, make_controller, make_record, make_system
from tests.conftest import bearer
from tests.worker.conftest import receiver, wdb, worker_settings, worker_url

__all__ = ["receiver", "wdb", "worker_url"]

DOMAIN = "opendsr.spix.test"


@dataclass(frozen=True)
class Pki:
    key_path: Path
    cert_path: Path
    cert_pem: bytes


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("opendsr-pki")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DOMAIN)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(DOMAIN)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = folder / "processor.key", folder / "processor.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path.write_bytes(cert_pem)
    return Pki(key_path, cert_path, cert_pem)


def verify(cert_pem: bytes, body: bytes, signature: str) -> None:
    """What a controller does: the published certificate's key checks the body's bytes."""
    public = x509.load_pem_x509_certificate(cert_pem).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(base64.b64decode(signature), body, padding.PKCS1v15(), hashes.SHA256())


def verified(response: Response, cert_pem: bytes) -> Response:
    assert response.headers["x-opendsr-processor-domain"] == DOMAIN
    verify(cert_pem, response.content, response.headers["x-opendsr-signature"])
    return response


@pytest.fixture
def osettings(worker_url: str, tmp_path: Path, pki: Pki) -> Settings:
    return worker_settings(
        worker_url,
        tmp_path,
        opendsr_processor_domain=DOMAIN,
        opendsr_signing_key_path=pki.key_path,
        opendsr_certificate_path=pki.cert_path,
    )


@pytest.fixture
def oapp(osettings: Settings, wdb: Database) -> FastAPI:
    return create_app(osettings, database=wdb)


@pytest.fixture
async def oclient(oapp: FastAPI) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(
        transport=ASGITransport(app=oapp), base_url="https://processor.test"
    ) as client:
        yield client


@dataclass
class Tenant:
    controller_id: uuid.UUID
    key: dict[str, str]
    email: str
    phone: str
    customer_id: str
    records: list[uuid.UUID]


@dataclass
class World:
    acme: Tenant
    globex: Tenant
    system: str
    system_key: dict[str, str]


@pytest.fixture
async def world(wdb: Database) -> World:
    """Two customers holding records of one email address (each its own end user), one system."""
    system = f"crm-{uuid.uuid4().hex[:8]}"
    email = f"alice-{uuid.uuid4().hex[:8]}@example.com"
    async with wdb.sessionmaker() as session:
        await make_system(session, system)
        await make_category(session, "account.profile")
        tenants = []
        for name in ("Acme", "Globex"):
            controller = await make_controller(session, name=name)
            customer_id = f"C-{uuid.uuid4().hex[:6]}"
            records = [
                await make_record(
                    session,
                    system=system,
                    controller_id=controller.id,
                    categories=["account.profile"],
                    identities=identities,
                )
                for identities in (
                    [{"type": "email", "value": email}],
                    [{"type": "phone", "value": "+1 650 253 0000"}],
                    [{"type": "external_id", "value": customer_id}],
                )
            ]
            key = await bearer(session, "controller", controller_id=controller.id)
            tenants.append(Tenant(controller.id, key, email, "+16502530000", customer_id, records))
        system_key = await bearer(session, "system", system_key=system)
    return World(tenants[0], tenants[1], system, system_key)
