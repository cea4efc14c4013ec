"""Erasure that stays done (a remembered erasure flags a record that reappears) and proof of
erasure (a signed receipt, verified with the published key and refused when tampered)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from httpx import AsyncClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from app.cli import cli
from app.core.config import ConfigurationError, Environment, Settings
from app.main import create_app
from app.records.models import ErasureMemory
from app.requests.models import RequestIdentity
from tests.builders import (
    TEST_AUDIT_KEY,
    TEST_SUBJECT_KEY,
    make_category,
    make_controller,
    make_record,
    make_rule,
    make_system,
)
from tests.conftest import bearer

ALICE = [{"type": "email", "value": "alice@example.com"}]
BOB = [{"type": "email", "value": "bob@example.com"}]


@pytest.fixture
async def world(session: AsyncSession) -> dict[str, Any]:
    platform = await make_controller(session, kind="platform", name="Spix")
    acme = await make_controller(session, name="Acme")
    other = await make_controller(session, name="Other")
    for key in ("accounts", "billing", "messaging"):
        await make_system(session, key)
    for key in ("account.profile", "billing.invoice", "communications.sms_body"):
        await make_category(session, key)
    await make_rule(
        session,
        kind="minimum",
        category="billing.invoice",
        period="P10Y",
        source="law",
        citation="HGB 257",
    )
    records = {
        "profile": await make_record(
            session,
            system="accounts",
            controller_id=platform.id,
            categories=["account.profile"],
            identities=ALICE,
            record_ref="acct-1",
        ),
        "invoice": await make_record(
            session,
            system="billing",
            controller_id=platform.id,
            categories=["billing.invoice"],
            identities=ALICE,
            record_ref="inv-1",
        ),
        "sms": await make_record(
            session,
            system="messaging",
            controller_id=acme.id,
            categories=["communications.sms_body"],
            identities=ALICE,
            record_ref="sms-1",
        ),
    }
    keys = {
        s: await bearer(session, "system", system_key=s)
        for s in ("accounts", "billing", "messaging")
    }
    return {
        "platform": platform,
        "acme": acme,
        "other": other,
        "records": records,
        "keys": keys,
        "acme_key": await bearer(session, "controller", controller_id=acme.id),
        "platform_key": await bearer(session, "controller", controller_id=platform.id),
    }


async def _claim_and_complete(
    client: AsyncClient, headers: dict[str, str], result: dict[str, Any]
) -> None:
    claimed = await client.post("/v1/tasks/claim", json={}, headers=headers)
    assert claimed.status_code == 200, claimed.text
    (task,) = claimed.json()["tasks"]
    done = await client.post(
        f"/v1/tasks/{task['id']}/complete", json={"result": result}, headers=headers
    )
    assert done.status_code == 200, done.text


async def _erase_alice(
    client: AsyncClient, admin: dict[str, str], world: dict[str, Any], *, regime: str = "gdpr"
) -> dict[str, Any]:
    """An erasure of Alice carried out for both controllers, to completion."""
    body = {"type": "erasure", "regime": regime, "identities": ALICE, "verified": True}
    created = await client.post("/v1/requests", json=body, headers=admin)
    assert created.status_code == 201, created.text
    request = created.json()
    approved = await client.post(
        f"/v1/requests/{request['id']}/scopes/{world['acme'].id}/decision",
        json={"decision": "approve", "reason": "no ground to keep"},
        headers=world["acme_key"],
    )
    assert approved.status_code == 200, approved.text
    # Before the systems report, the request is open: no receipt yet.
    early = await client.get(f"/v1/requests/{request['id']}/receipt", headers=admin)
    assert early.status_code == 409
    await _claim_and_complete(client, world["keys"]["accounts"], {"deleted": 1})
    await _claim_and_complete(client, world["keys"]["messaging"], {"deleted": 1, "backups": 0})
    final = (await client.get(f"/v1/requests/{request['id']}", headers=admin)).json()
    assert final["status"] == "completed", final
    return dict(final)


def _record(ref: str, controller: Any, system: str, identities: list[dict[str, str]]) -> Any:
    return {
        "system": system,
        "record_ref": ref,
        "controller_id": str(controller.id),
        "identities": identities,
        "categories": ["account.profile"],
        "collected_at": "2026-06-01T00:00:00Z",
    }


async def _flags(client: AsyncClient, headers: dict[str, str], **params: Any) -> list[Any]:
    listed = await client.get("/v1/subjects/reappeared", params=params, headers=headers)
    assert listed.status_code == 200, listed.text
    return list(listed.json()["items"])


class TestErasureMemory:
    async def test_a_new_record_for_an_erased_identity_is_flagged(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        auditor: dict[str, str],
        world: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        request = await _erase_alice(client, admin, world)
        # The memory holds blind indexes only: every hash of the request's identities, per
        # controller whose scope was carried out, kept for the configured period (365 days).
        memory = (await session.scalars(select(ErasureMemory))).all()
        hashes = set(
            await session.scalars(
                select(RequestIdentity.digest).where(
                    RequestIdentity.request_id == uuid.UUID(request["id"])
                )
            )
        )
        assert {m.digest for m in memory} == hashes
        assert {m.controller_id for m in memory} == {world["platform"].id, world["acme"].id}
        assert all(m.expires_at - m.erased_at == timedelta(days=365) for m in memory)
        assert "alice" not in repr([(m.digest, m.controller_id) for m in memory])

        # A system restores Alice's account from a backup: a new record, flagged.
        restored = await client.post(
            "/v1/records",
            json=_record("acct-restored", world["platform"], "accounts", ALICE),
            headers=world["keys"]["accounts"],
        )
        assert restored.status_code == 201, restored.text
        # Bob was never erased: not flagged.
        bob = await client.post(
            "/v1/records",
            json=_record("acct-bob", world["platform"], "accounts", BOB),
            headers=world["keys"]["accounts"],
        )
        assert bob.status_code == 201
        (flag,) = await _flags(client, auditor)
        assert flag["record_id"] == restored.json()["id"]
        assert flag["request_id"] == request["id"]
        assert flag["controller_id"] == str(world["platform"].id)
        assert flag["reviewed_at"] is None

        events = await client.get(
            "/v1/audit-events", params={"event_type": "records.reappeared"}, headers=auditor
        )
        assert events.status_code == 200, events.text
        (event,) = events.json()["items"]
        assert "alice" not in json.dumps(event)
        assert event["details"]["flags"][0]["record_id"] == restored.json()["id"]

        # A controller key sees its own controller's flags only.
        assert await _flags(client, world["acme_key"]) == []
        assert len(await _flags(client, world["platform_key"])) == 1

    async def test_batch_flags_new_and_revived_records_of_the_same_controller_only(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        world: dict[str, Any],
    ) -> None:
        request = await _erase_alice(client, admin, world)
        batch = await client.post(
            "/v1/records/batch",
            json={
                "records": [
                    # The erased record's own ref, registered again: the tombstone revives.
                    _record("acct-1", world["platform"], "accounts", ALICE),
                    _record("acct-2", world["platform"], "accounts", ALICE),
                    _record("acct-3", world["platform"], "accounts", BOB),
                    # Alice at a controller whose records the erasure did not touch.
                    _record("acct-4", world["other"], "accounts", ALICE),
                ]
            },
            headers=world["keys"]["accounts"],
        )
        assert batch.status_code == 200, batch.text
        ids = [r["id"] for r in batch.json()["results"]]
        assert ids[0] == str(world["records"]["profile"])
        flags = await _flags(client, admin)
        assert {f["record_id"] for f in flags} == {ids[0], ids[1]}
        assert {f["request_id"] for f in flags} == {request["id"]}

        # Registering the same records again does not flag them twice.
        again = await client.post(
            "/v1/records",
            json=_record("acct-2", world["platform"], "accounts", ALICE),
            headers=world["keys"]["accounts"],
        )
        assert again.status_code == 200
        assert len(await _flags(client, admin)) == 2

    async def test_an_expired_memory_flags_nothing(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        world: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        await _erase_alice(client, admin, world)
        memory = (await session.scalars(select(ErasureMemory))).all()
        await session.execute(
            update(ErasureMemory).values(expires_at=memory[0].erased_at - timedelta(seconds=1))
        )
        await session.commit()
        created = await client.post(
            "/v1/records",
            json=_record("acct-late", world["platform"], "accounts", ALICE),
            headers=world["keys"]["accounts"],
        )
        assert created.status_code == 201
        assert await _flags(client, admin) == []

    async def test_review_marks_a_flag_once(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        auditor: dict[str, str],
        world: dict[str, Any],
    ) -> None:
        await _erase_alice(client, admin, world)
        await client.post(
            "/v1/records",
            json=_record("acct-restored", world["platform"], "accounts", ALICE),
            headers=world["keys"]["accounts"],
        )
        (flag,) = await _flags(client, admin, reviewed="false")
        body = {"resolution": "erased_again"}
        url = f"/v1/subjects/reappeared/{flag['id']}/review"
        assert (await client.post(url, json=body, headers=auditor)).status_code == 403
        # Another customer's key does not find it.
        assert (await client.post(url, json=body, headers=world["acme_key"])).status_code == 404
        reviewed = await client.post(url, json=body, headers=world["platform_key"])
        assert reviewed.status_code == 200, reviewed.text
        assert reviewed.json()["resolution"] == "erased_again"
        assert reviewed.json()["reviewed_at"] is not None
        assert (await client.post(url, json=body, headers=admin)).status_code == 409
        assert await _flags(client, admin, reviewed="false") == []
        assert len(await _flags(client, admin, reviewed="true")) == 1


def _verify(document: dict[str, Any], jwks: dict[str, Any]) -> None:
    """Verification as a customer or regulator would do it, with `cryptography` alone."""
    (jwk,) = [k for k in jwks["keys"] if k["kid"] == document["kid"]]
    assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519"
    key = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(jwk["x"] + "=="))
    signature = base64.urlsafe_b64decode(document["signature"] + "==")
    payload = json.dumps(
        document["receipt"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    key.verify(signature, payload.encode())


class TestReceipts:
    async def test_a_completed_erasure_has_a_receipt_verified_with_the_published_key(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        world: dict[str, Any],
    ) -> None:
        request = await _erase_alice(client, admin, world, regime="ccpa")
        answer = await client.get(f"/v1/requests/{request['id']}/receipt", headers=admin)
        assert answer.status_code == 200, answer.text
        assert "alice" not in answer.text
        document = answer.json()
        keys = await client.get("/.well-known/spix-dsr/receipt-keys")
        assert keys.status_code == 200
        _verify(document, keys.json())

        receipt = document["receipt"]
        assert receipt["request_id"] == request["id"]
        assert (receipt["type"], receipt["regime"]) == ("erasure", "ccpa")
        assert receipt["completed_at"] is not None
        parts = {c["controller_id"]: c for c in receipt["controllers"]}
        platform = {s["system"]: s for s in parts[str(world["platform"].id)]["systems"]}
        (erased,) = platform["accounts"]["erased"]
        assert erased["id"] == str(world["records"]["profile"])
        assert erased["record_ref"] == "acct-1" and erased["erased_at"]
        (withheld,) = platform["billing"]["withheld"]
        assert withheld["id"] == str(world["records"]["invoice"])
        assert withheld["grounds"][0]["citation"] == "HGB 257"
        assert platform["billing"]["erased"] == []
        (task,) = platform["accounts"]["tasks"]
        assert task["result"] == {"deleted": 1} and task["status"] == "completed"
        acme = {s["system"]: s for s in parts[str(world["acme"].id)]["systems"]}
        assert acme["messaging"]["tasks"][0]["result"] == {"deleted": 1, "backups": 0}
        assert [e["record_ref"] for e in acme["messaging"]["erased"]] == ["sms-1"]

        # Deterministic: the same bytes each time, even after the record came back.
        await client.post(
            "/v1/records",
            json=_record("acct-1", world["platform"], "accounts", ALICE),
            headers=world["keys"]["accounts"],
        )
        again = await client.get(f"/v1/requests/{request['id']}/receipt", headers=admin)
        assert again.content == answer.content

        # One byte changed (the erased record's ref): the signature no longer holds.
        tampered = answer.content.replace(b'"acct-1"', b'"acct-2"', 1)
        assert tampered != answer.content
        with pytest.raises(InvalidSignature):
            _verify(json.loads(tampered), keys.json())

    async def test_a_controller_gets_its_own_part_signed(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        world: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        request = await _erase_alice(client, admin, world)
        answer = await client.get(
            f"/v1/requests/{request['id']}/receipt", headers=world["acme_key"]
        )
        assert answer.status_code == 200, answer.text
        document = answer.json()
        assert [c["controller_id"] for c in document["receipt"]["controllers"]] == [
            str(world["acme"].id)
        ]
        assert "acct-1" not in answer.text and "inv-1" not in answer.text
        _verify(document, (await client.get("/.well-known/spix-dsr/receipt-keys")).json())
        stranger = await bearer(session, "controller", controller_id=world["other"].id)
        hidden = await client.get(f"/v1/requests/{request['id']}/receipt", headers=stranger)
        assert hidden.status_code == 404

    async def test_only_an_erasure_has_a_receipt(
        self, client: AsyncClient, admin: dict[str, str], world: dict[str, Any]
    ) -> None:
        body = {"type": "access", "regime": "gdpr", "identities": ALICE, "verified": True}
        created = (await client.post("/v1/requests", json=body, headers=admin)).json()
        answer = await client.get(f"/v1/requests/{created['id']}/receipt", headers=admin)
        assert answer.status_code == 404
        assert answer.headers["content-type"].startswith("application/problem+json")

    async def test_the_command_line_verifies_and_refuses_a_tampered_receipt(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        world: dict[str, Any],
        tmp_path: Path,
    ) -> None:
        request = await _erase_alice(client, admin, world)
        answer = await client.get(f"/v1/requests/{request['id']}/receipt", headers=admin)
        keys = await client.get("/.well-known/spix-dsr/receipt-keys")
        (tmp_path / "keys.json").write_bytes(keys.content)
        (tmp_path / "receipt.json").write_bytes(answer.content)
        document = orjson.loads(answer.content)
        document["receipt"]["controllers"][0]["status"] = "declined"
        (tmp_path / "tampered.json").write_bytes(orjson.dumps(document))
        runner = CliRunner()
        key = str(tmp_path / "keys.json")
        ok = runner.invoke(cli, ["receipt", "verify", str(tmp_path / "receipt.json"), "--key", key])
        assert ok.exit_code == 0, ok.output
        assert "receipt valid" in ok.output and request["id"] in ok.output
        bad = runner.invoke(
            cli, ["receipt", "verify", str(tmp_path / "tampered.json"), "--key", key]
        )
        assert bad.exit_code == 1
        assert "does not match" in bad.output
        # A key set that does not hold the signing key: refused too.
        other = create_app(
            Settings(
                database_url="sqlite+aiosqlite://",
                subject_key=TEST_SUBJECT_KEY,
                audit_key=TEST_AUDIT_KEY,
                data_dir=tmp_path / "elsewhere",
            )
        ).state.receipt_signer.jwks()
        (tmp_path / "other.json").write_text(json.dumps(other))
        stranger = runner.invoke(
            cli,
            [
                "receipt",
                "verify",
                str(tmp_path / "receipt.json"),
                "--key",
                str(tmp_path / "other.json"),
            ],
        )
        assert stranger.exit_code == 1 and "no published key" in stranger.output


def test_production_refuses_to_start_without_the_receipt_key(tmp_path: Path) -> None:
    settings = Settings(
        env=Environment.production,
        database_url="sqlite+aiosqlite://",
        subject_key=TEST_SUBJECT_KEY,
        audit_key=TEST_AUDIT_KEY,
        data_dir=tmp_path,
    )
    with pytest.raises(ConfigurationError, match="SPIX_DSR_RECEIPT_SIGNING_KEY"):
        create_app(settings)


def test_development_creates_the_receipt_key_once_and_raw_base64_is_accepted(
    tmp_path: Path,
) -> None:
    from app.core.signing import Signer

    settings = Settings(data_dir=tmp_path, subject_key=TEST_SUBJECT_KEY)
    first = settings.resolve_receipt_key()
    assert first.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert settings.resolve_receipt_key() == first
    assert (tmp_path / "receipt.key").stat().st_mode & 0o077 == 0
    raw = Signer.from_material(first).key.private_bytes_raw()
    configured = Settings(receipt_signing_key=base64.b64encode(raw).decode())
    assert Signer.from_material(configured.resolve_receipt_key()).kid == (
        Signer.from_material(first).kid
    )
