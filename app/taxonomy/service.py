"""The loader behind `spix-dsr seed`: check a taxonomy document whole, then upsert it by
natural key, so loading the same document twice changes nothing and logs nothing.

The document's shape is described in the header of `spix_default.toml`. References (a
category's parent, a rule's category, purpose or system) resolve in the document or, for a
document that extends the registry, in the database."""

from __future__ import annotations

import hashlib
import re
import tomllib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import OPERATOR, Operator, record
from app.auth.service import Principal
from app.controllers.models import Controller
from app.core.ids import new_id
from app.core.schemas import DottedKey, Name, SystemKey, Text
from app.data_categories.models import DataCategory
from app.purposes.models import LEGAL_BASES, Purpose
from app.retention.policy import ACTIONS, KINDS, parse_period, validate_anchor
from app.retention_rules.models import RetentionRule
from app.retention_rules.service import RuleScope, on_rules_changed, scope_of
from app.systems.models import System

DEFAULT_FILE = "spix_default.toml"
SECTIONS = ("platform_controller", "systems", "categories", "purposes", "retention_rules")
SENSITIVITIES = ("low", "medium", "high")
# `customer_setting` rules belong to one customer and are written through its controller key;
# a taxonomy document names no customer.
SOURCES = ("law", "contract", "platform_default")

_RULE_KEY = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


