"""The record of processing activities as a fideslang manifest that Fides imports.

The RoPA's inventory (`service.gather_inventory`) is translated, not recomputed:
- the platform controller is the organization;
- each registry system is a system, with one privacy declaration per purpose that processes
  data in it (categories, data use, data subjects, legal basis, the retention rules), and a
  dataset whose one collection, `records`, has a field per category the system holds;
- a category or purpose with no fideslang key becomes a custom data category or data use,
  and each data subject category a custom data subject, so every reference resolves.

A custom category hangs under its parent's fideslang key (or the parent's own custom key),
or under `user` at the root: fideslang wants a child's key to extend its parent's."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.controllers.models import Controller
from app.data_categories.models import DataCategory
from app.purposes.models import Purpose
from app.recipients.models import Recipient
from app.retention_rules.models import RetentionRule
from app.ropa.fides_schemas import (
    FidesContact,
    FidesDataset,
    FidesDatasetCollection,
    FidesDatasetField,
    FidesDataSubject,
    FidesLegalBasis,
    FidesManifest,
    FidesOrganization,
    FidesPrivacyDeclaration,
    FidesSystem,
    FidesTaxonomyEntry,
    Responsibility,
)
from app.ropa.service import Inventory, Processing, gather_inventory
from app.systems.models import System

DEFAULT_ORGANIZATION = "default_organization"
# Personal data in fideslang sits under `user`; a root category of ours goes there too.
CATEGORY_ROOT = "user"
PREFIX = "spix_"
COLLECTION = "records"

LEGAL_BASES: dict[str, FidesLegalBasis] = {
    "contract": "Contract",
    "legitimate_interest": "Legitimate interests",
    "consent": "Consent",
    "legal_obligation": "Legal obligations",
    "vital_interest": "Vital interests",
    "public_task": "Public interest",
}
# fideslang leaves this list open; these are the values its documentation names.
TRANSFER_BASES = {
    "adequacy": "Adequacy Decision",
    "scc": "SCCs",
    "bcr": "BCRs",
    "derogation": "Other",
    "none": "Other",
}
SHARED_ROLES = ("third_party", "controller")

_NOT_KEY = re.compile(r"[^a-z0-9]+")


def slug(text: str) -> str:
    """A fides key segment for free text; a hash where nothing of it is left."""
    found = _NOT_KEY.sub("_", text.lower()).strip("_")
    return found or "h" + hashlib.sha256(text.encode()).hexdigest()[:12]


def category_keys(categories: Iterable[DataCategory]) -> dict[str, str]:
    """Our category key to its fideslang key: the mapped one, else a custom one."""
    by_key = {c.key: c for c in categories}
    found: dict[str, str] = {}

    def resolve(key: str) -> str:
        if key not in found:
            category = by_key[key]
            if category.fideslang:
                found[key] = category.fideslang
            elif category.parent_key in by_key:
                parent = by_key[category.parent_key]
                leaf = key.rpartition(".")[2]
                # Under a mapped parent the whole key names it: siblings in fideslang may be
                # cousins here (account.profile and account both map to user.account).
                tail = leaf if not parent.fideslang else PREFIX + key.replace(".", "_")
                found[key] = f"{resolve(parent.key)}.{tail}"
            else:
                found[key] = f"{CATEGORY_ROOT}.{PREFIX}{key.replace('.', '_')}"
        return found[key]

    for key in by_key:
        resolve(key)
    return found


def use_key(purpose: Purpose) -> str:
    return purpose.fideslang or PREFIX + purpose.key.replace(".", "_")


def _custom_categories(
    categories: Iterable[DataCategory], keys: dict[str, str], organization: str
) -> list[FidesTaxonomyEntry]:
    entries: dict[str, FidesTaxonomyEntry] = {}
    for category in categories:
        key = keys[category.key]
        if category.fideslang or key in entries:
            continue
        entries[key] = FidesTaxonomyEntry(
            fides_key=key,
            organization_fides_key=organization,
            name=category.name,
            description=category.description,
            parent_key=key.rpartition(".")[0],
        )
    return sorted(entries.values(), key=lambda e: e.fides_key)


def _retention(rules: Iterable[RetentionRule], system: str) -> str | None:
    # A customer's own setting is its instruction to Spix, not the platform's declaration.
    lines = [
        f"{rule.category or 'all categories'}: {rule.kind} {rule.period} from {rule.anchor}"
        for rule in rules
        if rule.source != "customer_setting" and rule.system in (None, system)
    ]
    return "; ".join(lines) or None


def _responsibility(
    processing: Iterable[Processing], platform: Controller | None
) -> list[Responsibility]:
    """Controller where the platform's own records sit, Processor where a customer's do."""
    ids = set().union(*(p.controller_ids for p in processing))
    platform_id = platform.id if platform is not None else None
    found: list[Responsibility] = []
    if platform_id in ids:
        found.append("Controller")
    if ids - {platform_id}:
        found.append("Processor")
    return found


def _declaration(
    purpose: Purpose,
    system: str,
    inventory: Inventory,
    categories: list[str],
    dataset: str,
    recipients: list[Recipient],
) -> FidesPrivacyDeclaration:
    shared = [r for r in recipients if r.role in SHARED_ROLES]
    return FidesPrivacyDeclaration(
        name=purpose.name,
        data_use=use_key(purpose),
        data_categories=categories,
        data_subjects=sorted({PREFIX + slug(s) for s in purpose.data_subject_categories}),
        dataset_references=[dataset],
        legal_basis_for_processing=LEGAL_BASES[purpose.legal_basis],
        retention_period=_retention(inventory.applicable[purpose.key], system),
        data_shared_with_third_parties=bool(shared),
        third_parties="; ".join(r.name for r in shared) or None,
        shared_categories=categories if shared else [],
    )


def fides_manifest(inventory: Inventory, systems: Iterable[System]) -> FidesManifest:
    platform = inventory.platform
    organization = slug(platform.external_ref or platform.name) if platform else None
    org_key = organization or DEFAULT_ORGANIZATION
    keys = category_keys(inventory.categories)
    names = {c.key: c.name for c in inventory.categories}
    registry = {s.key: s for s in systems}
    in_use = {s for p in inventory.processing.values() for s in p.systems}
    security = platform.security_measures if platform else None

    exported: list[FidesSystem] = []
    datasets: list[FidesDataset] = []
    for system_key in sorted(registry.keys() | in_use):
        system = registry.get(system_key)
        fides_key = PREFIX + system_key
        dataset_key = f"{fides_key}_{COLLECTION}"
        recipients = [r for r in inventory.recipients if system_key in r.systems]
        declarations: list[FidesPrivacyDeclaration] = []
        held: set[str] = set()
        for purpose in inventory.purposes:
            processing = inventory.processing[purpose.key]
            if system_key not in processing.systems:
                continue
            ours = processing.by_system.get(system_key) or processing.categories
            held |= ours
            declarations.append(
                _declaration(
                    purpose,
                    system_key,
                    inventory,
                    sorted({keys[c] for c in ours if c in keys}),
                    dataset_key,
                    recipients,
                )
            )
        processings = [p for p in inventory.processing.values() if system_key in p.systems]
        # `not_applicable` is no transfer, so it names no basis.
        transfers = sorted(
            {
                TRANSFER_BASES[r.transfer_safeguard]
                for r in recipients
                if r.transfer_safeguard in TRANSFER_BASES
            }
        )
        name = system.name if system else system_key
        exported.append(
            FidesSystem(
                fides_key=fides_key,
                organization_fides_key=org_key,
                name=name,
                description=system.description if system else None,
                administrating_department=system.owner if system else None,
                responsibility=_responsibility(processings, platform),
                privacy_declarations=declarations,
                dataset_references=[dataset_key],
                data_security_practices=security,
                does_international_transfers=bool(transfers),
                legal_basis_for_transfers=transfers,
            )
        )
        datasets.append(
            FidesDataset(
                fides_key=dataset_key,
                organization_fides_key=org_key,
                name=f"{name}: registered records",
                description="The kinds of data the registry knows this system's records hold",
                collections=[
                    FidesDatasetCollection(
                        name=COLLECTION,
                        fields=[
                            FidesDatasetField(
                                name=c, description=names.get(c), data_categories=[keys[c]]
                            )
                            for c in sorted(held)
                            if c in keys
                        ],
                    )
                ],
            )
        )

    subjects = sorted({s for p in inventory.purposes for s in p.data_subject_categories})
    return FidesManifest(
        organization=[_organization(platform, org_key)] if platform else [],
        data_category=_custom_categories(inventory.categories, keys, org_key),
        data_use=[
            FidesTaxonomyEntry(
                fides_key=use_key(p),
                organization_fides_key=org_key,
                name=p.name,
                description=p.description,
                parent_key=None,
            )
            for p in inventory.purposes
            if not p.fideslang
        ],
        data_subject=sorted(
            {
                PREFIX + slug(s): FidesDataSubject(
                    fides_key=PREFIX + slug(s), organization_fides_key=org_key, name=s
                )
                for s in subjects
            }.values(),
            key=lambda s: s.fides_key,
        ),
        system=exported,
        dataset=datasets,
    )


def _organization(platform: Controller, key: str) -> FidesOrganization:
    return FidesOrganization(
        fides_key=key,
        name=platform.name,
        controller=FidesContact(name=platform.contact or platform.name),
        data_protection_officer=FidesContact(name=platform.dpo_contact)
        if platform.dpo_contact
        else None,
    )


async def build_fides_manifest(session: AsyncSession) -> FidesManifest:
    inventory = await gather_inventory(session)
    systems = await session.scalars(select(System).order_by(System.key))
    return fides_manifest(inventory, systems)


def manifest_json(manifest: FidesManifest) -> bytes:
    """Indented JSON, which is also YAML: `fides push` reads it from a `.yml` file."""
    return orjson.dumps(manifest.model_dump(mode="json"), option=orjson.OPT_INDENT_2)
