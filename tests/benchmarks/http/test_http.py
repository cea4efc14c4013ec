"""The hot paths measured from outside with wrk, against the real server process
(`spix-dsr serve`, one uvicorn worker pinned to one core, wrk on the other) and, in the same run,
a bare FastAPI GET and a raw asyncpg indexed read. Rounds are interleaved: each round measures
the references and then every operation, so a figure is divided by the bare GET of its own
round; the table prints medians over rounds. Prints figures; asserts only that every answer was
a success.

    make bench-http                                   # 100,000 records, a few minutes
    SPIX_DSR_BENCH_HTTP_RECORDS=1000000 make bench-http   # the issue's size

SPIX_DSR_BENCH_HTTP_SECONDS (5) sets each wrk run's length, SPIX_DSR_BENCH_HTTP_ROUNDS (3) the
rounds, SPIX_DSR_BENCH_HTTP_ONLY (comma-separated parts of operation names, "lookup,filing's")
a subset of the operations, measured with the bare GET. PostgreSQL needs
SPIX_DSR_TEST_POSTGRES_URL; SQLite runs always, beside it."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.benchmarks import _data
from tests.benchmarks.http import dataset, load
from tests.builders import TEST_SUBJECT_KEY
from tests.databases import BACKENDS, free_port, fresh_database

pytestmark = pytest.mark.benchmark

SECONDS = float(os.environ.get("SPIX_DSR_BENCH_HTTP_SECONDS", "5"))
ROUNDS = int(os.environ.get("SPIX_DSR_BENCH_HTTP_ROUNDS", "3"))
ONLY = [part for part in os.environ.get("SPIX_DSR_BENCH_HTTP_ONLY", "").split(",") if part]
CONNECTIONS = 16
BATCH_CONNECTIONS = 2
BATCH = 1000
SUPPRESSED_EVERY = 50
OPTED_OUT_PURPOSE = _data.PURPOSES[0]  # one subject in 50 opted out of email
READABLE_REQUESTS = 50
JSON = {"Content-Type": "application/json"}
REFERENCE_APPS = "tests.benchmarks.http.reference_apps"
UNLIMITED = json.dumps({"read": "100000000/minute", "write": "100000000/minute"})


@dataclass(frozen=True)
class Operation:
    name: str
    # "service", or a reference: "bare", "middleware", "quiet", "raw", "raw_middleware",
    # "raw_lookup" or "raw_filing"
    server: str
    path: str
    goal: str = ""
    script: str | None = None
    args: list[str] = field(default_factory=list)
    connections: int = CONNECTIONS
    per_request: int = 1  # records per request (the batch)


@dataclass
class Figures:
    rps: list[float] = field(default_factory=list)
    ratio: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    database_cpu_us: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    opened: list[int] = field(default_factory=list)
    bad: int = 0
    completed: int = 0  # requests answered within the runs, all rounds


def _template(folder: Path, name: str, body: Any) -> str:
    path = folder / f"{name}.json"
    path.write_bytes(json.dumps(body).encode())
    return str(path)


def _lines(folder: Path, name: str, lines: list[str]) -> str:
    path = folder / f"{name}.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _email(n: str) -> list[dict[str, str]]:
    return [{"type": "email", "value": f"User{n}@Example.com"}]


def _request_body(verified: bool) -> dict[str, Any]:
    return {
        "type": "access",
        "regime": "gdpr",
        "identities": _email("{n}"),
        "requester": {"kind": "subject"},
        "channel": "api",
        "verified": verified,
    }


def _batch_body(controller_id: str) -> dict[str, Any]:
    return {
        "records": [
            {
                "system": _data.SYSTEM,
                "record_ref": f"wrk-{{seq}}-{i:04d}",
                "controller_id": controller_id,
                "identities": [
                    {"type": "email", "value": f"batch{i}-{{seq}}@example.com"},
                    {"type": "phone", "value": f"+1 212 555 {i:04d}"},
                ],
                "categories": _data.categories_of(i),
                "purposes": [_data.PURPOSES[i % 3]],
                "collected_at": _data.collected_at(i).isoformat(),
            }
            for i in range(BATCH)
        ]
    }


def operations(data: dataset.Dataset, folder: Path) -> list[Operation]:
    subjects = str(data.subjects)
    ids = data.record_ids
    template = "post_template.lua"
    ops = [
        Operation("bare FastAPI GET (the reference)", "bare", "/", "1.0"),
        Operation(
            "raw asyncpg indexed read (reference)",
            "raw",
            "/",
            "",
            "paths.lua",
            [_lines(folder, "raw", [f"/records/{i}" for i in ids])],
        ),
        Operation("bare GET behind the service's middleware (reference)", "middleware", "/", ""),
        Operation(
            "raw asyncpg read behind the service's middleware (ceiling of a check)",
            "raw_middleware",
            "/",
            "",
            "paths.lua",
            [_lines(folder, "raw_middleware", [f"/records/{i}" for i in ids])],
        ),
        Operation("the same without the access log (reference)", "quiet", "/", ""),
        Operation("GET /healthz", "service", "/healthz", ">= 0.9"),
        Operation(
            "GET /v1/records/{id}/retention",
            "service",
            "/",
            ">= 0.30",
            "paths.lua",
            [_lines(folder, "retention", [f"/v1/records/{i}/retention" for i in ids])],
        ),
        Operation(
            "POST /v1/suppressions/check",
            "service",
            "/v1/suppressions/check",
            ">= 0.30",
            template,
            [
                _template(
                    folder,
                    "check",
                    {
                        "identities": _email("{n}"),
                        "channel": "email",
                        "purpose": OPTED_OUT_PURPOSE,
                    },
                )
            ],
        ),
        Operation(
            "POST /v1/subjects/lookup (1 email)",
            "service",
            "/v1/subjects/lookup",
            ">= 0.15",
            template,
            [_template(folder, "lookup", {"identities": _email("{n}")})],
        ),
        Operation(
            "the lookup's statement behind the service's middleware (ceiling of a lookup)",
            "raw_lookup",
            "/v1/subjects/lookup",
            "",
            template,
            [_template(folder, "raw_lookup", {"identities": _email("{n}")})],
        ),
        Operation(
            "GET /v1/requests/{id}",
            "service",
            "/",
            ">= 0.20",
            "paths.lua",
            [],  # filled in once the requests exist
        ),
        Operation(
            "POST /v1/requests (code issued)",
            "service",
            "/v1/requests",
            ">= 0.08",
            template,
            [_template(folder, "request", _request_body(verified=False))],
        ),
        Operation(
            "POST /v1/requests (verified)",
            "service",
            "/v1/requests",
            ">= 0.08",
            template,
            [_template(folder, "request_verified", _request_body(verified=True))],
        ),
        Operation(
            "the filing's statements behind the service's middleware (ceiling, code issued)",
            "raw_filing",
            "/v1/requests",
            "",
            template,
            [_template(folder, "raw_request", _request_body(verified=False))],
        ),
        Operation(
            "the filing's statements behind the service's middleware (ceiling, verified)",
            "raw_filing",
            "/v1/requests",
            "",
            template,
            [_template(folder, "raw_request_verified", _request_body(verified=True))],
        ),
        Operation(
            "the same, verified, writing its audit events (ceiling with the audit trail)",
            "raw_filing_audit",
            "/v1/requests",
            "",
            template,
            [_template(folder, "raw_request_verified", _request_body(verified=True))],
        ),
        Operation(
            f"POST /v1/records/batch ({BATCH} a request, records/s)",
            "service",
            "/v1/records/batch",
            ">= 15,000 rec/s",
            template,
            [_template(folder, "batch", _batch_body(str(data.world.controller_id)))],
            connections=BATCH_CONNECTIONS,
            per_request=BATCH,
        ),
    ]
    if data.backend != "postgresql":
        ops = [op for op in ops if not op.server.startswith("raw")]
    if ONLY:  # the bare GET always: every figure is divided by it
        ops = [op for op in ops if op.server == "bare" or any(part in op.name for part in ONLY)]
    for op in ops:
        if op.script == template:
            op.args.append(subjects)
    return ops


@contextmanager
def servers(data: dataset.Dataset, folder: Path) -> Iterator[dict[str, load.Server]]:
    core, _ = load.cores()
    python = sys.executable
    spix = str(Path(python).parent / "spix-dsr")
    base_env = {**os.environ, "PYTHONHASHSEED": "0"}
    service_env = {
        **base_env,
        "SPIX_DSR_DATABASE_URL": data.url,
        "SPIX_DSR_SUBJECT_KEY": TEST_SUBJECT_KEY,
        "SPIX_DSR_DATA_DIR": str(folder),
        # The limiter still runs on every request; its budget is out of the benchmark's way.
        "SPIX_DSR_RATE_LIMITS": UNLIMITED,
    }
    uvicorn = [python, "-m", "uvicorn", "--no-access-log", "--log-level", "warning"]
    started: dict[str, load.Server] = {}
    try:
        port = free_port()
        started["service"] = load.start(
            "service",
            load.pinned([spix, "serve", "--port", str(port)], core),
            service_env,
            port,
            folder / "service.log",
        )

        def reference(name: str, app: str, env: dict[str, str], factory: bool = False) -> None:
            port = free_port()
            command = [*uvicorn, *(["--factory"] if factory else []), "--port", str(port)]
            started[name] = load.start(
                name,
                load.pinned([*command, f"{REFERENCE_APPS}:{app}"], core),
                env,
                port,
                folder / f"{name}.log",
            )

        reference("bare", "bare", base_env)
        reference("middleware", "middleware_only", base_env, factory=True)
        reference("quiet", "middleware_without_access_log", base_env, factory=True)
        if data.backend == "postgresql":
            raw_env = {**base_env, "SPIX_DSR_BENCH_ASYNCPG_DSN": dataset.asyncpg_dsn(data.url)}
            reference("raw", "raw_read", raw_env)
            reference("raw_middleware", "raw_read_behind_middleware", raw_env, factory=True)
            reference("raw_lookup", "raw_lookup_behind_middleware", raw_env, factory=True)
            reference("raw_filing", "raw_filing_behind_middleware", raw_env, factory=True)
            reference(
                "raw_filing_audit",
                "raw_filing_with_audit_behind_middleware",
                raw_env,
                factory=True,
            )
        yield started
    finally:
        for server in started.values():
            load.stop(server)


def _seed_over_http(service: load.Server, data: dataset.Dataset) -> list[str]:
    """Opt-outs for one subject in SUPPRESSED_EVERY, and requests to read; returns their ids."""
    with httpx.Client(base_url=service.base_url, headers=data.admin, timeout=30) as client:
        for subject in range(0, min(data.subjects, 500 * SUPPRESSED_EVERY), SUPPRESSED_EVERY):
            body = {
                "identity": _email(str(subject))[0],
                "channel": "email",
                "purpose": OPTED_OUT_PURPOSE,
                "source": "unsubscribe_link",
                "controller_id": str(data.world.controller_id),
            }
            answer = client.post("/v1/suppressions", json=body)
            assert answer.status_code in (200, 201), answer.text
        ids = []
        for n in range(READABLE_REQUESTS):
            body = _request_body(verified=n % 2 == 0)
            body["identities"] = _email(str(n * 7))
            answer = client.post("/v1/requests", json=body)
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])
    return ids


# What each ceiling is checked against in the smoke run: the lookup's finds as many records as
# the service's lookup, the filings' open as many scopes as the service's verified filing.
_CEILINGS = (("lookup", "raw_lookup"), ("filing", "raw_filing"), ("filing", "raw_filing_audit"))


def _smoke(running: dict[str, load.Server], data: dataset.Dataset, ops: list[Operation]) -> None:
    """Every POST template answers a success once (wrk counts statuses, not item errors), the
    lookup's ceiling finds what the service's lookup finds, and the filing's ceiling opens as
    many scopes as the service's filing."""
    found: dict[tuple[str, str], int] = {}
    for op in ops:
        if op.server != "service" and op.server not in {c for _, c in _CEILINGS}:
            continue
        if op.script != "post_template.lua":
            continue
        body = Path(op.args[0]).read_text().replace("{n}", "2").replace("{seq}", "smoke")
        url = running[op.server].base_url + op.path
        answer = httpx.post(url, content=body, headers={**JSON, **data.admin}, timeout=60)
        assert answer.status_code in (200, 201), f"{op.name}: {answer.text[:500]}"
        if op.path == "/v1/subjects/lookup":
            rows = answer.json() if op.server == "raw_lookup" else answer.json()["items"]
            found["lookup", op.server] = len(rows)
        if op.path == "/v1/requests" and json.loads(body)["verified"]:
            found["filing", op.server] = len(answer.json()["scopes"])
        if op.per_request > 1:
            results = answer.json()["results"]
            failed = [r for r in results if r["status"] != "created"]
            assert not failed, f"{op.name}: {failed[:2]}"
    for what, ceiling in _CEILINGS:
        # Compared when both were measured (SPIX_DSR_BENCH_HTTP_ONLY may pick one alone).
        if (what, ceiling) in found and (what, "service") in found:
            assert found[what, ceiling] == found[what, "service"] > 0, found


