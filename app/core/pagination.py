"""Keyset pagination behind an opaque cursor: `limit`, `cursor` in; `items`, `next_cursor` out."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Generic, TypeVar

import orjson
from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.core.errors import BadRequest

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class PageParams(BaseModel):
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


def page_params(
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="Items per page (at most 500)")
    ] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None, Query(description="`next_cursor` of the previous page", max_length=512)
    ] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=cursor)


def encode_cursor(values: Sequence[Any]) -> str:
    raw = orjson.dumps([str(v) if not isinstance(v, int | str) else v for v in values])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, arity: int = 1) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, orjson.JSONDecodeError) as exc:
        raise BadRequest("The cursor is not one this service issued") from exc
    if not isinstance(values, list) or len(values) != arity:
        raise BadRequest("The cursor is not one this service issued")
    return values


async def paginate(
    session: AsyncSession,
    statement: Select[Any],
    key: InstrumentedAttribute[Any],
    page: PageParams,
    parse: Callable[[Any], Any] = uuid.UUID,
) -> tuple[list[Any], str | None]:
    """One page of ORM objects ordered by a unique key column, and the cursor of the next."""
    if page.cursor is not None:
        (after,) = decode_cursor(page.cursor)
        try:
            after = parse(after)
        except (TypeError, ValueError) as exc:
            raise BadRequest("The cursor is not one this service issued") from exc
        statement = statement.where(key > after)
    rows = list((await session.scalars(statement.order_by(key).limit(page.limit + 1))).all())
    if len(rows) <= page.limit:
        return rows, None
    rows = rows[: page.limit]
    return rows, encode_cursor([getattr(rows[-1], key.key)])
