"""Database layer: one async engine per process, one transaction per request."""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TypeVarTuple

import orjson
from sqlalchemy import (
    DateTime,
    Integer,
    MetaData,
    Select,
    String,
    any_,
    bindparam,
    event,
    func,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Mapper,
    declared_attr,
    make_transient_to_detached,
    mapped_column,
)
from sqlalchemy.types import TypeDecorator

from app.core.lean_session import LeanSession

_Ts = TypeVarTuple("_Ts")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both databases (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        # SQLite compares the stored text, so every value is written in one shape.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Versioned:
    """Registry objects: timestamps and a version counter that is both the ETag and an
    optimistic lock (an UPDATE of a stale version raises StaleDataError, answered 412)."""

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c.version}  # type: ignore[attr-defined]


def json_text(value: Any) -> str:
    """A JSON column's stored text: what the engine writes for a value, for statements that
    pass their values to the driver as they are."""
    return orjson.dumps(value).decode()


def create_engine(
    url: str, *, pool_size: int = 10, echo: bool = False, autocommit: bool = False
) -> AsyncEngine:
    # orjson for JSON columns (events, profiles, audit and request payloads).
    json = {"json_serializer": json_text, "json_deserializer": orjson.loads}
    if url.startswith("sqlite"):
        if not autocommit:
            engine = create_async_engine(url, echo=echo, hide_parameters=True, **json)
            _configure_sqlite(engine, begin_immediate=True)
            return engine
        # Autocommit from the connection's start: no transaction ever opens, so there is
        # none to roll back when the connection goes back to the pool.
        engine = create_async_engine(
            url,
            echo=echo,
            hide_parameters=True,
            isolation_level="AUTOCOMMIT",
            pool_reset_on_return=None,
            **json,
        )
        _configure_sqlite(engine, begin_immediate=False)
        return engine
    return create_async_engine(
        url,
        echo=echo,
        # Steady load up to pool_size concurrent requests never opens a connection; a burst
        # beyond it opens overflow connections that close when they come back.
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args=_postgres_connect_args(url),
        # No pre-ping: it costs a round trip on every checkout, a quarter of a point read;
        # recycled connections and the error a dead one raises (a 5xx, retried) cover it.
        pool_recycle=1800,
        # Bound values may be identities or hashes: keep them out of error messages and logs.
        hide_parameters=True,
        **json,
    )


def _postgres_connect_args(url: str) -> dict[str, Any]:
    """No TLS unless asked for: asyncpg's default ("prefer") asks every new connection to
    negotiate TLS, a round trip (and a handshake where the server offers it) spent on a local
    socket. The URL's `ssl`/`sslmode` query or PGSSLMODE turns it back on."""
    query = make_url(url).query
    if "ssl" in query or "sslmode" in query or os.environ.get("PGSSLMODE"):
        return {}
    return {"ssl": False}


def _is_sqlite_file(url: str) -> bool:
    """A SQLite database in a file: a second engine on an in-memory one would see another
    database."""
    parsed = make_url(url)
    database = parsed.database or ""
    return (
        parsed.get_backend_name() == "sqlite"
        and database not in ("", ":memory:")
        and "memory" not in database
        and parsed.query.get("mode") != "memory"
    )


