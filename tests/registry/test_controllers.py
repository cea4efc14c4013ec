"""Controllers: the one platform, customers, routing secrets, tenant rules, ETags."""

from __future__ import annotations

import uuid

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.controllers.models import Controller
from tests.builders import make_controller
from tests.conftest import bearer

ACME = {
    "name": "Acme Inc.",
    "external_ref": "cus_acme",
    "agreement_ref": "DPA-1",
    "dsr_routing": {"mode": "webhook", "webhook_url": "https://acme.example/dsr"},
}


class TestCreate:
    async def test_unauthenticated_is_401(self, client: AsyncClient) -> None:
        assert (await client.post("/v1/controllers", json=ACME)).status_code == 401

    @pytest.mark.parametrize("role", ["auditor", "system", "controller"])
    async def test_only_admin_creates(
        self, client: AsyncClient, session: AsyncSession, role: str
    ) -> None:
        binding: dict[str, object] = {}
        if role == "system":
            from tests.builders import make_system

            binding["system_key"] = (await make_system(session)).key
        if role == "controller":
            binding["controller_id"] = (await make_controller(session)).id
        headers = await bearer(session, role, **binding)  # type: ignore[arg-type]
        assert (await client.post("/v1/controllers", json=ACME, headers=headers)).status_code == 403

    async def test_webhook_customer_gets_a_secret_once(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        response = await client.post("/v1/controllers", json=ACME, headers=admin)
        assert response.status_code == 201
        body = response.json()
        assert body["kind"] == "customer" and body["dsr_routing"]["mode"] == "webhook"
        assert body["webhook_signing_secret"].startswith("whsec_")
        assert response.headers["etag"] == '"1"'
        assert response.headers["location"] == f"/v1/controllers/{body['id']}"
        read = await client.get(f"/v1/controllers/{body['id']}", headers=admin)
        assert "webhook_signing_secret" not in read.json()
        assert read.json()["has_signing_secret"] is True
        stored = await session.get(Controller, uuid.UUID(body["id"]))
        assert stored is not None and body["webhook_signing_secret"] not in (
            stored.webhook_secret_sealed or ""
        )
        events = (
            await session.scalars(select(AuditEvent).where(AuditEvent.entity_id == body["id"]))
        ).all()
        assert [e.event_type for e in events] == ["controller.created"]
        assert body["webhook_signing_secret"] not in str(events[0].details)

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"kind": "platform"}, "kind"),
            ({"dsr_routing": {"mode": "webhook"}}, "dsr_routing"),
            ({"dsr_routing": {"mode": "webhook", "webhook_url": "ftp://x"}}, "dsr_routing"),
            ({"name": ""}, "name"),
            ({"effective_from": "2026-05-01", "effective_until": "2026-01-01"}, None),
            ({"surprise": 1}, "surprise"),
        ],
    )
    async def test_bad_bodies_are_422(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        change: dict[str, object],
        field: str | None,
    ) -> None:
        response = await client.post("/v1/controllers", json={**ACME, **change}, headers=admin)
        assert response.status_code == 422
        if field:
            assert field in {loc for e in response.json()["errors"] for loc in e["loc"]}

    async def test_duplicate_external_ref_is_409(
        self, client: AsyncClient, admin: dict[str, str]
    ) -> None:
        assert (await client.post("/v1/controllers", json=ACME, headers=admin)).status_code == 201
        again = await client.post("/v1/controllers", json={**ACME, "name": "B"}, headers=admin)
        assert again.status_code == 409

    async def test_idempotent_create(self, client: AsyncClient, admin: dict[str, str]) -> None:
        headers = {**admin, "Idempotency-Key": "create-acme"}
        first = await client.post("/v1/controllers", json=ACME, headers=headers)
        second = await client.post("/v1/controllers", json=ACME, headers=headers)
        assert first.status_code == second.status_code == 201
        assert first.json()["id"] == second.json()["id"]
        listed = await client.get("/v1/controllers", headers=admin)
        assert len(listed.json()["items"]) == 1

    async def test_only_one_platform_controller(self, session: AsyncSession) -> None:
        await make_controller(session, kind="platform", name="Spix")
        with pytest.raises(IntegrityError):
            await make_controller(session, kind="platform", name="Spix again")


