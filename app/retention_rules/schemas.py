import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints

from app.core.schemas import DottedKey, InputModel, Name, OutputModel, SystemKey, Text, not_null
from app.retention.policy import parse_period, validate_anchor

RuleKind = Literal["minimum", "maximum"]
RuleAction = Literal["delete", "anonymize"]
RuleSource = Literal["law", "contract", "platform_default", "customer_setting"]


def _canonical_period(value: str) -> str:
    # One spelling per period (`P1Y6M`, never `P0Y1Y6M0D`), so equal rules compare equal.
    return str(parse_period(value))


Period = Annotated[
    str, StringConstraints(min_length=1, max_length=40), AfterValidator(_canonical_period)
]
Anchor = Annotated[
    str, StringConstraints(min_length=1, max_length=120), AfterValidator(validate_anchor)
]
RuleKey = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^[a-z0-9][a-z0-9._-]*$"),
]
Region = Annotated[str, StringConstraints(min_length=1, max_length=50)]

_PERIOD = Field(
    description="ISO 8601 duration of years, months, weeks and days",
    examples=["P7Y", "P90D", "P1Y6M"],
)
_ANCHOR = Field(
    description="What the period counts from: `collected_at`, `last_activity_at` or "
    "`event:<name>` (a named event recorded on the record)",
    examples=["collected_at", "event:account_closed"],
)


class RetentionRuleCreate(InputModel):
    name: Name = Field(examples=["Invoices: statutory retention"])
    kind: RuleKind = Field(
        description="`minimum`: keep at least this long; `maximum`: delete by then",
        examples=["minimum"],
    )
    period: Period = _PERIOD
    anchor: Anchor = _ANCHOR
    action: RuleAction = Field("delete", description="What happens at the end", examples=["delete"])
    source: RuleSource = Field(examples=["law"])
    citation: Text | None = Field(None, examples=["HGB §257(4); AO §147(3)"])
    category: DottedKey | None = Field(
        None, description="A category key; covers every key below it", examples=["billing.invoice"]
    )
    purpose: DottedKey | None = Field(None, examples=["billing"])
    controller_id: uuid.UUID | None = Field(
        None, description="A controller key's own rules always name its controller"
    )
    system: SystemKey | None = Field(None, examples=["billing"])
    region: Region | None = Field(None, examples=["eu"])
    key: RuleKey | None = Field(
        None,
        description="A stable slug for rules loaded from a file (admin only; unique)",
        examples=["de-invoices-min"],
    )
    default_to_review: bool = Field(
        False, description="At the end, queue the record for review instead of acting on it"
    )


class RetentionRuleUpdate(InputModel):
    name: Name | None = Field(None, examples=["Invoices: statutory retention"])
    kind: RuleKind | None = Field(None, examples=["minimum"])
    period: Period | None = Field(None, examples=["P10Y"])
    anchor: Anchor | None = Field(None, examples=["collected_at"])
    action: RuleAction | None = Field(None, examples=["anonymize"])
    source: RuleSource | None = Field(None, examples=["law"])
    citation: Text | None = Field(None, examples=["HGB §257(4)"])
    category: DottedKey | None = Field(None, examples=["billing.invoice"])
    purpose: DottedKey | None = Field(None, examples=["billing"])
    controller_id: uuid.UUID | None = None
    system: SystemKey | None = Field(None, examples=["billing"])
    region: Region | None = Field(None, examples=["eu"])
    key: RuleKey | None = Field(None, examples=["de-invoices-min"])
    default_to_review: bool | None = None

    _not_null = not_null(
        "name", "kind", "period", "anchor", "action", "source", "default_to_review"
    )


class RetentionRuleOut(OutputModel):
    id: uuid.UUID
    key: str | None = Field(examples=["de-invoices-min"])
    name: str = Field(examples=["Invoices: statutory retention"])
    kind: RuleKind = Field(examples=["minimum"])
    period: str = Field(examples=["P10Y"])
    anchor: str = Field(examples=["collected_at"])
    action: RuleAction = Field(examples=["delete"])
    source: RuleSource = Field(examples=["law"])
    citation: str | None = Field(examples=["HGB §257(4); AO §147(3)"])
    category: str | None = Field(examples=["billing.invoice"])
    purpose: str | None = Field(examples=["billing"])
    controller_id: uuid.UUID | None
    system: str | None = Field(examples=["billing"])
    region: str | None = Field(examples=["eu"])
    default_to_review: bool = Field(examples=[False])
    version: int = Field(examples=[1])
    created_at: datetime
    updated_at: datetime


class SimulationOut(OutputModel):
    records_matched: int = Field(description="Records the rule would apply to")
    would_become_due: int = Field(description="Records not due now that would be due")
    would_change: int = Field(description="Records whose keep_until, delete_by or action change")
