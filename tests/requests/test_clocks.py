from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from app.requests import models
from app.requests.clocks import (
    DEFAULT_CLOCKS,
    REGIMES,
    REQUEST_TYPES,
    Deadlines,
    ExtensionNotAllowed,
    RegimeClock,
    add_business_days,
    add_months,
    clock_for,
    clocks_from_overrides,
    deadlines,
    extended_due,
    paused_due,
)

THANKSGIVING_2026 = frozenset({date(2026, 11, 26), date(2026, 11, 27)})
YEAR_END_2026 = frozenset({date(2026, 12, 25), date(2027, 1, 1)})


def at(year: int, month: int, day: int, hour: int = 9, minute: int = 30) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


LGPD_BY_TYPE = dict.fromkeys(
    ("access", "portability", "rectification", "erasure", "restriction", "objection", "opt_out"),
    15,
)


class TestDefaultClocks:
    def test_one_clock_per_regime_of_the_api(self) -> None:
        assert set(DEFAULT_CLOCKS) == set(REGIMES)
        assert REGIMES == ("gdpr", "uk_gdpr", "ccpa", "vcdpa", "cpa", "ctdpa", "lgpd", "other")

    def test_vocabulary_matches_the_models(self) -> None:
        # clocks.py stays free of SQLAlchemy, so it keeps its own copy of both lists.
        assert REGIMES == models.REGIMES
        assert REQUEST_TYPES == models.REQUEST_TYPES

    @pytest.mark.parametrize(
        ("regime", "expected"),
        [
            ("gdpr", (None, 1, None, 2, None, False, None, None)),
            ("uk_gdpr", (None, 1, None, 2, None, True, None, None)),
            ("ccpa", (45, None, 45, None, 10, False, 15, None)),
            ("vcdpa", (45, None, 45, None, None, False, None, None)),
            ("cpa", (45, None, 45, None, None, False, 15, None)),
            ("ctdpa", (45, None, 45, None, None, False, None, None)),
            ("lgpd", (15, None, None, None, None, False, None, LGPD_BY_TYPE)),
            ("other", (30, None, 30, None, None, False, None, None)),
        ],
    )
    def test_figures(self, regime: str, expected: tuple[Any, ...]) -> None:
        assert dataclasses.astuple(DEFAULT_CLOCKS[regime]) == expected

    def test_defaults_are_read_only(self) -> None:
        with pytest.raises(TypeError):
            DEFAULT_CLOCKS["gdpr"] = DEFAULT_CLOCKS["other"]  # type: ignore[index]
        with pytest.raises(dataclasses.FrozenInstanceError):
            DEFAULT_CLOCKS["gdpr"].respond_months = 3  # type: ignore[misc]

    @pytest.mark.parametrize(("regime", "extendable"), [("gdpr", True), ("lgpd", False)])
    def test_extendable(self, regime: str, extendable: bool) -> None:
        assert DEFAULT_CLOCKS[regime].extendable is extendable


