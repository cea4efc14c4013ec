"""Retention policy: which rules apply to a record, and when it may and must go.

Pure functions over plain data (DESIGN.md, "Retention: when a record may and must go"):
no database, no framework. Callers that recompute many records resolve the rules once
per group of records sharing (categories, purposes, controller, system, region) with
`group_rules`, then call `resolve` for each record of the group; only the dates differ.

Conventions:
- Controller ids may be `uuid.UUID` objects or their text; they are compared as
  lower-cased text, so a UUID from the database matches the id given in an API body.
- Datetimes are compared with each other and with `now`, so pass them all
  timezone-aware (UTC) or all naive; `add_period` keeps whatever tzinfo it gets.
- A `last_activity_at` anchor on a record with no `last_activity_at` counts from
  `collected_at`: a record nobody touched since collection is as old as its collection.
"""

from __future__ import annotations

import calendar
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

Kind = Literal["minimum", "maximum"]
Action = Literal["delete", "anonymize"]
Status = Literal["held", "retain", "eligible", "due"]
ControllerId = str | uuid.UUID

KINDS: tuple[Kind, ...] = ("minimum", "maximum")
ACTIONS: tuple[Action, ...] = ("delete", "anonymize")
ANCHOR_COLLECTED = "collected_at"
ANCHOR_LAST_ACTIVITY = "last_activity_at"
EVENT_PREFIX = "event:"
SOURCE_LAW = "law"

# ASCII digits only: `\d` would also accept other scripts' digits.
_PERIOD_RE = re.compile(r"P(?:([0-9]+)Y)?(?:([0-9]+)M)?(?:([0-9]+)W)?(?:([0-9]+)D)?")
_EVENT_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+")
_DOTTED_KEY_RE = re.compile(r"[^.\s]+(?:\.[^.\s]+)*")
# A bound well past any real retention period that keeps anchor + period inside
# datetime's range (year 9999) for any realistic anchor.
_MAX_PERIOD_DAYS = 1000 * 366
# The latest date a rule can end: a period that would end later (an anchor near the end of
# the calendar) ends here instead. A day short of datetime's end, so the value survives a
# shift to any time zone. Effectively never.
END_OF_TIME = datetime(9999, 12, 31, tzinfo=UTC)


@dataclass(frozen=True)
class Period:
    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0

    def __post_init__(self) -> None:
        parts = (self.years, self.months, self.weeks, self.days)
        if any(isinstance(p, bool) or not isinstance(p, int) or p < 0 for p in parts):
            raise ValueError("period parts must be non-negative integers")
        approx_days = self.years * 366 + self.months * 31 + self.weeks * 7 + self.days
        if approx_days > _MAX_PERIOD_DAYS:
            raise ValueError("period is longer than 1000 years")

    def __str__(self) -> str:
        text = "".join(
            f"{n}{unit}"
            for n, unit in zip(
                (self.years, self.months, self.weeks, self.days), "YMWD", strict=True
            )
            if n
        )
        return f"P{text or '0D'}"


def parse_period(text: str) -> Period:
    """Parse an ISO 8601 duration of years, months, weeks and days (`P1Y6M`, `P90D`)."""
    match = _PERIOD_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None or all(g is None for g in match.groups()):
        raise ValueError(
            "period must be an ISO 8601 duration of years, months, weeks and days, e.g. P1Y6M"
        )
    years, months, weeks, days = (int(g) if g is not None else 0 for g in match.groups())
    return Period(years=years, months=months, weeks=weeks, days=days)


def add_period(start: datetime, period: Period) -> datetime:
    """start + period, saturating at END_OF_TIME: never an error, never a date past it
    (decision_sql.Dates.add_period saturates the same way)."""
    end_of_time = END_OF_TIME if start.tzinfo is not None else END_OF_TIME.replace(tzinfo=None)
    # Years and months together, so 29 Feb + P1Y1M is 29 March, not 28 March.
    month_index = start.month - 1 + period.years * 12 + period.months
    year = start.year + month_index // 12
    if year > end_of_time.year:
        return end_of_time
    month = month_index % 12 + 1
    day = start.day
    if day > 28:  # only the last days of a month may not exist in the target month
        day = min(day, _days_in_month(year, month))
    shifted = start.replace(year=year, month=month, day=day)
    if not (period.weeks or period.days):
        return min(shifted, end_of_time)
    # timedelta keeps tzinfo and wall-clock time of day.
    try:
        end = shifted + timedelta(weeks=period.weeks, days=period.days)
    except OverflowError:
        return end_of_time
    return min(end, end_of_time)


