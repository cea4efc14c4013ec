"""The two state machines of subject requests: the request's and each scope's.

Pure data and functions (DESIGN.md, "Subject requests"). Every status change goes through
`request_next` or `scope_next`, so the tables below are the whole truth about which moves
exist; nothing else in the codebase assigns a status.

Choices the tables encode:
- A cancelled request closes its open scopes with the scope event `cancelled`, which lands
  on `declined`: a scope nobody will work on is done, and no separate status is needed.
  `cancelled` also closes a `failed` scope, or a cancelled request would keep a failure
  open that nobody has to act on any more.
- A failed scope stays failed (and blocks its request) until someone acts on it: `retried`
  sends it back to work, `handled_by_controller` hands it to the controller, `cancelled`
  drops it with the request.
- A request with no scopes (the subject is unknown to every controller) may complete:
  there is nothing left to wait for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType


class RequestStatus(StrEnum):
    pending_verification = "pending_verification"
    in_progress = "in_progress"
    completed = "completed"
    denied = "denied"
    cancelled = "cancelled"


class RequestEvent(StrEnum):
    verified = "verified"
    denied = "denied"
    cancelled = "cancelled"
    scopes_done = "scopes_done"
    failed_verification = "failed_verification"


class ScopeStatus(StrEnum):
    awaiting_controller = "awaiting_controller"
    in_progress = "in_progress"
    completed = "completed"
    declined = "declined"
    handled_by_controller = "handled_by_controller"
    failed = "failed"


class ScopeEvent(StrEnum):
    approved = "approved"
    declined = "declined"
    handled_by_controller = "handled_by_controller"
    tasks_done = "tasks_done"
    task_failed = "task_failed"
    retried = "retried"
    cancelled = "cancelled"


_R = RequestStatus
_RE = RequestEvent
_S = ScopeStatus
_SE = ScopeEvent

REQUEST_TRANSITIONS: Mapping[tuple[RequestStatus, RequestEvent], RequestStatus] = MappingProxyType(
    {
        (_R.pending_verification, _RE.verified): _R.in_progress,
        (_R.pending_verification, _RE.denied): _R.denied,
        (_R.pending_verification, _RE.failed_verification): _R.denied,
        (_R.pending_verification, _RE.cancelled): _R.cancelled,
        (_R.in_progress, _RE.denied): _R.denied,
        (_R.in_progress, _RE.cancelled): _R.cancelled,
        (_R.in_progress, _RE.scopes_done): _R.completed,
    }
)

SCOPE_TRANSITIONS: Mapping[tuple[ScopeStatus, ScopeEvent], ScopeStatus] = MappingProxyType(
    {
        (_S.awaiting_controller, _SE.approved): _S.in_progress,
        (_S.awaiting_controller, _SE.declined): _S.declined,
        (_S.awaiting_controller, _SE.handled_by_controller): _S.handled_by_controller,
        (_S.awaiting_controller, _SE.cancelled): _S.declined,
        (_S.in_progress, _SE.handled_by_controller): _S.handled_by_controller,
        (_S.in_progress, _SE.tasks_done): _S.completed,
        (_S.in_progress, _SE.task_failed): _S.failed,
        (_S.in_progress, _SE.cancelled): _S.declined,
        (_S.failed, _SE.retried): _S.in_progress,
        (_S.failed, _SE.handled_by_controller): _S.handled_by_controller,
        (_S.failed, _SE.cancelled): _S.declined,
    }
)

REQUEST_TERMINAL: frozenset[RequestStatus] = frozenset(
    {RequestStatus.completed, RequestStatus.denied, RequestStatus.cancelled}
)
# Done scopes are also terminal: no event leaves them.
SCOPE_DONE: frozenset[ScopeStatus] = frozenset(
    {ScopeStatus.completed, ScopeStatus.declined, ScopeStatus.handled_by_controller}
)


def allowed_request_events(status: RequestStatus | str) -> list[RequestEvent]:
    return [e for e in RequestEvent if (status, e) in REQUEST_TRANSITIONS]


def allowed_scope_events(status: ScopeStatus | str) -> list[ScopeEvent]:
    return [e for e in ScopeEvent if (status, e) in SCOPE_TRANSITIONS]


class InvalidTransition(ValueError):
    def __init__(
        self, current: RequestStatus | ScopeStatus, event: RequestEvent | ScopeEvent
    ) -> None:
        self.current = current
        self.event = event
        allowed: list[RequestEvent] | list[ScopeEvent]
        if isinstance(event, ScopeEvent):
            kind, allowed = "scope", allowed_scope_events(current)
        else:
            kind, allowed = "request", allowed_request_events(current)
        hint = f"allowed events: {', '.join(allowed)}" if allowed else "it is final"
        super().__init__(f"a {kind} in status '{current}' cannot take the event '{event}' ({hint})")


def request_next(current: RequestStatus | str, event: RequestEvent) -> RequestStatus:
    # A status string from the database that is no RequestStatus raises a plain ValueError:
    # that is corrupt data, not a refused move.
    status = RequestStatus(current)
    try:
        return REQUEST_TRANSITIONS[(status, RequestEvent(event))]
    except KeyError:
        raise InvalidTransition(status, RequestEvent(event)) from None


def scope_next(current: ScopeStatus | str, event: ScopeEvent) -> ScopeStatus:
    status = ScopeStatus(current)
    try:
        return SCOPE_TRANSITIONS[(status, ScopeEvent(event))]
    except KeyError:
        raise InvalidTransition(status, ScopeEvent(event)) from None


def request_is_terminal(status: RequestStatus | str) -> bool:
    return RequestStatus(status) in REQUEST_TERMINAL


def scope_is_done(status: ScopeStatus | str) -> bool:
    return ScopeStatus(status) in SCOPE_DONE


def request_can_complete(scope_statuses: Iterable[ScopeStatus | str]) -> bool:
    return all(scope_is_done(status) for status in scope_statuses)
