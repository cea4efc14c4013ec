from __future__ import annotations

import itertools
import re

import pytest
from sqlalchemy import CheckConstraint

import app.requests.models  # noqa: F401  (registers the tables)
from app.core.db import Base
from app.requests.state import (
    REQUEST_TERMINAL,
    REQUEST_TRANSITIONS,
    SCOPE_DONE,
    SCOPE_TRANSITIONS,
    InvalidTransition,
    RequestEvent,
    RequestStatus,
    ScopeEvent,
    ScopeStatus,
    allowed_request_events,
    allowed_scope_events,
    request_can_complete,
    request_is_terminal,
    request_next,
    scope_is_done,
    scope_next,
)

R = RequestStatus
RE = RequestEvent
S = ScopeStatus
SE = ScopeEvent

# Written out again here, independently of the module, from the brief and DESIGN.md: a
# change to the module's table must be made on purpose in both places.
EXPECTED_REQUEST = {
    (R.pending_verification, RE.verified): R.in_progress,
    (R.pending_verification, RE.denied): R.denied,
    (R.pending_verification, RE.failed_verification): R.denied,
    (R.pending_verification, RE.cancelled): R.cancelled,
    (R.in_progress, RE.denied): R.denied,
    (R.in_progress, RE.cancelled): R.cancelled,
    (R.in_progress, RE.scopes_done): R.completed,
}
EXPECTED_SCOPE = {
    (S.awaiting_controller, SE.approved): S.in_progress,
    (S.awaiting_controller, SE.declined): S.declined,
    (S.awaiting_controller, SE.handled_by_controller): S.handled_by_controller,
    (S.awaiting_controller, SE.cancelled): S.declined,
    (S.in_progress, SE.handled_by_controller): S.handled_by_controller,
    (S.in_progress, SE.tasks_done): S.completed,
    (S.in_progress, SE.task_failed): S.failed,
    (S.in_progress, SE.cancelled): S.declined,
    (S.failed, SE.retried): S.in_progress,
    (S.failed, SE.handled_by_controller): S.handled_by_controller,
    (S.failed, SE.cancelled): S.declined,
}

REQUEST_PAIRS = list(itertools.product(RequestStatus, RequestEvent))
SCOPE_PAIRS = list(itertools.product(ScopeStatus, ScopeEvent))


def pair_id(pair: tuple[object, object]) -> str:
    return f"{pair[0]}+{pair[1]}"


class TestVocabulary:
    def test_request_statuses_match_the_api(self) -> None:
        assert [s.value for s in RequestStatus] == [
            "pending_verification",
            "in_progress",
            "completed",
            "denied",
            "cancelled",
        ]

    def test_scope_statuses_match_the_api(self) -> None:
        assert [s.value for s in ScopeStatus] == [
            "awaiting_controller",
            "in_progress",
            "completed",
            "declined",
            "handled_by_controller",
            "failed",
        ]

    def test_request_events(self) -> None:
        assert {e.value for e in RequestEvent} == {
            "verified",
            "denied",
            "cancelled",
            "scopes_done",
            "failed_verification",
        }

    def test_scope_events(self) -> None:
        assert {e.value for e in ScopeEvent} == {
            "approved",
            "declined",
            "handled_by_controller",
            "tasks_done",
            "task_failed",
            "retried",
            "cancelled",
        }

    @pytest.mark.parametrize(
        ("table", "statuses"),
        [("subject_requests", RequestStatus), ("request_scopes", ScopeStatus)],
    )
    def test_statuses_match_the_database_constraint(
        self, table: str, statuses: type[RequestStatus] | type[ScopeStatus]
    ) -> None:
        sql = next(
            str(c.sqltext)
            for c in Base.metadata.tables[table].constraints
            if isinstance(c, CheckConstraint) and "status IN" in str(c.sqltext)
        )
        assert set(re.findall(r"'(\w+)'", sql)) == {s.value for s in statuses}

    def test_tables_are_exactly_the_expected_ones(self) -> None:
        assert dict(REQUEST_TRANSITIONS) == EXPECTED_REQUEST
        assert dict(SCOPE_TRANSITIONS) == EXPECTED_SCOPE

    def test_tables_are_read_only(self) -> None:
        with pytest.raises(TypeError):
            REQUEST_TRANSITIONS[(R.completed, RE.verified)] = R.in_progress  # type: ignore[index]
        with pytest.raises(TypeError):
            SCOPE_TRANSITIONS[(S.completed, SE.retried)] = S.in_progress  # type: ignore[index]