_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days_in_month(year: int, month: int) -> int:
    # calendar.monthrange also works out the month's first weekday: a decision computes
    # this for every rule of every record.
    if month == 2 and calendar.isleap(year):
        return 29
    return _DAYS_IN_MONTH[month - 1]


def validate_anchor(anchor: str) -> str:
    if anchor in (ANCHOR_COLLECTED, ANCHOR_LAST_ACTIVITY):
        return anchor
    if anchor.startswith(EVENT_PREFIX) and _EVENT_NAME_RE.fullmatch(anchor[len(EVENT_PREFIX) :]):
        return anchor
    raise ValueError("anchor must be collected_at, last_activity_at or event:<name>")


@dataclass(frozen=True)
class RecordFacts:
    categories: tuple[str, ...]
    purposes: tuple[str, ...]
    controller_id: ControllerId | None
    system: str
    region: str | None
    collected_at: datetime
    last_activity_at: datetime | None = None
    events: Mapping[str, datetime] = field(default_factory=dict)
    # The record's state is `restricted` (Art. 18).
    restricted: bool = False


@dataclass(frozen=True)
class Rule:
    id: str
    kind: Kind
    period: Period
    anchor: str
    action: Action = "delete"
    category: str | None = None
    purpose: str | None = None
    controller_id: ControllerId | None = None
    system: str | None = None
    region: str | None = None
    source: str = ""
    citation: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError("kind must be minimum or maximum")
        if self.action not in ACTIONS:
            raise ValueError("action must be delete or anonymize")
        if not isinstance(self.period, Period):
            raise ValueError("period must be a Period; use parse_period")
        validate_anchor(self.anchor)
        # An empty scope string would silently match nothing; None means "any".
        for name in ("purpose", "controller_id", "system", "region"):
            value = getattr(self, name)
            if value is not None and not str(value).strip():
                raise ValueError(f"{name} must be None or non-empty")
        if self.category is not None and not _DOTTED_KEY_RE.fullmatch(self.category):
            raise ValueError("category must be a dotted key")


@dataclass(frozen=True)
class Hold:
    # The caller passes only holds whose scope covers the record; a released hold
    # (released_at at or before `now`) no longer counts.
    id: str
    released_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.released_at is None or self.released_at > now


@dataclass(frozen=True)
class RuleOutcome:
    rule_id: str
    kind: Kind
    # None: the rule's event has not happened, so the rule has no end yet.
    ends_at: datetime | None
    # Minimum: its end is keep_until (or it is what keeps the record indefinitely).
    # Maximum: its end is the earliest of the counted maximum rules, so it makes delete_by
    # exist and gives the action, even when a minimum rule pushes delete_by later.
    decisive: bool
    # A maximum rule that a more specific applicable maximum rule overrides.
    outranked: bool = False


@dataclass(frozen=True)
class Decision:
    status: Status
    keep_until: datetime | None
    # A minimum rule waits for an event that has not happened: the record is kept
    # with no end date (keep_until and delete_by are then None).
    keep_indefinitely: bool
    delete_by: datetime | None
    action: Action
    holds: list[str]
    rules: list[RuleOutcome]
    # The controller's agreement end plus grace, when it has one (GroupRules.contract_end).
    contract_end: datetime | None = None


@dataclass(frozen=True)
class GroupRules:
    """The rules of one group of records: which apply and which maximum rules count."""

    minimum: tuple[Rule, ...]
    # The most specific applicable maximum rules: the only ones that set delete_by.
    maximum: tuple[Rule, ...]
    outranked: tuple[Rule, ...]
    # The end of the controller's agreement plus the grace to return its data (Art.
    # 28(3)(g)): a delete-by date no rule but a `law` minimum can push later (`resolve`).
    contract_end: datetime | None = None


