"""The service's AsyncSession: SQLAlchemy's, without its greenlet where the session's
synchronous code would await nothing.

AsyncSession runs every call of the ORM's synchronous Session in a greenlet, so that the
driver can be awaited from inside it; entering one and leaving it costs about 12 µs of CPU
here, and closing the session also starts a task to shield the close from cancellation. A
filing waiting for its code made 32 greenlet switches. Three of those calls usually await
nothing, and are made here directly:

- a flush with nothing to write (the Session returns at once; `filed_out` flushes to be sure);
- closing a session whose transaction has ended (after a commit or rollback it holds no
  connection: closing only forgets its objects);
- asking for the transaction's connection when the transaction has it already, or, on
  PostgreSQL, when the pool holds an idle connection to give it (core.pooled_connection).
  If that idle connection must be opened again first, the pool raises MissingGreenlet where
  it would await the driver and takes its record back, nothing changed, and the call goes
  through the greenlet (tests/reliability/test_lean_session.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.core.pooled_connection import holds_idle, unless_it_awaits


class LeanSession(AsyncSession):
    async def flush(self, objects: Sequence[Any] | None = None) -> None:
        sync = self.sync_session
        if objects is None and not (sync.new or sync.dirty or sync.deleted):
            return  # what Session.flush does when clean, without entering the greenlet
        await super().flush(objects)

    async def close(self) -> None:
        if not self._closed_at_once():
            await super().close()

    async def __aexit__(self, type_: Any, value: Any, traceback: Any) -> None:
        if not self._closed_at_once():
            # A transaction to end: in a task of its own, shielded from cancellation.
            await super().__aexit__(type_, value, traceback)

    def _closed_at_once(self) -> bool:
        """Closed here when no transaction is open: with no connection to give back, closing
        only forgets the session's objects."""
        if self.sync_session.in_transaction():
            return False
        self.sync_session.close()
        return True

    async def connection(
        self,
        bind_arguments: Any = None,
        execution_options: Any = None,
        **kw: Any,
    ) -> AsyncConnection:
        if bind_arguments is None and execution_options is None and not kw:
            sync = self._without_io()
            if sync is not None:  # wrapped as AsyncSession.connection wraps it
                return AsyncConnection._retrieve_proxy_for_target(sync)
        return await super().connection(bind_arguments, execution_options, **kw)

    def _without_io(self) -> Any:
        """The transaction's connection, when it can be had without awaiting: the one it
        holds, or one the pool holds idle (PostgreSQL, the session bound to an engine: begun
        on a connection of its own, the transaction sends nothing until its first
        statement). None otherwise."""
        sync = self.sync_session
        bind = sync.bind
        if not isinstance(bind, Engine):
            return None  # bound to a connection (a test's transaction): a savepoint to open
        if sync.in_nested_transaction():
            return None
        transaction = sync.get_transaction()
        if transaction is not None and bind in transaction._connections:
            return sync.connection()  # the one it holds
        if bind.dialect.name != "postgresql":
            return None  # SQLite begins with a statement (BEGIN IMMEDIATE)
        if not holds_idle(bind.pool):
            return None  # it would open a connection, or wait for one
        return unless_it_awaits(sync.connection)
