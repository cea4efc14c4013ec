"""Controllers: Spix (the one platform controller) and its customers."""

from __future__ import annotations

import uuid
import weakref
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record
from app.auth.service import Principal
from app.auth.visibility import every_row
from app.controllers.models import Controller
from app.controllers.schemas import ControllerCreate, ControllerOut, ControllerUpdate, DsrRouting
from app.core.crypto import SecretBox
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.hot_read import ReadScope
from app.core.ids import new_id
from app.retention.recompute import Scope, recompute
from app.webhooks.signing import new_secret


def to_out(controller: Controller) -> dict[str, Any]:
    return {
        **{c: getattr(controller, c) for c in ControllerOut.model_fields if hasattr(controller, c)},
        "dsr_routing": DsrRouting(
            mode=controller.dsr_routing_mode,  # type: ignore[arg-type]
            webhook_url=controller.webhook_url,
            signature_scheme=controller.webhook_signature_scheme,  # type: ignore[arg-type]
        ),
        "has_signing_secret": controller.webhook_secret_sealed is not None,
    }


def visible(principal: Principal) -> Select[Controller]:
    """Controllers this key may see: a controller key sees itself and the platform."""
    return select(Controller).where(
        principal.visibility.where(
            system=every_row,
            controller=lambda own: or_(Controller.id == own, Controller.kind == "platform"),
        )
    )


async def get_controller(
    session: AsyncSession, principal: Principal, controller_id: uuid.UUID
) -> Controller:
    controller = await session.scalar(visible(principal).where(Controller.id == controller_id))
    if controller is None:
        raise NotFound("No controller with this id")
    return controller


# The platform controller's id per bind: the engine a process shares, or a test's connection
# (whose rolled-back transaction takes its platform row with it). Weak keys: a disposed engine
# or closed connection takes its entry along, so no other database can read it.
_platform_ids: weakref.WeakKeyDictionary[Any, uuid.UUID] = weakref.WeakKeyDictionary()


async def platform_controller_id(session: AsyncSession) -> uuid.UUID | None:
    """Spix's own controller, or None before `spix-dsr seed` made it.

    Read once per bind: there is exactly one platform row, never deleted and never re-kinded
    (no API deletes a controller or changes its kind), so once found its id stays true for as
    long as the bind lives; only its absence is asked about again."""
    bind = session.get_bind()
    found = _platform_ids.get(bind)
    if found is None:
        found = await session.scalar(select(Controller.id).where(Controller.kind == "platform"))
        if found is not None:
            _platform_ids[bind] = found
    return found


async def platform_controller_of(reads: ReadScope) -> uuid.UUID | None:
    """platform_controller_id for a hot read, which opens no session for it once the id is
    known: kept per database when the reads take pooled connections (creating a session
    costs a twentieth of a suppression check)."""
    database = reads.pooled_database
    found = _platform_ids.get(database) if database is not None else None
    if found is None:
        found = await platform_controller_id(await reads.session())
        if found is not None and database is not None:
            _platform_ids[database] = found
    return found


async def require_controller(session: AsyncSession, controller_id: uuid.UUID) -> Controller:
    controller = await session.get(Controller, controller_id)
    if controller is None:
        raise NotFound("No controller with this id")
    return controller


async def _ensure_external_ref_free(
    session: AsyncSession, external_ref: str | None, own_id: uuid.UUID | None = None
) -> None:
    if external_ref is None:
        return
    existing = await session.scalar(
        select(Controller.id).where(Controller.external_ref == external_ref)
    )
    if existing is not None and existing != own_id:
        raise Conflict("Another controller has this external_ref")


def _new_secret(box: SecretBox, controller: Controller) -> str:
    secret = new_secret()
    controller.webhook_secret_sealed = box.seal(secret, context=f"controller:{controller.id}")
    return secret


async def create_controller(
    session: AsyncSession,
    principal: Principal,
    body: ControllerCreate,
    box: SecretBox,
    *,
    kind: str = "customer",
) -> tuple[Controller, str | None]:
    await _ensure_external_ref_free(session, body.external_ref)
    controller = Controller(
        id=new_id(),
        kind=kind,
        name=body.name,
        external_ref=body.external_ref,
        agreement_ref=body.agreement_ref,
        effective_from=body.effective_from,
        effective_until=body.effective_until,
        dsr_routing_mode=body.dsr_routing.mode,
        webhook_url=body.dsr_routing.webhook_url,
        webhook_signature_scheme=body.dsr_routing.signature_scheme,
        auto_execute=body.auto_execute,
        contact=body.contact,
        dpo_contact=body.dpo_contact,
        security_measures=body.security_measures,
        automated_decision_making=body.automated_decision_making,
        standing_instruction_ref=body.standing_instruction_ref,
    )
    secret = _new_secret(box, controller) if body.dsr_routing.mode == "webhook" else None
    session.add(controller)
    await session.flush()
    record(
        session,
        principal,
        "controller.created",
        "controller",
        controller.id,
        {"kind": controller.kind, "routing": controller.dsr_routing_mode},
    )
    return controller, secret


async def update_controller(
    session: AsyncSession,
    principal: Principal,
    controller: Controller,
    body: ControllerUpdate,
    box: SecretBox,
) -> tuple[list[str], str | None]:
    changes = body.model_dump(exclude_unset=True)
    if "external_ref" in changes:
        await _ensure_external_ref_free(session, body.external_ref, controller.id)
    secret = None
    for field, value in changes.items():
        if field == "dsr_routing":
            routing = DsrRouting.model_validate(value)
            controller.dsr_routing_mode = routing.mode
            controller.webhook_url = routing.webhook_url
            controller.webhook_signature_scheme = routing.signature_scheme
            if routing.mode == "webhook" and controller.webhook_secret_sealed is None:
                secret = _new_secret(box, controller)
        else:
            setattr(controller, field, value)
    if controller.auto_execute and controller.standing_instruction_ref is None:
        # Spix acts on a customer's data only on its instruction (GDPR Art. 28(3)(a)).
        raise Unprocessable(
            "auto_execute needs the customer's standing_instruction_ref",
            loc=["body", "standing_instruction_ref"],
        )
    start, end = controller.effective_from, controller.effective_until
    if start and end and end < start:
        raise Unprocessable(
            "effective_until is before effective_from", loc=["body", "effective_until"]
        )
    await session.flush()
    details: dict[str, Any] = {"fields": sorted(changes)}
    if "effective_until" in changes and controller.kind == "customer":
        # The agreement's end is a retention deadline of every record of this customer
        # (Art. 28(3)(g)): their stored decisions follow it now.
        details["records_recomputed"] = await recompute(
            session, [Scope(controller_id=controller.id)]
        )
    changed = details["fields"]
    record(session, principal, "controller.updated", "controller", controller.id, details)
    return changed, secret
