"""Identity normalisation: spellings of one identity match everywhere (registration, lookup,
holds, suppressions, requests), invisible characters are refused, and hashes stored under
the old normalisation (version 1) still match under the current one."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.controllers.models import Controller
from app.core.config import Settings
from app.core.db import Database
from app.legal_holds.models import LegalHoldIdentity
from app.main import create_app
from app.records.models import RecordIdentity
from app.suppressions.gpc import SALE_AND_SHARING
from app.suppressions.models import Suppression
from tests.builders import (
    TEST_SUBJECT_KEY,
    make_category,
    make_controller,
    make_purpose,
    make_system,
)

MARKETING = "marketing.communications"

# (type, one spelling, another spelling of the same identity)
PAIRS = [
    pytest.param("email", "x@bücher.example", "x@xn--bcher-kva.example", id="idna"),
    pytest.param("email", "x@XN--BCHER-KVA.example", "X@Bücher.Example", id="idna-reverse"),
    pytest.param("email", "zo\u00eb@example.com", "zoe\u0308@example.com", id="email-nfc-nfd"),
    pytest.param("user_id", "Jose\u0301", "Jos\u00e9", id="user-nfd-nfc"),
    pytest.param("external_id", "K\u00f6nig-7", "Ko\u0308nig-7", id="external-nfc-nfd"),
    pytest.param("ip_address", "::ffff:192.0.2.1", "192.0.2.1", id="ipv4-mapped"),
    pytest.param("ip_address", "192.0.2.1", "::FFFF:192.0.2.1", id="ipv4-mapped-reverse"),
]

INVISIBLE = [
    pytest.param("email", "x\u200b@example.com", id="zero-width-space"),
    pytest.param("email", "x@exa\u200dmple.com", id="zwj"),
    pytest.param("email", "\ufeffx@example.com", id="bom"),
    pytest.param("email", "x\u00ad@example.com", id="soft-hyphen"),
    pytest.param("email", "x\u202e@example.com", id="bidi-override"),
    pytest.param("user_id", "user\u200c42", id="zwnj-user-id"),
    pytest.param("phone", "+1 650\u200b 253 0000", id="phone-zwsp"),
    pytest.param("device_id", "dev\x07ice", id="control"),
]


@pytest.fixture
async def world(session: AsyncSession, admin: dict[str, str]) -> dict[str, Any]:
    acme = await make_controller(session, name="Acme")
    await make_system(session, "crm")
    await make_category(session, "account.profile")
    await make_purpose(session, MARKETING, legal_basis="consent")
    for key in SALE_AND_SHARING:  # what a CCPA opt-out suppresses besides
        await make_purpose(session, key, legal_basis="consent")
    return {"acme": acme, "admin": admin}


def ident(identity_type: str, value: str) -> dict[str, str]:
    return {"type": identity_type, "value": value}


async def register(client: AsyncClient, world: dict[str, Any], *identities: dict[str, str]) -> str:
    response = await client.post(
        "/v1/records",
        json={
            "system": "crm",
            "record_ref": f"ref-{uuid.uuid4().hex[:12]}",
            "controller_id": str(world["acme"].id),
            "identities": list(identities),
            "categories": ["account.profile"],
            "collected_at": "2026-01-01T00:00:00Z",
        },
        headers=world["admin"],
    )
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


async def lookup(client: AsyncClient, world: dict[str, Any], *identities: dict[str, str]) -> Any:
    response = await client.post(
        "/v1/subjects/lookup",
        json={"identities": list(identities), "controller_id": str(world["acme"].id)},
        headers=world["admin"],
    )
    assert response.status_code == 200, response.text
    return {item["id"] for item in response.json()["items"]}


async def place_hold(client: AsyncClient, world: dict[str, Any], *identities: Any) -> str:
    response = await client.post(
        "/v1/legal-holds",
        json={
            "reason": "matter 7",
            "identities": list(identities),
            "controller_id": str(world["acme"].id),
        },
        headers=world["admin"],
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def retention(client: AsyncClient, world: dict[str, Any], record_id: str) -> Any:
    response = await client.get(f"/v1/records/{record_id}", headers=world["admin"])
    assert response.status_code == 200, response.text
    return response.json()["retention"]


async def suppress(client: AsyncClient, world: dict[str, Any], identity: dict[str, str]) -> Any:
    response = await client.post(
        "/v1/suppressions",
        json={
            "identity": identity,
            "channel": "email",
            "purpose": MARKETING,
            "controller_id": str(world["acme"].id),
            "source": "unsubscribe_link",
        },
        headers=world["admin"],
    )
    assert response.status_code in (200, 201), response.text
    return response


async def suppressed(client: AsyncClient, world: dict[str, Any], identity: dict[str, str]) -> bool:
    response = await client.post(
        "/v1/suppressions/check",
        json={
            "identities": [identity],
            "channel": "email",
            "purpose": MARKETING,
            "controller_id": str(world["acme"].id),
        },
        headers=world["admin"],
    )
    assert response.status_code == 200, response.text
    return bool(response.json()["suppressed"])


def v1_normal(identity_type: str, value: str, controller: Controller) -> str:
    """Version 1 as the old code had it (frozen here, independent of the app)."""
    value = value.strip()
    if identity_type == "email":
        return value.lower()
    if identity_type == "ip_address":
        return str(ipaddress.ip_address(value))
    if identity_type == "external_id":
        return f"{controller.id}/{value}"
    return value


def v1_digest(identity_type: str, value: str, controller: Controller) -> str:
    """The hash an old deployment stored: version-1 normalisation, labelled with the bare key."""
    normal = v1_normal(identity_type, value, controller)
    return hmac.new(
        TEST_SUBJECT_KEY.encode(), f"{identity_type}:{normal}".encode(), hashlib.sha256
    ).hexdigest()


async def as_old_record(
    session: AsyncSession, record_id: str, identity_type: str, value: str, controller: Controller
) -> None:
    """Leave the record's identity as version 1 wrote it: one hash, label `k1`."""
    rid = uuid.UUID(record_id)
    await session.execute(delete(RecordIdentity).where(RecordIdentity.record_id == rid))
    await session.execute(
        insert(RecordIdentity).values(
            record_id=rid,
            identity_type=identity_type,
            digest=v1_digest(identity_type, value, controller),
            key_id="k1",
        )
    )
    await session.commit()


