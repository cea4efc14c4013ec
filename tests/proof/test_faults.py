"""Faults: the server process killed (SIGKILL) in the middle of a stream of batch
registrations and started again. Every batch it acknowledged is there, whole; a batch it
never acknowledged is there whole or not at all, never half. On both databases.

PostgreSQL connections terminated (`pg_terminate_backend`) again and again while clients
read and write: every answer is a success or a 503 problem, never another error, and once
the terminations stop every call succeeds, without a restart. (One termination between calls:
tests/reliability/test_ops.py::test_a_dropped_connection_answers_503_then_recovers.)

The other faults are proven in tests/reliability/test_ops.py: a database that is down
answers 503 with Retry-After; concurrent batches over the same refs in different orders
never fail a caller (test_concurrent_batches_over_the_same_refs_never_fail), and a
transaction that loses a deadlock is run again (test_a_transaction_that_loses_a_deadlock_
is_run_again). There is no worker
delivering anything yet (`spix-dsr worker` is not built), so no worker is killed here."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx import ASGITransport
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import Settings
from app.core.db import Database
from app.main import create_app
from app.records.models import Record
from tests.builders import TEST_SUBJECT_KEY, make_category, make_controller, make_system
from tests.conftest import bearer
from tests.databases import free_port, fresh_database, serve_process, wait_ready

STREAMS = 3  # clients registering batches side by side
BATCH = 40  # records per batch
KILL_AFTER = 9  # acknowledged batches before the kill: the other streams are mid-request


def _batch(controller: str, stream: int, number: int) -> list[dict[str, Any]]:
    return [
        {
            "system": "accounts",
            "record_ref": f"s{stream}-b{number}-r{line}",
            "controller_id": controller,
            "identities": [{"type": "email", "value": f"s{stream}b{number}r{line}@example.com"}],
            "categories": ["account.profile"],
            "collected_at": "2026-01-01T00:00:00Z",
        }
        for line in range(BATCH)
    ]


async def test_a_killed_server_loses_no_acknowledged_batch_and_leaves_no_half_batch(
    backend: str, tmp_path: Path
) -> None:
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        async with database.sessionmaker() as session:
            controller = str((await make_controller(session, kind="platform", name="Spix")).id)
            await make_system(session, "accounts")
            await make_category(session, "account.profile")
            admin = await bearer(session, "admin")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        acknowledged: set[tuple[int, int]] = set()
        sent: set[tuple[int, int]] = set()

        with serve_process(url, tmp_path, port) as server:
            await wait_ready(base)
            killed = asyncio.Event()

            async def stream(number: int, client: httpx.AsyncClient) -> None:
                batch = 0
                while not killed.is_set():
                    sent.add((number, batch))
                    try:
                        response = await client.post(
                            "/v1/records/batch",
                            json={"records": _batch(controller, number, batch)},
                            headers=admin,
                        )
                    except httpx.TransportError:
                        return  # the server is gone: this batch was never acknowledged
                    assert response.status_code == 200, response.text
                    assert all(r["status"] == "created" for r in response.json()["results"])
                    acknowledged.add((number, batch))
                    if len(acknowledged) >= KILL_AFTER and not killed.is_set():
                        killed.set()
                        server.send_signal(signal.SIGKILL)
                        return
                    batch += 1

            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                await asyncio.gather(*(stream(n, client) for n in range(STREAMS)))
            assert server.wait(timeout=30) == -signal.SIGKILL

        # Started again on the same database: it answers, and takes writes again.
        with serve_process(url, tmp_path, port):
            await wait_ready(base)
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                again = await client.post(
                    "/v1/records/batch",
                    json={"records": _batch(controller, 99, 0)},
                    headers=admin,
                )
                assert again.status_code == 200, again.text
                listed = await client.get(
                    "/v1/records", params={"record_ref": "s99-b0-r0"}, headers=admin
                )
                assert [r["record_ref"] for r in listed.json()["items"]] == ["s99-b0-r0"]

        async with database.sessionmaker() as session:
            refs = set((await session.scalars(select(Record.record_ref))).all())
        await database.dispose()

    lines = {
        key: sum(f"s{key[0]}-b{key[1]}-r{line}" in refs for line in range(BATCH)) for key in sent
    }
    assert len(acknowledged) >= KILL_AFTER  # an answer may land as the kill is sent
    assert len(sent) > len(acknowledged), "no request was in flight when the server was killed"
    lost = {key: n for key, n in lines.items() if key in acknowledged and n != BATCH}
    assert lost == {}, "acknowledged batches not all there"
    half = {key: n for key, n in lines.items() if n not in (0, BATCH)}
    assert half == {}, "batches half written"


async def test_connections_terminated_under_load_answer_503_then_recover(
    backend: str, tmp_path: Path
) -> None:
    if backend != "postgresql":
        pytest.skip("an embedded SQLite database has no server connection to terminate")
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        app = create_app(
            Settings(database_url=url, subject_key=TEST_SUBJECT_KEY, data_dir=tmp_path),
            database=database,
        )
        async with database.sessionmaker() as session:
            controller = str((await make_controller(session, kind="platform", name="Spix")).id)
            await make_system(session, "accounts")
            await make_category(session, "account.profile")
            admin = await bearer(session, "admin")
        answers: list[httpx.Response] = []
        batches: dict[tuple[int, int], int] = {}
        stop = asyncio.Event()
        killer = create_async_engine(url)
        terminate = text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )

        async def load(number: int, client: httpx.AsyncClient) -> None:
            batch = 0
            while not stop.is_set():
                registered = await client.post(
                    "/v1/records/batch",
                    json={"records": _batch(controller, number, batch)[:5]},
                    headers=admin,
                )
                answers.append(registered)
                batches[number, batch] = registered.status_code
                answers.append(await client.get("/v1/records", headers=admin))
                batch += 1

        async def terminations() -> int:
            terminated = 0
            async with killer.connect() as connection:
                for _ in range(15):
                    await asyncio.sleep(0.05)
                    terminated += int(await connection.scalar(terminate) or 0)
            stop.set()
            return terminated

        transport = ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            terminated, *_ = await asyncio.gather(
                terminations(), *(load(n, client) for n in range(4))
            )
            after = [await client.get("/v1/records", headers=admin) for _ in range(5)]
        await killer.dispose()
        async with database.sessionmaker() as session:
            refs = set((await session.scalars(select(Record.record_ref))).all())
        await database.dispose()

    assert terminated > 0, "no connection was ever terminated"
    statuses = [r.status_code for r in answers]
    assert 503 in statuses, "no request met a terminated connection"
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    for response in answers:
        if response.status_code == 503:
            assert response.headers["content-type"] == "application/problem+json"
            assert int(response.headers["retry-after"]) > 0
    assert [r.status_code for r in after] == [200] * 5
    # A batch answered 200 is there whole; one answered 503 whole or not at all.
    for (number, batch), status in batches.items():
        present = sum(f"s{number}-b{batch}-r{line}" in refs for line in range(5))
        assert present == 5 if status == 200 else present in (0, 5), (number, batch, status)
