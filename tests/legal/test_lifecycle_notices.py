# ruff: noqa: F811  (the shared `spix` fixture is imported, then named as a parameter)
"""Item 3 (notices and deadlines) and item 6 (processor instructions), through HTTP on both
databases, with the regime each concerns."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.requests import clocks
from app.requests.clocks import clocks_from_overrides, deadlines, resumed_due
from tests.requests.conftest import file, spix  # noqa: F401


def ts(day: str) -> datetime:
    return datetime.fromisoformat(f"{day}T10:00:00+00:00").astimezone(UTC)


# UK GDPR Art. 12A: (received, evidence arrived, due). The period runs whole from arrival.
UK_PAUSE = [
    # the case the old arithmetic made a day late: 28 Feb + 1 day = 1 Mar
    ("2026-01-29", "2026-01-30", "2026-02-28"),
    ("2026-01-31", "2026-02-28", "2026-03-28"),
    ("2024-01-02", "2024-01-31", "2024-02-29"),  # leap year month end
    ("2026-03-15", "2026-03-31", "2026-04-30"),
    ("2026-12-20", "2026-12-31", "2027-01-31"),  # across the year
    ("2026-05-31", "2026-05-31", "2026-06-30"),  # evidence with the request: no pause
]


class TestUkPause:
    @pytest.mark.parametrize(("received", "arrived", "due"), UK_PAUSE)
    def test_due_is_one_month_from_the_evidence(
        self, received: str, arrived: str, due: str
    ) -> None:
        assert resumed_due("uk_gdpr", "access", ts(arrived)) == ts(due)

    def test_the_old_shift_was_a_day_late(self) -> None:
        original = deadlines("uk_gdpr", "access", ts("2026-01-29")).due_at
        shifted = clocks.paused_due(original, ts("2026-01-29"), ts("2026-01-30"))
        assert shifted == ts("2026-03-01")
        assert resumed_due("uk_gdpr", "access", ts("2026-01-30")) == ts("2026-02-28")

    async def test_paused_request_is_not_overdue_then_due_from_evidence(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        created = await file(client, admin, regime="uk_gdpr", received_at="2026-01-29T10:00:00Z")
        assert created["clock_paused_at"] is not None
        assert created["overdue"] is False
        listed = (await client.get("/v1/requests?overdue=true", headers=admin)).json()["items"]
        assert created["id"] not in [r["id"] for r in listed]
        verified = await client.post(
            f"/v1/requests/{created['id']}/verify",
            json={
                "method": "manual",
                "note": "passport copy by post",
                "evidence_received_at": "2026-01-30T10:00:00Z",
            },
            headers=admin,
        )
        assert verified.status_code == 200, verified.text
        assert verified.json()["due_at"] == "2026-02-28T10:00:00Z"
        assert verified.json()["clock_paused_at"] is None

    async def test_gdpr_does_not_pause(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        created = await file(client, admin, regime="gdpr", received_at="2026-01-29T10:00:00Z")
        assert created["clock_paused_at"] is None and created["overdue"] is True


class TestExtension:
    async def test_refused_once_the_original_deadline_passed(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        late = await file(client, admin, regime="ccpa", received_at="2026-10-01T00:00:00Z")
        response = await client.post(
            f"/v1/requests/{late['id']}/extend",
            json={"reason": "complex", "subject_notified_at": "2026-10-20T00:00:00Z"},
            headers=admin,
        )
        assert response.status_code == 409, response.text

    async def test_needs_the_date_the_subject_was_told_and_shows_it(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        created = await file(client, admin, regime="gdpr", received_at="2026-11-20T00:00:00Z")
        url = f"/v1/requests/{created['id']}/extend"
        missing = await client.post(url, json={"reason": "complex"}, headers=admin)
        assert missing.status_code == 422
        early = await client.post(
            url,
            json={"reason": "complex", "subject_notified_at": "2026-11-19T00:00:00Z"},
            headers=admin,
        )
        assert early.status_code == 422
        done = await client.post(
            url,
            json={"reason": "complex", "subject_notified_at": "2026-11-25T00:00:00Z"},
            headers=admin,
        )
        assert done.status_code == 200, done.text
        assert done.json()["extension_notified_at"] == "2026-11-25T00:00:00Z"
        assert done.json()["extended_due_at"] == "2027-02-20T00:00:00Z"


class TestAcknowledgement:
    async def test_late_ones_listed_counted_and_recorded(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        late = await file(client, admin, regime="ccpa", received_at="2026-11-02T09:00:00Z")
        await file(client, admin, regime="ccpa")  # acknowledge_by still ahead
        await file(client, admin, regime="gdpr", received_at="2026-11-02T09:00:00Z")
        assert late["acknowledgement_overdue"] is True
        url = "/v1/requests?acknowledgement_overdue=true"
        listed = (await client.get(url, headers=admin)).json()["items"]
        assert [r["id"] for r in listed] == [late["id"]]
        metrics = (await client.get("/metrics")).text
        assert 'spix_dsr_requests_acknowledgement_overdue{regime="ccpa"} 1.0' in metrics
        acked = await client.post(
            f"/v1/requests/{late['id']}/acknowledge",
            json={"acknowledged_at": "2026-11-20T00:00:00Z"},
            headers=admin,
        )
        assert acked.status_code == 200, acked.text
        assert acked.json()["acknowledged_at"] == "2026-11-20T00:00:00Z"
        assert acked.json()["acknowledgement_overdue"] is False
        assert (await client.get(url, headers=admin)).json()["items"] == []
        again = await client.post(f"/v1/requests/{late['id']}/acknowledge", headers=admin)
        assert again.status_code == 409
        metrics = (await client.get("/metrics")).text
        assert 'spix_dsr_requests_acknowledgement_overdue{regime="ccpa"} 0.0' in metrics


class TestComplaintRights:
    @pytest.mark.parametrize(
        ("regime", "authority", "basis"),
        [
            ("gdpr", "supervisory authority", "Art. 77"),
            ("uk_gdpr", "Information Commissioner", "Art. 77"),
            ("ccpa", "California Privacy Protection Agency", "1798"),
            ("lgpd", "ANPD", "Art. 18"),
        ],
    )
    async def test_every_denial_states_where_to_complain(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        spix: dict[str, Any],
        regime: str,
        authority: str,
        basis: str,
    ) -> None:
        created = await file(client, admin, regime=regime)
        denied = await client.post(
            f"/v1/requests/{created['id']}/deny",
            json={"reason": "manifestly_unfounded"},
            headers=admin,
        )
        assert denied.status_code == 200, denied.text
        rights = denied.json()["outcome"]["complaint_rights"]
        assert authority in rights["authority"] and basis in rights["legal_basis"]
        assert rights["judicial_remedy"]
        if regime == "gdpr":
            assert "Art. 79" in rights["judicial_remedy"]
        if regime == "ccpa":
            assert "GDPR" not in str(rights)

    async def test_unverifiable_after_wrong_codes(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        created = await file(client, admin, regime="uk_gdpr")
        code = created["verification"]["code"]
        wrong = f"{(int(code) + 1) % 10**6:06d}"
        for _ in range(5):
            await client.post(
                f"/v1/requests/{created['id']}/verify", json={"code": wrong}, headers=admin
            )
        found = (await client.get(f"/v1/requests/{created['id']}", headers=admin)).json()
        assert found["status"] == "denied"
        assert "Information Commissioner" in found["outcome"]["complaint_rights"]["authority"]


class TestLgpdClocks:
    async def test_access_fifteen_days(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        created = await file(client, admin, regime="lgpd", received_at="2026-11-20T00:00:00Z")
        assert created["due_at"] == "2026-12-05T00:00:00Z"

    def test_each_type_is_a_setting(self) -> None:
        changed = clocks_from_overrides({"lgpd": {"respond_days_by_type": {"erasure": 30}}})
        received = ts("2026-01-31")
        assert deadlines("lgpd", "erasure", received, changed).due_at == ts("2026-03-02")
        assert deadlines("lgpd", "access", received, changed).due_at == ts("2026-02-15")
        with pytest.raises(ValueError):
            clocks_from_overrides({"lgpd": {"respond_days_by_type": {"dance": 3}}})


class TestCustomerInstructions:
    async def test_admin_decision_on_a_customer_scope_names_its_instruction(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        created = await file(client, admin, type="erasure", regime="gdpr", verified=True)
        acme = spix["acme"].id
        url = f"/v1/requests/{created['id']}/scopes/{acme}/decision"
        refused = await client.post(url, json={"decision": "approve"}, headers=admin)
        assert refused.status_code == 422, refused.text
        done = await client.post(
            url, json={"decision": "approve", "instruction_ref": "ticket ACME-17"}, headers=admin
        )
        assert done.status_code == 200, done.text
        (scope,) = [s for s in done.json()["scopes"] if s["controller_id"] == str(acme)]
        assert scope["instruction_ref"] == "ticket ACME-17"
        events = (
            await client.get(f"/v1/requests/{created['id']}/events?limit=100", headers=admin)
        ).json()["items"]
        assert "request_scope.customer_notified" in [e["event_type"] for e in events]

    async def test_customer_key_decides_without_a_reference(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        created = await file(client, admin, type="erasure", regime="gdpr", verified=True)
        response = await client.post(
            f"/v1/requests/{created['id']}/scopes/{spix['acme'].id}/decision",
            json={"decision": "approve"},
            headers=spix["acme_key"],
        )
        assert response.status_code == 200, response.text

    async def test_auto_execute_needs_a_standing_instruction(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        bare = await client.post(
            "/v1/controllers", json={"name": "Beta", "auto_execute": True}, headers=admin
        )
        assert bare.status_code == 422
        made = await client.post(
            "/v1/controllers",
            json={"name": "Beta", "auto_execute": True, "standing_instruction_ref": "DPA §7"},
            headers=admin,
        )
        assert made.status_code == 201, made.text
        assert made.json()["standing_instruction_ref"] == "DPA §7"

    async def test_auto_executed_scope_carries_the_standing_instruction(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        spix: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        acme = spix["acme"]
        url = f"/v1/controllers/{acme.id}"
        etag = (await client.get(url, headers=admin)).headers["etag"]
        patched = await client.patch(
            url,
            json={"auto_execute": True, "standing_instruction_ref": "DPA-7"},
            headers={**admin, "If-Match": etag},
        )
        assert patched.status_code == 200, patched.text
        created = await file(client, admin, type="access", regime="gdpr", verified=True)
        (scope,) = [s for s in created["scopes"] if s["controller_id"] == str(acme.id)]
        assert scope["status"] == "in_progress"
        assert scope["instruction_ref"] == "standing:DPA-7"
        events = (
            await client.get(f"/v1/requests/{created['id']}/events?limit=100", headers=admin)
        ).json()["items"]
        assert "request_scope.customer_notified" in [e["event_type"] for e in events]
