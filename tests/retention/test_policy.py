from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from app.retention.policy import (
    Decision,
    GroupRules,
    Hold,
    Kind,
    Period,
    RecordFacts,
    Rule,
    RuleOutcome,
    add_period,
    applicable_rules,
    category_covers,
    decide,
    group_key,
    group_rules,
    parse_period,
    rank_rules,
    resolve,
    rule_applies,
    specificity,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
ACME = "0b7f3c2e-6d1a-4c8e-9f00-1a2b3c4d5e6f"
OTHER = "5d9e8f7a-0000-4000-8000-000000000001"


def at(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


def make_rule(
    rule_id: str,
    kind: Kind = "maximum",
    period: str = "P1Y",
    anchor: str = "collected_at",
    **scope: Any,
) -> Rule:
    return Rule(id=rule_id, kind=kind, period=parse_period(period), anchor=anchor, **scope)


def make_facts(**overrides: Any) -> RecordFacts:
    values: dict[str, Any] = {
        "categories": ("communications.sms_body",),
        "purposes": ("service.messaging",),
        "controller_id": ACME,
        "system": "messaging",
        "region": "eu",
        "collected_at": at(2026, 1, 15),
    }
    values.update(overrides)
    return RecordFacts(**values)


def outcome(decision: Decision, rule_id: str) -> RuleOutcome:
    [found] = [o for o in decision.rules if o.rule_id == rule_id]
    return found


def decisive_ids(decision: Decision) -> set[str]:
    return {o.rule_id for o in decision.rules if o.decisive}


# --- periods ---------------------------------------------------------------------------


class TestParsePeriod:
    @pytest.mark.parametrize(
        ("text", "expected", "canonical"),
        [
            ("P7Y", Period(years=7), "P7Y"),
            ("P1Y6M", Period(years=1, months=6), "P1Y6M"),
            ("P90D", Period(days=90), "P90D"),
            ("P2W", Period(weeks=2), "P2W"),
            ("P1Y2M3W4D", Period(1, 2, 3, 4), "P1Y2M3W4D"),
            ("P18M", Period(months=18), "P18M"),
            ("P07Y", Period(years=7), "P7Y"),
            ("P0D", Period(), "P0D"),
            ("P0Y3D", Period(days=3), "P3D"),
            ("P1000Y", Period(years=1000), "P1000Y"),
        ],
    )
    def test_valid(self, text: str, expected: Period, canonical: str) -> None:
        period = parse_period(text)
        assert period == expected
        assert str(period) == canonical
        assert parse_period(str(period)) == period

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "P",
            "PT5H",
            "P1DT5H",
            "PT0S",
            "-P1D",
            "P-1D",
            "P1.5Y",
            "P1,5Y",
            "p7y",
            "P7y",
            "7Y",
            "P1D1Y",
            "P1M1Y",
            "P1Y1Y",
            " P7Y",
            "P7Y ",
            "P7Y\n",
            "P\u0661D",
            "P1001Y",
            "P999999D",
            "garbage",
        ],
    )
    def test_invalid(self, text: str) -> None:
        with pytest.raises(ValueError, match="period") as excinfo:
            parse_period(text)
        assert len(str(excinfo.value)) < 100

    @pytest.mark.parametrize(
        "parts",
        [
            {"years": -1},
            {"days": -1},
            {"months": 1.5},
            {"weeks": True},
        ],
    )
    def test_period_rejects_bad_parts(self, parts: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            Period(**parts)


class TestAddPeriod:
    @pytest.mark.parametrize(
        ("start", "period", "expected"),
        [
            (at(2026, 1, 31), "P1M", at(2026, 2, 28)),
            (at(2027, 1, 31), "P1M", at(2027, 2, 28)),
            (at(2028, 1, 31), "P1M", at(2028, 2, 29)),
            (at(2028, 2, 29), "P1Y", at(2029, 2, 28)),
            (at(2028, 2, 29), "P4Y", at(2032, 2, 29)),
            (at(2028, 2, 29), "P12M", at(2029, 2, 28)),
            (at(2026, 3, 31), "P6M", at(2026, 9, 30)),
            (at(2026, 8, 31), "P1M", at(2026, 9, 30)),
            (at(2026, 11, 30), "P3M", at(2027, 2, 28)),
            (at(2026, 12, 31), "P1M", at(2027, 1, 31)),
            (at(2026, 12, 15), "P13M", at(2028, 1, 15)),
            (at(2026, 1, 15), "P10Y", at(2036, 1, 15)),
            (at(2026, 1, 15), "P2Y", at(2028, 1, 15)),
            # Years and months move together, before weeks and days.
            (at(2028, 2, 29), "P1Y1M", at(2029, 3, 29)),
            (at(2026, 1, 31), "P1M1D", at(2026, 3, 1)),
            (at(2026, 1, 30), "P1M1D", at(2026, 3, 1)),
            (at(2028, 1, 31), "P1M1D", at(2028, 3, 1)),
            (at(2026, 1, 31), "P1Y1M", at(2027, 2, 28)),
            (at(2026, 11, 25), "P14D", at(2026, 12, 9)),
            (at(2026, 12, 25), "P1W", at(2027, 1, 1)),
            (at(2026, 1, 1), "P2W3D", at(2026, 1, 18)),
            (at(2028, 2, 28), "P1D", at(2028, 2, 29)),
            (at(2026, 11, 20), "P30D", at(2026, 12, 20)),
            (at(2026, 5, 5), "P0D", at(2026, 5, 5)),
        ],
    )
    def test_calendar_arithmetic(self, start: datetime, period: str, expected: datetime) -> None:
        assert add_period(start, parse_period(period)) == expected

    @pytest.mark.parametrize(
        "tz",
        [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30)), None],
    )
    def test_keeps_tzinfo_and_time_of_day(self, tz: timezone | None) -> None:
        start = datetime(2026, 1, 31, 23, 45, 12, 345678, tzinfo=tz)
        end = add_period(start, parse_period("P1M2D"))
        assert end == datetime(2026, 3, 2, 23, 45, 12, 345678, tzinfo=tz)
        assert end.tzinfo is tz


