"""Response clocks of subject requests, by regime (reference/deadlines.md).

Pure data and functions. The figures are defaults that counsel may change without a
release: `clocks_from_overrides` merges the SPIX_DSR_REGIME_CLOCKS setting onto them.

Conventions:
- A due date keeps the time of day of its start (received 31 January 10:00 → due 28 February
  10:00), never the end of that day: the earlier instant errs on the side of the subject.
- Business days are judged on the calendar date of the datetime as given, so pass
  datetimes in the zone whose weekends and holidays count (UTC unless told otherwise).
- Month arithmetic clamps to the month's end (`add_period` from the retention policy).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from types import MappingProxyType
from typing import Any

from app.retention.policy import Period, add_period

REGIMES: tuple[str, ...] = ("gdpr", "uk_gdpr", "ccpa", "vcdpa", "cpa", "ctdpa", "lgpd", "other")
REQUEST_TYPES: tuple[str, ...] = (
    "access",
    "portability",
    "rectification",
    "erasure",
    "restriction",
    "objection",
    "opt_out",
)
OPT_OUT = "opt_out"

_INT_FIELDS = (
    "respond_days",
    "respond_months",
    "extension_days",
    "extension_months",
    "acknowledge_business_days",
    "opt_out_business_days",
)
# Beyond any real statutory clock; keeps the arithmetic far from datetime's limits.
_MAX_DAYS = 3660
_MAX_MONTHS = 120


@dataclass(frozen=True)
class RegimeClock:
    # Exactly one of respond_days / respond_months; at most one of the extension pair.
    respond_days: int | None
    respond_months: int | None
    extension_days: int | None
    extension_months: int | None
    acknowledge_business_days: int | None
    pauses_for_verification: bool
    # Opt-outs (of sale or sharing) run on their own short clock where this is set, and
    # need no verification; elsewhere an opt-out takes the regime's ordinary clock.
    opt_out_business_days: int | None = None
    # Days per request type where a type has a clock of its own (LGPD Art. 19: access);
    # the other types take respond_days / respond_months.
    respond_days_by_type: Mapping[str, int] | None = None

    def __post_init__(self) -> None:
        if self.respond_days_by_type is not None:
            if not isinstance(self.respond_days_by_type, Mapping):
                raise ValueError("respond_days_by_type must be null or an object by request type")
            for kind, days in self.respond_days_by_type.items():
                if kind not in REQUEST_TYPES:
                    raise ValueError(f"unknown request type '{kind}' in respond_days_by_type")
                if isinstance(days, bool) or not isinstance(days, int) or not 0 < days <= _MAX_DAYS:
                    raise ValueError(
                        f"respond_days_by_type.{kind} must be a whole number from 1 to {_MAX_DAYS}"
                    )
            object.__setattr__(self, "respond_days_by_type", dict(self.respond_days_by_type))
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            limit = _MAX_MONTHS if name.endswith("months") else _MAX_DAYS
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= limit:
                raise ValueError(f"{name} must be null or a whole number from 1 to {limit}")
        if not isinstance(self.pauses_for_verification, bool):
            raise ValueError("pauses_for_verification must be true or false")
        if (self.respond_days is None) == (self.respond_months is None):
            raise ValueError("set exactly one of respond_days and respond_months")
        if self.extension_days is not None and self.extension_months is not None:
            raise ValueError("set at most one of extension_days and extension_months")

    @property
    def extendable(self) -> bool:
        return self.extension_days is not None or self.extension_months is not None


DEFAULT_CLOCKS: Mapping[str, RegimeClock] = MappingProxyType(
    {
        # Art. 12(3): one calendar month, two more when needed.
        "gdpr": RegimeClock(
            respond_days=None,
            respond_months=1,
            extension_days=None,
            extension_months=2,
            acknowledge_business_days=None,
            pauses_for_verification=False,
        ),
        # Art. 12A: the clock stops while waiting for identity proof.
        "uk_gdpr": RegimeClock(
            respond_days=None,
            respond_months=1,
            extension_days=None,
            extension_months=2,
            acknowledge_business_days=None,
            pauses_for_verification=True,
        ),
        # Civ. Code 1798.130, 11 CCR 7021 (45 + 45 days, receipt within 10 business days),
        # 11 CCR 7026 (opt-out within 15 business days).
        "ccpa": RegimeClock(
            respond_days=45,
            respond_months=None,
            extension_days=45,
            extension_months=None,
            acknowledge_business_days=10,
            pauses_for_verification=False,
            opt_out_business_days=15,
        ),
        "vcdpa": RegimeClock(
            respond_days=45,
            respond_months=None,
            extension_days=45,
            extension_months=None,
            acknowledge_business_days=None,
            pauses_for_verification=False,
        ),
        "cpa": RegimeClock(
            respond_days=45,
            respond_months=None,
            extension_days=45,
            extension_months=None,
            acknowledge_business_days=None,
            pauses_for_verification=False,
            opt_out_business_days=15,
        ),
        "ctdpa": RegimeClock(
            respond_days=45,
            respond_months=None,
            extension_days=45,
            extension_months=None,
            acknowledge_business_days=None,
            pauses_for_verification=False,
        ),
        # LGPD Art. 19(II): the full access statement within 15 days; no extension. The
        # other rights follow the regulator's rules (Art. 18 §5), which set no figure yet:
        # each type is named so counsel can set it, at the same 15 days until then.
        "lgpd": RegimeClock(
            respond_days=15,
            respond_months=None,
            extension_days=None,
            extension_months=None,
            acknowledge_business_days=None,
            pauses_for_verification=False,
            respond_days_by_type={
                "access": 15,
                "portability": 15,
                "rectification": 15,
                "erasure": 15,
                "restriction": 15,
                "objection": 15,
                "opt_out": 15,
            },
        ),
        "other": RegimeClock(
            respond_days=30,
            respond_months=None,
            extension_days=30,
            extension_months=None,
            acknowledge_business_days=None,
            pauses_for_verification=False,
        ),
    }
)


class ExtensionNotAllowed(ValueError):
    pass


@dataclass(frozen=True)
class Deadlines:
    acknowledge_by: datetime | None
    due_at: datetime


def add_months(ts: datetime, n: int) -> datetime:
    return add_period(ts, Period(months=n))


def add_business_days(ts: datetime, n: int, holidays: frozenset[date] = frozenset()) -> datetime:
    # Day 1 is the first business day after ts's date, whatever day ts itself falls on.
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError("n must be a non-negative whole number of business days")
    current = ts
    remaining = n
    while remaining:
        current += timedelta(days=1)
        if current.weekday() < 5 and current.date() not in holidays:
            remaining -= 1
    return current


def clock_for(regime: str, clocks: Mapping[str, RegimeClock] = DEFAULT_CLOCKS) -> RegimeClock:
    try:
        return clocks[regime]
    except KeyError:
        raise ValueError(f"unknown regime '{regime}'") from None


def _has_opt_out_clock(clock: RegimeClock, request_type: str | None) -> bool:
    return request_type == OPT_OUT and clock.opt_out_business_days is not None


def deadlines(
    regime: str,
    request_type: str,
    received_at: datetime,
    clocks: Mapping[str, RegimeClock] = DEFAULT_CLOCKS,
    holidays: frozenset[date] = frozenset(),
) -> Deadlines:
    clock = clock_for(regime, clocks)
    if request_type not in REQUEST_TYPES:
        raise ValueError(f"unknown request type '{request_type}'")
    if _has_opt_out_clock(clock, request_type):
        assert clock.opt_out_business_days is not None
        # 11 CCR 7026 asks for action, not a receipt: an opt-out has no acknowledgement.
        return Deadlines(
            acknowledge_by=None,
            due_at=add_business_days(received_at, clock.opt_out_business_days, holidays),
        )
    by_type = clock.respond_days_by_type or {}
    if request_type in by_type:
        due_at = received_at + timedelta(days=by_type[request_type])
    elif clock.respond_months is not None:
        due_at = add_months(received_at, clock.respond_months)
    else:
        assert clock.respond_days is not None
        due_at = received_at + timedelta(days=clock.respond_days)
    acknowledge_by = None
    if clock.acknowledge_business_days is not None:
        acknowledge_by = add_business_days(received_at, clock.acknowledge_business_days, holidays)
    return Deadlines(acknowledge_by=acknowledge_by, due_at=due_at)


def extended_due(
    regime: str,
    due_at: datetime,
    clocks: Mapping[str, RegimeClock] = DEFAULT_CLOCKS,
    *,
    request_type: str | None = None,
) -> datetime:
    # Counted from the current due date, so a pause already applied carries over. For month
    # clocks this can come a few days earlier than counting from receipt (31 Jan → 28 Feb
    # → 28 Apr, not 30 Apr): the safe side.
    clock = clock_for(regime, clocks)
    if _has_opt_out_clock(clock, request_type):
        raise ExtensionNotAllowed(f"an opt-out under {regime} cannot be extended")
    if clock.extension_months is not None:
        return add_months(due_at, clock.extension_months)
    if clock.extension_days is not None:
        return due_at + timedelta(days=clock.extension_days)
    raise ExtensionNotAllowed(f"requests under {regime} cannot be extended")


def paused_due(due_at: datetime, paused_from: datetime, resumed_at: datetime) -> datetime:
    if resumed_at < paused_from:
        raise ValueError("resumed_at must not be before paused_from")
    return due_at + (resumed_at - paused_from)


def resumed_due(
    regime: str,
    request_type: str,
    evidence_received_at: datetime,
    clocks: Mapping[str, RegimeClock] = DEFAULT_CLOCKS,
    holidays: frozenset[date] = frozenset(),
) -> datetime:
    """UK GDPR Art. 12A: the period begins again when the identity evidence arrives, so the
    due date is the regime's full period counted from that day (arrived 30 January → due
    28 February), not the old due date pushed back by the days the wait took."""
    return deadlines(regime, request_type, evidence_received_at, clocks, holidays).due_at


_PAIRS = (("respond_days", "respond_months"), ("extension_days", "extension_months"))
_FIELDS = frozenset(f.name for f in dataclasses.fields(RegimeClock))


def clocks_from_overrides(
    overrides: Mapping[str, Mapping[str, Any]],
    base: Mapping[str, RegimeClock] = DEFAULT_CLOCKS,
) -> dict[str, RegimeClock]:
    """Merge partial per-regime overrides (the SPIX_DSR_REGIME_CLOCKS JSON) onto `base`.

    Naming one side of a days/months pair with a value clears the other side unless the
    override names it too: `{"gdpr": {"respond_days": 30}}` means 30 days instead of a month.
    """
    if not isinstance(overrides, Mapping):
        raise ValueError("regime clock overrides must be an object keyed by regime")
    merged = dict(base)
    for regime, changes in overrides.items():
        if regime not in merged:
            raise ValueError(
                f"unknown regime '{regime}' in regime clock overrides "
                f"(known: {', '.join(sorted(merged))})"
            )
        if not isinstance(changes, Mapping):
            raise ValueError(f"regime clock override for '{regime}' must be an object")
        unknown = sorted(set(changes) - _FIELDS)
        if unknown:
            raise ValueError(
                f"unknown field(s) {', '.join(unknown)} in the regime clock override for "
                f"'{regime}' (known: {', '.join(sorted(_FIELDS))})"
            )
        values = dict(changes)
        by_type = values.get("respond_days_by_type")
        if isinstance(by_type, Mapping):
            # Merged by type: naming one type's days keeps the others' as they were.
            values["respond_days_by_type"] = {
                **(merged[regime].respond_days_by_type or {}),
                **by_type,
            }
        for days, months in _PAIRS:
            if values.get(days) is not None and months not in values:
                values[months] = None
            if values.get(months) is not None and days not in values:
                values[days] = None
        try:
            merged[regime] = dataclasses.replace(merged[regime], **values)
        except ValueError as exc:
            raise ValueError(f"regime clock override for '{regime}': {exc}") from None
    return merged
