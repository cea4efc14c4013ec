"""The asymmetric scheme (`v1a`, Ed25519): an endpoint that chooses it receives deliveries a
receiver verifies with our published public key alone, holding no secret. Verified here with
PyNaCl (libsodium), an Ed25519 independent of the one that signs, over the content the Standard
Webhooks specification names: `{webhook-id}.{webhook-timestamp}.{body}`."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.core.config import Settings
from app.core.db import Database
from app.core.signing import SigningKeyError, b64url_decode
from app.main import create_app
from app.webhooks.signing import webhook_signer, whpk
from tests.builders import TEST_AUDIT_KEY, TEST_SUBJECT_KEY
from tests.worker.conftest import Received, Receiver, file_access, relay_for, system_with_hook
from tests.worker.test_deliveries import drain
from tests.worker.test_events import customer_with_hook


def verify_v1a(public_key: str, got: Received) -> dict[str, Any]:
    """What a receiver does with a `whpk_` key: find a `v1a` signature over id.timestamp.body."""
    assert public_key.startswith("whpk_")
    key = VerifyKey(base64.b64decode(public_key.removeprefix("whpk_")))
    content = b".".join(
        [got.headers["webhook-id"].encode(), got.headers["webhook-timestamp"].encode(), got.body]
    )
    for signature in got.headers["webhook-signature"].split(" "):
        version, _, value = signature.partition(",")
        if version != "v1a":
            continue
        try:
            key.verify(content, base64.b64decode(value))
        except BadSignatureError:
            continue
        return dict(json.loads(got.body))
    raise AssertionError("no v1a signature verifies")


async def webhook_keys(client: AsyncClient) -> list[dict[str, str]]:
    response = await client.get("/.well-known/spix-dsr/webhook-keys")  # no key needed
    assert response.status_code == 200, response.text
    return list(response.json()["keys"])


async def test_a_v1a_system_verifies_with_the_published_key_and_no_secret(
    wclient: AsyncClient,
    wdb: Database,
    wadmin: dict[str, str],
    wsettings: Settings,
    receiver: Receiver,
) -> None:
    world = await system_with_hook(wclient, wdb, wadmin, receiver.url)
    default = await wclient.get(f"/v1/systems/{world.system}", headers=wadmin)
    assert default.json()["webhook_signature_scheme"] == "v1"  # nobody changes scheme unasked
    chose = await wclient.patch(
        f"/v1/systems/{world.system}", json={"webhook_signature_scheme": "v1a"}, headers=wadmin
    )
    assert chose.status_code == 200, chose.text
    assert chose.json()["webhook_signature_scheme"] == "v1a"
    request = await file_access(wclient, wadmin, world)
    await drain(wdb, wsettings)

    (got,) = receiver.received
    (key,) = await webhook_keys(wclient)
    event = verify_v1a(key["whpk"], got)
    assert event["type"] == "task.created"
    assert event["data"]["request_id"] == request["id"]
    # The JWK form is the same key.
    assert base64.b64decode(key["whpk"][5:]) == b64url_decode(key["x"])
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519"
    # Only v1a signs: the HMAC secret the system also holds verifies nothing.
    assert got.headers["webhook-signature"].startswith("v1a,")
    with pytest.raises(WebhookVerificationError):
        Webhook(world.secret).verify(got.body, got.headers)
    # Another key, or a changed body, does not verify.
    other = webhook_signer(base64.b64encode(bytes(32)))
    assert other is not None
    with pytest.raises(AssertionError, match="no v1a signature"):
        verify_v1a(whpk(other), got)
    tampered = Received(got.headers, got.body.replace(b"task.created", b"task.createe"), 0)
    with pytest.raises(AssertionError, match="no v1a signature"):
        verify_v1a(key["whpk"], tampered)


async def test_a_customer_routed_by_webhook_may_choose_v1a(
    wclient: AsyncClient,
    wdb: Database,
    wadmin: dict[str, str],
    wsettings: Settings,
    receiver: Receiver,
) -> None:
    customer, identities = await customer_with_hook(wclient, wdb, wadmin, receiver.url)
    assert customer["dsr_routing"]["signature_scheme"] == "v1"
    routing = {"mode": "webhook", "webhook_url": receiver.url, "signature_scheme": "v1a"}
    patched = await wclient.patch(
        f"/v1/controllers/{customer['id']}", json={"dsr_routing": routing}, headers=wadmin
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["dsr_routing"]["signature_scheme"] == "v1a"
    body = {"type": "erasure", "regime": "gdpr", "identities": identities, "verified": True}
    assert (await wclient.post("/v1/requests", json=body, headers=wadmin)).status_code == 201
    await drain(wdb, wsettings)

    (got,) = receiver.received
    (key,) = await webhook_keys(wclient)
    assert verify_v1a(key["whpk"], got)["type"] == "scope.awaiting_controller"


def test_the_webhook_key_is_read_in_every_documented_form() -> None:
    seed = bytes(range(32))
    forms = [
        base64.b64encode(seed),
        b"whsk_" + base64.b64encode(seed),
        b"whsk_" + base64.b64encode(seed + bytes(32)),  # seed and public key, as some write it
    ]
    kids = set()
    for form in forms:
        signer = webhook_signer(form)
        assert signer is not None
        kids.add(signer.kid)
    assert len(kids) == 1
    assert webhook_signer(None) is None
    with pytest.raises(SigningKeyError, match="webhook signing key"):
        webhook_signer(b"whsk_not base64!")
    with pytest.raises(SigningKeyError, match="webhook signing key"):
        webhook_signer(b"neither")


def production_app(url: str, folder: Path) -> FastAPI:
    settings = Settings(
        env="production",  # type: ignore[arg-type]
        database_url=url,
        subject_key=TEST_SUBJECT_KEY,
        audit_key=TEST_AUDIT_KEY,
        receipt_signing_key=base64.b64encode(bytes(range(32))).decode(),
        data_dir=folder,
        webhook_allow_private_targets=True,
    )
    assert settings.resolve_webhook_key() is None
    return create_app(settings, database=Database.from_url(url))


async def test_without_a_webhook_key_no_endpoint_may_choose_v1a(
    worker_url: str, wdb: Database, wadmin: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    app = production_app(worker_url, tmp_path)
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        assert await webhook_keys(client) == []
        key = f"sys-{uuid.uuid4().hex[:8]}"
        body = {"key": key, "name": "x", "webhook_url": receiver.url}
        refused = await client.post(
            "/v1/systems", json={**body, "webhook_signature_scheme": "v1a"}, headers=wadmin
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["loc"] == ["body", "webhook_signature_scheme"]
        assert (await client.post("/v1/systems", json=body, headers=wadmin)).status_code == 201
        routing = {"mode": "webhook", "webhook_url": receiver.url, "signature_scheme": "v1a"}
        customer = await client.post(
            "/v1/controllers", json={"name": "No key", "dsr_routing": routing}, headers=wadmin
        )
        assert customer.status_code == 422, customer.text
    await app.state.db.dispose()


async def test_a_v1a_event_without_a_key_is_not_sent_unsigned(
    wclient: AsyncClient,
    wdb: Database,
    wadmin: dict[str, str],
    wsettings: Settings,
    receiver: Receiver,
) -> None:
    # Chosen while the API had a key; this worker has none (a misconfigured deployment).
    world = await system_with_hook(wclient, wdb, wadmin, receiver.url)
    await wclient.patch(
        f"/v1/systems/{world.system}", json={"webhook_signature_scheme": "v1a"}, headers=wadmin
    )
    await file_access(wclient, wadmin, world)
    async with relay_for(wdb, wsettings) as relay:
        relay.signer = None
        assert await relay.run_once() == 1
    assert receiver.received == []
    (row,) = (
        await wclient.get(
            "/v1/webhook-deliveries", params={"endpoint": f"system:{world.system}"}, headers=wadmin
        )
    ).json()["items"]
    assert row["last_error"] == "the service has no webhook signing key (v1a)"
