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
from weakref import WeakKeyDictionary

from sqlalchemy import ARRAY, Engine, Select, String, any_, bindparam, event, func, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import await_only as await_
from sqlalchemy.util import greenlet_spawn

from app.core import pooled_connection
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
            await _run_deferred(sync, raw, at_commit=False)
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
            await_(_run_deferred(connection, connection.connection, at_commit=False))
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

    `defer` holds the statement back until the connection's next statement or its commit,
    whichever comes first: the same rows in the same transaction, but a transaction whose
    only statement it is turns out to need no BEGIN and COMMIT (a filing that waits for its
    code: one round trip instead of three).

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
        on_postgresql = await self._on_postgresql(connection, params)
        if on_postgresql is not None:
            await self._now(connection, *on_postgresql)

    async def defer(self, connection: AsyncConnection, params: Mapping[str, Any]) -> None:
        """Write at the connection's next statement or commit, the values as they are now (a
        value missing is refused now). Inside a savepoint, on a connection in autocommit, and
        elsewhere than on PostgreSQL, now.

        Only for a caller whose next step is its commit, or one that catches no error of the
        statements in between: an error of the deferred write is raised by whatever runs
        next. A lone deferred write cut off by a cancellation while the database has it may
        still commit, as a transaction cut off at its COMMIT may: the caller never hears, and
        the worker links its audit events on its next round."""
        on_postgresql = await self._on_postgresql(connection, params)
        if on_postgresql is None:
            return
        sync, arguments = on_postgresql
        adapted = None if sync.invalidated else sync.connection.dbapi_connection
        if adapted is None or adapted.autocommit or sync.in_nested_transaction():
            # Held back inside a savepoint, it would run at its RELEASE or ROLLBACK TO, and
            # fail there leaving the savepoint neither released nor rolled back; in
            # autocommit, nothing would commit it.
            await self._now(connection, sync, arguments)
            return
        _DEFERRED.setdefault(sync, []).append((self, arguments))

    async def _on_postgresql(
        self, connection: AsyncConnection, params: Mapping[str, Any]
    ) -> tuple[Connection, list[Any]] | None:
        """On PostgreSQL, the Core connection in its transaction and the values bound;
        otherwise None, the statement run through Core (which begins a connection's
        transaction itself when none is open, and so commits what it wrote)."""
        sync = connection.sync_connection
        assert sync is not None
        if connection.dialect.name != "postgresql" or not sync.in_transaction():
            await connection.execute(self.statement, dict(params))
            return None
        compiled = self._postgresql
        if compiled is None:
            compiled = self._postgresql = _Compiled(self.statement, connection.dialect)
        missing = compiled.required - params.keys()
        if missing:  # refused as Core's execute refuses it, rather than written as NULL
            message = f"A value is required for bind parameter {min(missing)!r}"
            refused = sa_exc.InvalidRequestError(message)
            raise sa_exc.StatementError(message, compiled.sql, None, refused, True)
        return sync, compiled.arguments(params)

    async def _now(
        self, connection: AsyncConnection, sync: Connection, arguments: list[Any]
    ) -> None:
        raw = sync.connection if not sync.invalidated else await connection.get_raw_connection()
        try:
            await _run_deferred(sync, raw, at_commit=False)
            await self._run(sync, raw, arguments, begin=True)
        except _Broken as broken:
            await connection.invalidate(broken.error)
            raise broken.raised from broken.error

    async def _run(self, sync: Connection, raw: Any, arguments: list[Any], *, begin: bool) -> None:
        """The statement on the connection's driver, in the connection's transaction (begun
        first when none is open) or, without `begin`, on its own. Raises _Broken when the
        connection broke."""
        compiled = self._postgresql
        assert compiled is not None  # _on_postgresql came first
        adapted = raw.dbapi_connection
        driver = raw.driver_connection
        assert adapted is not None and driver is not None
        try:
            if begin and adapted._transaction is None:  # what the adapter's cursor does first
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
            _raise_as_sqlalchemy(compiled, raw, error)


# Writes held back on a connection (HotWrite.defer), in order, until it runs anything else or
# commits; dropped when it rolls back. Keyed by the Core connection of the session's
# transaction: it is gone with the transaction.
_DEFERRED: WeakKeyDictionary[Connection, list[tuple[HotWrite, list[Any]]]] = WeakKeyDictionary()


