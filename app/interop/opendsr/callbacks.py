"""OpenDSR status: what a controller reads and is called back with, derived from our request.

`pending` until a system takes any of the request's work, then `in_progress`; `completed`;
`cancelled` (also for a request we denied: the protocol has no other ending). Every change is
announced to each of the request's `status_callback_urls`: a request's or a task's status
set in a session marks the request, and at commit the marked OpenDSR requests whose status now
differs from the one last announced get one outbox event per URL (target kind
`opendsr_callback`), written in the same transaction, sent and signed by the worker's relay."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Select, event, exists, insert, select
from sqlalchemy.orm import Session, object_session

from app.core.db import utcnow
from app.interop.opendsr.models import OpenDsrRequest
from app.interop.opendsr.signing import ProcessorSigner
from app.outbox.models import OutboxEvent
from app.outbox.service import row as outbox_row
from app.requests.fresh import Pointers
from app.requests.models import SubjectRequest
from app.tasks.models import Task

API_VERSION = "2.0"
TARGET_KIND = "opendsr_callback"
EVENT_TYPE = "opendsr.status_changed"
_TOUCHED = "opendsr_touched"


def opendsr_status(status: str, started: bool) -> str:
    if status == "completed":
        return "completed"
    if status in ("cancelled", "denied"):
        return "cancelled"
    if status == "in_progress" and started:
        return "in_progress"
    return "pending"


def status_rows(where: Any) -> Select[OpenDsrRequest, str, datetime, datetime | None, bool]:
    """OpenDSR requests with what their status derives from, one statement."""
    started = exists().where(Task.request_id == SubjectRequest.id, Task.status != "pending")
    return (
        select(
            OpenDsrRequest,
            SubjectRequest.status,
            SubjectRequest.due_at,
            SubjectRequest.extended_due_at,
            started.label("started"),
        )
        .join(SubjectRequest, SubjectRequest.id == OpenDsrRequest.request_id)
        .where(where)
    )


def rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def callback_body(
    link: OpenDsrRequest, url: str, status: str, expected: datetime
) -> dict[str, Any]:
    """The body the spec's callback carries: ids, the status and dates, the controller's URL."""
    return {
        "controller_id": str(link.controller_id),
        "status_callback_url": url,
        "subject_request_id": str(link.subject_request_id),
        "request_status": status,
        "expected_completion_time": rfc3339(expected),
        "api_version": API_VERSION,
    }


def _mark(session: Session | None, request_id: uuid.UUID | None) -> None:
    if session is not None and request_id is not None:
        session.info.setdefault(_TOUCHED, set()).add(request_id)


@event.listens_for(SubjectRequest.status, "set")
def _on_request_status(target: SubjectRequest, value: Any, old: Any, _initiator: Any) -> None:
    if old != value:
        _mark(object_session(target), target.id)


@event.listens_for(Task.status, "set")
def _on_task_status(target: Task, value: Any, old: Any, _initiator: Any) -> None:
    if old != value:
        _mark(object_session(target), target.request_id)


# A request filed in this transaction has an OpenDSR link only if this transaction wrote it.
_LINKS = Pointers(OpenDsrRequest, "request_id")


@event.listens_for(Session, "before_commit")
def _announce(session: Session) -> None:
    touched: set[uuid.UUID] = session.info.pop(_TOUCHED, set())
    ask = _LINKS.to_ask(session, touched)
    if not ask:
        return
    rows = session.execute(status_rows(OpenDsrRequest.request_id.in_(ask))).all()
    now = utcnow()
    events: list[dict[str, Any]] = []
    for link, status, due_at, extended_due_at, started in rows:
        current = opendsr_status(status, bool(started))
        if current == link.announced_status:
            continue
        link.announced_status = current  # flushed by this commit
        expected = extended_due_at or due_at
        events.extend(
            outbox_row(
                EVENT_TYPE,
                callback_body(link, url, current, expected),
                TARGET_KIND,
                str(link.id),
                now,
            )
            for url in link.status_callback_urls
        )
    if events:
        session.execute(insert(OutboxEvent), events)


@event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, _previous_transaction: Any) -> None:
    session.info.pop(_TOUCHED, None)


def signed_callback(
    payload: dict[str, Any], signer: ProcessorSigner
) -> tuple[str, bytes, dict[str, str]]:
    """What the relay posts for one callback event: its URL, the body, the signed headers.
    The body is the same bytes on every attempt."""
    body = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    return (
        str(payload["status_callback_url"]),
        body,
        {"content-type": "application/json", **signer.headers(body)},
    )
