import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from app.auth.visibility import CONTROLLER_FILTER
from app.core.identity import Identity, IdentityType
from app.core.schemas import (
    MAX_BATCH,
    DottedKey,
    InputModel,
    OutputModel,
    PastDatetime,
    RecordRef,
    SystemKey,
)
from app.retention.schemas import RetentionDecision

EventName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,100}$")]
Region = Annotated[str, StringConstraints(min_length=1, max_length=50)]

_PAST = "From 1900 until now (a few minutes of clock skew allowed): never in the future"


class RecordIn(InputModel):
    system: SystemKey = Field(examples=["voice-recordings"])
    record_ref: RecordRef = Field(examples=["rec_01J9ZK4T"], description="Opaque to spix-dsr")
    controller_id: uuid.UUID
    identities: list[Identity] = Field(default_factory=list, max_length=50)
    categories: list[DottedKey] = Field(
        min_length=1, max_length=50, examples=[["communications.recording"]]
    )
    purposes: list[DottedKey] = Field(
        default_factory=list, max_length=50, examples=[["service.provide"]]
    )
    collected_at: PastDatetime = Field(description=_PAST)
    last_activity_at: PastDatetime | None = Field(None, description=_PAST)
    events: dict[EventName, PastDatetime] = Field(
        default_factory=dict,
        max_length=20,
        examples=[{"account_closed": "2026-11-20T00:00:00Z"}],
        description="Events that happened, each at a time from 1900 until now",
    )
    region: Region | None = Field(None, examples=["eu"])


class RecordPatch(InputModel):
    last_activity_at: PastDatetime | None = None
    events: dict[EventName, PastDatetime] | None = Field(
        None, max_length=20, description="Merged into the record's events"
    )
    categories: list[DottedKey] | None = Field(None, min_length=1, max_length=50)
    purposes: list[DottedKey] | None = Field(None, max_length=50)


class IdentityDigest(OutputModel):
    type: IdentityType
    digest: str


class RecordOut(OutputModel):
    id: uuid.UUID
    system: str
    record_ref: str
    controller_id: uuid.UUID
    categories: list[str]
    purposes: list[str]
    region: str | None
    identities: list[IdentityDigest]
    collected_at: datetime
    last_activity_at: datetime | None
    events: dict[str, datetime]
    state: Literal["active", "restricted", "erased"]
    created_at: datetime
    updated_at: datetime
    erased_at: datetime | None
    retention: RetentionDecision


class BatchIn(InputModel):
    # Items are validated one by one, so one bad item does not reject the batch.
    records: list[dict[str, Any]] = Field(max_length=MAX_BATCH)


class ItemError(OutputModel):
    title: str
    detail: str
    errors: list[dict[str, Any]] | None = None


class BatchResult(OutputModel):
    index: int
    status: Literal["created", "updated", "error"]
    id: uuid.UUID | None = None
    error: ItemError | None = None


class BatchOut(OutputModel):
    results: list[BatchResult]


class ErasedIn(InputModel):
    system: SystemKey
    record_refs: list[RecordRef] = Field(min_length=1, max_length=MAX_BATCH)


class ErasedOut(OutputModel):
    erased: int


class LookupIn(InputModel):
    identities: list[Identity] = Field(min_length=1, max_length=20)
    controller_id: uuid.UUID | None = Field(
        default=None, description="Only this controller's records. " + CONTROLLER_FILTER
    )


class LookupSummary(OutputModel):
    controller_id: uuid.UUID
    system: str
    category: str
    count: int


class LookupOut(OutputModel):
    summary: list[LookupSummary]
    items: list[RecordOut]
    next_cursor: str | None = None


class RecordPage(OutputModel):
    items: list[RecordOut]
    next_cursor: str | None = None
