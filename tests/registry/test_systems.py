"""Systems: registered by admins, readable by every role, addressed by their key."""

from __future__ import annotations

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.systems.models import System
from tests.builders import make_controller, make_system
from tests.conftest import bearer

VOICE = {
    "key": "voice-recordings",
    "name": "Voice recordings",
    "owner": "voice-platform team",
    "description": "Call recordings and voicemail",
    "webhook_url": "https://voice.internal.example/dsr",
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
        .where(AuditEvent.entity_type == "system", AuditEvent.entity_id == key)
        .order_by(AuditEvent.seq)
    )
    return list((await session.scalars(statement)).all())


class TestCreate:
    async def test_unauthenticated_is_401(self, client: AsyncClient) -> None:
        assert (await client.post("/v1/systems", json=VOICE)).status_code == 401

    @pytest.mark.parametrize("role", ["auditor", "system", "controller"])
    async def test_only_admin_creates(
        self, client: AsyncClient, session: AsyncSession, role: str
    ) -> None:
        headers = await headers_for(session, role)
        assert (await client.post("/v1/systems", json=VOICE, headers=headers)).status_code == 403
        assert await session.get(System, VOICE["key"]) is None

    async def test_created_with_etag_location_and_audit(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        response = await client.post("/v1/systems", json=VOICE, headers=admin)
        assert response.status_code == 201
        body = response.json()
        assert {k: body[k] for k in VOICE} == VOICE
        assert body["version"] == 1 and body["created_at"] and body["updated_at"]
        assert response.headers["etag"] == '"1"'
        assert response.headers["location"] == "/v1/systems/voice-recordings"
        events = await events_for(session, "voice-recordings")
        assert [e.event_type for e in events] == ["system.created"]
        assert events[0].details == {"has_webhook": True}

    async def test_optional_fields_may_be_left_out(
        self, client: AsyncClient, admin: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/systems", json={"key": "billing", "name": "Billing"}, headers=admin
        )
        assert response.status_code == 201
        body = response.json()
        assert body["owner"] is None and body["webhook_url"] is None
        assert body["description"] is None

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"key": "Voice"}, "key"),
            ({"key": "voice.recordings"}, "key"),
            ({"key": "voice/recordings"}, "key"),
            ({"key": "voice_recordings"}, "key"),
            ({"key": ""}, "key"),
            ({"key": "a" * 101}, "key"),
            ({"name": ""}, "name"),
            ({"name": "n" * 201}, "name"),
            ({"owner": "o" * 201}, "owner"),
            ({"webhook_url": "ftp://voice.example/dsr"}, "webhook_url"),
            ({"webhook_url": "not a url"}, "webhook_url"),
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
        response = await client.post("/v1/systems", json={**VOICE, **change}, headers=admin)
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert ["body", field] in [e["loc"][:2] for e in response.json()["errors"]]

    async def test_missing_name_is_422(self, client: AsyncClient, admin: dict[str, str]) -> None:
        response = await client.post("/v1/systems", json={"key": "billing"}, headers=admin)
        assert response.status_code == 422

    async def test_duplicate_key_is_409(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await make_system(session, "voice-recordings", name="First")
        again = await client.post("/v1/systems", json=VOICE, headers=admin)
        assert again.status_code == 409
        assert "voice-recordings" in again.json()["detail"]
        read = await client.get("/v1/systems/voice-recordings", headers=admin)
        assert read.json()["name"] == "First"

    async def test_idempotent_create(self, client: AsyncClient, admin: dict[str, str]) -> None:
        headers = {**admin, "Idempotency-Key": "create-voice"}
        first = await client.post("/v1/systems", json=VOICE, headers=headers)
        second = await client.post("/v1/systems", json=VOICE, headers=headers)
        assert first.status_code == second.status_code == 201
        assert second.headers["idempotent-replayed"] == "true"
        assert first.json() == second.json()
        other = await client.post("/v1/systems", json={**VOICE, "name": "X"}, headers=headers)
        assert other.status_code == 409


class TestRead:
    async def test_unauthenticated_is_401(self, client: AsyncClient, session: AsyncSession) -> None:
        await make_system(session, "billing")
        assert (await client.get("/v1/systems")).status_code == 401
        assert (await client.get("/v1/systems/billing")).status_code == 401

    @pytest.mark.parametrize("role", ["admin", "auditor", "system", "controller"])
    async def test_every_role_reads_every_system(
        self, client: AsyncClient, session: AsyncSession, role: str
    ) -> None:
        headers = await headers_for(session, role)  # a system key is bound to another system
        await make_system(session, "billing", owner="finance")
        one = await client.get("/v1/systems/billing", headers=headers)
        assert one.status_code == 200
        assert one.json()["owner"] == "finance"
        assert one.headers["etag"] == '"1"'
        listed = await client.get("/v1/systems", headers=headers)
        assert listed.status_code == 200
        assert "billing" in [s["key"] for s in listed.json()["items"]]

    async def test_list_pages_in_key_order(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        for key in ["c-sys", "a-sys", "e-sys", "b-sys", "d-sys"]:
            await make_system(session, key)
        keys: list[str] = []
        url = "/v1/systems?limit=2"
        pages = 0
        while url:
            body = (await client.get(url, headers=admin)).json()
            assert len(body["items"]) <= 2
            keys += [s["key"] for s in body["items"]]
            pages += 1
            url = f"/v1/systems?limit=2&cursor={body['next_cursor']}" if body["next_cursor"] else ""
        assert keys == ["a-sys", "b-sys", "c-sys", "d-sys", "e-sys"]
        assert pages == 3

    async def test_bad_cursor_is_400(self, client: AsyncClient, admin: dict[str, str]) -> None:
        assert (await client.get("/v1/systems?cursor=nope", headers=admin)).status_code == 400

    @pytest.mark.parametrize("key", ["missing", "Billing", "bill_ing", "a%00b", "b" * 300])
    async def test_unknown_or_malformed_key_is_404(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession, key: str
    ) -> None:
        await make_system(session, "billing")
        response = await client.get(f"/v1/systems/{key}", headers=admin)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"


class TestUpdate:
    async def test_unauthenticated_is_401(self, client: AsyncClient, session: AsyncSession) -> None:
        await make_system(session, "billing")
        assert (await client.patch("/v1/systems/billing", json={"name": "B"})).status_code == 401

    @pytest.mark.parametrize("role", ["auditor", "system", "controller"])
    async def test_only_admin_patches(
        self, client: AsyncClient, session: AsyncSession, role: str
    ) -> None:
        headers = await headers_for(session, role)
        await make_system(session, "billing", name="Billing")
        response = await client.patch("/v1/systems/billing", json={"name": "B"}, headers=headers)
        assert response.status_code == 403
        assert (await client.get("/v1/systems/billing", headers=headers)).json()[
            "name"
        ] == "Billing"

    async def test_patch_with_etag_then_stale_is_412(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await make_system(session, "billing", name="Billing", webhook_url="https://b.example/h")
        etag = (await client.get("/v1/systems/billing", headers=admin)).headers["etag"]
        changed = await client.patch(
            "/v1/systems/billing",
            json={"owner": "finance", "webhook_url": None},
            headers={**admin, "If-Match": etag},
        )
        assert changed.status_code == 200
        body = changed.json()
        assert body["owner"] == "finance" and body["webhook_url"] is None
        assert body["name"] == "Billing" and body["version"] == 2
        assert changed.headers["etag"] == '"2"'
        stale = await client.patch(
            "/v1/systems/billing", json={"name": "Other"}, headers={**admin, "If-Match": etag}
        )
        assert stale.status_code == 412
        assert (await client.get("/v1/systems/billing", headers=admin)).json()["name"] == "Billing"
        events = await events_for(session, "billing")
        assert [(e.event_type, e.details) for e in events] == [
            ("system.updated", {"fields": ["owner", "webhook_url"]})
        ]

    async def test_unchanged_values_write_nothing(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await make_system(session, "billing", name="Billing")
        same = await client.patch("/v1/systems/billing", json={"name": "Billing"}, headers=admin)
        assert same.status_code == 200 and same.json()["version"] == 1
        assert await events_for(session, "billing") == []

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"key": "other"}, "key"),
            ({"name": None}, "name"),
            ({"name": ""}, "name"),
            ({"webhook_url": "mailto:x@example.com"}, "webhook_url"),
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
        await make_system(session, "billing")
        response = await client.patch("/v1/systems/billing", json=body, headers=admin)
        assert response.status_code == 422
        assert ["body", field] in [e["loc"][:2] for e in response.json()["errors"]]

    async def test_unknown_key_is_404(self, client: AsyncClient, admin: dict[str, str]) -> None:
        response = await client.patch("/v1/systems/missing", json={"name": "X"}, headers=admin)
        assert response.status_code == 404
