"""The end-to-end load model on PostgreSQL: subject requests through their whole life against
a real `spix-dsr serve` and a real `spix-dsr worker`.

    SPIX_DSR_TEST_POSTGRES_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test make load

Setup (untimed): a fresh database with SPIX_DSR_LOAD_RECORDS registered records (default
1,000,000; COPY through `_population`, identities hashed by the service's BlindIndexer), the
service's own recompute over them (it must change no row: the copied decisions are the
service's), ANALYZE. Then, timed:

- the privacy team (SPIX_DSR_LOAD_FILERS concurrent clients, admin key) files
  SPIX_DSR_LOAD_REQUESTS requests (default 1,000; erasure and access alternately, GDPR,
  email and phone of a registered subject), each answered with a code, and verifies each
  with its code: verification opens the scopes and the tasks of Spix's scope;
- four customers' dashboards (one controller key each) list the scopes awaiting them and
  approve each with an instruction ref, which creates that scope's tasks;
- 20 system agents (two per system, each with its own key) claim tasks with a lease and
  complete them (an export sends data, an erasure reports its count);
- the worker delivers `task.created` webhooks to a receiver on loopback.

SPIX_DSR_LOAD_SERVE_WORKERS runs the API as that many processes (`serve --workers`).

It prints requests per second through the whole lifecycle (filing of the first to completion
of the last), the time from the call that made a task (the verification, or the customer's
approval) to an agent's claim returning it, commit-to-delivery of the webhooks, latencies per
call, CPU of each process, and asserts that every request completed and every webhook
arrived once. Async httpx clients: this measures the lifecycle, not the HTTP ceiling.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx

from app.audit.service import OPERATOR
from app.auth.service import create_key
from app.core.crypto import SecretBox
from app.core.db import Database
from app.retention.recompute import Scope, recompute
from app.webhooks.service import rotate_system_secret
from tests.benchmarks import _data, _population
from tests.benchmarks.test_webhooks import Arrivals
from tests.builders import TEST_AUDIT_KEY, TEST_SUBJECT_KEY
from tests.databases import POSTGRES_URL, free_port, fresh_database

AGENTS = 20
# An agent that found nothing waits this long before claiming again. Each empty claim costs
# the server a request: 20 agents polling every 0.1 s took a quarter of its CPU here.
IDLE_SECONDS = float(os.environ.get("SPIX_DSR_LOAD_AGENT_IDLE_SECONDS", "0.5"))
DASHBOARD_POLL_SECONDS = 0.2
WORKER_POLL_SECONDS = 0.1  # SPIX_DSR_WORKER_POLL_SECONDS for the worker (default 1 s)
STALL_SECONDS = 60  # no request completed for this long after the last was filed: give up


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


@dataclass
class Keys:
    admin: str
    customers: dict[uuid.UUID, str]
    agents: list[tuple[str, str]]  # (system, secret)


@dataclass
class Ledger:
    """What the clients saw, in wall-clock seconds (time.time(), comparable with the
    database's timestamps on this machine)."""

    verify_sent: dict[str, float] = field(default_factory=dict)
    approve_sent: dict[str, float] = field(default_factory=dict)
    # task id: (what made it, when that call was sent, when an agent's claim returned it)
    claimed: dict[str, tuple[str, float, float]] = field(default_factory=dict)
    calls: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    filed: int = 0
    # Samples of (waiting for the audit chain head, waiting for any lock, busy) connections.
    lock_waits: list[tuple[int, ...]] = field(default_factory=list)
    first_sent: float = 0.0
    analyzed: int = 0  # tables analyzed during the run, standing in for autovacuum

    async def call(
        self, name: str, client: httpx.AsyncClient, method: str, path: str, **kw: Any
    ) -> httpx.Response:
        started = time.perf_counter()
        response = await client.request(method, path, **kw)
        self.calls[name].append(time.perf_counter() - started)
        if response.status_code >= 400:
            self.errors[f"{name} {response.status_code}"] += 1
        return response


def _client(port: int, secret: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {secret}"},
        timeout=60.0,
    )


async def _filer(
    port: int, secret: str, queue: asyncio.Queue[tuple[int, int]], ledger: Ledger
) -> None:
    async with _client(port, secret) as client:
        while not queue.empty():
            n, subject = queue.get_nowait()
            if not ledger.first_sent:
                ledger.first_sent = time.time()
            body = {
                "type": "erasure" if n % 2 == 0 else "access",
                "regime": "gdpr",
                "identities": _data.subject_identities(subject),
            }
            filed = await ledger.call("file", client, "POST", "/v1/requests", json=body)
            assert filed.status_code == 201, filed.text
            created = filed.json()
            request_id = created["id"]
            ledger.verify_sent[request_id] = time.time()
            verified = await ledger.call(
                "verify",
                client,
                "POST",
                f"/v1/requests/{request_id}/verify",
                json={"code": created["verification"]["code"]},
            )
            assert verified.status_code == 200, verified.text
            ledger.filed += 1


async def _dashboard(
    port: int, controller_id: uuid.UUID, secret: str, ledger: Ledger, done: asyncio.Event
) -> None:
    """A customer's staff member: the queue of scopes awaiting the customer, each approved."""
    async with _client(port, secret) as client:
        while not done.is_set():
            listed = await ledger.call(
                "list awaiting",
                client,
                "GET",
                "/v1/requests",
                params={"scope_status": "awaiting_controller", "limit": 100},
            )
            items = listed.json()["items"] if listed.status_code == 200 else []
            for item in items:
                ledger.approve_sent[item["id"]] = time.time()
                await ledger.call(
                    "approve",
                    client,
                    "POST",
                    f"/v1/requests/{item['id']}/scopes/{controller_id}/decision",
                    json={"decision": "approve", "instruction_ref": f"LOAD-{item['id'][:8]}"},
                )
            if not items:
                await asyncio.sleep(DASHBOARD_POLL_SECONDS)


async def _agent(
    port: int,
    secret: str,
    population: _population.Population,
    ledger: Ledger,
    done: asyncio.Event,
) -> None:
    """A system's agent: claim up to 10 tasks, complete each, claim again."""
    async with _client(port, secret) as client:
        while not done.is_set():
            answer = await ledger.call(
                "claim",
                client,
                "POST",
                "/v1/tasks/claim",
                json={"limit": 10, "lease_seconds": 300},
            )
            at = time.time()
            tasks = answer.json()["tasks"] if answer.status_code == 200 else []
            for task in tasks:
                ledger.claimed[task["id"]] = (*_trigger(task, population, ledger), at)
            for task in tasks:
                result: dict[str, Any] = (
                    {"data": {"refs": task["record_refs"]}}
                    if task["action"] == "export"
                    else {"deleted": len(task["record_refs"])}
                )
                await ledger.call(
                    "complete",
                    client,
                    "POST",
                    f"/v1/tasks/{task['id']}/complete",
                    json={"result": result},
                )
            if not tasks:
                await asyncio.sleep(IDLE_SECONDS)


def _trigger(
    task: dict[str, Any], population: _population.Population, ledger: Ledger
) -> tuple[str, float]:
    """The call that made this task and when it was sent: the customer's approval for a
    customer's record, the verification for Spix's."""
    index = _population.index_of(task["record_refs"][0])
    if population.controller_of(index) != population.platform_id:
        return "approval", ledger.approve_sent[task["request_id"]]
    return "verification", ledger.verify_sent[task["request_id"]]


# PostgreSQL's default: each database is looked at once a minute.
AUTOVACUUM_NAPTIME = float(os.environ.get("SPIX_DSR_LOAD_AUTOVACUUM_NAPTIME", "60"))


async def _autovacuum(dsn: str, ledger: Ledger, done: asyncio.Event) -> None:
    """Autovacuum's ANALYZE, where the server runs without autovacuum (this machine's does):
    every naptime, each table changed by 50 rows and 10% of its size since its statistics.
    Without it the request, task, audit and outbox tables keep the statistics of the empty
    tables setup analyzed, and pooled connections the generic plans made from them
    (sequential scans of tables that grow all run long), which production never sees."""
    connection = await asyncpg.connect(dsn)
    try:
        if await connection.fetchval("SHOW autovacuum") == "on":
            return
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), AUTOVACUUM_NAPTIME)
            if done.is_set():
                break
            stale = await connection.fetch(
                "SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
                " WHERE s.n_mod_since_analyze >= 50 + 0.1 * greatest(c.reltuples, 0)"
            )
            for row in stale:
                await connection.execute(f'ANALYZE "{row["relname"]}"')
            ledger.analyzed += len(stale)
    finally:
        await connection.close()


