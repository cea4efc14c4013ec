"""Bodies of the agent registry (`/v1/drp-agents`) and of the protocol's own answers."""

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator

from app.core.schemas import InputModel, Name, OutputModel
from app.interop.drp.messages import decode_verify_key

AgentId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,100}$")]
VerifyKeyText = Annotated[str, StringConstraints(min_length=40, max_length=64)]
AgentStatus = Literal["active", "suspended"]


def _check_key(value: str | None) -> str | None:
    if value is not None:
        decode_verify_key(value)  # ValueError: answered 422 on the field
    return value


class DrpAgentCreate(InputModel):
    agent_id: AgentId = Field(description="The agent's id in the DRP directory")
    name: Name
    verify_key: VerifyKeyText = Field(
        description="The agent's Ed25519 verify key: 32 bytes in base64 (hex is accepted)"
    )
    callback_allowed: bool = Field(
        True, description="Whether status changes are POSTed to the agent's `status_callback`"
    )

    _key = field_validator("verify_key")(_check_key)


class DrpAgentUpdate(InputModel):
    name: Name | None = None
    verify_key: VerifyKeyText | None = Field(
        None, description="A new verify key; the agent's bearer token is withdrawn with it"
    )
    callback_allowed: bool | None = None
    status: AgentStatus | None = Field(
        None, description="`suspended` refuses the agent's every call, token setup included"
    )

    _key = field_validator("verify_key")(_check_key)


class DrpAgentOut(OutputModel):
    id: uuid.UUID
    agent_id: str
    name: str
    verify_key: str
    callback_allowed: bool
    status: AgentStatus
    token_issued_at: datetime | None = Field(
        None, description="When the agent last set up its pair-wise token"
    )
    created_at: datetime
    updated_at: datetime


class PairwiseOut(OutputModel):
    """The pair-wise key setup's answer (section 2.05.1)."""

    agent_id: str = Field(serialization_alias="agent-id")
    token: str


DrpStatus = Literal["open", "in_progress", "fulfilled", "revoked", "denied", "expired"]
DrpReason = Literal[
    "need_user_verification",
    "suspected_fraud",
    "insuf_verification",
    "no_match",
    "claim_not_covered",
    "outside_jurisdiction",
    "too_many_requests",
    "other",
]


class DrpStatusOut(OutputModel):
    """The Exercise Status object (section 3.03)."""

    request_id: uuid.UUID
    agent_request_id: str | None = None
    status: DrpStatus
    reason: DrpReason | None = None
    received_at: datetime
    expected_by: datetime | None = None
    processing_details: str | None = None


class DrpAgentInfo(OutputModel):
    """Agent information (section 2.06.1): an empty object, for now."""


class DrpErrorOut(OutputModel):
    """An error in the protocol's shape (section 3.06)."""

    code: str = Field(description="The HTTP status, as a string")
    message: str
    fatal: bool | None = Field(None, description="`true`: retrying will not help")
