"""The OpenDSR adapter: a controller's OpenDSR messages parsed, checked and handed to the
requests service, which does all the work. The customer files for its own end user with its
controller key, so the request reaches only its records and runs at once on its instruction
(it is the controller: app/requests/scopes.py runs a scope of the filing controller without
waiting). No request logic lives here."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record as audit
from app.auth.service import Principal
from app.core.db import utcnow
from app.core.errors import AppError
from app.core.identity import Identity, IdentityFormat, IdentityType
from app.core.ids import new_id
from app.interop.opendsr.callbacks import opendsr_status, status_rows
from app.interop.opendsr.models import OpenDsrRequest
from app.interop.opendsr.schemas import OpenDsrIdentity, OpenDsrRequestIn, ProcessorExtension
from app.requests import intake, lifecycle, state
from app.requests.context import RequestContext
from app.requests.models import SubjectRequest
from app.requests.schemas import RequestCreate, Requester
from app.webhooks.targets import SafeWebhooks

# The spec's identity types we hold, and ours they are. `controller_customer_id` is the
# customer's own id for its end user: our external_id, scoped to that customer.
CORE_TYPES = {"email": IdentityType.email, "controller_customer_id": IdentityType.external_id}
# In our extension (keyed by our processor domain): phone numbers, named as mParticle's are.
EXTENSION_TYPES = {
    "phone_number": IdentityType.phone,
    "mobile_number": IdentityType.phone,
    **CORE_TYPES,
}
MATCHED_FORMATS = {"raw": IdentityFormat.raw, "sha256": IdentityFormat.sha256}


@dataclass
class OpenDsrProblem(Exception):
    """An answer in the spec's error shape; messages name fields, never values."""

    code: int
    message: str
    errors: list[dict[str, str]] = field(default_factory=list)
    reason: str = "IllegalArgumentException"


@dataclass(frozen=True, slots=True)
class Found:
    link: OpenDsrRequest
    status: str
    expected: datetime
    request_type: str


def parse(raw: bytes) -> OpenDsrRequestIn:
    try:
        return OpenDsrRequestIn.model_validate(orjson.loads(raw))
    except orjson.JSONDecodeError:
        message = "The body is not JSON"
        detail = {"domain": "Validation", "reason": "json_invalid", "message": message}
        raise OpenDsrProblem(400, message, [detail]) from None
    except ValidationError as exc:
        raise invalid(exc) from None


def invalid(exc: ValidationError | Any, domain: str = "Validation") -> OpenDsrProblem:
    """A body the schema refuses (domain `Validation`), or one refused past the schema
    (`Request`): what it names is a field and a rule, never the value."""
    errors = [
        {
            "domain": domain,
            "reason": str(error["type"]),
            "message": f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}",
        }
        for error in exc.errors()
    ]
    first = errors[0]["message"] if errors else "The request is not valid"
    return OpenDsrProblem(400, first, errors)


def identities_of(body: OpenDsrRequestIn, domain: str) -> list[Identity]:
    """The identities we can match; types we hold none of are left out, formats we cannot
    match (sha1, md5) are refused: a silently skipped email would find nothing."""
    found: list[Identity] = []
    sources: list[tuple[str, list[OpenDsrIdentity], dict[str, IdentityType]]] = [
        ("subject_identities", body.subject_identities, CORE_TYPES)
    ]
    if domain in body.extensions:
        try:
            extension = ProcessorExtension.model_validate(body.extensions[domain])
        except ValidationError as exc:
            raise invalid(exc, "Request") from None
        sources.append((f"extensions.{domain}.identities", extension.identities, EXTENSION_TYPES))
    for where, identities, types in sources:
        for position, given in enumerate(identities):
            ours = types.get(given.identity_type)
            if ours is None:
                continue
            if given.identity_format not in MATCHED_FORMATS:
                raise OpenDsrProblem(
                    400,
                    f"{where}.{position}.identity_format: {given.identity_format} is not "
                    "supported; send raw or sha256",
                    reason="UnsupportedIdentityFormat",
                )
            found.append(
                Identity(
                    type=ours,
                    value=given.identity_value,
                    format=MATCHED_FORMATS[given.identity_format],
                )
            )
    if not found:
        raise OpenDsrProblem(
            400,
            "No identity of a supported type: see the discovery's supported_identities",
            reason="NoSupportedIdentity",
        )
    return found


