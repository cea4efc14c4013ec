"""The request's database session: one transaction, committed before the response leaves."""

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Annotated

from fastapi import BackgroundTasks, Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import Database

# Where a session carries the app's audit key, for the audit chain's commit hook.
AUDIT_KEY_INFO = "audit_key"
# Where a transaction leaves work for after its commit: {name: async callable(database)}
# (the audit log links the transaction's events into its chain).
AFTER_COMMIT = "after_commit"
AfterCommit = Callable[[Database], Awaitable[None]]


async def _run(works: Iterable[AfterCommit], database: Database) -> None:
    for work in works:
        await work(database)


async def after_commit(session: AsyncSession, database: Database) -> None:
    """Run what the committed transaction left to do, in the order it was left."""
    await _run(session.info.pop(AFTER_COMMIT, {}).values(), database)


async def get_session(request: Request, background: BackgroundTasks) -> AsyncIterator[AsyncSession]:
    database: Database = request.app.state.db
    async with database.sessionmaker() as session:
        session.info[AUDIT_KEY_INFO] = request.app.state.audit_key
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        # A failing commit raises here, inside the request, so the client sees a 5xx.
        await session.commit()
        # What the commit left to do runs once the answer is sent: the client does not wait
        # for it (an in-process test client does, so tests see it done).
        works = session.info.pop(AFTER_COMMIT, None)
        if works:
            background.add_task(_run, list(works.values()), database)


# scope="function": the code after `yield` runs when the endpoint returns, before the
# response is sent, so nothing is answered 2xx that was not committed.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    database: Database = request.app.state.db
    async with database.read_sessionmaker() as session:
        yield session


# For endpoints that only read, each statement on its own (no transaction to commit).
ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]
