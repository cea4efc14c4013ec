"""Webhook deliveries from the outbox to a local receiver, with one and with four worker
processes (`spix-dsr worker`) on PostgreSQL (one on SQLite): events delivered per second, and
the time from an event's commit to its arrival (p50, p99). Prints figures; asserts only that
every event arrived once."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.audit.service import OPERATOR
from app.core.crypto import SecretBox
from app.core.db import Database
from app.outbox import service as outbox
from app.outbox.models import OutboxEvent
from app.webhooks.service import rotate_system_secret
from tests.builders import TEST_AUDIT_KEY, TEST_SUBJECT_KEY, make_system
from tests.databases import BACKENDS, fresh_database

pytestmark = pytest.mark.benchmark

BURST = int(os.environ.get("SPIX_DSR_BENCH_EVENTS", "3000"))
STEADY_RATE = 100  # events per second during the latency phase
STEADY_SECONDS = 5


class Arrivals:
    """A minimal HTTP/1.1 receiver on the test's event loop (keep-alive, 204 to every POST):
    no threads, so it never waits on the GIL behind the workers it measures."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.count = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {}
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                await reader.readexactly(int(headers.get("content-length", "0")))
                self.count += 1
                self.times.setdefault(headers["webhook-id"], time.time())
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def start_workers(url: str, folder: Path, n: int) -> list[subprocess.Popen[bytes]]:
    env = os.environ | {
        "SPIX_DSR_DATABASE_URL": url,
        "SPIX_DSR_SUBJECT_KEY": TEST_SUBJECT_KEY,
        "SPIX_DSR_AUDIT_KEY": TEST_AUDIT_KEY,
        "SPIX_DSR_DATA_DIR": str(folder),
        "SPIX_DSR_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
        "SPIX_DSR_WORKER_POLL_SECONDS": "0.05",
        "SPIX_DSR_WORKER_BATCH_SIZE": "20",
        "SPIX_DSR_SCHEDULE_INTERVAL_SECONDS": "3600",
        "SPIX_DSR_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-c", "from app.cli import main; main()", "worker"]
    return [subprocess.Popen(command, env=env) for _ in range(n)]


async def emit(database: Database, system: str, n: int) -> None:
    async with database.sessionmaker() as session:
        for i in range(n):
            outbox.emit(session, "task.created", {"task_id": str(i)}, system=system)
        await session.commit()


async def created_at(database: Database, system: str) -> dict[str, datetime]:
    async with database.sessionmaker() as session:
        rows = await session.execute(
            select(OutboxEvent.id, OutboxEvent.created_at).where(OutboxEvent.target_id == system)
        )
        return {f"msg_{i.hex}": at for i, at in rows}


async def wait_for(arrivals: Arrivals, n: int, seconds: float) -> None:
    for _ in range(int(seconds / 0.02)):
        if len(arrivals.times) >= n:
            break
        await asyncio.sleep(0.02)
    assert len(arrivals.times) == n, f"{len(arrivals.times)} of {n} arrived"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def one_run(backend: str, workers: int, tmp_path: Path) -> None:
    arrivals = Arrivals()
    server = await asyncio.start_server(arrivals.serve, "127.0.0.1", 0, backlog=1024)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    async with fresh_database(backend, tmp_path) as database_url:
        database = Database.from_url(database_url)
        async with database.sessionmaker() as session:
            system = (await make_system(session, webhook_url=url)).key
            box = SecretBox(TEST_SUBJECT_KEY.encode(), "k1")
            await rotate_system_secret(session, OPERATOR, box, system, timedelta(0))
            await session.commit()
        processes = start_workers(database_url, tmp_path, workers)
        try:
            await asyncio.sleep(2)  # the workers start (imports, connections)
            # Throughput: a burst committed at once, drained by the workers.
            await emit(database, system, BURST)
            started = time.monotonic()
            await wait_for(arrivals, BURST, 600)
            elapsed = time.monotonic() - started
            # Latency: a steady trickle of commits, one event each.
            before = len(arrivals.times)
            sent = 0
            for _ in range(STEADY_SECONDS * STEADY_RATE):
                await emit(database, system, 1)
                sent += 1
                await asyncio.sleep(1 / STEADY_RATE)
            await wait_for(arrivals, before + sent, 60)
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                process.wait(30)
        commits = await created_at(database, system)
        async with database.sessionmaker() as session:
            delivered = await session.scalar(
                select(func.count()).where(OutboxEvent.status == "delivered")
            )
        await database.dispose()
    server.close()
    steady = sorted(commits.items(), key=lambda item: item[1])[BURST:]
    latencies = [
        (arrivals.times[msg] - at.astimezone(UTC).timestamp()) * 1000 for msg, at in steady
    ]
    assert delivered == BURST + sent
    assert arrivals.count == BURST + sent  # none sent twice
    print(
        f"{backend:<10} workers={workers}  burst {BURST} events: {BURST / elapsed:8.0f} events/s"
        f"   commit→delivery at {STEADY_RATE}/s: p50 {statistics.median(latencies):6.1f} ms"
        f"  p99 {percentile(latencies, 0.99):6.1f} ms"
    )


@pytest.mark.parametrize("backend", BACKENDS)
async def test_webhook_delivery_rate_and_latency(backend: str, tmp_path: Path) -> None:
    print(f"\n=== webhook deliveries, {backend} ===")
    for workers in (1, 4) if backend == "postgresql" else (1,):
        folder = tmp_path / f"w{workers}"
        folder.mkdir()
        await one_run(backend, workers, folder)
