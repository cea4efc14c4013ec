import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from app.auth.dependencies import AnyKey, require_roles
from app.auth.service import Principal
from app.auth.visibility import CONTROLLER_FILTER
from app.core.errors import error_responses
from app.core.etag import IfMatch, check_if_match, etag_of
from app.core.idempotency import IdempotencyDep
from app.core.pagination import Page, PageParams, page_params, paginate
from app.core.session import SessionDep
from app.jobs import service as jobs
from app.retention.policy import Period, parse_period
from app.retention_rules import service
from app.retention_rules.models import RetentionRule
from app.retention_rules.schemas import (
    RetentionRuleCreate,
    RetentionRuleOut,
    RetentionRuleUpdate,
    RuleKind,
    RuleSource,
    SimulationOut,
)

router = APIRouter(prefix="/v1/retention-rules", tags=["retention-rules"])

# Controller keys write their own customer's settings; the service holds them to that.
RuleWriter = Annotated[Principal, require_roles("admin", "controller")]


async def customer_retention_cap(request: Request) -> Period:
    return parse_period(request.app.state.settings.customer_retention_cap)


CapDep = Annotated[Period, Depends(customer_retention_cap)]


@router.post(
    "",
    status_code=201,
    response_model=RetentionRuleOut,
    operation_id="create_retention_rule",
    summary="Create a retention rule",
    responses=jobs.ACCEPTED | error_responses(400, 401, 403, 409, 413, 422),
)
async def create_retention_rule(
    body: RetentionRuleCreate,
    session: SessionDep,
    principal: RuleWriter,
    idem: IdempotencyDep,
    cap: CapDep,
) -> Response:
    rule = await service.create_rule(session, principal, body, cap)
    if accepted := await jobs.deferred(session, principal, "retention_rule", rule.id):
        return accepted
    return await idem.respond(
        RetentionRuleOut.model_validate(rule),
        201,
        headers={"ETag": etag_of(rule.version), "Location": f"/v1/retention-rules/{rule.id}"},
    )


@router.post(
    "/simulate",
    operation_id="simulate_retention_rule",
    summary="What a proposed rule would change, without saving it",
    responses=error_responses(400, 401, 403, 413, 422),
)
async def simulate_retention_rule(
    body: RetentionRuleCreate, session: SessionDep, principal: RuleWriter, cap: CapDep
) -> SimulationOut:
    result = await service.simulate_rule(session, principal, body, cap)
    return SimulationOut(
        records_matched=result.records_matched,
        would_become_due=result.would_become_due,
        would_change=result.would_change,
    )


@router.get(
    "",
    operation_id="list_retention_rules",
    summary="List retention rules",
    responses=error_responses(400, 401, 422),
)
async def list_retention_rules(
    session: SessionDep,
    principal: AnyKey,
    page: Annotated[PageParams, Depends(page_params)],
    kind: RuleKind | None = None,
    source: RuleSource | None = None,
    category: Annotated[
        str | None, Query(max_length=200, description="Rules on exactly this category key")
    ] = None,
    controller_id: Annotated[
        uuid.UUID | None,
        Query(description="Rules naming this controller. " + CONTROLLER_FILTER),
    ] = None,
    system: Annotated[str | None, Query(max_length=100)] = None,
) -> Page[RetentionRuleOut]:
    statement = service.visible(principal)
    filters = {
        RetentionRule.kind: kind,
        RetentionRule.source: source,
        RetentionRule.category: category,
        RetentionRule.controller_id: controller_id,
        RetentionRule.system: system,
    }
    for column, value in filters.items():
        if value is not None:
            statement = statement.where(column == value)
    rows, next_cursor = await paginate(session, statement, RetentionRule.id, page)
    return Page[RetentionRuleOut](
        items=[RetentionRuleOut.model_validate(row) for row in rows], next_cursor=next_cursor
    )


@router.get(
    "/{rule_id}",
    operation_id="get_retention_rule",
    summary="Read a retention rule",
    responses=error_responses(401, 404, 422),
)
async def get_retention_rule(
    rule_id: uuid.UUID, session: SessionDep, principal: AnyKey, response: Response
) -> RetentionRuleOut:
    rule = await service.get_rule(session, principal, rule_id)
    response.headers["ETag"] = etag_of(rule.version)
    return RetentionRuleOut.model_validate(rule)


@router.patch(
    "/{rule_id}",
    operation_id="update_retention_rule",
    summary="Change a retention rule",
    responses=jobs.ACCEPTED | error_responses(400, 401, 403, 404, 409, 412, 413, 422),
)
async def update_retention_rule(
    rule_id: uuid.UUID,
    body: RetentionRuleUpdate,
    session: SessionDep,
    principal: RuleWriter,
    cap: CapDep,
    response: Response,
    if_match: IfMatch = None,
) -> RetentionRuleOut:
    rule = await service.get_rule(session, principal, rule_id)
    check_if_match(if_match, rule.version)
    await service.update_rule(session, principal, rule, body, cap)
    if accepted := await jobs.deferred(session, principal, "retention_rule", rule.id):
        return accepted  # type: ignore[return-value]
    response.headers["ETag"] = etag_of(rule.version)
    return RetentionRuleOut.model_validate(rule)


@router.delete(
    "/{rule_id}",
    status_code=204,
    response_class=Response,
    operation_id="delete_retention_rule",
    summary="Delete a retention rule",
    responses=jobs.ACCEPTED | error_responses(401, 403, 404, 422),
)
async def delete_retention_rule(
    rule_id: uuid.UUID, session: SessionDep, principal: RuleWriter
) -> Response:
    rule = await service.get_rule(session, principal, rule_id)
    await service.delete_rule(session, principal, rule)
    if accepted := await jobs.deferred(session, principal, "retention_rule", rule_id):
        return accepted
    return Response(status_code=204)
