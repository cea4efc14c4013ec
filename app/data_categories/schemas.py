from datetime import datetime
from typing import Literal

from pydantic import Field

from app.core.schemas import DottedKey, InputModel, Name, OutputModel, Text, not_null

CategoryKey = DottedKey

# For query parameters, which take a pattern rather than a validator.
DOTTED_PATTERN = r"^[a-z0-9_]+(\.[a-z0-9_]+)*$"

Sensitivity = Literal["low", "medium", "high"]
_PROVIDED_HELP = (
    "The subject gives this data themselves: a portability request hands it back (Art. 20(1))"
)


class DataCategoryCreate(InputModel):
    key: CategoryKey = Field(
        description="Dotted; its parent (the key without its last segment) must exist",
        examples=["communications.recording"],
    )
    name: Name = Field(examples=["Call recordings"])
    description: Text | None = Field(None, examples=["Audio of calls and voicemail"])
    sensitivity: Sensitivity = Field("medium", examples=["high"])
    fideslang: DottedKey | None = Field(
        None,
        description="The matching key of the fideslang taxonomy, where one exists",
        examples=["user.biometric.voice"],
    )
    subject_provided: bool = Field(False, description=_PROVIDED_HELP, examples=[True])


class DataCategoryUpdate(InputModel):
    """The key (and so the place in the tree) never changes."""

    name: Name | None = Field(None, examples=["Call recordings"])
    description: Text | None = Field(None, examples=["Audio of calls and voicemail"])
    sensitivity: Sensitivity | None = Field(None, examples=["high"])
    fideslang: DottedKey | None = Field(None, examples=["user.biometric.voice"])
    subject_provided: bool | None = Field(None, description=_PROVIDED_HELP, examples=[True])

    _not_null = not_null("name", "sensitivity", "subject_provided")


class DataCategoryOut(OutputModel):
    key: str = Field(examples=["communications.recording"])
    parent_key: str | None = Field(examples=["communications"])
    name: str = Field(examples=["Call recordings"])
    description: str | None = Field(examples=["Audio of calls and voicemail"])
    sensitivity: Sensitivity = Field(examples=["high"])
    fideslang: str | None = Field(examples=["user.biometric.voice"])
    subject_provided: bool = Field(description=_PROVIDED_HELP, examples=[True])
    version: int = Field(examples=[1])
    created_at: datetime
    updated_at: datetime
