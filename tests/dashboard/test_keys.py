"""Keys over HTTP: admins manage every key, customer staff their own controller's."""

from __future__ import annotations

import asyncio
from typing import Any

from httpx import AsyncClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.auth.models import ApiKey
from app.core.db import utcnow
from tests.builders import make_controller
from tests.conftest import bearer
from tests.dashboard.idp import TestIdp

KEYS = "/v1/api-keys"


def key_header(created: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {created['key']}"}


class TestAdmins:
    async def test_create_list_use_revoke(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        response = await client.post(
            KEYS,
            json={"role": "system", "system": "billing", "name": "billing worker"},
            headers=admin,
        )
        assert response.status_code == 201, response.text
        created = response.json()
        assert created["key"].startswith(f"sdsr_{created['prefix']}_")
        assert response.headers["location"] == f"{KEYS}/{created['id']}"
        assert response.headers["cache-control"] == "no-store"
        assert created["last_used_at"] is None

        # Shown once: no read gives the key again.
        read = await client.get(f"{KEYS}/{created['id']}", headers=admin)
        assert read.status_code == 200 and "key" not in read.json()
        listed = await client.get(f"{KEYS}?role=system", headers=admin)
        rows = {row["id"]: row for row in listed.json()["items"]}
        row = rows[created["id"]]
        assert "key" not in row
        assert (row["prefix"], row["role"], row["system"], row["controller_id"]) == (
            created["prefix"],
            "system",
            "billing",
            None,
        )
        assert row["created_at"] is not None

        claimed = await client.post("/v1/tasks/claim", json={}, headers=key_header(created))
        assert claimed.status_code == 200
        used = (await client.get(f"{KEYS}/{created['id']}", headers=admin)).json()
        assert used["last_used_at"] is not None

        revoked = await client.post(f"{KEYS}/{created['id']}/revoke", headers=admin)
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        # At once in this process, cached or not.
        again = await client.post("/v1/tasks/claim", json={}, headers=key_header(created))
        assert again.status_code == 401
        twice = await client.post(f"{KEYS}/{created['id']}/revoke", headers=admin)
        assert twice.status_code == 404
        active = await client.get(f"{KEYS}?active=true", headers=admin)
        assert created["id"] not in {row["id"] for row in active.json()["items"]}

    async def test_bindings_are_checked(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        for body in (
            {"role": "system"},
            {"role": "system", "system": "nonesuch"},
            {"role": "controller"},
            {"role": "admin", "controller_id": str(spix["acme"].id)},
            {"role": "root"},
        ):
            response = await client.post(KEYS, json=body, headers=admin)
            assert response.status_code == 422, body

    async def test_auditors_read_and_systems_do_not(
        self, client: AsyncClient, auditor: dict[str, str], spix: dict[str, Any]
    ) -> None:
        assert (await client.get(KEYS, headers=auditor)).status_code == 200
        made = await client.post(KEYS, json={"role": "admin"}, headers=auditor)
        assert made.status_code == 403
        system = spix["keys"]["billing"]
        assert (await client.get(KEYS, headers=system)).status_code == 403

    async def test_changes_are_audited(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        created = (await client.post(KEYS, json={"role": "auditor"}, headers=admin)).json()
        await client.post(f"{KEYS}/{created['id']}/revoke", headers=admin)
        events = (
            await session.scalars(
                select(AuditEvent.event_type).where(AuditEvent.entity_id == created["id"])
            )
        ).all()
        assert sorted(events) == ["api_key.created", "api_key.revoked"]


class TestCustomerStaff:
    async def test_staff_manage_their_own_controllers_keys_only(
        self,
        oidc_client: AsyncClient,
        admin: dict[str, str],
        spix: dict[str, Any],
        idp: TestIdp,
        session: AsyncSession,
    ) -> None:
        acme = spix["acme"].id
        globex = await make_controller(session, name="Globex")
        theirs = (
            await oidc_client.post(
                KEYS, json={"role": "controller", "controller_id": str(globex.id)}, headers=admin
            )
        ).json()
        staff = idp.staff(acme)

        made = await oidc_client.post(KEYS, json={"role": "controller"}, headers=staff)
        assert made.status_code == 201, made.text
        mine = made.json()
        assert mine["controller_id"] == str(acme)
        # The new key acts for Acme.
        queue = await oidc_client.get("/v1/requests", headers=key_header(mine))
        assert queue.status_code == 200

        listed = (await oidc_client.get(KEYS, headers=staff)).json()["items"]
        assert {row["controller_id"] for row in listed} == {str(acme)}
        assert theirs["id"] not in {row["id"] for row in listed}
        filtered = await oidc_client.get(f"{KEYS}?controller_id={globex.id}", headers=staff)
        assert filtered.json()["items"] == []

        for body in (
            {"role": "admin"},
            {"role": "system", "system": "billing"},
            {"role": "controller", "controller_id": str(globex.id)},
        ):
            refused = await oidc_client.post(KEYS, json=body, headers=staff)
            assert refused.status_code == 403, body

        # Another customer's key does not exist for Acme's staff.
        for path in (f"{KEYS}/{theirs['id']}",):
            assert (await oidc_client.get(path, headers=staff)).status_code == 404
        hidden = await oidc_client.post(f"{KEYS}/{theirs['id']}/revoke", headers=staff)
        assert hidden.status_code == 404
        still = await oidc_client.get("/v1/requests", headers=key_header(theirs))
        assert still.status_code == 200

        revoked = await oidc_client.post(f"{KEYS}/{mine['id']}/revoke", headers=staff)
        assert revoked.status_code == 200
        assert (await oidc_client.get("/v1/requests", headers=key_header(mine))).status_code == 401

    async def test_a_controller_key_manages_its_own_controller_too(
        self, client: AsyncClient, spix: dict[str, Any], session: AsyncSession
    ) -> None:
        other = await bearer(session, "controller", controller_id=spix["platform"].id)
        made = await client.post(KEYS, json={"role": "controller"}, headers=spix["acme_key"])
        assert made.status_code == 201
        assert made.json()["controller_id"] == str(spix["acme"].id)
        listed = await client.get(KEYS, headers=other)
        assert made.json()["id"] not in {row["id"] for row in listed.json()["items"]}


class TestRevocationElsewhere:
    async def test_a_revocation_by_another_process_shows_within_the_cache_time(
        self, client: AsyncClient, app: Any, admin: dict[str, str], session: AsyncSession
    ) -> None:
        app.state.settings = app.state.settings.model_copy(update={"api_key_cache_seconds": 0.5})
        created = (await client.post(KEYS, json={"role": "auditor"}, headers=admin)).json()
        headers = key_header(created)
        assert (await client.get(KEYS, headers=headers)).status_code == 200
        # Another process revokes: straight in the database, this process's cache untouched.
        await session.execute(
            update(ApiKey).where(ApiKey.prefix == created["prefix"]).values(revoked_at=utcnow())
        )
        await session.commit()
        await asyncio.sleep(0.6)
        assert (await client.get(KEYS, headers=headers)).status_code == 401
