"""Hot reads: a Core SELECT run for the service's hottest checks (a record's retention, a
suppression check, the subject lookup) without SQLAlchemy's per-execution layers on
PostgreSQL.

SQLAlchemy compiles the statement once per dialect; on PostgreSQL the SQL text then runs
straight on the pooled connection's asyncpg driver (prepared once per connection by asyncpg's
statement cache), and the rows come back as named tuples, each value processed as a Core
result processes it; bound values go through SQLAlchemy's bind processing. That halves
what a one-row read costs in Python (about 340 µs through a session's Core execute against
180 µs here, measured on the retention check's statement). SQLite runs the same statement
through Core.

Driver errors are raised as Core raises them (translated by SQLAlchemy's driver adapter: a
unique violation is an IntegrityError), with the connection invalidated when it broke, so
the database-fault middleware answers them as it answers any other statement.

Hot writes (HotWrite) are the filing's INSERTs, run the same way inside the session's
transaction, which they begin when they are its first statement.

A request's hot reads run in a ReadScope: on PostgreSQL it checks a connection out of the
engine's pool for them without a session (a session's connection, transaction and close cost
about 85 µs a request, the bare checkout about 20), and opens a read session only for what
needs one (a rare branch, or SQLite).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Mapping
from typing import Any, NoReturn

from sqlalchemy import Select
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import await_only as await_
from sqlalchemy.util import greenlet_spawn

from app.core.db import Database


class HotRead:
    """A SELECT built once, run with named parameters. On PostgreSQL a list binds as an
    array (no expanding IN: its text would change with the list's length); `other`, when
    given, is the statement other databases run instead (an expanding IN there)."""

    def __init__(
        self, statement: Select[*tuple[Any, ...]], *, other: Select[*tuple[Any, ...]] | None = None
    ) -> None:
        self.statement = statement
        self.other = statement if other is None else other
        self._postgresql: _Compiled | None = None

    async def rows(self, connection: AsyncConnection, params: Mapping[str, Any]) -> list[Any]:
        """The rows on a session's (or any) connection, inside whatever transaction it has."""
        if connection.dialect.name != "postgresql":
            return list(await connection.execute(self.other, dict(params)))
        sync = connection.sync_connection
        assert sync is not None
        # A live connection's driver needs no I/O to reach (get_raw_connection would spawn a
        # greenlet for it); one that was invalidated reconnects through the async call.
        raw = sync.connection if not sync.invalidated else await connection.get_raw_connection()
        try:
            return await self._fetch(connection.dialect, raw, params)
        except _Broken as broken:
            await connection.invalidate(broken.error)
            raise broken.raised from broken.error

    def rows_from_sync(self, connection: Connection, params: Mapping[str, Any]) -> list[Any]:
        """The same from SQLAlchemy's sync side (a session event's hook, which runs in
        SQLAlchemy's greenlet): the driver's coroutine is awaited there."""
        if connection.dialect.name != "postgresql":
            return list(connection.execute(self.other, dict(params)))
        try:
            return await_(self._fetch(connection.dialect, connection.connection, params))
        except _Broken as broken:
            connection.invalidate(broken.error)
            raise broken.raised from broken.error

    def _compiled(self, dialect: Any) -> _Compiled:
        compiled = self._postgresql
        if compiled is None:
            compiled = self._postgresql = _Compiled(self.statement, dialect)
        return compiled

    async def _fetch(
        self, dialect: Any, raw: DBAPIConnection, params: Mapping[str, Any]
    ) -> list[Any]:
        compiled = self._compiled(dialect)
        driver = raw.driver_connection  # type: ignore[attr-defined]
        assert driver is not None
        arguments = compiled.arguments(params)
        try:
            records = await driver.fetch(compiled.sql, *arguments)
        except Exception as error:
            _raise_as_sqlalchemy(compiled, raw, error)
        return [compiled.row(record) for record in records]


class HotWrite:
    """An INSERT built once, run inside a session's transaction. On PostgreSQL its text runs
    straight on the driver, each value bound as SQLAlchemy binds it (JSON as text, its types'
    own processing), without Core's execution context, cursor and result around it. The
    session's transaction is begun first when nothing has run in it yet, as Core's execute
    would, so the row commits or rolls back with the rest.

    The statement binds every column it writes: a default computed in Python at execution
    (a `default=` callable or value) would not be, so such a statement is refused here."""

    def __init__(self, statement: Any) -> None:
        left = statement.compile(dialect=postgresql.dialect()).insert_prefetch  # type: ignore[no-untyped-call]
        if left:
            names = ", ".join(sorted(column.key for column in left))
            raise ValueError(f"a hot write binds every column it writes; not bound: {names}")
        self.statement = statement
        self._postgresql: _Compiled | None = None

    async def execute(self, connection: AsyncConnection, params: Mapping[str, Any]) -> None:
        if connection.dialect.name != "postgresql":
            await connection.execute(self.statement, dict(params))
            return
        compiled = self._postgresql
        if compiled is None:
            compiled = self._postgresql = _Compiled(self.statement, connection.dialect)
        sync = connection.sync_connection
        assert sync is not None
        raw = sync.connection if not sync.invalidated else await connection.get_raw_connection()
        adapted = raw.dbapi_connection
        driver = raw.driver_connection
        assert adapted is not None and driver is not None
        missing = compiled.required - params.keys()
        if missing:  # refused as Core's execute refuses it, rather than written as NULL
            message = f"A value is required for bind parameter {min(missing)!r}"
            refused = sa_exc.InvalidRequestError(message)
            raise sa_exc.StatementError(message, compiled.sql, None, refused, True)
        arguments = compiled.arguments(params)
        try:
            if adapted._transaction is None:  # what the adapter's cursor does before a statement
                await adapted._start_transaction()
            await driver.execute(compiled.sql, *arguments)
        except BaseException as error:
            if not isinstance(error, Exception):
                # Cancelled (or interrupted) while the database had the statement: what the
                # driver was left in is unknown (a BEGIN cut short leaves asyncpg's own
                # transaction marker set, and the next BEGIN on the connection would open a
                # savepoint that never commits). Core's execute drops such a connection, and
                # so does this, without awaiting anything more.
                sync.invalidate(error)  # type: ignore[arg-type]
                raise
            try:
                _raise_as_sqlalchemy(compiled, raw, error)
            except _Broken as broken:
                await connection.invalidate(broken.error)
                raise broken.raised from broken.error


def _raise_as_sqlalchemy(compiled: _Compiled, raw: Any, error: Exception) -> NoReturn:
    """A driver error raised as Core's execute raises it: translated by SQLAlchemy's driver
    adapter (a unique violation is an IntegrityError), the database's own error under it; as
    _Broken when it broke the connection."""
    broken = raw.driver_connection.is_closed() or not isinstance(error, _postgres_error())
    try:
        raw.dbapi_connection._handle_exception(error)
    except Exception as translated:
        raised = sa_exc.DBAPIError.instance(
            compiled.sql,
            None,
            translated,
            Exception,
            hide_parameters=True,
            connection_invalidated=broken,
        )
    else:  # pragma: no cover - the adapter always raises
        raise AssertionError("the driver adapter did not raise") from error
    if broken:
        raise _Broken(error, raised) from error
    raise raised from error


class _Broken(Exception):
    """A driver error that broke the connection: whoever checked it out invalidates it."""

    def __init__(self, error: Exception, raised: sa_exc.StatementError) -> None:
        self.error = error
        self.raised = raised


class ReadScope:
    """One request's reads: `async with ReadScope(database) as reads`.

    `rows(hot_read, params)` runs a hot read: on PostgreSQL on a connection checked out of the
    engine's pool for it, without a session (the driver is in autocommit between
    transactions, so one statement is one round trip, as in a read session); elsewhere, and
    where the database's read sessions are bound to something else (a test's transaction),
    on the read session's connection. `session()` opens the read session for what needs the
    ORM or Core's execute; the pooled connection goes back first, so a request never holds
    two connections.

    `ReadScope.within(session)` reads through a session already open instead (a write
    transaction reading what it wrote), and leaves that session to its owner."""

    def __init__(self, database: Database | None, session: AsyncSession | None = None) -> None:
        self._database = database
        self._session = session
        self._owns_session = session is None
        self._pooled_reads = session is None and database is not None and database.pooled_reads
        if database is not None:
            self.dialect: str = database.engine.dialect.name
        else:
            assert session is not None, "a database or a session"
            self.dialect = session.get_bind().dialect.name
        self._pooled: PoolProxiedConnection | None = None

    @property
    def pooled_database(self) -> Database | None:
        """The database whose pool these reads take connections from; None when they read
        through a session, whose bind may be something else (a test's transaction)."""
        return self._database if self._pooled_reads else None

    @classmethod
    def within(cls, session: AsyncSession) -> ReadScope:
        return cls(None, session)

    async def __aenter__(self) -> ReadScope:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._release()
        session, self._session = self._session, None
        # A session that never read holds nothing to give back (one opened for a cached
        # value, say).
        if session is not None and self._owns_session and session.in_transaction():
            await session.close()

    async def rows(self, read: HotRead, params: Mapping[str, Any]) -> list[Any]:
        session = self._session
        if not self._pooled_reads or (session is not None and session.in_transaction()):
            return await read.rows(await (await self.session()).connection(), params)
        engine = self._database.engine  # type: ignore[union-attr]
        pooled = self._pooled
        if pooled is None:
            pooled = self._pooled = await engine.raw_connection()
        try:
            return await read._fetch(engine.dialect, pooled, params)
        except _Broken as broken:
            self._pooled = None
            await greenlet_spawn(pooled.invalidate, broken.error)
            raise broken.raised from broken.error

    async def session(self) -> AsyncSession:
        await self._release()
        if self._session is None:
            self._session = self._database.read_sessionmaker()  # type: ignore[union-attr]
        return self._session

    async def _release(self) -> None:
        pooled, self._pooled = self._pooled, None
        if pooled is not None:
            # In a greenlet: giving it back may close it (an overflow connection, or one
            # past its recycle age), which awaits the driver.
            await greenlet_spawn(pooled.close)


def _postgres_error() -> type[Exception]:
    import asyncpg  # type: ignore[import-untyped]

    error: type[Exception] = asyncpg.PostgresError
    return error


class _Compiled:
    """The statement's PostgreSQL text, its parameters in order with their bind processing,
    its row type and each column's result processing (SQLAlchemy's own: JSON decoded, UTC
    datetimes, UUIDs)."""

    def __init__(self, statement: Any, dialect: Any) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.names: list[str] = list(compiled.positiontup or [])
        # The values the statement carries itself (`state != 'erased'`), bound as they are.
        self.defaults = compiled.params
        processors = compiled._bind_processors
        self.binds = [(i, processors[n]) for i, n in enumerate(self.names) if n in processors]
        # Parameters the statement has no value of its own for (a write must be given each).
        self.required = frozenset(
            bind.key for bind in compiled.binds.values() if bind.required and bind.key in self.names
        )
        columns = list(getattr(statement, "selected_columns", ()))
        self.type = namedtuple("Row", [c.key for c in columns])  # type: ignore[misc]
        processors = [c.type._cached_result_processor(dialect, None) for c in columns]
        self.processed = [(i, p) for i, p in enumerate(processors) if p is not None]

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        values = [params.get(name, self.defaults.get(name)) for name in self.names]
        for index, process in self.binds:
            values[index] = process(values[index])
        return values

    def row(self, record: Any) -> Any:
        if not self.processed:
            return self.type(*record)
        values = list(record)
        for index, process in self.processed:
            values[index] = process(values[index])
        return self.type(*values)