class TestSpellingsOfOneIdentity:
    @pytest.mark.parametrize(("kind", "one", "other"), PAIRS)
    async def test_lookup_finds_a_record_registered_with_the_other_spelling(
        self, client: AsyncClient, world: dict[str, Any], kind: str, one: str, other: str
    ) -> None:
        record_id = await register(client, world, ident(kind, one))
        assert await lookup(client, world, ident(kind, other)) == {record_id}

    @pytest.mark.parametrize(("kind", "one", "other"), PAIRS)
    async def test_one_record_shows_one_hash_for_both_spellings(
        self, client: AsyncClient, world: dict[str, Any], kind: str, one: str, other: str
    ) -> None:
        record_id = await register(client, world, ident(kind, one), ident(kind, other))
        response = await client.get(f"/v1/records/{record_id}", headers=world["admin"])
        assert len(response.json()["identities"]) == 1

    @pytest.mark.parametrize(("kind", "one", "other"), PAIRS)
    async def test_suppression_of_one_spelling_stops_the_other(
        self, client: AsyncClient, world: dict[str, Any], kind: str, one: str, other: str
    ) -> None:
        first = await suppress(client, world, ident(kind, one))
        assert first.status_code == 201
        assert await suppressed(client, world, ident(kind, other))
        again = await suppress(client, world, ident(kind, other))
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]

    @pytest.mark.parametrize(("kind", "one", "other"), PAIRS)
    async def test_hold_on_one_spelling_covers_the_other(
        self, client: AsyncClient, world: dict[str, Any], kind: str, one: str, other: str
    ) -> None:
        before = await register(client, world, ident(kind, one))
        hold_id = await place_hold(client, world, ident(kind, other))
        after = await register(client, world, ident(kind, one))
        for record_id in (before, after):
            decision = await retention(client, world, record_id)
            assert decision["status"] == "held" and decision["holds"] == [hold_id]
        hold = await client.get(f"/v1/legal-holds/{hold_id}", headers=world["admin"])
        # The hold shows the identity once, by its current hash.
        assert len(hold.json()["scope"]["identities"]) == 1

    @pytest.mark.parametrize(("kind", "one", "other"), PAIRS[:1] + PAIRS[-2:-1])
    async def test_request_finds_records_of_the_other_spelling(
        self, client: AsyncClient, world: dict[str, Any], kind: str, one: str, other: str
    ) -> None:
        await register(client, world, ident(kind, one))
        response = await client.post(
            "/v1/requests",
            json={
                "type": "access",
                "regime": "gdpr",
                "identities": [ident(kind, other)],
                "controller_id": str(world["acme"].id),
                "verified": True,
            },
            headers=world["admin"],
        )
        assert response.status_code == 201, response.text
        (scope,) = response.json()["scopes"]
        assert scope["records"] == 1

    async def test_opt_out_request_suppresses_once_and_matches_the_other_spelling(
        self, client: AsyncClient, world: dict[str, Any]
    ) -> None:
        response = await client.post(
            "/v1/requests",
            json={
                "type": "opt_out",
                "regime": "ccpa",
                "identities": [ident("email", "x@bücher.example")],
                "controller_id": str(world["acme"].id),
                "details": {"channel": "email"},
            },
            headers=world["admin"],
        )
        assert response.status_code == 201, response.text
        (scope,) = response.json()["scopes"]
        assert scope["outcome"]["suppressions"] == 1
        assert await suppressed(client, world, ident("email", "x@xn--bcher-kva.example"))


