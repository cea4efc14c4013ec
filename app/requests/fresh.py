"""Requests first written in the session's current transaction. Nothing committed can point
at such a request yet (a row pointing at it needs its row, which no other transaction sees),
so a commit hook that looks for rows pointing at the requests whose status changed need not
ask the database about a fresh request, unless this transaction wrote such a row itself
(`Pointers`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction, object_session

from app.requests.models import SubjectRequest

_FRESH = "requests_fresh"
_KEYS = [_FRESH]


def note_fresh(session: Session | AsyncSession, request_id: uuid.UUID) -> None:
    """A request this transaction wrote (flushed requests are noted on their own)."""
    session.info.setdefault(_FRESH, set()).add(request_id)


@event.listens_for(SubjectRequest, "after_insert")
def _written(_mapper: Any, _connection: Any, target: SubjectRequest) -> None:
    session = object_session(target)
    if session is not None:
        note_fresh(session, target.id)


class Pointers:
    """Rows of one model that point at a request through one column (a DRP exercise, an
    OpenDSR link): the requests this transaction pointed such rows at."""

    def __init__(self, model: type[Any], column: str) -> None:
        self.model = model
        self.column = column
        self.key = f"requests_pointed_at_by_{model.__tablename__}"
        _KEYS.append(self.key)
        event.listen(model, "after_insert", self._written)
        event.listen(model, "after_update", self._written)

    def _written(self, _mapper: Any, _connection: Any, target: Any) -> None:
        session = object_session(target)
        request_id = getattr(target, self.column)
        if session is not None and request_id is not None:
            session.info.setdefault(self.key, set()).add(request_id)

    def to_ask(self, session: Session, changed: Iterable[uuid.UUID]) -> list[uuid.UUID]:
        """Of these requests, the ones such a row may point at: all but the fresh requests
        this transaction pointed no such row at (written, or still to be flushed)."""
        fresh: set[uuid.UUID] = session.info.get(_FRESH, set())
        pointed: set[uuid.UUID] = set(session.info.get(self.key, ()))
        pointed.update(
            getattr(row, self.column)
            for row in (*session.new, *session.dirty)
            if isinstance(row, self.model)
        )
        return [r for r in changed if r not in fresh or r in pointed]


@event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction: SessionTransaction) -> None:
    # Only when the whole transaction ends: the rows written before a savepoint that rolled
    # back are still there.
    if transaction.parent is None:
        for key in _KEYS:
            session.info.pop(key, None)
