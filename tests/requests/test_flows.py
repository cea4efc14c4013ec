"""Subject requests walked end to end through the API."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.records.models import Record
from app.tasks.models import Task
from tests.conftest import bearer
from tests.requests.conftest import ALICE, claim, file


async def verify_with_code(
    client: AsyncClient, headers: dict[str, str], request: dict[str, Any]
) -> dict[str, Any]:
    code = request["verification"]["code"]
    response = await client.post(
        f"/v1/requests/{request['id']}/verify", json={"code": code}, headers=headers
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def scope_of(request: dict[str, Any], controller_id: Any) -> dict[str, Any]:
    (scope,) = [s for s in request["scopes"] if s["controller_id"] == str(controller_id)]
    return scope


class TestIntake:
    async def test_unauthenticated_is_401(self, client: AsyncClient) -> None:
        assert (await client.post("/v1/requests", json={})).status_code == 401

    @pytest.mark.parametrize("role", ["auditor", "system"])
    async def test_only_admin_and_controllers_file(
        self, client: AsyncClient, session: AsyncSession, spix: dict[str, Any], role: str
    ) -> None:
        headers = spix["keys"]["billing"] if role == "system" else await bearer(session, role)
        body = {"type": "access", "regime": "gdpr", "identities": ALICE}
        assert (await client.post("/v1/requests", json=body, headers=headers)).status_code == 403

    async def test_clock_and_challenge(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        created = await file(client, admin, regime="gdpr", received_at="2026-01-31T09:00:00Z")
        assert created["status"] == "pending_verification"
        assert created["due_at"] == "2026-02-28T09:00:00Z"
        assert created["acknowledge_by"] is None
        assert len(created["verification"]["code"]) == 6
        assert "alice@example.com" not in str(created)
        ccpa = await file(client, admin, regime="ccpa", received_at="2026-11-27T09:00:00Z")
        assert ccpa["due_at"] == "2027-01-11T09:00:00Z"  # 45 days
        assert ccpa["acknowledge_by"] == "2026-12-11T09:00:00Z"  # 10 business days
        again = await client.get(f"/v1/requests/{created['id']}", headers=admin)
        assert "verification" not in again.json()

    @pytest.mark.parametrize(
        ("change", "loc"),
        [
            ({"type": "rectification"}, ["body", "details", "corrections"]),
            ({"type": "objection"}, ["body", "details", "purpose"]),
            (
                {"type": "objection", "details": {"purpose": "no.such"}},
                ["body", "details", "purpose"],
            ),
            (
                {"identities": [{"type": "phone", "value": "12"}]},
                ["body", "identities", 0, "value"],
            ),
            ({"regime": "mars"}, ["body", "regime"]),
            ({"received_at": "2999-01-01T00:00:00Z"}, ["body", "received_at"]),
            ({"controller_id": str(uuid.UUID(int=5))}, ["body", "controller_id"]),
        ],
    )
    async def test_bad_requests_are_422(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        spix: dict[str, Any],
        change: dict[str, Any],
        loc: list[Any],
    ) -> None:
        body = {"type": "access", "regime": "gdpr", "identities": ALICE, **change}
        response = await client.post("/v1/requests", json=body, headers=admin)
        assert response.status_code == 422, response.text
        assert loc in [e["loc"] for e in response.json()["errors"]]

    async def test_idempotent_filing(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        body = {"type": "access", "regime": "gdpr", "identities": ALICE}
        headers = {**admin, "Idempotency-Key": "req-1"}
        first = await client.post("/v1/requests", json=body, headers=headers)
        second = await client.post("/v1/requests", json=body, headers=headers)
        assert first.json()["id"] == second.json()["id"]
        assert first.json()["verification"] == second.json()["verification"]


class TestVerification:
    async def test_wrong_codes_then_denied(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        created = await file(client, admin)
        right = created["verification"]["code"]
        wrong = f"{(int(right) + 1) % 10**6:06d}"
        url = f"/v1/requests/{created['id']}/verify"
        for attempt in range(1, 6):
            response = await client.post(url, json={"code": wrong}, headers=admin)
            assert response.status_code == 422
            assert response.headers["content-type"] == "application/problem+json"
            status = (await client.get(f"/v1/requests/{created['id']}", headers=admin)).json()
            assert status["status"] == ("denied" if attempt == 5 else "pending_verification")
        denied = (await client.get(f"/v1/requests/{created['id']}", headers=admin)).json()
        assert denied["status"] == "denied" and denied["denial_reason"] == "unverifiable"
        late = await client.post(url, json={"code": right}, headers=admin)
        assert late.status_code == 409

    async def test_agent_needs_authority(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        created = await file(client, admin, requester={"kind": "authorized_agent", "name": "Ag"})
        response = await client.post(
            f"/v1/requests/{created['id']}/verify",
            json={"code": created["verification"]["code"]},
            headers=admin,
        )
        assert response.status_code == 422
        manual = await client.post(
            f"/v1/requests/{created['id']}/verify",
            json={"method": "manual", "note": "signed permission on file, ticket 77"},
            headers=admin,
        )
        assert manual.status_code == 200
        assert manual.json()["status"] == "in_progress"

    async def test_manual_verification_is_admin_only(
        self, client: AsyncClient, spix: dict[str, Any]
    ) -> None:
        created = await file(client, spix["acme_key"])
        response = await client.post(
            f"/v1/requests/{created['id']}/verify",
            json={"method": "manual", "note": "I know them"},
            headers=spix["acme_key"],
        )
        assert response.status_code == 403

    async def test_uk_gdpr_clock_pauses_until_verified(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        created = await file(client, admin, regime="uk_gdpr", received_at="2026-10-01T00:00:00Z")
        assert created["due_at"] == "2026-11-01T00:00:00Z"
        verified = await verify_with_code(client, admin, created)
        assert verified["due_at"] > created["due_at"]


class TestErasureAcrossControllers:
    async def test_customer_data_waits_for_its_decision(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        spix: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        created = await file(client, admin, type="erasure")
        request = await verify_with_code(client, admin, created)
        assert request["status"] == "in_progress"
        platform = scope_of(request, spix["platform"].id)
        acme = scope_of(request, spix["acme"].id)
        assert acme["status"] == "awaiting_controller" and acme["tasks"] == []
        assert [t["system"] for t in platform["tasks"]] == ["accounts"]
        withheld = platform["outcome"]["withheld"]
        assert [w["record_id"] for w in withheld] == [str(spix["records"]["invoice"])]
        assert withheld[0]["grounds"][0]["citation"] == "HGB 257"

        # The customer's systems get nothing while Acme has not decided.
        assert await claim(client, spix["keys"]["messaging"]) == []
        (task,) = await claim(client, spix["keys"]["accounts"])
        assert task["action"] == "erase"
        done = await client.post(
            f"/v1/tasks/{task['id']}/complete", json={}, headers=spix["keys"]["accounts"]
        )
        assert done.status_code == 200
        profile = await session.get(Record, spix["records"]["profile"])
        await session.refresh(profile)  # type: ignore[arg-type]
        assert profile is not None and profile.state == "erased"
        sms = await session.get(Record, spix["records"]["sms"])
        assert sms is not None and sms.state == "active"

        # Another customer's key cannot see or decide Acme's scope.
        other = await bearer(session, "controller", controller_id=spix["platform"].id)
        hidden = await client.post(
            f"/v1/requests/{request['id']}/scopes/{spix['acme'].id}/decision",
            json={"decision": "approve"},
            headers=other,
        )
        assert hidden.status_code == 404
        acme_view = (
            await client.get(f"/v1/requests/{request['id']}", headers=spix["acme_key"])
        ).json()
        assert [s["controller_id"] for s in acme_view["scopes"]] == [str(spix["acme"].id)]

        approved = await client.post(
            f"/v1/requests/{request['id']}/scopes/{spix['acme'].id}/decision",
            json={"decision": "approve", "reason": "no ground to keep"},
            headers=spix["acme_key"],
        )
        assert approved.status_code == 200, approved.text
        for system in ("messaging", "voice"):
            (task,) = await claim(client, spix["keys"][system])
            response = await client.post(
                f"/v1/tasks/{task['id']}/complete", json={}, headers=spix["keys"][system]
            )
            assert response.status_code == 200
        final = (await client.get(f"/v1/requests/{request['id']}", headers=admin)).json()
        assert final["status"] == "completed"
        summary = {s["controller_id"]: s for s in final["outcome"]["scopes"]}
        assert summary[str(spix["platform"].id)]["not_done"][0]["status"] == "retain"
        assert {d["system"] for d in summary[str(spix["acme"].id)]["done"]} == {
            "messaging",
            "voice",
        }
        again = await client.post(
            f"/v1/requests/{request['id']}/scopes/{spix['acme'].id}/decision",
            json={"decision": "approve"},
            headers=spix["acme_key"],
        )
        assert again.status_code == 409

    async def test_held_record_is_reported_not_erased(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        spix: dict[str, Any],
    ) -> None:
        hold = await client.post(
            "/v1/legal-holds", json={"reason": "litigation", "system": "accounts"}, headers=admin
        )
        assert hold.status_code == 201
        created = await file(client, admin, type="erasure", verified=True)
        platform = scope_of(created, spix["platform"].id)
        assert platform["status"] == "completed" and platform["tasks"] == []
        grounds = {w["record_id"]: w["grounds"] for w in platform["outcome"]["withheld"]}
        assert grounds[str(spix["records"]["profile"])][0]["ground"] == "legal_hold"
        assert grounds[str(spix["records"]["profile"])][0]["reason"] == "litigation"

    async def test_declined_scope_closes_with_reason(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        created = await file(client, admin, type="erasure", verified=True)
        declined = await client.post(
            f"/v1/requests/{created['id']}/scopes/{spix['acme'].id}/decision",
            json={"decision": "decline", "reason": "contract requires keeping"},
            headers=spix["acme_key"],
        )
        scope = scope_of(declined.json(), spix["acme"].id)
        assert (
            scope["status"] == "declined"
            and scope["decision_reason"] == "contract requires keeping"
        )


class TestAccessByController:
    async def test_controller_filed_access_runs_at_once_with_package(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        created = await file(client, spix["acme_key"], verified=True)
        assert [s["controller_id"] for s in created["scopes"]] == [str(spix["acme"].id)]
        assert scope_of(created, spix["acme"].id)["status"] == "in_progress"
        early = await client.get(f"/v1/requests/{created['id']}/export", headers=spix["acme_key"])
        assert early.status_code == 409
        for system, data in (("messaging", {"body": "hello"}), ("voice", {"seconds": 42})):
            (task,) = await claim(client, spix["keys"][system])
            assert task["action"] == "export"
            missing = await client.post(
                f"/v1/tasks/{task['id']}/complete",
                json={"result": {}},
                headers=spix["keys"][system],
            )
            assert missing.status_code == 422
            response = await client.post(
                f"/v1/tasks/{task['id']}/complete",
                json={"result": {"data": data}},
                headers=spix["keys"][system],
            )
            assert response.status_code == 200
        package = await client.get(f"/v1/requests/{created['id']}/export", headers=spix["acme_key"])
        assert package.status_code == 200, package.text
        body = package.json()
        assert {d["system"] for d in body["data"]} == {"messaging", "voice"}
        assert {c["key"] for c in body["categories"]} == {
            "communications.sms_body",
            "communications.recording",
        }
        assert [c["id"] for c in body["recipients"]["controllers"]] == [str(spix["acme"].id)]
        assert any(r["right"] == "erasure" for r in body["rights"])
        platform_records = await client.get(f"/v1/requests/{created['id']}", headers=admin)
        assert all(
            s["controller_id"] == str(spix["acme"].id) for s in platform_records.json()["scopes"]
        )


class TestRestriction:
    async def test_restrict_then_lift(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        created = await file(client, admin, type="restriction", verified=True)
        assert created["scopes"]
        record = str(spix["records"]["profile"])
        check = (await client.get(f"/v1/records/{record}/retention", headers=admin)).json()
        assert check["status"] == "held"
        assert (await client.get(f"/v1/records/{record}", headers=admin)).json()[
            "state"
        ] == "restricted"
        (task,) = await claim(client, spix["keys"]["accounts"])
        assert task["action"] == "restrict"

        lifted = await file(
            client, admin, type="restriction", verified=True, details={"lift": True}
        )
        assert lifted["status"] == "in_progress"
        assert (await client.get(f"/v1/records/{record}", headers=admin)).json()[
            "state"
        ] == "active"
        tasks = await claim(client, spix["keys"]["accounts"], limit=10)
        assert "unrestrict" in [t["action"] for t in tasks]


class TestOptOutAndObjection:
    async def test_opt_out_is_visible_to_the_check_at_once(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        check = {
            "identities": [{"type": "email", "value": "Alice@Example.com"}],
            "channel": "email",
        }
        before = await client.post("/v1/suppressions/check", json=check, headers=admin)
        assert before.json()["suppressed"] is False
        created = await file(
            client, admin, type="opt_out", regime="ccpa", details={"channel": "email"}
        )
        assert created["status"] == "completed"
        after = await client.post("/v1/suppressions/check", json=check, headers=admin)
        assert after.json()["suppressed"] is True

    async def test_objection_to_direct_marketing_is_absolute(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        created = await file(
            client,
            admin,
            type="objection",
            verified=True,
            details={"purpose": "marketing.communications"},
        )
        # Spix stops its own marketing at once; Acme decides for its own.
        platform = scope_of(created, spix["platform"].id)
        assert platform["status"] == "completed"
        assert platform["outcome"]["suppressions"] == 1
        assert scope_of(created, spix["acme"].id)["status"] == "awaiting_controller"
        check = {"identities": ALICE, "channel": "sms"}
        checked = await client.post("/v1/suppressions/check", json=check, headers=admin)
        assert checked.json()["suppressed"] is True

    async def test_other_objections_wait_for_a_person(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        created = await file(
            client, admin, type="objection", verified=True, details={"purpose": "analytics.product"}
        )
        platform = scope_of(created, spix["platform"].id)
        assert platform["status"] == "awaiting_controller"
        decided = await client.post(
            f"/v1/requests/{created['id']}/scopes/{spix['platform'].id}/decision",
            json={"decision": "approve", "reason": "no compelling ground"},
            headers=admin,
        )
        assert scope_of(decided.json(), spix["platform"].id)["status"] == "completed"


class TestLifecycle:
    async def test_extension_once(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        created = await file(client, admin, regime="ccpa", received_at="2026-11-01T00:00:00Z")
        url = f"/v1/requests/{created['id']}/extend"
        told = {"subject_notified_at": "2026-11-02T00:00:00Z"}
        first = await client.post(url, json={"reason": "complex", **told}, headers=admin)
        assert first.status_code == 200
        assert first.json()["extended_due_at"] == "2027-01-30T00:00:00Z"  # 45 + 45 days
        second = await client.post(url, json={"reason": "more", **told}, headers=admin)
        assert second.status_code == 409
        lgpd = await file(client, admin, regime="lgpd")
        refused = await client.post(
            f"/v1/requests/{lgpd['id']}/extend",
            json={"reason": "x", "subject_notified_at": lgpd["received_at"]},
            headers=admin,
        )
        assert refused.status_code == 409

    async def test_overdue_listing_and_cancel(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        late = await file(client, admin, received_at="2026-01-01T00:00:00Z")
        await file(client, admin)
        overdue = (await client.get("/v1/requests?overdue=true", headers=admin)).json()["items"]
        assert [r["id"] for r in overdue] == [late["id"]]
        assert overdue[0]["overdue"] is True
        cancelled = await client.post(f"/v1/requests/{late['id']}/cancel", json={}, headers=admin)
        assert cancelled.json()["status"] == "cancelled"
        assert (await client.get("/v1/requests?overdue=true", headers=admin)).json()["items"] == []
        again = await client.post(f"/v1/requests/{late['id']}/cancel", json={}, headers=admin)
        assert again.status_code == 409

    async def test_deny_with_reason_and_events(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        auditor: dict[str, str],
        spix: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        created = await file(client, admin)
        denied = await client.post(
            f"/v1/requests/{created['id']}/deny",
            json={"reason": "manifestly_unfounded", "detail": "tenth copy this week"},
            headers=admin,
        )
        assert denied.json()["status"] == "denied"
        events = (await client.get(f"/v1/requests/{created['id']}/events", headers=auditor)).json()
        assert [e["event_type"] for e in events["items"]] == ["request.received", "request.denied"]
        stored = (await session.scalars(select(AuditEvent))).all()
        assert all("alice@example.com" not in str(e.details) for e in stored)


class TestTasks:
    async def test_lapsed_lease_is_reclaimed_and_failures_surface(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        spix: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        await file(client, admin, verified=True)
        accounts = spix["keys"]["accounts"]
        (task,) = await claim(client, accounts, lease_seconds=10)
        assert await claim(client, accounts) == []
        # Let the lease lapse by moving it into the past, as time would.
        await session.execute(
            update(Task)
            .where(Task.id == uuid.UUID(task["id"]))
            .values(lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()
        (again,) = await claim(client, accounts)
        assert again["id"] == task["id"]

        retry = await client.post(
            f"/v1/tasks/{task['id']}/fail",
            json={"error": "timeout", "retryable": True},
            headers=accounts,
        )
        assert retry.json()["status"] == "pending"
        (third,) = await claim(client, accounts)
        fatal = await client.post(
            f"/v1/tasks/{third['id']}/fail",
            json={"error": "store gone", "retryable": False},
            headers=accounts,
        )
        assert fatal.json()["status"] == "failed"
        failed = (await client.get("/v1/requests?scope_status=failed", headers=admin)).json()
        assert len(failed["items"]) == 1
        resent = await client.post(f"/v1/tasks/{task['id']}/retry", headers=admin)
        assert resent.json()["status"] == "pending"

    async def test_system_sees_only_its_tasks(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        await file(client, admin, verified=True)
        (task,) = await claim(client, spix["keys"]["accounts"])
        other = await client.post(
            f"/v1/tasks/{task['id']}/complete",
            json={"result": {"data": {}}},
            headers=spix["keys"]["billing"],
        )
        assert other.status_code == 404
        listed = (await client.get("/v1/tasks", headers=spix["keys"]["billing"])).json()
        assert all(t["system"] == "billing" for t in listed["items"])


class TestOversight:
    async def test_gauges_count_open_and_overdue_by_regime(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        await file(client, admin, regime="ccpa", received_at="2026-01-01T00:00:00Z")
        await file(client, admin, regime="ccpa")
        text = (await client.get("/metrics")).text
        assert 'spix_dsr_requests_open{regime="ccpa"} 2.0' in text
        assert 'spix_dsr_requests_overdue{regime="ccpa"} 1.0' in text
        assert 'spix_dsr_requests_open{regime="gdpr"} 0.0' in text

    async def test_no_raw_identity_in_responses_events_or_logs(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        spix: dict[str, Any],
        session: AsyncSession,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        import logging

        caplog.set_level(logging.DEBUG)
        texts = []
        for kind in ("access", "erasure", "restriction", "opt_out"):
            created = await client.post(
                "/v1/requests",
                json={
                    "type": kind,
                    "regime": "gdpr",
                    "identities": ALICE,
                    "requester": {"name": "Alice Liddell", "email": "alice@example.com"},
                },
                headers=admin,
            )
            texts.append(created.text)
            request_id = created.json()["id"]
            if created.json().get("verification"):
                verified = await client.post(
                    f"/v1/requests/{request_id}/verify",
                    json={"code": created.json()["verification"]["code"]},
                    headers=admin,
                )
                texts.append(verified.text)
            texts.append((await client.get(f"/v1/requests/{request_id}", headers=admin)).text)
            texts.append(
                (await client.get(f"/v1/requests/{request_id}/events", headers=admin)).text
            )
        for system in ("accounts", "messaging"):
            claimed = await client.post("/v1/tasks/claim", json={}, headers=spix["keys"][system])
            texts.append(claimed.text)
        events = (await session.scalars(select(AuditEvent))).all()
        texts += [str(e.details) for e in events]
        texts += [r.getMessage() + str(r.__dict__) for r in caplog.records]
        for text in texts:
            assert "alice@example.com" not in text.lower()
            assert "Alice Liddell" not in text


class TestRectificationAndPortability:
    async def test_corrections_reach_the_systems_only(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        spix: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        created = await file(
            client,
            admin,
            type="rectification",
            verified=True,
            details={"corrections": {"name": "Alice Pleasance Liddell"}},
        )
        assert "Pleasance" not in str(created)
        (task,) = await claim(client, spix["keys"]["accounts"])
        assert task["action"] == "rectify"
        assert task["details"]["corrections"] == {"name": "Alice Pleasance Liddell"}
        assert "corrections_sealed" not in task["details"]
        stored = (await session.scalars(select(AuditEvent))).all()
        assert all("Pleasance" not in str(e.details) for e in stored)
        done = await client.post(
            f"/v1/tasks/{task['id']}/complete", json={}, headers=spix["keys"]["accounts"]
        )
        assert done.status_code == 200

    async def test_portability_package(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        created = await file(client, admin, type="portability", verified=True)
        for system in ("accounts", "billing"):
            (task,) = await claim(client, spix["keys"][system])
            await client.post(
                f"/v1/tasks/{task['id']}/complete",
                json={"result": {"data": {"s": system}}},
                headers=spix["keys"][system],
            )
        decided = await client.post(
            f"/v1/requests/{created['id']}/scopes/{spix['acme'].id}/decision",
            json={"decision": "handled_by_controller", "reason": "Acme answers its users"},
            headers=spix["acme_key"],
        )
        assert decided.json()["status"] == "completed"
        package = (await client.get(f"/v1/requests/{created['id']}/export", headers=admin)).json()
        assert {d["system"] for d in package["data"]} == {"accounts", "billing"}
        assert {s["key"] for s in package["recipients"]["systems"]} == {"accounts", "billing"}
        assert {c["key"] for c in package["categories"]} == {"account.profile", "billing.invoice"}
        # Each exported record with the rules that decide how long it is kept.
        (invoice,) = [r for r in package["retention"] if r["system"] == "billing"]
        assert invoice["categories"] == ["billing.invoice"]
        assert invoice["keep_until"] is not None
        assert [(r["category"], r["kind"], r["citation"]) for r in invoice["rules"]] == [
            ("billing.invoice", "minimum", "HGB 257")
        ]
        assert {r["right"] for r in package["rights"]} >= {"access", "erasure", "portability"}

    async def test_a_customers_queue(
        self, client: AsyncClient, admin: dict[str, str], spix: dict[str, Any]
    ) -> None:
        created = await file(client, admin, type="erasure", verified=True)
        queue = await client.get(
            "/v1/requests?scope_status=awaiting_controller", headers=spix["acme_key"]
        )
        assert [r["id"] for r in queue.json()["items"]] == [created["id"]]
        platform_queue = await client.get(
            f"/v1/requests?scope_status=awaiting_controller&controller_id={spix['platform'].id}",
            headers=admin,
        )
        assert [r["id"] for r in platform_queue.json()["items"]] == [created["id"]]