# --- rules and scoping -----------------------------------------------------------------


class TestRuleValidation:
    @pytest.mark.parametrize(
        "changes",
        [
            {"kind": "forever"},
            {"action": "shred"},
            {"anchor": "created_at"},
            {"anchor": "event:"},
            {"anchor": "event:has space"},
            {"anchor": "Collected_at"},
            {"period": "P1Y"},
            {"system": ""},
            {"purpose": " "},
            {"controller_id": ""},
            {"region": ""},
            {"category": ""},
            {"category": "communications."},
            {"category": ".communications"},
            {"category": "a..b"},
        ],
    )
    def test_rejects(self, changes: dict[str, Any]) -> None:
        values: dict[str, Any] = {
            "id": "r",
            "kind": "maximum",
            "period": Period(years=1),
            "anchor": "collected_at",
        }
        values.update(changes)
        with pytest.raises(ValueError):
            Rule(**values)

    @pytest.mark.parametrize("anchor", ["collected_at", "last_activity_at", "event:account_closed"])
    def test_accepts_anchors(self, anchor: str) -> None:
        assert make_rule("r", anchor=anchor).anchor == anchor


class TestRuleApplies:
    @pytest.mark.parametrize(
        ("scope", "facts_changes", "applies"),
        [
            ({}, {}, True),
            # category: equal key or dotted prefix, never a bare string prefix
            ({"category": "communications.sms_body"}, {}, True),
            ({"category": "communications"}, {}, True),
            ({"category": "communications.sms"}, {}, False),
            ({"category": "communications.sms_body.part"}, {}, False),
            ({"category": "billing"}, {}, False),
            ({"category": "communications"}, {"categories": ("communicationsx.y",)}, False),
            ({"category": "communications"}, {"categories": ("communicationsx",)}, False),
            (
                {"category": "billing.invoice"},
                {"categories": ("communications.sms_body", "billing.invoice")},
                True,
            ),
            ({"category": "billing"}, {"categories": ()}, False),
            # purpose: exact
            ({"purpose": "service.messaging"}, {}, True),
            ({"purpose": "marketing"}, {}, False),
            ({"purpose": "service"}, {}, False),
            ({"purpose": "marketing"}, {"purposes": ("service.messaging", "marketing")}, True),
            # controller: exact, uuid objects and text alike
            ({"controller_id": ACME}, {}, True),
            ({"controller_id": OTHER}, {}, False),
            ({"controller_id": ACME}, {"controller_id": None}, False),
            ({"controller_id": uuid.UUID(ACME)}, {}, True),
            ({"controller_id": ACME}, {"controller_id": uuid.UUID(ACME)}, True),
            ({"controller_id": ACME.upper()}, {}, True),
            # system
            ({"system": "messaging"}, {}, True),
            ({"system": "billing"}, {}, False),
            # region
            ({"region": "eu"}, {}, True),
            ({"region": "us"}, {}, False),
            ({"region": "eu"}, {"region": None}, False),
            # everything set at once
            (
                {
                    "category": "communications",
                    "purpose": "service.messaging",
                    "controller_id": ACME,
                    "system": "messaging",
                    "region": "eu",
                },
                {},
                True,
            ),
        ],
    )
    def test_scope(
        self, scope: dict[str, Any], facts_changes: dict[str, Any], applies: bool
    ) -> None:
        rule = make_rule("r", **scope)
        assert rule_applies(rule, make_facts(**facts_changes)) is applies

    @pytest.mark.parametrize(
        ("field", "wrong"),
        [
            ("category", "billing"),
            ("purpose", "marketing"),
            ("controller_id", OTHER),
            ("system", "billing"),
            ("region", "us"),
        ],
    )
    def test_every_set_field_must_match(self, field: str, wrong: str) -> None:
        scope: dict[str, Any] = {
            "category": "communications",
            "purpose": "service.messaging",
            "controller_id": ACME,
            "system": "messaging",
            "region": "eu",
        }
        scope[field] = wrong
        assert not rule_applies(make_rule("r", **scope), make_facts())

    @pytest.mark.parametrize(
        ("prefix", "category", "covers"),
        [
            ("communications", "communications", True),
            ("communications", "communications.recording", True),
            ("communications", "communications.recording.raw", True),
            ("communications", "communicationsx.y", False),
            ("communications.recording", "communications", False),
        ],
    )
    def test_category_covers(self, prefix: str, category: str, covers: bool) -> None:
        assert category_covers(prefix, category) is covers

    def test_applicable_rules_keeps_order_and_filters(self) -> None:
        rules = [
            make_rule("a", system="messaging"),
            make_rule("b", system="billing"),
            make_rule("c", category="communications"),
        ]
        assert [r.id for r in applicable_rules(rules, make_facts())] == ["a", "c"]


