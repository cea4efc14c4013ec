from datetime import datetime
from typing import Literal

from pydantic import Field

from app.core.schemas import DottedKey, InputModel, Name, OutputModel, Text, not_null

PurposeKey = DottedKey

# Spelled out for the OpenAPI enum; a test holds it equal to models.LEGAL_BASES.
LegalBasis = Literal[
    "contract",
    "legitimate_interest",
    "consent",
    "legal_obligation",
    "vital_interest",
    "public_task",
]


class PurposeCreate(InputModel):
    key: PurposeKey = Field(examples=["marketing.communications"])
    name: Name = Field(examples=["Marketing communications"])
    description: Text | None = Field(None, examples=["Product news and offers by email and SMS"])
    legal_basis: LegalBasis = Field(examples=["consent"])
    objection_absolute: bool = Field(
        False,
        description="An objection always wins (direct marketing, GDPR Art. 21(3))",
        examples=[True],
    )
    fideslang: DottedKey | None = Field(
        None,
        description="The matching data use of the fideslang taxonomy, where one exists",
        examples=["marketing.communications.email"],
    )


class PurposeUpdate(InputModel):
    """The key never changes."""

    name: Name | None = Field(None, examples=["Marketing communications"])
    description: Text | None = Field(None, examples=["Product news and offers by email and SMS"])
    legal_basis: LegalBasis | None = Field(None, examples=["consent"])
    objection_absolute: bool | None = Field(None, examples=[True])
    fideslang: DottedKey | None = Field(None, examples=["marketing.communications.email"])

    _not_null = not_null("name", "legal_basis", "objection_absolute")


class PurposeOut(OutputModel):
    key: str = Field(examples=["marketing.communications"])
    name: str = Field(examples=["Marketing communications"])
    description: str | None = Field(examples=["Product news and offers by email and SMS"])
    legal_basis: LegalBasis = Field(examples=["consent"])
    objection_absolute: bool = Field(examples=[True])
    fideslang: str | None = Field(examples=["marketing.communications.email"])
    version: int = Field(examples=[1])
    created_at: datetime
    updated_at: datetime