GroupKey = tuple[frozenset[str], frozenset[str], str | None, str, str | None]


def group_key(facts: RecordFacts) -> GroupKey:
    # Records with equal keys have the same applicable rules and the same ranking.
    return (
        frozenset(facts.categories),
        frozenset(facts.purposes),
        _id_text(facts.controller_id),
        facts.system,
        facts.region,
    )


def _id_text(value: ControllerId | None) -> str | None:
    return None if value is None else str(value).lower()


def category_covers(prefix: str, category: str) -> bool:
    return category == prefix or category.startswith(prefix + ".")


def rule_applies(rule: Rule, facts: RecordFacts) -> bool:
    if rule.controller_id is not None and _id_text(rule.controller_id) != _id_text(
        facts.controller_id
    ):
        return False
    if rule.system is not None and rule.system != facts.system:
        return False
    if rule.region is not None and rule.region != facts.region:
        return False
    if rule.purpose is not None and rule.purpose not in facts.purposes:
        return False
    return rule.category is None or any(
        category_covers(rule.category, category) for category in facts.categories
    )


def applicable_rules(rules: Iterable[Rule], facts: RecordFacts) -> list[Rule]:
    return [rule for rule in rules if rule_applies(rule, facts)]


def specificity(rule: Rule) -> tuple[int, int, int, int]:
    # (controller set, system set, category depth, purpose set), compared in that order.
    # The rule's category is the matched prefix, so its depth is its number of segments.
    depth = 0 if rule.category is None else rule.category.count(".") + 1
    return (
        int(rule.controller_id is not None),
        int(rule.system is not None),
        depth,
        int(rule.purpose is not None),
    )


def rank_rules(applicable: Iterable[Rule], contract_end: datetime | None = None) -> GroupRules:
    """Split rules already known to apply into minimum, counted maximum and outranked."""
    applicable = list(applicable)
    minimum = tuple(r for r in applicable if r.kind == "minimum")
    maximum = [r for r in applicable if r.kind == "maximum"]
    top = max((specificity(r) for r in maximum), default=None)
    return GroupRules(
        minimum=minimum,
        maximum=tuple(r for r in maximum if specificity(r) == top),
        outranked=tuple(r for r in maximum if specificity(r) != top),
        contract_end=contract_end,
    )


def group_rules(
    rules: Iterable[Rule], facts: RecordFacts, contract_end: datetime | None = None
) -> GroupRules:
    """The group-level half of `decide`: valid for every record with the same group_key.
    `contract_end` is the record's controller's agreement end plus the grace period (for a
    customer whose agreement has an end date), the same for every record of the group."""
    return rank_rules(applicable_rules(rules, facts), contract_end)


def contract_capped(
    rule: Rule, end: datetime | None, contract_end: datetime | None
) -> datetime | None:
    """A minimum rule's end once the agreement is over: only a `law` rule (a legal
    obligation) keeps the data past the contract end; any other minimum rule ends by it at
    the latest, and one waiting for its event ends there."""
    if contract_end is None or rule.source == SOURCE_LAW:
        return end
    return contract_end if end is None else min(end, contract_end)


def anchor_time(anchor: str, facts: RecordFacts) -> datetime | None:
    if anchor == ANCHOR_COLLECTED:
        return facts.collected_at
    if anchor == ANCHOR_LAST_ACTIVITY:
        if facts.last_activity_at is not None:
            return facts.last_activity_at
        return facts.collected_at
    return facts.events.get(anchor.removeprefix(EVENT_PREFIX))


def rule_end(rule: Rule, facts: RecordFacts) -> datetime | None:
    start = anchor_time(rule.anchor, facts)
    return None if start is None else add_period(start, rule.period)