class TestInvisibleCharacters:
    @pytest.mark.parametrize(("kind", "value"), INVISIBLE)
    async def test_refused_everywhere_with_422(
        self, client: AsyncClient, world: dict[str, Any], kind: str, value: str
    ) -> None:
        identity = ident(kind, value)
        acme = str(world["acme"].id)
        attempts = [
            (
                "/v1/records",
                {
                    "system": "crm",
                    "record_ref": "r-1",
                    "controller_id": acme,
                    "identities": [identity],
                    "categories": ["account.profile"],
                    "collected_at": "2026-01-01T00:00:00Z",
                },
            ),
            ("/v1/subjects/lookup", {"identities": [identity]}),
            ("/v1/legal-holds", {"reason": "matter", "identities": [identity]}),
            (
                "/v1/suppressions",
                {
                    "identity": identity,
                    "channel": "email",
                    "purpose": MARKETING,
                    "controller_id": acme,
                    "source": "manual",
                },
            ),
            (
                "/v1/suppressions/check",
                {
                    "identities": [identity],
                    "channel": "email",
                    "purpose": MARKETING,
                    "controller_id": acme,
                },
            ),
            (
                "/v1/requests",
                {"type": "access", "regime": "gdpr", "identities": [identity]},
            ),
        ]
        for url, body in attempts:
            response = await client.post(url, json=body, headers=world["admin"])
            assert response.status_code == 422, (url, response.text)
            assert value not in response.text


