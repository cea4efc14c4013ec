"""Purposes: why personal data is processed, on which legal basis; admin writes, all read."""

from __future__ import annotations

from typing import get_args

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.purposes.models import LEGAL_BASES, Purpose
from app.purposes.schemas import LegalBasis
from tests.builders import make_controller, make_purpose, make_system
from tests.conftest import bearer

MARKETING = {
    "key": "marketing.communications",
    "name": "Marketing communications",
    "description": "Product news and offers by email and SMS",
    "legal_basis": "consent",
    "objection_absolute": True,
    "fideslang": "marketing.communications.email",
}


async def headers_for(session: AsyncSession, role: str) -> dict[str, str]:
    if role == "system":
        return await bearer(session, role, system_key=(await make_system(session)).key)
    if role == "controller":
        return await bearer(session, role, controller_id=(await make_controller(session)).id)
    return await bearer(session, role)


async def events_for(session: AsyncSession, key: str) -> list[AuditEvent]:
    statement = (
        select(AuditEvent)
        .where(AuditEvent.entity_type == "purpose", AuditEvent.entity_id == key)
        .order_by(AuditEvent.seq)
    )
    return list((await session.scalars(statement)).all())


def test_schema_offers_exactly_the_models_legal_bases() -> None:
    assert get_args(LegalBasis) == LEGAL_BASES


