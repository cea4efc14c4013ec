"""Sign-in with the identity provider: the dashboard flow with tokens the test signs, and
every token the service must refuse."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.db import Database
from app.main import create_app
from tests.builders import make_controller, make_record
from tests.dashboard.conftest import with_settings
from tests.dashboard.idp import AUDIENCE, ISSUER, SigningKey, TestIdp, serve_jwks
from tests.requests.conftest import file

BOB = [{"type": "email", "value": "bob@example.com"}]
AWAITING = "/v1/requests?scope_status=awaiting_controller"


def bearer_of(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def globex_request(
    session: AsyncSession, client: AsyncClient, admin: dict[str, str]
) -> tuple[uuid.UUID, dict[str, Any]]:
    """Another customer, with a request that touches only its data."""
    globex = await make_controller(session, name="Globex")
    await make_record(
        session,
        system="messaging",
        controller_id=globex.id,
        categories=["communications.sms_body"],
        identities=BOB,
    )
    return globex.id, await file(client, admin, type="erasure", verified=True, identities=BOB)


class TestDashboardFlow:
    async def test_staff_list_their_queue_and_approve_one(
        self,
        oidc_client: AsyncClient,
        admin: dict[str, str],
        spix: dict[str, Any],
        idp: TestIdp,
        session: AsyncSession,
    ) -> None:
        mine = await file(oidc_client, admin, type="erasure", verified=True)
        globex_id, theirs = await globex_request(session, oidc_client, admin)
        staff = idp.staff(spix["acme"].id)

        queue = await oidc_client.get(AWAITING, headers=staff)
        assert queue.status_code == 200, queue.text
        assert [r["id"] for r in queue.json()["items"]] == [mine["id"]]
        # The same answer as the customer's API key: tenant isolation is the same.
        by_key = await oidc_client.get(AWAITING, headers=spix["acme_key"])
        assert by_key.json()["items"] == queue.json()["items"]

        approved = await oidc_client.post(
            f"/v1/requests/{mine['id']}/scopes/{spix['acme'].id}/decision",
            json={"decision": "approve", "reason": "no ground to keep"},
            headers=staff,
        )
        assert approved.status_code == 200, approved.text
        (scope,) = approved.json()["scopes"]
        assert scope["status"] == "in_progress"
        after = await oidc_client.get(AWAITING, headers=staff)
        assert after.json()["items"] == []

        # Globex's request and scope do not exist for Acme's staff.
        assert (
            await oidc_client.get(f"/v1/requests/{theirs['id']}", headers=staff)
        ).status_code == 404
        decided = await oidc_client.post(
            f"/v1/requests/{theirs['id']}/scopes/{globex_id}/decision",
            json={"decision": "approve"},
            headers=staff,
        )
        assert decided.status_code == 404
        named = await oidc_client.get(f"{AWAITING}&controller_id={globex_id}", headers=staff)
        assert named.json()["items"] == []
        # Globex's staff see theirs.
        globex_queue = await oidc_client.get(AWAITING, headers=idp.staff(globex_id))
        assert [r["id"] for r in globex_queue.json()["items"]] == [theirs["id"]]

    async def test_an_admin_token_reads_everything(
        self, oidc_client: AsyncClient, idp: TestIdp, spix: dict[str, Any]
    ) -> None:
        response = await oidc_client.get(
            "/v1/controllers", headers=bearer_of(idp.token(spix_role="admin"))
        )
        assert response.status_code == 200
        assert len(response.json()["items"]) == 2


class TestRefusedTokens:
    @pytest.fixture
    def acme(self, spix: dict[str, Any]) -> str:
        return str(spix["acme"].id)

    async def refused(self, client: AsyncClient, token: str, status: int = 401) -> str:
        response = await client.get(AWAITING, headers=bearer_of(token))
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        return str(response.json()["detail"])

    def controller_claims(self, acme: str) -> dict[str, Any]:
        return {"spix_role": "controller", "spix_controller_id": acme}

    async def test_expired(self, oidc_client: AsyncClient, idp: TestIdp, acme: str) -> None:
        now = int(time.time())
        token = idp.token(**self.controller_claims(acme), iat=now - 600, exp=now - 120)
        assert "expired" in await self.refused(oidc_client, token)

    async def test_a_small_clock_skew_is_tolerated(
        self, oidc_client: AsyncClient, idp: TestIdp, acme: str
    ) -> None:
        now = int(time.time())
        token = idp.token(**self.controller_claims(acme), nbf=now + 10, exp=now - 5)
        response = await oidc_client.get(AWAITING, headers=bearer_of(token))
        assert response.status_code == 200

    async def test_not_yet_valid(self, oidc_client: AsyncClient, idp: TestIdp, acme: str) -> None:
        token = idp.token(**self.controller_claims(acme), nbf=int(time.time()) + 600)
        await self.refused(oidc_client, token)

    async def test_wrong_audience(self, oidc_client: AsyncClient, idp: TestIdp, acme: str) -> None:
        token = idp.token(**self.controller_claims(acme), aud="another-service")
        assert "not meant for this service" in await self.refused(oidc_client, token)

    async def test_alg_none(self, oidc_client: AsyncClient, idp: TestIdp, acme: str) -> None:
        token = jwt.encode(
            idp.claims(**self.controller_claims(acme)),
            None,
            algorithm="none",
            headers={"kid": idp.keys[0].kid},
        )
        assert "algorithm" in await self.refused(oidc_client, token)

    async def test_hmac_with_the_public_key(
        self, oidc_client: AsyncClient, idp: TestIdp, acme: str
    ) -> None:
        # The classic confusion: HS256 keyed with the issuer's public key, which anyone has
        # (made by hand: PyJWT itself refuses to HMAC with a PEM public key).
        public = idp.keys[0].private.public_key()
        pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        header = {"alg": "HS256", "kid": idp.keys[0].kid, "typ": "JWT"}
        claims = idp.claims(**self.controller_claims(acme))
        signed = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = hmac.new(pem, signed.encode(), hashlib.sha256).digest()
        forged = f"{signed}.{_b64(signature)}"
        assert "algorithm" in await self.refused(oidc_client, forged)

    async def test_unknown_key(self, oidc_client: AsyncClient, idp: TestIdp, acme: str) -> None:
        stranger = SigningKey("RS256")
        token = idp.token(stranger, **self.controller_claims(acme))
        await self.refused(oidc_client, token)

    async def test_known_kid_wrong_signature(
        self, oidc_client: AsyncClient, idp: TestIdp, acme: str
    ) -> None:
        stranger = SigningKey("RS256")
        stranger.kid = idp.keys[0].kid
        await self.refused(oidc_client, idp.token(stranger, **self.controller_claims(acme)))

    async def test_unknown_issuer(self, oidc_client: AsyncClient, idp: TestIdp, acme: str) -> None:
        token = idp.token(**self.controller_claims(acme), iss="https://evil.test/")
        await self.refused(oidc_client, token)

    async def test_garbage(self, oidc_client: AsyncClient) -> None:
        assert "well-formed" in await self.refused(oidc_client, "not.a.token")

    async def test_an_api_key_never_goes_through_token_parsing(
        self, oidc_client: AsyncClient, idp: TestIdp, acme: str
    ) -> None:
        # Even shaped like a JWT, a credential with the key prefix is looked up as a key.
        token = idp.token(**self.controller_claims(acme))
        detail = await self.refused(oidc_client, f"sdsr_{token}")
        assert detail == "Unknown or revoked API key"

    async def test_unknown_role_is_forbidden(
        self, oidc_client: AsyncClient, idp: TestIdp, acme: str
    ) -> None:
        token = idp.token(spix_role="superuser", spix_controller_id=acme)
        await self.refused(oidc_client, token, 403)

    async def test_missing_role_is_forbidden(
        self, oidc_client: AsyncClient, idp: TestIdp, acme: str
    ) -> None:
        await self.refused(oidc_client, idp.token(spix_controller_id=acme), 403)

    async def test_two_roles_are_forbidden(
        self, oidc_client: AsyncClient, idp: TestIdp, acme: str
    ) -> None:
        token = idp.token(spix_role=["controller", "admin"], spix_controller_id=acme)
        await self.refused(oidc_client, token, 403)

    async def test_missing_controller_is_forbidden(
        self, oidc_client: AsyncClient, idp: TestIdp, spix: dict[str, Any]
    ) -> None:
        await self.refused(oidc_client, idp.token(spix_role="controller"), 403)

    async def test_unknown_controller_is_forbidden(
        self, oidc_client: AsyncClient, idp: TestIdp, spix: dict[str, Any]
    ) -> None:
        token = idp.token(spix_role="controller", spix_controller_id=str(uuid.uuid4()))
        await self.refused(oidc_client, token, 403)

    async def test_unknown_system_is_forbidden(
        self, oidc_client: AsyncClient, idp: TestIdp, spix: dict[str, Any]
    ) -> None:
        token = idp.token(spix_role="system", spix_system="nonesuch")
        response = await oidc_client.post("/v1/tasks/claim", json={}, headers=bearer_of(token))
        assert response.status_code == 403

    async def test_missing_subject(self, oidc_client: AsyncClient, idp: TestIdp, acme: str) -> None:
        await self.refused(oidc_client, idp.token(**self.controller_claims(acme), sub=None))

    async def test_tokens_are_refused_without_issuers(
        self, client: AsyncClient, idp: TestIdp, acme: str
    ) -> None:
        await self.refused(client, idp.token(**self.controller_claims(acme)))

    async def test_tokens_are_never_logged(
        self,
        oidc_client: AsyncClient,
        idp: TestIdp,
        acme: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        good = idp.token(**self.controller_claims(acme))
        bad = idp.token(**self.controller_claims(acme), aud="another-service")
        with caplog.at_level(logging.DEBUG):
            await oidc_client.get(AWAITING, headers=bearer_of(good))
            await oidc_client.get(AWAITING, headers=bearer_of(bad))
        assert caplog.records  # the access log did write
        text = caplog.text + " ".join(str(vars(r)) for r in caplog.records)
        for token in (good, bad):
            assert token not in text
            assert token.split(".")[2] not in text


class TestKeySources:
    async def test_a_loopback_jwks_rotates_without_restart(
        self,
        settings: Settings,
        database: Database,
        idp: TestIdp,
        spix: dict[str, Any],
    ) -> None:
        acme = spix["acme"].id
        with serve_jwks(idp) as (url, fetches):
            issuer = idp.issuer(jwks_url=url, jwks_min_refresh_seconds=0)
            app = create_app(with_settings(settings, oidc_issuers=[issuer]), database=database)
            async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as c:
                first = await c.get(AWAITING, headers=idp.staff(acme))
                assert first.status_code == 200
                assert len(fetches) == 1
                # Cached: a second token signed by the same key fetches nothing.
                assert (await c.get(AWAITING, headers=idp.staff(acme))).status_code == 200
                assert len(fetches) == 1

                old = idp.keys[0]
                new = idp.rotate("ES256")
                # A token by the new key: its kid is unknown, the keys are fetched again.
                rotated = await c.get(AWAITING, headers=bearer_of(idp.token(new, **_staff(acme))))
                assert rotated.status_code == 200, rotated.text
                assert len(fetches) == 2
                # The old key is no longer published: a new token signed by it is refused.
                stale = await c.get(AWAITING, headers=bearer_of(idp.token(old, **_staff(acme))))
                assert stale.status_code == 401

    async def test_unknown_kids_do_not_become_a_stream_of_fetches(
        self,
        settings: Settings,
        database: Database,
        idp: TestIdp,
        spix: dict[str, Any],
    ) -> None:
        acme = spix["acme"].id
        with serve_jwks(idp) as (url, fetches):
            issuer = idp.issuer(jwks_url=url)  # at most one fetch per 5 s
            app = create_app(with_settings(settings, oidc_issuers=[issuer]), database=database)
            async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as c:
                assert (await c.get(AWAITING, headers=idp.staff(acme))).status_code == 200
                strangers = [idp.token(SigningKey(), **_staff(acme)) for _ in range(5)]
                answers = await asyncio.gather(
                    *(c.get(AWAITING, headers=bearer_of(t)) for t in strangers)
                )
                assert {a.status_code for a in answers} == {401}
                assert len(fetches) == 1

    async def test_an_unreachable_jwks_refuses_tokens(
        self, settings: Settings, database: Database, idp: TestIdp, spix: dict[str, Any]
    ) -> None:
        issuer = idp.issuer(jwks_url="http://127.0.0.1:9/jwks")
        app = create_app(with_settings(settings, oidc_issuers=[issuer]), database=database)
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as c:
            response = await c.get(AWAITING, headers=idp.staff(spix["acme"].id))
            assert response.status_code == 401

    async def test_a_jwks_file_is_read_again_after_rotation(
        self,
        settings: Settings,
        database: Database,
        idp: TestIdp,
        spix: dict[str, Any],
        tmp_path: Path,
    ) -> None:
        path = idp.write(tmp_path / "jwks.json")
        issuer = idp.issuer(jwks_file=str(path), jwks_min_refresh_seconds=0)
        app = create_app(with_settings(settings, oidc_issuers=[issuer]), database=database)
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as c:
            assert (await c.get(AWAITING, headers=idp.staff(spix["acme"].id))).status_code == 200
            idp.rotate()
            idp.write(path)
            assert (await c.get(AWAITING, headers=idp.staff(spix["acme"].id))).status_code == 200


def _staff(controller_id: uuid.UUID) -> dict[str, Any]:
    return {"spix_role": "controller", "spix_controller_id": str(controller_id)}


class TestSettings:
    def test_hmac_and_none_cannot_be_configured(self, idp: TestIdp) -> None:
        for algorithm in ("HS256", "none"):
            with pytest.raises(ValueError, match="asymmetric"):
                idp.issuer(jwks_file="x.json", algorithms=(algorithm,))

    def test_issuers_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(
            "SPIX_DSR_OIDC_ISSUERS",
            f'[{{"issuer": "{ISSUER}", "audience": "{AUDIENCE}", "jwks_file": "/k.json"}}]',
        )
        (issuer,) = Settings().oidc_issuers
        assert issuer.issuer == ISSUER and issuer.algorithms == ("RS256", "ES256")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
