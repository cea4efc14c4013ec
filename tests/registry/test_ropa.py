"""The record of processing activities: built from the registry, as JSON or CSV, for readers."""

from __future__ import annotations

import csv
import io

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.ropa.router import wants_csv
from app.ropa.schemas import CSV_COLUMNS
from app.taxonomy.document import read_taxonomy
from app.taxonomy.service import load_taxonomy
from tests.builders import make_category, make_controller, make_purpose, make_rule, make_system
from tests.conftest import bearer

TAXONOMY = read_taxonomy()


async def seed(session: AsyncSession) -> None:
    await load_taxonomy(session, read_taxonomy())
    await session.commit()


def parse_csv(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == list(CSV_COLUMNS)
    return list(reader)


class TestRoles:
    async def test_unauthenticated_is_401(self, client: AsyncClient) -> None:
        assert (await client.get("/v1/ropa")).status_code == 401

    async def test_admin_and_auditor_read_it(
        self, client: AsyncClient, admin: dict[str, str], auditor: dict[str, str]
    ) -> None:
        for headers in (admin, auditor):
            response = await client.get("/v1/ropa", headers=headers)
            assert response.status_code == 200
            assert response.headers["vary"] == "Accept"

    @pytest.mark.parametrize("role", ["system", "controller"])
    async def test_system_and_controller_keys_are_403(
        self, client: AsyncClient, session: AsyncSession, role: str
    ) -> None:
        if role == "system":
            headers = await bearer(session, role, system_key=(await make_system(session)).key)
        else:
            headers = await bearer(session, role, controller_id=(await make_controller(session)).id)
        # The fideslang manifest names every system and purpose too: the admin's record.
        for accept, query in (("application/json", ""), ("text/csv", ""), ("*/*", "fideslang")):
            response = await client.get(
                "/v1/ropa",
                params={"format": query} if query else None,
                headers={**headers, "Accept": accept},
            )
            assert response.status_code == 403
            assert response.headers["content-type"] == "application/problem+json"


class TestFromTheSeededTaxonomy:
    async def test_every_purpose_with_its_rules_and_the_controller(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await seed(session)
        body = (await client.get("/v1/ropa", headers=admin)).json()

        assert body["controller"]["name"] == "Spix"
        assert body["controller"]["external_ref"] == "spix"
        assert [p["key"] for p in body["purposes"]] == sorted(
            p["key"] for p in TAXONOMY["purposes"]
        )
        marketing = next(p for p in body["purposes"] if p["key"] == "marketing.communications")
        assert (marketing["legal_basis"], marketing["objection_absolute"]) == ("consent", True)
        # No rule in the file names a purpose and no record is registered yet: no purpose
        # claims a category or a rule it does not process (Art. 30(1)(c)).
        for purpose in body["purposes"]:
            assert purpose["retention_rules"] == [] and purpose["categories"] == []
        assert marketing["systems"] == marketing["controllers"] == marketing["regions"] == []
        # Every category in the file falls under some rule.
        assert body["retained_without_rule"] == []

    async def test_csv_has_the_header_and_a_row_per_purpose_and_rule(
        self, client: AsyncClient, auditor: dict[str, str], session: AsyncSession
    ) -> None:
        await seed(session)
        from app.controllers.models import Controller
        from tests.builders import make_record

        platform = await session.scalar(select(Controller).where(Controller.kind == "platform"))
        assert platform is not None
        await make_record(
            session,
            system="billing",
            controller_id=platform.id,
            categories=["billing.invoice"],
            purposes=["legal.accounting"],
        )
        response = await client.get("/v1/ropa", headers={**auditor, "Accept": "text/csv"})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert "ropa.csv" in response.headers["content-disposition"]
        rows = parse_csv(response.text)
        assert {row["purpose_key"] for row in rows} == {p["key"] for p in TAXONOMY["purposes"]}
        accounting = [row for row in rows if row["purpose_key"] == "legal.accounting"]
        # The rules that apply to what the purpose's records hold (invoices), and no other.
        invoice_rules = {
            r["key"]
            for r in TAXONOMY["retention_rules"]
            if r.get("category") in ("billing", "billing.invoice") and "purpose" not in r
        }
        assert len(accounting) == len(invoice_rules) > 0
        others = [row for row in rows if row["purpose_key"] != "legal.accounting"]
        assert len(others) == len(TAXONOMY["purposes"]) - 1
        assert all(row["rule_id"] == "" and row["categories"] == "" for row in others)
        row = next(row for row in accounting if row["rule_period"] == "P10Y")
        assert row["legal_basis"] == "legal_obligation" and row["rule_kind"] == "minimum"
        assert row["categories"].split(";") == ["billing.invoice"]
        assert row["rule_source"] == "law" and row["rule_citation"].startswith("DE: HGB")

    async def test_before_seed_there_is_no_controller(
        self, client: AsyncClient, admin: dict[str, str]
    ) -> None:
        body = (await client.get("/v1/ropa", headers=admin)).json()
        assert body["controller"] is None and body["purposes"] == []


class TestRuleScopes:
    async def test_a_purpose_rule_gives_its_systems_regions_and_controllers(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        acme = await make_controller(session, name="Acme")
        await make_system(session, "voice")
        await make_category(session, "communications.recording")
        await make_purpose(session, "service.provide")
        await make_purpose(session, "analytics.product_usage", legal_basis="legitimate_interest")
        scoped = await make_rule(
            session,
            purpose="service.provide",
            system="voice",
            region="eu",
            controller_id=acme.id,
            source="customer_setting",
        )
        general = await make_rule(session, category="communications.recording")

        body = (await client.get("/v1/ropa", headers=admin)).json()
        by_key = {p["key"]: p for p in body["purposes"]}
        provide, analytics = by_key["service.provide"], by_key["analytics.product_usage"]
        # A rule naming no purpose belongs to none while no record of it holds its category.
        assert {r["id"] for r in provide["retention_rules"]} == {str(scoped.id)}
        assert provide["systems"] == ["voice"] and provide["regions"] == ["eu"]
        assert [c["name"] for c in provide["controllers"]] == ["Acme"]
        assert provide["categories"] == []
        assert analytics["retention_rules"] == [] and analytics["categories"] == []
        assert analytics["systems"] == analytics["controllers"] == []
        assert general.purpose is None

        rows = parse_csv(
            (await client.get("/v1/ropa", headers={**admin, "Accept": "text/csv"})).text
        )
        scoped_row = next(row for row in rows if row["rule_id"] == str(scoped.id))
        assert (scoped_row["controllers"], scoped_row["systems"]) == ("Acme", "voice")

    async def test_a_rule_with_neither_purpose_nor_category_lists_nothing(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await make_system(session, "logs")
        await make_purpose(session, "service.provide")
        await make_rule(session, system="logs")
        body = (await client.get("/v1/ropa", headers=admin)).json()
        assert body["purposes"][0]["retention_rules"] == []
        rows = parse_csv(
            (await client.get("/v1/ropa", headers={**admin, "Accept": "text/csv"})).text
        )
        assert len(rows) == 1 and rows[0]["purpose_key"] == "service.provide"
        assert rows[0]["rule_id"] == ""

    async def test_categories_no_rule_covers_are_listed(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await make_category(session, "support.ticket")
        await make_category(session, "billing.invoice", sensitivity="high")
        await make_rule(session, category="support")
        body = (await client.get("/v1/ropa", headers=admin)).json()
        assert body["retained_without_rule"] == [
            {"key": "billing", "name": "billing", "sensitivity": "high"},
            {"key": "billing.invoice", "name": "billing.invoice", "sensitivity": "high"},
        ]


class TestCsvSafety:
    async def test_a_citation_that_looks_like_a_formula_is_not_one(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await make_category(session, "support")
        await make_purpose(session, "support.respond")
        await make_rule(
            session,
            category="support",
            purpose="support.respond",
            citation='=HYPERLINK("http://x.example")',
        )
        response = await client.get("/v1/ropa", headers={**admin, "Accept": "text/csv"})
        (row,) = parse_csv(response.text)
        assert row["rule_citation"] == '\'=HYPERLINK("http://x.example")'
        json_body = (await client.get("/v1/ropa", headers=admin)).json()
        citation = json_body["purposes"][0]["retention_rules"][0]["citation"]
        assert citation == '=HYPERLINK("http://x.example")'


class TestNegotiation:
    @pytest.mark.parametrize(
        ("accept", "csv_wanted"),
        [
            (None, False),
            ("*/*", False),
            ("application/json", False),
            ("text/csv", True),
            ("text/*", True),
            ("text/csv;q=0.5, application/json", False),
            ("application/json;q=0.2, text/csv;q=0.9", True),
            ("text/html", False),
        ],
    )
    def test_accept_header(self, accept: str | None, csv_wanted: bool) -> None:
        assert wants_csv(accept) is csv_wanted


async def test_registered_records_add_their_processing(
    client: AsyncClient, admin: dict[str, str], session: AsyncSession
) -> None:
    from tests.builders import make_record

    acme = await make_controller(session, name="Acme")
    await make_system(session, "voice")
    await make_category(session, "communications.recording")
    await make_purpose(session, "service.provide")
    await make_record(
        session,
        system="voice",
        controller_id=acme.id,
        categories=["communications.recording"],
        purposes=["service.provide"],
        region="eu",
    )
    ropa = (await client.get("/v1/ropa", headers=admin)).json()
    (purpose,) = [p for p in ropa["purposes"] if p["key"] == "service.provide"]
    assert purpose["categories"] == ["communications.recording"]
    assert purpose["systems"] == ["voice"] and purpose["regions"] == ["eu"]
    assert [c["id"] for c in purpose["controllers"]] == [str(acme.id)]