class InvalidTaxonomy(ValueError):
    """The document breaks a rule; nothing was written."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(
            "invalid taxonomy, nothing was loaded:\n" + "\n".join(f"  - {p}" for p in problems)
        )


def _one_of(allowed: Sequence[str]) -> AfterValidator:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    return AfterValidator(check)


def _period(value: str) -> str:
    parse_period(value)
    return value


def _rule_key(value: str) -> str:
    if not _RULE_KEY.fullmatch(value):
        raise ValueError("must be a slug of [a-z0-9] words joined by '-'")
    return value


Period = Annotated[str, StringConstraints(max_length=40), AfterValidator(_period)]
Anchor = Annotated[str, StringConstraints(max_length=120), AfterValidator(validate_anchor)]
RuleKey = Annotated[str, StringConstraints(max_length=200), AfterValidator(_rule_key)]
Region = Annotated[str, StringConstraints(min_length=1, max_length=50)]


class _Entry(BaseModel):
    # TOML values are typed, so a quoted number or boolean is a mistake worth naming.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PlatformControllerEntry(_Entry):
    name: Name
    external_ref: Name


class SystemEntry(_Entry):
    key: SystemKey
    name: Name
    owner: Name | None = None
    description: Text | None = None


class CategoryEntry(_Entry):
    key: DottedKey
    name: Name
    description: Text | None = None
    sensitivity: Annotated[str, _one_of(SENSITIVITIES)]
    fideslang: DottedKey | None = None

    @property
    def parent_key(self) -> str | None:
        return self.key.rpartition(".")[0] or None


class PurposeEntry(_Entry):
    key: DottedKey
    name: Name
    description: Text | None = None
    legal_basis: Annotated[str, _one_of(LEGAL_BASES)]
    objection_absolute: bool = False
    fideslang: DottedKey | None = None


class RuleEntry(_Entry):
    key: RuleKey
    name: Name
    kind: Annotated[str, _one_of(KINDS)]
    period: Period
    anchor: Anchor
    action: Annotated[str, _one_of(ACTIONS)] = "delete"
    source: Annotated[str, _one_of(SOURCES)]
    citation: Text | None = None
    category: DottedKey | None = None
    purpose: DottedKey | None = None
    system: SystemKey | None = None
    region: Region | None = None
    default_to_review: bool = False


@dataclass(frozen=True)
class Taxonomy:
    """A document that passed every check that needs no database."""

    platform_controller: PlatformControllerEntry
    systems: list[SystemEntry]
    categories: list[CategoryEntry]
    purposes: list[PurposeEntry]
    retention_rules: list[RuleEntry]
    # Names the document in the `taxonomy.seeded` event without copying it there.
    digest: str


@dataclass
class KindCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    @property
    def changed(self) -> int:
        return self.created + self.updated


@dataclass
class SeedReport:
    platform_controller: KindCounts = field(default_factory=KindCounts)
    systems: KindCounts = field(default_factory=KindCounts)
    categories: KindCounts = field(default_factory=KindCounts)
    purposes: KindCounts = field(default_factory=KindCounts)
    retention_rules: KindCounts = field(default_factory=KindCounts)

    def kinds(self) -> dict[str, KindCounts]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def changed(self) -> bool:
        return any(counts.changed for counts in self.kinds().values())

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {kind: asdict(counts) for kind, counts in self.kinds().items()}


def read_taxonomy(path: Path | None = None) -> dict[str, Any]:
    """The document at `path`, or the Spix default shipped inside the package."""
    name = str(path) if path is not None else DEFAULT_FILE
    try:
        if path is None:
            text = resources.files("app.taxonomy").joinpath(DEFAULT_FILE).read_text("utf-8")
        else:
            text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidTaxonomy([f"{name}: cannot be read ({exc})"]) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidTaxonomy([f"{name}: not valid TOML ({exc})"]) from exc


E = TypeVar("E", bound=_Entry)
KeyedModel = TypeVar("KeyedModel", System, Purpose)


def _label(section: str, index: int, raw: object) -> str:
    key = raw.get("key") if isinstance(raw, dict) else None
    return f"{section}[{index}] {key!r}" if isinstance(key, str) else f"{section}[{index}]"


def _messages(label: str, exc: ValidationError) -> list[str]:
    out = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        out.append(f"{label}: {where}: {message}" if where else f"{label}: {message}")
    return out


def _entries(data: dict[str, Any], section: str, model: type[E], problems: list[str]) -> list[E]:
    raw = data.get(section, [])
    if not isinstance(raw, list):
        problems.append(f"{section}: must be an array of tables ([[{section}]])")
        return []
    parsed = []
    for index, item in enumerate(raw):
        label = _label(section, index, item)
        if not isinstance(item, dict):
            problems.append(f"{label}: must be a table")
            continue
        try:
            parsed.append(model.model_validate(item))
        except ValidationError as exc:
            problems.extend(_messages(label, exc))
    return parsed


def _duplicates(section: str, keys: Iterable[str], problems: list[str]) -> None:
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            problems.append(f"{section} {key!r}: appears twice")
        seen.add(key)


def parse_taxonomy(data: dict[str, Any]) -> Taxonomy:
    """Every check that needs no database; raises InvalidTaxonomy listing each problem."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise InvalidTaxonomy(["the document must be a table"])
    problems.extend(
        f"{name!r}: unknown section (expected {', '.join(SECTIONS)})"
        for name in data
        if name not in SECTIONS
    )

    platform = None
    raw_platform = data.get("platform_controller")
    if not isinstance(raw_platform, dict):
        problems.append("platform_controller: missing ([platform_controller] with name and ref)")
    else:
        try:
            platform = PlatformControllerEntry.model_validate(raw_platform)
        except ValidationError as exc:
            problems.extend(_messages("platform_controller", exc))

    systems = _entries(data, "systems", SystemEntry, problems)
    categories = _entries(data, "categories", CategoryEntry, problems)
    purposes = _entries(data, "purposes", PurposeEntry, problems)
    rules = _entries(data, "retention_rules", RuleEntry, problems)
    _duplicates("system", (s.key for s in systems), problems)
    _duplicates("category", (c.key for c in categories), problems)
    _duplicates("purpose", (p.key for p in purposes), problems)
    _duplicates("retention rule", (r.key for r in rules), problems)

    # Anything scoped to a parent is treated with at least the care its children need.
    by_key = {c.key: c for c in categories}
    for category in categories:
        parent = by_key.get(category.parent_key or "")
        if parent is not None and SENSITIVITIES.index(parent.sensitivity) < SENSITIVITIES.index(
            category.sensitivity
        ):
            problems.append(
                f"category {category.key!r}: sensitivity {category.sensitivity} is higher than "
                f"its parent's ({parent.sensitivity})"
            )

    if problems or platform is None:
        raise InvalidTaxonomy(problems)
    digest = hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return Taxonomy(platform, systems, categories, purposes, rules, digest)