async def _monitor(dsn: str, requests: int, ledger: Ledger, done: asyncio.Event) -> None:
    """Ends the run when every request completed, or when completions stall."""
    connection = await asyncpg.connect(dsn)
    last, changed = -1, time.monotonic()
    try:
        while True:
            completed = await connection.fetchval(
                "SELECT count(*) FROM subject_requests WHERE status = 'completed'"
            )
            # Who waits for a row lock, and on what: the writing transactions queue at the
            # audit chain head (app/audit/service.py) when it is the bottleneck.
            ledger.lock_waits.append(
                tuple(
                    await connection.fetchrow(
                        "SELECT count(*) FILTER (WHERE wait_event_type = 'Lock'"
                        " AND query LIKE '%audit_chain_head%'),"
                        " count(*) FILTER (WHERE wait_event_type = 'Lock'),"
                        " count(*) FILTER (WHERE state <> 'idle')"
                        " FROM pg_stat_activity WHERE datname = current_database()"
                        " AND pid <> pg_backend_pid()"
                    )
                )
            )
            if completed != last:
                last, changed = completed, time.monotonic()
            if completed >= requests:
                break
            if ledger.filed >= requests and time.monotonic() - changed > STALL_SECONDS:
                print(f"  stalled: {completed} of {requests} completed", flush=True)
                break
            await asyncio.sleep(0.25)
    finally:
        done.set()
        await connection.close()


