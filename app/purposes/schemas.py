from datetime import datetime
from typing import Literal

from pydantic import Field

from app.core.schemas import DottedKey, InputModel, Name, OutputModel, Text, not_null

_SUBJECTS_HELP = "Whose data this purpose processes (GDPR Art. 30(1)(c))"
_SUBJECTS_EXAMPLE = ["users", "customers' end users"]

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
    data_subject_categories: list[Name] = Field(
        default_factory=list,
        max_length=50,
        description=_SUBJECTS_HELP,
        examples=[_SUBJECTS_EXAMPLE],
    )


class PurposeUpdate(InputModel):
    """The key never changes."""

    name: Name | None = Field(None, examples=["Marketing communications"])
    description: Text | None = Field(None, examples=["Product news and offers by email and SMS"])
    legal_basis: LegalBasis | None = Field(None, examples=["consent"])
    objection_absolute: bool | None = Field(None, examples=[True])
    fideslang: DottedKey | None = Field(None, examples=["marketing.communications.email"])
    data_subject_categories: list[Name] | None = Field(
        None, max_length=50, description=_SUBJECTS_HELP, examples=[_SUBJECTS_EXAMPLE]
    )

    _not_null = not_null("name", "legal_basis", "objection_absolute", "data_subject_categories")


class PurposeOut(OutputModel):
    key: str = Field(examples=["marketing.communications"])
    name: str = Field(examples=["Marketing communications"])
    description: str | None = Field(examples=["Product news and offers by email and SMS"])
    legal_basis: LegalBasis = Field(examples=["consent"])
    objection_absolute: bool = Field(examples=[True])
    fideslang: str | None = Field(examples=["marketing.communications.email"])
    data_subject_categories: list[str] = Field(
        description=_SUBJECTS_HELP, examples=[_SUBJECTS_EXAMPLE]
    )
    version: int = Field(examples=[1])
    created_at: datetime
    updated_at: datetime
