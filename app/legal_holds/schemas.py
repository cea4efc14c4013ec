import uuid
from datetime import datetime
from typing import Annotated, Self

from pydantic import Field, StringConstraints, model_validator

from app.core.identity import Identity, IdentityType
from app.core.schemas import DottedKey, InputModel, OutputModel, SystemKey

MAX_IDENTITIES = 100
MAX_RECORD_IDS = 1000

Reason = Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class LegalHoldCreate(InputModel):
    reason: Reason = Field(examples=["Litigation hold: matter 2026-117"])
    controller_id: uuid.UUID | None = Field(
        None, description="Everything of this controller; also the scope of external_id values"
    )
    system: SystemKey | None = Field(None, examples=["billing"])
    category: DottedKey | None = Field(
        None, description="This category key and every key below it", examples=["communications"]
    )
    identities: list[Identity] = Field(
        default_factory=list,
        max_length=MAX_IDENTITIES,
        description="Subjects whose records are held; stored only as keyed hashes",
    )
    record_ids: list[uuid.UUID] = Field(default_factory=list, max_length=MAX_RECORD_IDS)

    @model_validator(mode="after")
    def _some_scope(self) -> Self:
        if not (
            self.controller_id or self.system or self.category or self.identities or self.record_ids
        ):
            raise ValueError(
                "a hold needs a scope: controller_id, system, category, identities or record_ids"
            )
        return self


class LegalHoldRelease(InputModel):
    note: Reason | None = Field(None, examples=["Matter 2026-117 settled"])


class HeldIdentity(OutputModel):
    type: IdentityType = Field(examples=["email"])
    digest: str = Field(
        description="HMAC-SHA256 blind index of the normalised value",
        examples=["9f2c4e0b7d1a5c3e8f6a2b4d0c9e7f1a3b5d7c9e1f3a5b7d9c1e3f5a7b9d1c3e"],
    )


class LegalHoldScope(OutputModel):
    controller_id: uuid.UUID | None
    system: str | None = Field(examples=["billing"])
    category: str | None = Field(examples=["communications"])
    identities: list[HeldIdentity]
    record_ids: list[uuid.UUID]


class LegalHoldOut(OutputModel):
    id: uuid.UUID
    reason: str = Field(examples=["Litigation hold: matter 2026-117"])
    active: bool = Field(examples=[True])
    placed_at: datetime
    placed_by_key_id: uuid.UUID | None
    released_at: datetime | None
    released_by_key_id: uuid.UUID | None
    release_note: str | None = Field(examples=["Matter 2026-117 settled"])
    scope: LegalHoldScope
