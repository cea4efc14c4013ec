"""Identities sent as the SHA-256 of their normal form (as OpenDSR and California's deletion
platform send them) match exactly like the raw values: the index is keyed over that hash."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.records.models import RecordIdentity
from tests.builders import TEST_SUBJECT_KEY
from tests.reliability.test_identity import ident, lookup, register, world

__all__ = ["world"]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def hashed(identity_type: str, digest: str) -> dict[str, str]:
    return {"type": identity_type, "value": digest, "format": "sha256"}


# (type, the raw value as a system registers it, what a sender hashes: the documented normal form)
CASES = [
    pytest.param("email", "  Alice.Smith@Example.COM ", "alice.smith@example.com", id="email"),
    pytest.param("email", "x@Bücher.example", "x@xn--bcher-kva.example", id="email-idna"),
    pytest.param("phone", "(650) 253-0000", "+16502530000", id="phone-national"),
    pytest.param("phone", "+44 20 7946 0958", "+442079460958", id="phone-e164"),
    pytest.param("external_id", "Contact-42", "Contact-42", id="external-id"),
]


async def file_request(client: AsyncClient, world: dict[str, Any], identity: Any) -> Any:
    response = await client.post(
        "/v1/requests",
        json={
            "type": "access",
            "regime": "gdpr",
            "identities": [identity],
            "controller_id": str(world["acme"].id),
            "verified": True,
        },
        headers=world["admin"],
    )
    assert response.status_code == 201, response.text
    return response.json()


def records_reached(request: dict[str, Any]) -> int:
    return sum(scope["records"] for scope in request["scopes"])


class TestSha256MatchesRaw:
    @pytest.mark.parametrize(("kind", "raw", "normal"), CASES)
    async def test_lookup_finds_the_same_records(
        self, client: AsyncClient, world: dict[str, Any], kind: str, raw: str, normal: str
    ) -> None:
        ours = {
            await register(client, world, ident(kind, raw)),
            await register(client, world, ident(kind, normal)),
        }
        await register(client, world, ident("email", "someone-else@example.com"))
        found_raw = await lookup(client, world, ident(kind, raw))
        assert found_raw == ours
        assert await lookup(client, world, hashed(kind, sha(normal))) == found_raw
        # Upper-case hex is the same digest.
        assert await lookup(client, world, hashed(kind, sha(normal).upper())) == found_raw

    @pytest.mark.parametrize(("kind", "raw", "normal"), CASES)
    async def test_a_request_reaches_the_same_records(
        self, client: AsyncClient, world: dict[str, Any], kind: str, raw: str, normal: str
    ) -> None:
        await register(client, world, ident(kind, raw))
        await register(client, world, ident(kind, raw), ident("email", "second@example.com"))
        by_raw = await file_request(client, world, ident(kind, raw))
        by_hash = await file_request(client, world, hashed(kind, sha(normal)))
        assert records_reached(by_raw) == records_reached(by_hash) == 2

    async def test_a_hash_of_another_normal_form_finds_nothing(
        self, client: AsyncClient, world: dict[str, Any]
    ) -> None:
        await register(client, world, ident("email", "alice@example.com"))
        # Hashed before normalising: the sender's mistake, and no match.
        assert await lookup(client, world, hashed("email", sha("Alice@Example.com"))) == set()

    async def test_a_record_registered_hashed_is_found_by_the_raw_value(
        self, client: AsyncClient, world: dict[str, Any]
    ) -> None:
        record = await register(client, world, hashed("phone", sha("+16502530000")))
        assert await lookup(client, world, ident("phone", "650-253-0000")) == {record}

    async def test_an_external_id_is_scoped_to_its_controller(
        self, client: AsyncClient, world: dict[str, Any], session: AsyncSession
    ) -> None:
        from tests.builders import make_controller

        other = await make_controller(session, name="Other")
        await register(client, world, ident("external_id", "Contact-42"))
        response = await client.post(
            "/v1/subjects/lookup",
            json={
                "identities": [hashed("external_id", sha("Contact-42"))],
                "controller_id": str(other.id),
            },
            headers=world["admin"],
        )
        assert response.status_code == 200 and response.json()["items"] == []


class TestRefused:
    @pytest.mark.parametrize(
        ("kind", "value"),
        [
            pytest.param("email", "abc", id="not-hex-length"),
            pytest.param("email", "g" * 64, id="not-hex"),
            pytest.param("user_id", "a" * 64, id="type-not-hashable"),
            pytest.param("ip_address", "a" * 64, id="ip-not-hashable"),
        ],
    )
    async def test_422_naming_the_field_never_the_value(
        self, client: AsyncClient, world: dict[str, Any], kind: str, value: str
    ) -> None:
        response = await client.post(
            "/v1/subjects/lookup",
            json={"identities": [hashed(kind, value)]},
            headers=world["admin"],
        )
        assert response.status_code == 422, response.text
        # The answer without its request id, a random UUID that may hold the value's letters.
        answer = response.json()
        answer.pop("request_id")
        assert value not in json.dumps(answer)


def v2_digest(identity_type: str, normal: str) -> str:
    """What version 2 stored: the HMAC over the normal form itself (frozen here)."""
    return hmac.new(
        TEST_SUBJECT_KEY.encode(), f"{identity_type}:{normal}".encode(), hashlib.sha256
    ).hexdigest()


class TestRowsOfVersion2:
    async def test_raw_finds_them_and_sha256_after_re_registration(
        self, client: AsyncClient, session: AsyncSession, world: dict[str, Any]
    ) -> None:
        record = await register(client, world, ident("email", "old@example.com"))
        rid = uuid.UUID(record)
        await session.execute(delete(RecordIdentity).where(RecordIdentity.record_id == rid))
        await session.execute(
            insert(RecordIdentity).values(
                record_id=rid,
                identity_type="email",
                digest=v2_digest("email", "old@example.com"),
                key_id="k1.n2",
            )
        )
        await session.commit()
        assert await lookup(client, world, ident("email", "OLD@example.com")) == {record}
        assert await lookup(client, world, hashed("email", sha("old@example.com"))) == set()
        response = await client.get(f"/v1/records/{record}", headers=world["admin"])
        body = {
            "system": "crm",
            "record_ref": response.json()["record_ref"],
            "controller_id": str(world["acme"].id),
            "identities": [ident("email", "old@example.com")],
            "categories": ["account.profile"],
            "collected_at": "2026-01-01T00:00:00Z",
        }
        again = await client.post("/v1/records", json=body, headers=world["admin"])
        assert again.status_code == 200, again.text
        assert await lookup(client, world, hashed("email", sha("old@example.com"))) == {record}
        labels = set(
            await session.scalars(
                select(RecordIdentity.key_id).where(RecordIdentity.record_id == rid)
            )
        )
        assert labels == {"k1.n3", "k1.c2"}