class TestSpecificity:
    @pytest.mark.parametrize(
        ("scope", "expected"),
        [
            ({}, (0, 0, 0, 0)),
            ({"category": "communications"}, (0, 0, 1, 0)),
            ({"category": "communications.sms_body"}, (0, 0, 2, 0)),
            ({"controller_id": ACME}, (1, 0, 0, 0)),
            ({"system": "messaging"}, (0, 1, 0, 0)),
            ({"purpose": "service.messaging"}, (0, 0, 0, 1)),
            ({"region": "eu"}, (0, 0, 0, 0)),
            (
                {"controller_id": ACME, "system": "s", "category": "a.b.c", "purpose": "p"},
                (1, 1, 3, 1),
            ),
        ],
    )
    def test_tuple(self, scope: dict[str, Any], expected: tuple[int, int, int, int]) -> None:
        assert specificity(make_rule("r", **scope)) == expected


# --- resolution ------------------------------------------------------------------------

# Each case: rules (all applicable to make_facts() unless noted), facts changes,
# expected status, keep_until, delete_by, action, decisive rule ids.
RESOLUTION_CASES: list[tuple[str, list[Rule], dict[str, Any], str, Any, Any, str, set[str]]] = [
    ("no rules: may go, not required", [], {}, "eligible", None, None, "delete", set()),
    (
        "one maximum rule passed",
        [make_rule("m", period="P6M")],
        {},
        "due",
        None,
        at(2026, 7, 15),
        "delete",
        {"m"},
    ),
    (
        "one maximum rule still running",
        [make_rule("m", period="P1Y")],
        {},
        "eligible",
        None,
        at(2027, 1, 15),
        "delete",
        {"m"},
    ),
    (
        "maximum rule ending exactly now is due",
        [make_rule("m", period="P1Y")],
        {"collected_at": at(2025, 12, 1)},
        "due",
        None,
        at(2026, 12, 1),
        "delete",
        {"m"},
    ),
    (
        "anonymize action carried",
        [make_rule("m", period="P6M", action="anonymize")],
        {},
        "due",
        None,
        at(2026, 7, 15),
        "anonymize",
        {"m"},
    ),
    (
        "minimum rule only, running",
        [make_rule("k", kind="minimum", period="P1Y")],
        {},
        "retain",
        at(2027, 1, 15),
        None,
        "delete",
        {"k"},
    ),
    (
        "minimum rule only, ended: eligible, never due",
        [make_rule("k", kind="minimum", period="P6M")],
        {},
        "eligible",
        at(2026, 7, 15),
        None,
        "delete",
        {"k"},
    ),
    (
        "minimum ending exactly now no longer retains",
        [make_rule("k", kind="minimum", period="P1Y"), make_rule("m", period="P1Y")],
        {"collected_at": at(2025, 12, 1)},
        "due",
        at(2026, 12, 1),
        at(2026, 12, 1),
        "delete",
        {"k", "m"},
    ),
    (
        "longest minimum wins",
        [
            make_rule("k1", kind="minimum", period="P1Y"),
            make_rule("k3", kind="minimum", period="P3Y"),
            make_rule("k2", kind="minimum", period="P2Y"),
        ],
        {},
        "retain",
        at(2029, 1, 15),
        None,
        "delete",
        {"k3"},
    ),
    (
        "minimum longer than maximum pushes delete_by to keep_until",
        [make_rule("k", kind="minimum", period="P3Y"), make_rule("m", period="P1Y")],
        {},
        "retain",
        at(2029, 1, 15),
        at(2029, 1, 15),
        "delete",
        {"k", "m"},
    ),
    (
        "minimum shorter than maximum leaves the maximum's end",
        [make_rule("k", kind="minimum", period="P3M"), make_rule("m", period="P2Y")],
        {},
        "eligible",
        at(2026, 4, 15),
        at(2028, 1, 15),
        "delete",
        {"k", "m"},
    ),
    (
        "minimum ended, maximum passed",
        [make_rule("k", kind="minimum", period="P3M"), make_rule("m", period="P6M")],
        {},
        "due",
        at(2026, 4, 15),
        at(2026, 7, 15),
        "delete",
        {"k", "m"},
    ),
    (
        "shortest maximum wins at equal specificity",
        [
            make_rule("m2", period="P2Y"),
            make_rule("m1", period="P6M"),
            make_rule("m3", period="P3Y"),
        ],
        {},
        "due",
        None,
        at(2026, 7, 15),
        "delete",
        {"m1"},
    ),
    (
        "region does not rank: both count, shortest wins",
        [make_rule("plain", period="P6M"), make_rule("regional", period="P1Y", region="eu")],
        {},
        "due",
        None,
        at(2026, 7, 15),
        "delete",
        {"plain"},
    ),
    (
        "deeper category outranks a shorter shallow one",
        [
            make_rule("shallow", period="P1M", category="communications"),
            make_rule("deep", period="P2Y", category="communications.sms_body"),
        ],
        {},
        "eligible",
        None,
        at(2028, 1, 15),
        "delete",
        {"deep"},
    ),
    (
        "any category outranks none",
        [
            make_rule("global", period="P1M"),
            make_rule("cat", period="P2Y", category="communications"),
        ],
        {},
        "eligible",
        None,
        at(2028, 1, 15),
        "delete",
        {"cat"},
    ),
    (
        "controller outranks system, depth and purpose",
        [
            make_rule(
                "everything-but-controller",
                period="P1M",
                system="messaging",
                category="communications.sms_body",
                purpose="service.messaging",
            ),
            make_rule("controller", period="P2Y", controller_id=ACME),
        ],
        {},
        "eligible",
        None,
        at(2028, 1, 15),
        "delete",
        {"controller"},
    ),
    (
        "system outranks depth and purpose",
        [
            make_rule(
                "deep-purpose",
                period="P1M",
                category="communications.sms_body",
                purpose="service.messaging",
            ),
            make_rule("system", period="P2Y", system="messaging"),
        ],
        {},
        "eligible",
        None,
        at(2028, 1, 15),
        "delete",
        {"system"},
    ),
    (
        "depth outranks purpose",
        [
            make_rule(
                "purpose", period="P1M", category="communications", purpose="service.messaging"
            ),
            make_rule("deep", period="P2Y", category="communications.sms_body"),
        ],
        {},
        "eligible",
        None,
        at(2028, 1, 15),
        "delete",
        {"deep"},
    ),
    (
        "purpose breaks the tie when the rest is equal",
        [
            make_rule("plain", period="P1M", category="communications"),
            make_rule(
                "purpose", period="P2Y", category="communications", purpose="service.messaging"
            ),
        ],
        {},
        "eligible",
        None,
        at(2028, 1, 15),
        "delete",
        {"purpose"},
    ),
    (
        "a less specific rule cannot shorten, even when most specific waits for an event",
        [
            make_rule("global", period="P1M"),
            make_rule("cat", period="P1Y", category="communications", anchor="event:closed"),
        ],
        {},
        "eligible",
        None,
        None,
        "delete",
        set(),
    ),
    (
        "tie on end: delete beats anonymize",
        [
            make_rule("anon", period="P6M", action="anonymize"),
            make_rule("del", period="P6M", action="delete"),
        ],
        {},
        "due",
        None,
        at(2026, 7, 15),
        "delete",
        {"anon", "del"},
    ),
    (
        "tie on end, both anonymize",
        [
            make_rule("a1", period="P6M", action="anonymize"),
            make_rule("a2", period="P26W", action="anonymize", anchor="event:x"),
            make_rule("a3", period="P182D", action="anonymize"),
        ],
        {"collected_at": at(2026, 1, 1), "events": {"x": at(2025, 12, 31)}},
        "due",
        None,
        at(2026, 7, 1),
        "anonymize",
        {"a1", "a2"},
    ),
    (
        "shorter anonymize rule beats longer delete rule",
        [
            make_rule("anon", period="P6M", action="anonymize"),
            make_rule("del", period="P1Y", action="delete"),
        ],
        {},
        "due",
        None,
        at(2026, 7, 15),
        "anonymize",
        {"anon"},
    ),
    (
        "outranked delete rule does not change the action",
        [
            make_rule("del", period="P1M", action="delete"),
            make_rule("anon", period="P6M", action="anonymize", system="messaging"),
        ],
        {},
        "due",
        None,
        at(2026, 7, 15),
        "anonymize",
        {"anon"},
    ),
    # event anchors
    (
        "minimum waiting for its event keeps indefinitely and suppresses delete_by",
        [
            make_rule("k", kind="minimum", period="P30D", anchor="event:account_closed"),
            make_rule("m", period="P6M"),
        ],
        {},
        "retain",
        None,
        None,
        "delete",
        {"k"},
    ),
    (
        "minimum waiting for its event outweighs a dated minimum",
        [
            make_rule("k", kind="minimum", period="P30D", anchor="event:account_closed"),
            make_rule("k10", kind="minimum", period="P10Y"),
        ],
        {},
        "retain",
        None,
        None,
        "delete",
        {"k"},
    ),
    (
        "minimum from an event that happened",
        [
            make_rule("k", kind="minimum", period="P30D", anchor="event:account_closed"),
            make_rule("m", period="P6M"),
        ],
        {"events": {"account_closed": at(2026, 11, 20)}},
        "retain",
        at(2026, 12, 20),
        at(2026, 12, 20),
        "delete",
        {"k", "m"},
    ),
    (
        "maximum waiting for its event gives no end",
        [make_rule("m", period="P30D", anchor="event:account_closed")],
        {},
        "eligible",
        None,
        None,
        "delete",
        set(),
    ),
    (
        "maximum from an event that happened",
        [make_rule("m", period="P30D", anchor="event:account_closed")],
        {"events": {"account_closed": at(2026, 10, 1)}},
        "due",
        None,
        at(2026, 10, 31),
        "delete",
        {"m"},
    ),
    (
        "maximum waiting for an event, a peer maximum gives the end",
        [
            make_rule("waiting", period="P1D", anchor="event:account_closed"),
            make_rule("dated", period="P2Y"),
        ],
        {},
        "eligible",
        None,
        at(2028, 1, 15),
        "delete",
        {"dated"},
    ),
    (
        "other events do not count",
        [make_rule("m", period="P30D", anchor="event:account_closed")],
        {"events": {"account_opened": at(2026, 1, 1)}},
        "eligible",
        None,
        None,
        "delete",
        set(),
    ),
    # last activity
    (
        "last_activity_at anchor uses last activity",
        [make_rule("m", period="P1Y", anchor="last_activity_at")],
        {"last_activity_at": at(2026, 6, 1)},
        "eligible",
        None,
        at(2027, 6, 1),
        "delete",
        {"m"},
    ),
    (
        "last_activity_at anchor falls back to collected_at",
        [make_rule("m", period="P1Y", anchor="last_activity_at")],
        {"collected_at": at(2025, 6, 1), "last_activity_at": None},
        "due",
        None,
        at(2026, 6, 1),
        "delete",
        {"m"},
    ),
]


