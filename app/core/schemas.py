"""Pieces every domain's schemas share."""

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    StringConstraints,
    field_validator,
)

from app.core.config import get_settings


class InputModel(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OutputModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


_DOTTED = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")
_SYSTEM = re.compile(r"^[a-z0-9-]+$")


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/$.?#].[^\s]*$", value):
        raise ValueError("must be an http(s) URL")
    return value


# The earliest time a thing that happened may carry: older is a typo or a placeholder, and
# dates near year 1 fall off the calendar when shifted to UTC.
EARLIEST_PAST = datetime(1900, 1, 1, tzinfo=UTC)


def _happened(value: datetime) -> datetime:
    if value < EARLIEST_PAST:
        raise ValueError("must not be before 1900-01-01")
    latest = datetime.now(UTC) + timedelta(seconds=get_settings().clock_skew_seconds)
    if value > latest:
        raise ValueError("must not be in the future")
    return value


Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
# Patterns rather than Python validators: these run for every record of a batch, and a
# pattern is checked inside pydantic-core.
DottedKey = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_DOTTED.pattern)]
SystemKey = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=_SYSTEM.pattern)]
# A record's reference in its system, opaque to spix-dsr.
RecordRef = Annotated[str, StringConstraints(min_length=1, max_length=500)]
Url = Annotated[str, StringConstraints(max_length=2000), AfterValidator(_http_url)]
Text = Annotated[str, StringConstraints(max_length=10_000)]
# The most items one call takes: records of a batch, record_refs, records to check.
MAX_BATCH = 1000
# A time at which something happened: timezone-aware, from 1900 until now (plus the
# allowed clock skew), so every stored time is one date arithmetic can work with.
PastDatetime = Annotated[AwareDatetime, AfterValidator(_happened)]


def not_null(*fields: str) -> Any:
    """For PATCH bodies: these fields may be omitted (kept) but not null (that would clear a
    column that must have a value). Use as `_not_null = not_null("name", ...)` in the model."""

    def reject(cls: type, value: Any) -> Any:
        if value is None:
            raise ValueError("may be omitted but not null")
        return value

    return field_validator(*fields, mode="before")(classmethod(reject))  # type: ignore[arg-type]
