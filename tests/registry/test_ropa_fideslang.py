"""The RoPA as a fideslang manifest (`GET /v1/ropa?format=fideslang`, `spix-dsr ropa export`):
parsed by fideslang's own models and resolved against its default taxonomy, the check Fides
makes when it imports a manifest."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml
from fideslang import DEFAULT_TAXONOMY
from fideslang.parse import load_manifests_into_taxonomy
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.controllers.models import Controller
from app.core.db import Database
from app.data_categories.models import DataCategory
from app.ropa.fides_export import category_keys, slug
from app.ropa.fides_schemas import FIDESLANG_MEDIA_TYPE
from app.taxonomy.document import read_taxonomy
from app.taxonomy.service import load_taxonomy
from tests.builders import TEST_AUDIT_KEY, make_controller, make_record
from tests.databases import fresh_database, run_cli

FIDESLANG = {"format": "fideslang"}
DEFAULT_KEYS = {
    kind: {entry.fides_key for entry in getattr(DEFAULT_TAXONOMY, kind)}
    for kind in ("data_category", "data_use", "data_subject")
}


def importable(manifest: dict[str, Any]) -> None:
    """What Fides checks on import: each resource parses, and every key it names resolves in
    the default taxonomy or in the manifest's own entries (parents included)."""
    taxonomy = load_manifests_into_taxonomy(manifest)
    known = {
        kind: DEFAULT_KEYS[kind] | {e.fides_key for e in getattr(taxonomy, kind)}
        for kind in DEFAULT_KEYS
    }
    for kind in ("data_category", "data_use"):
        for entry in getattr(taxonomy, kind):
            assert not entry.is_default
            assert entry.parent_key is None or entry.parent_key in known[kind], entry.fides_key
    organizations = {o.fides_key for o in taxonomy.organization} | {"default_organization"}
    datasets = {d.fides_key for d in taxonomy.dataset}
    for system in taxonomy.system:
        assert system.organization_fides_key in organizations
        assert set(system.dataset_references) <= datasets
        for declaration in system.privacy_declarations:
            assert declaration.data_use in known["data_use"], declaration.data_use
            assert set(declaration.data_categories) <= known["data_category"]
            assert set(declaration.data_subjects) <= known["data_subject"]
    for dataset in taxonomy.dataset:
        for collection in dataset.collections:
            for field in collection.fields:
                assert set(field.data_categories or []) <= known["data_category"]


async def seed_with_records(client: AsyncClient, admin: dict[str, str], session: AsyncSession):
    await load_taxonomy(session, read_taxonomy())
    platform = await session.scalar(select(Controller).where(Controller.kind == "platform"))
    assert platform is not None
    platform.dpo_contact = "dpo@spix.sh"
    customer = await make_controller(session, name="Acme")
    await make_record(
        session,
        system="billing",
        controller_id=platform.id,
        categories=["billing.invoice"],
        purposes=["legal.accounting"],
    )
    await make_record(
        session,
        system="messaging",
        controller_id=customer.id,
        categories=["communications.sms_body", "configuration.workflow"],
        purposes=["service.provide"],
    )
    await session.commit()
    patched = await client.patch(
        "/v1/purposes/legal.accounting",
        headers=admin,
        json={"data_subject_categories": ["users", "Kund:innen"]},
    )
    assert patched.status_code == 200, patched.text
    created = await client.post(
        "/v1/recipients",
        headers=admin,
        json={
            "key": "sms-carrier",
            "name": "Carrier Inc.",
            "role": "third_party",
            "country": "US",
            "transfer_safeguard": "scc",
            "systems": ["messaging"],
        },
    )
    assert created.status_code == 201, created.text
    return platform, customer