async def _existing_keys(session: AsyncSession, column: Any, keys: set[str]) -> set[str]:
    if not keys:
        return set()
    return set((await session.scalars(select(column).where(column.in_(keys)))).all())


async def _reference_problems(session: AsyncSession, taxonomy: Taxonomy) -> list[str]:
    """References the document leaves to the database, and a platform ref another uses."""
    problems = []
    categories = {c.key for c in taxonomy.categories}
    purposes = {p.key for p in taxonomy.purposes}
    systems = {s.key for s in taxonomy.systems}

    outside = {c.parent_key for c in taxonomy.categories} | {
        r.category for r in taxonomy.retention_rules
    }
    categories |= await _existing_keys(
        session, DataCategory.key, {key for key in outside if key and key not in categories}
    )
    purposes |= await _existing_keys(
        session,
        Purpose.key,
        {r.purpose for r in taxonomy.retention_rules if r.purpose and r.purpose not in purposes},
    )
    systems |= await _existing_keys(
        session,
        System.key,
        {r.system for r in taxonomy.retention_rules if r.system and r.system not in systems},
    )

    for category in taxonomy.categories:
        if category.parent_key is not None and category.parent_key not in categories:
            problems.append(
                f"category {category.key!r}: its parent {category.parent_key!r} is neither in "
                "the document nor in the registry"
            )
    for rule in taxonomy.retention_rules:
        for name, value, known in (
            ("category", rule.category, categories),
            ("purpose", rule.purpose, purposes),
            ("system", rule.system, systems),
        ):
            if value is not None and value not in known:
                problems.append(f"retention rule {rule.key!r}: unknown {name} {value!r}")

    ref = taxonomy.platform_controller.external_ref
    taken = await session.scalar(
        select(Controller.id).where(Controller.external_ref == ref, Controller.kind != "platform")
    )
    if taken is not None:
        problems.append(f"platform_controller: external_ref {ref!r} belongs to a customer")
    return problems


def _apply(obj: object, values: dict[str, Any]) -> list[str]:
    changed = sorted(name for name, value in values.items() if getattr(obj, name) != value)
    for name in changed:
        setattr(obj, name, values[name])
    return changed


async def load_taxonomy(
    session: AsyncSession, data: dict[str, Any], *, actor: Principal | Operator = OPERATOR
) -> SeedReport:
    """Check `data` whole, then insert what is missing and update what differs (flush only)."""
    taxonomy = parse_taxonomy(data)
    problems = await _reference_problems(session, taxonomy)
    if problems:
        raise InvalidTaxonomy(problems)

    report = SeedReport()
    await _load_platform(session, taxonomy.platform_controller, report.platform_controller, actor)

    await _load_by_key(session, System, "system", taxonomy.systems, report.systems, actor)
    await _load_by_key(session, Purpose, "purpose", taxonomy.purposes, report.purposes, actor)
    await _load_categories(session, taxonomy.categories, report.categories, actor)
    await _load_rules(session, taxonomy.retention_rules, report.retention_rules, actor)

    if report.changed:
        record(session, actor, "taxonomy.seeded", "taxonomy", taxonomy.digest, report.as_dict())
    return report


async def _load_platform(
    session: AsyncSession,
    entry: PlatformControllerEntry,
    counts: KindCounts,
    actor: Principal | Operator,
) -> None:
    platform = await session.scalar(select(Controller).where(Controller.kind == "platform"))
    if platform is None:
        platform = Controller(
            id=new_id(),
            kind="platform",
            name=entry.name,
            external_ref=entry.external_ref,
            dsr_routing_mode="dashboard",
            auto_execute=False,
        )
        session.add(platform)
        details = {"kind": "platform", "routing": "dashboard"}
        _created(session, actor, counts, "controller", platform.id, details)
    else:
        changed = _apply(platform, entry.model_dump())
        _updated(session, actor, counts, "controller", platform.id, changed)
    await session.flush()


