import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

# What a review found: the record was erased again, it was collected anew on a lawful basis,
# or it belongs to another person. An enumeration, so no personal data lands in a note.
Resolution = Literal["erased_again", "lawful_new_collection", "not_the_same_subject"]


class ReappearedOut(BaseModel):
    """A record registered for an identity erased within the memory period."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    record_id: uuid.UUID
    # The erasure request it reappeared after.
    request_id: uuid.UUID
    controller_id: uuid.UUID
    system: str
    flagged_at: datetime
    reviewed_at: datetime | None
    resolution: Resolution | None


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: Resolution
