from datetime import datetime

from pydantic import Field

from app.core.schemas import InputModel, Name, OutputModel, SystemKey, Text, Url, not_null


class SystemCreate(InputModel):
    key: SystemKey = Field(examples=["voice-recordings"])
    name: Name = Field(examples=["Voice recordings"])
    owner: Name | None = Field(None, examples=["voice-platform team"])
    description: Text | None = Field(None, examples=["Stores call recordings and voicemail"])
    webhook_url: Url | None = Field(
        None,
        description="Where new tasks are pushed; without one the system pulls its work",
        examples=["https://voice.internal.spix.sh/dsr/tasks"],
    )


class SystemUpdate(InputModel):
    """The key is the system's address and never changes."""

    name: Name | None = Field(None, examples=["Voice recordings"])
    owner: Name | None = Field(None, examples=["voice-platform team"])
    description: Text | None = Field(None, examples=["Stores call recordings and voicemail"])
    webhook_url: Url | None = Field(None, examples=["https://voice.internal.spix.sh/dsr/tasks"])

    _not_null = not_null("name")


class SystemOut(OutputModel):
    key: str = Field(examples=["voice-recordings"])
    name: str = Field(examples=["Voice recordings"])
    owner: str | None = Field(examples=["voice-platform team"])
    description: str | None = Field(examples=["Stores call recordings and voicemail"])
    webhook_url: str | None = Field(examples=["https://voice.internal.spix.sh/dsr/tasks"])
    version: int = Field(examples=[1])
    created_at: datetime
    updated_at: datetime