class TestReadAndTenancy:
    async def test_list_filters_by_kind_and_pages(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        platform = await make_controller(session, kind="platform", name="Spix")
        for _ in range(3):
            await make_controller(session)
        only = await client.get("/v1/controllers?kind=platform", headers=admin)
        assert [c["id"] for c in only.json()["items"]] == [str(platform.id)]
        first = (await client.get("/v1/controllers?limit=2", headers=admin)).json()
        second = (
            await client.get(
                f"/v1/controllers?limit=2&cursor={first['next_cursor']}", headers=admin
            )
        ).json()
        assert len(first["items"]) == 2 and len(second["items"]) == 2
        assert second["next_cursor"] is None
        assert {c["id"] for c in first["items"]}.isdisjoint({c["id"] for c in second["items"]})

    async def test_controller_key_sees_itself_and_platform_only(
        self, client: AsyncClient, session: AsyncSession
    ) -> None:
        platform = await make_controller(session, kind="platform", name="Spix")
        mine = await make_controller(session)
        other = await make_controller(session)
        headers = await bearer(session, "controller", controller_id=mine.id)
        listed = await client.get("/v1/controllers", headers=headers)
        assert {c["id"] for c in listed.json()["items"]} == {str(platform.id), str(mine.id)}
        assert (await client.get(f"/v1/controllers/{other.id}", headers=headers)).status_code == 404
        assert (await client.get(f"/v1/controllers/{mine.id}", headers=headers)).status_code == 200

    async def test_unknown_and_malformed_ids(
        self, client: AsyncClient, admin: dict[str, str]
    ) -> None:
        assert (
            await client.get(f"/v1/controllers/{uuid.uuid4()}", headers=admin)
        ).status_code == 404
        assert (await client.get("/v1/controllers/not-a-uuid", headers=admin)).status_code == 422


class TestUpdate:
    async def test_patch_with_etag(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        controller = await make_controller(session)
        url = f"/v1/controllers/{controller.id}"
        etag = (await client.get(url, headers=admin)).headers["etag"]
        changed = await client.patch(
            url,
            json={"auto_execute": True, "standing_instruction_ref": "DPA §7"},
            headers={**admin, "If-Match": etag},
        )
        assert changed.status_code == 200
        assert changed.json()["auto_execute"] is True and changed.json()["version"] == 2
        assert changed.headers["etag"] == '"2"'
        stale = await client.patch(url, json={"name": "Other"}, headers={**admin, "If-Match": etag})
        assert stale.status_code == 412
        assert (await client.get(url, headers=admin)).json()["name"] == controller.name

    async def test_switch_to_webhook_issues_a_secret(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        controller = await make_controller(session)
        response = await client.patch(
            f"/v1/controllers/{controller.id}",
            json={"dsr_routing": {"mode": "webhook", "webhook_url": "https://c.example/h"}},
            headers=admin,
        )
        assert response.status_code == 200
        assert response.json()["webhook_signing_secret"].startswith("whsec_")

    async def test_controller_key_may_not_patch(
        self, client: AsyncClient, session: AsyncSession
    ) -> None:
        mine = await make_controller(session)
        headers = await bearer(session, "controller", controller_id=mine.id)
        response = await client.patch(
            f"/v1/controllers/{mine.id}", json={"auto_execute": True}, headers=headers
        )
        assert response.status_code == 403

    @pytest.mark.parametrize("field", ["name", "dsr_routing", "auto_execute"])
    async def test_patch_null_required_field_is_422(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession, field: str
    ) -> None:
        controller = await make_controller(session)
        response = await client.patch(
            f"/v1/controllers/{controller.id}", json={field: None}, headers=admin
        )
        assert response.status_code == 422
        assert ["body", field] in [e["loc"][:2] for e in response.json()["errors"]]

    async def test_patch_dates_out_of_order_is_422(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        controller = await make_controller(session)
        response = await client.patch(
            f"/v1/controllers/{controller.id}",
            json={"effective_from": "2026-05-01", "effective_until": "2026-01-01"},
            headers=admin,
        )
        assert response.status_code == 422
