"""Secrets at rest: stored Idempotency-Key answers and the audit chain's key.

Idempotency replays hold answers that carry secrets shown once; the table must not hold them
in the clear, and rows must expire. The audit chain must resist a rewrite with recomputed
hashes, and checkpoints kept elsewhere must reveal a cut log."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import Uuid, bindparam, delete, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from app.audit.checkpoint import InvalidCheckpoint, read_checkpoint, take_checkpoint
from app.audit.models import AuditChainHead, AuditEvent
from app.audit.service import OPERATOR, record, unkeyed_hash, verify_chain
from app.core.config import ConfigurationError, Environment, Settings
from app.core.db import Database, UTCDateTime, utcnow
from app.core.idempotency import IdempotencyRecord, _fingerprint, purge_expired
from app.core.migrate import upgrade
from app.main import create_app
from tests.builders import (
    TEST_AUDIT_KEY,
    TEST_SUBJECT_KEY,
    chained_rows,
    commit_and_link,
    make_controller,
)
from tests.conftest import bearer
from tests.databases import fresh_database

WEBHOOK_CUSTOMER = {
    "name": "Acme Inc.",
    "dsr_routing": {"mode": "webhook", "webhook_url": "https://acme.example/dsr"},
}
ALICE = [{"type": "email", "value": "alice@example.com"}]


async def _raw_rows(session: AsyncSession) -> list[bytes]:
    """Every stored idempotency row as the database holds it, all columns as bytes."""
    rows = (await session.execute(text("SELECT * FROM idempotency_keys"))).all()
    return [
        b"|".join(
            bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
            for value in row
        )
        for row in rows
    ]


class TestReplaysHoldNoSecret:
    async def test_controller_signing_secret_is_sealed_and_replayed(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        headers = {**admin, "Idempotency-Key": "acme-1"}
        first = await client.post("/v1/controllers", json=WEBHOOK_CUSTOMER, headers=headers)
        assert first.status_code == 201, first.text
        secret = first.json()["webhook_signing_secret"]
        assert secret.startswith("whsec_")

        rows = await _raw_rows(session)
        assert len(rows) == 1
        assert secret.encode() not in rows[0]
        assert b"webhook_signing_secret" not in rows[0]

        replay = await client.post("/v1/controllers", json=WEBHOOK_CUSTOMER, headers=headers)
        assert replay.status_code == 201
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json() == first.json()  # the same answer, secret included
        assert replay.headers["location"] == first.headers["location"]

    async def test_verification_code_is_sealed_and_replayed(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await make_controller(session, kind="platform", name="Spix")
        headers = {**admin, "Idempotency-Key": "file-1"}
        body = {"type": "access", "regime": "gdpr", "identities": ALICE}
        first = await client.post("/v1/requests", json=body, headers=headers)
        assert first.status_code == 201, first.text
        code = first.json()["verification"]["code"]

        (row,) = await _raw_rows(session)
        assert f'"code":"{code}"'.encode() not in row
        assert b'"verification"' not in row and b"alice@example.com" not in row

        replay = await client.post("/v1/requests", json=body, headers=headers)
        assert replay.status_code == 201
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json() == first.json()

    async def test_expired_row_is_not_replayed(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        headers = {**admin, "Idempotency-Key": "acme-2"}
        first = await client.post("/v1/controllers", json=WEBHOOK_CUSTOMER, headers=headers)
        assert first.status_code == 201
        # 25 hours later (the default replay time is 24 hours).
        await session.execute(
            text("UPDATE idempotency_keys SET created_at = :at"),
            {"at": (utcnow() - timedelta(hours=25)).replace(tzinfo=None)},
        )
        await session.commit()
        other = {**WEBHOOK_CUSTOMER, "name": "Acme again"}
        again = await client.post("/v1/controllers", json=other, headers=headers)
        assert again.status_code == 201, again.text  # a new request, not a 409 nor a replay
        assert "idempotent-replayed" not in again.headers
        assert again.json()["id"] != first.json()["id"]
        # The key is owned afresh: the next retry replays the new answer.
        replay = await client.post("/v1/controllers", json=other, headers=headers)
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json()["id"] == again.json()["id"]

    async def test_purge_deletes_only_expired_rows(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        for index in range(3):
            response = await client.post(
                "/v1/controllers",
                json={**WEBHOOK_CUSTOMER, "name": f"C{index}"},
                headers={**admin, "Idempotency-Key": f"purge-{index}"},
            )
            assert response.status_code == 201
        await session.execute(
            text("UPDATE idempotency_keys SET created_at = :at WHERE key <> 'purge-2'"),
            {"at": (utcnow() - timedelta(hours=30)).replace(tzinfo=None)},
        )
        await session.commit()
        assert await purge_expired(session, timedelta(hours=24), batch=1) == 1
        assert await purge_expired(session, timedelta(hours=24)) == 1
        assert await purge_expired(session, timedelta(hours=24)) == 0
        await session.commit()
        keys = (await session.execute(text("SELECT key FROM idempotency_keys"))).scalars().all()
        assert keys == ["purge-2"]


# The audit chain --------------------------------------------------------------------------


def _unkeyed(prev_hash: str, event: AuditEvent) -> str:
    """The old, unkeyed link: anyone can compute it (this is what an attacker does)."""
    payload = {
        "seq": event.seq,
        "id": str(event.id),
        "occurred_at": event.occurred_at.isoformat(),
        "event_type": event.event_type,
        "actor_key_id": str(event.actor_key_id) if event.actor_key_id else None,
        "actor_role": event.actor_role,
        "entity_type": event.entity_type,
        "entity_id": event.entity_id,
        "subject_request_id": (str(event.subject_request_id) if event.subject_request_id else None),
        "details": event.details,
    }
    digest = hashlib.sha256(prev_hash.encode())
    digest.update(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()


async def _probe_events(
    session: AsyncSession, database: Database, count: int, prefix: str = "e"
) -> None:
    for index in range(count):
        record(session, OPERATOR, "probe.step", "probe", f"{prefix}{index}", {"n": index})
    await commit_and_link(session, database)


async def _events(session: AsyncSession) -> list[AuditEvent]:
    statement = (
        select(AuditEvent).order_by(AuditEvent.seq).execution_options(populate_existing=True)
    )
    return list((await session.scalars(statement)).all())


async def _rechain_unkeyed_from(
    session: AsyncSession, events: list[AuditEvent], start: int
) -> None:
    """Recompute plain SHA-256 links from events[start] on, and move the head: the attack."""
    prev_hash = events[start - 1].hash if start else "0" * 64
    for event in events[start:]:
        event.prev_hash = prev_hash
        event.hash = prev_hash = _unkeyed(prev_hash, event)
        await session.execute(
            update(AuditEvent)
            .where(AuditEvent.id == event.id)
            .values(entity_id=event.entity_id, prev_hash=event.prev_hash, hash=event.hash)
        )
    await session.execute(
        update(AuditChainHead).where(AuditChainHead.id == 1).values(hash=prev_hash)
    )
    await session.commit()


async def _cut_tail(session: AsyncSession, keep: int) -> None:
    """Delete every event after position `keep` and point the head at the new last one."""
    await session.execute(delete(AuditEvent).where(AuditEvent.seq > keep))
    last = await session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == keep))
    await session.execute(
        update(AuditChainHead).where(AuditChainHead.id == 1).values(seq=keep, hash=last)
    )
    await session.commit()


class TestKeyedAuditChain:
    async def test_untouched_chain_verifies_in_full_and_since_a_checkpoint(
        self, session: AsyncSession, database: Database
    ) -> None:
        await _probe_events(session, database, 4)
        anchor = read_checkpoint(await take_checkpoint(session))
        await _probe_events(session, database, 3, prefix="later")
        full = await verify_chain(session)
        assert full.ok and full.checked == len(await _events(session))
        since = await verify_chain(session, since=anchor)
        assert since.ok and since.checked == 4  # the checkpointed event and the three after

    async def test_rewrite_with_recomputed_unkeyed_hashes_is_detected(
        self, session: AsyncSession, database: Database
    ) -> None:
        await _probe_events(session, database, 4)
        events = await _events(session)
        target = len(events) - 3
        events[target].entity_id = "rewritten"
        await _rechain_unkeyed_from(session, events, target)
        report = await verify_chain(session)
        assert not report.ok
        assert report.broken_at_seq == events[target].seq
        assert report.reason == "the event's content does not match its hash"

    async def test_cutting_the_tail_is_caught_by_a_checkpoint(
        self, session: AsyncSession, database: Database
    ) -> None:
        await _probe_events(session, database, 5)
        line = await take_checkpoint(session)
        anchor = read_checkpoint(line)
        await _cut_tail(session, anchor.seq - 2)
        # Without the checkpoint, the shorter chain is consistent with its moved head ...
        assert (await verify_chain(session)).ok
        # ... the checkpoint names an event that is gone.
        report = await verify_chain(session, since=anchor)
        assert not report.ok and report.broken_at_seq == anchor.seq
        assert "missing or changed" in (report.reason or "")

    async def test_relabelling_keyed_events_as_old_ones_is_caught_by_a_checkpoint(
        self, session: AsyncSession, database: Database
    ) -> None:
        """The one forgery the database alone cannot reveal: move the keyed start past the
        head and re-chain everything unkeyed. A checkpoint taken before still reveals it."""
        await _probe_events(session, database, 3)
        anchor = read_checkpoint(await take_checkpoint(session))
        events = await _events(session)
        events[-1].entity_id = "rewritten"
        await _rechain_unkeyed_from(session, events, 0)
        await session.execute(
            update(AuditChainHead)
            .where(AuditChainHead.id == 1)
            .values(keyed_from_seq=events[-1].seq + 1)
        )
        await session.commit()
        full = await verify_chain(session)
        assert full.ok and full.keyed_from == events[-1].seq + 1  # reported as all unkeyed
        assert not (await verify_chain(session, since=anchor)).ok

    async def test_a_forged_or_foreign_checkpoint_is_refused(
        self, session: AsyncSession, database: Database
    ) -> None:
        await _probe_events(session, database, 2)
        line = await take_checkpoint(session)
        fields = json.loads(line)
        with pytest.raises(InvalidCheckpoint):
            read_checkpoint(json.dumps({**fields, "seq": fields["seq"] - 1}))
        with pytest.raises(InvalidCheckpoint):
            read_checkpoint(line, key=b"another-audit-key-" + b"1" * 32)
        with pytest.raises(InvalidCheckpoint):
            read_checkpoint("not a checkpoint")
        assert read_checkpoint(line).seq == fields["seq"]

    async def test_the_app_chains_with_its_configured_key(
        self, settings: Settings, database: Database, session: AsyncSession
    ) -> None:
        other = "another-audit-key-" + "2" * 32
        app = create_app(settings.model_copy(update={"audit_key": other}), database=database)
        admin = await bearer(session, "admin")
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
            response = await client.post("/v1/controllers", json=WEBHOOK_CUSTOMER, headers=admin)
        assert response.status_code == 201
        assert (await verify_chain(session, key=other.encode())).ok
        assert not (await verify_chain(session, key=TEST_AUDIT_KEY.encode())).ok

    async def test_events_are_keyed_with_the_audit_key(
        self, session: AsyncSession, database: Database
    ) -> None:
        await _probe_events(session, database, 1)
        assert (await verify_chain(session)).ok
        report = await verify_chain(session, key=b"another-audit-key-" + b"1" * 32)
        assert not report.ok


def test_production_refuses_to_start_without_the_audit_key(tmp_path: Path) -> None:
    settings = Settings(
        env=Environment.production,
        database_url="sqlite+aiosqlite:///:memory:",
        subject_key=TEST_SUBJECT_KEY,
        data_dir=tmp_path,
    )
    with pytest.raises(ConfigurationError, match="SPIX_DSR_AUDIT_KEY"):
        create_app(settings)
    with pytest.raises(ValueError, match="at least 32"):
        Settings(audit_key="short")


def test_development_creates_its_audit_key_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, subject_key=TEST_SUBJECT_KEY)
    key = settings.resolve_audit_key()
    assert len(key) == 64 and (tmp_path / "audit.key").exists()
    assert settings.resolve_audit_key() == key
    assert key != settings.resolve_subject_key()


def _cli(
    url: str, tmp_path: Path, *args: str, audit_key: str | None = TEST_AUDIT_KEY, env_name: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if k != "SPIX_DSR_AUDIT_KEY"},
        "SPIX_DSR_DATABASE_URL": url,
        "SPIX_DSR_DATA_DIR": str(tmp_path / "data"),
    }
    if audit_key is not None:
        env["SPIX_DSR_AUDIT_KEY"] = audit_key
    if env_name:
        env["SPIX_DSR_ENV"] = env_name
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_cli_checkpoint_verify_since_and_purge(backend: str, tmp_path: Path) -> None:
    async with fresh_database(backend, tmp_path) as url:
        for name in ("one", "two", "three"):
            created = _cli(url, tmp_path, "keys", "create", "--role", "admin", "--name", name)
            assert created.returncode == 0, created.stderr
        taken = _cli(url, tmp_path, "audit", "checkpoint")
        assert taken.returncode == 0, taken.stderr
        checkpoint: dict[str, Any] = json.loads(taken.stdout)
        assert checkpoint["seq"] == 3 and {"event_id", "hash", "mac"} <= set(checkpoint)
        stored = tmp_path / "checkpoint.json"
        stored.write_text(taken.stdout)

        ok = _cli(url, tmp_path, "audit", "verify", "--since-checkpoint", str(stored))
        assert ok.returncode == 0, ok.stderr
        assert "from seq 3" in ok.stdout and "1 events" in ok.stdout
        inline = _cli(url, tmp_path, "audit", "verify", "--since-checkpoint", taken.stdout)
        assert inline.returncode == 0, inline.stderr

        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                await connection.execute(delete(AuditEvent).where(AuditEvent.seq == 3))
                previous = await connection.scalar(
                    select(AuditEvent.hash).where(AuditEvent.seq == 2)
                )
                await connection.execute(update(AuditChainHead).values(seq=2, hash=previous))
                await connection.execute(
                    insert(IdempotencyRecord).values(
                        id=uuid.uuid4(),
                        key_id=uuid.uuid4(),
                        key="old",
                        request_hash="0" * 64,
                        created_at=utcnow() - timedelta(days=2),
                    )
                )
        finally:
            await engine.dispose()

        assert _cli(url, tmp_path, "audit", "verify").returncode == 0  # the cut hides alone
        cut = _cli(url, tmp_path, "audit", "verify", "--since-checkpoint", str(stored))
        assert cut.returncode == 1
        assert "missing or changed" in cut.stderr and "Traceback" not in cut.stderr
        forged = _cli(url, tmp_path, "audit", "verify", "--since-checkpoint", "{}")
        assert forged.returncode == 2 and "Traceback" not in forged.stderr

        refused = _cli(url, tmp_path, "audit", "verify", audit_key=None, env_name="production")
        assert refused.returncode == 2 and "SPIX_DSR_AUDIT_KEY is not set" in refused.stderr
        assert "Traceback" not in refused.stderr

        purged = _cli(url, tmp_path, "idempotency", "purge")
        assert purged.returncode == 0, purged.stderr
        assert "deleted 1 " in purged.stdout


async def test_upgrade_keeps_old_links_and_drops_replays_that_hold_a_secret(
    backend: str, tmp_path: Path
) -> None:
    """Events chained before the key stay verifiable (unkeyed) and new ones are keyed; a
    stored answer that holds a secret in the clear is deleted, others still replay."""
    async with fresh_database(backend, tmp_path, migrate=False) as url:
        await asyncio.to_thread(upgrade, url, "9e4d2b7c1f08")
        database = Database.from_url(url)
        try:
            # The key as the schema of 9e4d2b7c1f08 holds it: written with only the columns
            # api_keys had then (the model has gained some since).
            prefix = uuid.uuid4().hex[:12]
            secret = f"sdsr_{prefix}_{uuid.uuid4().hex}"
            key_id = uuid.uuid4()
            async with database.engine.begin() as connection:
                await connection.execute(
                    text(
                        "INSERT INTO api_keys (id, prefix, key_hash, role, created_at) "
                        "VALUES (:id, :prefix, :key_hash, 'admin', :created_at)"
                    ).bindparams(
                        bindparam("id", type_=Uuid()),
                        bindparam("created_at", type_=UTCDateTime()),
                    ),
                    {
                        "id": key_id,
                        "prefix": prefix,
                        "key_hash": hashlib.sha256(secret.encode()).hexdigest(),
                        "created_at": utcnow(),
                    },
                )
            rows, prev_hash = chained_rows(2, unkeyed_hash)
            plain = b'{"id":"plain","name":"Plain"}'
            leaking = b'{"id":"x","webhook_signing_secret":"whsec_leak"}'
            async with database.engine.begin() as connection:
                await connection.execute(insert(AuditEvent), rows)
                await connection.execute(
                    update(AuditChainHead.__table__).values(seq=2, hash=prev_hash)
                )
                for key, body in (("plain", plain), ("leaking", leaking)):
                    await connection.execute(
                        insert(IdempotencyRecord).values(
                            id=uuid.uuid4(),
                            key_id=key_id,
                            key=key,
                            request_hash=_fingerprint("POST", "/v1/systems", b'{"k":1}'),
                            status_code=201,
                            response_body=body,
                            created_at=utcnow(),
                        )
                    )
        finally:
            await database.dispose()

        await asyncio.to_thread(upgrade, url)
        database = Database.from_url(url)
        try:
            async with database.sessionmaker() as session:
                keys = (await session.execute(text("SELECT key FROM idempotency_keys"))).all()
                assert [k for (k,) in keys] == ["plain"]
                record(session, OPERATOR, "probe.new", "probe", "3")
                await commit_and_link(session, database)
                report = await verify_chain(session)
                assert report.ok and report.checked == 3 and report.keyed_from == 3

            app = create_app(
                Settings(
                    database_url=url,
                    subject_key=TEST_SUBJECT_KEY,
                    audit_key=TEST_AUDIT_KEY,
                    data_dir=tmp_path,
                ),
                database=database,
            )
            async with AsyncClient(
                transport=ASGITransport(app=app), base_url="http://test"
            ) as client:
                replay = await client.post(
                    "/v1/systems",
                    json={"k": 1},
                    headers={
                        "Authorization": f"Bearer {secret}",
                        "Idempotency-Key": "plain",
                    },
                )
            assert replay.status_code == 201 and replay.content == plain

            async with database.sessionmaker() as session:
                await session.execute(
                    update(AuditEvent).where(AuditEvent.seq == 1).values(entity_id="rewritten")
                )
                await session.commit()
                assert (await verify_chain(session)).broken_at_seq == 1
        finally:
            await database.dispose()
