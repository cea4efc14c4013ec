"""Do the registry entries a record names exist: its system, controller, categories and
purposes. One lookup per kind of entry, however many records are checked."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
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


async def _existing_keys(session: AsyncSession, column: Any, wanted: set[Any]) -> set[Any]:
    if not wanted:
        return set()
    return set((await session.scalars(select(column).where(column.in_(wanted)))).all())


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
    return KnownReferences(
        systems=await _existing_keys(session, System.key, set(systems)),
        controllers=await _existing_keys(session, Controller.id, set(controllers)),
        categories=await _existing_keys(session, DataCategory.key, set(categories)),
        purposes=await _existing_keys(session, Purpose.key, set(purposes)),
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
