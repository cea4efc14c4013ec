"""Hot routes answered without FastAPI's per-request machinery, when the request is plain.

FastAPI builds each request's answer through a general path: two exit stacks, the endpoint's
context for error messages, the content type parsed as a MIME message, the dependency tree
solved, telemetry hooks. For the checks other services call before every send or deletion,
that costs more than the route's own work. A route marked `@fast_path` keeps its FastAPI
declaration (the OpenAPI document, the validation errors) and gets a second, direct way in:

- path parameters validated by the route's own fields, query parameters and optional
  headers absent (their defaults), a JSON body parsed with orjson and validated by the
  route's own body field;
- then the route's dependencies in their declared order: callables of the request alone
  (the API key guard), the writing session (`get_session`: one session per request,
  committed when the endpoint returns, before the answer is sent, and what the commit left
  to do run after it, as FastAPI runs background tasks), and callables of the request and
  that session whose own headers are absent (the Idempotency-Key's dependency);
- then the endpoint, which returns its Response.

Anything else (a query string, an optional header sent, another content type, invalid JSON,
a field that fails validation) goes through FastAPI's route unchanged, body replayed, so
every error answer is FastAPI's own. Validation runs before the guard on the direct way;
that changes nothing, since a request that passes validation meets the guard next on
FastAPI's way too."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.session import get_session, request_session, run_after_commit

_MARK = "__spix_fast_path__"
_IMMUTABLE = (type(None), bool, int, float, str)
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def fast_path(endpoint: Endpoint) -> Endpoint:
    """Mark an endpoint for `install_fast_paths`. Its return annotation must be a Response."""
    setattr(endpoint, _MARK, True)
    return endpoint


def install_fast_paths(routes: Sequence[BaseRoute]) -> int:
    """Give every marked route its direct way in; returns how many have one. The routers'
    routes are module objects shared by every app made in a process: a route given its way
    by an earlier app keeps it."""
    installed = 0
    for route in routes:
        if isinstance(route, APIRoute) and getattr(route.endpoint, _MARK, False):
            if not isinstance(route.app, FastPath):
                route.app = FastPath(route, route.app)
            installed += 1
    return installed


def _is_coroutine(call: Callable[..., Any]) -> bool:
    """An `async def` function or an object with one as __call__ (not a generator: those
    are `yield` dependencies, which need FastAPI's exit stacks)."""
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
        getattr(call, "__call__", None)  # noqa: B004
    )


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    return content_type.partition(";")[0].strip().lower() == "application/json"


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def _header_name(field: Any) -> str:
    """The header a header parameter reads, as FastAPI finds it (underscores as hyphens
    unless the parameter says otherwise or names its alias)."""
    info = field.field_info
    if not info.alias and getattr(info, "convert_underscores", True):
        return str(field.name).replace("_", "-").lower()
    return str(field.alias).lower()


def _optional_headers(fields: Sequence[Any], owner: str, unsupported: list[str]) -> list[str]:
    """The headers of optional header parameters with a default that cannot change in place:
    absent, the direct way passes the default; sent, the request goes FastAPI's way."""
    names = []
    for field in fields:
        if field.field_info.is_required() or not isinstance(field.default, _IMMUTABLE):
            unsupported.append(f"the header parameter {field.name!r} of {owner}")
        names.append(_header_name(field))
    return names


class _Given:
    """A placeholder, in a dependency's arguments, for what the request supplies."""


# What the direct way passes a dependency: the request, the request's writing session.
_REQUEST, _SESSION = _Given(), _Given()


