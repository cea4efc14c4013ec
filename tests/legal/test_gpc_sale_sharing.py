# ruff: noqa: F811  (the shared `spix` fixture is imported, then named as a parameter)
"""Item 7: CCPA sale and sharing, and Global Privacy Control, through HTTP on both
databases."""

from __future__ import annotations

import copy
from typing import Any

from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.suppressions.gpc import SALE, SALE_AND_SHARING, SHARING
from app.taxonomy.document import read_taxonomy
from app.taxonomy.service import load_taxonomy
from tests.builders import make_record
from tests.requests.conftest import ALICE, file, spix  # noqa: F401

DEVICE = [{"type": "device_id", "value": "browser-7f3a"}]
ACCOUNT = [{"type": "user_id", "value": "u-4242"}]


async def suppressed(
    client: AsyncClient, headers: dict[str, str], identities: list[dict[str, str]], purpose: str
) -> bool:
    response = await client.post(
        "/v1/suppressions/check",
        json={"identities": identities, "channel": "email", "purpose": purpose},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return bool(response.json()["suppressed"])


async def device_of_account(session: AsyncSession, spix: dict[str, Any]) -> None:
    await make_record(
        session,
        system="accounts",
        controller_id=spix["platform"].id,
        categories=["account.profile"],
        identities=DEVICE + ACCOUNT,
    )
    await session.commit()


async def test_seeding_adds_the_purposes_to_a_seeded_database(session: AsyncSession) -> None:
    default = read_taxonomy()
    older = copy.deepcopy(default)
    older["purposes"] = [p for p in older["purposes"] if p["key"] not in SALE_AND_SHARING]
    await load_taxonomy(session, older)
    report = await load_taxonomy(session, default)
    assert report.purposes.created == 2
    assert (await load_taxonomy(session, default)).changed is False


async def test_ccpa_opt_out_suppresses_sale_and_sharing(
    client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
) -> None:
    assert not await suppressed(client, admin, ALICE, SALE)
    created = await file(client, admin, type="opt_out", regime="ccpa")
    assert created["status"] == "completed"
    for purpose in (SALE, SHARING, "marketing.communications"):
        assert await suppressed(client, admin, ALICE, purpose), purpose


async def test_gdpr_opt_out_is_marketing_only(
    client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
) -> None:
    await file(client, admin, type="opt_out", regime="gdpr")
    assert await suppressed(client, admin, ALICE, "marketing.communications")
    assert not await suppressed(client, admin, ALICE, SALE)


async def test_gpc_header_opts_out_the_device_and_its_account_at_once(
    client: AsyncClient, admin: dict[str, str], spix: dict[str, Any], session: AsyncSession
) -> None:
    await device_of_account(session, spix)
    response = await client.post(
        "/v1/requests",
        json={"type": "opt_out", "regime": "ccpa", "identities": DEVICE},
        headers={**admin, "Sec-GPC": "1"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["verification"] is None
    assert response.json()["status"] == "completed"
    for purpose in (SALE, SHARING):
        assert await suppressed(client, admin, DEVICE, purpose)
        assert await suppressed(client, admin, ACCOUNT, purpose)


async def test_details_gpc_on_an_unverified_request_needs_no_verification(
    client: AsyncClient, admin: dict[str, str], spix: dict[str, Any], session: AsyncSession
) -> None:
    await device_of_account(session, spix)
    created = await file(
        client, admin, type="access", regime="cpa", identities=DEVICE, details={"gpc": True}
    )
    assert created["status"] == "pending_verification"  # the access itself still waits
    assert await suppressed(client, admin, ACCOUNT, SHARING)


async def test_suppression_with_gpc_header(
    client: AsyncClient, admin: dict[str, str], spix: dict[str, Any], session: AsyncSession
) -> None:
    await device_of_account(session, spix)
    body = {
        "identity": DEVICE[0],
        "channel": "all",
        "source": "gpc",
        "controller_id": str(spix["platform"].id),
    }
    made = await client.post("/v1/suppressions", json=body, headers={**admin, "Sec-GPC": "1"})
    assert made.status_code == 201, made.text
    assert made.json()["purpose"] == SALE and made.json()["source"] == "gpc"
    assert await suppressed(client, admin, ACCOUNT, SALE)
    assert await suppressed(client, admin, ACCOUNT, SHARING)
    again = await client.post("/v1/suppressions", json=body, headers={**admin, "Sec-GPC": "1"})
    assert again.status_code == 200


async def test_without_gpc_a_plain_suppression_stays_marketing(
    client: AsyncClient, admin: dict[str, str], spix: dict[str, Any], session: AsyncSession
) -> None:
    await device_of_account(session, spix)
    body = {
        "identity": DEVICE[0],
        "channel": "all",
        "source": "manual",
        "controller_id": str(spix["platform"].id),
    }
    assert (await client.post("/v1/suppressions", json=body, headers=admin)).status_code == 201
    assert not await suppressed(client, admin, ACCOUNT, SALE)
