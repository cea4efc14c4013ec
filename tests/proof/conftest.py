"""Two customers with one of everything: what the proof suite probes.

Tenant A (Acme) owns a record, a retention setting, a legal hold, a suppression, a subject
request with its scope and a claimed task, an API key, and a completed erasure (of another
subject) with its signed receipt and the reappearance it flags when that subject's record is
registered again; tenant B (Globex) owns the same kinds of things for another subject. The
registry (shared by every key) holds a recipient. Keys: admin, auditor, a system key of the
system A's record lives in, one of another system, a controller key of each customer, a key of
a role this code does not know, a revoked key and a key that never existed; and, from a test
identity provider (a static JWKS file), a sign-in token of each customer's staff and an
expired one.
Built inside the test's rolled-back transaction."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import create_key, revoke_key
from app.controllers.models import Controller
from app.core.config import Settings
from app.core.db import Database
from app.jobs.models import Job
from app.main import create_app
from app.outbox.models import OutboxEvent
from tests.builders import (
    make_category,
    make_controller,
    make_purpose,
    make_record,
    make_rule,
    make_system,
)
from tests.conftest import bearer
from tests.dashboard.idp import TestIdp
from tests.reliability.test_tenancy import unknown_role_key

ALICE = [{"type": "email", "value": "alice@example.com"}]  # a subject of A only
BOB = [{"type": "email", "value": "bob@example.com"}]  # a subject of B only
CAROL = [{"type": "email", "value": "carol@example.com"}]  # erased by A, then seen again


@dataclass
class World:
    ids: dict[str, str]  # A's objects, by the path parameter that names them
    keys: dict[str, dict[str, str]]  # principal name -> headers
    a_secrets: set[str] = field(default_factory=set)  # strings only A's insiders may read
    extra: dict[str, Any] = field(default_factory=dict)


def _ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return dict(response.json())


async def _tenant(
    client: AsyncClient,
    session: AsyncSession,
    admin: dict[str, str],
    *,
    name: str,
    subject: list[dict[str, str]],
    messaging: dict[str, str] | None = None,
) -> dict[str, Any]:
    controller = await make_controller(session, name=name)
    controller_key = await bearer(session, "controller", controller_id=controller.id)
    ref = f"{name.lower()}-sms-1"
    record = await make_record(
        session,
        system="messaging",
        controller_id=controller.id,
        categories=["communications.sms_body"],
        identities=subject,
        record_ref=ref,
    )
    rule = await make_rule(
        session,
        category="communications",
        period="P30D",
        source="customer_setting",
        controller_id=controller.id,
        citation=f"{name} messaging terms",
    )
    # Before the hold (which would keep everything): an erasure the system carries out.
    erased = (
        {}
        if messaging is None
        else await _erased_and_seen_again(client, session, controller, controller_key, messaging)
    )
    hold = _ok(
        await client.post(
            "/v1/legal-holds",
            json={"reason": f"{name} matter", "controller_id": str(controller.id)},
            headers=admin,
        ),
        201,
    )
    suppression = _ok(
        await client.post(
            "/v1/suppressions",
            json={
                "identity": subject[0],
                "channel": "sms",
                "controller_id": str(controller.id),
                "source": "sms_stop",
            },
            headers=admin,
        ),
        201,
    )
    # Filed by the customer itself (its scope is approved at once): every lifecycle call on it
    # is then the customer's to make.
    request = _ok(
        await client.post(
            "/v1/requests",
            json={"type": "access", "regime": "gdpr", "identities": subject, "verified": True},
            headers=controller_key,
        ),
        201,
    )
    return {
        "controller": controller,
        "controller_key": controller_key,
        "record_id": str(record),
        "record_ref": ref,
        "rule_id": str(rule.id),
        "hold_id": hold["id"],
        "suppression_id": suppression["id"],
        "request_id": request["id"],
        **erased,
    }


# One identity provider for the whole run (a key pair is slow to make); each test's app reads
# its keys from a static JWKS file, as tests/dashboard/ does.
IDP = TestIdp()
# Routes whose path parameter names a different one of A's objects than the usual one: a
# receipt exists for a completed erasure only.
PATH_OBJECTS = {"/v1/requests/{request_id}/receipt": {"request_id": "erasure_id"}}


def object_id(w: World, path: str, name: str) -> str:
    """The id of A's object a path parameter names on this route."""
    return w.ids[PATH_OBJECTS.get(path, {}).get(name, name)]


@pytest.fixture
def app(settings: Settings, database: Database, tmp_path: Path) -> FastAPI:
    issuer = IDP.issuer(jwks_file=str(IDP.write(tmp_path / "jwks.json")))
    return create_app(settings.model_copy(update={"oidc_issuers": [issuer]}), database=database)


