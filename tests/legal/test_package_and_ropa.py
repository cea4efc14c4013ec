"""Issue 11, items 4 and 5: an access package that tells the truth (GDPR Art. 15(1)-(2), 20)
and a RoPA a regulator would accept (Art. 30(1) and the processor record of Art. 30(2)).

Two customers (Acme, Globex) and Spix itself hold one subject's data in three systems; a
registry of recipients says who receives each system's data."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from tests.builders import (
    make_category,
    make_controller,
    make_purpose,
    make_record,
    make_rule,
    make_system,
)
from tests.conftest import bearer

ALICE = [{"type": "email", "value": "alice@example.com"}]
SYSTEMS = ("accounts", "messaging", "voice")
ADM = "Spix makes no decision with legal or similarly significant effect solely by automated means"


@pytest.fixture
async def world(session: AsyncSession) -> dict[str, Any]:
    platform = await make_controller(
        session,
        kind="platform",
        name="Spix",
        contact="Spix, privacy@spix.example",
        dpo_contact="DPO, dpo@spix.example",
        security_measures="Encryption in transit and at rest; least-privilege access",
        automated_decision_making=ADM,
    )
    acme = await make_controller(session, name="Acme", agreement_ref="DPA-1")
    globex = await make_controller(session, name="Globex", agreement_ref="DPA-2")
    for key in SYSTEMS:
        await make_system(session, key, name=f"The {key} service")
    await make_category(session, "account.profile", subject_provided=True)
    await make_category(session, "account.usage")
    await make_category(session, "communications.sms_body")
    await make_category(session, "communications.recording")
    await make_purpose(
        session, "account.manage", data_subject_categories=["users"], name="Run the account"
    )
    await make_purpose(session, "comms.deliver", data_subject_categories=["customers' end users"])
    await make_purpose(session, "marketing.email", legal_basis="consent")
    # Before the records, so their stored profiles rank it.
    acme_rule = await make_rule(
        session,
        category="communications.sms_body",
        controller_id=acme.id,
        source="customer_setting",
        period="P30D",
        name="Acme: SMS for 30 days",
    )
    marketing_rule = await make_rule(
        session, purpose="marketing.email", period="P2Y", name="Marketing consent records"
    )
    records = {
        "profile": await make_record(
            session,
            system="accounts",
            controller_id=platform.id,
            categories=["account.profile", "account.usage"],
            purposes=["account.manage"],
            identities=ALICE,
            record_ref="acct-1",
        ),
        "sms": await make_record(
            session,
            system="messaging",
            controller_id=acme.id,
            categories=["communications.sms_body"],
            purposes=["comms.deliver"],
            identities=ALICE,
            record_ref="sms-1",
        ),
        "call": await make_record(
            session,
            system="voice",
            controller_id=globex.id,
            categories=["communications.recording"],
            purposes=["comms.deliver"],
            identities=ALICE,
            record_ref="call-1",
        ),
    }
    return {
        "platform": platform,
        "acme": acme,
        "globex": globex,
        "records": records,
        "acme_rule": acme_rule,
        "marketing_rule": marketing_rule,
        "keys": {s: await bearer(session, "system", system_key=s) for s in SYSTEMS},
        "acme_key": await bearer(session, "controller", controller_id=acme.id),
        "globex_key": await bearer(session, "controller", controller_id=globex.id),
    }


async def add_recipients(client: AsyncClient, admin: dict[str, str]) -> None:
    for body in (
        {
            "key": "cloud-host",
            "name": "Example Cloud Inc.",
            "role": "sub_processor",
            "country": "US",
            "transfer_safeguard": "scc",
            "systems": ["messaging", "voice"],
        },
        {
            "key": "mail-relay",
            "name": "Relay GmbH",
            "role": "processor",
            "country": "DE",
            "transfer_safeguard": "not_applicable",
            "systems": ["accounts"],
        },
    ):
        response = await client.post("/v1/recipients", json=body, headers=admin)
        assert response.status_code == 201, response.text


async def completed_request(
    client: AsyncClient, admin: dict[str, str], world: dict[str, Any], **fields: Any
) -> str:
    """A verified request, both customers approving their scopes, every export done."""
    body = {"type": "access", "regime": "gdpr", "identities": ALICE, "verified": True, **fields}
    created = await client.post("/v1/requests", json=body, headers=admin)
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]
    for customer, key in (("acme", "acme_key"), ("globex", "globex_key")):
        decided = await client.post(
            f"/v1/requests/{request_id}/scopes/{world[customer].id}/decision",
            json={"decision": "approve"},
            headers=world[key],
        )
        assert decided.status_code == 200, decided.text
    for system in SYSTEMS:
        claimed = await client.post("/v1/tasks/claim", json={}, headers=world["keys"][system])
        (task,) = claimed.json()["tasks"]
        done = await client.post(
            f"/v1/tasks/{task['id']}/complete",
            json={"result": {"data": {"system": system, "refs": task["record_refs"]}}},
            headers=world["keys"][system],
        )
        assert done.status_code == 200, done.text
    found = (await client.get(f"/v1/requests/{request_id}", headers=admin)).json()
    assert found["status"] == "completed", found
    return str(request_id)


class TestRecipientsRegistry:
    async def test_admin_writes_every_role_reads_with_etag_and_idempotency(
        self, client: AsyncClient, admin: dict[str, str], world: dict[str, Any]
    ) -> None:
        body = {
            "key": "cloud-host",
            "name": "Example Cloud Inc.",
            "role": "sub_processor",
            "country": "US",
            "transfer_safeguard": "scc",
            "systems": ["voice"],
        }
        refused = await client.post("/v1/recipients", json=body, headers=world["acme_key"])
        assert refused.status_code == 403
        unknown = await client.post(
            "/v1/recipients", json={**body, "systems": ["nowhere"]}, headers=admin
        )
        assert unknown.status_code == 422
        idem = {**admin, "Idempotency-Key": "recipient-1"}
        created = await client.post("/v1/recipients", json=body, headers=idem)
        assert created.status_code == 201 and created.headers["etag"]
        again = await client.post("/v1/recipients", json=body, headers=idem)
        assert again.status_code == 201 and again.json() == created.json()
        assert (await client.post("/v1/recipients", json=body, headers=admin)).status_code == 409
        for headers in (world["acme_key"], world["keys"]["voice"], admin):
            listed = await client.get("/v1/recipients", headers=headers)
            assert [r["key"] for r in listed.json()["items"]] == ["cloud-host"]
        stale = await client.patch(
            "/v1/recipients/cloud-host",
            json={"transfer_safeguard": "bcr"},
            headers={**admin, "If-Match": '"99"'},
        )
        assert stale.status_code == 412
        changed = await client.patch(
            "/v1/recipients/cloud-host",
            json={"transfer_safeguard": "bcr", "systems": ["voice", "messaging"]},
            headers={**admin, "If-Match": created.headers["etag"]},
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["systems"] == ["messaging", "voice"]
        audit = (await client.get("/v1/audit-events?entity_type=recipient", headers=admin)).json()
        events = {e["event_type"] for e in audit["items"]}
        assert events >= {"recipient.created", "recipient.updated"}

    async def test_contacts_statements_and_subject_categories_are_registry_data(
        self, client: AsyncClient, admin: dict[str, str], world: dict[str, Any]
    ) -> None:
        acme = world["acme"].id
        patched = await client.patch(
            f"/v1/controllers/{acme}",
            json={"contact": "Acme, privacy@acme.example", "dpo_contact": "dpo@acme.example"},
            headers=admin,
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["dpo_contact"] == "dpo@acme.example"
        purpose = await client.patch(
            "/v1/purposes/marketing.email",
            json={"data_subject_categories": ["newsletter subscribers"]},
            headers=admin,
        )
        assert purpose.json()["data_subject_categories"] == ["newsletter subscribers"]
        category = await client.patch(
            "/v1/data-categories/account.usage", json={"subject_provided": True}, headers=admin
        )
        assert category.status_code == 200 and category.json()["subject_provided"] is True


class TestAccessPackage:
    async def test_two_customers_each_record_with_its_own_facts(
        self, client: AsyncClient, admin: dict[str, str], world: dict[str, Any]
    ) -> None:
        await add_recipients(client, admin)
        request_id = await completed_request(client, admin, world)
        package = (await client.get(f"/v1/requests/{request_id}/export", headers=admin)).json()

        records = {r["record_ref"]: r for r in package["records"]}
        assert set(records) == {"acct-1", "sms-1", "call-1"}
        sms, call, profile = records["sms-1"], records["call-1"], records["acct-1"]
        assert sms["purposes"] == [
            {"key": "comms.deliver", "name": "comms.deliver", "legal_basis": "contract"}
        ]
        assert profile["categories"] == ["account.profile", "account.usage"]
        assert sms["source"]["controller"] == "Acme" and sms["source"]["system"] == "messaging"
        assert call["source"]["controller"] == "Globex"
        assert profile["source"]["system_name"] == "The accounts service"
        # Acme's own retention setting explains Acme's record and never Globex's.
        assert [r["period"] for r in sms["retention"]["rules"]] == ["P30D"]
        assert call["retention"]["rules"] == []
        # Recipients: those of the record's own system, with their transfer safeguard.
        assert sms["recipients"] == call["recipients"] == ["cloud-host"]
        assert profile["recipients"] == ["mail-relay"]
        registered = {r["key"]: r for r in package["recipients"]["registered"]}
        assert registered["cloud-host"] == {
            "key": "cloud-host",
            "name": "Example Cloud Inc.",
            "role": "sub_processor",
            "country": "US",
            "transfer_safeguard": "scc",
        }
        statements = {s["controller"]: s["statement"] for s in package["automated_decision_making"]}
        # Spix states its position; a customer that has stated nothing is not made to.
        assert statements == {"Spix": ADM, "Acme": None, "Globex": None}
        assert "provided_data" not in package

        # A customer's key reads only its own part: its record, its system's recipients.
        own = (
            await client.get(f"/v1/requests/{request_id}/export", headers=world["acme_key"])
        ).json()
        assert [r["record_ref"] for r in own["records"]] == ["sms-1"]
        assert [r["key"] for r in own["recipients"]["registered"]] == ["cloud-host"]
        assert [s["controller"] for s in own["automated_decision_making"]] == ["Acme"]

    async def test_gdpr_package_names_gdpr_rights_and_a_supervisory_authority(
        self, client: AsyncClient, admin: dict[str, str], world: dict[str, Any]
    ) -> None:
        request_id = await completed_request(client, admin, world)
        package = (await client.get(f"/v1/requests/{request_id}/export", headers=admin)).json()
        bases = {r["right"]: r["basis"] for r in package["rights"]}
        assert bases["erasure"] == "GDPR Art. 17" and bases["portability"] == "GDPR Art. 20"
        assert "Art. 77" in package["complaint_authority"]["basis"]

    async def test_ccpa_package_names_ccpa_rights_and_the_californian_authority(
        self, client: AsyncClient, admin: dict[str, str], world: dict[str, Any]
    ) -> None:
        request_id = await completed_request(client, admin, world, regime="ccpa")
        package = (await client.get(f"/v1/requests/{request_id}/export", headers=admin)).json()
        bases = {r["right"]: r["basis"] for r in package["rights"]}
        assert bases["delete"] == "Cal. Civ. Code §1798.105"
        assert "opt out of sale or sharing" in bases
        authority = package["complaint_authority"]
        assert authority["name"].startswith("California Privacy Protection Agency")
        text = str({k: package[k] for k in ("law", "rights", "complaint_authority")})
        assert "GDPR" not in text and "Art. " not in text

    async def test_portability_gives_provided_data_apart_from_the_art_15_facts(
        self, client: AsyncClient, admin: dict[str, str], world: dict[str, Any]
    ) -> None:
        request_id = await completed_request(client, admin, world, type="portability")
        package = (await client.get(f"/v1/requests/{request_id}/export", headers=admin)).json()
        # Only the record of a category the subject provided, with the system's export.
        assert package["provided_data"] == [
            {
                "system": "accounts",
                "record_ref": "acct-1",
                "categories": ["account.profile"],
                "data": [{"system": "accounts", "refs": ["acct-1"]}],
            }
        ]
        # The Art. 15 facts stay where they were, for every record.
        assert {r["record_ref"] for r in package["records"]} == {"acct-1", "sms-1", "call-1"}


def purposes_of(ropa: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["key"]: p for p in ropa["purposes"]}


class TestRopa:
    async def test_a_purpose_lists_only_its_own_categories_and_rules(
        self, client: AsyncClient, admin: dict[str, str], world: dict[str, Any]
    ) -> None:
        await add_recipients(client, admin)
        ropa = (await client.get("/v1/ropa", headers=admin)).json()
        purposes = purposes_of(ropa)
        account, comms, marketing = (
            purposes["account.manage"],
            purposes["comms.deliver"],
            purposes["marketing.email"],
        )
        assert account["categories"] == ["account.profile", "account.usage"]
        assert comms["categories"] == ["communications.recording", "communications.sms_body"]
        # Acme's SMS rule applies to what comms.deliver's records hold, not to the others.
        assert [r["id"] for r in comms["retention_rules"]] == [str(world["acme_rule"].id)]
        assert account["retention_rules"] == []
        assert [r["id"] for r in marketing["retention_rules"]] == [str(world["marketing_rule"].id)]
        assert marketing["categories"] == []
        assert account["data_subject_categories"] == ["users"]
        assert comms["recipients"] == ["cloud-host"] and account["recipients"] == ["mail-relay"]

        assert ropa["controller"]["contact"] == "Spix, privacy@spix.example"
        assert ropa["controller"]["dpo_contact"] == "DPO, dpo@spix.example"
        assert ropa["security_measures"].startswith("Encryption")
        assert {r["key"] for r in ropa["recipients"]} == {"cloud-host", "mail-relay"}
        assert [(t["key"], t["country"], t["transfer_safeguard"]) for t in ropa["transfers"]] == [
            ("cloud-host", "US", "scc")
        ]

        text = (await client.get("/v1/ropa", headers={**admin, "Accept": "text/csv"})).text
        rows = list(csv.DictReader(io.StringIO(text)))
        (account_row,) = [r for r in rows if r["purpose_key"] == "account.manage"]
        assert account_row["categories"] == "account.profile;account.usage"
        assert account_row["data_subject_categories"] == "users"
        assert account_row["recipients"] == "mail-relay" and account_row["rule_id"] == ""

    async def test_the_processor_record_per_customer(
        self, client: AsyncClient, admin: dict[str, str], world: dict[str, Any]
    ) -> None:
        await add_recipients(client, admin)
        acme, globex = world["acme"].id, world["globex"].id
        record = await client.get(f"/v1/ropa/processor/{acme}", headers=world["acme_key"])
        assert record.status_code == 200, record.text
        body = record.json()
        assert body["processor"]["name"] == "Spix" and body["controller"]["name"] == "Acme"
        assert body["agreement_ref"] == "DPA-1"
        assert body["categories_of_processing"] == [
            {
                "purpose": "comms.deliver",
                "systems": ["messaging"],
                "categories": ["communications.sms_body"],
            }
        ]
        assert body["systems"] == ["messaging"]
        assert [r["key"] for r in body["sub_processors"]] == ["cloud-host"]
        assert [r["transfer_safeguard"] for r in body["transfers"]] == ["scc"]
        assert body["security_measures"].startswith("Encryption")

        globex_body = (
            await client.get(f"/v1/ropa/processor/{globex}", headers=world["globex_key"])
        ).json()
        assert globex_body["categories"] == ["communications.recording"]
        # A customer's key never reads another customer's record; admins read any.
        other = await client.get(f"/v1/ropa/processor/{globex}", headers=world["acme_key"])
        assert other.status_code == 404
        assert (await client.get(f"/v1/ropa/processor/{globex}", headers=admin)).status_code == 200
        platform = world["platform"].id
        assert (
            await client.get(f"/v1/ropa/processor/{platform}", headers=admin)
        ).status_code == 404
        system = await client.get(f"/v1/ropa/processor/{acme}", headers=world["keys"]["voice"])
        assert system.status_code == 404
