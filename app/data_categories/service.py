"""Data categories: a tree of dotted keys; a rule or hold on a key covers every key below it."""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Select, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.audit.service import record
from app.auth.service import Principal
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.schemas import DottedKey
from app.data_categories.models import DataCategory
from app.data_categories.schemas import DataCategoryCreate, DataCategoryUpdate
from app.legal_holds.models import LegalHold
from app.records.models import RecordProfileCategory
from app.retention_rules.models import RetentionRule

_KEY: TypeAdapter[str] = TypeAdapter(DottedKey)

# Every column that names a category, with why a category it names cannot go. The foreign
# keys would refuse the delete anyway; this turns the refusal into a reason.
_USES: tuple[tuple[InstrumentedAttribute[str | None], str], ...] = (
    (DataCategory.parent_key, "it has child categories"),
    (RetentionRule.category, "a retention rule is scoped to it"),
    (LegalHold.category, "a legal hold (active or released) is scoped to it"),
    (RecordProfileCategory.category, "registered records hold it"),
)


def parent_of(key: str) -> str | None:
    parent, _, _ = key.rpartition(".")
    return parent or None


async def get_category(session: AsyncSession, key: str) -> DataCategory:
    # A malformed key names nothing; refusing it before the query also keeps bytes that
    # PostgreSQL rejects in text (NUL) from turning a 404 into a 500.
    try:
        _KEY.validate_python(key)
    except ValidationError:
        raise NotFound("No data category with this key") from None
    category = await session.get(DataCategory, key)
    if category is None:
        raise NotFound("No data category with this key")
    return category


def select_categories(
    *, parent: str | None = None, prefix: str | None = None
) -> Select[DataCategory]:
    statement = select(DataCategory)
    if parent is not None:
        statement = statement.where(DataCategory.parent_key == parent)
    if prefix is not None:
        # autoescape: `_` is a LIKE wildcard and legal in keys.
        statement = statement.where(
            or_(
                DataCategory.key == prefix,
                DataCategory.key.startswith(prefix + ".", autoescape=True),
            )
        )
    return statement


async def _require_parent(session: AsyncSession, key: str) -> str | None:
    parent = parent_of(key)
    if parent is not None and await session.get(DataCategory, parent) is None:
        raise Unprocessable(
            f"The parent category {parent!r} does not exist; create it first",
            loc=["body", "key"],
        )
    return parent


async def create_category(
    session: AsyncSession, principal: Principal, body: DataCategoryCreate
) -> DataCategory:
    parent = await _require_parent(session, body.key)
    category = DataCategory(parent_key=parent, **body.model_dump())
    # The primary key decides, so two concurrent creates of one key cannot both succeed.
    try:
        async with session.begin_nested():
            session.add(category)
    except IntegrityError:
        if await session.scalar(select(DataCategory.key).where(DataCategory.key == body.key)):
            raise Conflict(f"A data category with key {body.key!r} already exists") from None
        # Otherwise the parent was deleted between the check and the insert.
        await _require_parent(session, body.key)
        raise
    record(
        session,
        principal,
        "data_category.created",
        "data_category",
        category.key,
        {"parent_key": category.parent_key, "sensitivity": category.sensitivity},
    )
    return category


async def update_category(
    session: AsyncSession, principal: Principal, category: DataCategory, body: DataCategoryUpdate
) -> list[str]:
    """Apply the fields sent; return the names of those that changed."""
    changes = body.model_dump(exclude_unset=True)
    changed = sorted(f for f, value in changes.items() if getattr(category, f) != value)
    for field in changed:
        setattr(category, field, changes[field])
    await session.flush()
    if changed:
        record(
            session,
            principal,
            "data_category.updated",
            "data_category",
            category.key,
            {"fields": changed},
        )
    return changed


async def category_in_use(session: AsyncSession, key: str) -> str | None:
    """Why the category cannot be deleted, or None when nothing names it."""
    for column, reason in _USES:
        used = await session.scalar(select(column).where(column == key).limit(1))
        if used is not None:
            return reason
    return None


async def delete_category(
    session: AsyncSession, principal: Principal, category: DataCategory
) -> None:
    key, parent_key = category.key, category.parent_key
    reason = await category_in_use(session, category.key)
    if reason is not None:
        raise Conflict(f"Data category {category.key!r} is in use: {reason}")
    try:
        async with session.begin_nested():
            await session.delete(category)
    except IntegrityError:
        # Something started naming it after the check; the foreign key had the last word.
        raise Conflict(f"Data category {category.key!r} is in use") from None
    record(
        session,
        principal,
        "data_category.deleted",
        "data_category",
        key,
        {"parent_key": parent_key},
    )
