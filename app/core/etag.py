"""ETag / If-Match for registry objects: the ETag is the object's version counter."""

from typing import Annotated

from fastapi import Header

from app.core.errors import PreconditionFailed


def etag_of(version: int) -> str:
    return f'"{version}"'


def check_if_match(if_match: str | None, version: int) -> None:
    """A stale If-Match answers 412; no If-Match means the caller accepts last-writer-wins."""
    if if_match is None:
        return
    current = etag_of(version)
    candidates = {tag.strip().removeprefix("W/") for tag in if_match.split(",")}
    if "*" not in candidates and current not in candidates:
        raise PreconditionFailed(f"If-Match does not match the current ETag {current}")


IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description="The ETag you read. Optional: without it the last writer wins; a stale "
        "one answers 412.",
    ),
]
