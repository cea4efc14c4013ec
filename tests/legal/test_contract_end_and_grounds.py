"""Issue 11, items 1 and 2, through the API on both databases.

1. The end of a customer's agreement (its controller's effective_until) is a delete-by date
   the engine applies by itself (GDPR Art. 28(3)(g)): no customer setting outranks it, a law
   minimum still keeps, and changing the date recomputes the customer's records.
2. A withheld record's grounds cite the request's own law: a law minimum the legal-obligation
   exemption, a legal hold the legal-claims one, a CCPA request never a GDPR article; a
   contractual minimum is no exemption and waits for a person; a subject's own restriction
   gives way to their later erasure request.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.retention import policy
from tests.builders import make_category, make_controller, make_record, make_rule, make_system
from tests.conftest import bearer

ALICE = [{"type": "email", "value": "alice@example.com"}]
BOB = [{"type": "email", "value": "bob@example.com"}]
# Collected on a month's end, so the dates below also check calendar arithmetic.
COLLECTED = "2026-01-31T10:00:00Z"


@pytest.fixture
async def acme(session: AsyncSession) -> dict[str, Any]:
    """Spix, its customer Acme with its own 5-year setting on communications, and a system."""
    await make_controller(session, kind="platform", name="Spix")
    acme = await make_controller(session, name="Acme")
    await make_system(session, "messaging")
    await make_category(session, "communications.sms_body")
    await make_category(session, "communications.recording")
    # The platform's own default would delete after a year: Acme's setting outranks it.
    await make_rule(session, kind="maximum", period="P1Y", category="communications")
    await make_rule(
        session,
        kind="maximum",
        period="P5Y",
        category="communications",
        source="customer_setting",
        controller_id=acme.id,
    )
    return {"acme": acme}


async def _register(
    client: AsyncClient, admin: dict[str, str], controller_id: uuid.UUID, category: str
) -> str:
    body = {
        "system": "messaging",
        "record_ref": f"msg-{uuid.uuid4().hex[:8]}",
        "controller_id": str(controller_id),
        "identities": ALICE,
        "categories": [category],
        "collected_at": COLLECTED,
    }
    response = await client.post("/v1/records", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _retention(client: AsyncClient, admin: dict[str, str], record_id: str) -> Any:
    response = await client.get(f"/v1/records/{record_id}/retention", headers=admin)
    assert response.status_code == 200, response.text
    return response.json()


async def _end_agreement(
    client: AsyncClient, admin: dict[str, str], controller_id: uuid.UUID, until: str | None
) -> None:
    url = f"/v1/controllers/{controller_id}"
    etag = (await client.get(url, headers=admin)).headers["ETag"]
    response = await client.patch(
        url, json={"effective_until": until}, headers={**admin, "If-Match": etag}
    )
    assert response.status_code == 200, response.text


class TestContractEnd:
    async def test_the_end_of_the_agreement_outranks_the_customers_setting(
        self, client: AsyncClient, admin: dict[str, str], acme: dict[str, Any]
    ) -> None:
        record = await _register(client, admin, acme["acme"].id, "communications.sms_body")
        before = await _retention(client, admin, record)
        # Acme's own setting decides while its agreement runs.
        assert before["delete_by"] == "2031-01-31T10:00:00Z"
        assert before["contract_ends_at"] is None

        # The agreement ended on 31 January 2026: delete by then plus the 30 days of grace,
        # whatever Acme's setting says. No system reported any event.
        await _end_agreement(client, admin, acme["acme"].id, "2026-01-31")
        ended = await _retention(client, admin, record)
        assert ended["delete_by"] == "2026-03-02T00:00:00Z"
        assert ended["contract_ends_at"] == "2026-03-02T00:00:00Z"
        assert (ended["status"], ended["action"]) == ("due", "delete")
        due = await client.get("/v1/retention/due", headers=admin)
        assert record in [item["id"] for item in due.json()["items"]]

        # Moved to an end later than the setting's: the setting's earlier date wins again.
        await _end_agreement(client, admin, acme["acme"].id, "2099-12-31")
        later = await _retention(client, admin, record)
        assert later["delete_by"] == "2031-01-31T10:00:00Z"
        assert later["contract_ends_at"] == "2100-01-30T00:00:00Z"

        # Moved to a date before it, then taken away: each change recomputes the record.
        await _end_agreement(client, admin, acme["acme"].id, "2030-02-28")
        assert (await _retention(client, admin, record))["delete_by"] == "2030-03-30T00:00:00Z"
        await _end_agreement(client, admin, acme["acme"].id, None)
        back = await _retention(client, admin, record)
        assert back["delete_by"] == "2031-01-31T10:00:00Z"
        assert back["contract_ends_at"] is None

    async def test_a_record_registered_after_the_end_gets_the_end_too(
        self, client: AsyncClient, admin: dict[str, str], acme: dict[str, Any]
    ) -> None:
        await _end_agreement(client, admin, acme["acme"].id, "2026-01-31")
        record = await _register(client, admin, acme["acme"].id, "communications.recording")
        assert (await _retention(client, admin, record))["delete_by"] == "2026-03-02T00:00:00Z"

    async def test_a_law_minimum_still_keeps_and_a_contract_minimum_does_not(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        acme: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        await make_rule(
            session,
            kind="minimum",
            period="P10Y",
            category="communications.recording",
            source="law",
            citation="a recording-keeping statute",
        )
        # Kept while the account is open: waits for an event no system reports.
        await make_rule(
            session,
            kind="minimum",
            period="P30D",
            anchor="event:account_closed",
            category="communications.sms_body",
            source="contract",
        )
        recording = await _register(client, admin, acme["acme"].id, "communications.recording")
        sms = await _register(client, admin, acme["acme"].id, "communications.sms_body")
        assert (await _retention(client, admin, sms))["keep_indefinitely"] is True

        await _end_agreement(client, admin, acme["acme"].id, "2026-01-31")
        kept = await _retention(client, admin, recording)
        assert kept["keep_until"] == kept["delete_by"] == "2036-01-31T10:00:00Z"
        assert kept["status"] == "retain"
        ended = await _retention(client, admin, sms)
        assert ended["keep_indefinitely"] is False
        assert ended["keep_until"] == ended["delete_by"] == "2026-03-02T00:00:00Z"
        assert ended["status"] == "due"

    async def test_changing_the_end_is_audited_with_the_records_recomputed(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        acme: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        await _register(client, admin, acme["acme"].id, "communications.sms_body")
        await _end_agreement(client, admin, acme["acme"].id, "2026-01-31")
        event = (
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.event_type == "controller.updated")
                .order_by(AuditEvent.seq.desc())
            )
        ).first()
        assert event is not None
        assert event.details["records_recomputed"] == 1


@pytest.fixture
async def spix(session: AsyncSession) -> dict[str, Any]:
    """Spix's own data on Alice: an invoice a law keeps, a profile her open account keeps,
    usage data nothing keeps, and support notes held for litigation."""
    platform = await make_controller(session, kind="platform", name="Spix")
    for key in ("accounts", "billing", "analytics", "support"):
        await make_system(session, key)
    for key in ("account.profile", "billing.invoice", "usage.events", "support.ticket"):
        await make_category(session, key)
    await make_rule(
        session,
        kind="minimum",
        period="P10Y",
        category="billing.invoice",
        source="law",
        citation="26 U.S.C. 6001",
    )
    await make_rule(
        session,
        kind="minimum",
        period="P30D",
        anchor="event:account_closed",
        category="account.profile",
        source="contract",
    )

    async def record(system: str, category: str, identities: list[dict[str, str]]) -> str:
        return str(
            await make_record(
                session,
                system=system,
                controller_id=platform.id,
                categories=[category],
                identities=identities,
            )
        )

    return {
        "platform": platform,
        "invoice": await record("billing", "billing.invoice", ALICE),
        "profile": await record("accounts", "account.profile", ALICE),
        "usage": await record("analytics", "usage.events", ALICE),
        "ticket": await record("support", "support.ticket", ALICE),
        "keys": {
            system: await bearer(session, "system", system_key=system)
            for system in ("accounts", "billing", "analytics", "support")
        },
    }


async def _file(
    client: AsyncClient, admin: dict[str, str], kind: str, regime: str = "gdpr", **body: Any
) -> Any:
    response = await client.post(
        "/v1/requests",
        json={
            "type": kind,
            "regime": regime,
            "identities": body.pop("identities", ALICE),
            "verified": True,
            **body,
        },
        headers=admin,
    )
    assert response.status_code == 201, response.text
    return response.json()


def _withheld(request: Any) -> dict[str, list[dict[str, Any]]]:
    (scope,) = request["scopes"]
    return {w["record_id"]: w["grounds"] for w in scope["outcome"]["withheld"]}


async def _hold_support(client: AsyncClient, admin: dict[str, str]) -> None:
    response = await client.post(
        "/v1/legal-holds", json={"reason": "litigation", "system": "support"}, headers=admin
    )
    assert response.status_code == 201, response.text


class TestGroundsCiteTheRequestsLaw:
    async def test_a_ccpa_erasure_cites_the_civil_code_and_no_gdpr_article(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        await _hold_support(client, admin)
        request = await _file(client, admin, "erasure", "ccpa")
        grounds = _withheld(request)
        (invoice,) = grounds[spix["invoice"]]
        assert invoice["ground"] == "legal_obligation"
        assert invoice["basis"] == "Cal. Civ. Code §1798.105(d)(8)"
        assert (invoice["exemption"], invoice["citation"]) == (True, "26 U.S.C. 6001")
        (ticket,) = grounds[spix["ticket"]]
        assert ticket["ground"] == "legal_hold" and "§1798.105(d)(8)" in ticket["basis"]
        assert "Art." not in str(request["scopes"][0]["outcome"])
        assert "GDPR" not in str(request["scopes"][0]["outcome"])

    @pytest.mark.parametrize(
        ("regime", "obligation", "claims"),
        [
            ("gdpr", "GDPR Art. 17(3)(b)", "GDPR Art. 17(3)(e)"),
            ("uk_gdpr", "UK GDPR Art. 17(3)(b)", "UK GDPR Art. 17(3)(e)"),
            ("lgpd", "LGPD Art. 16, I", "LGPD Art. 7, VI"),
        ],
    )
    async def test_gdpr_style_erasures_cite_17_3_b_and_e(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        spix: dict[str, Any],
        regime: str,
        obligation: str,
        claims: str,
    ) -> None:
        await _hold_support(client, admin)
        grounds = _withheld(await _file(client, admin, "erasure", regime))
        assert [g["basis"] for g in grounds[spix["invoice"]]] == [obligation]
        assert [g["basis"] for g in grounds[spix["ticket"]]] == [claims]

    async def test_only_a_law_rule_cites_the_legal_obligation_exemption(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        grounds = _withheld(await _file(client, admin, "erasure", "ccpa"))
        (profile,) = grounds[spix["profile"]]
        assert profile["ground"] == "contractual_minimum"
        assert (profile["exemption"], profile["basis"]) == (False, None)
        assert profile["explanation"].startswith("Not an exemption")
        assert "Closing the account ends this" in profile["explanation"]


class TestContractualMinimumGoesToAPerson:
    async def test_the_scope_waits_for_a_person_then_closes(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        spix: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        request = await _file(client, admin, "erasure")
        (scope,) = request["scopes"]
        assert scope["outcome"]["needs_person"] == [spix["profile"]]
        # The usage data goes; the scope stays open even when its erase work is done.
        (task,) = (
            await client.post("/v1/tasks/claim", json={}, headers=spix["keys"]["analytics"])
        ).json()["tasks"]
        done = await client.post(
            f"/v1/tasks/{task['id']}/complete", json={}, headers=spix["keys"]["analytics"]
        )
        assert done.status_code == 200, done.text
        now = (await client.get(f"/v1/requests/{request['id']}", headers=admin)).json()
        assert (now["status"], now["scopes"][0]["status"]) == ("in_progress", "in_progress")
        actions = set(
            (
                await session.scalars(
                    select(AuditEvent.event_type).where(
                        AuditEvent.subject_request_id == uuid.UUID(request["id"])
                    )
                )
            ).all()
        )
        assert "request_scope.needs_person" in actions

        closed = await client.post(
            f"/v1/requests/{request['id']}/scopes/{spix['platform'].id}/decision",
            json={
                "decision": "handled_by_controller",
                "reason": "subject told that closing the account erases the profile",
            },
            headers=admin,
        )
        assert closed.status_code == 200, closed.text
        assert closed.json()["status"] == "completed"

    async def test_no_person_is_needed_when_only_exemptions_keep_records(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        # Alice's account is closed: the contract minimum has run out long ago.
        patched = await client.patch(
            f"/v1/records/{spix['profile']}",
            json={"events": {"account_closed": "2026-01-02T00:00:00Z"}},
            headers=admin,
        )
        assert patched.status_code == 200, patched.text
        request = await _file(client, admin, "erasure")
        (scope,) = request["scopes"]
        assert "needs_person" not in scope["outcome"]
        assert list(_withheld(request)) == [spix["invoice"]]


class TestOwnRestrictionGivesWayToErasure:
    async def test_the_subjects_restriction_is_lifted_by_their_erasure(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        spix: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        restriction = await _file(client, admin, "restriction")
        usage = await client.get(f"/v1/records/{spix['usage']}", headers=admin)
        assert usage.json()["state"] == "restricted"

        erasure = await _file(client, admin, "erasure")
        (scope,) = erasure["scopes"]
        assert spix["usage"] in scope["outcome"]["restrictions_lifted"]
        assert spix["usage"] not in _withheld(erasure)
        # The invoice stays: a law keeps it, so its restriction is not lifted either.
        assert spix["invoice"] not in scope["outcome"]["restrictions_lifted"]
        invoice = await client.get(f"/v1/records/{spix['invoice']}", headers=admin)
        assert invoice.json()["state"] == "restricted"

        tasks = (
            await client.post("/v1/tasks/claim", json={}, headers=spix["keys"]["analytics"])
        ).json()["tasks"]
        erase = [t for t in tasks if t["action"] == "erase"]
        assert len(erase) == 1 and len(erase[0]["record_refs"]) == 1
        done = await client.post(
            f"/v1/tasks/{erase[0]['id']}/complete", json={}, headers=spix["keys"]["analytics"]
        )
        assert done.status_code == 200, done.text
        gone = await client.get(f"/v1/records/{spix['usage']}", headers=admin)
        assert gone.json()["state"] == "erased"
        lifted = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.event_type == "request_scope.restriction_lifted"
                )
            )
        ).one()
        assert lifted.details["records"] == scope["outcome"]["restrictions_lifted"]
        assert restriction["id"] != erasure["id"]

    async def test_someone_elses_restriction_does_not_give_way(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        spix: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        shared = str(
            await make_record(
                session,
                system="analytics",
                controller_id=spix["platform"].id,
                categories=["usage.events"],
                identities=[*ALICE, *BOB],
            )
        )
        await _file(client, admin, "restriction", identities=BOB)
        erasure = await _file(client, admin, "erasure")
        (scope,) = erasure["scopes"]
        assert shared not in scope["outcome"].get("restrictions_lifted", [])
        assert [g["ground"] for g in _withheld(erasure)[shared]] == ["restricted"]


class TestContractEndInThePolicy:
    """The pure precedence (app/retention/policy.py), on DESIGN-style worked examples."""

    FACTS = policy.RecordFacts(
        categories=("communications.sms_body",),
        purposes=(),
        controller_id="acme",
        system="messaging",
        region=None,
        collected_at=datetime(2026, 1, 31, tzinfo=UTC),
    )
    END = datetime(2026, 3, 2, tzinfo=UTC)
    NOW = datetime(2026, 12, 1, tzinfo=UTC)

    def _rule(self, **fields: Any) -> policy.Rule:
        fields["period"] = policy.parse_period(fields.pop("period", "P5Y"))
        return policy.Rule(
            id=uuid.uuid4().hex,
            kind=fields.pop("kind", "maximum"),
            anchor=fields.pop("anchor", "collected_at"),
            **fields,
        )

    def _decide(self, *rules: policy.Rule, end: datetime | None = END) -> policy.Decision:
        group = policy.group_rules(rules, self.FACTS, end)
        return policy.resolve(group, self.FACTS, [], self.NOW)

    def test_an_anonymizing_setting_ending_the_same_day_still_deletes(self) -> None:
        tie = self._rule(period="P30D", action="anonymize", controller_id="acme")
        assert self._decide(tie, end=None).action == "anonymize"
        decided = self._decide(tie)
        assert (decided.delete_by, decided.action) == (self.END, "delete")

    def test_a_law_minimum_waiting_for_its_event_still_keeps_indefinitely(self) -> None:
        law = self._rule(kind="minimum", anchor="event:closed", source="law")
        contract = self._rule(kind="minimum", anchor="event:closed", source="contract")
        assert self._decide(law).keep_indefinitely is True
        ended = self._decide(contract, self._rule(source="customer_setting"))
        assert (ended.keep_indefinitely, ended.keep_until, ended.delete_by) == (
            False,
            self.END,
            self.END,
        )
        assert ended.status == "due"