class TestResolve:
    @pytest.mark.parametrize(
        ("rules", "facts_changes", "status", "keep_until", "delete_by", "action", "decisive"),
        [case[1:] for case in RESOLUTION_CASES],
        ids=[case[0] for case in RESOLUTION_CASES],
    )
    def test_principles(
        self,
        rules: list[Rule],
        facts_changes: dict[str, Any],
        status: str,
        keep_until: datetime | None,
        delete_by: datetime | None,
        action: str,
        decisive: set[str],
    ) -> None:
        facts = make_facts(**facts_changes)
        assert applicable_rules(rules, facts) == rules  # every case's rules apply
        decision = decide(rules, facts, [], NOW)
        assert decision.status == status
        assert decision.keep_until == keep_until
        assert decision.delete_by == delete_by
        assert decision.action == action
        assert decisive_ids(decision) == decisive
        assert decision.holds == []
        assert sorted(o.rule_id for o in decision.rules) == sorted(r.id for r in rules)

    @pytest.mark.parametrize(
        ("rules", "facts_changes", "status", "keep_until", "delete_by", "action", "decisive"),
        [case[1:] for case in RESOLUTION_CASES],
        ids=[case[0] for case in RESOLUTION_CASES],
    )
    def test_input_order_does_not_matter(
        self,
        rules: list[Rule],
        facts_changes: dict[str, Any],
        status: str,
        keep_until: datetime | None,
        delete_by: datetime | None,
        action: str,
        decisive: set[str],
    ) -> None:
        decision = decide(list(reversed(rules)), make_facts(**facts_changes), [], NOW)
        assert (decision.status, decision.keep_until, decision.delete_by, decision.action) == (
            status,
            keep_until,
            delete_by,
            action,
        )
        assert decisive_ids(decision) == decisive

    @pytest.mark.parametrize("case", RESOLUTION_CASES, ids=[case[0] for case in RESOLUTION_CASES])
    def test_without_reasons_the_same_dates(self, case: tuple[Any, ...]) -> None:
        # A batch stores a decision's dates and never shows why: the same decision, no outcomes.
        rules, facts_changes = case[1], case[2]
        facts = make_facts(**facts_changes)
        group = rank_rules(applicable_rules(rules, facts))
        held = [Hold("h1")]
        for holds in ([], held):
            full = resolve(group, facts, holds, NOW)
            bare = resolve(group, facts, holds, NOW, reasons=False)
            assert bare.rules == []
            assert bare == dataclasses.replace(full, rules=[])

    def test_rule_outcomes_report_every_applicable_rule(self) -> None:
        rules = [
            make_rule("k", kind="minimum", period="P3M"),
            make_rule("global", period="P1M"),
            make_rule("cat", period="P2Y", category="communications"),
            make_rule("waiting", period="P1D", category="communications", anchor="event:x"),
            make_rule("elsewhere", period="P1D", system="billing"),
        ]
        decision = decide(rules, make_facts(), [], NOW)
        assert {o.rule_id for o in decision.rules} == {"k", "global", "cat", "waiting"}
        assert outcome(decision, "k") == RuleOutcome("k", "minimum", at(2026, 4, 15), True)
        assert outcome(decision, "global") == RuleOutcome(
            "global", "maximum", at(2026, 2, 15), False, outranked=True
        )
        assert outcome(decision, "cat") == RuleOutcome("cat", "maximum", at(2028, 1, 15), True)
        assert outcome(decision, "waiting") == RuleOutcome("waiting", "maximum", None, False)

    def test_indefinite_flag(self) -> None:
        waiting = make_rule("k", kind="minimum", period="P30D", anchor="event:account_closed")
        assert decide([waiting], make_facts(), [], NOW).keep_indefinitely is True
        closed = make_facts(events={"account_closed": at(2026, 11, 20)})
        assert decide([waiting], closed, [], NOW).keep_indefinitely is False
        assert decide([], make_facts(), [], NOW).keep_indefinitely is False

    def test_maximum_rule_not_decisive_when_kept_indefinitely(self) -> None:
        rules = [
            make_rule("k", kind="minimum", period="P30D", anchor="event:account_closed"),
            make_rule("m", period="P6M", action="anonymize"),
        ]
        decision = decide(rules, make_facts(), [], NOW)
        assert outcome(decision, "m") == RuleOutcome("m", "maximum", at(2026, 7, 15), False)
        assert decision.action == "delete"