class TestHttp:
    async def test_the_seeded_registry_is_a_manifest_fides_imports(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await seed_with_records(client, admin, session)
        response = await client.get("/v1/ropa", params=FIDESLANG, headers=admin)
        assert response.status_code == 200
        assert response.headers["content-type"] == FIDESLANG_MEDIA_TYPE
        manifest = response.json()
        # JSON is YAML: the file `fides push` reads as .yml is this answer as it is.
        assert yaml.safe_load(response.text) == manifest
        importable(manifest)

        (organization,) = manifest["organization"]
        assert (organization["fides_key"], organization["name"]) == ("spix", "Spix")
        assert organization["data_protection_officer"]["name"] == "dpo@spix.sh"
        systems = {s["fides_key"]: s for s in manifest["system"]}
        # Every registry system, in use or not.
        assert len(systems) == len(read_taxonomy()["systems"])
        assert all(s["organization_fides_key"] == "spix" for s in systems.values())

        (accounting,) = systems["spix_billing"]["privacy_declarations"]
        assert accounting["data_use"] == "finance"
        assert accounting["data_categories"] == ["user.financial"]
        assert accounting["legal_basis_for_processing"] == "Legal obligations"
        assert accounting["data_subjects"] == ["spix_kund_innen", "spix_users"]
        assert "billing.invoice: minimum P10Y from collected_at" in accounting["retention_period"]
        assert systems["spix_billing"]["responsibility"] == ["Controller"]
        assert not systems["spix_billing"]["does_international_transfers"]

        messaging = systems["spix_messaging"]
        assert messaging["responsibility"] == ["Processor"]
        (provide,) = messaging["privacy_declarations"]
        # A category with no fideslang key travels as a custom one under its parent's key.
        assert provide["data_categories"] == [
            "user.account.settings.spix_configuration_workflow",
            "user.content.private",
        ]
        assert provide["data_shared_with_third_parties"] and provide["third_parties"] == (
            "Carrier Inc."
        )
        assert messaging["legal_basis_for_transfers"] == ["SCCs"]
        assert systems["spix_voice"]["privacy_declarations"] == []

        datasets = {d["fides_key"]: d for d in manifest["dataset"]}
        (collection,) = datasets["spix_messaging_records"]["collections"]
        assert {f["name"]: f["data_categories"] for f in collection["fields"]} == {
            "communications.sms_body": ["user.content.private"],
            "configuration.workflow": ["user.account.settings.spix_configuration_workflow"],
        }
        custom_uses = {u["fides_key"] for u in manifest["data_use"]}
        assert custom_uses == {
            "spix_" + p["key"].replace(".", "_")
            for p in read_taxonomy()["purposes"]
            if "fideslang" not in p
        }
        subjects = {s["fides_key"]: s["name"] for s in manifest["data_subject"]}
        assert subjects == {"spix_users": "users", "spix_kund_innen": "Kund:innen"}
        # No customer's name: the manifest describes the platform, not who its customers are.
        assert "Acme" not in response.text

    def test_every_seeded_fideslang_key_is_in_the_default_taxonomy(self) -> None:
        taxonomy = read_taxonomy()
        mapped = {c["fideslang"] for c in taxonomy["categories"] if "fideslang" in c}
        assert mapped <= DEFAULT_KEYS["data_category"]
        uses = {p["fideslang"] for p in taxonomy["purposes"] if "fideslang" in p}
        assert uses <= DEFAULT_KEYS["data_use"]

    async def test_before_seed_it_is_an_empty_manifest_that_still_parses(
        self, client: AsyncClient, auditor: dict[str, str]
    ) -> None:
        response = await client.get("/v1/ropa", params=FIDESLANG, headers=auditor)
        assert response.status_code == 200
        manifest = response.json()
        importable(manifest)
        assert manifest["organization"] == manifest["system"] == manifest["data_use"] == []

    async def test_format_wins_over_accept_and_the_default_answer_is_unchanged(
        self, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        await load_taxonomy(session, read_taxonomy())
        await session.commit()
        csv = await client.get(
            "/v1/ropa", params=FIDESLANG, headers={**admin, "Accept": "text/csv"}
        )
        assert csv.headers["content-type"] == FIDESLANG_MEDIA_TYPE
        default = await client.get("/v1/ropa", headers=admin)
        assert default.headers["content-type"] == "application/json"
        assert default.json()["controller"]["name"] == "Spix"

    async def test_an_unknown_format_is_422(
        self, client: AsyncClient, admin: dict[str, str]
    ) -> None:
        response = await client.get("/v1/ropa", params={"format": "yaml"}, headers=admin)
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"


class TestCustomKeys:
    @staticmethod
    def category(key: str, fideslang: str | None = None) -> DataCategory:
        parent = key.rpartition(".")[0] or None
        return DataCategory(key=key, parent_key=parent, name=key, fideslang=fideslang)

    def test_custom_keys_extend_the_nearest_fideslang_key(self) -> None:
        keys = category_keys(
            [
                self.category("account", "user.account"),
                self.category("account.profile", "user.account"),
                self.category("account.status"),
                self.category("account.profile.status"),
                self.category("usage"),
                self.category("usage.timestamp"),
            ]
        )
        assert keys == {
            "account": "user.account",
            "account.profile": "user.account",
            # Cousins here, siblings in fideslang: the whole key keeps them apart.
            "account.status": "user.account.spix_account_status",
            "account.profile.status": "user.account.spix_account_profile_status",
            "usage": "user.spix_usage",
            "usage.timestamp": "user.spix_usage.timestamp",
        }

    def test_slug_keeps_a_fides_key_out_of_any_text(self) -> None:
        assert slug("customers' end users") == "customers_end_users"
        only_symbols = slug("???")
        assert only_symbols.startswith("h") and only_symbols == slug("???") != slug("!!!")


async def test_the_command_line_exports_the_same_manifest(backend: str, tmp_path: Path) -> None:
    async with fresh_database(backend, tmp_path) as url:

        def spix(*args: str) -> subprocess.CompletedProcess[str]:
            return run_cli(url, tmp_path, *args, SPIX_DSR_AUDIT_KEY=TEST_AUDIT_KEY)

        assert spix("seed").returncode == 0
        database = Database.from_url(url)
        try:
            async with database.sessionmaker() as session:
                platform = await session.scalar(
                    select(Controller).where(Controller.kind == "platform")
                )
                assert platform is not None
                await make_record(
                    session,
                    system="support",
                    controller_id=platform.id,
                    categories=["support.ticket", "usage.timestamp"],
                    purposes=["support.respond"],
                )
                await session.commit()
        finally:
            await database.dispose()

        target = tmp_path / "spix.yml"
        written = spix("ropa", "export", "--format", "fideslang", "-o", str(target))
        assert written.returncode == 0, written.stderr
        manifest = yaml.safe_load(target.read_text(encoding="utf-8"))
        importable(manifest)
        support = next(s for s in manifest["system"] if s["fides_key"] == "spix_support")
        (respond,) = support["privacy_declarations"]
        assert respond["data_use"] == "essential.service.operations.support"
        assert respond["data_categories"] == ["user.content.private", "user.spix_usage.timestamp"]

        printed = spix("ropa", "export", "--format", "fideslang")
        assert printed.returncode == 0, printed.stderr
        assert json.loads(printed.stdout)["system"] == manifest["system"]
        as_json = spix("ropa", "export")
        assert json.loads(as_json.stdout)["controller"]["name"] == "Spix"
        as_csv = spix("ropa", "export", "--format", "csv")
        assert as_csv.stdout.startswith("purpose_key,")
        bad = spix("ropa", "export", "--format", "yaml")
        assert bad.returncode == 2
