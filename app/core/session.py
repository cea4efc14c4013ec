"""The request's database session: one transaction, committed before the response leaves."""

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import Database

# Where a session carries the app's audit key, for the audit chain's commit hook.
AUDIT_KEY_INFO = "audit_key"
# Where a transaction leaves work for after its commit: {name: async callable(database)}
# (the audit log links the transaction's events into its chain).
AFTER_COMMIT = "after_commit"
AfterCommit = Callable[[Database], Awaitable[None]]


async def run_after_commit(works: Iterable[AfterCommit], database: Database) -> None:
    """Run what a committed transaction left to do, in the order it was left."""
    for work in works:
        await work(database)


async def after_commit(session: AsyncSession, database: Database) -> None:
    """Run what the committed transaction left to do, in the order it was left."""
    await run_after_commit(session.info.pop(AFTER_COMMIT, {}).values(), database)


@asynccontextmanager
async def request_session(app: Any) -> AsyncIterator[tuple[AsyncSession, list[AfterCommit]]]:
    """A writing request's session: committed when the block ends (a failing commit raises
    there, inside the request, so the client sees a 5xx), rolled back when it raises. The
    list it yields is filled, after the commit, with what the commit left to do once the
    answer is sent (`run_after_commit`)."""
    database: Database = app.state.db
    works: list[AfterCommit] = []
    async with database.sessionmaker() as session:
        session.info[AUDIT_KEY_INFO] = app.state.audit_key
        try:
            yield session, works
        except BaseException:
            await session.rollback()
            raise
        await session.commit()
        works.extend(session.info.pop(AFTER_COMMIT, {}).values())


async def get_session(request: Request, background: BackgroundTasks) -> AsyncIterator[AsyncSession]:
    async with request_session(request.app) as (session, works):
        yield session
    # What the commit left to do runs once the answer is sent: the client does not wait
    # for it (an in-process test client does, so tests see it done).
    if works:
        background.add_task(run_after_commit, works, request.app.state.db)


# scope="function": the code after `yield` runs when the endpoint returns, before the
# response is sent, so nothing is answered 2xx that was not committed.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    database: Database = request.app.state.db
    async with database.read_sessionmaker() as session:
        yield session


# For endpoints that only read, each statement on its own (no transaction to commit).
ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]
