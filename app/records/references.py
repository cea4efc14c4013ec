"""Do the registry entries a record names exist: its system, controller, categories and
purposes. One statement for all four kinds, however many records are checked."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, cast, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from app.controllers.models import Controller
from app.data_categories.models import DataCategory
from app.purposes.models import Purpose
from app.systems.models import System


@dataclass(frozen=True, slots=True)
class Missing:
    """The first reference that does not exist: where it is in the record, and what is wrong."""

    loc: list[str | int]
    detail: str


@dataclass(frozen=True, slots=True)
class KnownReferences:
    """Which of the references asked about exist."""

    systems: set[str]
    controllers: set[uuid.UUID]
    categories: set[str]
    purposes: set[str]

    def first_missing(
        self,
        system: str,
        controller_id: uuid.UUID,
        categories: Sequence[str],
        purposes: Sequence[str],
    ) -> Missing | None:
        if system not in self.systems:
            return Missing(["system"], f"No system with key {system!r}")
        if controller_id not in self.controllers:
            return Missing(["controller_id"], "No controller with this id")
        for position, key in enumerate(categories):
            if key not in self.categories:
                return Missing(["categories", position], f"No category {key!r}")
        for position, key in enumerate(purposes):
            if key not in self.purposes:
                return Missing(["purposes", position], f"No purpose {key!r}")
        return None


async def known_references(
    session: AsyncSession,
    systems: Iterable[str],
    controllers: Iterable[uuid.UUID],
    categories: Iterable[str],
    purposes: Iterable[str],
) -> KnownReferences:
    wanted: dict[str, tuple[Any, set[Any]]] = {
        "system": (System.key, set(systems)),
        "controller": (Controller.id, set(controllers)),
        "category": (DataCategory.key, set(categories)),
        "purpose": (Purpose.key, set(purposes)),
    }
    # One round trip: each kind's keys found, as text (a controller's id too), tagged.
    parts = [
        select(literal(kind).label("kind"), cast(column, String).label("key")).where(
            column.in_(values)
        )
        for kind, (column, values) in wanted.items()
        if values
    ]
    found: dict[str, set[str]] = {kind: set() for kind in wanted}
    if parts:
        for kind, key in await session.execute(union_all(*parts)):
            found[kind].add(key)
    return KnownReferences(
        systems=found["system"],
        controllers={uuid.UUID(key) for key in found["controller"]},
        categories=found["category"],
        purposes=found["purpose"],
    )


async def missing_reference(
    session: AsyncSession,
    system: str,
    controller_id: uuid.UUID,
    categories: Sequence[str],
    purposes: Sequence[str],
) -> Missing | None:
    """One record's references: the first that does not exist, or None."""
    known = await known_references(session, [system], [controller_id], categories, purposes)
    return known.first_missing(system, controller_id, categories, purposes)
