"""Legal holds: scopes, blind-indexed identities, release, and who may touch them."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.core.identity import IdentityType
from app.legal_holds.models import LegalHold, LegalHoldIdentity, LegalHoldRecord
from tests.builders import make_category, make_controller, make_record, make_system
from tests.conftest import bearer

URL = "/v1/legal-holds"
REASON = "Litigation hold: matter 2026-117"
EMAIL = "Alice.Liddell@Example.COM"


def _error_fields(response: Response) -> set[Any]:
    return {loc for error in response.json()["errors"] for loc in error["loc"]}


async def _key_of(session: AsyncSession, role: str) -> dict[str, str]:
    if role == "system":
        return await bearer(session, role, system_key=(await make_system(session)).key)
    if role == "controller":
        return await bearer(session, role, controller_id=(await make_controller(session)).id)
    return await bearer(session, role)


async def _events(session: AsyncSession, entity_id: object) -> list[AuditEvent]:
    statement = select(AuditEvent).where(AuditEvent.entity_id == str(entity_id))
    return list((await session.scalars(statement.order_by(AuditEvent.seq))).all())


async def _a_record(session: AsyncSession, system: str) -> str:
    controller = await make_controller(session)
    await make_category(session, "support.ticket")
    record_id = await make_record(
        session, system=system, controller_id=controller.id, categories=["support.ticket"]
    )
    return str(record_id)


async def _place(client: AsyncClient, headers: dict[str, str], **scope: Any) -> dict[str, Any]:
    response = await client.post(URL, json={"reason": REASON, **scope}, headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


class TestPlace:
    async def test_unauthenticated_is_401(self, client: AsyncClient) -> None:
        assert (await client.post(URL, json={"reason": REASON, "system": "x"})).status_code == 401

    @pytest.mark.parametrize("role", ["auditor", "system", "controller"])
    async def test_only_admin_places(
        self, client: AsyncClient, session: AsyncSession, role: str
    ) -> None:
        system = await make_system(session)
        headers = await _key_of(session, role)
        body = {"reason": REASON, "system": system.key}
        assert (await client.post(URL, json=body, headers=headers)).status_code == 403
        assert (await session.scalars(select(LegalHold))).all() == []

    async def test_admin_places_a_full_scope(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        acme = await make_controller(session)
        system = await make_system(session, "billing")
        await make_category(session, "communications.sms_body")
        record_ids = sorted(
            [
                str(
                    await make_record(
                        session,
                        system="billing",
                        controller_id=acme.id,
                        categories=["communications.sms_body"],
                    )
                )
                for _ in range(3)
            ]
        )
        response = await client.post(
            URL,
            json={
                "reason": REASON,
                "controller_id": str(acme.id),
                "system": system.key,
                "category": "communications",
                "identities": [
                    {"type": "email", "value": EMAIL},
                    {"type": "phone", "value": "+1 650 253 0000"},
                    {"type": "external_id", "value": "contact-42"},
                ],
                # A repeated id is one id.
                "record_ids": [*record_ids, record_ids[0]],
            },
            headers=admin,
        )
        assert response.status_code == 201
        hold = response.json()
        assert response.headers["location"] == f"{URL}/{hold['id']}"
        assert hold["reason"] == REASON and hold["active"] is True
        assert hold["placed_at"] and hold["placed_by_key_id"]
        assert hold["released_at"] is None and hold["released_by_key_id"] is None
        assert hold["release_note"] is None
        scope = hold["scope"]
        assert scope["controller_id"] == str(acme.id)
        assert (scope["system"], scope["category"]) == ("billing", "communications")
        assert scope["record_ids"] == record_ids
        assert sorted(i["type"] for i in scope["identities"]) == ["email", "external_id", "phone"]
        assert all(set(i) == {"type", "digest"} for i in scope["identities"])
        assert all(len(i["digest"]) == 64 for i in scope["identities"])
        stored = (
            await session.scalars(
                select(LegalHoldRecord.record_id).where(
                    LegalHoldRecord.hold_id == uuid.UUID(hold["id"])
                )
            )
        ).all()
        assert sorted(str(r) for r in stored) == record_ids
        events = await _events(session, hold["id"])
        assert [e.event_type for e in events] == ["legal_hold.placed"]
        assert events[0].details == {
            "controller_id": str(acme.id),
            "system": "billing",
            "category": "communications",
            "identity_count": 3,
            "record_count": 3,
        }

    @pytest.mark.parametrize(
        "scope",
        [{}, {"identities": [], "record_ids": []}, {"controller_id": None, "system": None}],
    )
    async def test_no_scope_is_422(
        self, client: AsyncClient, admin: dict[str, str], scope: dict[str, object]
    ) -> None:
        response = await client.post(URL, json={"reason": REASON, **scope}, headers=admin)
        assert response.status_code == 422
        assert "scope" in response.json()["errors"][0]["msg"]

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"reason": "", "record_ids": [str(uuid.uuid4())]}, "reason"),
            ({"reason": "x" * 2001, "record_ids": [str(uuid.uuid4())]}, "reason"),
            ({"record_ids": [str(uuid.uuid4())]}, "reason"),
            ({"reason": REASON, "record_ids": ["not-a-uuid"]}, "record_ids"),
            (
                {"reason": REASON, "record_ids": [str(uuid.uuid4()) for _ in range(1001)]},
                "record_ids",
            ),
            (
                {
                    "reason": REASON,
                    "identities": [{"type": "user_id", "value": f"u{n}"} for n in range(101)],
                },
                "identities",
            ),
            ({"reason": REASON, "identities": [{"type": "shoe_size", "value": "9"}]}, "type"),
            ({"reason": REASON, "identities": [{"type": "email"}]}, "value"),
            ({"reason": REASON, "system": "Not_A_Key"}, "system"),
            ({"reason": REASON, "category": "Not A Key"}, "category"),
            ({"reason": REASON, "system": "billing", "surprise": 1}, "surprise"),
        ],
    )
    async def test_malformed_bodies_are_422(
        self, client: AsyncClient, admin: dict[str, str], body: dict[str, object], field: str
    ) -> None:
        response = await client.post(URL, json=body, headers=admin)
        assert response.status_code == 422
        assert field in _error_fields(response)

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("controller_id", "0b0e5a8e-6a0f-4d4e-9a53-5b1c9d2f7e12"),
            ("system", "no-such-system"),
            ("category", "no.such.category"),
        ],
    )
    async def test_unknown_references_are_422(
        self, client: AsyncClient, admin: dict[str, str], field: str, value: str
    ) -> None:
        response = await client.post(URL, json={"reason": REASON, field: value}, headers=admin)
        assert response.status_code == 422
        assert _error_fields(response) == {"body", field}

    async def test_idempotent_place(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        system = await make_system(session)
        headers = {**admin, "Idempotency-Key": "hold-1"}
        body = {"reason": REASON, "system": system.key}
        first = await client.post(URL, json=body, headers=headers)
        second = await client.post(URL, json=body, headers=headers)
        assert first.status_code == second.status_code == 201
        assert first.json()["id"] == second.json()["id"]
        assert len((await session.scalars(select(LegalHold))).all()) == 1


class TestIdentityPrivacy:
    async def test_unauthenticated_is_401(self, client: AsyncClient) -> None:
        body = {"reason": REASON, "identities": [{"type": "email", "value": EMAIL}]}
        assert (await client.post(URL, json=body)).status_code == 401

    async def test_an_email_is_kept_only_as_its_blind_index(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession, app: FastAPI
    ) -> None:
        spellings = [EMAIL, "  alice.liddell@example.com ", "ALICE.LIDDELL@EXAMPLE.COM"]
        response = await client.post(
            URL,
            json={
                "reason": REASON,
                "identities": [{"type": "email", "value": s} for s in spellings],
            },
            headers=admin,
        )
        assert response.status_code == 201
        hold = response.json()
        # Spellings that normalise alike are one identity.
        (identity,) = hold["scope"]["identities"]
        expected = app.state.indexer.digest(IdentityType.email, "alice.liddell@example.com")
        assert identity == {"type": "email", "digest": expected.digest}

        # The same subject in another hold, spelled otherwise, has the same digest.
        other = await _place(
            client, admin, identities=[{"type": "email", "value": "Alice.Liddell@example.com\t"}]
        )
        assert other["scope"]["identities"] == [identity]

        read = await client.get(f"{URL}/{hold['id']}", headers=admin)
        released = await client.post(f"{URL}/{hold['id']}/release", headers=admin)
        listed = await client.get(URL, headers=admin)
        rows = (await session.scalars(select(LegalHoldIdentity))).all()
        # The current hash, and beside it the legacy versions' (companions, never shown).
        every = app.state.indexer.all_digests(IdentityType.email, "alice.liddell@example.com")
        assert {(r.identity_type, r.digest) for r in rows} == {("email", d.digest) for d in every}
        assert {r.digest for r in rows if r.key_id == expected.key_id} == {expected.digest}
        holds = (await session.scalars(select(LegalHold))).all()
        events = (await session.scalars(select(AuditEvent))).all()
        assert {e.event_type for e in events} >= {"legal_hold.placed", "legal_hold.released"}
        stored = [
            *(
                repr({c: getattr(r, c) for c in ("identity_type", "digest", "key_id")})
                for r in rows
            ),
            *(repr(vars(h)) for h in holds),
            *(repr((e.event_type, e.entity_id, e.details)) for e in events),
        ]
        answered = [response.text, str(other), read.text, released.text, listed.text]
        for text in stored + answered:
            lowered = text.lower()
            assert "alice" not in lowered and "liddell" not in lowered, text

    async def test_a_bad_identity_is_422_without_its_value(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        identities = [
            {"type": "email", "value": "alice@example.com"},
            {"type": "email", "value": "secret-mailbox-without-domain"},
        ]
        response = await client.post(
            URL, json={"reason": REASON, "identities": identities}, headers=admin
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["body", "identities", 1]
        assert "secret-mailbox" not in response.text and "alice" not in response.text
        assert (await session.scalars(select(LegalHoldIdentity))).all() == []

    async def test_an_overlong_identity_is_422_without_its_value(
        self, client: AsyncClient, admin: dict[str, str]
    ) -> None:
        value = "secret" + "x" * 320 + "@example.com"
        body = {"reason": REASON, "identities": [{"type": "email", "value": value}]}
        response = await client.post(URL, json=body, headers=admin)
        assert response.status_code == 422
        assert "secretxxx" not in response.text

    async def test_external_id_needs_the_controller(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        identities = [{"type": "external_id", "value": "contact-42"}]
        response = await client.post(
            URL, json={"reason": REASON, "identities": identities}, headers=admin
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["body", "identities", 0]
        assert "contact-42" not in response.text
        acme = await make_controller(session)
        other = await make_controller(session)
        mine = await _place(client, admin, controller_id=str(acme.id), identities=identities)
        theirs = await _place(client, admin, controller_id=str(other.id), identities=identities)
        # A contact id means something only within its customer: two customers, two digests.
        assert mine["scope"]["identities"] != theirs["scope"]["identities"]


class TestRead:
    async def test_unauthenticated_is_401(self, client: AsyncClient) -> None:
        assert (await client.get(URL)).status_code == 401
        assert (await client.get(f"{URL}/{uuid.uuid4()}")).status_code == 401

    @pytest.mark.parametrize("role", ["system", "controller"])
    async def test_system_and_controller_keys_are_403(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession, role: str
    ) -> None:
        system = await make_system(session)
        hold = await _place(client, admin, system=system.key)
        headers = await _key_of(session, role)
        assert (await client.get(URL, headers=headers)).status_code == 403
        assert (await client.get(f"{URL}/{hold['id']}", headers=headers)).status_code == 403

    async def test_auditor_reads(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        auditor: dict[str, str],
        session: AsyncSession,
    ) -> None:
        system = await make_system(session)
        hold = await _place(
            client,
            admin,
            system=system.key,
            identities=[{"type": "user_id", "value": "u-1"}],
            record_ids=[await _a_record(session, system.key)],
        )
        read = await client.get(f"{URL}/{hold['id']}", headers=auditor)
        assert read.status_code == 200 and read.json() == hold
        listed = await client.get(URL, headers=auditor)
        assert listed.json()["items"] == [hold]

    async def test_active_filter_and_pages(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        system = await make_system(session)
        holds = [await _place(client, admin, system=system.key) for _ in range(4)]
        released = holds[1]["id"]
        assert (await client.post(f"{URL}/{released}/release", headers=admin)).status_code == 200
        active = (await client.get(f"{URL}?active=true", headers=admin)).json()["items"]
        assert {h["id"] for h in active} == {h["id"] for h in holds} - {released}
        inactive = (await client.get(f"{URL}?active=false", headers=admin)).json()["items"]
        assert [h["id"] for h in inactive] == [released]
        first = (await client.get(f"{URL}?limit=3", headers=admin)).json()
        second = (
            await client.get(f"{URL}?limit=3&cursor={first['next_cursor']}", headers=admin)
        ).json()
        assert len(first["items"]) == 3 and len(second["items"]) == 1
        assert second["next_cursor"] is None
        assert {h["id"] for h in first["items"] + second["items"]} == {h["id"] for h in holds}

    async def test_bad_filter_is_422(self, client: AsyncClient, admin: dict[str, str]) -> None:
        assert (await client.get(f"{URL}?active=maybe", headers=admin)).status_code == 422

    async def test_unknown_and_malformed_ids(
        self, client: AsyncClient, admin: dict[str, str]
    ) -> None:
        assert (await client.get(f"{URL}/{uuid.uuid4()}", headers=admin)).status_code == 404
        assert (await client.get(f"{URL}/not-a-uuid", headers=admin)).status_code == 422


class TestRelease:
    async def test_unauthenticated_is_401(self, client: AsyncClient) -> None:
        assert (await client.post(f"{URL}/{uuid.uuid4()}/release")).status_code == 401

    @pytest.mark.parametrize("role", ["auditor", "system", "controller"])
    async def test_only_admin_releases(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession, role: str
    ) -> None:
        system = await make_system(session)
        hold = await _place(client, admin, system=system.key)
        headers = await _key_of(session, role)
        response = await client.post(f"{URL}/{hold['id']}/release", headers=headers)
        assert response.status_code == 403
        assert (await client.get(f"{URL}/{hold['id']}", headers=admin)).json()["active"] is True

    async def test_release_with_a_note(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        system = await make_system(session)
        hold = await _place(
            client, admin, system=system.key, record_ids=[await _a_record(session, system.key)]
        )
        response = await client.post(
            f"{URL}/{hold['id']}/release", json={"note": "Matter settled"}, headers=admin
        )
        assert response.status_code == 200
        released = response.json()
        assert released["active"] is False and released["released_at"]
        assert released["released_by_key_id"] == hold["placed_by_key_id"]
        assert released["release_note"] == "Matter settled"
        assert released["scope"] == hold["scope"]
        assert (await client.get(f"{URL}/{hold['id']}", headers=admin)).json() == released
        events = await _events(session, hold["id"])
        assert [e.event_type for e in events] == ["legal_hold.placed", "legal_hold.released"]
        assert events[1].details["system"] == system.key
        assert events[1].details["record_count"] == 1

    async def test_releasing_twice_is_409(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        system = await make_system(session)
        hold = await _place(client, admin, system=system.key)
        url = f"{URL}/{hold['id']}/release"
        first = await client.post(url, headers=admin)
        assert first.status_code == 200 and first.json()["release_note"] is None
        again = await client.post(url, json={"note": "again"}, headers=admin)
        assert again.status_code == 409
        assert (await client.get(f"{URL}/{hold['id']}", headers=admin)).json() == first.json()

    @pytest.mark.parametrize("body", [{"note": "x" * 2001}, {"note": ""}, {"surprise": 1}])
    async def test_bad_release_body_is_422(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        session: AsyncSession,
        body: dict[str, object],
    ) -> None:
        system = await make_system(session)
        hold = await _place(client, admin, system=system.key)
        response = await client.post(f"{URL}/{hold['id']}/release", json=body, headers=admin)
        assert response.status_code == 422

    async def test_unknown_hold_is_404(self, client: AsyncClient, admin: dict[str, str]) -> None:
        response = await client.post(f"{URL}/{uuid.uuid4()}/release", headers=admin)
        assert response.status_code == 404

    async def test_holds_are_never_deleted(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        system = await make_system(session)
        hold = await _place(client, admin, system=system.key)
        response = await client.delete(f"{URL}/{hold['id']}", headers=admin)
        assert response.status_code == 405
        assert await session.get(LegalHold, uuid.UUID(hold["id"])) is not None


async def test_unknown_record_ids_are_422(client: AsyncClient, admin: dict[str, str]) -> None:
    import uuid as _uuid

    response = await client.post(
        "/v1/legal-holds",
        json={"reason": "claim", "record_ids": [str(_uuid.uuid4())]},
        headers=admin,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "record_ids", 0]