def _configure_sqlite(engine: AsyncEngine, *, begin_immediate: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN is ours (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=10000",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA cache_size=-65536",
        ):
            cursor.execute(pragma)
        cursor.close()

    if not begin_immediate:
        return

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return  # a read on its own: no transaction, no write lock
        # IMMEDIATE takes the write lock up front: a transaction that reads and then writes
        # can never fail with SQLITE_BUSY half way; concurrent writers queue on busy_timeout.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


# Per mapped class: each column attribute's key, its column's key, and how its Python-side
# default is made (None: no default; ("value", v); ("call", f); ("database", column): none
# here, the database makes it). Built once: walking the mapper for each new row was half of
# new_row's time (30 against 15 µs a request's row in one process).
_ROW_PLANS: dict[type, list[tuple[str, str, tuple[str, Any] | None]]] = {}


def _row_plan(model: type) -> list[tuple[str, str, tuple[str, Any] | None]]:
    plan = _ROW_PLANS.get(model)
    if plan is None:
        plan = []
        mapper: Mapper[Any] = sa_inspect(model)
        for prop in mapper.column_attrs:
            (column,) = prop.columns
            default = column.default
            if column.server_default is not None or (
                default is not None and not (default.is_scalar or default.is_callable)
            ):
                # Taken in the database: such a row is written by a flush, not from here.
                plan.append((prop.key, column.key, ("database", column)))
                continue
            made = None
            if default is not None:
                made = ("value", default.arg) if default.is_scalar else ("call", default.arg)  # type: ignore[attr-defined]
            plan.append((prop.key, column.key, made))
        _ROW_PLANS[model] = plan
    return plan


def _default(made: tuple[str, Any] | None) -> Any:
    if made is None:
        return None
    kind, arg = made
    if kind == "database":
        raise ValueError(f"{arg} takes its value in the database: write it by flush")
    return arg if kind == "value" else arg(None)


def new_row(obj: Any) -> dict[str, Any]:
    """The row an INSERT of this new mapped object writes, by column: its attributes, and for
    those it leaves unset the columns' Python-side defaults, set on the object too (it then
    holds what the row holds). For an object a Core statement writes (see `keep_written`)."""
    row: dict[str, Any] = {}
    state = obj.__dict__
    for key, column_key, made in _row_plan(type(obj)):
        if key not in state:
            setattr(obj, key, _default(made))
        row[column_key] = state[key]
    return row


def row_of(model: type, values: dict[str, Any]) -> dict[str, Any]:
    """The row an INSERT of a new `model` with these attribute values writes, as `new_row`
    makes it, without building the object (a row written and answered, never changed after)."""
    row: dict[str, Any] = {}
    for key, column_key, made in _row_plan(model):
        row[column_key] = values[key] if key in values else _default(made)
    return row


def keep_written(session: AsyncSession, obj: Any) -> None:
    """Keep a new object whose row a Core statement wrote (from `new_row`) in the session, as
    though it had been flushed: persistent and clean, so a later change updates the row."""
    make_transient_to_detached(obj)
    session.add(obj)


class Database:
    """The engine and session factory one process shares."""

    def __init__(
        self,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession] | None = None,
        read_sessionmaker: async_sessionmaker[AsyncSession] | None = None,
        *,
        read_engine: AsyncEngine | None = None,
    ) -> None:
        self.engine = engine
        self.read_engine = read_engine
        # Hot reads on PostgreSQL take a pooled driver connection for their statements, with
        # no session around it (core.hot_read.ReadScope). Not when the read sessions were given
        # bound elsewhere (a test's outer transaction): the reads must see what those see.
        self.pooled_reads = engine.dialect.name == "postgresql" and read_sessionmaker is None
        self.sessionmaker = sessionmaker or async_sessionmaker(
            engine, class_=LeanSession, expire_on_commit=False
        )
        # Hot read paths (retention and suppression checks) run without BEGIN and COMMIT:
        # one statement, one round trip, and on SQLite no write lock.
        self.read_sessionmaker = read_sessionmaker or async_sessionmaker(
            read_engine or engine.execution_options(isolation_level="AUTOCOMMIT"),
            expire_on_commit=False,
        )

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 10, echo: bool = False) -> Database:
        engine = create_engine(url, pool_size=pool_size, echo=echo)
        read_engine = None
        if _is_sqlite_file(url):
            # Reads get their own autocommit connections on SQLite: switching a shared one to
            # autocommit and back costs four aiosqlite thread hops per read. (On PostgreSQL the
            # switch is a flag in the driver, and one pool keeps the connection count bounded.)
            read_engine = create_engine(url, echo=echo, autocommit=True)
        return cls(engine, read_engine=read_engine)

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not None:
            await self.read_engine.dispose()


# "column in these values" for PostgreSQL, two ways. Both send the values as one array
# parameter, so the statement text stays the same whatever the list's length and is prepared
# once (an expanded IN is not). They plan differently, and each caller keeps the plan it was
# measured with; SQLite gets a plain IN from both.


def _array(column: Any, values: list[Any]) -> Any:
    # Strings go as VARCHAR[]: a cast to VARCHAR(n)[] would cut longer values to fit.
    item_type = String() if isinstance(column.type, String) else column.type
    return bindparam(None, values, type_=ARRAY(item_type))


def any_of(session: AsyncSession, column: Any, values: Iterable[Any]) -> Any:
    """A WHERE condition: `column = ANY(array)`. For statements that cannot take a join (the
    DELETE of a batch's old identities)."""
    values = list(values)
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(_array(column, values))
    return column.in_(values)


def join_any_of(
    session: AsyncSession, statement: Select[*_Ts], column: Any, values: Iterable[Any]
) -> Select[*_Ts]:
    """`statement` narrowed to rows whose `column` is among `values`, as a join on
    unnest(array) on PostgreSQL: the join keeps its index plan when PostgreSQL switches the
    prepared statement to a generic plan, where `= ANY(array)` fell to a sequential scan
    (2 ms became 250 ms per 1000-record batch as the records table grew)."""
    values = list(values)
    if session.get_bind().dialect.name == "postgresql":
        wanted = func.unnest(_array(column, values)).table_valued("value").render_derived()
        return statement.join(wanted, column == wanted.c.value)
    return statement.where(column.in_(values))