class TestHashesStoredUnderVersion1:
    """What an old deployment left behind: hashes of version-1 normal forms, labelled `k1`."""

    @pytest.mark.parametrize(("kind", "one", "other"), PAIRS)
    async def test_lookup_finds_an_old_record_under_either_spelling(
        self,
        client: AsyncClient,
        session: AsyncSession,
        world: dict[str, Any],
        kind: str,
        one: str,
        other: str,
    ) -> None:
        record_id = await register(client, world, ident(kind, one))
        await as_old_record(session, record_id, kind, one, world["acme"])
        assert await lookup(client, world, ident(kind, one)) == {record_id}
        assert await lookup(client, world, ident(kind, other)) == {record_id}

    @pytest.mark.parametrize(("kind", "one", "other"), PAIRS)
    async def test_new_hold_covers_an_old_record(
        self,
        client: AsyncClient,
        session: AsyncSession,
        world: dict[str, Any],
        kind: str,
        one: str,
        other: str,
    ) -> None:
        record_id = await register(client, world, ident(kind, one))
        await as_old_record(session, record_id, kind, one, world["acme"])
        hold_id = await place_hold(client, world, ident(kind, other))
        decision = await retention(client, world, record_id)
        assert decision["status"] == "held" and decision["holds"] == [hold_id]

    @pytest.mark.parametrize(("kind", "one", "other"), PAIRS)
    async def test_old_hold_covers_a_record_registered_now(
        self,
        client: AsyncClient,
        session: AsyncSession,
        world: dict[str, Any],
        kind: str,
        one: str,
        other: str,
    ) -> None:
        hold_id = await place_hold(client, world, ident(kind, one))
        held = uuid.UUID(hold_id)
        await session.execute(delete(LegalHoldIdentity).where(LegalHoldIdentity.hold_id == held))
        await session.execute(
            insert(LegalHoldIdentity).values(
                hold_id=held,
                identity_type=kind,
                digest=v1_digest(kind, one, world["acme"]),
                key_id="k1",
            )
        )
        await session.commit()
        record_id = await register(client, world, ident(kind, other))
        decision = await retention(client, world, record_id)
        assert decision["status"] == "held" and decision["holds"] == [hold_id]

    @pytest.mark.parametrize(("kind", "one", "other"), PAIRS)
    async def test_old_suppression_matches_and_moves_to_the_current_hash(
        self,
        client: AsyncClient,
        session: AsyncSession,
        world: dict[str, Any],
        kind: str,
        one: str,
        other: str,
    ) -> None:
        old = Suppression(
            identity_type=kind,
            digest=v1_digest(kind, one, world["acme"]),
            key_id="k1",
            channel="email",
            purpose=MARKETING,
            controller_id=world["acme"].id,
            source="unsubscribe_link",
        )
        session.add(old)
        await session.commit()
        assert await suppressed(client, world, ident(kind, one))
        assert await suppressed(client, world, ident(kind, other))
        # Sent again, the opt-out is the same one, now under the current hash.
        again = await suppress(client, world, ident(kind, other))
        assert again.status_code == 200 and again.json()["id"] == str(old.id)
        label = await session.scalar(select(Suppression.key_id).where(Suppression.id == old.id))
        assert label == "k1.n3"
        assert await suppressed(client, world, ident(kind, one))
        rows = await session.scalars(
            select(Suppression.id).where(Suppression.controller_id == world["acme"].id)
        )
        assert rows.all() == [old.id]

    async def test_without_the_legacy_version_old_hashes_of_other_spellings_stop_matching(
        self,
        client: AsyncClient,
        session: AsyncSession,
        world: dict[str, Any],
        settings: Settings,
        database: Database,
    ) -> None:
        record_id = await register(client, world, ident("email", "x@bücher.example"))
        await as_old_record(session, record_id, "email", "x@bücher.example", world["acme"])
        other = ident("email", "x@xn--bcher-kva.example")
        assert await lookup(client, world, other) == {record_id}
        current_only: FastAPI = create_app(
            settings.model_copy(update={"identity_legacy_versions": [2]}), database=database
        )
        async with AsyncClient(
            transport=ASGITransport(app=current_only), base_url="http://test"
        ) as later:
            assert await lookup(later, world, other) == set()
            # Hashes that versions 1 and 2 agree on (plain ASCII) match through version 2.
            plain = await register(later, world, ident("email", "Plain@Example.com"))
            await as_old_record(session, plain, "email", "Plain@Example.com", world["acme"])
            assert await lookup(later, world, ident("email", "plain@example.com")) == {plain}


class TestVersionReport:
    async def test_counts_hashes_per_version(
        self, client: AsyncClient, session: AsyncSession, world: dict[str, Any]
    ) -> None:
        from app.identities.service import version_report

        old = await register(client, world, ident("email", "x@bücher.example"))
        await as_old_record(session, old, "email", "x@bücher.example", world["acme"])
        await register(client, world, ident("email", "y@bücher.example"))
        await place_hold(client, world, ident("ip_address", "::ffff:192.0.2.9"))
        report = await version_report(session)
        records = report.counts["record_identities"]
        assert records[(1, "legacy")] == 1
        assert records[(3, "current")] == 1
        # The new record keeps its version-2 and version-1 hashes beside the current one.
        assert records[(2, "companion")] == 1
        assert records[(1, "companion")] >= 1
        holds = report.counts["legal_hold_identities"]
        assert holds[(3, "current")] == 1
        assert holds[(2, "companion")] == 1 and holds[(1, "companion")] == 1
        assert report.legacy_only(1) == 1
        assert report.as_dict()["legacy_only"] == {"1": 1, "2": 0}


@pytest.mark.parametrize(("kind", "one", "other"), PAIRS)
def test_the_frozen_version_1_here_is_the_app_s(kind: str, one: str, other: str) -> None:
    from app.core.identity import IdentityType, normalise_v1

    acme = Controller(id=uuid.UUID(int=7), kind="customer", name="Acme")
    for value in (one, other):
        expected = normalise_v1(IdentityType(kind), value, controller_id=acme.id)
        assert v1_normal(kind, value, acme) == expected