class TestCreate:
    async def test_unauthenticated_is_401(self, client: AsyncClient) -> None:
        assert (await client.post("/v1/purposes", json=MARKETING)).status_code == 401

    @pytest.mark.parametrize("role", ["auditor", "system", "controller"])
    async def test_only_admin_creates(
        self, client: AsyncClient, session: AsyncSession, role: str
    ) -> None:
        headers = await headers_for(session, role)
        assert (
            await client.post("/v1/purposes", json=MARKETING, headers=headers)
        ).status_code == 403
        assert await session.get(Purpose, MARKETING["key"]) is None

    async def test_created_with_etag_location_and_audit(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        response = await client.post("/v1/purposes", json=MARKETING, headers=admin)
        assert response.status_code == 201
        body = response.json()
        assert {k: body[k] for k in MARKETING} == MARKETING
        assert body["version"] == 1 and body["created_at"] and body["updated_at"]
        assert response.headers["etag"] == '"1"'
        assert response.headers["location"] == "/v1/purposes/marketing.communications"
        events = await events_for(session, "marketing.communications")
        assert [(e.event_type, e.details) for e in events] == [
            ("purpose.created", {"legal_basis": "consent", "objection_absolute": True})
        ]

    @pytest.mark.parametrize("legal_basis", LEGAL_BASES)
    async def test_every_legal_basis_is_accepted(
        self, client: AsyncClient, admin: dict[str, str], legal_basis: str
    ) -> None:
        response = await client.post(
            "/v1/purposes",
            json={"key": "service.delivery", "name": "Service", "legal_basis": legal_basis},
            headers=admin,
        )
        assert response.status_code == 201
        body = response.json()
        assert body["legal_basis"] == legal_basis
        assert body["objection_absolute"] is False and body["fideslang"] is None

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"legal_basis": "because"}, "legal_basis"),
            ({"legal_basis": "Consent"}, "legal_basis"),
            ({"legal_basis": None}, "legal_basis"),
            ({"key": "Marketing"}, "key"),
            ({"key": "marketing-communications"}, "key"),
            ({"key": "marketing."}, "key"),
            ({"key": "m" * 201}, "key"),
            ({"name": ""}, "name"),
            ({"objection_absolute": "sometimes"}, "objection_absolute"),
            ({"fideslang": "marketing communications"}, "fideslang"),
            ({"surprise": 1}, "surprise"),
        ],
    )
    async def test_bad_bodies_are_422(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        change: dict[str, object],
        field: str,
    ) -> None:
        response = await client.post("/v1/purposes", json={**MARKETING, **change}, headers=admin)
        assert response.status_code == 422
        assert ["body", field] in [e["loc"][:2] for e in response.json()["errors"]]

    async def test_missing_legal_basis_is_422(
        self, client: AsyncClient, admin: dict[str, str]
    ) -> None:
        body = {k: v for k, v in MARKETING.items() if k != "legal_basis"}
        response = await client.post("/v1/purposes", json=body, headers=admin)
        assert response.status_code == 422
        assert ["body", "legal_basis"] in [e["loc"] for e in response.json()["errors"]]

    async def test_duplicate_key_is_409(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await make_purpose(session, "marketing.communications", legal_basis="legitimate_interest")
        again = await client.post("/v1/purposes", json=MARKETING, headers=admin)
        assert again.status_code == 409
        assert "marketing.communications" in again.json()["detail"]
        read = await client.get("/v1/purposes/marketing.communications", headers=admin)
        assert read.json()["legal_basis"] == "legitimate_interest"

    async def test_idempotent_create(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        headers = {**admin, "Idempotency-Key": "create-marketing"}
        first = await client.post("/v1/purposes", json=MARKETING, headers=headers)
        second = await client.post("/v1/purposes", json=MARKETING, headers=headers)
        assert first.status_code == second.status_code == 201
        assert first.json() == second.json()
        assert len(await events_for(session, "marketing.communications")) == 1


class TestRead:
    async def test_unauthenticated_is_401(self, client: AsyncClient, session: AsyncSession) -> None:
        await make_purpose(session, "billing")
        assert (await client.get("/v1/purposes")).status_code == 401
        assert (await client.get("/v1/purposes/billing")).status_code == 401

    @pytest.mark.parametrize("role", ["admin", "auditor", "system", "controller"])
    async def test_every_role_reads(
        self, client: AsyncClient, session: AsyncSession, role: str
    ) -> None:
        headers = await headers_for(session, role)
        await make_purpose(session, "billing.invoicing", legal_basis="legal_obligation")
        one = await client.get("/v1/purposes/billing.invoicing", headers=headers)
        assert one.status_code == 200
        assert one.json()["legal_basis"] == "legal_obligation"
        assert one.headers["etag"] == '"1"'
        listed = await client.get("/v1/purposes", headers=headers)
        assert [p["key"] for p in listed.json()["items"]] == ["billing.invoicing"]

    async def test_list_filters_by_legal_basis(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await make_purpose(session, "marketing.communications", legal_basis="consent")
        await make_purpose(session, "analytics", legal_basis="legitimate_interest")
        await make_purpose(session, "marketing.attribution", legal_basis="consent")
        response = await client.get("/v1/purposes?legal_basis=consent", headers=admin)
        assert [p["key"] for p in response.json()["items"]] == [
            "marketing.attribution",
            "marketing.communications",
        ]
        none = await client.get("/v1/purposes?legal_basis=public_task", headers=admin)
        assert none.json() == {"items": [], "next_cursor": None}

    async def test_unknown_legal_basis_filter_is_422(
        self, client: AsyncClient, admin: dict[str, str]
    ) -> None:
        response = await client.get("/v1/purposes?legal_basis=whim", headers=admin)
        assert response.status_code == 422
        assert ["query", "legal_basis"] in [e["loc"] for e in response.json()["errors"]]

    async def test_list_pages_in_key_order(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        for key in ["support", "billing", "security", "analytics", "marketing"]:
            await make_purpose(session, key)
        first = (await client.get("/v1/purposes?limit=3", headers=admin)).json()
        assert [p["key"] for p in first["items"]] == ["analytics", "billing", "marketing"]
        second = (
            await client.get(f"/v1/purposes?limit=3&cursor={first['next_cursor']}", headers=admin)
        ).json()
        assert [p["key"] for p in second["items"]] == ["security", "support"]
        assert second["next_cursor"] is None

    @pytest.mark.parametrize("key", ["missing", "Marketing", "a%00b", "marketing-x"])
    async def test_unknown_or_malformed_key_is_404(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession, key: str
    ) -> None:
        await make_purpose(session, "marketing")
        assert (await client.get(f"/v1/purposes/{key}", headers=admin)).status_code == 404


class TestUpdate:
    async def test_unauthenticated_is_401(self, client: AsyncClient, session: AsyncSession) -> None:
        await make_purpose(session, "analytics")
        response = await client.patch("/v1/purposes/analytics", json={"name": "A"})
        assert response.status_code == 401

    @pytest.mark.parametrize("role", ["auditor", "system", "controller"])
    async def test_only_admin_patches(
        self, client: AsyncClient, session: AsyncSession, role: str
    ) -> None:
        headers = await headers_for(session, role)
        await make_purpose(session, "analytics", legal_basis="legitimate_interest")
        response = await client.patch(
            "/v1/purposes/analytics", json={"legal_basis": "consent"}, headers=headers
        )
        assert response.status_code == 403
        read = await client.get("/v1/purposes/analytics", headers=headers)
        assert read.json()["legal_basis"] == "legitimate_interest"

    async def test_patch_with_etag_then_stale_is_412(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await make_purpose(session, "analytics", legal_basis="legitimate_interest")
        etag = (await client.get("/v1/purposes/analytics", headers=admin)).headers["etag"]
        changed = await client.patch(
            "/v1/purposes/analytics",
            json={"legal_basis": "consent", "objection_absolute": True},
            headers={**admin, "If-Match": etag},
        )
        assert changed.status_code == 200
        body = changed.json()
        assert body["legal_basis"] == "consent" and body["objection_absolute"] is True
        assert body["version"] == 2 and changed.headers["etag"] == '"2"'
        stale = await client.patch(
            "/v1/purposes/analytics", json={"name": "X"}, headers={**admin, "If-Match": etag}
        )
        assert stale.status_code == 412
        events = await events_for(session, "analytics")
        assert [(e.event_type, e.details) for e in events] == [
            ("purpose.updated", {"fields": ["legal_basis", "objection_absolute"]})
        ]

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"key": "other"}, "key"),
            ({"legal_basis": "whim"}, "legal_basis"),
            ({"legal_basis": None}, "legal_basis"),
            ({"objection_absolute": None}, "objection_absolute"),
            ({"name": None}, "name"),
        ],
    )
    async def test_bad_patches_are_422(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        session: AsyncSession,
        body: dict[str, object],
        field: str,
    ) -> None:
        await make_purpose(session, "analytics")
        response = await client.patch("/v1/purposes/analytics", json=body, headers=admin)
        assert response.status_code == 422
        assert ["body", field] in [e["loc"][:2] for e in response.json()["errors"]]

    async def test_unknown_key_is_404(self, client: AsyncClient, admin: dict[str, str]) -> None:
        response = await client.patch("/v1/purposes/missing", json={"name": "X"}, headers=admin)
        assert response.status_code == 404