class FastPath:
    def __init__(self, route: APIRoute, full: ASGIApp) -> None:
        dependant = route.dependant
        name = f"{route.path} ({route.endpoint.__name__})"
        unsupported = [
            what
            for what, present in (
                ("cookie parameters", dependant.cookie_params),
                ("a response parameter", dependant.response_param_name),
                ("background tasks", dependant.background_tasks_param_name),
                ("security scopes", dependant.security_scopes_param_name),
                ("an embedded body", route._embed_body_fields),
                ("more than one body field", len(dependant.body_params) > 1),
            )
            if present
        ]
        if typing.get_type_hints(route.endpoint).get("return") is not Response:
            unsupported.append("a return annotation other than Response")
        self.headers = _optional_headers(dependant.header_params, "the endpoint", unsupported)
        # (argument, callable, {parameter: what to pass}), in the declared order; a callable
        # of None is the session itself.
        self.steps: list[tuple[str, Callable[..., Any] | None, dict[str, Any]]] = []
        self.session = False
        for sub in dependant.dependencies:
            step = self._step(sub, unsupported)
            if step is not None:
                self.steps.append(step)
        for field in dependant.query_params:
            # Taken as they are on every request: FastAPI copies defaults, so only values
            # that cannot be changed in place.
            if field.field_info.is_required() or not isinstance(field.default, _IMMUTABLE):
                unsupported.append(f"the query parameter {field.name!r} (required or mutable)")
        if unsupported:
            raise TypeError(f"{name} cannot take a fast path: it has {', '.join(unsupported)}")
        self.full = full
        self.endpoint = route.endpoint
        self.request_name = dependant.request_param_name
        self.path_fields = list(dependant.path_params)
        self.defaults = {
            field.name: field.default
            for field in (*dependant.query_params, *dependant.header_params)
        }
        self.body_field = dependant.body_params[0] if dependant.body_params else None

    def _step(
        self, sub: Any, unsupported: list[str]
    ) -> tuple[str, Callable[..., Any] | None, dict[str, Any]] | None:
        label = f"the dependency {sub.name!r}"
        if sub.name is None or sub.call is None:
            unsupported.append(label)
            return None
        if sub.call is get_session:
            self.session = True
            return sub.name, None, {}
        own = (sub.path_params, sub.query_params, sub.cookie_params, sub.body_params)
        passed: dict[str, Any] = {}
        if sub.request_param_name is not None:
            passed[sub.request_param_name] = _REQUEST
        for nested in sub.dependencies:
            if nested.call is not get_session or nested.name is None:
                unsupported.append(label)
                return None
            self.session = True
            passed[nested.name] = _SESSION
        if any(own) or not passed or not _is_coroutine(sub.call):
            unsupported.append(label)
            return None
        self.headers += _optional_headers(sub.header_params, label, unsupported)
        passed.update({field.name: field.default for field in sub.header_params})
        return sub.name, sub.call, passed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("query_string"):
            await self.full(scope, receive, send)
            return
        arguments: dict[str, Any] = dict(self.defaults)
        path_params = scope["path_params"]
        for field in self.path_fields:
            value, errors = field.validate(path_params.get(field.alias), {}, loc=("path",))
            if errors:
                await self.full(scope, receive, send)
                return
            arguments[field.name] = value
        request = Request(scope, receive, send)
        if self.headers and any(name in request.headers for name in self.headers):
            await self.full(scope, receive, send)
            return
        if self.body_field is not None:
            body = await request.body()
            parsed = self._parsed(request, body)
            if parsed is None:
                await self.full(scope, _replay(body, receive), send)
                return
            arguments[self.body_field.name] = parsed
        if self.request_name is not None:
            arguments[self.request_name] = request
        if not self.session:
            response = await self._answer(request, None, arguments)
            await response(scope, receive, send)
            return
        async with request_session(request.app) as (session, works):
            response = await self._answer(request, session, arguments)
        await response(scope, receive, send)
        if works:
            await run_after_commit(works, request.app.state.db)

    async def _answer(self, request: Request, session: Any, arguments: dict[str, Any]) -> Response:
        for argument, call, passed in self.steps:
            if call is None:
                arguments[argument] = session
                continue
            kwargs = {
                name: request if value is _REQUEST else session if value is _SESSION else value
                for name, value in passed.items()
            }
            arguments[argument] = await call(**kwargs)
        response: Response = await self.endpoint(**arguments)
        return response

    def _parsed(self, request: Request, body: bytes) -> Any:
        """The validated body, or None for anything FastAPI's way should answer."""
        assert self.body_field is not None
        if not body or not _is_json(request.headers.get("content-type")):
            return None
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        value, errors = self.body_field.validate(document, {}, loc=("body",))
        return None if errors else value