class TestRequestNext:
    @pytest.mark.parametrize("pair", REQUEST_PAIRS, ids=pair_id)
    def test_every_status_and_event(self, pair: tuple[RequestStatus, RequestEvent]) -> None:
        status, event = pair
        expected = EXPECTED_REQUEST.get(pair)
        if expected is None:
            with pytest.raises(InvalidTransition) as info:
                request_next(status, event)
            assert info.value.current is status
            assert info.value.event is event
        else:
            assert request_next(status, event) is expected

    @pytest.mark.parametrize("pair", list(EXPECTED_REQUEST), ids=pair_id)
    def test_accepts_status_and_event_as_text(
        self, pair: tuple[RequestStatus, RequestEvent]
    ) -> None:
        status, event = pair
        result = request_next(status.value, RequestEvent(event.value))
        assert result is EXPECTED_REQUEST[pair]
        assert isinstance(result, RequestStatus)

    def test_unknown_status_is_a_plain_value_error(self) -> None:
        with pytest.raises(ValueError) as info:
            request_next("shredded", RE.verified)
        assert not isinstance(info.value, InvalidTransition)

    def test_scope_status_text_is_not_a_request_status(self) -> None:
        with pytest.raises(ValueError):
            request_next("awaiting_controller", RE.verified)

    def test_message_names_status_event_and_allowed_events(self) -> None:
        with pytest.raises(InvalidTransition) as info:
            request_next(R.pending_verification, RE.scopes_done)
        assert str(info.value) == (
            "a request in status 'pending_verification' cannot take the event 'scopes_done' "
            "(allowed events: verified, denied, cancelled, failed_verification)"
        )

    def test_message_for_a_final_status(self) -> None:
        with pytest.raises(InvalidTransition) as info:
            request_next(R.completed, RE.cancelled)
        assert str(info.value) == (
            "a request in status 'completed' cannot take the event 'cancelled' (it is final)"
        )

    def test_invalid_transition_is_a_value_error(self) -> None:
        assert issubclass(InvalidTransition, ValueError)

    def test_full_life(self) -> None:
        status = R.pending_verification
        for event in (RE.verified, RE.scopes_done):
            status = request_next(status, event)
        assert status is R.completed


class TestRequestTerminal:
    def test_terminal_statuses(self) -> None:
        assert frozenset({R.completed, R.denied, R.cancelled}) == REQUEST_TERMINAL

    @pytest.mark.parametrize("status", list(RequestStatus))
    def test_terminal_statuses_refuse_every_event(self, status: RequestStatus) -> None:
        refused = [e for e in RequestEvent if (status, e) not in EXPECTED_REQUEST]
        assert request_is_terminal(status) is (refused == list(RequestEvent))
        assert request_is_terminal(status.value) is request_is_terminal(status)

    @pytest.mark.parametrize(
        ("status", "allowed"),
        [
            (
                R.pending_verification,
                [RE.verified, RE.denied, RE.cancelled, RE.failed_verification],
            ),
            (R.in_progress, [RE.denied, RE.cancelled, RE.scopes_done]),
            (R.completed, []),
            (R.denied, []),
            (R.cancelled, []),
        ],
    )
    def test_allowed_events(self, status: RequestStatus, allowed: list[RequestEvent]) -> None:
        assert allowed_request_events(status) == allowed
        assert allowed_request_events(status.value) == allowed

    def test_every_status_is_reachable_from_pending_verification(self) -> None:
        reached = {R.pending_verification}
        frontier = [R.pending_verification]
        while frontier:
            status = frontier.pop()
            for event in allowed_request_events(status):
                nxt = request_next(status, event)
                if nxt not in reached:
                    reached.add(nxt)
                    frontier.append(nxt)
        assert reached == set(RequestStatus)


