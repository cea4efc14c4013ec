"""Data categories: a tree of dotted keys whose parents must exist, deletable only when unused."""

from __future__ import annotations

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.core.db import utcnow
from app.data_categories.models import DataCategory
from app.data_categories.service import category_in_use
from app.legal_holds.models import LegalHold
from tests.builders import make_category, make_controller, make_rule, make_system
from tests.conftest import bearer

RECORDING = {
    "key": "communications.recording",
    "name": "Call recordings",
    "description": "Audio of calls and voicemail",
    "sensitivity": "high",
    "fideslang": "user.biometric.voice",
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
        .where(AuditEvent.entity_type == "data_category", AuditEvent.entity_id == key)
        .order_by(AuditEvent.seq)
    )
    return list((await session.scalars(statement)).all())


async def make_hold(session: AsyncSession, category: str, *, released: bool = False) -> LegalHold:
    hold = LegalHold(
        reason="litigation 2026-17", category=category, released_at=utcnow() if released else None
    )
    session.add(hold)
    await session.commit()
    return hold


async def keys_of(client: AsyncClient, url: str, headers: dict[str, str]) -> list[str]:
    response = await client.get(url, headers=headers)
    assert response.status_code == 200
    return [c["key"] for c in response.json()["items"]]


class TestCreate:
    async def test_unauthenticated_is_401(self, client: AsyncClient) -> None:
        response = await client.post("/v1/data-categories", json={"key": "account", "name": "A"})
        assert response.status_code == 401

    @pytest.mark.parametrize("role", ["auditor", "system", "controller"])
    async def test_only_admin_creates(
        self, client: AsyncClient, session: AsyncSession, role: str
    ) -> None:
        headers = await headers_for(session, role)
        response = await client.post(
            "/v1/data-categories", json={"key": "account", "name": "A"}, headers=headers
        )
        assert response.status_code == 403
        assert await session.get(DataCategory, "account") is None

    async def test_root_then_child(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        root = await client.post(
            "/v1/data-categories",
            json={"key": "communications", "name": "Communications"},
            headers=admin,
        )
        assert root.status_code == 201
        assert root.json()["parent_key"] is None and root.json()["sensitivity"] == "medium"
        child = await client.post("/v1/data-categories", json=RECORDING, headers=admin)
        assert child.status_code == 201
        body = child.json()
        assert {k: body[k] for k in RECORDING} == RECORDING
        assert body["parent_key"] == "communications" and body["version"] == 1
        assert body["created_at"] and body["updated_at"]
        assert child.headers["etag"] == '"1"'
        assert child.headers["location"] == "/v1/data-categories/communications.recording"
        events = await events_for(session, "communications.recording")
        assert [(e.event_type, e.details) for e in events] == [
            (
                "data_category.created",
                {"parent_key": "communications", "sensitivity": "high"},
            )
        ]

    async def test_missing_parent_is_422_naming_key(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await make_category(session, "communications")
        response = await client.post(
            "/v1/data-categories",
            json={"key": "communications.voice.recording", "name": "R"},
            headers=admin,
        )
        assert response.status_code == 422
        problem = response.json()
        assert [e["loc"] for e in problem["errors"]] == [["body", "key"]]
        assert "communications.voice" in problem["detail"]
        assert await session.get(DataCategory, "communications.voice.recording") is None

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"key": "Communications"}, "key"),
            ({"key": "communications."}, "key"),
            ({"key": ".communications"}, "key"),
            ({"key": "communications..recording"}, "key"),
            ({"key": "call-recordings"}, "key"),
            ({"key": "communications/recording"}, "key"),
            ({"key": ""}, "key"),
            ({"name": ""}, "name"),
            ({"sensitivity": "extreme"}, "sensitivity"),
            ({"sensitivity": None}, "sensitivity"),
            ({"fideslang": "user biometric"}, "fideslang"),
            ({"surprise": 1}, "surprise"),
        ],
    )
    async def test_bad_bodies_are_422(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        session: AsyncSession,
        change: dict[str, object],
        field: str,
    ) -> None:
        await make_category(session, "communications")
        response = await client.post(
            "/v1/data-categories", json={**RECORDING, **change}, headers=admin
        )
        assert response.status_code == 422
        assert ["body", field] in [e["loc"][:2] for e in response.json()["errors"]]

    async def test_longest_key_is_stored_and_audited(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await make_category(session, "communications")
        # 200 characters: the longest key, which the audit log's entity_id column holds.
        key = "communications." + "r" * (200 - len("communications."))
        response = await client.post(
            "/v1/data-categories", json={"key": key, "name": "Long"}, headers=admin
        )
        assert response.status_code == 201
        assert [e.event_type for e in await events_for(session, key)] == ["data_category.created"]
        longer = await client.post(
            "/v1/data-categories", json={"key": key + "r", "name": "Long"}, headers=admin
        )
        assert longer.status_code == 422
        assert [e["loc"] for e in longer.json()["errors"]] == [["body", "key"]]

    async def test_duplicate_key_is_409(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await make_category(session, "communications.recording", description="First")
        again = await client.post("/v1/data-categories", json=RECORDING, headers=admin)
        assert again.status_code == 409
        assert "communications.recording" in again.json()["detail"]
        stored = await session.get(DataCategory, "communications.recording")
        assert stored is not None and stored.description == "First"

    async def test_idempotent_create(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await make_category(session, "communications")
        headers = {**admin, "Idempotency-Key": "create-recording"}
        first = await client.post("/v1/data-categories", json=RECORDING, headers=headers)
        second = await client.post("/v1/data-categories", json=RECORDING, headers=headers)
        assert first.status_code == second.status_code == 201
        assert first.json() == second.json()
        assert len(await events_for(session, "communications.recording")) == 1


class TestRead:
    async def test_unauthenticated_is_401(self, client: AsyncClient, session: AsyncSession) -> None:
        await make_category(session, "account")
        assert (await client.get("/v1/data-categories")).status_code == 401
        assert (await client.get("/v1/data-categories/account")).status_code == 401

    @pytest.mark.parametrize("role", ["admin", "auditor", "system", "controller"])
    async def test_every_role_reads(
        self, client: AsyncClient, session: AsyncSession, role: str
    ) -> None:
        headers = await headers_for(session, role)
        await make_category(session, "account.profile", sensitivity="low")
        one = await client.get("/v1/data-categories/account.profile", headers=headers)
        assert one.status_code == 200
        assert one.json()["parent_key"] == "account" and one.json()["sensitivity"] == "low"
        assert one.headers["etag"] == '"1"'
        assert await keys_of(client, "/v1/data-categories", headers) == [
            "account",
            "account.profile",
        ]

    async def test_parent_lists_direct_children(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        for key in ["communications.sms_body", "communications.recording.transcript", "account"]:
            await make_category(session, key)
        assert await keys_of(client, "/v1/data-categories?parent=communications", admin) == [
            "communications.recording",
            "communications.sms_body",
        ]
        assert await keys_of(client, "/v1/data-categories?parent=account", admin) == []

    async def test_prefix_lists_the_key_and_its_subtree(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        for key in [
            "communications.recording.transcript",
            "communications.sms_body",
            "communicationsx.other",
            "support_a.attachment",
            "supportxa.attachment",
        ]:
            await make_category(session, key)
        assert await keys_of(client, "/v1/data-categories?prefix=communications", admin) == [
            "communications",
            "communications.recording",
            "communications.recording.transcript",
            "communications.sms_body",
        ]
        # `_` is a LIKE wildcard: it must match only itself.
        assert await keys_of(client, "/v1/data-categories?prefix=support_a", admin) == [
            "support_a",
            "support_a.attachment",
        ]
        both = "/v1/data-categories?prefix=communications.recording&parent=communications"
        assert await keys_of(client, both, admin) == ["communications.recording"]

    async def test_list_pages_in_key_order(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        for leaf in ["e", "b", "d", "a", "c"]:
            await make_category(session, f"billing.{leaf}")
        seen: list[str] = []
        cursor = None
        while True:
            url = "/v1/data-categories?prefix=billing&limit=2"
            body = (
                await client.get(url + (f"&cursor={cursor}" if cursor else ""), headers=admin)
            ).json()
            seen += [c["key"] for c in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == ["billing", "billing.a", "billing.b", "billing.c", "billing.d", "billing.e"]

    @pytest.mark.parametrize(
        "query", ["parent=Communications", "prefix=comm..x", "prefix=", "parent=a%00b"]
    )
    async def test_malformed_filters_are_422(
        self, client: AsyncClient, admin: dict[str, str], query: str
    ) -> None:
        response = await client.get(f"/v1/data-categories?{query}", headers=admin)
        assert response.status_code == 422

    @pytest.mark.parametrize("key", ["missing", "account.missing", "Account", "a%00b", "a-b"])
    async def test_unknown_or_malformed_key_is_404(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession, key: str
    ) -> None:
        await make_category(session, "account")
        response = await client.get(f"/v1/data-categories/{key}", headers=admin)
        assert response.status_code == 404


class TestUpdate:
    async def test_unauthenticated_is_401(self, client: AsyncClient, session: AsyncSession) -> None:
        await make_category(session, "account")
        response = await client.patch("/v1/data-categories/account", json={"name": "A"})
        assert response.status_code == 401

    @pytest.mark.parametrize("role", ["auditor", "system", "controller"])
    async def test_only_admin_patches(
        self, client: AsyncClient, session: AsyncSession, role: str
    ) -> None:
        headers = await headers_for(session, role)
        await make_category(session, "account")
        response = await client.patch(
            "/v1/data-categories/account", json={"sensitivity": "high"}, headers=headers
        )
        assert response.status_code == 403

    async def test_patch_with_etag_then_stale_is_412(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await make_category(session, "communications.recording", fideslang="user.biometric")
        url = "/v1/data-categories/communications.recording"
        etag = (await client.get(url, headers=admin)).headers["etag"]
        changed = await client.patch(
            url,
            json={"sensitivity": "high", "fideslang": None, "description": "Audio"},
            headers={**admin, "If-Match": etag},
        )
        assert changed.status_code == 200
        body = changed.json()
        assert (body["sensitivity"], body["fideslang"], body["description"]) == (
            "high",
            None,
            "Audio",
        )
        assert body["version"] == 2 and changed.headers["etag"] == '"2"'
        assert body["key"] == "communications.recording"
        assert body["parent_key"] == "communications"
        stale = await client.patch(url, json={"name": "X"}, headers={**admin, "If-Match": etag})
        assert stale.status_code == 412
        events = await events_for(session, "communications.recording")
        assert [(e.event_type, e.details) for e in events] == [
            ("data_category.updated", {"fields": ["description", "fideslang", "sensitivity"]})
        ]

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"key": "account.other"}, "key"),
            ({"parent_key": None}, "parent_key"),
            ({"name": None}, "name"),
            ({"sensitivity": None}, "sensitivity"),
            ({"sensitivity": "secret"}, "sensitivity"),
            ({"fideslang": "User.Contact"}, "fideslang"),
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
        await make_category(session, "account")
        response = await client.patch("/v1/data-categories/account", json=body, headers=admin)
        assert response.status_code == 422
        assert ["body", field] in [e["loc"][:2] for e in response.json()["errors"]]

    async def test_unknown_key_is_404(self, client: AsyncClient, admin: dict[str, str]) -> None:
        response = await client.patch("/v1/data-categories/missing", json={}, headers=admin)
        assert response.status_code == 404


class TestDelete:
    async def test_unauthenticated_is_401(self, client: AsyncClient, session: AsyncSession) -> None:
        await make_category(session, "account")
        assert (await client.delete("/v1/data-categories/account")).status_code == 401
        assert await session.get(DataCategory, "account") is not None

    @pytest.mark.parametrize("role", ["auditor", "system", "controller"])
    async def test_only_admin_deletes(
        self, client: AsyncClient, session: AsyncSession, role: str
    ) -> None:
        headers = await headers_for(session, role)
        await make_category(session, "account")
        response = await client.delete("/v1/data-categories/account", headers=headers)
        assert response.status_code == 403
        assert (await client.get("/v1/data-categories/account", headers=headers)).status_code == 200

    async def test_unused_category_is_deleted_and_audited(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await make_category(session, "account.profile")
        response = await client.delete("/v1/data-categories/account.profile", headers=admin)
        assert response.status_code == 204 and response.content == b""
        assert (
            await client.get("/v1/data-categories/account.profile", headers=admin)
        ).status_code == 404
        events = await events_for(session, "account.profile")
        assert [(e.event_type, e.details) for e in events] == [
            ("data_category.deleted", {"parent_key": "account"})
        ]
        # With its only child gone, the parent is unused too.
        assert (
            await client.delete("/v1/data-categories/account", headers=admin)
        ).status_code == 204

    async def test_category_with_a_child_is_409(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await make_category(session, "account.profile")
        response = await client.delete("/v1/data-categories/account", headers=admin)
        assert response.status_code == 409
        assert "child" in response.json()["detail"]
        assert await events_for(session, "account") == []

    async def test_category_named_by_a_retention_rule_is_409(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await make_category(session, "billing")
        await make_rule(session, category="billing")
        response = await client.delete("/v1/data-categories/billing", headers=admin)
        assert response.status_code == 409
        assert "retention rule" in response.json()["detail"]

    @pytest.mark.parametrize("released", [False, True])
    async def test_category_named_by_a_legal_hold_is_409(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession, released: bool
    ) -> None:
        await make_category(session, "support")
        await make_hold(session, "support", released=released)
        response = await client.delete("/v1/data-categories/support", headers=admin)
        assert response.status_code == 409
        assert "legal hold" in response.json()["detail"]
        assert await session.get(DataCategory, "support") is not None

    async def test_stale_if_match_is_412(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await make_category(session, "account")
        response = await client.delete(
            "/v1/data-categories/account", headers={**admin, "If-Match": '"7"'}
        )
        assert response.status_code == 412
        current = await client.delete(
            "/v1/data-categories/account", headers={**admin, "If-Match": '"1"'}
        )
        assert current.status_code == 204

    async def test_unknown_key_is_404(self, client: AsyncClient, admin: dict[str, str]) -> None:
        assert (await client.delete("/v1/data-categories/nope", headers=admin)).status_code == 404


class TestCategoryInUse:
    async def test_names_the_first_reason_or_none(self, session: AsyncSession) -> None:
        await make_category(session, "communications.recording")
        await make_category(session, "billing")
        await make_category(session, "support")
        await make_rule(session, category="billing")
        await make_hold(session, "support")
        assert await category_in_use(session, "communications.recording") is None
        assert await category_in_use(session, "communications") == "it has child categories"
        assert await category_in_use(session, "billing") == "a retention rule is scoped to it"
        reason = await category_in_use(session, "support")
        assert reason is not None and "legal hold" in reason
