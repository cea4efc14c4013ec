import uuid
from datetime import date, datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, Field, StringConstraints, model_validator

from app.core.schemas import InputModel, Name, OutputModel, Text, Url, not_null

_CONTACT = "Acme Inc., 1 Main St, Springfield; privacy@acme.example"
_DPO = "Data Protection Officer, dpo@acme.example"
_SECURITY = "Encryption in transit and at rest; role-based access; audit log"
_ADM = "No decisions with legal or similarly significant effect are made solely by automated means"

InstructionRef = Annotated[str, StringConstraints(min_length=1, max_length=500)]


class DsrRouting(BaseModel):
    """How requests forwarded to this controller reach it."""

    mode: Literal["webhook", "dashboard"] = Field("dashboard", examples=["webhook"])
    webhook_url: Url | None = Field(None, examples=["https://privacy.acme.example/spix-dsr"])
    signature_scheme: Literal["v1", "v1a"] = Field(
        "v1",
        description="How deliveries are signed (Standard Webhooks): `v1`, HMAC with the "
        "`whsec_` signing secret; `v1a`, Ed25519 with the service's key, verified with the "
        "public key at /.well-known/spix-dsr/webhook-keys (the receiver holds no secret)",
    )

    @model_validator(mode="after")
    def _webhook_needs_url(self) -> Self:
        if self.mode == "webhook" and self.webhook_url is None:
            raise ValueError("webhook routing needs a webhook_url")
        return self


class ControllerCreate(InputModel):
    name: Name = Field(examples=["Acme Inc."])
    kind: Literal["customer"] = Field(
        "customer", description="Only customers are created; `seed` creates the platform"
    )
    external_ref: Name | None = Field(None, examples=["cus_8Jd2"])
    agreement_ref: Name | None = Field(None, examples=["DPA-2026-014"])
    effective_from: date | None = None
    effective_until: date | None = None
    dsr_routing: DsrRouting = Field(default_factory=lambda: DsrRouting(mode="dashboard"))
    auto_execute: bool = Field(
        False,
        description="Approved in advance: forwarded requests run without waiting; needs "
        "`standing_instruction_ref`",
    )
    contact: Text | None = Field(
        None, description="How to reach the controller (Art. 30(1)(a))", examples=[_CONTACT]
    )
    dpo_contact: Text | None = Field(
        None, description="How to reach its data protection officer", examples=[_DPO]
    )
    security_measures: Text | None = Field(
        None,
        description="Its technical and organisational security measures (Art. 30(1)(g))",
        examples=[_SECURITY],
    )
    automated_decision_making: Text | None = Field(
        None,
        description="Its statement on automated decision-making and profiling (Art. 15(1)(h))",
        examples=[_ADM],
    )
    standing_instruction_ref: InstructionRef | None = Field(
        None,
        examples=["DPA-2026-014 §7.2; ticket PRIV-311"],
        description="Where the customer's standing instruction to act on its requests is "
        "recorded (GDPR Art. 28(3)(a)); required when auto_execute is true",
    )

    @model_validator(mode="after")
    def _standing_instruction(self) -> Self:
        if self.auto_execute and self.standing_instruction_ref is None:
            raise ValueError("auto_execute needs the customer's standing_instruction_ref")
        return self

    @model_validator(mode="after")
    def _dates_in_order(self) -> Self:
        if (
            self.effective_from
            and self.effective_until
            and self.effective_until < self.effective_from
        ):
            raise ValueError("effective_until is before effective_from")
        return self


class ControllerUpdate(InputModel):
    name: Name | None = None
    external_ref: Name | None = None
    agreement_ref: Name | None = None
    effective_from: date | None = None
    effective_until: date | None = None
    dsr_routing: DsrRouting | None = None
    auto_execute: bool | None = None
    contact: Text | None = Field(
        None, description="How to reach the controller (Art. 30(1)(a))", examples=[_CONTACT]
    )
    dpo_contact: Text | None = Field(
        None, description="How to reach its data protection officer", examples=[_DPO]
    )
    security_measures: Text | None = Field(
        None,
        description="Its technical and organisational security measures (Art. 30(1)(g))",
        examples=[_SECURITY],
    )
    automated_decision_making: Text | None = Field(
        None,
        description="Its statement on automated decision-making and profiling (Art. 15(1)(h))",
        examples=[_ADM],
    )
    standing_instruction_ref: InstructionRef | None = None

    _not_null = not_null("name", "dsr_routing", "auto_execute")


class ControllerOut(OutputModel):
    id: uuid.UUID
    kind: Literal["platform", "customer"]
    name: str
    external_ref: str | None
    agreement_ref: str | None
    effective_from: date | None
    effective_until: date | None
    dsr_routing: DsrRouting
    has_signing_secret: bool
    auto_execute: bool
    contact: str | None
    dpo_contact: str | None
    security_measures: str | None
    automated_decision_making: str | None
    standing_instruction_ref: str | None = None
    created_at: datetime
    updated_at: datetime
    version: int


class ControllerCreated(ControllerOut):
    webhook_signing_secret: str | None = Field(
        None, description="Signs webhook deliveries; shown once, with the change that made it"
    )
