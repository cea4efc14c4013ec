"""Workers as processes: killed mid-delivery, stopped with SIGTERM, and four at once."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from httpx import AsyncClient
from sqlalchemy import select

from app.core.config import Settings
from app.core.db import Database
from app.jobs.models import Job
from app.jobs.runner import JobConfig, run_chunk
from app.outbox import service as outbox
from app.outbox.models import OutboxEvent
from tests.builders import TEST_AUDIT_KEY, TEST_SUBJECT_KEY
from tests.worker.conftest import Receiver, file_access, relay_for, system_with_hook

WORKER = [sys.executable, "-c", "from app.cli import main; main()", "worker"]


def start_worker(url: str, folder: Path, **env: str) -> subprocess.Popen[bytes]:
    environment = (
        os.environ
        | {
            "SPIX_DSR_DATABASE_URL": url,
            "SPIX_DSR_SUBJECT_KEY": TEST_SUBJECT_KEY,
            "SPIX_DSR_AUDIT_KEY": TEST_AUDIT_KEY,
            "SPIX_DSR_DATA_DIR": str(folder),
            "SPIX_DSR_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
            "SPIX_DSR_WEBHOOK_TIMEOUT_SECONDS": "1",
            "SPIX_DSR_WORKER_POLL_SECONDS": "0.05",
        }
        | env
    )
    return subprocess.Popen(WORKER, env=environment, stderr=subprocess.PIPE)


async def wait_for(condition: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition() if callable(condition) else condition:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out waiting")


async def status_of(database: Database, system: str) -> list[str]:
    async with database.sessionmaker() as session:
        return list(
            (
                await session.scalars(
                    select(OutboxEvent.status).where(OutboxEvent.target_id == system)
                )
            ).all()
        )


async def test_worker_killed_mid_delivery_delivers_again_with_the_same_id(
    wclient: AsyncClient,
    wdb: Database,
    wadmin: dict[str, str],
    wsettings: Settings,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    world = await system_with_hook(wclient, wdb, wadmin, receiver.url)
    receiver.hang = True
    await file_access(wclient, wadmin, world)
    process = start_worker(wsettings.database_url, tmp_path)
    try:
        await wait_for(receiver.arrived.is_set, 30)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    assert await status_of(wdb, world.system) == ["pending"]
    receiver.hang = False
    receiver.release.set()

    # Another worker takes the event once the dead one's lease lapses.
    async with relay_for(wdb, wsettings) as relay:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(receiver.received) < 2:
            await relay.run_once()
            await asyncio.sleep(0.1)
    first, second = receiver.ids()[:2]
    assert first == second
    assert await status_of(wdb, world.system) == ["delivered"]


async def test_sigterm_finishes_the_delivery_in_hand(
    wclient: AsyncClient,
    wdb: Database,
    wadmin: dict[str, str],
    wsettings: Settings,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    world = await system_with_hook(wclient, wdb, wadmin, receiver.url)
    receiver.delay = 0.5
    await file_access(wclient, wadmin, world)
    process = start_worker(wsettings.database_url, tmp_path)
    try:
        await wait_for(receiver.arrived.is_set, 30)
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert await status_of(wdb, world.system) == ["delivered"]
    assert len(receiver.received) == 1


async def test_four_workers_never_deliver_one_event_twice(
    backend: str, wdb: Database, wsettings: Settings, receiver: Receiver
) -> None:
    if backend != "postgresql":
        pytest.skip("several workers share one PostgreSQL; SQLite is served by one")
    from tests.builders import make_system

    receiver.delay = 0.01
    async with wdb.sessionmaker() as session:
        key = (await make_system(session, webhook_url=receiver.url)).key
        from datetime import timedelta

        from app.audit.service import OPERATOR
        from app.core.crypto import SecretBox
        from app.webhooks.service import rotate_system_secret

        box = SecretBox(TEST_SUBJECT_KEY.encode(), "k1")
        await rotate_system_secret(session, OPERATOR, box, key, timedelta(0))
        for n in range(300):
            outbox.emit(session, "task.created", {"task_id": str(n)}, system=key)
        await session.commit()

    databases = [Database.from_url(wsettings.database_url, pool_size=2) for _ in range(4)]

    async def pending() -> int:
        return (await status_of(wdb, key)).count("pending")

    async def work(database: Database) -> None:
        async with relay_for(database, wsettings, batch_size=10, timeout=5.0) as relay:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if not await relay.run_once() and not await pending():
                    return

    try:
        await asyncio.gather(*(work(database) for database in databases))
    finally:
        for database in databases:
            await database.dispose()

    assert set(await status_of(wdb, key)) == {"delivered"}
    assert len(set(receiver.ids())) == 300
    # An event sent twice (a retry after a timeout) is never in flight twice at once.
    spans: dict[str, list[tuple[float, float]]] = {}
    for got in receiver.received:
        spans.setdefault(got.headers["webhook-id"], []).append((got.started, got.ended))
    for intervals in spans.values():
        intervals.sort()
        for (_, end), (start, _) in itertools.pairwise(intervals):
            assert end <= start


async def test_sigterm_releases_the_job_in_hand(
    wdb: Database, wsettings: Settings, tmp_path: Path
) -> None:
    # A job of many small chunks (each scope reaches no record: one chunk per scope).
    job_id = uuid.uuid4()
    scopes = [{"category": f"none.{n}"} for n in range(500)]
    async with wdb.sessionmaker() as session, session.begin():
        session.add(
            Job(
                id=job_id,
                kind="retention_recompute",
                state="queued",
                params={"scopes": scopes},
                cursor={"scope": 0, "after": None},
            )
        )

    async def job() -> Job:
        async with wdb.sessionmaker() as session:
            found = await session.get(Job, job_id)
            assert found is not None
            return found

    process = start_worker(wsettings.database_url, tmp_path, SPIX_DSR_JOB_LEASE_SECONDS="600")
    try:
        deadline = time.monotonic() + 60
        while (await job()).cursor.get("scope", 0) < 5:
            assert time.monotonic() < deadline, "the worker never took the job"
            await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    held = await job()
    assert held.state == "running"
    assert held.claimed_by is None  # released: not left to a 10-minute lease
    assert held.failures == 0
    # Another worker takes it at once and goes on from the committed cursor.
    assert await run_chunk(wdb, uuid.uuid4(), JobConfig(chunk=10))
    assert (await job()).cursor["scope"] == held.cursor["scope"] + 1