class TestRegimeClockValidation:
    BASE: dict[str, Any] = {
        "respond_days": 30,
        "respond_months": None,
        "extension_days": None,
        "extension_months": None,
        "acknowledge_business_days": None,
        "pauses_for_verification": False,
    }

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"respond_days": None}, "exactly one of respond_days and respond_months"),
            ({"respond_months": 1}, "exactly one of respond_days and respond_months"),
            (
                {"extension_days": 10, "extension_months": 1},
                "at most one of extension_days and extension_months",
            ),
            ({"respond_days": 0}, "respond_days must be null or a whole number from 1"),
            ({"respond_days": -5}, "respond_days must be null"),
            ({"respond_days": 4000}, "respond_days must be null"),
            ({"respond_days": 1.5}, "respond_days must be null"),
            ({"respond_days": "30"}, "respond_days must be null"),
            ({"respond_days": True}, "respond_days must be null"),
            ({"extension_months": 121}, "extension_months must be null or a whole number"),
            ({"acknowledge_business_days": 0}, "acknowledge_business_days must be null"),
            ({"opt_out_business_days": -1}, "opt_out_business_days must be null"),
            ({"pauses_for_verification": 1}, "pauses_for_verification must be true or false"),
            ({"pauses_for_verification": None}, "pauses_for_verification must be true"),
        ],
    )
    def test_refused(self, changes: dict[str, Any], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            RegimeClock(**{**self.BASE, **changes})

    def test_accepted(self) -> None:
        clock = RegimeClock(**{**self.BASE, "extension_months": 2, "opt_out_business_days": 15})
        assert clock.extension_months == 2
        assert clock.opt_out_business_days == 15


class TestAddMonths:
    @pytest.mark.parametrize(
        ("start", "n", "expected"),
        [
            (at(2026, 1, 31), 1, at(2026, 2, 28)),
            (at(2028, 1, 31), 1, at(2028, 2, 29)),
            (at(2026, 1, 15), 1, at(2026, 2, 15)),
            (at(2026, 3, 31), 1, at(2026, 4, 30)),
            (at(2026, 12, 31), 2, at(2027, 2, 28)),
            (at(2026, 11, 30), 3, at(2027, 2, 28)),
            (at(2026, 5, 5), 0, at(2026, 5, 5)),
        ],
    )
    def test_clamps_to_the_month_end(self, start: datetime, n: int, expected: datetime) -> None:
        assert add_months(start, n) == expected

    def test_negative_refused(self) -> None:
        with pytest.raises(ValueError):
            add_months(at(2026, 1, 31), -1)


class TestAddBusinessDays:
    @pytest.mark.parametrize(
        ("start", "n", "holidays", "expected"),
        [
            # Thursday: Friday, then the weekend is skipped.
            (at(2026, 11, 19), 1, frozenset(), at(2026, 11, 20)),
            (at(2026, 11, 19), 2, frozenset(), at(2026, 11, 23)),
            (at(2026, 11, 19), 10, frozenset(), at(2026, 12, 3)),
            # Thanksgiving and the day after are skipped too.
            (at(2026, 11, 19), 10, THANKSGIVING_2026, at(2026, 12, 7)),
            # Received on a Saturday or a Sunday: day 1 is the Monday.
            (at(2026, 11, 21), 1, frozenset(), at(2026, 11, 23)),
            (at(2026, 11, 22), 1, frozenset(), at(2026, 11, 23)),
            # Received on a holiday: the holiday itself never counts.
            (at(2026, 11, 26), 1, THANKSGIVING_2026, at(2026, 11, 30)),
            (at(2026, 12, 18), 10, YEAR_END_2026, at(2027, 1, 5)),
            (at(2026, 11, 21), 0, frozenset(), at(2026, 11, 21)),
        ],
    )
    def test_skips_weekends_and_holidays(
        self, start: datetime, n: int, holidays: frozenset[date], expected: datetime
    ) -> None:
        assert add_business_days(start, n, holidays) == expected

    @pytest.mark.parametrize("tz", [UTC, timezone(timedelta(hours=-8)), None])
    def test_keeps_tzinfo_and_time_of_day(self, tz: timezone | None) -> None:
        start = datetime(2026, 11, 20, 23, 59, 58, 123, tzinfo=tz)
        end = add_business_days(start, 1)
        assert end == datetime(2026, 11, 23, 23, 59, 58, 123, tzinfo=tz)
        assert end.tzinfo is tz

    @pytest.mark.parametrize("n", [-1, 1.5, True])
    def test_bad_counts_refused(self, n: Any) -> None:
        with pytest.raises(ValueError, match="non-negative whole number"):
            add_business_days(at(2026, 11, 19), n)


class TestDeadlines:
    @pytest.mark.parametrize(
        ("regime", "request_type", "received_at", "holidays", "expected"),
        [
            # GDPR: one calendar month; 31 January → last day of February.
            ("gdpr", "access", at(2026, 1, 31), frozenset(), Deadlines(None, at(2026, 2, 28))),
            ("gdpr", "erasure", at(2028, 1, 31), frozenset(), Deadlines(None, at(2028, 2, 29))),
            ("gdpr", "access", at(2026, 3, 3), frozenset(), Deadlines(None, at(2026, 4, 3))),
            ("uk_gdpr", "access", at(2024, 1, 31), frozenset(), Deadlines(None, at(2024, 2, 29))),
            # GDPR has no separate opt-out clock: the ordinary month.
            ("gdpr", "opt_out", at(2026, 1, 31), frozenset(), Deadlines(None, at(2026, 2, 28))),
            # CCPA: 45 calendar days, receipt confirmed within 10 business days.
            (
                "ccpa",
                "access",
                at(2026, 1, 31),
                frozenset(),
                Deadlines(at(2026, 2, 13), at(2026, 3, 17)),
            ),
            (
                "ccpa",
                "erasure",
                at(2026, 11, 19),
                frozenset(),
                Deadlines(at(2026, 12, 3), at(2027, 1, 3)),
            ),
            (
                "ccpa",
                "erasure",
                at(2026, 11, 19),
                THANKSGIVING_2026,
                Deadlines(at(2026, 12, 7), at(2027, 1, 3)),
            ),
            (
                "ccpa",
                "access",
                at(2026, 12, 18),
                YEAR_END_2026,
                Deadlines(at(2027, 1, 5), at(2027, 2, 1)),
            ),
            # CCPA and CPA opt-outs: 15 business days, nothing to acknowledge.
            (
                "ccpa",
                "opt_out",
                at(2026, 11, 19),
                frozenset(),
                Deadlines(None, at(2026, 12, 10)),
            ),
            (
                "ccpa",
                "opt_out",
                at(2026, 11, 19),
                THANKSGIVING_2026,
                Deadlines(None, at(2026, 12, 14)),
            ),
            ("cpa", "opt_out", at(2026, 11, 19), frozenset(), Deadlines(None, at(2026, 12, 10))),
            ("cpa", "access", at(2026, 1, 31), frozenset(), Deadlines(None, at(2026, 3, 17))),
            # Virginia has no opt-out clock of its own: 45 days.
            ("vcdpa", "opt_out", at(2026, 1, 31), frozenset(), Deadlines(None, at(2026, 3, 17))),
            ("ctdpa", "access", at(2026, 1, 31), frozenset(), Deadlines(None, at(2026, 3, 17))),
            ("lgpd", "access", at(2026, 1, 31), frozenset(), Deadlines(None, at(2026, 2, 15))),
            ("other", "access", at(2026, 1, 31), frozenset(), Deadlines(None, at(2026, 3, 2))),
        ],
    )
    def test_by_regime(
        self,
        regime: str,
        request_type: str,
        received_at: datetime,
        holidays: frozenset[date],
        expected: Deadlines,
    ) -> None:
        assert deadlines(regime, request_type, received_at, holidays=holidays) == expected

    @pytest.mark.parametrize("request_type", REQUEST_TYPES)
    def test_every_type_has_a_due_date(self, request_type: str) -> None:
        for regime in REGIMES:
            assert deadlines(regime, request_type, at(2026, 1, 31)).due_at > at(2026, 1, 31)

    def test_uses_the_given_clocks(self) -> None:
        clocks = clocks_from_overrides({"gdpr": {"respond_days": 30}})
        result = deadlines("gdpr", "access", at(2026, 1, 31), clocks)
        assert result == Deadlines(None, at(2026, 3, 2))

    def test_unknown_regime(self) -> None:
        with pytest.raises(ValueError, match="unknown regime 'pipeda'"):
            deadlines("pipeda", "access", at(2026, 1, 31))

    def test_unknown_request_type(self) -> None:
        with pytest.raises(ValueError, match="unknown request type 'deletion'"):
            deadlines("gdpr", "deletion", at(2026, 1, 31))

    def test_clock_for(self) -> None:
        assert clock_for("ccpa") is DEFAULT_CLOCKS["ccpa"]
        with pytest.raises(ValueError, match="unknown regime"):
            clock_for("GDPR")


class TestExtendedDue:
    @pytest.mark.parametrize(
        ("regime", "due_at", "expected"),
        [
            ("gdpr", at(2026, 3, 3), at(2026, 5, 3)),
            # From the clamped due date: 31 Jan → 28 Feb → 28 Apr (the safe side).
            ("gdpr", at(2026, 2, 28), at(2026, 4, 28)),
            ("gdpr", at(2026, 12, 31), at(2027, 2, 28)),
            ("uk_gdpr", at(2026, 3, 3), at(2026, 5, 3)),
            ("ccpa", at(2026, 3, 17), at(2026, 5, 1)),
            ("vcdpa", at(2026, 3, 17), at(2026, 5, 1)),
            ("cpa", at(2026, 3, 17), at(2026, 5, 1)),
            ("ctdpa", at(2026, 3, 17), at(2026, 5, 1)),
            ("other", at(2026, 3, 2), at(2026, 4, 1)),
        ],
    )
    def test_by_regime(self, regime: str, due_at: datetime, expected: datetime) -> None:
        assert extended_due(regime, due_at) == expected

    def test_ccpa_totals_ninety_days(self) -> None:
        received = at(2026, 1, 31)
        due = deadlines("ccpa", "access", received).due_at
        assert extended_due("ccpa", due) - received == timedelta(days=90)

    def test_lgpd_refused(self) -> None:
        with pytest.raises(ExtensionNotAllowed, match="requests under lgpd cannot be extended"):
            extended_due("lgpd", at(2026, 2, 15))

    @pytest.mark.parametrize("regime", ["ccpa", "cpa"])
    def test_opt_out_on_its_own_clock_refused(self, regime: str) -> None:
        with pytest.raises(ExtensionNotAllowed, match=f"an opt-out under {regime}"):
            extended_due(regime, at(2026, 12, 10), request_type="opt_out")

    def test_opt_out_on_the_ordinary_clock_extends(self) -> None:
        assert extended_due("gdpr", at(2026, 3, 3), request_type="opt_out") == at(2026, 5, 3)
        assert extended_due("ccpa", at(2026, 3, 17), request_type="access") == at(2026, 5, 1)

    def test_extension_not_allowed_is_a_value_error(self) -> None:
        assert issubclass(ExtensionNotAllowed, ValueError)

    def test_uses_the_given_clocks(self) -> None:
        clocks = clocks_from_overrides({"lgpd": {"extension_days": 15}})
        assert extended_due("lgpd", at(2026, 2, 15), clocks) == at(2026, 3, 2)
        refused = clocks_from_overrides({"gdpr": {"extension_months": None}})
        with pytest.raises(ExtensionNotAllowed):
            extended_due("gdpr", at(2026, 2, 28), refused)


class TestPausedDue:
    @pytest.mark.parametrize(
        ("due_at", "paused_from", "resumed_at", "expected"),
        [
            # Waiting nine days for identity proof moves the due date nine days.
            (at(2026, 2, 28), at(2026, 2, 1), at(2026, 2, 10), at(2026, 3, 9)),
            # Partial days count to the second.
            (
                at(2026, 2, 28),
                at(2026, 2, 1, 9, 30),
                at(2026, 2, 2, 15, 45),
                at(2026, 3, 1, 15, 45),
            ),
            (at(2026, 2, 28), at(2026, 2, 1), at(2026, 2, 1), at(2026, 2, 28)),
        ],
    )
    def test_shifts_by_the_pause(
        self, due_at: datetime, paused_from: datetime, resumed_at: datetime, expected: datetime
    ) -> None:
        assert paused_due(due_at, paused_from, resumed_at) == expected

    def test_two_pauses_add_up(self) -> None:
        due = deadlines("uk_gdpr", "access", at(2026, 1, 31)).due_at
        due = paused_due(due, at(2026, 2, 1), at(2026, 2, 4))
        due = paused_due(due, at(2026, 2, 10), at(2026, 2, 12))
        assert due == at(2026, 3, 5)
        assert DEFAULT_CLOCKS["uk_gdpr"].pauses_for_verification is True

    def test_resumed_before_paused_refused(self) -> None:
        with pytest.raises(ValueError, match="resumed_at must not be before paused_from"):
            paused_due(at(2026, 2, 28), at(2026, 2, 10), at(2026, 2, 1))


class TestClocksFromOverrides:
    def test_no_overrides_gives_the_defaults(self) -> None:
        clocks = clocks_from_overrides({})
        assert clocks == dict(DEFAULT_CLOCKS)
        assert isinstance(clocks, dict)

    def test_partial_override_keeps_the_other_fields_and_regimes(self) -> None:
        clocks = clocks_from_overrides({"ccpa": {"acknowledge_business_days": 5}})
        assert clocks["ccpa"] == dataclasses.replace(
            DEFAULT_CLOCKS["ccpa"], acknowledge_business_days=5
        )
        assert {k: v for k, v in clocks.items() if k != "ccpa"} == {
            k: v for k, v in DEFAULT_CLOCKS.items() if k != "ccpa"
        }

    def test_defaults_are_not_changed(self) -> None:
        clocks_from_overrides({"other": {"respond_days": 10}})
        assert DEFAULT_CLOCKS["other"].respond_days == 30

    @pytest.mark.parametrize(
        ("regime", "changes", "expected"),
        [
            # Naming one side of a pair with a value clears the other side.
            ("gdpr", {"respond_days": 30}, {"respond_days": 30, "respond_months": None}),
            ("other", {"respond_months": 1}, {"respond_days": None, "respond_months": 1}),
            ("gdpr", {"extension_days": 60}, {"extension_days": 60, "extension_months": None}),
            ("ccpa", {"extension_months": 1}, {"extension_days": None, "extension_months": 1}),
            # Clearing one side leaves the other alone.
            ("gdpr", {"extension_days": None}, {"extension_days": None, "extension_months": 2}),
            (
                "gdpr",
                {"extension_months": None},
                {"extension_days": None, "extension_months": None},
            ),
            ("lgpd", {"extension_days": 15}, {"extension_days": 15, "extension_months": None}),
            ("gdpr", {"pauses_for_verification": True}, {"pauses_for_verification": True}),
            ("vcdpa", {"opt_out_business_days": 15}, {"opt_out_business_days": 15}),
            ("ccpa", {"opt_out_business_days": None}, {"opt_out_business_days": None}),
            (
                "gdpr",
                {"respond_days": 30, "respond_months": None, "acknowledge_business_days": 3},
                {"respond_days": 30, "respond_months": None, "acknowledge_business_days": 3},
            ),
        ],
    )
    def test_merges(self, regime: str, changes: dict[str, Any], expected: dict[str, Any]) -> None:
        clock = clocks_from_overrides({regime: changes})[regime]
        assert {name: getattr(clock, name) for name in expected} == expected

    @pytest.mark.parametrize(
        ("overrides", "message"),
        [
            ({"pipeda": {"respond_days": 30}}, "unknown regime 'pipeda' in regime clock"),
            ({"GDPR": {}}, "unknown regime 'GDPR'"),
            (
                {"gdpr": {"respond_weeks": 4}},
                "unknown field\\(s\\) respond_weeks in the regime clock override for 'gdpr'",
            ),
            ({"gdpr": {"respond_days": 30, "respond_months": 1}}, "exactly one of respond_days"),
            ({"gdpr": {"respond_months": None}}, "exactly one of respond_days"),
            ({"ccpa": {"respond_days": 0}}, "override for 'ccpa': respond_days must be null"),
            ({"ccpa": {"respond_days": "45"}}, "respond_days must be null or a whole number"),
            ({"uk_gdpr": {"pauses_for_verification": "yes"}}, "must be true or false"),
            ({"gdpr": 30}, "override for 'gdpr' must be an object"),
            ({"gdpr": [("respond_days", 30)]}, "override for 'gdpr' must be an object"),
        ],
    )
    def test_refused(self, overrides: dict[str, Any], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            clocks_from_overrides(overrides)

    def test_not_an_object_refused(self) -> None:
        with pytest.raises(ValueError, match="must be an object keyed by regime"):
            clocks_from_overrides([("gdpr", {})])  # type: ignore[arg-type]

    def test_merges_onto_a_given_base(self) -> None:
        base = clocks_from_overrides({"other": {"respond_days": 20}})
        clocks = clocks_from_overrides({"other": {"extension_days": 10}}, base)
        assert (clocks["other"].respond_days, clocks["other"].extension_days) == (20, 10)
