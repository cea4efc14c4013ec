"""Suppressions: opt-outs per channel, purpose and controller, the check before every send,
tenancy, and no raw identity anywhere."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.audit.service import OPERATOR
from app.controllers.models import Controller
from app.core.config import Settings
from app.core.db import Database
from app.core.identity import BlindIndexer, IdentityType
from app.main import create_app
from app.suppressions.models import Suppression
from app.suppressions.service import suppress
from tests.builders import TEST_SUBJECT_KEY, make_controller, make_purpose, make_system
from tests.conftest import bearer
from tests.databases import fresh_database

URL = "/v1/suppressions"
CHECK = "/v1/suppressions/check"
MARKETING = "marketing.communications"
EMAIL = " Alice.OptOut@Example.COM "
PHONE = "(415) 555-0123"
RAW_VALUES = ["alice.optout@example.com", "Alice.OptOut@Example.COM", "4155550123", "+14155550123"]


def email(value: str = EMAIL) -> dict[str, str]:
    return {"type": "email", "value": value}


def phone(value: str = PHONE) -> dict[str, str]:
    return {"type": "phone", "value": value}


def opt_out(controller: Controller | None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"identity": email(), "channel": "email", "source": "unsubscribe_link"}
    if controller is not None:
        body["controller_id"] = str(controller.id)
    return body | fields


def asks(
    controller: Controller | None, *identities: dict[str, str], **fields: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"identities": list(identities) or [email()], "channel": "email"}
    if controller is not None:
        body["controller_id"] = str(controller.id)
    return body | fields


@pytest.fixture
async def marketing(session: AsyncSession) -> None:
    await make_purpose(session, MARKETING, legal_basis="consent")
    await make_purpose(session, "marketing.analytics", legal_basis="consent")


@pytest.fixture
async def spix(session: AsyncSession, marketing: None) -> Controller:
    return await make_controller(session, kind="platform", name="Spix")


@pytest.fixture
async def acme(session: AsyncSession, marketing: None) -> Controller:
    return await make_controller(session, name="Acme")


@pytest.fixture
async def globex(session: AsyncSession, marketing: None) -> Controller:
    return await make_controller(session, name="Globex")


@pytest.fixture
async def messaging(session: AsyncSession) -> dict[str, str]:
    await make_system(session, "messaging")
    return await bearer(session, "system", system_key="messaging")


async def is_suppressed(client: AsyncClient, headers: dict[str, str], body: dict[str, Any]) -> bool:
    response = await client.post(CHECK, json=body, headers=headers)
    assert response.status_code == 200, response.text
    suppressed: bool = response.json()["suppressed"]
    assert suppressed == bool(response.json()["matches"])
    return suppressed


def error_locs(response: Any) -> list[list[Any]]:
    return [e["loc"] for e in response.json()["errors"]]


class TestCreate:
    async def test_unauthenticated_is_401(self, client: AsyncClient, spix: Controller) -> None:
        assert (await client.post(URL, json=opt_out(spix))).status_code == 401

    async def test_auditor_may_not_create(
        self, client: AsyncClient, auditor: dict[str, str], spix: Controller
    ) -> None:
        assert (await client.post(URL, json=opt_out(spix), headers=auditor)).status_code == 403

    async def test_created_then_the_same_again_is_200(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession, spix: Controller
    ) -> None:
        first = await client.post(URL, json=opt_out(spix), headers=admin)
        assert first.status_code == 201, first.text
        body = first.json()
        assert set(body) == {
            "id",
            "identity_type",
            "digest",
            "channel",
            "purpose",
            "controller_id",
            "source",
            "request_id",
            "created_at",
        }
        assert body["identity_type"] == "email" and body["channel"] == "email"
        assert body["purpose"] == MARKETING and body["controller_id"] == str(spix.id)
        assert body["source"] == "unsubscribe_link" and body["request_id"] is None
        assert len(body["digest"]) == 64

        again = await client.post(URL, json=opt_out(spix, source="manual"), headers=admin)
        assert again.status_code == 200
        # The first opt-out stands, with its own source and time.
        assert again.json() == body
        rows = (await session.scalars(select(Suppression))).all()
        assert [row.id for row in rows] == [uuid.UUID(body["id"])]
        events = (
            await session.scalars(select(AuditEvent).where(AuditEvent.entity_type == "suppression"))
        ).all()
        assert [(e.event_type, e.entity_id) for e in events] == [
            ("suppression.created", body["id"])
        ]
        assert events[0].details["channel"] == "email"
        assert events[0].details["source"] == "unsubscribe_link"
        assert events[0].details["controller_id"] == str(spix.id)

    @pytest.mark.parametrize(
        ("first", "second"),
        [
            (email(" Alice.OptOut@Example.COM "), email("alice.optout@example.com")),
            (phone("(415) 555-0123"), phone("+1 415 555 0123")),
        ],
    )
    async def test_spellings_of_one_identity_are_one_suppression(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        spix: Controller,
        first: dict[str, str],
        second: dict[str, str],
    ) -> None:
        one = await client.post(URL, json=opt_out(spix, identity=first), headers=admin)
        two = await client.post(URL, json=opt_out(spix, identity=second), headers=admin)
        assert (one.status_code, two.status_code) == (201, 200)
        assert one.json()["id"] == two.json()["id"]

    async def test_each_channel_purpose_and_controller_is_its_own_suppression(
        self, client: AsyncClient, admin: dict[str, str], spix: Controller, acme: Controller
    ) -> None:
        bodies = [
            opt_out(spix),
            opt_out(spix, channel="all"),
            opt_out(spix, purpose="marketing.analytics"),
            opt_out(acme),
        ]
        responses = [await client.post(URL, json=b, headers=admin) for b in bodies]
        assert [r.status_code for r in responses] == [201] * 4
        assert len({r.json()["id"] for r in responses}) == 4

    async def test_system_key_creates_for_any_controller(
        self, client: AsyncClient, messaging: dict[str, str], acme: Controller
    ) -> None:
        stop = opt_out(acme, identity=phone(), channel="sms", source="sms_stop")
        response = await client.post(URL, json=stop, headers=messaging)
        assert response.status_code == 201
        assert response.json()["controller_id"] == str(acme.id)
        assert response.json()["identity_type"] == "phone"

    async def test_admin_must_name_the_controller(
        self, client: AsyncClient, admin: dict[str, str], spix: Controller
    ) -> None:
        response = await client.post(URL, json=opt_out(None), headers=admin)
        assert response.status_code == 422
        assert error_locs(response) == [["body", "controller_id"]]

    async def test_idempotency_key_replays_and_refuses_another_body(
        self, client: AsyncClient, admin: dict[str, str], spix: Controller
    ) -> None:
        headers = {**admin, "Idempotency-Key": "stop-1"}
        first = await client.post(URL, json=opt_out(spix), headers=headers)
        replay = await client.post(URL, json=opt_out(spix), headers=headers)
        assert first.status_code == replay.status_code == 201
        assert replay.json() == first.json()
        assert replay.headers["idempotent-replayed"] == "true"
        other = await client.post(URL, json=opt_out(spix, channel="sms"), headers=headers)
        assert other.status_code == 409

    @pytest.mark.parametrize(
        ("change", "loc"),
        [
            ({"purpose": "marketing.unknown"}, ["body", "purpose"]),
            ({"purpose": "Not A Key"}, ["body", "purpose"]),
            ({"controller_id": str(uuid.UUID(int=7))}, ["body", "controller_id"]),
            ({"channel": "fax"}, ["body", "channel"]),
            ({"source": "rumour"}, ["body", "source"]),
            ({"identity": phone("alice.optout@example.com")}, ["body", "identity", "value"]),
            ({"identity": email("Alice.OptOut at Example.COM")}, ["body", "identity", "value"]),
            ({"identity": {"type": "passport", "value": "+14155550123"}}, ["body", "identity"]),
            ({"identity": email("")}, ["body", "identity", "value"]),
            ({"surprise": 1}, ["body", "surprise"]),
        ],
    )
    async def test_bad_inputs_are_422_naming_the_field(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        session: AsyncSession,
        spix: Controller,
        change: dict[str, Any],
        loc: list[str],
    ) -> None:
        response = await client.post(URL, json=opt_out(spix, **change), headers=admin)
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert any(found[: len(loc)] == loc for found in error_locs(response)), response.text
        for raw in [*RAW_VALUES, "Alice.OptOut at Example.COM"]:
            assert raw not in response.text
        assert (await session.scalars(select(Suppression))).all() == []

    async def test_the_default_purpose_must_exist(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        # A database that was never seeded has no marketing purpose to default to.
        platform = await make_controller(session, kind="platform", name="Spix")
        response = await client.post(URL, json=opt_out(platform), headers=admin)
        assert response.status_code == 422
        assert error_locs(response) == [["body", "purpose"]]
        check = await client.post(CHECK, json=asks(None), headers=admin)
        assert check.status_code == 422
        assert error_locs(check) == [["body", "purpose"]]


class TestCheck:
    async def test_unauthenticated_is_401(self, client: AsyncClient, spix: Controller) -> None:
        assert (await client.post(CHECK, json=asks(spix))).status_code == 401

    async def test_an_opt_out_is_seen_at_once(
        self, client: AsyncClient, admin: dict[str, str], spix: Controller
    ) -> None:
        assert not await is_suppressed(client, admin, asks(None))
        created = (await client.post(URL, json=opt_out(spix), headers=admin)).json()
        response = await client.post(
            CHECK, json=asks(None, email("alice.optout@example.com")), headers=admin
        )
        assert response.status_code == 200
        assert response.json() == {
            "suppressed": True,
            "matches": [
                {
                    "id": created["id"],
                    "identity_type": "email",
                    "channel": "email",
                    "purpose": MARKETING,
                    "controller_id": str(spix.id),
                    "source": "unsubscribe_link",
                    "created_at": created["created_at"],
                }
            ],
        }

    async def test_all_covers_every_channel(
        self, client: AsyncClient, admin: dict[str, str], spix: Controller
    ) -> None:
        await client.post(URL, json=opt_out(spix, channel="all"), headers=admin)
        for channel in ("email", "sms", "voice"):
            assert await is_suppressed(client, admin, asks(spix, channel=channel)), channel

    async def test_one_channel_covers_only_itself(
        self, client: AsyncClient, admin: dict[str, str], spix: Controller
    ) -> None:
        await client.post(
            URL,
            json=opt_out(spix, identity=phone(), channel="sms", source="sms_stop"),
            headers=admin,
        )
        assert await is_suppressed(client, admin, asks(spix, phone(), channel="sms"))
        assert not await is_suppressed(client, admin, asks(spix, phone(), channel="voice"))
        assert not await is_suppressed(client, admin, asks(spix, phone(), channel="email"))

    async def test_purpose_scopes_the_opt_out(
        self, client: AsyncClient, admin: dict[str, str], spix: Controller
    ) -> None:
        await client.post(URL, json=opt_out(spix, purpose="marketing.analytics"), headers=admin)
        assert not await is_suppressed(client, admin, asks(spix))
        assert await is_suppressed(client, admin, asks(spix, purpose="marketing.analytics"))

    async def test_a_customers_sms_stop_is_not_spix_opt_out(
        self, client: AsyncClient, messaging: dict[str, str], spix: Controller, acme: Controller
    ) -> None:
        stop = opt_out(acme, identity=phone(), channel="sms", source="sms_stop")
        assert (await client.post(URL, json=stop, headers=messaging)).status_code == 201
        assert await is_suppressed(client, messaging, asks(acme, phone(), channel="sms"))
        assert not await is_suppressed(client, messaging, asks(None, phone(), channel="sms"))
        assert not await is_suppressed(client, messaging, asks(spix, phone(), channel="sms"))

    async def test_spix_opt_out_is_not_a_customers(
        self, client: AsyncClient, admin: dict[str, str], spix: Controller, acme: Controller
    ) -> None:
        await client.post(URL, json=opt_out(spix, channel="all"), headers=admin)
        assert await is_suppressed(client, admin, asks(None))
        assert not await is_suppressed(client, admin, asks(acme))

    async def test_any_of_the_identities_matches(
        self, client: AsyncClient, admin: dict[str, str], spix: Controller
    ) -> None:
        await client.post(URL, json=opt_out(spix, identity=phone(), channel="all"), headers=admin)
        others = [email("bob@example.com"), phone("+1 415 555 0123"), email()]
        response = await client.post(CHECK, json=asks(spix, *others), headers=admin)
        assert response.json()["suppressed"] is True
        assert [m["identity_type"] for m in response.json()["matches"]] == ["phone"]

    @pytest.mark.parametrize("role", ["auditor", "system"])
    async def test_every_role_may_check(
        self, client: AsyncClient, session: AsyncSession, spix: Controller, role: str
    ) -> None:
        binding: dict[str, Any] = {}
        if role == "system":
            binding["system_key"] = (await make_system(session, "marketing")).key
        headers = await bearer(session, role, **binding)
        assert not await is_suppressed(client, headers, asks(None))

    async def test_without_a_platform_controller_name_one(
        self, client: AsyncClient, admin: dict[str, str], acme: Controller
    ) -> None:
        response = await client.post(CHECK, json=asks(None), headers=admin)
        assert response.status_code == 422
        assert error_locs(response) == [["body", "controller_id"]]
        assert not await is_suppressed(client, admin, asks(acme))

    @pytest.mark.parametrize(
        ("change", "loc"),
        [
            ({"purpose": "marketing.unknown"}, ["body", "purpose"]),
            ({"controller_id": str(uuid.UUID(int=7))}, ["body", "controller_id"]),
            ({"channel": "all"}, ["body", "channel"]),
            ({"channel": "fax"}, ["body", "channel"]),
            ({"identities": []}, ["body", "identities"]),
            ({"identities": [email()] * 21}, ["body", "identities"]),
            (
                {"identities": [email(), phone("not a phone +1")]},
                ["body", "identities", 1, "value"],
            ),
            ({"identities": [phone("Alice.OptOut@Example.COM")]}, ["body", "identities", 0]),
        ],
    )
    async def test_bad_inputs_are_422_naming_the_field(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        spix: Controller,
        change: dict[str, Any],
        loc: list[Any],
    ) -> None:
        response = await client.post(CHECK, json=asks(None, **change), headers=admin)
        assert response.status_code == 422
        assert any(found[: len(loc)] == loc for found in error_locs(response)), response.text
        for raw in RAW_VALUES:
            assert raw not in response.text


class TestControllerKeys:
    async def test_creates_for_its_own_controller_only(
        self, client: AsyncClient, session: AsyncSession, acme: Controller, globex: Controller
    ) -> None:
        headers = await bearer(session, "controller", controller_id=acme.id)
        own = await client.post(URL, json=opt_out(None), headers=headers)
        assert own.status_code == 201
        assert own.json()["controller_id"] == str(acme.id)
        named = await client.post(URL, json=opt_out(acme), headers=headers)
        assert named.status_code == 200 and named.json()["id"] == own.json()["id"]
        other = await client.post(URL, json=opt_out(globex), headers=headers)
        assert other.status_code == 422
        assert error_locs(other) == [["body", "controller_id"]]

    async def test_checks_its_own_and_sees_nothing_of_others(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        session: AsyncSession,
        spix: Controller,
        acme: Controller,
        globex: Controller,
    ) -> None:
        for controller in (spix, acme, globex):
            await client.post(URL, json=opt_out(controller, channel="all"), headers=admin)
        headers = await bearer(session, "controller", controller_id=acme.id)
        mine = await client.post(CHECK, json=asks(None), headers=headers)
        assert mine.json()["suppressed"] is True
        assert {m["controller_id"] for m in mine.json()["matches"]} == {str(acme.id)}
        for other in (globex, spix):
            assert not await is_suppressed(client, headers, asks(other))

    async def test_lists_its_own_only(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession, acme: Controller
    ) -> None:
        globex = await make_controller(session, name="Globex")
        mine = (await client.post(URL, json=opt_out(acme), headers=admin)).json()
        await client.post(URL, json=opt_out(globex), headers=admin)
        headers = await bearer(session, "controller", controller_id=acme.id)
        listed = await client.get(URL, headers=headers)
        assert [s["id"] for s in listed.json()["items"]] == [mine["id"]]
        asked = await client.get(f"{URL}?controller_id={globex.id}", headers=headers)
        assert asked.status_code == 200 and asked.json()["items"] == []


class TestList:
    async def test_unauthenticated_is_401(self, client: AsyncClient) -> None:
        assert (await client.get(URL)).status_code == 401

    async def test_system_key_may_not_list(
        self, client: AsyncClient, messaging: dict[str, str]
    ) -> None:
        assert (await client.get(URL, headers=messaging)).status_code == 403

    async def test_auditor_reads_with_filters_and_pages(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        auditor: dict[str, str],
        spix: Controller,
        acme: Controller,
    ) -> None:
        bodies = [
            opt_out(spix),
            opt_out(spix, channel="all", source="gpc"),
            opt_out(spix, purpose="marketing.analytics"),
            opt_out(acme, identity=phone(), channel="sms", source="sms_stop"),
        ]
        ids = [(await client.post(URL, json=b, headers=admin)).json()["id"] for b in bodies]

        async def listed(query: str) -> set[str]:
            response = await client.get(f"{URL}?{query}", headers=auditor)
            assert response.status_code == 200, response.text
            return {s["id"] for s in response.json()["items"]}

        assert await listed("") == set(ids)
        assert await listed(f"controller_id={acme.id}") == {ids[3]}
        assert await listed("channel=all") == {ids[1]}
        assert await listed("purpose=marketing.analytics") == {ids[2]}
        assert await listed(f"source=unsubscribe_link&controller_id={spix.id}") == {ids[0], ids[2]}
        first = (await client.get(f"{URL}?limit=3", headers=auditor)).json()
        rest = (await client.get(f"{URL}?cursor={first['next_cursor']}", headers=auditor)).json()
        assert len(first["items"]) == 3 and len(rest["items"]) == 1
        assert rest["next_cursor"] is None
        assert {s["id"] for s in first["items"] + rest["items"]} == set(ids)

    @pytest.mark.parametrize("query", ["channel=fax", "source=rumour", "controller_id=x"])
    async def test_bad_filters_are_422(
        self, client: AsyncClient, admin: dict[str, str], query: str
    ) -> None:
        assert (await client.get(f"{URL}?{query}", headers=admin)).status_code == 422


class TestSuppressService:
    async def test_suppresses_several_identities_once_each(
        self, session: AsyncSession, spix: Controller
    ) -> None:
        indexer = BlindIndexer(TEST_SUBJECT_KEY.encode(), "k1")
        digests = [
            indexer.digest(IdentityType.email, "alice.optout@example.com"),
            indexer.digest(IdentityType.phone, PHONE),
            indexer.digest(IdentityType.email, EMAIL),
        ]
        fields: dict[str, Any] = {
            "channel": "all",
            "purpose": MARKETING,
            "controller_id": spix.id,
            "source": "request",
            "request_id": None,
            "actor": OPERATOR,
        }
        first = await suppress(session, digests=digests, **fields)
        assert [r.created for r in first] == [True, True]
        await session.commit()
        again = await suppress(session, digests=digests[1:], **fields)
        assert [r.created for r in again] == [False, False]
        assert {r.suppression.id for r in again} == {r.suppression.id for r in first}
        await session.commit()
        events = (
            await session.scalars(
                select(AuditEvent.event_type).where(AuditEvent.entity_type == "suppression")
            )
        ).all()
        assert events == ["suppression.created"] * 2
        assert await suppress(session, digests=[], **fields) == []


class TestNoRawIdentity:
    async def test_not_in_responses_audit_or_table(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        messaging: dict[str, str],
        session: AsyncSession,
        spix: Controller,
        acme: Controller,
    ) -> None:
        responses = [
            await client.post(URL, json=opt_out(spix), headers=admin),
            await client.post(URL, json=opt_out(spix), headers=admin),
            await client.post(
                URL,
                json=opt_out(acme, identity=phone(), channel="sms", source="sms_stop"),
                headers=messaging,
            ),
            await client.post(CHECK, json=asks(None, email(), phone()), headers=admin),
            await client.post(CHECK, json=asks(acme, phone(), channel="sms"), headers=messaging),
            await client.get(URL, headers=admin),
        ]
        assert [r.status_code for r in responses] == [201, 200, 201, 200, 200, 200]
        assert all(r.json()["suppressed"] for r in responses[3:5])
        stored = [
            tuple(row)
            for row in (await session.execute(select(Suppression.__table__))).all()  # type: ignore[arg-type]
        ]
        audit = [
            (e.entity_id, e.details)
            for e in (
                await session.scalars(
                    select(AuditEvent).where(AuditEvent.entity_type == "suppression")
                )
            ).all()
        ]
        assert len(stored) == 2 and len(audit) == 2
        haystack = " ".join(r.text for r in responses) + repr(stored) + repr(audit)
        for raw in RAW_VALUES:
            assert raw.lower() not in haystack.lower(), raw


async def test_concurrent_creates_make_one_suppression(backend: str, tmp_path: Path) -> None:
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        app = create_app(
            Settings(database_url=url, subject_key=TEST_SUBJECT_KEY, data_dir=tmp_path),
            database=database,
        )
        try:
            async with database.sessionmaker() as session:
                spix = await make_controller(session, kind="platform", name="Spix")
                await make_purpose(session, MARKETING, legal_basis="consent")
                admin = await bearer(session, "admin")
            async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
                responses = await asyncio.gather(
                    *(client.post(URL, json=opt_out(spix), headers=admin) for _ in range(8))
                )
            assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
            assert len({r.json()["id"] for r in responses}) == 1
            async with database.sessionmaker() as session:
                assert len((await session.scalars(select(Suppression.id))).all()) == 1
        finally:
            await database.dispose()