async def _load_by_key(
    session: AsyncSession,
    model: type[KeyedModel],
    entity: str,
    entries: Sequence[SystemEntry] | Sequence[PurposeEntry],
    counts: KindCounts,
    actor: Principal | Operator,
) -> None:
    keys = [entry.key for entry in entries]
    existing = {
        row.key: row for row in await session.scalars(select(model).where(model.key.in_(keys)))
    }
    for entry in entries:
        values = entry.model_dump(exclude={"key"})
        row = existing.get(entry.key)
        if row is None:
            session.add(model(key=entry.key, **values))
            _created(session, actor, counts, entity, entry.key)
        else:
            _updated(session, actor, counts, entity, entry.key, _apply(row, values))
    await session.flush()


async def _load_categories(
    session: AsyncSession,
    entries: list[CategoryEntry],
    counts: KindCounts,
    actor: Principal | Operator,
) -> None:
    existing = {
        c.key: c
        for c in await session.scalars(
            select(DataCategory).where(DataCategory.key.in_([c.key for c in entries]))
        )
    }
    # Parents before children, whatever the document's order: the parent key is a foreign key.
    for depth in sorted({c.key.count(".") for c in entries}):
        for entry in entries:
            if entry.key.count(".") != depth:
                continue
            values = {**entry.model_dump(exclude={"key"}), "parent_key": entry.parent_key}
            category = existing.get(entry.key)
            if category is None:
                session.add(DataCategory(key=entry.key, **values))
                _created(session, actor, counts, "data_category", entry.key)
            else:
                changed = _apply(category, values)
                _updated(session, actor, counts, "data_category", entry.key, changed)
        await session.flush()


async def _load_rules(
    session: AsyncSession,
    entries: list[RuleEntry],
    counts: KindCounts,
    actor: Principal | Operator,
) -> None:
    existing = {
        r.key: r
        for r in await session.scalars(
            select(RetentionRule).where(RetentionRule.key.in_([r.key for r in entries]))
        )
    }
    # Stored retention decisions follow the rules: both the old and the new reach of a rule.
    touched: list[RuleScope] = []
    for entry in entries:
        # A rule from a document is the platform's: it names no controller.
        values = {**entry.model_dump(exclude={"key"}), "controller_id": None}
        details = {"key": entry.key}
        rule = existing.get(entry.key)
        if rule is None:
            rule = RetentionRule(id=new_id(), key=entry.key, **values)
            session.add(rule)
            _created(session, actor, counts, "retention_rule", rule.id, details)
            touched.append(scope_of(rule))
            continue
        before = scope_of(rule)
        changed = _apply(rule, values)
        if changed:
            touched += [before, scope_of(rule)]
        _updated(session, actor, counts, "retention_rule", rule.id, changed, details)
    await session.flush()
    if touched:
        await on_rules_changed(session, touched)


def _created(
    session: AsyncSession,
    actor: Principal | Operator,
    counts: KindCounts,
    entity: str,
    entity_id: uuid.UUID | str,
    details: dict[str, Any] | None = None,
) -> None:
    counts.created += 1
    record(
        session, actor, f"{entity}.created", entity, entity_id, {**(details or {}), "via": "seed"}
    )


def _updated(
    session: AsyncSession,
    actor: Principal | Operator,
    counts: KindCounts,
    entity: str,
    entity_id: uuid.UUID | str,
    changed: list[str],
    details: dict[str, Any] | None = None,
) -> None:
    if not changed:
        counts.unchanged += 1
        return
    counts.updated += 1
    record(
        session,
        actor,
        f"{entity}.updated",
        entity,
        entity_id,
        {**(details or {}), "fields": changed, "via": "seed"},
    )
