"""What outbox events carry: ids, types and statuses, never an identity, a code or a secret."""

from __future__ import annotations

import uuid
from typing import Any

from app.requests.models import RequestScope, SubjectRequest


def scope_ids(
    request: SubjectRequest, scope: RequestScope, *, task_id: uuid.UUID | None = None
) -> dict[str, Any]:
    ids: dict[str, Any] = {
        "request_id": str(request.id),
        "request_type": request.type,
        "regime": request.regime,
        "scope_id": str(scope.id),
        "controller_id": str(scope.controller_id),
        "scope_status": str(scope.status),
    }
    if task_id is not None:
        ids["task_id"] = str(task_id)
    return ids
