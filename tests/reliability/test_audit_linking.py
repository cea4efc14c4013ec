"""The audit chain is linked after each transaction's commit (app/audit/chain.py): with real
committed transactions, every committed event lands on the chain exactly once, in one total
order, none of a rolled-back transaction does, a writer never waits for the chain head, and
what waits to be linked is sealed, reported and refused when tampered with."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.chain import Linked, chain_pending, pending_count
from app.audit.hashing import event_hash, event_seal
from app.audit.models import AuditChainHead, AuditEvent
from app.audit.service import OPERATOR, record, verify_chain
from app.core.db import Database
from app.core.migrate import downgrade, upgrade
from app.core.session import after_commit
from app.systems.models import System
from app.worker.runner import Worker
from tests.builders import TEST_AUDIT_KEY, audit_row, chained_rows, commit_and_link
from tests.conftest import bearer
from tests.databases import free_port, fresh_database, run_cli, serve_process, wait_ready
from tests.worker.conftest import worker_settings

BEFORE = "e4a7c2d9b8f1"  # the last revision that chained inside the writing transaction
KEY = TEST_AUDIT_KEY.encode()


@contextlib.asynccontextmanager
async def committed(backend: str, folder: Path) -> AsyncIterator[tuple[str, Database]]:
    """A fresh database with real commits (no outer test transaction)."""
    async with fresh_database(backend, folder) as url:
        database = Database.from_url(url)
        try:
            yield url, database
        finally:
            await database.dispose()


async def write(database: Database, label: str, count: int, *, link: bool = True) -> None:
    """One transaction writing `count` events, committed as a request commits."""
    async with database.sessionmaker() as session:
        for index in range(count):
            record(session, OPERATOR, "probe.write", "probe", f"{label}-{index}", {"i": index})
        await session.commit()
        if link:
            await after_commit(session, database)


async def write_failing(database: Database, label: str, count: int) -> None:
    """A transaction whose events were inserted at commit, then rolled back: its flush after
    the audit hook breaks a unique key."""
    async with database.sessionmaker() as session:
        for index in range(count):
            record(session, OPERATOR, "probe.write", "probe", f"{label}-{index}", {"i": index})
        session.add(System(key="taken", name="Duplicate"))
        with pytest.raises(IntegrityError):
            await session.commit()
        await session.rollback()


async def probe_events(database: Database) -> list[Any]:
    async with database.sessionmaker() as session:
        return list(
            (
                await session.execute(
                    select(AuditEvent.entity_id, AuditEvent.seq, AuditEvent.entry).where(
                        AuditEvent.event_type == "probe.write"
                    )
                )
            ).all()
        )


async def verified(database: Database) -> Any:
    async with database.sessionmaker() as session:
        return await verify_chain(session, key=KEY)


async def test_concurrent_transactions_are_each_linked_exactly_once(
    backend: str, tmp_path: Path
) -> None:
    """Writers in two processes (two engines, each with its own linking group) and a worker
    sweeping at the same time; every fourth transaction rolls back after writing its events."""
    async with committed(backend, tmp_path) as (url, first):
        second, sweeper = Database.from_url(url), Database.from_url(url, pool_size=2)
        try:
            async with first.sessionmaker() as session:
                session.add(System(key="taken", name="Taken"))
                await session.commit()
            writers = 24
            done = asyncio.Event()

            async def sweep() -> None:
                while not done.is_set():
                    await chain_pending(sweeper, KEY, look_first=True)
                    await asyncio.sleep(0.01)

            async def writer(n: int) -> None:
                database = first if n % 2 else second
                if n % 4 == 3:
                    await write_failing(database, f"w{n}", 3)
                else:
                    await write(database, f"w{n}", 3)

            sweeping = asyncio.create_task(sweep())
            await asyncio.gather(*(writer(n) for n in range(writers)))
            done.set()
            await sweeping

            rows = await probe_events(first)
            committed_labels = {f"w{n}-{i}" for n in range(writers) if n % 4 != 3 for i in range(3)}
            assert sorted(r.entity_id for r in rows) == sorted(committed_labels)
            assert all(r.seq is not None for r in rows)  # linked before the writers returned
            for n in range(writers):
                mine = sorted(
                    (r for r in rows if r.entity_id.startswith(f"w{n}-")), key=lambda r: r.entity_id
                )
                assert [r.seq for r in mine] == sorted(r.seq for r in mine)  # in record order
            report = await verified(first)
            assert report.ok and report.pending == 0
            async with first.sessionmaker() as session:
                total = await session.scalar(select(func.count()).select_from(AuditEvent))
                head = await session.scalar(select(AuditChainHead.seq))
            assert report.checked == total == head  # positions 1..n, no gap, none twice
        finally:
            await second.dispose()
            await sweeper.dispose()


async def test_sequential_commits_are_linked_in_commit_order(backend: str, tmp_path: Path) -> None:
    async with committed(backend, tmp_path) as (_, database):
        for n in range(5):
            await write(database, f"s{n}", 2, link=n % 2 == 0)
        await chain_pending(database, KEY)
        rows = sorted(await probe_events(database), key=lambda r: r.seq)
        assert [r.entity_id for r in rows] == [f"s{n}-{i}" for n in range(5) for i in range(2)]
        assert (await verified(database)).ok


async def test_a_transaction_still_in_flight_is_linked_after_one_that_committed_first(
    backend: str, tmp_path: Path
) -> None:
    """T1 writes its events first (lower entry) but commits last: the chain links T2 at once
    and T1 after it, each once. PostgreSQL only: SQLite runs one writer at a time."""
    if backend != "postgresql":
        pytest.skip("SQLite runs one writing transaction at a time")
    async with committed(backend, tmp_path) as (_, database):
        async with database.sessionmaker() as first:
            record(
                session=first,
                actor=OPERATOR,
                event_type="probe.write",
                entity_type="probe",
                entity_id="t1-0",
            )
            # What its commit does first (the hook writes the events), then a pause before
            # the COMMIT itself.
            await first.run_sync(lambda sync: sync.dispatch.before_commit(sync))
            await write(database, "t2", 1)
            rows = {r.entity_id: r for r in await probe_events(database)}
            assert list(rows) == ["t2-0"] and rows["t2-0"].seq is not None
            await first.commit()
            await after_commit(first, database)
        rows = {r.entity_id: r for r in await probe_events(database)}
        assert rows["t1-0"].entry < rows["t2-0"].entry
        assert rows["t1-0"].seq == rows["t2-0"].seq + 1
        assert (await verified(database)).ok


async def test_a_write_commits_and_answers_while_the_chain_head_is_locked(
    backend: str, tmp_path: Path
) -> None:
    """The writing transaction takes no chain lock and its answer does not wait for the link:
    with the head locked by another transaction, a write is committed and answered; its
    event is linked once the head is free."""
    if backend != "postgresql":
        pytest.skip("on SQLite the head's lock is the database's write lock")
    async with committed(backend, tmp_path) as (url, database):
        async with database.sessionmaker() as session:
            admin = await bearer(session, "admin")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with serve_process(url, tmp_path, port, SPIX_DSR_AUDIT_KEY=TEST_AUDIT_KEY):
            await wait_ready(base)
            async with AsyncClient(base_url=base, headers=admin, timeout=30) as client:
                async with database.engine.connect() as holder:
                    await holder.execute(
                        text("SELECT seq FROM audit_chain_head WHERE id = 1 FOR UPDATE")
                    )
                    response = await asyncio.wait_for(
                        client.post("/v1/systems", json={"key": "crm", "name": "CRM"}), 10
                    )
                    assert response.status_code == 201, response.text
                    async with database.sessionmaker() as session:
                        waiting = await session.scalar(
                            select(AuditEvent.seq).where(AuditEvent.event_type == "system.created")
                        )
                    assert waiting is None  # written, sealed, not linked while the head is held
                    await holder.rollback()
                for _ in range(200):
                    if not await pending_count(database):
                        break
                    await asyncio.sleep(0.05)
                listed = await client.get("/v1/audit-events", params={"entity_id": "crm"})
        assert [e["event_type"] for e in listed.json()["items"]] == ["system.created"]
        assert (await verified(database)).ok


class TestWaitingEvents:
    async def test_readers_list_linked_events_and_verify_counts_the_rest(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession, database: Database
    ) -> None:
        record(session, OPERATOR, "probe.waiting", "probe", "x")
        await session.commit()  # not linked (as when a process stops between the two)
        params = {"event_type": "probe.waiting"}
        listed = await client.get("/v1/audit-events", params=params, headers=admin)
        assert listed.status_code == 200 and listed.json()["items"] == []
        report = await verify_chain(session)
        assert report.ok and report.pending == 1
        assert (await chain_pending(database)).linked == 1
        (item,) = (await client.get("/v1/audit-events", params=params, headers=admin)).json()[
            "items"
        ]
        assert isinstance(item["seq"], int) and item["prev_hash"] and item["hash"]
        assert (await verify_chain(session)).pending == 0

    async def test_a_waiting_event_changed_in_the_database_is_refused_and_reported(
        self, session: AsyncSession, database: Database
    ) -> None:
        for index in range(3):
            record(session, OPERATOR, "probe.step", "probe", str(index))
        await session.commit()
        target = await session.scalar(
            select(AuditEvent.id).where(
                AuditEvent.event_type == "probe.step", AuditEvent.entity_id == "1"
            )
        )
        await session.execute(
            update(AuditEvent).where(AuditEvent.id == target).values(entity_id="tampered")
        )
        await session.commit()
        assert await chain_pending(database, batch=2) == Linked(linked=2, refused=1)
        linked = (
            await session.execute(
                select(AuditEvent.entity_id, AuditEvent.seq)
                .where(AuditEvent.event_type == "probe.step")
                .order_by(AuditEvent.entry)
                .execution_options(populate_existing=True)
            )
        ).all()
        assert [(e, s is not None) for e, s in linked] == [
            ("0", True),
            ("tampered", False),
            ("2", True),
        ]
        report = await verify_chain(session)
        assert not report.ok and report.broken_event_id == target
        assert report.broken_at_seq is None and "seal" in (report.reason or "")

    async def test_an_event_forged_without_the_key_never_joins_the_chain(
        self, session: AsyncSession, database: Database
    ) -> None:
        forged = audit_row(event_type="probe.forged", entity_id="f")
        forged["seal"] = event_seal(b"a-guessed-key-" + b"0" * 32, forged)
        forged["entry"] = 10**9  # written straight into the table
        await session.execute(insert(AuditEvent), [forged])
        record(session, OPERATOR, "probe.after", "probe", "a")
        await commit_and_link(session, database)
        kinds = dict(
            (
                await session.execute(
                    select(AuditEvent.event_type, AuditEvent.seq)
                    .where(AuditEvent.event_type.in_(["probe.forged", "probe.after"]))
                    .execution_options(populate_existing=True)
                )
            ).all()
        )
        assert kinds["probe.forged"] is None and kinds["probe.after"] is not None
        report = await verify_chain(session)
        assert not report.ok and report.broken_event_id == forged["id"]


async def test_the_worker_links_what_a_process_left(backend: str, tmp_path: Path) -> None:
    async with committed(backend, tmp_path) as (url, database):
        await write(database, "left", 3, link=False)
        assert await pending_count(database) == 3
        worker = Worker(database, worker_settings(url, tmp_path))
        running = asyncio.create_task(worker.run())
        try:
            for _ in range(200):
                if not await pending_count(database):
                    break
                await asyncio.sleep(0.05)
        finally:
            worker.stop()
            await running
        assert await pending_count(database) == 0
        report = await verified(database)
        assert report.ok and report.checked == 3


async def test_cli_reports_links_and_refuses(backend: str, tmp_path: Path) -> None:
    async with committed(backend, tmp_path) as (url, database):
        env = {"SPIX_DSR_AUDIT_KEY": TEST_AUDIT_KEY}
        created = run_cli(url, tmp_path, "keys", "create", "--role", "admin", "--name", "a", **env)
        assert created.returncode == 0, created.stderr
        await write(database, "cli", 2, link=False)

        waiting = run_cli(url, tmp_path, "audit", "verify", **env)
        assert waiting.returncode == 0, waiting.stderr
        assert "intact: 1 events" in waiting.stdout
        assert "2 events committed after the head wait to be linked" in waiting.stdout
        linked = run_cli(url, tmp_path, "audit", "chain", **env)
        assert linked.returncode == 0 and "linked 2 events" in linked.stdout
        current = run_cli(url, tmp_path, "audit", "verify", **env)
        assert "intact: 3 events" in current.stdout and "wait" not in current.stdout

        async with database.sessionmaker() as session:
            record(session, OPERATOR, "probe.write", "probe", "late")
            await session.commit()
            await session.execute(
                update(AuditEvent)
                .where(AuditEvent.entity_id == "late")
                .values(details={"i": "changed"})
            )
            await session.commit()
        refused = run_cli(url, tmp_path, "audit", "chain", **env)
        assert refused.returncode == 1 and "stay unlinked" in refused.stderr
        broken = run_cli(url, tmp_path, "audit", "verify", **env)
        assert broken.returncode == 1 and "seal" in broken.stderr
        assert "Traceback" not in broken.stderr + refused.stderr


async def test_upgrade_carries_the_chain_over_and_downgrade_waits_for_links(
    backend: str, tmp_path: Path
) -> None:
    """A chain written by the code before this revision (linked in its transactions) verifies
    after the upgrade and new events follow it; a downgrade refuses while events wait."""
    async with fresh_database(backend, tmp_path, migrate=False) as url:
        await asyncio.to_thread(upgrade, url, BEFORE)
        database = Database.from_url(url)
        try:
            rows, prev_hash = chained_rows(3, lambda prev, row: event_hash(KEY, prev, row))
            async with database.engine.begin() as connection:
                await connection.execute(insert(AuditEvent), rows)
                await connection.execute(
                    update(AuditChainHead.__table__).values(seq=3, hash=prev_hash)
                )

            await asyncio.to_thread(upgrade, url)
            report = await verified(database)
            assert report.ok and report.checked == 3 and report.pending == 0
            await write(database, "new", 2, link=False)
            with pytest.raises(RuntimeError, match="wait to be linked"):
                await asyncio.to_thread(downgrade, url, BEFORE)
            await chain_pending(database, KEY)
            async with database.sessionmaker() as session:
                order = (
                    await session.execute(
                        select(AuditEvent.entity_id, AuditEvent.seq, AuditEvent.entry).order_by(
                            AuditEvent.seq
                        )
                    )
                ).all()
            assert [(e, s) for e, s, _ in order] == [
                ("1", 1),
                ("2", 2),
                ("3", 3),
                ("new-0", 4),
                ("new-1", 5),
            ]
            assert [n for _, _, n in order] == sorted(n for _, _, n in order)
            assert order[2].entry == 3 and order[3].entry > 3
            assert (await verified(database)).checked == 5

            await database.dispose()
            await asyncio.to_thread(downgrade, url, BEFORE)
            async with database.engine.connect() as connection:
                kept = (await connection.execute(text("SELECT seq, hash FROM audit_events"))).all()
            assert sorted(seq for seq, _ in kept) == [1, 2, 3, 4, 5]
        finally:
            await database.dispose()
