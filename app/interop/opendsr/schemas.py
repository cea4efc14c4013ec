"""OpenDSR messages as the specification names them (snake_case JSON, its own error shape)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

RequestType = Literal["access", "portability", "erasure"]
Regulation = Literal["gdpr", "ccpa"]
# What the spec's formats are; only raw and sha256 can be matched (see the discovery).
IdentityFormatName = Literal["raw", "sha1", "md5", "sha256"]
Url = Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class _Message(BaseModel):
    # Unknown members are tolerated: controllers send fields of other versions.
    model_config = ConfigDict(extra="ignore")


class OpenDsrIdentity(_Message):
    identity_type: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        examples=["email"]
    )
    identity_value: Annotated[str, StringConstraints(min_length=1, max_length=320)] = Field(
        examples=["johndoe@example.com"]
    )
    identity_format: IdentityFormatName = Field("raw", examples=["raw"])


class ProcessorExtension(_Message):
    """Our extension, keyed by our processor domain: identities the core list has no type
    for (phone numbers, as mParticle's extension carries them)."""

    identities: list[OpenDsrIdentity] = Field(default_factory=list, max_length=20)


class OpenDsrRequestIn(_Message):
    subject_request_id: uuid.UUID
    subject_request_type: RequestType
    regulation: Regulation
    submitted_time: AwareDatetime
    subject_identities: list[OpenDsrIdentity] = Field(default_factory=list, max_length=20)
    api_version: Annotated[str, StringConstraints(max_length=10)] | None = None
    status_callback_urls: list[Url] = Field(default_factory=list, max_length=10)
    extensions: dict[str, dict[str, Any]] = Field(default_factory=dict)


class SupportedIdentity(BaseModel):
    identity_type: str
    identity_format: Literal["raw", "sha256"]


class Discovery(BaseModel):
    api_version: str = Field(examples=["2.0"])
    supported_identities: list[SupportedIdentity]
    supported_subject_request_types: list[RequestType]
    supported_regulations: list[Regulation]
    processor_certificate: str = Field(
        description="Where the certificate that signs responses and callbacks is published",
        examples=["https://opendsr.spix.sh/opendsr/v1/cert.pem"],
    )


class Created(BaseModel):
    controller_id: str
    expected_completion_time: datetime
    received_time: datetime
    encoded_request: str = Field(description="The request body as received, base64")
    subject_request_id: uuid.UUID
    api_version: str


class Status(BaseModel):
    controller_id: str
    expected_completion_time: datetime
    subject_request_id: uuid.UUID
    request_status: Literal["pending", "in_progress", "completed", "cancelled"]
    api_version: str
    results_url: str | None = Field(
        None,
        description="Access and portability, once completed: the package, read with the "
        "controller's API key",
    )


class Cancelled(BaseModel):
    controller_id: str
    received_time: datetime
    subject_request_id: uuid.UUID
    api_version: str


class ErrorDetail(BaseModel):
    domain: str = Field(examples=["Validation"])
    reason: str = Field(examples=["IllegalArgumentException"])
    message: str


class ErrorBody(BaseModel):
    code: int = Field(examples=[400])
    message: str
    errors: list[ErrorDetail] = Field(default_factory=list)


class OpenDsrError(BaseModel):
    """The specification's error object (section 7.6)."""

    error: ErrorBody
