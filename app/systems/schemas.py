from datetime import datetime
from typing import Literal

from pydantic import Field

from app.core.schemas import InputModel, Name, OutputModel, SystemKey, Text, Url, not_null

SignatureScheme = Literal["v1", "v1a"]
_SCHEME = (
    "How deliveries are signed (Standard Webhooks): `v1`, HMAC with the system's `whsec_` "
    "secret; `v1a`, Ed25519 with the service's key, verified with the public key at "
    "/.well-known/spix-dsr/webhook-keys (the receiver holds no secret)"
)
_PUSH = (
    "Push `retention.records_due` events (the ids of its records that became due for "
    "deletion) to the webhook, besides `GET /v1/retention/due`"
)


class SystemCreate(InputModel):
    key: SystemKey = Field(examples=["voice-recordings"])
    name: Name = Field(examples=["Voice recordings"])
    owner: Name | None = Field(None, examples=["voice-platform team"])
    description: Text | None = Field(None, examples=["Stores call recordings and voicemail"])
    webhook_url: Url | None = Field(
        None,
        description="Where new tasks are pushed; without one the system pulls its work",
        examples=["https://voice.internal.spix.sh/dsr/tasks"],
    )
    webhook_signature_scheme: SignatureScheme = Field("v1", description=_SCHEME)
    push_records_due: bool = Field(False, description=_PUSH)


class SystemUpdate(InputModel):
    """The key is the system's address and never changes."""

    name: Name | None = Field(None, examples=["Voice recordings"])
    owner: Name | None = Field(None, examples=["voice-platform team"])
    description: Text | None = Field(None, examples=["Stores call recordings and voicemail"])
    webhook_url: Url | None = Field(None, examples=["https://voice.internal.spix.sh/dsr/tasks"])
    webhook_signature_scheme: SignatureScheme | None = Field(None, description=_SCHEME)
    push_records_due: bool | None = Field(None, description=_PUSH)

    _not_null = not_null("name", "webhook_signature_scheme", "push_records_due")


class SystemOut(OutputModel):
    key: str = Field(examples=["voice-recordings"])
    name: str = Field(examples=["Voice recordings"])
    owner: str | None = Field(examples=["voice-platform team"])
    description: str | None = Field(examples=["Stores call recordings and voicemail"])
    webhook_url: str | None = Field(examples=["https://voice.internal.spix.sh/dsr/tasks"])
    webhook_signature_scheme: SignatureScheme
    push_records_due: bool
    version: int = Field(examples=[1])
    created_at: datetime
    updated_at: datetime
