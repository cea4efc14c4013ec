"""What a retention answer says without more calls: each rule's key and name, `erased` for a
tombstoned record, and why an eligible record has no delete_by."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.retention.schemas import NO_MAXIMUM_NOTE
from tests.builders import make_category, make_controller, make_rule, make_system
from tests.retention.test_api import register


@pytest.fixture
async def world(session: AsyncSession) -> dict[str, Any]:
    """The systems and categories `register` uses (as tests/retention/test_api.py has them)."""
    platform = await make_controller(session, kind="platform", name="Spix")
    for key in ("support", "billing"):
        await make_system(session, key)
    for key in ("support.attachment", "billing.invoice"):
        await make_category(session, key)
    return {"platform": platform}


async def test_every_answer_names_its_rules(
    client: AsyncClient, admin: dict[str, str], world: dict[str, Any], session: AsyncSession
) -> None:
    broad = await make_rule(session, category="support", period="P2Y", name="Support, broad")
    deep = await make_rule(
        session, category="support.attachment", period="P6M", key="attachments", name="Files"
    )
    record = await register(client, admin, world)
    expected = {str(broad.id): (None, "Support, broad"), str(deep.id): ("attachments", "Files")}

    def names(decision: dict[str, Any]) -> dict[str, tuple[str | None, str]]:
        return {r["id"]: (r["key"], r["name"]) for r in decision["rules"]}

    assert names(record["retention"]) == expected
    check = await client.get(f"/v1/records/{record['id']}/retention", headers=admin)
    assert names(check.json()) == expected
    page = await client.get(f"/v1/records/{record['id']}", headers=admin)
    assert names(page.json()["retention"]) == expected
    eligibility = await client.post(
        "/v1/retention/eligibility", json={"records": [{"id": record["id"]}]}, headers=admin
    )
    assert names(eligibility.json()["results"][0]["decision"]) == expected


async def test_an_erased_record_reports_erased(
    client: AsyncClient, admin: dict[str, str], world: dict[str, Any]
) -> None:
    record = await register(client, admin, world)
    assert record["retention"]["status"] == "eligible"
    erased = await client.post(
        "/v1/records/erased",
        json={"system": "support", "record_refs": [record["record_ref"]]},
        headers=admin,
    )
    assert erased.status_code == 200, erased.text
    check = await client.get(f"/v1/records/{record['id']}/retention", headers=admin)
    assert check.json()["status"] == "erased"
    page = await client.get(f"/v1/records/{record['id']}", headers=admin)
    assert page.json()["retention"]["status"] == "erased"


async def test_eligible_without_delete_by_says_no_maximum_covers_it(
    client: AsyncClient, admin: dict[str, str], world: dict[str, Any], session: AsyncSession
) -> None:
    uncovered = await register(client, admin, world)
    assert uncovered["retention"]["status"] == "eligible"
    assert uncovered["retention"]["delete_by"] is None
    assert uncovered["retention"]["note"] == NO_MAXIMUM_NOTE
    await make_rule(session, category="billing", period="P99Y")
    covered = await register(client, admin, world, system="billing", categories=["billing.invoice"])
    assert covered["retention"]["status"] == "retain" or covered["retention"]["delete_by"]
    assert covered["retention"]["note"] is None
