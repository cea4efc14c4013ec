"""The worker's tests: a database of their own whose commits are real (a worker is another
connection, or another process), and a real HTTP receiver on loopback."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import delete

from app.controllers.models import Controller
from app.core.config import Settings
from app.core.crypto import SecretBox
from app.core.db import Database
from app.main import create_app
from app.outbox.models import OutboxEvent
from app.webhooks.relay import Relay, RelayConfig
from app.webhooks.signing import webhook_signer
from app.webhooks.transport import Resolver
from tests.builders import (
    TEST_AUDIT_KEY,
    TEST_SUBJECT_KEY,
    make_category,
    make_controller,
    make_record,
    make_system,
)
from tests.conftest import bearer
from tests.databases import fresh_database


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    started: float
    ended: float = 0.0


@dataclass
class Receiver:
    """Answers `status` (after `delay` seconds); with `hang` set it holds each request open
    until `release` is set."""

    url: str = ""
    status: int = 200
    delay: float = 0.0
    hang: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ids(self) -> list[str]:
        with self.lock:
            return [r.headers["webhook-id"] for r in self.received]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got = Received(
                {k.lower(): v for k, v in self.headers.items()},
                self.rfile.read(int(self.headers.get("content-length", 0))),
                time.monotonic(),
            )
            with receiver.lock:
                receiver.received.append(got)
            receiver.arrived.set()
            if receiver.hang:
                receiver.release.wait(30)
            if receiver.delay:
                time.sleep(receiver.delay)
            got.ended = time.monotonic()
            try:
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()
            except OSError:
                pass  # the sender is gone (killed)

        def log_message(self, *_args: Any) -> None:
            pass

    return Handler


@contextmanager
def receiving(host: str = "127.0.0.1", port: int = 0) -> Iterator[Receiver]:
    """A receiver listening on host:port (port 0: any free one) while the block runs."""
    receiver = Receiver()
    server = ThreadingHTTPServer((host, port), _handler(receiver))
    server.daemon_threads = True
    receiver.url = f"http://{host}:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as receiver:
        yield receiver


@pytest.fixture(scope="module")
async def worker_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    async with fresh_database(backend, tmp_path_factory.mktemp(f"worker-{backend}")) as url:
        yield url


def worker_settings(url: str, folder: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "subject_key": TEST_SUBJECT_KEY,
        "audit_key": TEST_AUDIT_KEY,
        "data_dir": folder,
        "webhook_allow_private_targets": True,
        "webhook_timeout_seconds": 1.0,
        "webhook_max_attempts": 3,
        "webhook_backoff_base_seconds": 0.0,
        "worker_poll_seconds": 0.05,
    } | overrides
    return Settings(**values)


@pytest.fixture
def wsettings(worker_url: str, tmp_path: Path) -> Settings:
    return worker_settings(worker_url, tmp_path)


@pytest.fixture
async def wdb(worker_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(worker_url, pool_size=4)
    async with database.sessionmaker() as session, session.begin():
        # Each test starts with an empty outbox: a worker takes whatever is due.
        await session.execute(delete(OutboxEvent))
    yield database
    await database.dispose()


@pytest.fixture
def wapp(wsettings: Settings, wdb: Database) -> FastAPI:
    return create_app(wsettings, database=wdb)


@pytest.fixture
async def wclient(wapp: FastAPI) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=wapp), base_url="http://test") as client:
        yield client


@pytest.fixture
async def wadmin(wdb: Database) -> dict[str, str]:
    async with wdb.sessionmaker() as session:
        return await bearer(session, "admin")


def relay_for(
    database: Database, settings: Settings, *, resolver: Resolver | None = None, **config: Any
) -> Relay:
    """The worker's relay, with the settings' keys (and, for a test, its own DNS)."""
    box = SecretBox(TEST_SUBJECT_KEY.encode(), settings.subject_key_id)
    base = RelayConfig.from_settings(settings)
    signer = webhook_signer(settings.resolve_webhook_key())
    extra: dict[str, Any] = {"resolver": resolver} if resolver else {}
    return Relay(database, box, dataclasses.replace(base, **config), signer=signer, **extra)


@dataclass
class World:
    platform: uuid.UUID
    system: str
    secret: str
    identities: list[dict[str, str]]


async def platform_of(database: Database) -> uuid.UUID:
    from sqlalchemy import select

    async with database.sessionmaker() as session:
        found = await session.scalar(select(Controller.id).where(Controller.kind == "platform"))
        if found is not None:
            return found
        return (await make_controller(session, kind="platform", name="Spix")).id


async def system_with_hook(
    client: AsyncClient, database: Database, admin: dict[str, str], url: str
) -> World:
    """A system with a webhook URL and a signing secret, holding one record of a subject of
    its own (so requests of other tests never reach it)."""
    world = await platform_system(database, url)
    response = await client.post(f"/v1/systems/{world.system}/webhook-secret", headers=admin)
    assert response.status_code == 201, response.text
    return World(
        world.platform, world.system, response.json()["webhook_signing_secret"], world.identities
    )


async def platform_system(database: Database, url: str | None = None) -> World:
    """A system of the platform's (with this webhook URL, or none) holding one record of a
    subject of its own; no signing secret yet."""
    platform = await platform_of(database)
    key = f"sys-{uuid.uuid4().hex[:8]}"
    identities = [{"type": "email", "value": f"{key}@example.com"}]
    async with database.sessionmaker() as session:
        await make_system(session, key, webhook_url=url)
        await make_category(session, "account.profile")
        await make_record(
            session,
            system=key,
            controller_id=platform,
            categories=["account.profile"],
            identities=identities,
        )
    return World(platform, key, "", identities)


async def file_access(client: AsyncClient, admin: dict[str, str], world: World) -> dict[str, Any]:
    body = {"type": "access", "regime": "gdpr", "identities": world.identities, "verified": True}
    response = await client.post("/v1/requests", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return dict(response.json())
