"""A taxonomy document: read from TOML and checked whole, every check that needs no database.

The document's shape is described in the header of `spix_default.toml`."""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, ValidationError

from app.core.schemas import DottedKey, Name, SystemKey, Text
from app.purposes.models import LEGAL_BASES
from app.retention.policy import ACTIONS, KINDS, parse_period, validate_anchor

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
