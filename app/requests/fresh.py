"""Requests first written in the session's current transaction. Nothing committed can point
at such a request yet (a row pointing at it needs its row, which no other transaction sees),
so a commit hook that looks for rows pointing at the requests whose status changed need not
ask the database about a fresh request, unless this transaction wrote such a row itself
(`Pointers`).

For the other requests, the hooks (a DRP exercise's callbacks, an OpenDSR link's) ask once
per commit, in one statement built once for every kind of pointing row, which of them any
row points at: most requests have none, and their hooks then run no query of their own."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import event, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction, object_session

from app.core.hot_read import HotRead, among
from app.requests.models import SubjectRequest

_FRESH = "requests_fresh"
# Per transaction: the requests asked about, and of those the ones each kind of row points at.
_ASKED = "requests_asked_for_pointers"
_POINTED = "requests_pointed_at_in_database"
_KEYS = [_FRESH, _ASKED, _POINTED]
_ALL: list[Pointers] = []
_ASKING: dict[int, HotRead] = {}  # by the number of kinds registered when it was built


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
        self.pointer = getattr(model, column)
        self.key = f"requests_pointed_at_by_{model.__tablename__}"
        _KEYS.append(self.key)
        _ALL.append(self)
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
        candidates = [r for r in changed if r not in fresh or r in pointed]
        in_database = _pointed_in_database(session, [r for r in candidates if r not in fresh])
        return [r for r in candidates if r in pointed or self.key in in_database.get(r, ())]


def _asking() -> HotRead:
    """(kind, request id) of every row of every kind of `Pointers` pointing at any of the
    requests bound as `ids`; built once for the kinds registered (at import, in practice)."""
    asking = _ASKING.get(len(_ALL))
    if asking is None:

        def statement(dialect: str) -> Any:
            parts = [
                select(literal(p.key).label("kind"), p.pointer.label("request_id")).where(
                    among(p.pointer, "ids", dialect)
                )
                for p in _ALL
            ]
            return parts[0] if len(parts) == 1 else union_all(*parts)

        asking = _ASKING[len(_ALL)] = HotRead(statement("postgresql"), other=statement("other"))
    return asking


def _pointed_in_database(session: Session, requests: list[uuid.UUID]) -> dict[Any, set[str]]:
    """For each request pointed at in the database (committed, or flushed by this transaction),
    the kinds of rows pointing at it; each request asked about once per transaction (the
    hooks of one commit share the answer)."""
    asked: set[uuid.UUID] = session.info.setdefault(_ASKED, set())
    found: dict[Any, set[str]] = session.info.setdefault(_POINTED, {})
    new = sorted(set(requests) - asked)
    if new:
        asked.update(new)
        for kind, request_id in _asking().rows_from_sync(session.connection(), {"ids": new}):
            found.setdefault(request_id, set()).add(kind)
    return found


@event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction: SessionTransaction) -> None:
    # Only when the whole transaction ends: the rows written before a savepoint that rolled
    # back are still there.
    if transaction.parent is None:
        for key in _KEYS:
            session.info.pop(key, None)
