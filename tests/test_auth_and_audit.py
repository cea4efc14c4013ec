"""API keys, roles and the audit chain; the CLI against a real database."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.audit.service import OPERATOR, record, verify_chain
from app.auth.keys import create_api_key, revoke_api_key
from app.auth.service import create_key, revoke_key
from app.core.db import Database
from tests.builders import TEST_AUDIT_KEY, commit_and_link, make_controller, make_system
from tests.conftest import bearer
from tests.databases import fresh_database


class TestRoles:
    async def test_readers_may_list_audit_events(
        self, client: AsyncClient, admin: dict[str, str], auditor: dict[str, str]
    ) -> None:
        for headers in (admin, auditor):
            response = await client.get("/v1/audit-events", headers=headers)
            assert response.status_code == 200
            assert set(response.json()) == {"items", "next_cursor"}

    async def test_system_and_controller_keys_are_403(
        self, client: AsyncClient, session: AsyncSession
    ) -> None:
        system = await bearer(session, "system", system_key=(await make_system(session)).key)
        controller = await bearer(
            session, "controller", controller_id=(await make_controller(session)).id
        )
        for headers in (system, controller):
            response = await client.get("/v1/audit-events", headers=headers)
            assert response.status_code == 403
            assert response.headers["content-type"] == "application/problem+json"

    async def test_revoked_key_is_401(self, client: AsyncClient, session: AsyncSession) -> None:
        created = await create_key(session, role="admin")
        await session.commit()
        headers = {"Authorization": f"Bearer {created.secret}"}
        assert (await client.get("/v1/audit-events", headers=headers)).status_code == 200
        await revoke_key(session, created.api_key.id)
        await session.commit()
        assert (await client.get("/v1/audit-events", headers=headers)).status_code == 401

    @pytest.mark.parametrize(
        ("role", "system_key", "controller"),
        [
            ("admin", "voice", False),
            ("system", None, False),
            ("controller", None, False),
            ("auditor", None, True),
            ("root", None, False),
            ("system", "no-such-system", False),
            ("controller", None, True),
        ],
    )
    async def test_bindings_must_fit_the_role(
        self, session: AsyncSession, role: str, system_key: str | None, controller: bool
    ) -> None:
        from app.core.errors import Unprocessable

        # A random controller id names no controller, so even the controller role fails.
        with pytest.raises(Unprocessable):
            await create_key(
                session,
                role=role,
                system_key=system_key,
                controller_id=uuid.uuid4() if controller else None,
            )


class TestKeyAdministration:
    async def test_creating_and_revoking_a_key_is_audited_with_ids_only(
        self, session: AsyncSession
    ) -> None:
        controller = await make_controller(session)
        created = await create_api_key(
            session, OPERATOR, role="controller", name="portal", controller_id=controller.id
        )
        await revoke_api_key(session, OPERATOR, created.api_key.id)
        await session.commit()
        events = (
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.entity_id == str(created.api_key.id))
                .order_by(AuditEvent.entry)
            )
        ).all()
        assert [(e.event_type, e.entity_type, e.actor_role) for e in events] == [
            ("api_key.created", "api_key", "operator"),
            ("api_key.revoked", "api_key", "operator"),
        ]
        assert events[0].details == {
            "role": "controller",
            "system": None,
            "controller_id": str(controller.id),
        }
        assert events[1].details == {}
        assert created.secret not in json.dumps([e.details for e in events])

    async def test_a_refused_key_leaves_no_event(self, session: AsyncSession) -> None:
        from app.core.errors import NotFound, Unprocessable

        before = await session.scalar(select(func.count()).select_from(AuditEvent))
        with pytest.raises(Unprocessable):
            await create_api_key(session, OPERATOR, role="system", system_key="no-such-system")
        with pytest.raises(NotFound):
            await revoke_api_key(session, OPERATOR, uuid.uuid4())
        await session.commit()
        after = await session.scalar(select(func.count()).select_from(AuditEvent))
        assert after == before


class TestAuditChain:
    async def test_events_chain_and_page(
        self,
        client: AsyncClient,
        session: AsyncSession,
        database: Database,
        admin: dict[str, str],
    ) -> None:
        for index in range(5):
            record(session, OPERATOR, "probe.step", "probe", str(index), {"n": index})
        await commit_and_link(session, database)
        seen: list[dict[str, object]] = []
        cursor = None
        while True:
            params: dict[str, str | int] = {"limit": 2, "event_type": "probe.step"}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get("/v1/audit-events", params=params, headers=admin)).json()
            seen.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert [item["entity_id"] for item in seen] == ["0", "1", "2", "3", "4"]
        for before, after in itertools.pairwise(seen):
            assert after["prev_hash"] == before["hash"]
        assert (await verify_chain(session)).ok

    async def test_bad_cursor_is_400(self, client: AsyncClient, admin: dict[str, str]) -> None:
        for cursor in ("garbage!", "WyJ4Il0"):  # the second decodes to ["x"]
            response = await client.get(
                "/v1/audit-events", params={"cursor": cursor}, headers=admin
            )
            assert response.status_code == 400

    async def test_limit_bounds(self, client: AsyncClient, admin: dict[str, str]) -> None:
        assert (await client.get("/v1/audit-events?limit=0", headers=admin)).status_code == 422
        assert (await client.get("/v1/audit-events?limit=501", headers=admin)).status_code == 422

    async def test_rolled_back_events_vanish(self, session: AsyncSession) -> None:
        before = await session.scalar(select(func.count()).select_from(AuditEvent))
        record(session, OPERATOR, "probe.rolled_back", "probe", "x")
        await session.rollback()
        record(session, OPERATOR, "probe.kept", "probe", "y")
        await session.commit()
        after = await session.scalar(select(func.count()).select_from(AuditEvent))
        assert (after or 0) - (before or 0) == 1

    async def test_verify_names_an_edited_event(
        self, session: AsyncSession, database: Database
    ) -> None:
        for index in range(3):
            record(session, OPERATOR, "probe.step", "probe", str(index))
        await commit_and_link(session, database)
        target = await session.scalar(
            select(AuditEvent)
            .where(AuditEvent.event_type == "probe.step")
            .order_by(AuditEvent.seq.desc())
            .limit(1)
            .offset(1)
        )
        assert target is not None
        await session.execute(
            update(AuditEvent).where(AuditEvent.id == target.id).values(entity_id="tampered")
        )
        await session.commit()
        report = await verify_chain(session)
        assert not report.ok
        assert report.broken_at_seq == target.seq


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SPIX_DSR_DATABASE_URL": url, "SPIX_DSR_AUDIT_KEY": TEST_AUDIT_KEY}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_cli_keys_and_audit_verify(backend: str, tmp_path: Path) -> None:
    async with fresh_database(backend, tmp_path) as url:
        unknown = _cli(url, "keys", "create", "--role", "system", "--system", "voice")
        assert unknown.returncode == 2 and "No system with key 'voice'" in unknown.stderr
        assert "Traceback" not in unknown.stderr
        created = _cli(url, "keys", "create", "--role", "admin", "--name", "privacy team", "--json")
        assert created.returncode == 0, created.stderr
        key = json.loads(created.stdout)
        assert key["role"] == "admin" and key["key"].startswith("sdsr_")
        uuid.UUID(key["id"])

        listed = _cli(url, "keys", "list")
        assert key["id"] in listed.stdout and key["key"] not in listed.stdout

        bad = _cli(url, "keys", "create", "--role", "system")
        assert bad.returncode != 0

        assert _cli(url, "keys", "revoke", key["id"]).returncode == 0
        assert _cli(url, "keys", "revoke", key["id"]).returncode != 0

        verified = _cli(url, "audit", "verify")
        assert verified.returncode == 0, verified.stderr
        assert "2 events" in verified.stdout
