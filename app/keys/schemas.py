import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from app.core.schemas import InputModel, OutputModel, SystemKey

Role = Literal["admin", "auditor", "system", "controller"]


class ApiKeyCreate(InputModel):
    role: Role
    name: str | None = Field(None, max_length=200, examples=["Acme dashboard integration"])
    system: SystemKey | None = Field(None, description="The system a `system` key acts for")
    controller_id: uuid.UUID | None = Field(
        None,
        description="The controller a `controller` key acts for; customer staff may leave it "
        "out (their own) and may name no other",
    )


class ApiKeyOut(OutputModel):
    id: uuid.UUID
    prefix: str = Field(description="The public part of the key (`sdsr_<prefix>_…`)")
    name: str | None
    role: Role
    system: str | None
    controller_id: uuid.UUID | None
    created_at: datetime
    last_used_at: datetime | None = Field(
        description="Approximate: stamped at most about once a minute"
    )
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself: shown this once, never again")