async def _erased_and_seen_again(
    client: AsyncClient,
    session: AsyncSession,
    controller: Controller,
    controller_key: dict[str, str],
    messaging: dict[str, str],
) -> dict[str, str]:
    """The customer's erasure of Carol, carried out and completed (so it has a signed
    receipt); then a restore registers her record again, which flags it for review."""
    controller_id = controller.id
    await make_record(
        session,
        system="messaging",
        controller_id=controller_id,
        categories=["communications.sms_body"],
        identities=CAROL,
        record_ref="acme-sms-carol",
    )
    erasure = _ok(
        await client.post(
            "/v1/requests",
            json={"type": "erasure", "regime": "gdpr", "identities": CAROL, "verified": True},
            headers=controller_key,
        ),
        201,
    )
    (task,) = _ok(await client.post("/v1/tasks/claim", json={}, headers=messaging))["tasks"]
    assert task["request_id"] == erasure["id"], task
    done = await client.post(
        f"/v1/tasks/{task['id']}/complete", json={"result": {"deleted": 1}}, headers=messaging
    )
    _ok(done)
    assert (
        _ok(await client.get(f"/v1/requests/{erasure['id']}", headers=controller_key))["status"]
        == "completed"
    )
    restored = {
        "system": "messaging",
        "record_ref": "acme-sms-carol-restored",
        "controller_id": str(controller_id),
        "categories": ["communications.sms_body"],
        "identities": CAROL,
        "collected_at": "2026-01-01T00:00:00Z",
    }
    _ok(await client.post("/v1/records", json=restored, headers=messaging), 201)
    flags = _ok(await client.get("/v1/subjects/reappeared", headers=controller_key))
    (flag,) = flags["items"]
    return {"erasure_id": erasure["id"], "flag_id": flag["id"]}


@pytest.fixture
async def world(client: AsyncClient, session: AsyncSession, admin: dict[str, str]) -> World:
    await make_controller(session, kind="platform", name="Spix")
    for key in ("messaging", "voice"):
        await make_system(session, key)
    await make_category(session, "communications.sms_body")
    await make_purpose(session, "marketing.communications", legal_basis="consent")
    await make_rule(session, category="communications.sms_body", citation="Spix policy 4.2")
    messaging = await bearer(session, "system", system_key="messaging")
    a = await _tenant(client, session, admin, name="Acme", subject=ALICE, messaging=messaging)
    b = await _tenant(client, session, admin, name="Globex", subject=BOB)
    # The messaging system claims both customers' tasks: each is leased, as in production.
    tasks = _ok(await client.post("/v1/tasks/claim", json={"limit": 10}, headers=messaging))
    by_request = {task["request_id"]: task["id"] for task in tasks["tasks"]}
    assert set(by_request) == {a["request_id"], b["request_id"]}, tasks
    recipient = {
        "key": "cloud-hosting",
        "name": "Example Cloud Inc.",
        "role": "sub_processor",
        "country": "US",
        "transfer_safeguard": "scc",
        "systems": ["messaging"],
    }
    _ok(await client.post("/v1/recipients", json=recipient, headers=admin), 201)
    agent = {"agent_id": "MATRIX_AGENT", "name": "Matrix Agent", "verify_key": "B" * 43 + "="}
    _ok(await client.post("/v1/drp-agents", json=agent, headers=admin), 201)
    # A's staff key, the one A's managers read and revoke (not the key they call with).
    a_dashboard = await create_key(session, role="controller", controller_id=a["controller"].id)
    # A dead-lettered delivery to A's system, and a finished job over A's settings: written
    # as the worker leaves them (the matrix reads and redelivers, it runs no worker).
    delivery = OutboxEvent(
        id=uuid.uuid4(),
        event_type="task.created",
        payload={"request_id": a["request_id"]},
        target_kind="system",
        target_id="messaging",
        status="dead",
    )
    job = Job(
        id=uuid.uuid4(),
        kind="retention_recompute",
        state="completed",
        params={},
        controller_id=a["controller"].id,
    )
    session.add_all([delivery, job])
    revoked = await create_key(session, role="admin")
    await session.commit()
    await revoke_key(session, revoked.api_key.id)
    await session.commit()
    # An OpenDSR request A filed for Alice, still pending (nobody has taken its work).
    opendsr = {
        "subject_request_id": str(uuid.uuid4()),
        "subject_request_type": "erasure",
        "regulation": "gdpr",
        "submitted_time": "2026-01-01T00:00:00Z",
        "subject_identities": [{"identity_type": "email", "identity_value": ALICE[0]["value"]}],
    }
    _ok(
        await client.post(
            "/opendsr/v1/opendsr_requests", json=opendsr, headers=a["controller_key"]
        ),
        201,
    )
    keys = {
        "admin": admin,
        "auditor": await bearer(session, "auditor"),
        "system A": messaging,
        "system B": await bearer(session, "system", system_key="voice"),
        "controller A": a["controller_key"],
        "controller B": b["controller_key"],
        "unknown role": await unknown_role_key(session),
        "no key": {},
        "bad key": {"Authorization": "Bearer sdsr_0123456789ab_" + "x" * 43},
        "revoked key": {"Authorization": f"Bearer {revoked.secret}"},
        "token A": IDP.staff(a["controller"].id),
        "token B": IDP.staff(b["controller"].id),
        "expired token": IDP.staff(a["controller"].id, exp=int(time.time()) - 3600),
    }
    ids = {
        "controller_id": str(a["controller"].id),
        "record_id": a["record_id"],
        "rule_id": a["rule_id"],
        "hold_id": a["hold_id"],
        "request_id": a["request_id"],
        "task_id": by_request[a["request_id"]],
        "key_id": str(a_dashboard.api_key.id),
        "erasure_id": a["erasure_id"],
        "flag_id": a["flag_id"],
        "delivery_id": str(delivery.id),
        "job_id": str(job.id),
        "subject_request_id": opendsr["subject_request_id"],
        "agent_id": "MATRIX_AGENT",
    }
    secrets = {*ids.values(), a["record_ref"], a["suppression_id"], "Acme", a_dashboard.secret}
    return World(ids=ids, keys=keys, a_secrets=secrets, extra={"a": a, "b": b})