async def _setup(
    url: str, records: int, webhook_url: str, folder: Path
) -> tuple[_population.Population, Keys]:
    database = Database.from_url(url)
    try:
        async with database.sessionmaker() as session:
            population = await _population.seed(session, webhook_url)
            profiles = await _population.seed_profiles(session, population)
            box = SecretBox(TEST_SUBJECT_KEY.encode(), "k1")
            for system in _population.SYSTEMS:
                await rotate_system_secret(session, OPERATOR, box, system, timedelta(0))
            admin = (await create_key(session, role="admin", name="privacy team")).secret
            customers = {
                c: (await create_key(session, role="controller", controller_id=c)).secret
                for c in population.customer_ids
            }
            agents = []
            for n in range(AGENTS):
                system = _population.SYSTEMS[n % len(_population.SYSTEMS)]
                created = await create_key(session, role="system", system_key=system)
                agents.append((system, created.secret))
            await session.commit()

        async def progress(done: int) -> None:
            if done % max(records // 10, _population.CHUNK) == 0 or done == records:
                print(f"  copied {done:,} records", flush=True)

        started = time.perf_counter()
        rate = await _population.copy_records(
            url, population, profiles, 0, records, progress=progress
        )
        analyzer = _data.Analyzer(database)
        await analyzer.now()
        print(f"  COPY: {rate:,.0f} records/s ({time.perf_counter() - started:.0f} s)", flush=True)
        started = time.perf_counter()
        async with database.sessionmaker() as session, session.begin():
            changed = await recompute(session, [Scope(category=_data.ROOT_CATEGORY)])
        print(
            f"  the service's recompute over them changed {changed} rows "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
        assert changed == 0, "the copied retention decisions differ from the service's"
        await analyzer.now()
    finally:
        await database.dispose()
    return population, Keys(admin, customers, agents)


def _start(
    command: str, url: str, folder: Path, port: int | None = None
) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "SPIX_DSR_DATABASE_URL": url,
        "SPIX_DSR_SUBJECT_KEY": TEST_SUBJECT_KEY,
        "SPIX_DSR_AUDIT_KEY": TEST_AUDIT_KEY,
        "SPIX_DSR_DATA_DIR": str(folder),
        # One principal files every request: lift the per-principal limits (they are not
        # what is measured).
        "SPIX_DSR_RATE_LIMITS": json.dumps({"read": "", "write": ""}),
        "SPIX_DSR_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
        "SPIX_DSR_WORKER_POLL_SECONDS": str(WORKER_POLL_SECONDS),
        # The schedule's jobs (deadline watches, purges) have nothing to do in this run.
        "SPIX_DSR_SCHEDULE_INTERVAL_SECONDS": "3600",
        "SPIX_DSR_LOG_LEVEL": "WARNING",
    }
    script = Path(sys.executable).with_name("spix-dsr")
    base = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "from app.cli import main; main()"]
    )
    extra = []
    if port is not None:
        # SPIX_DSR_LOAD_SERVE_WORKERS: API processes behind the one port (default 1).
        extra = ["--port", str(port), "--workers", str(_env_int("SPIX_DSR_LOAD_SERVE_WORKERS", 1))]
    log = (folder / f"{command}.log").open("wb")
    return subprocess.Popen([*base, command, *extra], env=env, stdout=log, stderr=log)


