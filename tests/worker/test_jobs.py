"""A rule change reaching more records than the setting allows answers 202 with a job, which
workers finish in chunks, resuming after a worker dies mid-way."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select

from app.core.config import get_settings
from app.core.db import Database
from app.jobs.models import Job
from app.jobs.runner import JobConfig, run_chunk
from app.records.models import Record
from app.retention.recompute import Scope, profiles_in, recompute
from tests.builders import make_category, make_record, make_system
from tests.conftest import bearer
from tests.worker.conftest import Receiver, platform_of
from tests.worker.test_events import customer_with_hook
from tests.worker.test_schedule import events

RECORDS = 30


@pytest.fixture
def small_inline_limit(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SPIX_DSR_RECOMPUTE_INLINE_MAX_RECORDS", "5")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("SPIX_DSR_RECOMPUTE_INLINE_MAX_RECORDS")
    get_settings.cache_clear()


async def records_in(database: Database, category: str) -> None:
    platform = await platform_of(database)
    async with database.sessionmaker() as session:
        system = (await make_system(session)).key
        await make_category(session, category)
        for _ in range(RECORDS):
            await make_record(session, system=system, controller_id=platform, categories=[category])


def rule(category: str) -> dict[str, str]:
    return {
        "name": f"short {category}",
        "kind": "maximum",
        "period": "P1D",
        "anchor": "collected_at",
        "action": "delete",
        "source": "platform_default",
        "category": category,
    }


async def test_a_large_rule_change_is_a_job_that_survives_a_worker_restart(
    wclient: AsyncClient, wdb: Database, wadmin: dict[str, str], small_inline_limit: None
) -> None:
    category = f"jobs.c{uuid.uuid4().hex[:8]}"
    await records_in(wdb, category)
    response = await wclient.post("/v1/retention-rules", json=rule(category), headers=wadmin)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["state"] == "queued"
    assert job["subject_type"] == "retention_rule"
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"

    # Worker A does one chunk, then dies (its lease is left to lapse).
    first, second = uuid.uuid4(), uuid.uuid4()
    short = JobConfig(chunk=10, lease=timedelta(seconds=2))
    assert await run_chunk(wdb, first, short)
    running = (await wclient.get(f"/v1/jobs/{job['id']}", headers=wadmin)).json()
    assert running["state"] == "running"
    assert running["progress"] == {"done": 10, "total": RECORDS}
    # While A's lease holds, nobody else takes the job.
    assert not await run_chunk(wdb, second, short)
    await asyncio.sleep(2.1)

    # Worker B (a restarted worker) resumes at the committed cursor and finishes.
    for _ in range(10):
        if not await run_chunk(wdb, second, short):
            break
    done = (await wclient.get(f"/v1/jobs/{job['id']}", headers=wadmin)).json()
    assert done["state"] == "completed", done
    assert done["progress"] == {"done": RECORDS, "total": RECORDS}
    assert done["counts"]["records_changed"] == RECORDS
    assert done["finished_at"] is not None

    # The stored decisions are what an inline recompute would have written.
    async with wdb.sessionmaker() as session, session.begin():
        assert await recompute(session, [Scope(category=category)]) == 0
        deadlines = await session.scalar(
            select(func.count()).where(
                Record.profile_id.in_(profiles_in(Scope(category=category))),
                Record.delete_by.is_not(None),
            )
        )
        assert deadlines == RECORDS


async def test_a_small_rule_change_is_recomputed_in_the_request(
    wclient: AsyncClient, wdb: Database, wadmin: dict[str, str], small_inline_limit: None
) -> None:
    category = f"jobs.c{uuid.uuid4().hex[:8]}"
    platform = await platform_of(wdb)
    async with wdb.sessionmaker() as session:
        system = (await make_system(session)).key
        await make_category(session, category)
        await make_record(session, system=system, controller_id=platform, categories=[category])
    response = await wclient.post("/v1/retention-rules", json=rule(category), headers=wadmin)
    assert response.status_code == 201, response.text
    async with wdb.sessionmaker() as session:
        jobs = await session.scalar(
            select(func.count()).where(Job.subject_id == response.json()["id"])
        )
    assert jobs == 0


async def test_unknown_job_is_404(wclient: AsyncClient, wadmin: dict[str, str]) -> None:
    assert (await wclient.get(f"/v1/jobs/{uuid.uuid4()}", headers=wadmin)).status_code == 404


async def customer_job(
    client: AsyncClient,
    database: Database,
    admin: dict[str, str],
    url: str,
    scopes: list[dict[str, Any]],
) -> tuple[dict[str, Any], uuid.UUID]:
    """A job of a customer that takes webhooks, over these scopes: (customer, job id)."""
    customer, _identities = await customer_with_hook(client, database, admin, url)
    job_id = uuid.uuid4()
    async with database.sessionmaker() as session, session.begin():
        session.add(
            Job(
                id=job_id,
                kind="retention_recompute",
                state="queued",
                params={"scopes": scopes},
                cursor={"scope": 0, "after": None},
                subject_type="retention_rule",
                subject_id=str(uuid.uuid4()),
                controller_id=uuid.UUID(customer["id"]),
            )
        )
    return customer, job_id


async def test_a_job_whose_chunk_keeps_failing_ends_failed(
    wclient: AsyncClient, wdb: Database, wadmin: dict[str, str], receiver: Receiver
) -> None:
    # A scope the runner cannot read (a malformed controller id): every chunk raises.
    customer, job_id = await customer_job(
        wclient, wdb, wadmin, receiver.url, [{"controller_id": "not-a-uuid"}]
    )
    config = JobConfig(chunk=10, max_failures=3, retry_base=timedelta(0))
    worker = uuid.uuid4()
    assert await run_chunk(wdb, worker, config)
    async with wdb.sessionmaker() as session:
        key = await bearer(session, "controller", controller_id=uuid.UUID(customer["id"]))
    retrying = (await wclient.get(f"/v1/jobs/{job_id}", headers=key)).json()
    assert retrying["state"] == "running"
    assert retrying["error"] == "a chunk failed (attempt 1 of 3: ValueError)"
    for _ in range(5):
        await run_chunk(wdb, worker, config)
    failed = (await wclient.get(f"/v1/jobs/{job_id}", headers=key)).json()
    assert failed["state"] == "failed"
    assert failed["error"] == "a chunk failed 3 times (last: ValueError)"
    assert "not-a-uuid" not in failed["error"]  # the kind of error, never its message
    assert failed["finished_at"] is not None
    assert not await run_chunk(wdb, uuid.uuid4(), config)  # nobody takes it again
    (event,) = [p for t, p in await events(wdb, customer["id"]) if t == "job.failed"]
    assert event["job_id"] == str(job_id)
    assert event["error"] == failed["error"]


async def test_a_job_whose_worker_keeps_dying_ends_failed(
    wclient: AsyncClient, wdb: Database, wadmin: dict[str, str], receiver: Receiver
) -> None:
    scopes = [{"category": f"none.{uuid.uuid4().hex[:6]}"} for _ in range(5)]
    _customer, job_id = await customer_job(wclient, wdb, wadmin, receiver.url, scopes)
    config = JobConfig(chunk=10, lease=timedelta(seconds=0.2), max_failures=2)
    for _ in range(2):  # a worker takes a chunk, then vanishes: its lease lapses
        assert await run_chunk(wdb, uuid.uuid4(), config)
        await asyncio.sleep(0.3)
    assert not await run_chunk(wdb, uuid.uuid4(), config)
    job = (await wclient.get(f"/v1/jobs/{job_id}", headers=wadmin)).json()
    assert job["state"] == "failed"
    assert job["error"] == "its worker stopped mid-chunk"


async def test_a_finished_job_tells_its_controller(
    wclient: AsyncClient, wdb: Database, wadmin: dict[str, str], receiver: Receiver
) -> None:
    scopes = [{"category": f"none.{uuid.uuid4().hex[:6]}"}]
    customer, job_id = await customer_job(wclient, wdb, wadmin, receiver.url, scopes)
    worker = uuid.uuid4()
    for _ in range(5):
        if not await run_chunk(wdb, worker, JobConfig()):
            break
    job = (await wclient.get(f"/v1/jobs/{job_id}", headers=wadmin)).json()
    assert job["state"] == "completed"
    ((kind, payload),) = [
        (t, p) for t, p in await events(wdb, customer["id"]) if t.startswith("job.")
    ]
    assert kind == "job.completed"
    assert payload == {
        "job_id": str(job_id),
        "kind": "retention_recompute",
        "subject_type": "retention_rule",
        "subject_id": job["subject_id"],
        "records_changed": 0,
    }
