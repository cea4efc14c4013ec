"""Safe webhook targets: https only, never loopback, link-local or private addresses, checked
at registration and again at every delivery."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import pytest
from httpx import AsyncClient
from sqlalchemy import select, update

from app.core.config import Settings
from app.core.db import Database
from app.outbox.models import OutboxEvent
from app.webhooks.targets import UnsafeTarget, check_shape
from app.webhooks.transport import PinnedBackend
from tests.worker.conftest import (
    Receiver,
    file_access,
    receiving,
    relay_for,
    system_with_hook,
)

UNSAFE = [
    "http://hooks.example.com/x",
    "ftp://hooks.example.com/x",
    "https://127.0.0.1/x",
    "https://127.9.9.9:8443/x",
    "https://10.1.2.3/x",
    "https://172.16.0.1/x",
    "https://192.168.1.1/x",
    "https://169.254.169.254/latest/meta-data",
    "https://[::1]/x",
    "https://[fe80::1]/x",
    "https://[fd00::1]/x",
    "https://[::ffff:127.0.0.1]/x",
    "https://0.0.0.0/x",
    "https://localhost/x",
    "https://LOCALHOST./x",
]


@pytest.mark.parametrize("url", UNSAFE)
def test_unsafe_shapes(url: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_shape(url, allow_private=False)


def test_the_development_setting_allows_http_and_loopback() -> None:
    assert check_shape("http://127.0.0.1:9/x", allow_private=True) == "127.0.0.1"
    assert check_shape("https://93.184.216.34/x", allow_private=False) == "93.184.216.34"


async def test_a_name_resolving_to_this_machine_is_refused() -> None:
    name = socket.gethostname()
    try:
        address = ipaddress.ip_address(socket.gethostbyname(name))
    except OSError:
        pytest.skip("this machine's name does not resolve")
    if address.is_global:
        pytest.skip("this machine's name resolves to a public address")
    with pytest.raises(UnsafeTarget):
        await PinnedBackend(allow_private=False).connect_tcp(name, 443)


@pytest.mark.parametrize(
    "url", ["http://hooks.example.com/x", "https://127.0.0.1/x", "https://10.0.0.7/x"]
)
async def test_registration_refuses_unsafe_urls(
    client: AsyncClient, admin: dict[str, str], url: str
) -> None:
    system = await client.post(
        "/v1/systems", json={"key": "sys-unsafe", "name": "x", "webhook_url": url}, headers=admin
    )
    assert system.status_code == 422, system.text
    assert system.json()["errors"][0]["loc"] == ["body", "webhook_url"]
    controller = await client.post(
        "/v1/controllers",
        json={"name": "Unsafe", "dsr_routing": {"mode": "webhook", "webhook_url": url}},
        headers=admin,
    )
    assert controller.status_code == 422, controller.text
    created = await client.post(
        "/v1/systems",
        json={"key": "sys-safe", "name": "x", "webhook_url": "https://hooks.example.com/x"},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    patched = await client.patch("/v1/systems/sys-safe", json={"webhook_url": url}, headers=admin)
    assert patched.status_code == 422


async def test_each_delivery_checks_the_target_again(
    wclient: AsyncClient,
    wdb: Database,
    wadmin: dict[str, str],
    wsettings: Settings,
    receiver: Receiver,
) -> None:
    # Registered while allowed (or before its name moved): the delivery still refuses it.
    world = await system_with_hook(wclient, wdb, wadmin, receiver.url)
    await file_access(wclient, wadmin, world)
    async with relay_for(wdb, wsettings, allow_private=False) as relay:
        assert await relay.run_once() == 1
    assert receiver.received == []
    async with wdb.sessionmaker() as session:
        error = await session.scalar(
            select(OutboxEvent.last_error).where(OutboxEvent.target_id == world.system)
        )
    assert error == "a webhook URL must use https"


class DNS:
    """A name server for one test: each lookup gets the next answer (the last one repeats)."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    async def __call__(self, host: str, _port: int) -> list[str]:
        self.asked.append(host)
        return [self.answers[min(len(self.asked), len(self.answers)) - 1]]


async def last_error(database: Database, system: str) -> str | None:
    async with database.sessionmaker() as session:
        return await session.scalar(
            select(OutboxEvent.last_error).where(OutboxEvent.target_id == system)
        )


async def test_a_name_resolving_to_loopback_is_refused_unless_private_targets_are_allowed(
    wclient: AsyncClient,
    wdb: Database,
    wadmin: dict[str, str],
    wsettings: Settings,
    receiver: Receiver,
) -> None:
    port = urlsplit(receiver.url).port
    world = await system_with_hook(wclient, wdb, wadmin, f"https://hooks.rebind.test:{port}/h")
    await file_access(wclient, wadmin, world)
    dns = DNS("127.0.0.1")
    async with relay_for(wdb, wsettings, allow_private=False, resolver=dns) as relay:
        assert await relay.run_once() == 1
    assert receiver.received == []
    assert dns.asked == ["hooks.rebind.test"]
    assert await last_error(wdb, world.system) == (
        "a webhook URL may not resolve to a loopback, link-local or private address"
    )

    # Allowed (development): the same name reaches the receiver, addressed by its name.
    async with wdb.sessionmaker() as session, session.begin():
        from app.systems.models import System

        system = await session.get(System, world.system)
        assert system is not None
        system.webhook_url = f"http://hooks.rebind.test:{port}/h"
        await session.execute(update(OutboxEvent).values(next_attempt_at=OutboxEvent.created_at))
    async with relay_for(wdb, wsettings, allow_private=True, resolver=DNS("127.0.0.1")) as relay:
        assert await relay.run_once() == 1
    (got,) = receiver.received
    assert got.headers["host"] == f"hooks.rebind.test:{port}"


async def test_the_connection_goes_to_the_address_that_was_checked(
    wclient: AsyncClient,
    wdb: Database,
    wadmin: dict[str, str],
    wsettings: Settings,
    receiver: Receiver,
) -> None:
    # The name answers one address, then another: the delivery resolves once and connects
    # to the first answer; the second (the rebinding) is never asked for.
    port = urlsplit(receiver.url).port
    assert port is not None
    with receiving("127.0.0.2", port) as other:
        world = await system_with_hook(wclient, wdb, wadmin, f"http://hooks.rebind.test:{port}/h")
        await file_access(wclient, wadmin, world)
        dns = DNS("127.0.0.1", "127.0.0.2")
        async with relay_for(wdb, wsettings, resolver=dns) as relay:
            assert await relay.run_once() == 1
        assert len(receiver.received) == 1
        assert other.received == []
        assert dns.asked == ["hooks.rebind.test"]

    # A public first answer passes the check; the loopback answer a rebinding name would
    # give next is never connected to (the public address does not answer here, or not
    # as a webhook receiver: either way nothing reaches the loopback receiver).
    async with wdb.sessionmaker() as session, session.begin():
        from app.systems.models import System

        system = await session.get(System, world.system)
        assert system is not None
        system.webhook_url = f"https://hooks.rebind.test:{port}/h"
    await file_access(wclient, wadmin, world)
    dns = DNS("93.184.216.34", "127.0.0.1")
    async with relay_for(wdb, wsettings, allow_private=False, resolver=dns) as relay:
        assert await relay.run_once() == 1
    assert len(receiver.received) == 1  # still only the first delivery
    assert dns.asked == ["hooks.rebind.test"]
