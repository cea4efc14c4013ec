"""OpenDSR as a controller drives it: discover, create, poll, cancel; every answer verified
with the published certificate; signed status callbacks on a loopback receiver through the
worker's relay; one controller never sees another's requests; malformed requests get the
specification's error shape."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.exceptions import InvalidSignature
from httpx import AsyncClient
from sqlalchemy import select

from app.core.config import Settings
from app.core.db import Database
from app.interop.opendsr.models import OpenDsrRequest
from app.requests.models import RequestScope
from tests.interop.opendsr.conftest import DOMAIN, Pki, Tenant, World, verified, verify
from tests.worker.conftest import Receiver, relay_for

ENDPOINT = "/opendsr/v1/opendsr_requests"


def body_for(
    tenant: Tenant,
    *,
    kind: str = "erasure",
    regulation: str = "gdpr",
    callbacks: list[str] | None = None,
    identities: list[dict[str, str]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "subject_request_id": str(uuid.uuid4()),
        "subject_request_type": kind,
        "regulation": regulation,
        "submitted_time": "2026-11-01T15:00:00Z",
        "subject_identities": identities
        or [{"identity_type": "email", "identity_value": tenant.email, "identity_format": "raw"}],
        "api_version": "2.0",
        "status_callback_urls": callbacks or [],
        **extra,
    }


async def create(client: AsyncClient, tenant: Tenant, body: dict[str, Any], pki: Pki) -> Any:
    raw = json.dumps(body).encode()
    response = await client.post(
        ENDPOINT, content=raw, headers={**tenant.key, "content-type": "application/json"}
    )
    assert response.status_code == 201, response.text
    verified(response, pki.cert_pem)
    created = response.json()
    assert base64.b64decode(created["encoded_request"]) == raw
    assert created["subject_request_id"] == body["subject_request_id"]
    assert created["controller_id"] == str(tenant.controller_id)
    return created


async def status_of(client: AsyncClient, tenant: Tenant, sid: str, pki: Pki) -> dict[str, Any]:
    response = await client.get(f"{ENDPOINT}/{sid}", headers=tenant.key)
    assert response.status_code == 200, response.text
    return dict(verified(response, pki.cert_pem).json())


async def request_of(database: Database, tenant: Tenant, sid: str) -> uuid.UUID:
    async with database.sessionmaker() as session:
        found = await session.scalar(
            select(OpenDsrRequest.request_id).where(
                OpenDsrRequest.controller_id == tenant.controller_id,
                OpenDsrRequest.subject_request_id == uuid.UUID(sid),
            )
        )
    assert found is not None
    return found


async def relay_all(database: Database, settings: Settings) -> None:
    async with relay_for(database, settings) as relay:
        while await relay.run_once():
            pass


def callbacks(receiver: Receiver, pki: Pki) -> list[dict[str, Any]]:
    """Every callback received, each verified with the certificate before it is parsed."""
    with receiver.lock:
        received = list(receiver.received)
    for got in received:
        assert got.headers["x-opendsr-processor-domain"] == DOMAIN
        verify(pki.cert_pem, got.body, got.headers["x-opendsr-signature"])
    return [json.loads(got.body) for got in received]


class TestDiscovery:
    async def test_signed_and_names_the_published_certificate(
        self, oclient: AsyncClient, pki: Pki
    ) -> None:
        response = await oclient.get("/opendsr/v1/discovery")
        assert response.status_code == 200
        found = response.json()
        cert = await oclient.get(urlsplit(found["processor_certificate"]).path)
        assert cert.status_code == 200 and cert.content == pki.cert_pem
        verified(response, cert.content)
        assert {"identity_type": "email", "identity_format": "sha256"} in found[
            "supported_identities"
        ]
        assert set(found["supported_subject_request_types"]) == {"access", "portability", "erasure"}

    async def test_a_tampered_body_fails_verification(self, oclient: AsyncClient, pki: Pki) -> None:
        response = await oclient.get("/opendsr/v1/discovery")
        with pytest.raises(InvalidSignature):
            verify(pki.cert_pem, response.content + b" ", response.headers["x-opendsr-signature"])


class TestLifecycle:
    async def test_create_poll_cancel_with_signed_callbacks(
        self,
        oclient: AsyncClient,
        wdb: Database,
        osettings: Settings,
        world: World,
        receiver: Receiver,
        pki: Pki,
    ) -> None:
        body = body_for(world.acme, callbacks=[receiver.url])
        await create(oclient, world.acme, body, pki)
        sid = body["subject_request_id"]
        assert (await status_of(oclient, world.acme, sid, pki))["request_status"] == "pending"
        # The request reaches Acme's records only, and runs at once on Acme's instruction.
        request_id = await request_of(wdb, world.acme, sid)
        async with wdb.sessionmaker() as session:
            scopes = (
                await session.execute(
                    select(RequestScope.controller_id, RequestScope.status).where(
                        RequestScope.request_id == request_id
                    )
                )
            ).all()
        assert [(c, str(s)) for c, s in scopes] == [(world.acme.controller_id, "in_progress")]

        response = await oclient.delete(f"{ENDPOINT}/{sid}", headers=world.acme.key)
        assert response.status_code == 202, response.text
        cancelled = verified(response, pki.cert_pem).json()
        assert cancelled["subject_request_id"] == sid
        assert (await status_of(oclient, world.acme, sid, pki))["request_status"] == "cancelled"
        again = await oclient.delete(f"{ENDPOINT}/{sid}", headers=world.acme.key)
        assert again.status_code == 400 and "cancelled" in again.json()["error"]["message"]

        await relay_all(wdb, osettings)
        got = callbacks(receiver, pki)
        assert [c["request_status"] for c in got] == ["cancelled"]
        assert got[0]["status_callback_url"] == receiver.url
        assert got[0]["subject_request_id"] == sid
        assert got[0]["controller_id"] == str(world.acme.controller_id)

    async def test_work_taken_then_done_is_called_back_at_each_change(
        self,
        oclient: AsyncClient,
        wdb: Database,
        osettings: Settings,
        world: World,
        receiver: Receiver,
        pki: Pki,
    ) -> None:
        body = body_for(world.acme, kind="access", callbacks=[receiver.url])
        await create(oclient, world.acme, body, pki)
        sid = body["subject_request_id"]
        claim = await oclient.post(
            "/v1/tasks/claim", json={"limit": 50, "lease_seconds": 60}, headers=world.system_key
        )
        assert claim.status_code == 200, claim.text
        request_id = str(await request_of(wdb, world.acme, sid))
        ours = [t for t in claim.json()["tasks"] if t["request_id"] == request_id]
        assert ours
        assert (await status_of(oclient, world.acme, sid, pki))["request_status"] == "in_progress"
        # Cancelling is for pending requests only.
        refused = await oclient.delete(f"{ENDPOINT}/{sid}", headers=world.acme.key)
        assert refused.status_code == 400
        for task in ours:
            done = await oclient.post(
                f"/v1/tasks/{task['id']}/complete",
                json={"result": {"data": {"profile": {}}}},
                headers=world.system_key,
            )
            assert done.status_code == 200, done.text
        final = await status_of(oclient, world.acme, sid, pki)
        assert final["request_status"] == "completed"
        assert final["results_url"].endswith(f"/v1/requests/{request_id}/export")

        await relay_all(wdb, osettings)
        # One callback per change; a batch is sent concurrently, so in no promised order.
        assert sorted(c["request_status"] for c in callbacks(receiver, pki)) == [
            "completed",
            "in_progress",
        ]

    async def test_a_retried_message_gets_the_same_request(
        self, oclient: AsyncClient, world: World, pki: Pki
    ) -> None:
        body = body_for(world.acme)
        first = await create(oclient, world.acme, body, pki)
        second = await create(oclient, world.acme, body, pki)
        assert second["received_time"] == first["received_time"]
        reused = await oclient.post(
            ENDPOINT, json={**body, "regulation": "ccpa"}, headers=world.acme.key
        )
        assert reused.status_code == 400


class TestTenancy:
    async def test_another_controller_cannot_see_or_cancel(
        self, oclient: AsyncClient, world: World, pki: Pki
    ) -> None:
        body = body_for(world.acme)
        await create(oclient, world.acme, body, pki)
        sid = body["subject_request_id"]
        for method in ("GET", "DELETE"):
            response = await oclient.request(method, f"{ENDPOINT}/{sid}", headers=world.globex.key)
            assert response.status_code == 404, response.text
            assert response.json()["error"]["code"] == 404
            verified(response, pki.cert_pem)
        assert (await status_of(oclient, world.acme, sid, pki))["request_status"] == "pending"

    async def test_the_same_id_is_each_controllers_own(
        self, oclient: AsyncClient, world: World, pki: Pki
    ) -> None:
        body = body_for(world.acme)
        await create(oclient, world.acme, body, pki)
        await create(
            oclient,
            world.globex,
            {
                **body,
                "subject_identities": [
                    {"identity_type": "email", "identity_value": world.globex.email}
                ],
            },
            pki,
        )

    async def test_other_roles_are_refused(
        self, oclient: AsyncClient, wdb: Database, world: World
    ) -> None:
        from tests.conftest import bearer

        async with wdb.sessionmaker() as session:
            admin = await bearer(session, "admin")
        response = await oclient.post(ENDPOINT, json=body_for(world.acme), headers=admin)
        assert response.status_code == 403
        assert (await oclient.get(f"{ENDPOINT}/{uuid.uuid4()}")).status_code == 401


class TestIdentities:
    @pytest.mark.parametrize("form", ["raw", "sha256"])
    async def test_each_type_reaches_the_controller_s_own_record(
        self, oclient: AsyncClient, wdb: Database, world: World, pki: Pki, form: str
    ) -> None:
        acme = world.acme

        def given(kind: str, normal: str) -> dict[str, str]:
            value = hashlib.sha256(normal.encode()).hexdigest() if form == "sha256" else normal
            return {"identity_type": kind, "identity_value": value, "identity_format": form}

        body = body_for(
            acme,
            kind="access",
            identities=[
                given("email", acme.email),
                given("controller_customer_id", acme.customer_id),
            ],
            extensions={DOMAIN: {"identities": [given("phone_number", acme.phone)]}},
        )
        await create(oclient, acme, body, pki)
        request_id = await request_of(wdb, acme, body["subject_request_id"])
        response = await oclient.get(f"/v1/requests/{request_id}", headers=acme.key)
        assert response.status_code == 200, response.text
        scopes = response.json()["scopes"]
        assert [(s["controller_id"], s["records"]) for s in scopes] == [
            (str(acme.controller_id), len(acme.records))
        ]


class TestErrors:
    @pytest.mark.parametrize(
        ("change", "field"),
        [
            pytest.param({"regulation": "lgpd"}, "regulation", id="regulation"),
            pytest.param(
                {"subject_request_type": "rectification"}, "subject_request_type", id="type"
            ),
            pytest.param({"subject_request_id": "not-a-uuid"}, "subject_request_id", id="id"),
            pytest.param({"submitted_time": None}, "submitted_time", id="time"),
        ],
    )
    async def test_the_specification_s_error_shape(
        self,
        oclient: AsyncClient,
        world: World,
        pki: Pki,
        change: dict[str, Any],
        field: str,
    ) -> None:
        body = body_for(world.acme) | change
        response = await oclient.post(ENDPOINT, json=body, headers=world.acme.key)
        assert response.status_code == 400, response.text
        error = verified(response, pki.cert_pem).json()["error"]
        assert error["code"] == 400 and field in error["message"]
        assert all({"domain", "reason", "message"} <= set(e) for e in error["errors"])
        assert world.acme.email not in response.text

    async def test_unmatchable_formats_and_missing_identities(
        self, oclient: AsyncClient, world: World
    ) -> None:
        sha1 = body_for(
            world.acme,
            identities=[
                {"identity_type": "email", "identity_value": "ab" * 20, "identity_format": "sha1"}
            ],
        )
        response = await oclient.post(ENDPOINT, json=sha1, headers=world.acme.key)
        assert response.status_code == 400 and "sha1" in response.json()["error"]["message"]
        other = body_for(
            world.acme,
            identities=[
                {
                    "identity_type": "ios_advertising_id",
                    "identity_value": "x",
                    "identity_format": "raw",
                }
            ],
        )
        response = await oclient.post(ENDPOINT, json=other, headers=world.acme.key)
        assert response.status_code == 400
        assert response.json()["error"]["errors"][0]["reason"] == "NoSupportedIdentity"
        bad = await oclient.post(
            ENDPOINT,
            content=b"{not json",
            headers={**world.acme.key, "content-type": "application/json"},
        )
        assert bad.status_code == 400 and "error" in bad.json()

    async def test_an_unsafe_callback_url_is_refused(
        self, oclient: AsyncClient, oapp: Any, world: World
    ) -> None:
        oapp.state.settings = oapp.state.settings.model_copy(
            update={"webhook_allow_private_targets": False}
        )
        body = body_for(world.acme, callbacks=["http://127.0.0.1:9/hook"])
        response = await oclient.post(ENDPOINT, json=body, headers=world.acme.key)
        assert response.status_code == 400
        assert "status_callback_urls.0" in response.json()["error"]["message"]
