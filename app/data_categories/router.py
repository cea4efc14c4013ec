from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from app.auth.dependencies import AdminKey, AnyKey
from app.core.errors import NotFound, error_responses
from app.core.etag import IfMatch, check_if_match, etag_of
from app.core.idempotency import IdempotencyDep
from app.core.pagination import Page, PageParams, page_params, paginate
from app.core.session import SessionDep
from app.data_categories import service
from app.data_categories.models import DataCategory
from app.data_categories.schemas import (
    DOTTED_PATTERN,
    DataCategoryCreate,
    DataCategoryOut,
    DataCategoryUpdate,
)

router = APIRouter(prefix="/v1/data-categories", tags=["data-categories"])


@router.post(
    "",
    status_code=201,
    response_model=DataCategoryOut,
    operation_id="create_data_category",
    summary="Add a data category under an existing parent",
    responses=error_responses(400, 401, 403, 409, 413, 422),
)
async def create_data_category(
    body: DataCategoryCreate, session: SessionDep, principal: AdminKey, idem: IdempotencyDep
) -> Response:
    category = await service.create_category(session, principal, body)
    return await idem.respond(
        DataCategoryOut.model_validate(category),
        201,
        headers={
            "ETag": etag_of(category.version),
            "Location": f"/v1/data-categories/{category.key}",
        },
    )


@router.get(
    "",
    operation_id="list_data_categories",
    summary="List data categories, optionally one parent's children or one subtree",
    responses=error_responses(400, 401, 422),
)
async def list_data_categories(
    session: SessionDep,
    principal: AnyKey,
    page: Annotated[PageParams, Depends(page_params)],
    parent: Annotated[
        str | None,
        Query(
            pattern=DOTTED_PATTERN,
            max_length=200,
            description="Only the direct children of this key",
            examples=["communications"],
        ),
    ] = None,
    prefix: Annotated[
        str | None,
        Query(
            pattern=DOTTED_PATTERN,
            max_length=200,
            description="This key and every key below it",
            examples=["communications"],
        ),
    ] = None,
) -> Page[DataCategoryOut]:
    statement = service.select_categories(parent=parent, prefix=prefix).where(
        principal.visibility.shared()
    )
    rows, next_cursor = await paginate(session, statement, DataCategory.key, page, str)
    return Page[DataCategoryOut](
        items=[DataCategoryOut.model_validate(row) for row in rows], next_cursor=next_cursor
    )


@router.get(
    "/{key}",
    operation_id="get_data_category",
    summary="Read a data category",
    responses=error_responses(401, 404),
)
async def get_data_category(
    key: str, session: SessionDep, principal: AnyKey, response: Response
) -> DataCategoryOut:
    if principal.visibility.nothing:
        raise NotFound("No data category with this key")
    category = await service.get_category(session, key)
    response.headers["ETag"] = etag_of(category.version)
    return DataCategoryOut.model_validate(category)


@router.patch(
    "/{key}",
    operation_id="update_data_category",
    summary="Change a data category's name, description, sensitivity or fideslang key",
    responses=error_responses(400, 401, 403, 404, 412, 413, 422),
)
async def update_data_category(
    key: str,
    body: DataCategoryUpdate,
    session: SessionDep,
    principal: AdminKey,
    response: Response,
    if_match: IfMatch = None,
) -> DataCategoryOut:
    category = await service.get_category(session, key)
    check_if_match(if_match, category.version)
    await service.update_category(session, principal, category, body)
    response.headers["ETag"] = etag_of(category.version)
    return DataCategoryOut.model_validate(category)


@router.delete(
    "/{key}",
    status_code=204,
    response_class=Response,
    operation_id="delete_data_category",
    summary="Delete a data category that nothing uses",
    responses=error_responses(401, 403, 404, 409, 412),
)
async def delete_data_category(
    key: str, session: SessionDep, principal: AdminKey, if_match: IfMatch = None
) -> Response:
    category = await service.get_category(session, key)
    check_if_match(if_match, category.version)
    await service.delete_category(session, principal, category)
    return Response(status_code=204)
