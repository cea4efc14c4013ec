"""Retention rules: validation, references, customer settings through controller keys, ETags."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.core.config import Settings
from app.retention_rules.models import RetentionRule
from tests.builders import (
    make_category,
    make_controller,
    make_purpose,
    make_rule,
    make_system,
)
from tests.conftest import bearer

URL = "/v1/retention-rules"

INVOICES = {
    "name": "Invoices: statutory retention",
    "kind": "minimum",
    "period": "P10Y",
    "anchor": "collected_at",
    "source": "law",
    "citation": "HGB §257(4)",
}


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


class TestCreate:
    async def test_unauthenticated_is_401(self, client: AsyncClient) -> None:
        assert (await client.post(URL, json=INVOICES)).status_code == 401

    @pytest.mark.parametrize("role", ["auditor", "system"])
    async def test_readers_may_not_create(
        self, client: AsyncClient, session: AsyncSession, role: str
    ) -> None:
        headers = await _key_of(session, role)
        assert (await client.post(URL, json=INVOICES, headers=headers)).status_code == 403

    async def test_admin_creates_a_scoped_rule(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await make_category(session, "billing.invoice")
        await make_purpose(session, "billing")
        system = await make_system(session, "billing")
        controller = await make_controller(session)
        body = {
            **INVOICES,
            "period": "P1Y18M0D",
            "anchor": "event:account_closed",
            "action": "anonymize",
            "category": "billing.invoice",
            "purpose": "billing",
            "controller_id": str(controller.id),
            "system": system.key,
            "region": "eu",
            "key": "de-invoices-min",
            "default_to_review": True,
        }
        response = await client.post(URL, json=body, headers=admin)
        assert response.status_code == 201
        rule = response.json()
        # Stored and answered in one canonical spelling.
        assert rule["period"] == "P1Y18M"
        assert {k: rule[k] for k in body if k != "period"} == {
            k: v for k, v in body.items() if k != "period"
        }
        assert rule["version"] == 1 and rule["created_at"] and rule["updated_at"]
        assert response.headers["etag"] == '"1"'
        assert response.headers["location"] == f"{URL}/{rule['id']}"
        stored = await session.get(RetentionRule, uuid.UUID(rule["id"]))
        assert stored is not None and stored.period == "P1Y18M"
        events = await _events(session, rule["id"])
        assert [e.event_type for e in events] == ["retention_rule.created"]
        assert events[0].details["category"] == "billing.invoice"
        assert events[0].details["controller_id"] == str(controller.id)

    async def test_defaults(self, client: AsyncClient, admin: dict[str, str]) -> None:
        response = await client.post(URL, json=INVOICES, headers=admin)
        assert response.status_code == 201
        rule = response.json()
        assert rule["action"] == "delete" and rule["default_to_review"] is False
        assert rule["key"] is None and rule["category"] is None

    @pytest.mark.parametrize(
        "period", ["PT1H", "P1DT2H", "1Y", "P", "P1.5Y", "P-1D", "P1D1Y", "p1y", "P1001Y", "", 90]
    )
    async def test_bad_period_is_422_naming_period(
        self, client: AsyncClient, admin: dict[str, str], period: object
    ) -> None:
        response = await client.post(URL, json={**INVOICES, "period": period}, headers=admin)
        assert response.status_code == 422
        assert "period" in _error_fields(response)

    @pytest.mark.parametrize(
        "anchor", ["created_at", "event:", "event:has space", "event", "", "x" * 121]
    )
    async def test_bad_anchor_is_422_naming_anchor(
        self, client: AsyncClient, admin: dict[str, str], anchor: str
    ) -> None:
        response = await client.post(URL, json={**INVOICES, "anchor": anchor}, headers=admin)
        assert response.status_code == 422
        assert "anchor" in _error_fields(response)

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"kind": "forever"}, "kind"),
            ({"action": "shred"}, "action"),
            ({"source": "gut_feeling"}, "source"),
            ({"name": ""}, "name"),
            ({"name": "x" * 201}, "name"),
            ({"category": "Not A Key"}, "category"),
            ({"system": "No_Caps"}, "system"),
            ({"controller_id": "acme"}, "controller_id"),
            ({"region": "r" * 51}, "region"),
            ({"key": "Has Spaces"}, "key"),
            ({"surprise": 1}, "surprise"),
        ],
    )
    async def test_malformed_fields_are_422(
        self, client: AsyncClient, admin: dict[str, str], change: dict[str, object], field: str
    ) -> None:
        response = await client.post(URL, json={**INVOICES, **change}, headers=admin)
        assert response.status_code == 422
        assert field in _error_fields(response)

    @pytest.mark.parametrize("field", ["name", "kind", "period", "anchor", "source"])
    async def test_required_fields(
        self, client: AsyncClient, admin: dict[str, str], field: str
    ) -> None:
        body = {k: v for k, v in INVOICES.items() if k != field}
        response = await client.post(URL, json=body, headers=admin)
        assert response.status_code == 422
        assert field in _error_fields(response)

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("category", "nowhere.at_all"),
            ("purpose", "nothing"),
            ("system", "no-such-system"),
            ("controller_id", "0b0e5a8e-6a0f-4d4e-9a53-5b1c9d2f7e11"),
        ],
    )
    async def test_unknown_references_are_422(
        self, client: AsyncClient, admin: dict[str, str], field: str, value: str
    ) -> None:
        response = await client.post(URL, json={**INVOICES, field: value}, headers=admin)
        assert response.status_code == 422
        assert _error_fields(response) == {"body", field}

    async def test_duplicate_key_is_409(self, client: AsyncClient, admin: dict[str, str]) -> None:
        body = {**INVOICES, "key": "de-invoices-min"}
        assert (await client.post(URL, json=body, headers=admin)).status_code == 201
        again = await client.post(URL, json={**body, "name": "Other"}, headers=admin)
        assert again.status_code == 409
        listed = await client.get(URL, headers=admin)
        assert len(listed.json()["items"]) == 1

    async def test_idempotent_create(self, client: AsyncClient, admin: dict[str, str]) -> None:
        headers = {**admin, "Idempotency-Key": "invoices"}
        first = await client.post(URL, json=INVOICES, headers=headers)
        second = await client.post(URL, json=INVOICES, headers=headers)
        assert first.status_code == second.status_code == 201
        assert first.json()["id"] == second.json()["id"]
        other = await client.post(URL, json={**INVOICES, "period": "P6Y"}, headers=headers)
        assert other.status_code == 409
        assert len((await client.get(URL, headers=admin)).json()["items"]) == 1


class TestAdminCustomerSettings:
    async def test_unauthenticated_is_401(self, client: AsyncClient) -> None:
        body = {**INVOICES, "kind": "maximum", "source": "customer_setting"}
        assert (await client.post(URL, json=body)).status_code == 401

    async def test_admin_writes_a_customer_setting_for_a_customer(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        acme = await make_controller(session)
        body = {
            **INVOICES,
            "kind": "maximum",
            "source": "customer_setting",
            "period": "P10Y",
            "controller_id": str(acme.id),
        }
        assert (await client.post(URL, json=body, headers=admin)).status_code == 201

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"kind": "minimum"}, "kind"),
            ({"controller_id": None}, "controller_id"),
            ({"controller_id": "platform"}, "controller_id"),
            ({"period": "P10Y1D"}, "period"),
        ],
    )
    async def test_customer_settings_are_capped_customer_maximums(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        session: AsyncSession,
        change: dict[str, object],
        field: str,
    ) -> None:
        acme = await make_controller(session)
        platform = await make_controller(session, kind="platform", name="Spix")
        body: dict[str, object] = {
            **INVOICES,
            "kind": "maximum",
            "source": "customer_setting",
            "controller_id": str(acme.id),
            **change,
        }
        if body["controller_id"] == "platform":
            body["controller_id"] = str(platform.id)
        response = await client.post(URL, json=body, headers=admin)
        assert response.status_code == 422
        assert field in _error_fields(response)


class TestControllerKeys:
    async def test_unauthenticated_is_401(self, client: AsyncClient) -> None:
        assert (await client.get(URL)).status_code == 401

    async def test_creates_its_own_setting(
        self, client: AsyncClient, session: AsyncSession
    ) -> None:
        acme = await make_controller(session)
        headers = await bearer(session, "controller", controller_id=acme.id)
        body = {**INVOICES, "kind": "maximum", "source": "customer_setting", "period": "P14D"}
        response = await client.post(URL, json=body, headers=headers)
        assert response.status_code == 201
        assert response.json()["controller_id"] == str(acme.id)
        named = await client.post(
            URL, json={**body, "controller_id": str(acme.id)}, headers=headers
        )
        assert named.status_code == 201

    @pytest.mark.parametrize(
        "change",
        [{"kind": "minimum"}, {"source": "law"}, {"source": "platform_default"}],
    )
    async def test_only_customer_setting_maximums_are_403(
        self, client: AsyncClient, session: AsyncSession, change: dict[str, str]
    ) -> None:
        acme = await make_controller(session)
        headers = await bearer(session, "controller", controller_id=acme.id)
        body = {**INVOICES, "kind": "maximum", "source": "customer_setting", **change}
        assert (await client.post(URL, json=body, headers=headers)).status_code == 403

    async def test_another_controller_is_422(
        self, client: AsyncClient, session: AsyncSession
    ) -> None:
        acme = await make_controller(session)
        other = await make_controller(session)
        headers = await bearer(session, "controller", controller_id=acme.id)
        body = {
            **INVOICES,
            "kind": "maximum",
            "source": "customer_setting",
            "controller_id": str(other.id),
        }
        response = await client.post(URL, json=body, headers=headers)
        assert response.status_code == 422
        assert "controller_id" in _error_fields(response)

    async def test_a_key_is_admin_only(self, client: AsyncClient, session: AsyncSession) -> None:
        acme = await make_controller(session)
        headers = await bearer(session, "controller", controller_id=acme.id)
        body = {**INVOICES, "kind": "maximum", "source": "customer_setting", "key": "mine"}
        response = await client.post(URL, json=body, headers=headers)
        assert response.status_code == 422
        assert "key" in _error_fields(response)

    @pytest.mark.parametrize(
        ("period", "status"),
        [
            ("P10Y", 201),
            ("P120M", 201),
            ("P3653D", 201),
            ("P3654D", 422),
            ("P10Y1D", 422),
            ("P121M", 422),
            ("P11Y", 422),
        ],
    )
    async def test_period_is_capped(
        self, client: AsyncClient, session: AsyncSession, period: str, status: int
    ) -> None:
        acme = await make_controller(session)
        headers = await bearer(session, "controller", controller_id=acme.id)
        body = {**INVOICES, "kind": "maximum", "source": "customer_setting", "period": period}
        response = await client.post(URL, json=body, headers=headers)
        assert response.status_code == status
        if status == 422:
            assert "period" in _error_fields(response)

    async def test_cap_comes_from_settings(
        self, client: AsyncClient, session: AsyncSession, settings: Settings
    ) -> None:
        settings.customer_retention_cap = "P1Y"
        acme = await make_controller(session)
        headers = await bearer(session, "controller", controller_id=acme.id)
        body = {**INVOICES, "kind": "maximum", "source": "customer_setting", "period": "P13M"}
        assert (await client.post(URL, json=body, headers=headers)).status_code == 422
        body["period"] = "P12M"
        assert (await client.post(URL, json=body, headers=headers)).status_code == 201

    async def test_sees_platform_rules_and_its_own_only(
        self, client: AsyncClient, session: AsyncSession
    ) -> None:
        acme = await make_controller(session)
        other = await make_controller(session)
        platform_rule = await make_rule(session)
        mine = await make_rule(session, source="customer_setting", controller_id=acme.id)
        theirs = await make_rule(session, source="customer_setting", controller_id=other.id)
        headers = await bearer(session, "controller", controller_id=acme.id)
        listed = await client.get(URL, headers=headers)
        assert {r["id"] for r in listed.json()["items"]} == {str(platform_rule.id), str(mine.id)}
        filtered = await client.get(f"{URL}?controller_id={other.id}", headers=headers)
        assert filtered.json()["items"] == []
        assert (await client.get(f"{URL}/{platform_rule.id}", headers=headers)).status_code == 200
        assert (await client.get(f"{URL}/{theirs.id}", headers=headers)).status_code == 404

    async def test_changes_and_deletes_its_own_setting(
        self, client: AsyncClient, session: AsyncSession
    ) -> None:
        acme = await make_controller(session)
        mine = await make_rule(session, source="customer_setting", controller_id=acme.id)
        headers = await bearer(session, "controller", controller_id=acme.id)
        changed = await client.patch(f"{URL}/{mine.id}", json={"period": "P30D"}, headers=headers)
        assert changed.status_code == 200 and changed.json()["period"] == "P30D"
        assert (await client.delete(f"{URL}/{mine.id}", headers=headers)).status_code == 204

    async def test_platform_rules_are_read_only(
        self, client: AsyncClient, session: AsyncSession
    ) -> None:
        acme = await make_controller(session)
        platform_rule = await make_rule(session)
        # Naming the customer does not make an admin's contract rule the customer's to change.
        contract = await make_rule(session, source="contract", controller_id=acme.id)
        headers = await bearer(session, "controller", controller_id=acme.id)
        for rule in (platform_rule, contract):
            url = f"{URL}/{rule.id}"
            assert (await client.patch(url, json={"name": "x"}, headers=headers)).status_code == 403
            assert (await client.delete(url, headers=headers)).status_code == 403
        assert await session.get(RetentionRule, platform_rule.id) is not None

    async def test_another_customers_rule_is_404(
        self, client: AsyncClient, session: AsyncSession
    ) -> None:
        acme = await make_controller(session)
        other = await make_controller(session)
        theirs = await make_rule(session, source="customer_setting", controller_id=other.id)
        headers = await bearer(session, "controller", controller_id=acme.id)
        url = f"{URL}/{theirs.id}"
        assert (await client.patch(url, json={"name": "x"}, headers=headers)).status_code == 404
        assert (await client.delete(url, headers=headers)).status_code == 404

    @pytest.mark.parametrize(
        ("change", "status", "field"),
        [
            ({"kind": "minimum"}, 403, None),
            ({"source": "law"}, 403, None),
            ({"controller_id": "other"}, 422, "controller_id"),
            ({"controller_id": None}, 422, "controller_id"),
            ({"period": "P11Y"}, 422, "period"),
            ({"key": "mine"}, 422, "key"),
        ],
    )
    async def test_a_change_keeps_the_setting_its_own(
        self,
        client: AsyncClient,
        session: AsyncSession,
        change: dict[str, object],
        status: int,
        field: str | None,
    ) -> None:
        acme = await make_controller(session)
        other = await make_controller(session)
        mine = await make_rule(session, source="customer_setting", controller_id=acme.id)
        headers = await bearer(session, "controller", controller_id=acme.id)
        if change.get("controller_id") == "other":
            change = {"controller_id": str(other.id)}
        response = await client.patch(f"{URL}/{mine.id}", json=change, headers=headers)
        assert response.status_code == status
        if field:
            assert field in _error_fields(response)
        await session.refresh(mine)
        assert mine.version == 1 and mine.controller_id == acme.id


class TestReading:
    async def test_unauthenticated_is_401(self, client: AsyncClient) -> None:
        assert (await client.get(f"{URL}/{uuid.uuid4()}")).status_code == 401

    @pytest.mark.parametrize("role", ["admin", "auditor", "system"])
    async def test_every_role_reads_every_rule(
        self, client: AsyncClient, session: AsyncSession, role: str
    ) -> None:
        acme = await make_controller(session)
        rules = [
            await make_rule(session),
            await make_rule(session, source="customer_setting", controller_id=acme.id),
        ]
        headers = await _key_of(session, role)
        listed = await client.get(URL, headers=headers)
        assert {r["id"] for r in listed.json()["items"]} == {str(r.id) for r in rules}
        one = await client.get(f"{URL}/{rules[1].id}", headers=headers)
        assert one.status_code == 200 and one.headers["etag"] == '"1"'

    async def test_filters(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await make_category(session, "billing.invoice")
        system = await make_system(session, "billing")
        acme = await make_controller(session)
        law = await make_rule(session, kind="minimum", source="law", category="billing.invoice")
        on_system = await make_rule(session, system=system.key)
        customer = await make_rule(session, source="customer_setting", controller_id=acme.id)
        # `billing` is a prefix of the rule's category, not its category.
        await make_category(session, "billing")
        cases = {
            "kind=minimum": {law.id},
            "source=customer_setting": {customer.id},
            "category=billing.invoice": {law.id},
            "category=billing": set(),
            f"controller_id={acme.id}": {customer.id},
            "system=billing": {on_system.id},
            "kind=maximum&source=platform_default": {on_system.id},
        }
        for query, expected in cases.items():
            listed = await client.get(f"{URL}?{query}", headers=admin)
            assert {r["id"] for r in listed.json()["items"]} == {str(i) for i in expected}, query

    @pytest.mark.parametrize("query", ["kind=forever", "source=x", "controller_id=acme"])
    async def test_bad_filters_are_422(
        self, client: AsyncClient, admin: dict[str, str], query: str
    ) -> None:
        assert (await client.get(f"{URL}?{query}", headers=admin)).status_code == 422

    async def test_pages(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        for _ in range(5):
            await make_rule(session)
        first = (await client.get(f"{URL}?limit=3", headers=admin)).json()
        second = (
            await client.get(f"{URL}?limit=3&cursor={first['next_cursor']}", headers=admin)
        ).json()
        assert len(first["items"]) == 3 and len(second["items"]) == 2
        assert second["next_cursor"] is None
        assert {r["id"] for r in first["items"]}.isdisjoint({r["id"] for r in second["items"]})

    async def test_unknown_and_malformed_ids(
        self, client: AsyncClient, admin: dict[str, str]
    ) -> None:
        assert (await client.get(f"{URL}/{uuid.uuid4()}", headers=admin)).status_code == 404
        assert (await client.get(f"{URL}/not-a-uuid", headers=admin)).status_code == 422


class TestUpdate:
    async def test_unauthenticated_is_401(self, client: AsyncClient) -> None:
        assert (await client.patch(f"{URL}/{uuid.uuid4()}", json={})).status_code == 401

    @pytest.mark.parametrize("role", ["auditor", "system"])
    async def test_readers_may_not_change(
        self, client: AsyncClient, session: AsyncSession, role: str
    ) -> None:
        rule = await make_rule(session)
        headers = await _key_of(session, role)
        response = await client.patch(f"{URL}/{rule.id}", json={"name": "x"}, headers=headers)
        assert response.status_code == 403

    async def test_patch_with_etag(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        rule = await make_rule(session, period="P1Y")
        url = f"{URL}/{rule.id}"
        etag = (await client.get(url, headers=admin)).headers["etag"]
        changed = await client.patch(
            url, json={"period": "P0Y24M", "region": "eu"}, headers={**admin, "If-Match": etag}
        )
        assert changed.status_code == 200
        assert changed.json()["period"] == "P24M" and changed.json()["region"] == "eu"
        assert changed.json()["version"] == 2 and changed.headers["etag"] == '"2"'
        stale = await client.patch(url, json={"name": "Other"}, headers={**admin, "If-Match": etag})
        assert stale.status_code == 412
        assert (await client.get(url, headers=admin)).json()["name"] == rule.name
        events = await _events(session, rule.id)
        assert [e.event_type for e in events] == ["retention_rule.updated"]
        assert events[0].details["fields"] == ["period", "region"]

    async def test_scope_fields_may_be_cleared(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await make_category(session, "support")
        rule = await make_rule(session, category="support", region="eu")
        response = await client.patch(
            f"{URL}/{rule.id}", json={"category": None, "region": None}, headers=admin
        )
        assert response.status_code == 200
        assert response.json()["category"] is None and response.json()["region"] is None

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"name": None}, "name"),
            ({"kind": None}, "kind"),
            ({"period": "PT5M"}, "period"),
            ({"period": None}, "period"),
            ({"anchor": "sometime"}, "anchor"),
            ({"category": "no.such.category"}, "category"),
            ({"purpose": "nothing"}, "purpose"),
            ({"system": "no-such-system"}, "system"),
            ({"controller_id": str(uuid.uuid4())}, "controller_id"),
            ({"source": "customer_setting"}, "controller_id"),
            ({"surprise": True}, "surprise"),
        ],
    )
    async def test_bad_changes_are_422(
        self,
        client: AsyncClient,
        admin: dict[str, str],
        session: AsyncSession,
        change: dict[str, object],
        field: str,
    ) -> None:
        rule = await make_rule(session)
        response = await client.patch(f"{URL}/{rule.id}", json=change, headers=admin)
        assert response.status_code == 422
        assert field in _error_fields(response)

    async def test_key_taken_is_409(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await make_rule(session, key="taken")
        rule = await make_rule(session)
        response = await client.patch(f"{URL}/{rule.id}", json={"key": "taken"}, headers=admin)
        assert response.status_code == 409
        await session.refresh(rule)
        assert rule.key is None

    async def test_unknown_rule_is_404(self, client: AsyncClient, admin: dict[str, str]) -> None:
        response = await client.patch(f"{URL}/{uuid.uuid4()}", json={"name": "x"}, headers=admin)
        assert response.status_code == 404


class TestDelete:
    async def test_unauthenticated_is_401(self, client: AsyncClient) -> None:
        assert (await client.delete(f"{URL}/{uuid.uuid4()}")).status_code == 401

    @pytest.mark.parametrize("role", ["auditor", "system"])
    async def test_readers_may_not_delete(
        self, client: AsyncClient, session: AsyncSession, role: str
    ) -> None:
        rule = await make_rule(session)
        headers = await _key_of(session, role)
        assert (await client.delete(f"{URL}/{rule.id}", headers=headers)).status_code == 403

    async def test_admin_deletes_and_the_audit_keeps_the_scope(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await make_category(session, "support.attachment")
        system = await make_system(session)
        acme = await make_controller(session)
        rule = await make_rule(
            session,
            category="support.attachment",
            system=system.key,
            controller_id=acme.id,
            region="eu",
            key="support-attachments",
        )
        response = await client.delete(f"{URL}/{rule.id}", headers=admin)
        assert response.status_code == 204 and response.content == b""
        assert (await client.get(f"{URL}/{rule.id}", headers=admin)).status_code == 404
        assert (await client.delete(f"{URL}/{rule.id}", headers=admin)).status_code == 404
        events = await _events(session, rule.id)
        assert [e.event_type for e in events] == ["retention_rule.deleted"]
        assert events[0].details == {
            "key": "support-attachments",
            "kind": "maximum",
            "source": "platform_default",
            "category": "support.attachment",
            "purpose": None,
            "controller_id": str(acme.id),
            "system": system.key,
            "region": "eu",
        }