class TestHolds:
    RULES = [make_rule("k", kind="minimum", period="P3M"), make_rule("m", period="P6M")]

    @pytest.mark.parametrize(
        ("holds", "restricted", "status", "hold_ids"),
        [
            ([], False, "due", []),
            ([Hold("h1")], False, "held", ["h1"]),
            ([Hold("h1"), Hold("h2")], False, "held", ["h1", "h2"]),
            ([], True, "held", []),
            ([Hold("h1")], True, "held", ["h1"]),
            ([Hold("h1", released_at=at(2026, 11, 30))], False, "due", []),
            ([Hold("h1", released_at=NOW)], False, "due", []),
            ([Hold("h1", released_at=at(2026, 12, 2))], False, "held", ["h1"]),
            (
                [Hold("old", released_at=at(2026, 1, 1)), Hold("live")],
                False,
                "held",
                ["live"],
            ),
        ],
    )
    def test_holds_win(
        self, holds: list[Hold], restricted: bool, status: str, hold_ids: list[str]
    ) -> None:
        decision = decide(self.RULES, make_facts(restricted=restricted), holds, NOW)
        assert decision.status == status
        assert decision.holds == hold_ids
        # Dates are still reported while held.
        assert decision.keep_until == at(2026, 4, 15)
        assert decision.delete_by == at(2026, 7, 15)
        assert decisive_ids(decision) == {"k", "m"}

    @pytest.mark.parametrize(
        ("rules", "released_status"),
        [
            ([make_rule("k", kind="minimum", period="P10Y")], "retain"),
            ([make_rule("m", period="P10Y")], "eligible"),
            ([make_rule("m", period="P1M")], "due"),
            ([], "eligible"),
        ],
    )
    def test_release_restores_rule_status(self, rules: list[Rule], released_status: str) -> None:
        facts = make_facts()
        assert decide(rules, facts, [Hold("h")], NOW).status == "held"
        released = Hold("h", released_at=at(2026, 11, 1))
        assert decide(rules, facts, [released], NOW).status == released_status
        assert decide(rules, facts, [], NOW).status == released_status


