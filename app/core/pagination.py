"""Keyset pagination behind an opaque cursor: `limit`, `cursor` in; `items`, `next_cursor` out."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
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


async def page_params(
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


_NOT_ISSUED = "The cursor is not one this service issued"
_INT64_MAX = 2**63 - 1


# One parser per kind of cursor value: each accepts exactly what encode_cursor wrote for
# that kind (text, never a number where text was issued, and so on) and raises ValueError
# for anything else.
def cursor_uuid(value: Any) -> uuid.UUID:
    """A UUID key, issued as its canonical text."""
    if not isinstance(value, str):
        raise ValueError("not text")
    parsed = uuid.UUID(value)
    if str(parsed) != value:
        raise ValueError("not canonical")
    return parsed


def cursor_text(value: Any) -> str:
    """A text key (a system, category or purpose key)."""
    if not isinstance(value, str) or not value or len(value) > 200 or "\x00" in value:
        raise ValueError("not a key")
    return value


def cursor_int64(value: Any) -> int:
    """An integer key (an audit event's sequence number): a JSON integer within BIGINT."""
    if type(value) is not int or not 0 <= value <= _INT64_MAX:
        raise ValueError("not a BIGINT")
    return value


def cursor_datetime(value: Any) -> datetime:
    """A timezone-aware datetime, issued as ISO 8601 text with its offset."""
    if not isinstance(value, str):
        raise ValueError("not text")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("naive datetime")
    return parsed.astimezone(UTC)  # OverflowError at the ends of the calendar


# paginate's `parse` may name the key column's Python type.
_PARSERS: dict[Any, Callable[[Any], Any]] = {
    uuid.UUID: cursor_uuid,
    str: cursor_text,
    int: cursor_int64,
}


def decode_cursor(cursor: str, *parsers: Callable[[Any], Any]) -> list[Any]:
    """The values of a cursor this endpoint issued: a JSON list with one value per parser,
    each of the parser's kind. Anything else is a 400 problem, never a database error."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (binascii.Error, ValueError, orjson.JSONDecodeError) as exc:
        raise BadRequest(_NOT_ISSUED) from exc
    if not isinstance(values, list) or len(values) != len(parsers):
        raise BadRequest(_NOT_ISSUED)
    try:
        return [parse(value) for parse, value in zip(parsers, values, strict=True)]
    except (TypeError, ValueError, OverflowError) as exc:
        raise BadRequest(_NOT_ISSUED) from exc


async def paginate(
    session: AsyncSession,
    statement: Select[Any],
    key: InstrumentedAttribute[Any],
    page: PageParams,
    parse: Callable[[Any], Any] = uuid.UUID,
) -> tuple[list[Any], str | None]:
    """One page of ORM objects ordered by a unique key column, and the cursor of the next.
    `parse` is the key's type (uuid.UUID, str or int) or a cursor_* parser."""
    if page.cursor is not None:
        (after,) = decode_cursor(page.cursor, _PARSERS.get(parse, parse))
        statement = statement.where(key > after)
    rows = list((await session.scalars(statement.order_by(key).limit(page.limit + 1))).all())
    if len(rows) <= page.limit:
        return rows, None
    rows = rows[: page.limit]
    return rows, encode_cursor([getattr(rows[-1], key.key)])
