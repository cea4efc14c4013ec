"""Database faults seen by a request: a transaction that lost a deadlock or a serialization
conflict is run again from the start; a database that cannot be reached answers 503.

Both are done around the whole request (the session's transaction is opened and committed
inside it, before the response starts), so a retry re-runs authentication, the idempotency
claim and the handler in a fresh transaction. The request body is kept for the re-run.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
import sqlite3
from enum import Enum

from sqlalchemy import exc as sa_exc
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import ServiceUnavailable, problem_response

log = logging.getLogger("spix_dsr.db")

# PostgreSQL: deadlock_detected, serialization_failure. Run again, the transaction succeeds.
_CONFLICT_STATES = frozenset({"40P01", "40001"})
# PostgreSQL: the server is not there for us (connection exception, insufficient resources,
# shutting down or starting, no such database, refused credentials).
_UNAVAILABLE_PREFIXES = ("08", "53", "57P", "3D000", "28")
_NETWORK_ERRNOS = frozenset(
    {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN, errno.ECONNREFUSED}
)
# SQLite: another writer holds the lock past busy_timeout.
_SQLITE_BUSY = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED"})
# SQLite: the file cannot be opened or read.
_SQLITE_UNAVAILABLE = ("SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_NOTADB", "SQLITE_FULL")


class Fault(Enum):
    CONFLICT = "conflict"
    UNAVAILABLE = "unavailable"


def _sqlstate(error: BaseException | None) -> str | None:
    for candidate in (error, getattr(error, "__cause__", None)):
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(state, str):
            return state
    return None


def _network_error(error: BaseException | None) -> bool:
    """A socket that could not be opened or broke: not any OSError (a full disk is a 500)."""
    return isinstance(error, ConnectionError | TimeoutError | socket.gaierror) or (
        isinstance(error, OSError) and error.errno in _NETWORK_ERRNOS
    )


def classify(error: BaseException) -> Fault | None:
    """What a database error means for the request, or None when it is not such a fault."""
    if isinstance(error, sa_exc.TimeoutError):  # no pooled connection came free in time
        return Fault.UNAVAILABLE
    if _network_error(error):  # raised bare by the driver's connect (refused, unreachable)
        return Fault.UNAVAILABLE
    if not isinstance(error, sa_exc.DBAPIError):
        return None
    orig = error.orig
    state = _sqlstate(orig)
    if state in _CONFLICT_STATES:
        return Fault.CONFLICT
    if isinstance(orig, sqlite3.Error):
        name = getattr(orig, "sqlite_errorname", "") or ""
        if name in _SQLITE_BUSY:
            return Fault.CONFLICT
        if name.startswith(_SQLITE_UNAVAILABLE):
            return Fault.UNAVAILABLE
    if error.connection_invalidated:
        return Fault.UNAVAILABLE
    if state is not None and state.startswith(_UNAVAILABLE_PREFIXES):
        return Fault.UNAVAILABLE
    if isinstance(error, sa_exc.InterfaceError) or _network_error(orig):
        return Fault.UNAVAILABLE  # the connection broke under the statement
    return None


class _Body:
    """The request's body messages, kept so that a re-run reads the same body again."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._kept: list[Message] = []

    def reader(self) -> Receive:
        pending = list(self._kept)

        async def receive() -> Message:
            if pending:
                return pending.pop(0)
            message = await self._receive()
            if message["type"] == "http.request":
                self._kept.append(message)
            return message

        return receive


class ResponseStart:
    """Whether a request's response has started. The outermost middleware (RequestContext)
    watches every message sent and leaves one in the scope under RESPONSE_START, so the
    middleware within need not wrap `send` again to know it (a layer per message)."""

    __slots__ = ("started",)

    def __init__(self) -> None:
        self.started = False

    def watching(self, send: Send) -> Send:
        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.started = True
            await send(message)

        return watched


RESPONSE_START = "spix.response_start"


class DatabaseFaultMiddleware:
    """Re-runs a request whose transaction failed on a deadlock or serialization conflict
    (at most `retries` times, after a short random pause), and answers 503 with Retry-After
    when the database cannot be reached (or still conflicts). Only before the response has
    started, which is always the case: a request's transaction commits before it answers."""

    def __init__(self, app: ASGIApp, *, retries: int = 2) -> None:
        self.app = app
        self.retries = retries

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = _Body(receive)
        response = scope.get(RESPONSE_START)
        if response is None:  # not behind RequestContextMiddleware: watched here
            response = ResponseStart()
            send = response.watching(send)
        attempt = 0
        while True:
            try:
                await self.app(scope, body.reader(), send)
                return
            except Exception as error:
                fault = None if response.started else classify(error)
                if fault is None:
                    raise
                if fault is Fault.CONFLICT and attempt < self.retries:
                    attempt += 1
                    log.info("transaction retried", extra={"attempt": attempt})
                    # Jitter, so the losers of one deadlock do not meet again at once.
                    await asyncio.sleep(random.uniform(0.01, 0.05) * attempt)  # noqa: S311
                    continue
                log.warning(
                    "database fault answered 503",
                    extra={"fault": fault.value, "error_type": type(error).__name__},
                )
                await _unavailable(scope, fault)(scope, receive, send)
                return


def _unavailable(scope: Scope, fault: Fault) -> Response:
    detail = (
        "The database is unreachable; retry later"
        if fault is Fault.UNAVAILABLE
        else "The database is busy with conflicting writes; retry later"
    )
    problem = ServiceUnavailable(detail)
    return problem_response(
        problem.status,
        problem.slug,
        problem.title,
        problem.detail,
        request=Request(scope),
        headers=problem.headers,
    )
