import uuid
from datetime import datetime
from typing import Literal, Self

from pydantic import Field, model_validator

from app.core.schemas import MAX_BATCH, InputModel, OutputModel, RecordRef, SystemKey

NO_MAXIMUM_NOTE = "No maximum rule covers this record: it may be deleted, nothing requires it"


class RuleOutcomeOut(OutputModel):
    id: uuid.UUID
    key: str | None = Field(None, description="The rule's key, when it has one")
    name: str | None = Field(None, description="The rule's name")
    kind: Literal["minimum", "maximum"]
    ends_at: datetime | None
    decisive: bool
    outranked: bool = False


class RetentionDecision(OutputModel):
    record_id: uuid.UUID
    status: Literal["held", "retain", "eligible", "due", "erased"] = Field(
        description="`erased`: the record was erased (only its tombstone is kept)"
    )
    keep_until: datetime | None
    keep_indefinitely: bool = Field(
        description="A minimum rule waits for an event: kept with no end date yet"
    )
    delete_by: datetime | None
    action: Literal["delete", "anonymize"]
    holds: list[uuid.UUID]
    rules: list[RuleOutcomeOut]
    contract_ends_at: datetime | None = Field(
        None,
        description=(
            "For a customer's record once its agreement has an end date: the end plus the "
            "grace period, a delete-by date only a legal-obligation (law) minimum can pass "
            "(GDPR Art. 28(3)(g))"
        ),
    )
    note: str | None = Field(
        None,
        description="Set when an eligible record has no delete_by: no maximum rule covers it",
        examples=[NO_MAXIMUM_NOTE],
    )

    @model_validator(mode="after")
    def _explain_open_end(self) -> Self:
        if self.status == "eligible" and self.delete_by is None and self.note is None:
            self.note = NO_MAXIMUM_NOTE
        return self


class RecordLocator(InputModel):
    """A record by id, or by its system and record_ref."""

    id: uuid.UUID | None = None
    system: SystemKey | None = None
    record_ref: RecordRef | None = None

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        by_ref = self.system is not None and self.record_ref is not None
        if (self.id is not None) == by_ref or (
            self.id is None and (self.system is None) != (self.record_ref is None)
        ):
            raise ValueError("give either id, or system and record_ref")
        return self


class EligibilityIn(InputModel):
    records: list[RecordLocator] = Field(min_length=1, max_length=MAX_BATCH)


class EligibilityResult(OutputModel):
    index: int
    found: bool
    system: str | None = None
    record_ref: str | None = None
    decision: RetentionDecision | None = None


class EligibilityOut(OutputModel):
    results: list[EligibilityResult]


class DueRecord(OutputModel):
    id: uuid.UUID
    system: str
    record_ref: str
    delete_by: datetime
    action: Literal["delete", "anonymize"]


class DuePage(OutputModel):
    items: list[DueRecord]
    next_cursor: str | None = None


class CoverageItem(OutputModel):
    category: str
    records: int = Field(description="Active records of this category with no maximum rule")
    systems: list[str]


class CoverageOut(OutputModel):
    uncovered: list[CoverageItem]
    records_without_rule: int