class TestScopeNext:
    @pytest.mark.parametrize("pair", SCOPE_PAIRS, ids=pair_id)
    def test_every_status_and_event(self, pair: tuple[ScopeStatus, ScopeEvent]) -> None:
        status, event = pair
        expected = EXPECTED_SCOPE.get(pair)
        if expected is None:
            with pytest.raises(InvalidTransition) as info:
                scope_next(status, event)
            assert info.value.current is status
            assert info.value.event is event
        else:
            assert scope_next(status, event) is expected

    @pytest.mark.parametrize("pair", list(EXPECTED_SCOPE), ids=pair_id)
    def test_accepts_status_as_text(self, pair: tuple[ScopeStatus, ScopeEvent]) -> None:
        status, event = pair
        result = scope_next(status.value, event)
        assert result is EXPECTED_SCOPE[pair]
        assert isinstance(result, ScopeStatus)

    def test_unknown_status_is_a_plain_value_error(self) -> None:
        with pytest.raises(ValueError) as info:
            scope_next("pending_verification", SE.approved)
        assert not isinstance(info.value, InvalidTransition)

    def test_message_names_a_scope(self) -> None:
        with pytest.raises(InvalidTransition) as info:
            scope_next(S.failed, SE.tasks_done)
        assert str(info.value) == (
            "a scope in status 'failed' cannot take the event 'tasks_done' "
            "(allowed events: handled_by_controller, retried, cancelled)"
        )

    def test_message_for_a_done_scope(self) -> None:
        with pytest.raises(InvalidTransition) as info:
            scope_next(S.declined, SE.approved)
        assert str(info.value).endswith("(it is final)")

    @pytest.mark.parametrize("status", sorted(SCOPE_DONE))
    def test_done_scopes_refuse_every_event(self, status: ScopeStatus) -> None:
        assert allowed_scope_events(status) == []
        for event in ScopeEvent:
            with pytest.raises(InvalidTransition):
                scope_next(status, event)

    @pytest.mark.parametrize(
        ("start", "events", "end"),
        [
            (S.awaiting_controller, [SE.approved, SE.tasks_done], S.completed),
            (S.awaiting_controller, [SE.declined], S.declined),
            (
                S.awaiting_controller,
                [SE.approved, SE.task_failed, SE.retried, SE.tasks_done],
                S.completed,
            ),
            (
                S.awaiting_controller,
                [SE.approved, SE.task_failed, SE.handled_by_controller],
                S.handled_by_controller,
            ),
            (S.awaiting_controller, [SE.approved, SE.task_failed, SE.cancelled], S.declined),
            (S.awaiting_controller, [SE.cancelled], S.declined),
        ],
    )
    def test_lives(self, start: ScopeStatus, events: list[ScopeEvent], end: ScopeStatus) -> None:
        status = start
        for event in events:
            status = scope_next(status, event)
        assert status is end


class TestScopeIsDone:
    @pytest.mark.parametrize(
        ("status", "done"),
        [
            (S.awaiting_controller, False),
            (S.in_progress, False),
            (S.completed, True),
            (S.declined, True),
            (S.handled_by_controller, True),
            (S.failed, False),
        ],
    )
    def test_done_statuses(self, status: ScopeStatus, done: bool) -> None:
        assert scope_is_done(status) is done
        assert scope_is_done(status.value) is done

    def test_unknown_status(self) -> None:
        with pytest.raises(ValueError):
            scope_is_done("cancelled")


class TestRequestCanComplete:
    @pytest.mark.parametrize(
        ("statuses", "can"),
        [
            ([S.completed], True),
            ([S.completed, S.declined, S.handled_by_controller], True),
            (["completed", "declined"], True),
            ([S.completed, S.failed], False),
            ([S.failed], False),
            ([S.completed, S.in_progress], False),
            ([S.awaiting_controller], False),
            # Nobody holds the subject's data: nothing to wait for.
            ([], True),
        ],
    )
    def test_all_scopes_done(self, statuses: list[ScopeStatus | str], can: bool) -> None:
        assert request_can_complete(statuses) is can

    def test_accepts_a_generator(self) -> None:
        assert request_can_complete(s for s in (S.completed, S.declined)) is True
        assert request_can_complete(s for s in (S.completed, S.failed)) is False