def _run(
    op: Operation, target: load.Server, data: dataset.Dataset, seconds: float, tag: str
) -> load.Run:
    _, wrk_core = load.cores()
    args = list(op.args)
    if op.script == "post_template.lua":
        args.append(tag)
    return load.wrk(
        target,
        op.path,
        core=wrk_core,
        seconds=seconds,
        connections=op.connections,
        headers=data.admin if op.server == "service" else {},
        script=op.script,
        script_args=args,
        database=data.backend == "postgresql",
    )


async def _opened(url: str) -> int | None:
    # PostgreSQL counts a session when it starts and publishes the count within a second.
    await asyncio.sleep(1.2)
    return await dataset.connections_opened(url)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_http_hot_paths(backend: str, tmp_path: Path) -> None:
    if load.ensure_wrk() is None:
        pytest.skip("wrk is not installed and could not be (Debian: `apt-get install wrk`)")
    total = dataset.records_wanted()
    print(f"\n=== HTTP hot paths, {backend}, {total:,} records ===", flush=True)
    async with fresh_database(backend, tmp_path) as url:
        started = time.perf_counter()
        data = await dataset.build(url, backend, total)
        print(f"  data: {total:,} records in {time.perf_counter() - started:.0f} s", flush=True)
        ops = operations(data, tmp_path)
        with servers(data, tmp_path) as running:
            request_ids = _seed_over_http(running["service"], data)
            for reads in (op for op in ops if op.name == "GET /v1/requests/{id}"):
                paths = [f"/v1/requests/{i}" for i in request_ids]
                reads.args.append(_lines(tmp_path, "requests", paths))
            _smoke(running, data, ops)
            figures = {op.name: Figures() for op in ops}
            for op in ops:  # warm-up: first requests, caches, pool filled
                _run(op, running[op.server], data, min(2.0, SECONDS), f"warm{id(op)}")
            service_pid = running["service"].pid
            memory = [("after the warm-up", *_data.memory_mib(service_pid))]
            for round_number in range(ROUNDS):
                await dataset.analyze(url)  # the last round's writes, as autovacuum would
                bare_rps = 0.0
                for op in ops:
                    before = await dataset.connections_opened(url)
                    run = _run(op, running[op.server], data, _seconds(op), f"r{round_number}")
                    after = await _opened(url)
                    rps = run.rps * op.per_request
                    if op.server == "bare":
                        bare_rps = rps
                    got = figures[op.name]
                    got.rps.append(rps)
                    got.ratio.append(rps / bare_rps if bare_rps else 0.0)
                    if run.requests:  # CPU and latency of a run that answered nothing: none
                        got.cpu_us.append(run.cpu_us / op.per_request)
                        if run.database_cpu_us is not None:
                            got.database_cpu_us.append(run.database_cpu_us / op.per_request)
                        got.p99_ms.append(run.p99_ms)
                    got.bad += run.bad
                    got.completed += run.requests
                    if before is not None and after is not None:
                        got.opened.append(after - before)
                    print(f"  round {round_number + 1}: {op.name}: {rps:,.0f}/s", flush=True)
                memory.append((f"after round {round_number + 1}", *_data.memory_mib(service_pid)))
            analyzed = await dataset.analyzed(url)
    _report(backend, total, ops, figures, analyzed)
    # The service's requests only: the references are other processes.
    served = sum(figures[op.name].completed for op in ops if op.server == "service")
    _report_memory(backend, total, memory, served)
    bad = {name: f.bad for name, f in figures.items() if f.bad}
    assert not bad, f"answers other than 2xx, or socket errors: {bad}"


