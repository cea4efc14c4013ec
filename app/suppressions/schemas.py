import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from app.core.identity import Identity, IdentityType
from app.core.schemas import DottedKey, InputModel, OutputModel

Channel = Literal["email", "sms", "voice", "all"]
SendChannel = Literal["email", "sms", "voice"]
Source = Literal["unsubscribe_link", "sms_stop", "request", "gpc", "manual"]

DEFAULT_PURPOSE = "marketing.communications"
MAX_CHECK_IDENTITIES = 20

DIGEST_EXAMPLE = "9f2c4e0b7d1a5c3e8f6a2b4d0c9e7f1a3b5d7c9e1f3a5b7d9c1e3f5a7b9d1c3e"


class SuppressionCreate(InputModel):
    identity: Identity = Field(description="Stored only as its keyed hash")
    channel: Channel = Field(
        examples=["sms"], description="`all` suppresses email, SMS and voice at once"
    )
    purpose: DottedKey = Field(DEFAULT_PURPOSE, examples=[DEFAULT_PURPOSE])
    controller_id: uuid.UUID | None = Field(
        None,
        description="Whose opt-out this is: an SMS STOP sent to a customer's number is that "
        "customer's. Required for admin and system keys; a controller key's own by default",
    )
    source: Source = Field(examples=["sms_stop"])


class SuppressionOut(OutputModel):
    id: uuid.UUID
    identity_type: IdentityType = Field(examples=["phone"])
    digest: str = Field(
        description="HMAC-SHA256 blind index of the normalised value", examples=[DIGEST_EXAMPLE]
    )
    channel: Channel = Field(examples=["sms"])
    purpose: str = Field(examples=[DEFAULT_PURPOSE])
    controller_id: uuid.UUID
    source: Source = Field(examples=["sms_stop"])
    request_id: uuid.UUID | None = Field(
        None, description="The subject request (objection, opt_out) that created it"
    )
    created_at: datetime


class SuppressionCheck(InputModel):
    identities: list[Identity] = Field(
        min_length=1,
        max_length=MAX_CHECK_IDENTITIES,
        description="Every identity the message would reach the subject by",
    )
    channel: SendChannel = Field(examples=["email"], description="The channel about to be used")
    controller_id: uuid.UUID | None = Field(
        None,
        description="Whose message this is; omitted: the platform controller (Spix's own "
        "marketing) for admin, auditor and system keys, the key's own for a controller key",
    )
    purpose: DottedKey = Field(DEFAULT_PURPOSE, examples=[DEFAULT_PURPOSE])


class SuppressionMatch(OutputModel):
    id: uuid.UUID
    identity_type: IdentityType = Field(examples=["email"])
    channel: Channel = Field(examples=["all"])
    purpose: str = Field(examples=[DEFAULT_PURPOSE])
    controller_id: uuid.UUID
    source: Source = Field(examples=["unsubscribe_link"])
    created_at: datetime


class SuppressionCheckOut(OutputModel):
    suppressed: bool = Field(examples=[True])
    matches: list[SuppressionMatch]