# --- group resolution ------------------------------------------------------------------


class TestGroupResolution:
    RULES = [
        make_rule("k", kind="minimum", period="P30D", anchor="event:account_closed"),
        make_rule("global", period="P1M"),
        make_rule("cat", period="P2Y", category="communications"),
        make_rule("act", period="P1Y", category="communications", anchor="last_activity_at"),
        make_rule("elsewhere", period="P1D", system="billing"),
    ]

    def test_group_rules_split(self) -> None:
        group = group_rules(self.RULES, make_facts())
        assert group == GroupRules(
            minimum=(self.RULES[0],),
            maximum=(self.RULES[2], self.RULES[3]),
            outranked=(self.RULES[1],),
        )

    def test_rank_rules_without_maximum(self) -> None:
        group = rank_rules([self.RULES[0]])
        assert group == GroupRules(minimum=(self.RULES[0],), maximum=(), outranked=())

    @pytest.mark.parametrize(
        "record_changes",
        [
            {},
            {"collected_at": at(2020, 2, 29)},
            {"last_activity_at": at(2026, 11, 1)},
            {"events": {"account_closed": at(2026, 11, 20)}},
            {"events": {"account_closed": at(2024, 1, 1)}, "last_activity_at": at(2025, 3, 31)},
            {"restricted": True},
        ],
    )
    def test_resolving_once_per_group_matches_per_record(
        self, record_changes: dict[str, Any]
    ) -> None:
        first = make_facts(collected_at=at(2026, 6, 6))
        group = group_rules(self.RULES, first)
        record = make_facts(**record_changes)
        assert group_key(record) == group_key(first)
        assert resolve(group, record, [], NOW) == decide(self.RULES, record, [], NOW)
        # A plain list of applicable rules gives the same as a prepared group.
        applicable = applicable_rules(self.RULES, record)
        assert resolve(applicable, record, [], NOW) == decide(self.RULES, record, [], NOW)

    @pytest.mark.parametrize(
        ("changes", "same"),
        [
            ({"categories": ("communications.sms_body",)}, True),
            ({"controller_id": uuid.UUID(ACME)}, True),
            ({"collected_at": at(2000, 1, 1), "events": {"x": NOW}}, True),
            ({"categories": ("communications.recording",)}, False),
            ({"purposes": ("marketing",)}, False),
            ({"controller_id": OTHER}, False),
            ({"controller_id": None}, False),
            ({"system": "voice"}, False),
            ({"region": "us"}, False),
            ({"region": None}, False),
        ],
    )
    def test_group_key(self, changes: dict[str, Any], same: bool) -> None:
        assert (group_key(make_facts(**changes)) == group_key(make_facts())) is same

    def test_group_key_ignores_category_order(self) -> None:
        a = make_facts(categories=("a.b", "c"))
        b = make_facts(categories=("c", "a.b", "c"))
        assert group_key(a) == group_key(b)