def resolve(
    group: GroupRules | Sequence[Rule],
    facts: RecordFacts,
    holds: Iterable[Hold],
    now: datetime,
    *,
    reasons: bool = True,
) -> Decision:
    """The per-record half: dates from this record's anchors.

    `group` is `group_rules(...)` for the record's group, or the rules that apply to it.
    Without `reasons` the decision's `rules` stay empty: for a caller that stores the dates
    and never shows why (a batch's registration), which then builds no outcome per rule.
    """
    if not isinstance(group, GroupRules):
        group = rank_rules(group)
    active_holds = [hold.id for hold in holds if hold.active(now)]
    held = facts.restricted or bool(active_holds)

    # Principle 2: the longest retention wins; a minimum rule waiting for its event
    # keeps the record indefinitely.
    # A contract end caps every minimum rule but a `law` one (contract_capped).
    contract_end = group.contract_end
    min_ends = [
        (rule, contract_capped(rule, rule_end(rule, facts), contract_end)) for rule in group.minimum
    ]
    keep_indefinitely = any(end is None for _, end in min_ends)
    keep_until = None
    if not keep_indefinitely:
        keep_until = max((end for _, end in min_ends if end is not None), default=None)

    # Principles 3 and 4: the earliest end among the most specific maximum rules,
    # never before keep_until. A maximum rule waiting for its event gives no end. A contract
    # end counts beside them whatever their specificity: no customer setting outranks it.
    max_ends = [(rule, rule_end(rule, facts)) for rule in group.maximum]
    ends = [end for _, end in max_ends if end is not None]
    if contract_end is not None:
        ends.append(contract_end)
    earliest = min(ends, default=None)
    delete_by = None
    decisive_max: list[Rule] = []
    if earliest is not None and not keep_indefinitely:
        delete_by = earliest if keep_until is None else max(earliest, keep_until)
        decisive_max = [rule for rule, end in max_ends if end == earliest]
    # Ties on the earliest end: delete beats anonymize, since deleting also satisfies
    # a rule that would accept anonymizing, but not the other way round.
    # The contract end deletes (the data goes back to the customer or is deleted).
    action: Action = "delete"
    contract_decides = delete_by is not None and contract_end == earliest
    if (
        decisive_max
        and not contract_decides
        and all(rule.action == "anonymize" for rule in decisive_max)
    ):
        action = "anonymize"

    outcomes: list[RuleOutcome] = []
    if reasons:
        outcomes = [
            RuleOutcome(
                rule_id=rule.id,
                kind=rule.kind,
                ends_at=end,
                decisive=(end is None) if keep_indefinitely else (end == keep_until),
            )
            for rule, end in min_ends
        ]
        outcomes += [
            RuleOutcome(
                rule_id=rule.id,
                kind=rule.kind,
                ends_at=end,
                decisive=delete_by is not None and end == earliest,
            )
            for rule, end in max_ends
        ]
        outcomes += [
            RuleOutcome(
                rule_id=rule.id,
                kind=rule.kind,
                ends_at=rule_end(rule, facts),
                decisive=False,
                outranked=True,
            )
            for rule in group.outranked
        ]

    return Decision(
        status=status_at(held, keep_until, keep_indefinitely, delete_by, now),
        keep_until=keep_until,
        keep_indefinitely=keep_indefinitely,
        delete_by=delete_by,
        action=action,
        holds=active_holds,
        rules=outcomes,
        contract_end=contract_end,
    )


def status_at(
    held: bool,
    keep_until: datetime | None,
    keep_indefinitely: bool,
    delete_by: datetime | None,
    now: datetime,
) -> Status:
    """The status a stored decision has at `now`: dates stay fixed, the status moves."""
    if held:
        return "held"
    if keep_indefinitely or (keep_until is not None and keep_until > now):
        return "retain"
    if delete_by is not None and delete_by <= now:
        return "due"
    return "eligible"


def decide(
    rules: Iterable[Rule], facts: RecordFacts, holds: Iterable[Hold], now: datetime
) -> Decision:
    """One record on its own: filter the rules, rank them, compute the dates."""
    return resolve(group_rules(rules, facts), facts, holds, now)