async def file_opendsr_request(
    session: AsyncSession,
    principal: Principal,
    raw: bytes,
    ctx: RequestContext,
    safe: SafeWebhooks,
    domain: str,
) -> Found:
    body = parse(raw)
    assert principal.controller_id is not None
    digest = hashlib.sha256(raw).hexdigest()
    existing = await _find(session, principal, body.subject_request_id)
    if existing is not None:
        # A controller retrying the same message gets the same answer; a reused id is refused.
        if existing.link.details.get("body_sha256") == digest:
            return existing
        raise OpenDsrProblem(400, "subject_request_id is already used by another request")
    for position, url in enumerate(body.status_callback_urls):
        try:
            await safe.check(url, ["status_callback_urls", position])
        except AppError as exc:
            raise OpenDsrProblem(400, f"status_callback_urls.{position}: {exc.detail}") from None
    identities = identities_of(body, domain)
    try:
        create = RequestCreate(
            type=body.subject_request_type,
            regime=body.regulation,
            identities=identities,
            requester=Requester(kind="subject"),
            channel="api",
            # The subject's request reached the controller then: the clock runs from it.
            received_at=min(body.submitted_time, utcnow()),
            # The controller verified its end user before instructing its processor.
            verified=True,
        )
        request, _challenge = await intake.file_request(session, principal, create, ctx)
    except ValidationError as exc:
        raise invalid(exc, "Request") from None
    except AppError as exc:
        raise OpenDsrProblem(400, exc.detail or exc.title) from None
    link = OpenDsrRequest(
        id=new_id(),
        controller_id=principal.controller_id,
        subject_request_id=body.subject_request_id,
        request_id=request.id,
        status_callback_urls=list(body.status_callback_urls),
        api_version=body.api_version or "",
        announced_status="pending",
        received_at=utcnow(),
        details={"body_sha256": digest},
    )
    session.add(link)
    await session.flush()
    audit(
        session,
        principal,
        "opendsr.request_received",
        "request",
        request.id,
        {
            "subject_request_id": str(body.subject_request_id),
            "status_callbacks": len(body.status_callback_urls),
        },
        subject_request_id=request.id,
    )
    found = await _find(session, principal, body.subject_request_id)
    assert found is not None
    return found


async def opendsr_request(
    session: AsyncSession, principal: Principal, subject_request_id: uuid.UUID
) -> Found:
    found = await _find(session, principal, subject_request_id)
    if found is None:
        # Another controller's request is as absent as an unknown one.
        raise OpenDsrProblem(404, "No such subject_request_id", reason="NotFound")
    return found


async def cancel_opendsr_request(
    session: AsyncSession,
    principal: Principal,
    subject_request_id: uuid.UUID,
    ctx: RequestContext,
) -> Found:
    found = await opendsr_request(session, principal, subject_request_id)
    if found.status != "pending":
        raise OpenDsrProblem(
            400,
            f"The request is {found.status}: only a pending request can be cancelled",
            reason="NotPending",
        )
    request = await session.get(SubjectRequest, found.link.request_id)
    assert request is not None
    await lifecycle.close_early(session, principal, request, state.RequestEvent.cancelled, ctx)
    cancelled = await _find(session, principal, subject_request_id)
    assert cancelled is not None
    return cancelled


async def _find(
    session: AsyncSession, principal: Principal, subject_request_id: uuid.UUID
) -> Found | None:
    row = (
        await session.execute(
            status_rows(
                (OpenDsrRequest.controller_id == principal.controller_id)
                & (OpenDsrRequest.subject_request_id == subject_request_id)
            ).add_columns(SubjectRequest.type)
        )
    ).first()
    if row is None:
        return None
    link, status, due_at, extended_due_at, started, request_type = row
    return Found(
        link, opendsr_status(status, bool(started)), extended_due_at or due_at, request_type
    )
