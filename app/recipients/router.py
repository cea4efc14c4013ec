from typing import Annotated

from fastapi import APIRouter, Depends, Response

from app.auth.dependencies import AdminKey, AnyKey
from app.core.errors import NotFound, error_responses
from app.core.etag import IfMatch, check_if_match, etag_of
from app.core.idempotency import IdempotencyDep
from app.core.pagination import Page, PageParams, page_params, paginate
from app.core.session import SessionDep
from app.recipients import service
from app.recipients.models import Recipient
from app.recipients.schemas import RecipientCreate, RecipientOut, RecipientUpdate

router = APIRouter(prefix="/v1/recipients", tags=["recipients"])


@router.post(
    "",
    status_code=201,
    response_model=RecipientOut,
    operation_id="create_recipient",
    summary="Register a recipient of personal data (processor, sub-processor, third party)",
    responses=error_responses(400, 401, 403, 409, 413, 422),
)
async def create_recipient(
    body: RecipientCreate, session: SessionDep, principal: AdminKey, idem: IdempotencyDep
) -> Response:
    recipient = await service.create_recipient(session, principal, body)
    return await idem.respond(
        RecipientOut.model_validate(recipient),
        201,
        headers={"ETag": etag_of(recipient.version), "Location": f"/v1/recipients/{recipient.key}"},
    )


@router.get(
    "",
    operation_id="list_recipients",
    summary="List recipients",
    responses=error_responses(400, 401, 422),
)
async def list_recipients(
    session: SessionDep, principal: AnyKey, page: Annotated[PageParams, Depends(page_params)]
) -> Page[RecipientOut]:
    statement = service.select_recipients().where(principal.visibility.shared())
    rows, next_cursor = await paginate(session, statement, Recipient.key, page, str)
    return Page[RecipientOut](
        items=[RecipientOut.model_validate(row) for row in rows], next_cursor=next_cursor
    )


@router.get(
    "/{key}",
    operation_id="get_recipient",
    summary="Read a recipient",
    responses=error_responses(401, 404),
)
async def get_recipient(
    key: str, session: SessionDep, principal: AnyKey, response: Response
) -> RecipientOut:
    if principal.visibility.nothing:
        raise NotFound("No recipient with this key")
    recipient = await service.get_recipient(session, key)
    response.headers["ETag"] = etag_of(recipient.version)
    return RecipientOut.model_validate(recipient)


@router.patch(
    "/{key}",
    operation_id="update_recipient",
    summary="Change a recipient",
    responses=error_responses(400, 401, 403, 404, 412, 413, 422),
)
async def update_recipient(
    key: str,
    body: RecipientUpdate,
    session: SessionDep,
    principal: AdminKey,
    response: Response,
    if_match: IfMatch = None,
) -> RecipientOut:
    recipient = await service.get_recipient(session, key)
    check_if_match(if_match, recipient.version)
    await service.update_recipient(session, principal, recipient, body)
    response.headers["ETag"] = etag_of(recipient.version)
    return RecipientOut.model_validate(recipient)