def _report_memory(
    backend: str, total: int, memory: list[tuple[str, float, float]], answered: int
) -> None:
    """The service process's memory as the rounds go: flat when nothing grows with the
    requests served or the records written (the batch adds thousands a round)."""
    first = memory[0][1]
    _data.print_table(
        f"The service process's memory on {backend}, {total:,} records "
        f"({answered:,} requests the service answered over the rounds)",
        ["when", "RSS MiB", "RSS - after the warm-up, MiB", "peak RSS so far MiB"],
        [[when, rss, rss - first, peak] for when, rss, peak in memory],
    )


def _seconds(op: Operation) -> float:
    # A batch takes a while: give it enough requests to count.
    return max(SECONDS, 10.0) if op.per_request > 1 else SECONDS


def _opened_cell(got: Figures) -> int | str:
    return sum(got.opened) if got.opened else "n/a"


def _report(
    backend: str, total: int, ops: list[Operation], figures: dict[str, Figures], analyzed: bool
) -> None:
    server_core, wrk_core = load.cores()
    rows = []
    for op in ops:
        got = figures[op.name]
        if not got.completed:
            # Slower than the run's length on this machine: no figure rather than a zero.
            none = f"none answered in {_seconds(op):g} s"
            rows.append([op.name, none, "—", op.goal, "—", "—", "—", _opened_cell(got), got.bad])
            continue
        rows.append(
            [
                op.name,
                statistics.median(got.rps),
                "—" if op.per_request > 1 else f"{statistics.median(got.ratio):.3f}",
                op.goal,
                statistics.median(got.cpu_us),
                statistics.median(got.database_cpu_us) if got.database_cpu_us else "n/a",
                statistics.median(got.p99_ms),
                _opened_cell(got),
                got.bad,
            ]
        )
    _data.print_table(
        f"HTTP hot paths on {backend}, {total:,} records: one uvicorn worker on core "
        f"{server_core}, wrk on core {wrk_core}, {CONNECTIONS} connections "
        f"({BATCH_CONNECTIONS} for the batch), {ROUNDS} interleaved rounds of {SECONDS:g} s; "
        "medians over rounds",
        [
            "operation",
            "rps (records/s)",
            "ratio to bare GET",
            "goal",
            "server CPU µs/request (/record)",
            "PostgreSQL CPU µs/request (/record)",
            "p99 ms",
            "DB connections opened",
            "non-2xx",
        ],
        rows,
    )
    print(
        "ratio: this round's rate / the bare FastAPI GET's rate in the same round, median of "
        "rounds. CPU: the server process's user+system time (/proc/<pid>/stat) / requests; "
        "PostgreSQL's: that of every process of this machine named postgres (its backends, "
        "WAL writer, checkpointer), n/a where the database is elsewhere or is SQLite, "
        "in-process. "
        "DB connections opened: PostgreSQL sessions started on the benchmark's database during "
        "the timed runs (pg_stat_database.sessions), all rounds together; 0 means the pool "
        f"served the steady load. Tables analyzed: {analyzed}. Absolute rates depend on the "
        "machine and its other load; the ratios and CPU per request carry over."
    )
