"""Retention rules: the registry of minimum and maximum periods, and who may write which.

Admin keys manage every rule. A controller key manages its own customer's retention settings
(`customer_setting` maximum rules naming its controller, no longer than the platform cap) and
reads the platform's rules beside them; another customer's rules are absent to it."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record
from app.auth.service import Principal
from app.auth.visibility import every_row
from app.controllers.models import Controller
from app.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.core.ids import new_id
from app.data_categories.models import DataCategory
from app.jobs import service as jobs
from app.purposes.models import Purpose
from app.retention.engine import to_policy_rule
from app.retention.policy import Period, add_period, parse_period
from app.retention.recompute import Scope, Simulation, recompute, simulate
from app.retention_rules.models import RetentionRule
from app.retention_rules.schemas import RetentionRuleCreate, RetentionRuleUpdate
from app.systems.models import System

CUSTOMER_SOURCE = "customer_setting"
# Periods are compared by where they end from one fixed start, since P1Y and P365D are not
# comparable otherwise.
_CAP_ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)
_COLUMNS = (
    "key",
    "name",
    "kind",
    "period",
    "anchor",
    "action",
    "source",
    "citation",
    "category",
    "purpose",
    "controller_id",
    "system",
    "region",
    "default_to_review",
)


@dataclass(frozen=True, slots=True)
class RuleScope:
    """What a rule can reach: the records to recompute when a rule with it changes."""

    category: str | None
    purpose: str | None
    controller_id: uuid.UUID | None
    system: str | None
    region: str | None

    def audit(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in asdict(self).items()}


def scope_of(rule: RetentionRule) -> RuleScope:
    return RuleScope(rule.category, rule.purpose, rule.controller_id, rule.system, rule.region)


def _audit_details(rule: RetentionRule) -> dict[str, Any]:
    return {"key": rule.key, "kind": rule.kind, "source": rule.source, **scope_of(rule).audit()}


async def on_rules_changed(session: AsyncSession, rule_scopes: Iterable[RuleScope]) -> None:
    # In the same transaction: a check never sees a rule without its effect on records.
    scopes = {
        Scope(
            controller_id=s.controller_id,
            system=s.system,
            region=s.region,
            category=s.category,
            purpose=s.purpose,
        )
        for s in rule_scopes
    }
    if await jobs.defer_recompute(session, scopes):  # too large: a worker's job (202)
        return
    await recompute(session, scopes)


def visible(principal: Principal) -> Select[RetentionRule]:
    """Rules this key may see: a controller key sees its own and those naming no controller."""
    return select(RetentionRule).where(
        principal.visibility.where(
            system=every_row,
            controller=lambda own: or_(
                RetentionRule.controller_id.is_(None), RetentionRule.controller_id == own
            ),
        )
    )


async def get_rule(
    session: AsyncSession, principal: Principal, rule_id: uuid.UUID
) -> RetentionRule:
    rule = await session.scalar(visible(principal).where(RetentionRule.id == rule_id))
    if rule is None:
        raise NotFound("No retention rule with this id")
    return rule


def _exceeds(period: str, cap: Period) -> bool:
    return add_period(_CAP_ANCHOR, parse_period(period)) > add_period(_CAP_ANCHOR, cap)


def _check_writable(principal: Principal, fields: dict[str, Any], cap: Period) -> None:
    """The rules every write must leave true; `fields` is the rule as it would be stored."""
    customer = fields["source"] == CUSTOMER_SOURCE
    if principal.role == "controller":
        if not customer or fields["kind"] != "maximum":
            raise Forbidden("A controller key may only write customer_setting maximum rules")
        if fields["controller_id"] != principal.controller_id:
            raise Unprocessable(
                "A controller key's rules name its own controller", loc=["body", "controller_id"]
            )
    if customer:
        if fields["kind"] != "maximum":
            raise Unprocessable(
                "A customer_setting rule is a maximum rule; minimum rules are the platform's",
                loc=["body", "kind"],
            )
        if fields["controller_id"] is None:
            raise Unprocessable(
                "A customer_setting rule names its customer", loc=["body", "controller_id"]
            )
        if _exceeds(fields["period"], cap):
            raise Unprocessable(
                f"A customer's retention period may not exceed {cap}", loc=["body", "period"]
            )


async def _check_references(
    session: AsyncSession, fields: dict[str, Any], names: Iterable[str]
) -> None:
    for name in names:
        value = fields.get(name)
        if value is None:
            continue
        if name == "category" and await session.get(DataCategory, value) is None:
            raise Unprocessable("No data category with this key", loc=["body", "category"])
        if name == "purpose" and await session.get(Purpose, value) is None:
            raise Unprocessable("No purpose with this key", loc=["body", "purpose"])
        if name == "system" and await session.get(System, value) is None:
            raise Unprocessable("No system with this key", loc=["body", "system"])
        if name == "controller_id":
            controller = await session.get(Controller, value)
            if controller is None:
                raise Unprocessable("No controller with this id", loc=["body", "controller_id"])
            if fields["source"] == CUSTOMER_SOURCE and controller.kind != "customer":
                raise Unprocessable(
                    "A customer_setting rule names a customer controller",
                    loc=["body", "controller_id"],
                )


def _key_reserved(principal: Principal, fields: dict[str, Any]) -> None:
    # Keys are one namespace over all tenants: a 409 on a controller key's choice would tell
    # it that another customer uses that key.
    if principal.role == "controller" and fields.get("key") is not None:
        raise Unprocessable("Only admin keys give rules a key", loc=["body", "key"])


async def _flush_unique_key(session: AsyncSession) -> None:
    # The unique constraint decides, so two concurrent writers of one key get one 409.
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Conflict("Another retention rule has this key") from exc


async def create_rule(
    session: AsyncSession, principal: Principal, body: RetentionRuleCreate, cap: Period
) -> RetentionRule:
    fields = body.model_dump()
    if principal.role == "controller" and fields["controller_id"] is None:
        fields["controller_id"] = principal.controller_id
    _check_writable(principal, fields, cap)
    _key_reserved(principal, fields)
    await _check_references(session, fields, ("category", "purpose", "system", "controller_id"))
    rule = RetentionRule(id=new_id(), **fields)
    session.add(rule)
    await _flush_unique_key(session)
    await on_rules_changed(session, [scope_of(rule)])
    record(
        session,
        principal,
        "retention_rule.created",
        "retention_rule",
        rule.id,
        _audit_details(rule),
    )
    return rule


def _check_may_change(principal: Principal, rule: RetentionRule) -> None:
    if principal.role == "controller" and (
        rule.source != CUSTOMER_SOURCE or rule.controller_id != principal.controller_id
    ):
        raise Forbidden("A controller key may only change its own customer_setting rules")


async def update_rule(
    session: AsyncSession,
    principal: Principal,
    rule: RetentionRule,
    body: RetentionRuleUpdate,
    cap: Period,
) -> tuple[list[str], RuleScope]:
    """Apply the change; answers the fields changed and the scope the rule had before."""
    _check_may_change(principal, rule)
    changes = body.model_dump(exclude_unset=True)
    merged = {column: getattr(rule, column) for column in _COLUMNS} | changes
    _check_writable(principal, merged, cap)
    _key_reserved(principal, changes)
    # A change of source may make the unchanged controller a customer_setting rule's.
    names = set(changes) | ({"controller_id"} if "source" in changes else set())
    await _check_references(session, merged, sorted(names))
    before = scope_of(rule)
    for field, value in changes.items():
        setattr(rule, field, value)
    await _flush_unique_key(session)
    await on_rules_changed(session, {before, scope_of(rule)})
    changed = sorted(changes)
    record(
        session,
        principal,
        "retention_rule.updated",
        "retention_rule",
        rule.id,
        {"fields": changed, "scope_before": before.audit(), **_audit_details(rule)},
    )
    return changed, before


async def delete_rule(session: AsyncSession, principal: Principal, rule: RetentionRule) -> None:
    _check_may_change(principal, rule)
    scope, details, rule_id = scope_of(rule), _audit_details(rule), rule.id
    await session.delete(rule)
    await session.flush()
    await on_rules_changed(session, [scope])
    record(session, principal, "retention_rule.deleted", "retention_rule", rule_id, details)


async def simulate_rule(
    session: AsyncSession, principal: Principal, body: RetentionRuleCreate, cap: Period
) -> Simulation:
    """What creating this rule would do to stored decisions; nothing is saved."""
    fields = body.model_dump()
    if principal.role == "controller" and fields["controller_id"] is None:
        fields["controller_id"] = principal.controller_id
    _check_writable(principal, fields, cap)
    await _check_references(session, fields, ("category", "purpose", "system", "controller_id"))
    rule = to_policy_rule(SimpleNamespace(id=new_id(), **fields))
    scope = scope_of(RetentionRule(**fields))
    return await simulate(
        session,
        rule,
        Scope(
            controller_id=scope.controller_id,
            system=scope.system,
            region=scope.region,
            category=scope.category,
            purpose=scope.purpose,
        ),
    )
