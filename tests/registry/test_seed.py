"""`spix-dsr seed`: the Spix default taxonomy, upserted by natural key; twice changes nothing."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.controllers.models import Controller
from app.data_categories.models import DataCategory
from app.purposes.models import Purpose
from app.retention_rules.models import RetentionRule
from app.systems.models import System
from app.taxonomy.document import InvalidTaxonomy, read_taxonomy
from app.taxonomy.service import load_taxonomy
from tests.builders import TEST_AUDIT_KEY, make_controller
from tests.databases import fresh_database

DEFAULT = read_taxonomy()
COUNTS = {
    "platform_controller": 1,
    "systems": len(DEFAULT["systems"]),
    "categories": len(DEFAULT["categories"]),
    "purposes": len(DEFAULT["purposes"]),
    "retention_rules": len(DEFAULT["retention_rules"]),
}
TABLES = (Controller, System, DataCategory, Purpose, RetentionRule, AuditEvent)


def taxonomy() -> dict[str, Any]:
    return copy.deepcopy(DEFAULT)


async def count(session: AsyncSession, model: type[Any]) -> int:
    return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def event_types(session: AsyncSession) -> Counter[str]:
    return Counter((await session.scalars(select(AuditEvent.event_type))).all())


class TestFirstLoad:
    async def test_creates_the_platform_controller_and_everything_in_the_file(
        self, session: AsyncSession
    ) -> None:
        report = await load_taxonomy(session, taxonomy())
        await session.commit()

        assert {kind: c.created for kind, c in report.kinds().items()} == COUNTS
        platform = (
            await session.scalars(select(Controller).where(Controller.kind == "platform"))
        ).one()
        assert (platform.name, platform.external_ref) == ("Spix", "spix")
        assert platform.dsr_routing_mode == "dashboard" and platform.auto_execute is False
        categories = {c.key: c for c in await session.scalars(select(DataCategory))}
        assert set(categories) == {c["key"] for c in DEFAULT["categories"]}
        assert categories["communications.recording"].parent_key == "communications"
        assert categories["account.profile.email"].parent_key == "account.profile"
        assert categories["account"].parent_key is None
        assert categories["communications.recording"].fideslang == "user.biometric.voice"
        rules = {r.key: r for r in await session.scalars(select(RetentionRule))}
        assert set(rules) == {r["key"] for r in DEFAULT["retention_rules"]}
        invoices = rules["billing-invoices-min"]
        assert (invoices.kind, invoices.period, invoices.anchor, invoices.source) == (
            "minimum",
            "P10Y",
            "collected_at",
            "law",
        )
        assert invoices.category == "billing.invoice" and invoices.controller_id is None
        assert invoices.default_to_review is True and "HGB" in (invoices.citation or "")
        assert rules["logs-raw-max"].system == "logs" and rules["logs-raw-max"].category is None
        marketing = await session.get(Purpose, "marketing.communications")
        assert marketing is not None
        assert (marketing.legal_basis, marketing.objection_absolute) == ("consent", True)
        assert await count(session, System) == COUNTS["systems"]

    async def test_every_object_is_audited_by_the_operator(self, session: AsyncSession) -> None:
        await load_taxonomy(session, taxonomy())
        await session.commit()
        assert await event_types(session) == {
            "controller.created": 1,
            "system.created": COUNTS["systems"],
            "data_category.created": COUNTS["categories"],
            "purpose.created": COUNTS["purposes"],
            "retention_rule.created": COUNTS["retention_rules"],
            "taxonomy.seeded": 1,
        }
        roles = set((await session.scalars(select(AuditEvent.actor_role))).all())
        assert roles == {"operator"}
        summary = (
            await session.scalars(
                select(AuditEvent).where(AuditEvent.event_type == "taxonomy.seeded")
            )
        ).one()
        assert summary.details["categories"] == {
            "created": COUNTS["categories"],
            "updated": 0,
            "unchanged": 0,
        }

    async def test_adopts_an_existing_platform_controller(self, session: AsyncSession) -> None:
        existing = await make_controller(session, kind="platform", name="Spix (old name)")
        report = await load_taxonomy(session, taxonomy())
        await session.commit()
        assert (report.platform_controller.created, report.platform_controller.updated) == (0, 1)
        platform = (
            await session.scalars(select(Controller).where(Controller.kind == "platform"))
        ).one()
        assert platform.id == existing.id
        assert (platform.name, platform.external_ref) == ("Spix", "spix")

    async def test_parents_load_before_children_whatever_the_order(
        self, session: AsyncSession
    ) -> None:
        data = taxonomy()
        data["categories"].reverse()
        report = await load_taxonomy(session, data)
        await session.commit()
        assert report.categories.created == COUNTS["categories"]


class TestSecondLoad:
    async def test_changes_nothing_and_writes_no_audit_event(self, session: AsyncSession) -> None:
        await load_taxonomy(session, taxonomy())
        await session.commit()
        events = await count(session, AuditEvent)

        again = await load_taxonomy(session, taxonomy())
        await session.commit()

        assert not again.changed
        assert {kind: c.unchanged for kind, c in again.kinds().items()} == COUNTS
        assert await count(session, AuditEvent) == events
        versions = set((await session.scalars(select(DataCategory.version))).all())
        assert versions == {1}

    async def test_a_changed_purpose_name_updates_only_that_purpose(
        self, session: AsyncSession
    ) -> None:
        await load_taxonomy(session, taxonomy())
        await session.commit()
        before = await event_types(session)
        data = taxonomy()
        changed_key = data["purposes"][0]["key"]
        data["purposes"][0]["name"] = "Run the Spix service"

        report = await load_taxonomy(session, data)
        await session.commit()

        assert (report.purposes.updated, report.purposes.unchanged) == (
            1,
            COUNTS["purposes"] - 1,
        )
        assert all(c.changed == 0 for kind, c in report.kinds().items() if kind != "purposes")
        purpose = await session.get(Purpose, changed_key)
        assert purpose is not None
        assert (purpose.name, purpose.version) == ("Run the Spix service", 2)
        assert await event_types(session) - before == {"purpose.updated": 1, "taxonomy.seeded": 1}
        updated = (
            await session.scalars(
                select(AuditEvent).where(AuditEvent.event_type == "purpose.updated")
            )
        ).one()
        assert (updated.entity_id, updated.details["fields"]) == (changed_key, ["name"])

    async def test_a_changed_rule_period_updates_that_rule(self, session: AsyncSession) -> None:
        await load_taxonomy(session, taxonomy())
        await session.commit()
        data = taxonomy()
        rule = next(r for r in data["retention_rules"] if r["key"] == "support-attachment-max")
        rule["period"] = "P3M"
        report = await load_taxonomy(session, data)
        await session.commit()
        assert report.retention_rules.updated == 1
        stored = (
            await session.scalars(
                select(RetentionRule).where(RetentionRule.key == "support-attachment-max")
            )
        ).one()
        assert (stored.period, stored.version) == ("P3M", 2)


def _unknown_parent(data: dict[str, Any]) -> None:
    data["categories"].append({"key": "ghost.child", "name": "Orphan", "sensitivity": "low"})


def _bad_period(data: dict[str, Any]) -> None:
    data["retention_rules"][0]["period"] = "90 days"


def _unknown_rule_category(data: dict[str, Any]) -> None:
    data["retention_rules"][0]["category"] = "nowhere"


def _bad_anchor(data: dict[str, Any]) -> None:
    data["retention_rules"][0]["anchor"] = "closed_at"


def _bad_legal_basis(data: dict[str, Any]) -> None:
    data["purposes"][0]["legal_basis"] = "because"


def _unknown_rule_system(data: dict[str, Any]) -> None:
    data["retention_rules"][0]["system"] = "mainframe"


def _customer_source(data: dict[str, Any]) -> None:
    data["retention_rules"][0]["source"] = "customer_setting"


def _duplicate_system(data: dict[str, Any]) -> None:
    data["systems"].append(dict(data["systems"][0]))


def _unknown_field(data: dict[str, Any]) -> None:
    data["systems"][0]["colour"] = "blue"


def _quoted_boolean(data: dict[str, Any]) -> None:
    data["purposes"][0]["objection_absolute"] = "false"


def _no_platform_controller(data: dict[str, Any]) -> None:
    del data["platform_controller"]


def _child_above_parent(data: dict[str, Any]) -> None:
    next(c for c in data["categories"] if c["key"] == "usage")["sensitivity"] = "low"


class TestInvalidData:
    @pytest.mark.parametrize(
        ("mutate", "message"),
        [
            (_unknown_parent, r"category 'ghost.child': its parent 'ghost'"),
            (_bad_period, r"retention_rules\[0\] 'billing-invoices-min': period: .*ISO 8601"),
            (_unknown_rule_category, r"'billing-invoices-min': unknown category 'nowhere'"),
            (_bad_anchor, r"'billing-invoices-min': anchor: anchor must be"),
            (_bad_legal_basis, r"purposes\[0\] 'service.provide': legal_basis: must be one of"),
            (_unknown_rule_system, r"unknown system 'mainframe'"),
            (_customer_source, r"source: must be one of law, contract, platform_default"),
            (_duplicate_system, r"system 'accounts': appears twice"),
            (_unknown_field, r"systems\[0\] 'accounts': colour: Extra inputs"),
            (_quoted_boolean, r"objection_absolute: Input should be a valid boolean"),
            (_no_platform_controller, r"platform_controller: missing"),
            (_child_above_parent, r"category 'usage.ip_address': sensitivity medium is higher"),
        ],
    )
    async def test_fails_naming_the_entry_and_writes_nothing(
        self,
        session: AsyncSession,
        mutate: Callable[[dict[str, Any]], None],
        message: str,
    ) -> None:
        data = taxonomy()
        mutate(data)
        with pytest.raises(InvalidTaxonomy, match=message):
            await load_taxonomy(session, data)
        await session.commit()
        for model in TABLES:
            assert await count(session, model) == 0, model.__name__

    async def test_platform_ref_held_by_a_customer_fails(self, session: AsyncSession) -> None:
        await make_controller(session, external_ref="spix")
        with pytest.raises(InvalidTaxonomy, match="external_ref 'spix' belongs to a customer"):
            await load_taxonomy(session, taxonomy())
        await session.commit()
        assert await count(session, System) == 0


def _seed(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "seed", *args],
        env={**os.environ, "SPIX_DSR_DATABASE_URL": url, "SPIX_DSR_AUDIT_KEY": TEST_AUDIT_KEY},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_cli_seeds_once_then_reports_no_changes(backend: str, tmp_path: Path) -> None:
    async with fresh_database(backend, tmp_path) as url:
        first = _seed(url)
        assert first.returncode == 0, first.stderr
        assert re.search(rf"categories\s+{COUNTS['categories']} created", first.stdout)
        assert "taxonomy loaded" in first.stdout

        second = _seed(url)
        assert second.returncode == 0, second.stderr
        assert "no changes" in second.stdout
        assert re.search(
            rf"retention rules.*\s{COUNTS['retention_rules']} unchanged", second.stdout
        )

        broken = tmp_path / "broken.toml"
        broken.write_text('[platform_controller]\nname = "Spix"\n', encoding="utf-8")
        invalid = _seed(url, "--file", str(broken))
        assert invalid.returncode == 1
        assert "platform_controller: external_ref: Field required" in invalid.stderr
        assert "Traceback" not in invalid.stderr