async def _run_deferred(sync: Connection, raw: Any, *, at_commit: bool) -> None:
    """The connection's deferred writes, before whatever it runs next. At its commit, a lone
    write into a transaction nothing else ran in runs on its own: a single statement is atomic
    by itself, and the commit then has nothing to end. Raises _Broken."""
    if not _DEFERRED:
        return
    writes = _DEFERRED.pop(sync, None)
    if not writes:
        return
    alone = at_commit and len(writes) == 1 and _nothing_begun(sync, raw)
    for write, arguments in writes:
        await write._run(sync, raw, arguments, begin=not alone)


def _nothing_begun(sync: Connection, raw: Any) -> bool:
    adapted = raw.dbapi_connection
    # Only at the database's own default isolation (what a statement on its own runs at), not
    # read-only or deferrable: a transaction asked to be otherwise keeps its BEGIN.
    default = sync.dialect._isolation_lookup[sync.dialect.default_isolation_level]  # type: ignore[attr-defined]
    return (
        adapted is not None
        and adapted._transaction is None
        and adapted.isolation_level in (None, default)
        and not adapted.readonly
        and not adapted.deferrable
    )


def _run_deferred_from_sync(sync: Connection, *, at_commit: bool) -> None:
    try:
        await_(_run_deferred(sync, sync.connection, at_commit=at_commit))
    except _Broken as broken:
        sync.invalidate(broken.error)  # type: ignore[arg-type]
        raise broken.raised from broken.error


async def run_deferred(connection: AsyncConnection) -> None:
    """The writes deferred on this connection, now: for a caller about to use its driver
    directly (a COPY). Core statements and hot reads and writes run them themselves."""
    sync = connection.sync_connection
    if _DEFERRED and sync is not None and sync in _DEFERRED:
        raw = sync.connection if not sync.invalidated else await connection.get_raw_connection()
        try:
            await _run_deferred(sync, raw, at_commit=False)
        except _Broken as broken:
            await connection.invalidate(broken.error)
            raise broken.raised from broken.error


@event.listens_for(Engine, "before_cursor_execute")
def _before_statement(sync: Connection, *_args: Any) -> None:
    if _DEFERRED and sync in _DEFERRED:
        _run_deferred_from_sync(sync, at_commit=False)


@event.listens_for(Engine, "commit")
def _before_commit(sync: Connection) -> None:
    if not (_DEFERRED and sync in _DEFERRED):
        return
    try:
        _run_deferred_from_sync(sync, at_commit=True)
    except Exception:
        # The commit stops here, and Core takes its transaction as over (as after a COMMIT
        # that failed, which ends it): end it on the database too, or the pool would hand an
        # aborted transaction to the next checkout without rolling it back.
        if not sync.invalidated:
            try:
                sync.connection.dbapi_connection.rollback()  # type: ignore[union-attr]
            except BaseException as error:  # a cancellation too: the connection is unknown
                sync.invalidate(error)  # type: ignore[arg-type]
                if not isinstance(error, Exception):
                    raise
        raise


@event.listens_for(Engine, "rollback")
def _drop_on_rollback(sync: Connection) -> None:
    # (Nothing is held back inside a savepoint, and its SAVEPOINT statement ran what was held
    # back before it: a rollback to a savepoint has nothing here to drop.)
    if _DEFERRED:
        _DEFERRED.pop(sync, None)


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


def among(column: Any, name: str, dialect: str) -> Any:
    """`column` among the values of a list bound as `name`, in a statement built once per
    dialect: `= ANY($n)` of an array on PostgreSQL (one text whatever the list's length), an
    expanding IN elsewhere."""
    if dialect == "postgresql":
        # VARCHAR[], not VARCHAR(n)[]: a cast to the column's length would cut a longer value
        item = String() if isinstance(column.type, String) else column.type
        return column == any_(bindparam(name, type_=ARRAY(item)))
    return column.in_(bindparam(name, expanding=True))


def unnested_strings(name: str) -> Any:
    """The strings of a list bound as `name`, a row each (column `value`), for a PostgreSQL
    statement built once. The array comes through a scalar subquery, `unnest((SELECT $1))`:
    a custom plan would see its length where the generic plan assumes ten elements, look
    cheaper, and be planned again at every call; hidden from both, the generic plan is kept
    (`tests/reliability/test_plan_cache.py`)."""
    array = select(bindparam(name, type_=ARRAY(String()))).scalar_subquery()
    return func.unnest(array).table_valued("value").render_derived()


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
            pooled = self._pooled = await pooled_connection.take(engine)
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
        if pooled is None:
            return
        await pooled_connection.give_back(self._database.engine, pooled)  # type: ignore[union-attr]


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
