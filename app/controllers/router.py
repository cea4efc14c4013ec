import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from app.auth.dependencies import AdminKey, AnyKey
from app.controllers import service
from app.controllers.models import Controller
from app.controllers.schemas import (
    ControllerCreate,
    ControllerCreated,
    ControllerOut,
    ControllerUpdate,
)
from app.core.crypto import SecretBoxDep
from app.core.errors import error_responses
from app.core.etag import IfMatch, check_if_match, etag_of
from app.core.idempotency import IdempotencyDep
from app.core.pagination import Page, PageParams, page_params, paginate
from app.core.session import SessionDep
from app.webhooks.targets import SafeWebhooksDep

router = APIRouter(prefix="/v1/controllers", tags=["controllers"])


@router.post(
    "",
    status_code=201,
    response_model=ControllerCreated,
    operation_id="create_controller",
    summary="Register a customer controller",
    responses=error_responses(400, 401, 403, 409, 413, 422),
)
async def create_controller(
    body: ControllerCreate,
    session: SessionDep,
    principal: AdminKey,
    idem: IdempotencyDep,
    box: SecretBoxDep,
    safe: SafeWebhooksDep,
) -> Response:
    await safe.check(body.dsr_routing.webhook_url, ["body", "dsr_routing", "webhook_url"])
    routing = body.dsr_routing
    safe.check_scheme(routing.signature_scheme, ["body", "dsr_routing", "signature_scheme"])
    controller, secret = await service.create_controller(session, principal, body, box)
    out = ControllerCreated(**service.to_out(controller), webhook_signing_secret=secret)
    return await idem.respond(
        out,
        201,
        headers={
            "ETag": etag_of(controller.version),
            "Location": f"/v1/controllers/{controller.id}",
        },
    )


@router.get(
    "",
    operation_id="list_controllers",
    summary="List controllers",
    responses=error_responses(400, 401, 422),
)
async def list_controllers(
    session: SessionDep,
    principal: AnyKey,
    page: Annotated[PageParams, Depends(page_params)],
    kind: Annotated[str | None, Query(pattern="^(platform|customer)$")] = None,
) -> Page[ControllerOut]:
    statement = service.visible(principal)
    if kind is not None:
        statement = statement.where(Controller.kind == kind)
    rows, next_cursor = await paginate(session, statement, Controller.id, page)
    return Page[ControllerOut](
        items=[ControllerOut(**service.to_out(row)) for row in rows], next_cursor=next_cursor
    )


@router.get(
    "/{controller_id}",
    operation_id="get_controller",
    summary="Read a controller",
    responses=error_responses(401, 404, 422),
)
async def get_controller(
    controller_id: uuid.UUID, session: SessionDep, principal: AnyKey, response: Response
) -> ControllerOut:
    controller = await service.get_controller(session, principal, controller_id)
    response.headers["ETag"] = etag_of(controller.version)
    return ControllerOut(**service.to_out(controller))


@router.patch(
    "/{controller_id}",
    response_model=ControllerCreated,
    operation_id="update_controller",
    summary="Change a controller's relationship or routing",
    responses=error_responses(400, 401, 403, 404, 409, 412, 413, 422),
)
async def update_controller(
    controller_id: uuid.UUID,
    body: ControllerUpdate,
    session: SessionDep,
    principal: AdminKey,
    box: SecretBoxDep,
    response: Response,
    safe: SafeWebhooksDep,
    if_match: IfMatch = None,
) -> ControllerCreated:
    routing = body.dsr_routing
    await safe.check(routing.webhook_url if routing else None, ["body", "dsr_routing"])
    safe.check_scheme(routing.signature_scheme if routing else None, ["body", "dsr_routing"])
    controller = await service.get_controller(session, principal, controller_id)
    check_if_match(if_match, controller.version)
    _, secret = await service.update_controller(session, principal, controller, body, box)
    response.headers["ETag"] = etag_of(controller.version)
    return ControllerCreated(**service.to_out(controller), webhook_signing_secret=secret)
