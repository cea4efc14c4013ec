"""Retention through the API: stored decisions, the due list, holds, coverage, recompute."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.legal_holds.models import LegalHold
from app.retention.recompute import Scope, recompute
from tests.builders import make_category, make_controller, make_purpose, make_rule, make_system
from tests.conftest import bearer


@pytest.fixture
async def world(session: AsyncSession) -> dict[str, Any]:
    platform = await make_controller(session, kind="platform", name="Spix")
    acme = await make_controller(session, name="Acme")
    for key in ("support", "billing", "messaging"):
        await make_system(session, key)
    for key in (
        "support.attachment",
        "billing.invoice",
        "communications.sms_body",
        "account.profile",
        "usage.clicks",
    ):
        await make_category(session, key)
    await make_purpose(session, "service.provide")
    return {"platform": platform, "acme": acme}


async def register(
    client: AsyncClient, headers: dict[str, str], world: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    body = {
        "system": "support",
        "record_ref": f"r-{uuid.uuid4().hex[:10]}",
        "controller_id": str(world["platform"].id),
        "identities": [{"type": "email", "value": "sam@example.com"}],
        "categories": ["support.attachment"],
        "collected_at": "2026-03-31T00:00:00Z",
    }
    body.update(fields)
    response = await client.post("/v1/records", json=body, headers=headers)
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


class TestDecisions:
    async def test_deeper_category_is_more_explicit(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        world: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        broad = await make_rule(session, category="support", period="P2Y")
        deep = await make_rule(session, category="support.attachment", period="P6M")
        record = await register(client, admin, world)
        decision = record["retention"]
        assert decision["delete_by"] == "2026-09-30T00:00:00Z"
        assert decision["status"] == "due"
        by_id = {r["id"]: r for r in decision["rules"]}
        assert by_id[str(deep.id)]["decisive"] is True
        assert by_id[str(broad.id)]["outranked"] is True

    async def test_customer_rule_outranks_platform_rule(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        world: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        await make_rule(session, category="communications.sms_body", period="P1Y")
        await make_rule(
            session,
            category="communications",
            period="P14D",
            controller_id=world["acme"].id,
            source="customer_setting",
        )
        record = await register(
            client,
            admin,
            world,
            system="messaging",
            categories=["communications.sms_body"],
            controller_id=str(world["acme"].id),
            collected_at="2026-11-25T00:00:00Z",
        )
        assert record["retention"]["delete_by"] == "2026-12-09T00:00:00Z"

    async def test_legal_minimum_wins(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        world: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        await make_rule(
            session,
            kind="minimum",
            category="billing.invoice",
            period="P10Y",
            source="law",
            citation="HGB 257",
        )
        await make_rule(session, category="billing.invoice", period="P2Y")
        record = await register(
            client,
            admin,
            world,
            system="billing",
            categories=["billing.invoice"],
            collected_at="2026-01-15T00:00:00Z",
        )
        decision = record["retention"]
        assert decision["keep_until"] == decision["delete_by"] == "2036-01-15T00:00:00Z"
        assert decision["status"] == "retain"

    async def test_event_anchor_before_and_after(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        world: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        await make_rule(
            session,
            kind="minimum",
            category="account.profile",
            period="P30D",
            anchor="event:account_closed",
            source="contract",
        )
        record = await register(
            client, admin, world, system="support", categories=["account.profile"]
        )
        assert record["retention"]["status"] == "retain"
        assert record["retention"]["keep_indefinitely"] is True
        closed = await client.patch(
            f"/v1/records/{record['id']}",
            json={"events": {"account_closed": "2026-11-20T00:00:00Z"}},
            headers=admin,
        )
        assert closed.json()["retention"]["keep_until"] == "2026-12-20T00:00:00Z"


class TestChecksAndSweep:
    async def test_eligibility_batch_by_id_and_ref(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        world: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        await make_rule(session, category="support.attachment", period="P6M")
        record = await register(client, admin, world)
        response = await client.post(
            "/v1/retention/eligibility",
            json={
                "records": [
                    {"id": record["id"]},
                    {"system": "support", "record_ref": record["record_ref"]},
                    {"id": str(uuid.uuid4())},
                ]
            },
            headers=admin,
        )
        assert response.status_code == 200
        results = response.json()["results"]
        assert [r["found"] for r in results] == [True, True, False]
        assert results[0]["decision"]["status"] == "due"
        assert results[1]["decision"]["record_id"] == record["id"]

    @pytest.mark.parametrize(
        "locator",
        [
            {},
            {"system": "support"},
            {"id": str(uuid.UUID(int=3)), "system": "x", "record_ref": "y"},
        ],
    )
    async def test_eligibility_needs_one_locator(
        self, client: AsyncClient, admin: dict[str, str], locator: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/retention/eligibility", json={"records": [locator]}, headers=admin
        )
        assert response.status_code == 422

    async def test_due_list_pages_oldest_first_and_skips_held(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        world: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        await make_rule(session, category="support.attachment", period="P6M")
        made = [
            await register(client, admin, world, collected_at=f"2026-0{m}-01T00:00:00Z")
            for m in (3, 1, 2)
        ]
        await register(client, admin, world, collected_at="2026-11-01T00:00:00Z")  # not due
        first = (await client.get("/v1/retention/due?limit=2", headers=admin)).json()
        second = (
            await client.get(
                f"/v1/retention/due?limit=2&cursor={first['next_cursor']}", headers=admin
            )
        ).json()
        order = [item["id"] for item in first["items"] + second["items"]]
        assert order == [made[1]["id"], made[2]["id"], made[0]["id"]]
        assert second["next_cursor"] is None

        hold = LegalHold(reason="litigation", system="support")
        session.add(hold)
        await session.commit()
        assert await recompute(session, [Scope(system="support")]) == 4
        await session.commit()
        held = (await client.get("/v1/retention/due", headers=admin)).json()
        assert held["items"] == []
        check = (await client.get(f"/v1/records/{made[0]['id']}/retention", headers=admin)).json()
        assert check["status"] == "held" and check["holds"] == [str(hold.id)]

        hold.released_at = datetime.now(UTC)
        await session.commit()
        await recompute(session, [Scope(system="support")])
        await session.commit()
        assert len((await client.get("/v1/retention/due", headers=admin)).json()["items"]) == 3

    async def test_system_key_sweeps_its_own_system(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        world: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        await make_rule(session, period="P1D")
        await register(client, admin, world)
        await register(client, admin, world, system="billing", categories=["billing.invoice"])
        billing = await bearer(session, "system", system_key="billing")
        items = (await client.get("/v1/retention/due", headers=billing)).json()["items"]
        assert [i["system"] for i in items] == ["billing"]
        other = await client.get("/v1/retention/due?system=support", headers=billing)
        assert other.json()["items"] == []

    async def test_rule_change_moves_records_in_and_out_of_due(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        world: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        record = await register(client, admin, world)
        assert (await client.get("/v1/retention/due", headers=admin)).json()["items"] == []
        rule = await make_rule(session, category="support", period="P1M")
        await recompute(session, [Scope.of(rule)])
        await session.commit()
        due = (await client.get("/v1/retention/due", headers=admin)).json()["items"]
        assert [d["id"] for d in due] == [record["id"]]
        minimum = await make_rule(
            session, kind="minimum", category="support", period="P5Y", source="law"
        )
        await recompute(session, [Scope.of(minimum)])
        await session.commit()
        assert (await client.get("/v1/retention/due", headers=admin)).json()["items"] == []


class TestCoverage:
    async def test_categories_without_maximum_rule(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        world: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        await make_rule(session, category="support", period="P2Y")
        await register(client, admin, world)
        await register(client, admin, world, system="billing", categories=["billing.invoice"])
        await register(client, admin, world, system="billing", categories=["billing.invoice"])
        await make_rule(session, kind="minimum", category="usage", period="P1Y", source="law")
        await register(client, admin, world, system="support", categories=["usage.clicks"])
        body = (await client.get("/v1/retention/coverage", headers=admin)).json()
        assert body["uncovered"] == [
            {"category": "billing.invoice", "records": 2, "systems": ["billing"]},
            {"category": "usage.clicks", "records": 1, "systems": ["support"]},
        ]
        assert body["records_without_rule"] == 3

    async def test_unauthenticated_is_401(self, client: AsyncClient) -> None:
        assert (await client.get("/v1/retention/coverage")).status_code == 401


class TestRecomputeThroughTheApi:
    async def test_rules_and_holds_move_records(
        self, client: AsyncClient, admin: dict[str, str], world: dict[str, Any]
    ) -> None:
        record = await register(client, admin, world)
        other = await register(
            client, admin, world, identities=[{"type": "email", "value": "kim@example.com"}]
        )
        created = await client.post(
            "/v1/retention-rules",
            json={
                "name": "attachments",
                "kind": "maximum",
                "period": "P6M",
                "anchor": "collected_at",
                "source": "platform_default",
                "category": "support.attachment",
            },
            headers=admin,
        )
        assert created.status_code == 201, created.text
        due = (await client.get("/v1/retention/due", headers=admin)).json()["items"]
        assert {d["id"] for d in due} == {record["id"], other["id"]}

        hold = await client.post(
            "/v1/legal-holds",
            json={
                "reason": "claim 42",
                "identities": [{"type": "email", "value": "SAM@example.com"}],
            },
            headers=admin,
        )
        assert hold.status_code == 201, hold.text
        due = (await client.get("/v1/retention/due", headers=admin)).json()["items"]
        assert [d["id"] for d in due] == [other["id"]]
        check = (await client.get(f"/v1/records/{record['id']}/retention", headers=admin)).json()
        assert check["status"] == "held" and check["holds"] == [hold.json()["id"]]

        released = await client.post(
            f"/v1/legal-holds/{hold.json()['id']}/release", json={}, headers=admin
        )
        assert released.status_code == 200
        check = (await client.get(f"/v1/records/{record['id']}/retention", headers=admin)).json()
        assert check["status"] == "due" and check["holds"] == []

        deleted = await client.delete(f"/v1/retention-rules/{created.json()['id']}", headers=admin)
        assert deleted.status_code == 204
        check = (await client.get(f"/v1/records/{record['id']}/retention", headers=admin)).json()
        assert check["status"] == "eligible" and check["delete_by"] is None


class TestSimulation:
    async def test_simulate_counts_without_saving(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        world: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        old = [
            await register(client, admin, world, collected_at="2026-01-01T00:00:00Z")
            for _ in range(2)
        ]
        await register(client, admin, world, collected_at="2026-11-20T00:00:00Z")
        await register(client, admin, world, system="billing", categories=["billing.invoice"])
        body = {
            "name": "attachments",
            "kind": "maximum",
            "period": "P6M",
            "anchor": "collected_at",
            "source": "platform_default",
            "category": "support.attachment",
        }
        response = await client.post("/v1/retention-rules/simulate", json=body, headers=admin)
        assert response.status_code == 200, response.text
        assert response.json() == {"records_matched": 3, "would_become_due": 2, "would_change": 3}
        assert (await client.get("/v1/retention-rules", headers=admin)).json()["items"] == []
        check = (await client.get(f"/v1/records/{old[0]['id']}/retention", headers=admin)).json()
        assert check["status"] == "eligible"

    async def test_simulate_validates_like_create(
        self, client: AsyncClient, admin: dict[str, str], auditor: dict[str, str]
    ) -> None:
        body = {
            "name": "x",
            "kind": "maximum",
            "period": "P6X",
            "anchor": "collected_at",
            "source": "platform_default",
        }
        bad = await client.post("/v1/retention-rules/simulate", json=body, headers=admin)
        assert bad.status_code == 422
        denied = await client.post(
            "/v1/retention-rules/simulate", json={**body, "period": "P6M"}, headers=auditor
        )
        assert denied.status_code == 403
