"""The RoPA as a fideslang manifest: the resources Fides imports (`fides push`, its API).

Only the fields the registry can fill are here; fideslang gives every other field a default.
Names and allowed values follow fideslang 3.1 (`fideslang.models`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.core.schemas import OutputModel

FIDESLANG_MEDIA_TYPE = "application/vnd.spix.fideslang+json"

# fideslang's LegalBasisForProcessingEnum (GDPR Art. 6).
FidesLegalBasis = Literal[
    "Consent",
    "Contract",
    "Legal obligations",
    "Vital interests",
    "Public interest",
    "Legitimate interests",
]

Responsibility = Literal["Controller", "Processor", "Sub-Processor"]


class FidesContact(OutputModel):
    name: str = Field("", examples=["Spix, privacy@spix.sh"])
    address: str = ""
    email: str = ""
    phone: str = ""


class FidesOrganization(OutputModel):
    fides_key: str = Field(examples=["spix"])
    name: str = Field(examples=["Spix"])
    description: str | None = None
    controller: FidesContact | None = Field(
        None, description="How to reach the controller (the registry's contact text)"
    )
    data_protection_officer: FidesContact | None = None


class FidesTaxonomyEntry(OutputModel):
    """A data category or data use that extends the fideslang default taxonomy."""

    fides_key: str = Field(examples=["user.account.spix_account_status"])
    organization_fides_key: str = Field(examples=["spix"])
    name: str = Field(examples=["Account status"])
    description: str | None = None
    parent_key: str | None = Field(examples=["user.account"])
    is_default: bool = Field(False, description="Always false: not part of fideslang's own")


class FidesDataSubject(OutputModel):
    fides_key: str = Field(examples=["spix_users"])
    organization_fides_key: str = Field(examples=["spix"])
    name: str = Field(examples=["users"])
    description: str | None = None
    is_default: bool = False


class FidesPrivacyDeclaration(OutputModel):
    """One purpose a system processes data for."""

    name: str = Field(examples=["Process transactions and manage billing"])
    data_use: str = Field(examples=["essential.service.payment_processing"])
    data_categories: list[str] = Field(examples=[["user.financial"]])
    data_subjects: list[str] = Field(examples=[["spix_users"]])
    dataset_references: list[str] = Field(examples=[["spix_billing_records"]])
    legal_basis_for_processing: FidesLegalBasis = Field(examples=["Contract"])
    flexible_legal_basis_for_processing: bool = Field(
        False, description="False: the legal basis is the registry's, not a notice's choice"
    )
    retention_period: str | None = Field(
        description="The retention rules that apply, one per `;`",
        examples=["billing.invoice: minimum P10Y from collected_at"],
    )
    data_shared_with_third_parties: bool = Field(examples=[False])
    third_parties: str | None = Field(
        description="The third parties and other controllers that receive the data",
        examples=[None],
    )
    shared_categories: list[str] = Field(examples=[[]])


class FidesSystem(OutputModel):
    fides_key: str = Field(examples=["spix_billing"])
    organization_fides_key: str = Field(examples=["spix"])
    name: str = Field(examples=["Billing"])
    description: str | None = None
    system_type: Literal["Service"] = "Service"
    administrating_department: str | None = Field(examples=["Billing & Revenue"])
    responsibility: list[Responsibility] = Field(
        description="Controller where Spix's own records sit in the system, Processor where "
        "a customer's do; empty when no record says",
        examples=[["Controller"]],
    )
    processes_personal_data: bool = True
    privacy_declarations: list[FidesPrivacyDeclaration]
    dataset_references: list[str] = Field(examples=[["spix_billing_records"]])
    data_security_practices: str | None = Field(
        examples=["Encryption in transit and at rest; role-based access; audit log"]
    )
    does_international_transfers: bool = Field(examples=[True])
    legal_basis_for_transfers: list[str] = Field(examples=[["SCCs"]])


class FidesDatasetField(OutputModel):
    name: str = Field(examples=["billing.invoice"])
    description: str | None = Field(examples=["Invoices"])
    data_categories: list[str] = Field(examples=[["user.financial"]])


class FidesDatasetCollection(OutputModel):
    name: str = Field(examples=["records"])
    description: str | None = None
    fields: list[FidesDatasetField]


class FidesDataset(OutputModel):
    fides_key: str = Field(examples=["spix_billing_records"])
    organization_fides_key: str = Field(examples=["spix"])
    name: str = Field(examples=["Billing: registered records"])
    description: str | None = None
    collections: list[FidesDatasetCollection]


class FidesManifest(OutputModel):
    """The record of processing activities as one fideslang manifest: save it as a `.yml`
    file (JSON is YAML) for `fides push`, or send its resources to the Fides API."""

    organization: list[FidesOrganization]
    data_category: list[FidesTaxonomyEntry] = Field(
        description="Spix's categories that map to no fideslang category, under the nearest one"
    )
    data_use: list[FidesTaxonomyEntry] = Field(
        description="Spix's purposes that map to no fideslang data use"
    )
    data_subject: list[FidesDataSubject] = Field(
        description="The purposes' data subject categories"
    )
    system: list[FidesSystem]
    dataset: list[FidesDataset]
