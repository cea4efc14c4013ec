"""Safe webhook targets: https only, never loopback, link-local or private addresses, checked
at registration and again at every delivery."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from httpx import AsyncClient
from sqlalchemy import select

from app.core.config import Settings
from app.core.db import Database
from app.outbox.models import OutboxEvent
from app.webhooks.targets import UnsafeTarget, check_shape, check_target
from tests.worker.conftest import Receiver, file_access, relay_for, system_with_hook

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
        await check_target(f"https://{name}/hook", allow_private=False)


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
