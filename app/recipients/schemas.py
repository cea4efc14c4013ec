from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from app.core.schemas import InputModel, Name, OutputModel, SystemKey, Text, not_null

# Spelled out for the OpenAPI enum; held equal to models.ROLES and models.SAFEGUARDS.
RecipientRole = Literal["processor", "sub_processor", "third_party", "controller"]
TransferSafeguard = Literal["not_applicable", "adequacy", "scc", "bcr", "derogation", "none"]
Country = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]

_SAFEGUARD_HELP = (
    "How a transfer outside the EEA/UK is protected (GDPR Chapter V): `not_applicable` (no "
    "such transfer), `adequacy` (Art. 45), `scc` (standard contractual clauses, Art. 46(2)(c)), "
    "`bcr` (binding corporate rules, Art. 47), `derogation` (Art. 49), `none`"
)


class RecipientCreate(InputModel):
    key: SystemKey = Field(examples=["cloud-hosting"])
    name: Name = Field(examples=["Example Cloud Inc."])
    role: RecipientRole = Field(examples=["sub_processor"])
    country: Country = Field(description="ISO 3166-1 alpha-2", examples=["US"])
    transfer_safeguard: TransferSafeguard = Field(description=_SAFEGUARD_HELP, examples=["scc"])
    description: Text | None = Field(None, examples=["Hosts the voice platform"])
    systems: list[SystemKey] = Field(
        default_factory=list,
        max_length=100,
        description="The systems whose data this recipient receives",
        examples=[["voice"]],
    )


class RecipientUpdate(InputModel):
    """The key never changes."""

    name: Name | None = Field(None, examples=["Example Cloud Inc."])
    role: RecipientRole | None = Field(None, examples=["sub_processor"])
    country: Country | None = Field(None, examples=["US"])
    transfer_safeguard: TransferSafeguard | None = Field(None, examples=["scc"])
    description: Text | None = Field(None, examples=["Hosts the voice platform"])
    systems: list[SystemKey] | None = Field(None, max_length=100, examples=[["voice"]])

    _not_null = not_null("name", "role", "country", "transfer_safeguard", "systems")


class RecipientOut(OutputModel):
    key: str = Field(examples=["cloud-hosting"])
    name: str = Field(examples=["Example Cloud Inc."])
    role: RecipientRole = Field(examples=["sub_processor"])
    country: str = Field(examples=["US"])
    transfer_safeguard: TransferSafeguard = Field(examples=["scc"])
    description: str | None = Field(examples=["Hosts the voice platform"])
    systems: list[str] = Field(examples=[["voice"]])
    version: int = Field(examples=[1])
    created_at: datetime
    updated_at: datetime
