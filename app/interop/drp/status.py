"""The protocol's Exercise Status object (section 3.03), read off our subject request: the
status and reason tables of section 3.02, `expected_by` from the request's deadline clock.
Ids, statuses, times and fixed sentences only: it is also the callback body the outbox keeps.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.interop.drp.models import DrpRequest
from app.requests.models import SubjectRequest

# Our request status to the protocol's (section 3.02).
STATUS = {
    "pending_verification": "open",
    "in_progress": "in_progress",
    "completed": "fulfilled",
    "denied": "denied",
    "cancelled": "revoked",
}
# Our denial reasons to the protocol's denial reasons.
DENIAL_REASON = {
    "unverifiable": "insuf_verification",
    "exempt": "claim_not_covered",
    "excessive": "too_many_requests",
    "manifestly_unfounded": "other",
}
REFUSED_DETAILS = {
    "claim_not_covered": "An opt-in to the sale or sharing of personal information must be "
    "requested and then separately confirmed by the consumer (two steps, 11 CCR 7028); it "
    "cannot be taken through an authorized agent. The consumer can opt in from their account.",
}
_DETAILS = {
    "open": "Received; the business is verifying the consumer's identity before it acts.",
    "in_progress": "The business is acting on the request.",
    "fulfilled": "The business has finished acting on the request.",
    "revoked": "The request was revoked and will not be processed further.",
}
_DENIED_DETAILS = {
    "insuf_verification": "The consumer's identity could not be verified.",
    "claim_not_covered": "The request is for data or processing the law exempts.",
    "too_many_requests": "The consumer has made more requests than the business must answer.",
    "other": "The request was refused; the consumer is told why and where to complain.",
}


def _stamp(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def status_object(drp: DrpRequest, request: SubjectRequest | None) -> dict[str, Any]:
    """The status of a DRP request; `request` is None for one refused at the door."""
    out: dict[str, Any] = {"request_id": str(drp.id)}
    if drp.agent_request_id is not None:
        out["agent_request_id"] = drp.agent_request_id
    if request is None:
        reason = drp.refused_reason or "other"
        out |= {
            "status": "denied",
            "reason": reason,
            "received_at": _stamp(drp.received_at),
            "processing_details": REFUSED_DETAILS.get(reason, _DENIED_DETAILS["other"]),
        }
        return out
    status = STATUS[request.status]
    out["status"] = status
    out["received_at"] = _stamp(request.received_at)
    if status in ("open", "in_progress"):
        # The regime's deadline, moved by an extension (section 3.08).
        out["expected_by"] = _stamp(request.extended_due_at or request.due_at)
    if status == "denied":
        reason = DENIAL_REASON.get(request.denial_reason or "", "other")
        out["reason"] = reason
        out["processing_details"] = _DENIED_DETAILS[reason]
    elif status == "in_progress" and request.extended_due_at is not None:
        out["processing_details"] = (
            "The deadline was extended as the regime allows; the consumer was told why."
        )
    else:
        out["processing_details"] = _DETAILS[status]
    return out
