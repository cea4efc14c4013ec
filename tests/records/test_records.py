"""The inventory: upserts, batches, normalisation, tenancy, tombstones, lookup."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.records.models import RecordIdentity
from tests.builders import make_category, make_controller, make_purpose, make_system
from tests.conftest import bearer


@pytest.fixture
async def world(session: AsyncSession) -> dict[str, Any]:
    platform = await make_controller(session, kind="platform", name="Spix")
    acme = await make_controller(session, name="Acme")
    voice = await make_system(session, "voice-recordings")
    billing = await make_system(session, "billing")
    await make_category(session, "communications.recording")
    await make_category(session, "billing.invoice")
    await make_purpose(session, "service.provide")
    return {"platform": platform, "acme": acme, "voice": voice, "billing": billing}


def a_record(world: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    body = {
        "system": "voice-recordings",
        "record_ref": f"rec-{uuid.uuid4().hex[:8]}",
        "controller_id": str(world["acme"].id),
        "identities": [{"type": "email", "value": "alice@example.com"}],
        "categories": ["communications.recording"],
        "purposes": ["service.provide"],
        "collected_at": "2026-11-01T10:00:00Z",
    }
    body.update(overrides)
    return body


class TestRegister:
    async def test_unauthenticated_is_401(self, client: AsyncClient) -> None:
        assert (await client.post("/v1/records", json={})).status_code == 401

    async def test_upsert_keeps_the_id(
        self, client: AsyncClient, admin: dict[str, str], world: dict[str, Any]
    ) -> None:
        body = a_record(world)
        first = await client.post("/v1/records", json=body, headers=admin)
        assert first.status_code == 201, first.text
        created = first.json()
        assert created["state"] == "active"
        assert created["retention"]["status"] == "eligible"  # no rule: may go, need not
        assert "alice@example.com" not in first.text
        second = await client.post(
            "/v1/records", json={**body, "last_activity_at": "2026-11-02T00:00:00Z"}, headers=admin
        )
        assert second.status_code == 200
        assert second.json()["id"] == created["id"]
        assert second.json()["last_activity_at"] == "2026-11-02T00:00:00Z"

    @pytest.mark.parametrize(
        ("change", "loc"),
        [
            ({"system": "nope"}, ["body", "system"]),
            ({"controller_id": str(uuid.UUID(int=1))}, ["body", "controller_id"]),
            ({"categories": ["communications.recording", "no.such"]}, ["body", "categories", 1]),
            ({"purposes": ["nope"]}, ["body", "purposes", 0]),
            (
                {"identities": [{"type": "phone", "value": "12"}]},
                ["body", "identities", 0, "value"],
            ),
            (
                {"identities": [{"type": "email", "value": "not-an-email"}]},
                ["body", "identities", 0, "value"],
            ),
            ({"collected_at": "2026-11-01T10:00:00"}, ["body", "collected_at"]),
            ({"categories": []}, ["body", "categories"]),
        ],
    )
    async def test_bad_items_name_the_field(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        world: dict[str, Any],
        change: dict[str, Any],
        loc: list[Any],
    ) -> None:
        response = await client.post("/v1/records", json=a_record(world, **change), headers=admin)
        assert response.status_code == 422, response.text
        assert loc in [e["loc"] for e in response.json()["errors"]]
        assert "not-an-email" not in response.text

    async def test_system_key_writes_its_own_system_only(
        self, client: AsyncClient, session: AsyncSession, world: dict[str, Any]
    ) -> None:
        voice = await bearer(session, "system", system_key="voice-recordings")
        ok = await client.post("/v1/records", json=a_record(world), headers=voice)
        assert ok.status_code == 201
        other = await client.post(
            "/v1/records",
            json=a_record(world, system="billing", categories=["billing.invoice"]),
            headers=voice,
        )
        assert other.status_code == 403

    @pytest.mark.parametrize("role", ["auditor", "controller"])
    async def test_readers_may_not_register(
        self, client: AsyncClient, session: AsyncSession, world: dict[str, Any], role: str
    ) -> None:
        headers = await bearer(
            session, role, controller_id=world["acme"].id if role == "controller" else None
        )
        response = await client.post("/v1/records", json=a_record(world), headers=headers)
        assert response.status_code == 403


class TestNormalisation:
    @pytest.mark.parametrize(
        ("identity_type", "variants"),
        [
            ("email", ["  Alice@Example.COM ", "alice@example.com"]),
            ("phone", ["+1 (415) 555-0100", "+14155550100", "(415) 555-0100"]),
            ("ip_address", ["2001:db8::1", "2001:0db8:0000:0000:0000:0000:0000:0001"]),
        ],
    )
    async def test_variants_are_one_subject(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        world: dict[str, Any],
        identity_type: str,
        variants: list[str],
    ) -> None:
        digests = set()
        for value in variants:
            response = await client.post(
                "/v1/records",
                json=a_record(world, identities=[{"type": identity_type, "value": value}]),
                headers=admin,
            )
            assert response.status_code == 201, response.text
            digests.add(response.json()["identities"][0]["digest"])
            assert value.strip() not in response.text
        assert len(digests) == 1

    async def test_external_id_is_scoped_to_its_controller(
        self, client: AsyncClient, admin: dict[str, str], world: dict[str, Any]
    ) -> None:
        identity = [{"type": "external_id", "value": "contact-1"}]
        at_acme = await client.post(
            "/v1/records", json=a_record(world, identities=identity), headers=admin
        )
        at_spix = await client.post(
            "/v1/records",
            json=a_record(world, identities=identity, controller_id=str(world["platform"].id)),
            headers=admin,
        )
        assert at_acme.json()["identities"] != at_spix.json()["identities"]


class TestBatch:
    async def test_bad_items_do_not_stop_the_others(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        world: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        good = a_record(world)
        items = [
            good,
            a_record(world, categories=["unknown.category"]),
            a_record(world, identities=[{"type": "phone", "value": "not a phone"}]),
            {"system": "voice-recordings"},
            a_record(world, record_ref=good["record_ref"]),
            a_record(world),
        ]
        response = await client.post("/v1/records/batch", json={"records": items}, headers=admin)
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [r["status"] for r in results] == [
            "created",
            "error",
            "error",
            "error",
            "error",
            "created",
        ]
        assert [r["index"] for r in results] == list(range(6))
        assert results[1]["error"]["errors"][0]["loc"] == ["categories", 0]
        assert "not a phone" not in response.text
        again = await client.post(
            "/v1/records/batch", json={"records": [good, items[5]]}, headers=admin
        )
        assert [r["status"] for r in again.json()["results"]] == ["updated", "updated"]
        assert [r["id"] for r in again.json()["results"]] == [results[0]["id"], results[5]["id"]]
        events = await session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.event_type == "records.registered")
        )
        assert events == 2

    async def test_more_than_1000_is_rejected_whole(
        self, client: AsyncClient, admin: dict[str, str], world: dict[str, Any]
    ) -> None:
        items = [a_record(world) for _ in range(1001)]
        response = await client.post("/v1/records/batch", json={"records": items}, headers=admin)
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["body", "records"]


class TestReadAndTenancy:
    async def test_get_list_and_tenancy(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        session: AsyncSession,
        world: dict[str, Any],
    ) -> None:
        mine = (await client.post("/v1/records", json=a_record(world), headers=admin)).json()
        theirs = (
            await client.post(
                "/v1/records",
                json=a_record(
                    world,
                    system="billing",
                    categories=["billing.invoice"],
                    controller_id=str(world["platform"].id),
                ),
                headers=admin,
            )
        ).json()
        voice = await bearer(session, "system", system_key="voice-recordings")
        acme = await bearer(session, "controller", controller_id=world["acme"].id)
        for headers in (voice, acme):
            assert (
                await client.get(f"/v1/records/{mine['id']}", headers=headers)
            ).status_code == 200
            assert (
                await client.get(f"/v1/records/{theirs['id']}", headers=headers)
            ).status_code == 404
            listed = await client.get("/v1/records", headers=headers)
            assert [r["id"] for r in listed.json()["items"]] == [mine["id"]]
        by_ref = await client.get(
            "/v1/records",
            params={"system": "billing", "record_ref": theirs["record_ref"]},
            headers=admin,
        )
        assert [r["id"] for r in by_ref.json()["items"]] == [theirs["id"]]
        retention = await client.get(f"/v1/records/{mine['id']}/retention", headers=admin)
        assert retention.json()["record_id"] == mine["id"]


class TestLifecycle:
    async def test_patch_events_and_categories(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        world: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        await make_category(session, "communications.transcript")
        created = (await client.post("/v1/records", json=a_record(world), headers=admin)).json()
        response = await client.patch(
            f"/v1/records/{created['id']}",
            json={
                "events": {"account_closed": "2026-11-20T00:00:00Z"},
                "categories": ["communications.transcript"],
            },
            headers=admin,
        )
        assert response.status_code == 200, response.text
        assert response.json()["categories"] == ["communications.transcript"]
        assert response.json()["events"] == {"account_closed": "2026-11-20T00:00:00Z"}
        bad = await client.patch(
            f"/v1/records/{created['id']}", json={"categories": ["nope"]}, headers=admin
        )
        assert bad.status_code == 422

    async def test_erased_records_become_tombstones(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        world: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        created = (await client.post("/v1/records", json=a_record(world), headers=admin)).json()
        response = await client.post(
            "/v1/records/erased",
            json={"system": "voice-recordings", "record_refs": [created["record_ref"], "unknown"]},
            headers=admin,
        )
        assert response.json() == {"erased": 1}
        again = await client.post(
            "/v1/records/erased",
            json={"system": "voice-recordings", "record_refs": [created["record_ref"]]},
            headers=admin,
        )
        assert again.json() == {"erased": 0}
        tomb = (await client.get(f"/v1/records/{created['id']}", headers=admin)).json()
        assert tomb["state"] == "erased" and tomb["identities"] == []
        assert tomb["collected_at"] == created["collected_at"]
        left = await session.scalar(
            select(func.count())
            .select_from(RecordIdentity)
            .where(RecordIdentity.record_id == uuid.UUID(created["id"]))
        )
        assert left == 0
        patch = await client.patch(
            f"/v1/records/{created['id']}",
            json={"last_activity_at": "2026-11-03T00:00:00Z"},
            headers=admin,
        )
        assert patch.status_code == 409

    async def test_system_key_reports_its_own_erasures_only(
        self, client: AsyncClient, session: AsyncSession, world: dict[str, Any]
    ) -> None:
        voice = await bearer(session, "system", system_key="voice-recordings")
        response = await client.post(
            "/v1/records/erased", json={"system": "billing", "record_refs": ["x"]}, headers=voice
        )
        assert response.status_code == 403


class TestLookup:
    async def test_lookup_by_any_variant(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        world: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        for _ in range(3):
            await client.post("/v1/records", json=a_record(world), headers=admin)
        await client.post(
            "/v1/records",
            json=a_record(
                world,
                system="billing",
                categories=["billing.invoice"],
                controller_id=str(world["platform"].id),
            ),
            headers=admin,
        )
        await client.post(
            "/v1/records",
            json=a_record(world, identities=[{"type": "email", "value": "bob@example.com"}]),
            headers=admin,
        )
        query = {"identities": [{"type": "email", "value": " ALICE@example.com"}]}
        response = await client.post("/v1/subjects/lookup", json=query, headers=admin)
        assert response.status_code == 200
        body = response.json()
        assert len(body["items"]) == 4
        assert {(s["system"], s["category"], s["count"]) for s in body["summary"]} == {
            ("voice-recordings", "communications.recording", 3),
            ("billing", "billing.invoice", 1),
        }
        paged = await client.post("/v1/subjects/lookup?limit=3", json=query, headers=admin)
        rest = await client.post(
            f"/v1/subjects/lookup?limit=3&cursor={paged.json()['next_cursor']}",
            json=query,
            headers=admin,
        )
        assert len(paged.json()["items"]) == 3 and len(rest.json()["items"]) == 1
        # A page that holds everything found counts its summary itself; a partial page has the
        # database count it: the same summary either way, in the same order.
        full = body["summary"]
        assert full == sorted(full, key=lambda s: (s["controller_id"], s["system"], s["category"]))
        assert paged.json()["summary"] == full and rest.json()["summary"] == full
        # Each item as the record's own page shows it (identities, retention, rules' names).
        for item in body["items"]:
            alone = await client.get(f"/v1/records/{item['id']}", headers=admin)
            assert item == alone.json()

        acme = await bearer(session, "controller", controller_id=world["acme"].id)
        scoped = await client.post("/v1/subjects/lookup", json=query, headers=acme)
        assert {r["controller_id"] for r in scoped.json()["items"]} == {str(world["acme"].id)}
        assert len(scoped.json()["items"]) == 3
        foreign = await client.post(
            "/v1/subjects/lookup",
            json={**query, "controller_id": str(world["platform"].id)},
            headers=acme,
        )
        assert foreign.json()["items"] == [] and foreign.json()["summary"] == []

    async def test_system_keys_may_not_look_up(
        self, client: AsyncClient, session: AsyncSession, world: dict[str, Any]
    ) -> None:
        voice = await bearer(session, "system", system_key="voice-recordings")
        response = await client.post(
            "/v1/subjects/lookup",
            json={"identities": [{"type": "email", "value": "a@b.co"}]},
            headers=voice,
        )
        assert response.status_code == 403
