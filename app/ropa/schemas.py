import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from app.core.schemas import OutputModel

CSV_COLUMNS = (
    "purpose_key",
    "purpose_name",
    "legal_basis",
    "categories",
    "systems",
    "controllers",
    "regions",
    "data_subject_categories",
    "recipients",
    "rule_id",
    "rule_kind",
    "rule_period",
    "rule_anchor",
    "rule_source",
    "rule_citation",
)


class RopaController(OutputModel):
    id: uuid.UUID = Field(examples=["0196f0c4-5b1e-7c3a-9d2e-4f6a8b0c1d2e"])
    name: str = Field(examples=["Spix"])
    external_ref: str | None = Field(examples=["spix"])
    contact: str | None = Field(
        None, description="How to reach the controller", examples=["Spix, privacy@spix.sh"]
    )
    dpo_contact: str | None = Field(
        None, description="How to reach its data protection officer", examples=["dpo@spix.sh"]
    )


class RopaRule(OutputModel):
    id: uuid.UUID = Field(examples=["0196f0c4-6a2b-7d4c-8e3f-5a7b9c1d2e3f"])
    key: str | None = Field(
        description="The stable slug of a rule loaded by `seed`", examples=["billing-invoices-min"]
    )
    name: str = Field(examples=["Invoices: statutory accounting retention"])
    kind: Literal["minimum", "maximum"] = Field(examples=["minimum"])
    period: str = Field(examples=["P10Y"])
    anchor: str = Field(examples=["collected_at"])
    action: Literal["delete", "anonymize"] = Field(examples=["delete"])
    source: Literal["law", "contract", "platform_default", "customer_setting"] = Field(
        examples=["law"]
    )
    citation: str | None = Field(examples=["DE: HGB §257(1) no. 4; AO §147(1) no. 4"])
    category: str | None = Field(examples=["billing.invoice"])
    default_to_review: bool = Field(
        description="A default that counsel has yet to confirm", examples=[True]
    )


class RopaPurpose(OutputModel):
    key: str = Field(examples=["billing.transactions"])
    name: str = Field(examples=["Process transactions and manage billing"])
    description: str | None = Field(examples=["Charge customers, issue invoices, collect payments"])
    legal_basis: Literal[
        "contract",
        "legitimate_interest",
        "consent",
        "legal_obligation",
        "vital_interest",
        "public_task",
    ] = Field(examples=["contract"])
    objection_absolute: bool = Field(examples=[False])
    categories: list[str] = Field(
        description="The data categories processed for this purpose", examples=[["billing.invoice"]]
    )
    systems: list[str] = Field(examples=[["billing"]])
    controllers: list[RopaController] = Field(
        description="Controllers the processing is scoped to (customers' own settings)"
    )
    regions: list[str] = Field(examples=[["eu"]])
    retention_rules: list[RopaRule] = Field(
        description="The rules that name this purpose, and the rules naming no purpose that "
        "apply to what its records hold"
    )
    data_subject_categories: list[str] = Field(examples=[["users"]])
    recipients: list[str] = Field(
        description="Keys of the recipients that receive the data of this purpose's systems",
        examples=[["cloud-hosting"]],
    )


class RopaRecipient(OutputModel):
    key: str = Field(examples=["cloud-hosting"])
    name: str = Field(examples=["Example Cloud Inc."])
    role: Literal["processor", "sub_processor", "third_party", "controller"] = Field(
        examples=["sub_processor"]
    )
    country: str = Field(examples=["US"])
    transfer_safeguard: Literal[
        "not_applicable", "adequacy", "scc", "bcr", "derogation", "none"
    ] = Field(examples=["scc"])
    systems: list[str] = Field(examples=[["voice"]])


class RopaCategory(OutputModel):
    key: str = Field(examples=["support.ticket"])
    name: str = Field(examples=["Support tickets"])
    sensitivity: Literal["low", "medium", "high"] = Field(examples=["medium"])


class Ropa(OutputModel):
    """The record of processing activities (GDPR Art. 30), built from the registry."""

    generated_at: datetime = Field(examples=["2026-12-01T09:30:00Z"])
    controller: RopaController | None = Field(
        description="Spix, the platform controller; null until `spix-dsr seed` has run"
    )
    security_measures: str | None = Field(
        description="The platform's technical and organisational measures (Art. 30(1)(g))",
        examples=["Encryption in transit and at rest; role-based access; audit log"],
    )
    recipients: list[RopaRecipient] = Field(description="Every registered recipient")
    transfers: list[RopaRecipient] = Field(
        description="Recipients that take data to another country, with their safeguard"
    )
    purposes: list[RopaPurpose]
    retained_without_rule: list[RopaCategory] = Field(
        description="Categories that no retention rule names, directly or through a parent: "
        "retained with no written rule"
    )


class ProcessingOnBehalf(OutputModel):
    """One purpose the customer's records are held for, with the systems and categories."""

    purpose: str = Field(examples=["communications.delivery"])
    systems: list[str] = Field(examples=[["voice"]])
    categories: list[str] = Field(examples=[["communications.recording"]])


class ProcessorRecord(OutputModel):
    """Spix's record as a processor for one customer (GDPR Art. 30(2))."""

    generated_at: datetime = Field(examples=["2026-12-01T09:30:00Z"])
    processor: RopaController | None = Field(
        description="Spix, the processor; null until `spix-dsr seed` has run"
    )
    controller: RopaController = Field(description="The customer on whose behalf it processes")
    agreement_ref: str | None = Field(examples=["DPA-2026-014"])
    categories_of_processing: list[ProcessingOnBehalf] = Field(
        description="Per purpose, what the customer's registered records hold and where"
    )
    systems: list[str] = Field(examples=[["messaging", "voice"]])
    categories: list[str] = Field(examples=[["communications.recording"]])
    sub_processors: list[RopaRecipient] = Field(
        description="Sub-processors that receive data of the systems holding its records"
    )
    transfers: list[RopaRecipient] = Field(
        description="Recipients of that data in another country, with their safeguard"
    )
    security_measures: str | None = Field(
        examples=["Encryption in transit and at rest; role-based access; audit log"]
    )
