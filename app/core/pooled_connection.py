"""Taking a driver connection from the engine's pool, and giving it back, for a request's hot
reads (core.hot_read.ReadScope).

The pool's code is synchronous, and awaits the driver only to open or close a connection,
so SQLAlchemy runs it in a greenlet: about 12 µs of CPU each way in one process, and under
wrk the retention check's server CPU fell from about 450-530 to 320-380 µs a check without
them (the greenlet-free check-in alone: 410-450). Here the pool is entered directly when it
holds an idle connection and keeps the one given back, and through a greenlet otherwise
(tests/reliability/test_read_scope_pool.py)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import Pool, PoolProxiedConnection, QueuePool
from sqlalchemy.util import greenlet_spawn

T = TypeVar("T")


async def take(engine: AsyncEngine) -> PoolProxiedConnection:
    return _idle(engine.sync_engine.pool) or await engine.raw_connection()


async def give_back(engine: AsyncEngine, pooled: PoolProxiedConnection) -> None:
    if _kept_as_it_is(engine.sync_engine.pool, pooled):
        pooled.close()
    else:
        await greenlet_spawn(pooled.close)


def _idle(pool: Pool) -> PoolProxiedConnection | None:
    """A connection the pool holds idle, taken without a greenlet; None when it holds none (it
    would open one, or wait) or when the one it holds must be opened again first (past its
    recycle age, or invalidated by an earlier fault)."""
    return unless_it_awaits(pool.connect) if holds_idle(pool) else None


def holds_idle(pool: Pool) -> bool:
    """Whether the pool holds a connection idle (else a checkout opens one, or waits)."""
    return isinstance(pool, QueuePool) and pool.checkedin() > 0


def unless_it_awaits(call: Callable[[], T]) -> T | None:
    """`call()`, a checkout from the pool made outside SQLAlchemy's greenlet; None when it had
    to await the driver (to open a connection again). The pool finds that out where it would
    first await: it raises MissingGreenlet there (closing the driver's connect coroutine
    unawaited, which warns) and takes the record back, without a connection, as after any
    failed checkout; the caller then checks out through the greenlet."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)
        try:
            return call()
        except sa_exc.MissingGreenlet:
            return None


def _kept_as_it_is(pool: Pool, pooled: PoolProxiedConnection) -> bool:
    """Whether giving `pooled` back needs no I/O: nothing to roll back (hot reads open no
    transaction), room in the pool so the connection is kept rather than closed (an overflow
    one is closed), and no listener of the pool's check-in or reset that might await."""
    if not isinstance(pool, QueuePool) or pool.checkedin() >= pool.size():
        return False
    if pooled.is_detached or not pooled.is_valid or pool.dispatch.reset or pool.dispatch.checkin:
        return False
    adapted = pooled.dbapi_connection
    return adapted is not None and getattr(adapted, "_transaction", True) is None
