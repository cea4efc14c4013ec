import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from app.core.schemas import OutputModel

DeliveryStatus = Literal["pending", "delivered", "dead"]


class DeliveryOut(OutputModel):
    """One event for one receiver and where its delivery stands; `id` is its `webhook-id`
    without the `msg_` prefix."""

    id: uuid.UUID
    event_type: str = Field(examples=["task.created"])
    target_kind: Literal["system", "controller", "drp_agent", "opendsr_callback"]
    target_id: str = Field(examples=["voice-recordings"])
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any] = Field(description="Ids and statuses only, never personal data")


class SigningSecretOut(OutputModel):
    webhook_signing_secret: str = Field(
        description="The new `whsec_` secret, shown once: store it now",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )
    previous_retires_at: datetime | None = Field(
        description="Until then deliveries are signed with the previous secret too"
    )
