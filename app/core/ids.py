"""Time-ordered UUIDs (v7): keyset paging follows creation order and inserts stay index-local."""

import uuid

from uuid_utils import compat


def new_id() -> uuid.UUID:
    return compat.uuid7()