# --- worked examples from DESIGN.md ----------------------------------------------------


class TestWorkedExamples:
    def test_deeper_category_is_more_explicit(self) -> None:
        rules = [
            make_rule("support", period="P2Y", category="support", source="platform_default"),
            make_rule("attachment", period="P6M", category="support.attachment"),
        ]
        facts = make_facts(
            categories=("support.attachment",),
            purposes=("service.support",),
            system="support",
            collected_at=at(2026, 3, 31),
        )
        decision = decide(rules, facts, [], NOW)
        assert decision.delete_by == at(2026, 9, 30)
        assert decision.status == "due"
        assert decisive_ids(decision) == {"attachment"}
        assert outcome(decision, "support").outranked

    def test_controller_outranks_depth(self) -> None:
        rules = [
            make_rule("platform", period="P1Y", category="communications.sms_body"),
            make_rule("acme", period="P14D", category="communications", controller_id=ACME),
        ]
        facts = make_facts(collected_at=at(2026, 11, 25))
        decision = decide(rules, facts, [], NOW)
        assert decision.delete_by == at(2026, 12, 9)
        assert decision.status == "eligible"
        assert decisive_ids(decision) == {"acme"}
        # Another customer's record only gets the platform rule.
        other = decide(
            rules, make_facts(collected_at=at(2026, 11, 25), controller_id=OTHER), [], NOW
        )
        assert other.delete_by == at(2027, 11, 25)

    def test_law_minimum_outlasts_platform_maximum(self) -> None:
        rules = [
            make_rule(
                "law", kind="minimum", period="P10Y", category="billing.invoice", source="law"
            ),
            make_rule("platform", period="P2Y", category="billing.invoice"),
        ]
        facts = make_facts(
            categories=("billing.invoice",), system="billing", collected_at=at(2026, 1, 15)
        )
        decision = decide(rules, facts, [], NOW)
        assert decision.keep_until == at(2036, 1, 15)
        assert decision.delete_by == at(2036, 1, 15)
        assert decision.status == "retain"

    @pytest.mark.parametrize(
        ("events", "keep_until", "indefinitely"),
        [({}, None, True), ({"account_closed": at(2026, 11, 20)}, at(2026, 12, 20), False)],
    )
    def test_minimum_from_event(
        self, events: dict[str, datetime], keep_until: datetime | None, indefinitely: bool
    ) -> None:
        rules = [
            make_rule(
                "contract",
                kind="minimum",
                period="P30D",
                anchor="event:account_closed",
                category="account.profile",
                source="contract",
            )
        ]
        facts = make_facts(categories=("account.profile",), system="accounts", events=events)
        decision = decide(rules, facts, [], NOW)
        assert decision.status == "retain"
        assert decision.keep_until == keep_until
        assert decision.keep_indefinitely is indefinitely
        assert decision.delete_by is None

    def test_hold_on_system_then_release(self) -> None:
        rules = [make_rule("m", period="P1Y", system="billing")]
        facts = make_facts(
            categories=("billing.invoice",), system="billing", collected_at=at(2025, 1, 1)
        )
        held = decide(rules, facts, [Hold("legal")], NOW)
        assert held.status == "held"
        assert held.holds == ["legal"]
        assert held.delete_by == at(2026, 1, 1)
        released = decide(rules, facts, [Hold("legal", released_at=at(2026, 11, 30))], NOW)
        assert released.status == "due"
        assert released.holds == []
