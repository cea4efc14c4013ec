"""Holds and restriction win over erase work at every step (claim, complete, reported erasure),
whenever they arrive: an erase task already pending or leased when a hold is placed is
suspended, and released again with the hold."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.db import Database, UTCDateTime
from app.core.migrate import downgrade, upgrade
from app.main import create_app
from app.tasks.models import Task, TaskRecord
from tests.builders import (
    TEST_SUBJECT_KEY,
    insert_controller,
    make_category,
    make_category_at_revision,
    make_controller,
    make_controller_at_revision,
    make_record,
    make_system,
    make_system_at_revision,
)
from tests.conftest import bearer
from tests.databases import fresh_database

ALICE = [{"type": "email", "value": "alice@example.com"}]


@pytest.fixture
async def spix(session: AsyncSession) -> dict[str, Any]:
    platform = await make_controller(session, kind="platform", name="Spix")
    for key in ("accounts", "support"):
        await make_system(session, key)
    for key in ("account.profile", "support.ticket"):
        await make_category(session, key)
    records = {
        "profile": await make_record(
            session,
            system="accounts",
            controller_id=platform.id,
            categories=["account.profile"],
            identities=ALICE,
            record_ref="acct-1",
        ),
        "ticket": await make_record(
            session,
            system="support",
            controller_id=platform.id,
            categories=["support.ticket"],
            identities=ALICE,
            record_ref="tkt-1",
        ),
    }
    return {
        "platform": platform,
        "records": records,
        "accounts": await bearer(session, "system", system_key="accounts"),
        "support": await bearer(session, "system", system_key="support"),
    }


async def _erasure(client: AsyncClient, admin: dict[str, str], kind: str = "erasure") -> str:
    body = {"type": kind, "regime": "gdpr", "identities": ALICE, "verified": True}
    response = await client.post("/v1/requests", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _claim(client: AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await client.post("/v1/tasks/claim", json={}, headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["tasks"])


async def _hold(client: AsyncClient, admin: dict[str, str], **scope: Any) -> str:
    response = await client.post(
        "/v1/legal-holds", json={"reason": "litigation", **scope}, headers=admin
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _erase_task_id(client: AsyncClient, admin: dict[str, str], request_id: str) -> str:
    (task,) = [t for t in await _tasks(client, admin, request_id) if t["system"] == "accounts"]
    return str(task["id"])


async def _tasks(client: AsyncClient, admin: dict[str, str], request_id: str) -> list[Any]:
    request = (await client.get(f"/v1/requests/{request_id}", headers=admin)).json()
    return [t for s in request["scopes"] for t in s["tasks"] if t["action"] == "erase"]


async def _record(client: AsyncClient, admin: dict[str, str], record_id: Any) -> dict[str, Any]:
    response = await client.get(f"/v1/records/{record_id}", headers=admin)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _events(client: AsyncClient, admin: dict[str, str], event_type: str) -> list[Any]:
    response = await client.get(f"/v1/audit-events?event_type={event_type}", headers=admin)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def _complete(client: AsyncClient, headers: dict[str, str], task_id: str) -> Any:
    return await client.post(f"/v1/tasks/{task_id}/complete", json={}, headers=headers)


async def _erased(client: AsyncClient, headers: dict[str, str], *refs: str) -> Any:
    return await client.post(
        "/v1/records/erased",
        json={"system": "accounts", "record_refs": list(refs)},
        headers=headers,
    )


class TestHoldAfterEraseTask:
    async def test_pending_erase_task_is_suspended_and_every_path_refuses(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        """The issue's scenario: erase task pending, then a hold on the record's category."""
        request_id = await _erasure(client, admin)
        task_id = await _erase_task_id(client, admin, request_id)
        hold_id = await _hold(client, admin, category="account.profile")

        # The scope shows the task suspended, and why (the hold's id, nothing about who).
        (suspended,) = [t for t in await _tasks(client, admin, request_id) if t["id"] == task_id]
        assert suspended["status"] == "suspended"
        assert suspended["held_by"] == {"holds": [hold_id], "restricted": 0}

        assert await _claim(client, spix["accounts"]) == []

        refused = await _complete(client, spix["accounts"], task_id)
        assert refused.status_code == 409, refused.text
        problem = refused.json()
        assert problem["type"].endswith(":record-held")
        (held,) = problem["held_records"]
        assert held["record_id"] == str(spix["records"]["profile"])
        keys = ("ground", "basis", "hold_id", "reason", "exemption")
        assert [{k: g[k] for k in keys} for g in held["grounds"]] == [
            {
                "ground": "legal_hold",
                "basis": "GDPR Art. 17(3)(e)",
                "hold_id": hold_id,
                "reason": "litigation",
                "exemption": True,
            }
        ]
        assert "alice" not in refused.text

        erased = await _erased(client, spix["accounts"], "acct-1")
        assert erased.status_code == 409, erased.text
        assert [h["record_ref"] for h in erased.json()["held_records"]] == ["acct-1"]

        record = await _record(client, admin, spix["records"]["profile"])
        assert record["state"] == "active"
        assert record["retention"]["status"] == "held"
        assert record["retention"]["holds"] == [hold_id]

        # Each refusal is in the audit log, with ids only.
        (task_refusal,) = await _events(client, admin, "task.refused_held")
        assert task_refusal["entity_id"] == task_id
        assert task_refusal["details"]["holds"] == [hold_id]
        (erased_refusal,) = await _events(client, admin, "records.erase_refused")
        assert erased_refusal["details"]["records"] == [str(spix["records"]["profile"])]
        assert "alice" not in str(task_refusal) + str(erased_refusal)
        (suspension,) = await _events(client, admin, "tasks.suspended")
        assert suspension["details"]["tasks"] == [task_id]
        # The request's own log tells why its work paused and what was refused.
        log = await client.get(f"/v1/requests/{request_id}/events?limit=500", headers=admin)
        types = [e["event_type"] for e in log.json()["items"]]
        assert "tasks.suspended" in types and "task.refused_held" in types

    async def test_leased_task_cannot_complete_once_held(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        request_id = await _erasure(client, admin)
        (task,) = await _claim(client, spix["accounts"])
        assert task["action"] == "erase"
        hold_id = await _hold(client, admin, record_ids=[str(spix["records"]["profile"])])

        (suspended,) = [t for t in await _tasks(client, admin, request_id) if t["id"] == task["id"]]
        assert suspended["status"] == "suspended"
        refused = await _complete(client, spix["accounts"], task["id"])
        assert refused.status_code == 409, refused.text
        assert refused.json()["held_records"][0]["grounds"][0]["hold_id"] == hold_id
        record = await _record(client, admin, spix["records"]["profile"])
        assert record["state"] == "active" and record["retention"]["status"] == "held"
        # The other system's erase work is untouched by a hold that does not reach it.
        (ticket_task,) = await _claim(client, spix["support"])
        done = await _complete(client, spix["support"], ticket_task["id"])
        assert done.status_code == 200, done.text

    async def test_release_makes_the_work_claimable_again(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        request_id = await _erasure(client, admin)
        hold_id = await _hold(client, admin, system="accounts")
        assert await _claim(client, spix["accounts"]) == []
        released = await client.post(
            f"/v1/legal-holds/{hold_id}/release", json={"note": "settled"}, headers=admin
        )
        assert released.status_code == 200, released.text
        (pending,) = [
            t for t in await _tasks(client, admin, request_id) if t["system"] == "accounts"
        ]
        assert pending["status"] == "pending" and pending["held_by"] is None

        (task,) = await _claim(client, spix["accounts"])
        done = await _complete(client, spix["accounts"], task["id"])
        assert done.status_code == 200, done.text
        assert (await _record(client, admin, spix["records"]["profile"]))["state"] == "erased"
        (resumed,) = await _events(client, admin, "tasks.resumed")
        assert resumed["details"]["tasks"] == [task["id"]]

    async def test_record_held_after_its_claim_is_refused(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        spix: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        """A record can become held after a hold exists (its categories change): the claim
        and the completion still check the record, whatever the task's status says."""
        await make_category(session, "account.legal")
        await _hold(client, admin, category="account.legal")
        await _erasure(client, admin)
        (task,) = await _claim(client, spix["accounts"])
        patched = await client.patch(
            f"/v1/records/{spix['records']['profile']}",
            json={"categories": ["account.profile", "account.legal"]},
            headers=admin,
        )
        assert patched.status_code == 200, patched.text
        refused = await _complete(client, spix["accounts"], task["id"])
        assert refused.status_code == 409, refused.text
        assert (await _record(client, admin, spix["records"]["profile"]))["state"] == "active"
        assert await _claim(client, spix["accounts"]) == []

    async def test_claim_skips_erase_work_for_a_record_held_by_re_registration(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        spix: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        """Re-registering a record (upsert) can bring it under a hold without any task being
        suspended: the claim itself never hands out erase work for a held record."""
        await make_category(session, "account.legal")
        await _hold(client, admin, category="account.legal")
        await _erasure(client, admin)
        upsert = await client.post(
            "/v1/records",
            json={
                "system": "accounts",
                "record_ref": "acct-1",
                "controller_id": str(spix["platform"].id),
                "identities": ALICE,
                "categories": ["account.profile", "account.legal"],
                "collected_at": "2026-01-01T00:00:00Z",
            },
            headers=admin,
        )
        assert upsert.status_code == 200, upsert.text
        assert upsert.json()["retention"]["status"] == "held"
        assert await _claim(client, spix["accounts"]) == []
        assert [t["action"] for t in await _claim(client, spix["support"])] == ["erase"]

    async def test_retried_erase_task_under_a_hold_stays_suspended(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        request_id = await _erasure(client, admin)
        (task,) = await _claim(client, spix["accounts"])
        failed = await client.post(
            f"/v1/tasks/{task['id']}/fail",
            json={"error": "disk full", "retryable": False},
            headers=spix["accounts"],
        )
        assert failed.status_code == 200, failed.text
        hold_id = await _hold(client, admin, system="accounts")
        retried = await client.post(f"/v1/tasks/{task['id']}/retry", headers=admin)
        assert retried.status_code == 200, retried.text
        assert retried.json()["status"] == "suspended"
        assert await _claim(client, spix["accounts"]) == []
        (shown,) = [t for t in await _tasks(client, admin, request_id) if t["id"] == task["id"]]
        assert shown["held_by"] == {"holds": [hold_id], "restricted": 0}


class TestRestriction:
    async def test_restriction_suspends_a_pending_erase_task(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        erasure_id = await _erasure(client, admin)
        erase_id = await _erase_task_id(client, admin, erasure_id)
        await _erasure(client, admin, kind="restriction")
        (suspended,) = [t for t in await _tasks(client, admin, erasure_id) if t["id"] == erase_id]
        assert suspended["status"] == "suspended"
        assert suspended["held_by"] == {"holds": [], "restricted": 1}

        # The system gets its restrict task, never the erase task.
        assert [t["action"] for t in await _claim(client, spix["accounts"])] == ["restrict"]
        refused = await _complete(client, spix["accounts"], erase_id)
        assert refused.status_code == 409, refused.text
        assert [
            (g["ground"], g["basis"]) for g in refused.json()["held_records"][0]["grounds"]
        ] == [("restricted", "GDPR Art. 18")]
        erased = await _erased(client, spix["accounts"], "acct-1")
        assert erased.status_code == 409, erased.text
        assert (await _record(client, admin, spix["records"]["profile"]))["state"] == "restricted"


class TestReportedErasure:
    async def test_batch_with_a_held_record_erases_nothing(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        spix: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        other = await make_record(
            session,
            system="accounts",
            controller_id=spix["platform"].id,
            categories=["support.ticket"],
            record_ref="acct-2",
        )
        await _hold(client, admin, category="account.profile")
        refused = await _erased(client, spix["accounts"], "acct-2", "acct-1", "acct-1")
        assert refused.status_code == 409, refused.text
        assert [(h["index"], h["record_ref"]) for h in refused.json()["held_records"]] == [
            (1, "acct-1"),
            (2, "acct-1"),
        ]
        assert (await _record(client, admin, other))["state"] == "active"
        accepted = await _erased(client, spix["accounts"], "acct-2")
        assert accepted.status_code == 200 and accepted.json() == {"erased": 1}


async def test_migration_links_existing_tasks_to_their_records(
    backend: str, tmp_path: Path
) -> None:
    """Upgrading fills task_records from each task's record_ids, so erase work created before
    the upgrade is found by a hold; downgrading returns suspended tasks to the queue."""
    before = "5b1e0c7d9a24"
    async with fresh_database(backend, tmp_path, migrate=False) as url:
        await asyncio.to_thread(upgrade, url, before)
        database = Database.from_url(url)
        try:
            async with database.sessionmaker() as session:
                controller_id = await make_controller_at_revision(
                    session, kind="platform", name="Spix"
                )
                await make_system_at_revision(session, "accounts")
                await make_category_at_revision(session, "account.profile")
                record_ids = [
                    await make_record(
                        session,
                        system="accounts",
                        controller_id=controller_id,
                        categories=["account.profile"],
                    )
                    for _ in range(2)
                ]
                now = datetime.now(UTC)
                # Written with the old schema's columns: the models may carry newer ones.
                request_id, scope_id = uuid.uuid4(), uuid.uuid4()
                requests = sa.table(
                    "subject_requests",
                    sa.column("id", sa.Uuid()),
                    *(sa.column(n) for n in ("type", "regime", "status", "channel")),
                    *(sa.column(n) for n in ("requester_kind", "verification_attempts")),
                    sa.column("version"),
                    sa.column("details", sa.JSON()),
                    *(
                        sa.column(n, UTCDateTime())
                        for n in ("received_at", "due_at", "created_at", "updated_at")
                    ),
                )
                await session.execute(
                    sa.insert(requests).values(
                        id=request_id,
                        type="erasure",
                        regime="gdpr",
                        status="in_progress",
                        channel="api",
                        requester_kind="subject",
                        verification_attempts=0,
                        version=1,
                        details={},
                        received_at=now,
                        due_at=now,
                        created_at=now,
                        updated_at=now,
                    )
                )
                scopes = sa.table(
                    "request_scopes",
                    *(sa.column(n, sa.Uuid()) for n in ("id", "request_id", "controller_id")),
                    sa.column("status"),
                )
                await session.execute(
                    sa.insert(scopes).values(
                        id=scope_id,
                        request_id=request_id,
                        controller_id=controller_id,
                        status="in_progress",
                    )
                )
                task = Task(
                    request_id=request_id,
                    scope_id=scope_id,
                    system="accounts",
                    action="erase",
                    status="pending",
                    record_ids=[str(r) for r in record_ids],
                    record_refs=["a", "b"],
                )
                session.add(task)
                await session.commit()
                task_id = task.id

            await asyncio.to_thread(upgrade, url)
            async with database.sessionmaker() as session:
                links = (
                    await session.execute(sa.select(TaskRecord.task_id, TaskRecord.record_id))
                ).all()
                assert sorted(links) == sorted((task_id, r) for r in record_ids)
                await session.execute(
                    sa.update(Task).where(Task.id == task_id).values(status="suspended")
                )
                await session.commit()

            await asyncio.to_thread(downgrade, url, before)
            async with database.sessionmaker() as session:
                status = await session.scalar(sa.select(Task.status).where(Task.id == task_id))
                assert status == "pending"
        finally:
            await database.dispose()


async def test_hold_racing_completions_never_loses_a_held_record(
    backend: str, tmp_path: Path
) -> None:
    """Completions and a hold at once (real, committed transactions): every completion is
    either done before the hold (the record erased) or refused (the record active and held),
    and neither side fails (PostgreSQL: the two take records and tasks in the same order)."""
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        app = create_app(
            Settings(database_url=url, subject_key=TEST_SUBJECT_KEY, data_dir=tmp_path),
            database=database,
        )
        try:
            async with database.sessionmaker() as session:
                platform = await insert_controller(session, kind="platform", name="Spix")
                await make_system_at_revision(session, "accounts")
                await make_category(session, "account.profile")
                for n in range(20):
                    await make_record(
                        session,
                        system="accounts",
                        controller_id=platform.id,
                        categories=["account.profile"],
                        identities=[{"type": "email", "value": f"user{n}@example.com"}],
                    )
                admin = await bearer(session, "admin")
                worker = await bearer(session, "system", system_key="accounts")
            async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
                for n in range(20):
                    body = {
                        "type": "erasure",
                        "regime": "gdpr",
                        "verified": True,
                        "identities": [{"type": "email", "value": f"user{n}@example.com"}],
                    }
                    created = await client.post("/v1/requests", json=body, headers=admin)
                    assert created.status_code == 201, created.text
                claimed = await client.post("/v1/tasks/claim", json={"limit": 20}, headers=worker)
                tasks = claimed.json()["tasks"]
                assert len(tasks) == 20

                hold = client.post(
                    "/v1/legal-holds", json={"reason": "audit", "system": "accounts"}, headers=admin
                )

                async def complete(n: int, task_id: str) -> Any:
                    # Spread over the hold's own transaction, so some land inside it.
                    await asyncio.sleep(n * 0.003)
                    return await client.post(
                        f"/v1/tasks/{task_id}/complete", json={}, headers=worker
                    )

                placed, *answers = await asyncio.gather(
                    hold, *(complete(n, t["id"]) for n, t in enumerate(tasks))
                )
                assert placed.status_code == 201, placed.text
                # Which side wins each record depends on timing; the invariant does not.
                assert {a.status_code for a in answers} <= {200, 409}, [a.text for a in answers]
                for task, answer in zip(tasks, answers, strict=True):
                    records = await client.get(
                        f"/v1/records?system=accounts&record_ref={task['record_refs'][0]}",
                        headers=admin,
                    )
                    (record,) = records.json()["items"]
                    if answer.status_code == 200:
                        assert record["state"] == "erased"
                    else:
                        assert record["state"] == "active"
                        assert record["retention"]["status"] == "held"
        finally:
            await database.dispose()