async def _wait_ready(port: int, server: subprocess.Popen[bytes], folder: Path) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(600):
            if server.poll() is not None:
                break
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"spix-dsr serve did not start: {(folder / 'serve.log').read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _pct(values: list[float], pct: float) -> float:
    return _data.percentile(values, pct) if values else float("nan")


async def run(records: int, requests: int, filers: int, folder: Path) -> dict[str, Any]:
    assert POSTGRES_URL, "set SPIX_DSR_TEST_POSTGRES_URL (the load model runs on PostgreSQL)"
    assert requests <= records // 2, "more requests than subjects"
    arrivals = Arrivals()
    receiver = await asyncio.start_server(arrivals.serve, "127.0.0.1", 0, backlog=1024)
    webhook_url = f"http://127.0.0.1:{receiver.sockets[0].getsockname()[1]}/hook"
    print(f"\n=== load model: {records:,} records, {requests:,} requests (PostgreSQL) ===")
    async with fresh_database("postgresql", folder) as url:
        population, keys = await _setup(url, records, webhook_url, folder)
        dsn = _population.pg_dsn(url)
        port = free_port()
        server = _start("serve", url, folder, port)
        worker = _start("worker", url, folder)
        try:
            await _wait_ready(port, server, folder)
            subjects = random.Random(18).sample(range(records // 2), requests)
            queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
            for n, subject in enumerate(subjects):
                queue.put_nowait((n, subject))
            ledger, done = Ledger(), asyncio.Event()
            processes = {"serve": server, "worker": worker}
            cpu = {name: _data.cpu_seconds(p.pid) for name, p in processes.items()}
            memory = {name: [*_data.memory_mib(p.pid)] for name, p in processes.items()}
            client_cpu = time.process_time()
            started = time.perf_counter()
            await asyncio.gather(
                _monitor(dsn, requests, ledger, done),
                _autovacuum(dsn, ledger, done),
                *(_filer(port, keys.admin, queue, ledger) for _ in range(filers)),
                *(_dashboard(port, c, s, ledger, done) for c, s in keys.customers.items()),
                *(_agent(port, s, population, ledger, done) for _, s in keys.agents),
            )
            elapsed = time.perf_counter() - started
            cpu = {name: _data.cpu_seconds(p.pid) - cpu[name] for name, p in processes.items()}
            for name, p in processes.items():
                memory[name] += _data.memory_mib(p.pid)
            cpu["load clients"] = time.process_time() - client_cpu
            await _drain_outbox(dsn, 60)
        finally:
            _stop(worker)
            _stop(server)
        figures = await _figures(dsn, ledger, arrivals, requests)
    receiver.close()
    figures |= {
        "elapsed": elapsed,
        "cpu": cpu,
        "memory": memory,
        "ledger": ledger,
        "records": records,
    }
    _report(figures, requests)
    assert figures["statuses"] == {"completed": requests}, figures["statuses"]
    assert figures["undelivered"] == 0 and figures["delivered_twice"] == 0
    return figures


async def _drain_outbox(dsn: str, seconds: float) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        for _ in range(int(seconds / 0.1)):
            if not await connection.fetchval(
                "SELECT count(*) FROM outbox_events WHERE status <> 'delivered'"
            ):
                return
            await asyncio.sleep(0.1)
    finally:
        await connection.close()


async def _figures(dsn: str, ledger: Ledger, arrivals: Arrivals, requests: int) -> dict[str, Any]:
    connection = await asyncpg.connect(dsn)
    try:
        statuses = dict(
            await connection.fetch("SELECT status, count(*) FROM subject_requests GROUP BY 1")
        )
        scopes = dict(
            await connection.fetch("SELECT status, count(*) FROM request_scopes GROUP BY 1")
        )
        tasks = dict(await connection.fetch("SELECT status, count(*) FROM tasks GROUP BY 1"))
        last_closed = await connection.fetchval("SELECT max(closed_at) FROM subject_requests")
        events = await connection.fetch("SELECT id, created_at, status FROM outbox_events")
        made = {
            str(r["id"]): r["created_at"].timestamp()
            for r in await connection.fetch("SELECT id, created_at FROM tasks")
        }
        # What holds an unfinished request, for the report: its open scopes' outcomes.
        stuck = await connection.fetch(
            "SELECT s.status, s.outcome::text AS outcome, count(*) AS n FROM request_scopes s"
            " JOIN subject_requests r ON r.id = s.request_id"
            " WHERE r.status <> 'completed' AND s.status <> 'completed' GROUP BY 1, 2 LIMIT 5"
        )
    finally:
        await connection.close()
    commit_to_delivery = [
        arrivals.times[f"msg_{e['id'].hex}"] - e["created_at"].timestamp()
        for e in events
        if f"msg_{e['id'].hex}" in arrivals.times
    ]
    return {
        "statuses": {k: v for k, v in statuses.items()},
        "scopes": scopes,
        "tasks": tasks,
        "lifecycle_seconds": (last_closed.timestamp() - ledger.first_sent) if last_closed else 0,
        "events": len(events),
        "undelivered": sum(1 for e in events if e["status"] != "delivered"),
        "delivered_twice": arrivals.count - len(arrivals.times),
        "commit_to_delivery": commit_to_delivery,
        # From the call that made each task to the task's row (written in that call's
        # transaction): the service's part, without the agents' polling.
        "made_in": [made[t] - sent for t, (_, sent, _) in ledger.claimed.items() if t in made],
        "stuck": [(r["status"], r["outcome"], r["n"]) for r in stuck],
    }


def _report(figures: dict[str, Any], requests: int) -> None:
    ledger: Ledger = figures["ledger"]
    completed = figures["statuses"].get("completed", 0)
    by_verify = [at - sent for kind, sent, at in ledger.claimed.values() if kind != "approval"]
    by_approval = [at - sent for kind, sent, at in ledger.claimed.values() if kind == "approval"]
    both = by_verify + by_approval
    ms = 1000.0
    _data.print_table(
        f"Lifecycle: {figures['records']:,} records, {requests:,} requests, {AGENTS} agents "
        f"(2 cores shared with other work: timings are noisy)",
        ["figure", "value"],
        [
            ["requests completed", f"{completed} of {requests}"],
            ["requests/s, first filed to last completed", completed / figures["lifecycle_seconds"]],
            ["wall time of the run, s", figures["elapsed"]],
            ["tasks claimed", len(ledger.claimed)],
            ["scopes by status", dict(figures["scopes"])],
            ["client errors (4xx/5xx) by call", dict(ledger.errors) or "none"],
            *(
                ["open scope of an unfinished request", f"{s}, {o}: {n}"]
                for s, o, n in figures["stuck"]
            ),
        ],
    )
    _data.print_table(
        "From the call that made a task to an agent's claim returning it, ms (goal p99 < 1000;"
        f" idle agents claim again every {IDLE_SECONDS} s)",
        ["made by", "tasks", "p50", "p99", "max"],
        [
            [name, len(v), _pct(v, 50) * ms, _pct(v, 99) * ms, max(v, default=0) * ms]
            for name, v in (
                ("verification (Spix's scope)", by_verify),
                ("customer's approval (customer's scope)", by_approval),
                ("all", both),
                ("all: to the task's row, without the polling", figures["made_in"]),
            )
        ],
    )
    deliveries = figures["commit_to_delivery"]
    _data.print_table(
        f"Webhooks (task.created) from commit to arrival, worker polling every "
        f"{WORKER_POLL_SECONDS} s",
        ["events", "undelivered", "sent twice", "p50 ms", "p99 ms"],
        [
            [
                figures["events"],
                figures["undelivered"],
                figures["delivered_twice"],
                _pct(deliveries, 50) * ms,
                _pct(deliveries, 99) * ms,
            ]
        ],
    )
    _data.print_table(
        "HTTP calls (client-side latency, ms)",
        ["call", "count", "p50", "p99"],
        [[n, len(v), _pct(v, 50) * ms, _pct(v, 99) * ms] for n, v in ledger.calls.items()],
    )
    samples = ledger.lock_waits or [(0, 0, 0)]
    _data.print_table(
        f"Server connections, sampled every 0.25 s ({len(samples)} samples)",
        ["connections", "mean", "max"],
        [
            [name, sum(s[n] for s in samples) / len(samples), max(s[n] for s in samples)]
            for n, name in enumerate(
                ("waiting for the audit chain head lock", "waiting for any lock", "busy")
            )
        ],
    )
    _data.print_table(
        "CPU seconds during the run",
        ["process", "CPU s", "share of the run"],
        [[k, v, f"{v / figures['elapsed']:.0%}"] for k, v in figures["cpu"].items()],
    )
    _data.print_table(
        "Memory of the service's processes, MiB (their children summed under --workers)",
        ["process", "RSS at the start", "RSS at the end", "end - start", "peak RSS"],
        [
            [name, start, end, end - start, peak]
            for name, (start, _, end, peak) in figures["memory"].items()
        ],
    )
    print(
        f"  tables analyzed during the run, standing in for the server's autovacuum: "
        f"{ledger.analyzed} (none when autovacuum is on)"
    )


def main() -> None:
    if not POSTGRES_URL:
        sys.exit(
            "set SPIX_DSR_TEST_POSTGRES_URL (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test)"
        )
    records = _env_int("SPIX_DSR_LOAD_RECORDS", 1_000_000)
    requests = _env_int("SPIX_DSR_LOAD_REQUESTS", 1000)
    filers = _env_int("SPIX_DSR_LOAD_FILERS", 4)
    with tempfile.TemporaryDirectory(prefix="spix-dsr-load-") as folder:
        asyncio.run(run(records, requests, filers, Path(folder)))


if __name__ == "__main__":
    main()
