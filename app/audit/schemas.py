import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    seq: int
    occurred_at: datetime
    event_type: str
    actor_key_id: uuid.UUID | None
    actor_role: str
    entity_type: str
    entity_id: str
    subject_request_id: uuid.UUID | None
    details: dict[str, Any]
    prev_hash: str
    hash: str
