"""Controllers: Spix (the one platform controller) and its customers."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import Principal
from app.auth.visibility import every_row
from app.controllers.models import Controller
from app.controllers.schemas import ControllerCreate, ControllerOut, ControllerUpdate, DsrRouting
from app.core.crypto import SecretBox
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.ids import new_id
from app.webhooks.signing import new_secret


def to_out(controller: Controller) -> dict[str, Any]:
    return {
        **{c: getattr(controller, c) for c in ControllerOut.model_fields if hasattr(controller, c)},
        "dsr_routing": DsrRouting(
            mode=controller.dsr_routing_mode,  # type: ignore[arg-type]
            webhook_url=controller.webhook_url,
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
    session: AsyncSession, body: ControllerCreate, box: SecretBox, *, kind: str = "customer"
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
        auto_execute=body.auto_execute,
    )
    secret = _new_secret(box, controller) if body.dsr_routing.mode == "webhook" else None
    session.add(controller)
    await session.flush()
    return controller, secret


async def update_controller(
    session: AsyncSession, controller: Controller, body: ControllerUpdate, box: SecretBox
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
            if routing.mode == "webhook" and controller.webhook_secret_sealed is None:
                secret = _new_secret(box, controller)
        else:
            setattr(controller, field, value)
    start, end = controller.effective_from, controller.effective_until
    if start and end and end < start:
        raise Unprocessable(
            "effective_until is before effective_from", loc=["body", "effective_until"]
        )
    await session.flush()
    return sorted(changes), secret
