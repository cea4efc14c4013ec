"""The hot routes' direct way in (app/core/fast_path.py): a plain request takes it, anything
else goes through FastAPI's route, and either way the answer is the one FastAPI gives."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi.routing import APIRoute
from httpx import ASGITransport, AsyncClient
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Receive, Scope, Send

from app.audit.chain import pending_count
from app.core.config import Settings
from app.core.db import Database
from app.core.fast_path import FastPath, fast_path, install_fast_paths
from app.main import create_app
from tests.builders import make_category, make_controller, make_purpose, make_record, make_system
from tests.conftest import bearer

ALICE = [{"type": "email", "value": "alice@example.com"}]
CHECK = {"identities": ALICE, "channel": "email", "purpose": "marketing.email"}
JSON = {"content-type": "application/json"}

HOT = {"/healthz", "/v1/records/{record_id}/retention", "/v1/suppressions/check"}
HOT |= {"/v1/subjects/lookup", "/v1/requests/{request_id}", "/v1/requests"}


def _fast_paths(app: FastAPI) -> dict[str, FastPath]:
    return {
        route.path: route.app
        for route in app.router.routes
        if isinstance(route, APIRoute) and isinstance(route.app, FastPath)
    }


class _Counted:
    """FastAPI's own route behind a fast path, counting the requests it was handed."""

    def __init__(self, full: Any) -> None:
        self.full = full
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        await self.full(scope, receive, send)


@contextmanager
def _counted(app: FastAPI) -> Iterator[dict[str, _Counted]]:
    paths = _fast_paths(app)
    counters = {path: _Counted(fast.full) for path, fast in paths.items()}
    for path, fast in paths.items():
        fast.full = counters[path]
    try:
        yield counters
    finally:
        for path, fast in paths.items():
            fast.full = counters[path].full


@contextmanager
def _fastapi_only(app: FastAPI) -> Iterator[None]:
    """FastAPI's own route for every request, for as long as the block runs."""
    routes = [
        route
        for route in app.router.routes
        if isinstance(route, APIRoute) and isinstance(route.app, FastPath)
    ]
    fast = [route.app for route in routes]
    for route, way in zip(routes, fast, strict=True):
        route.app = way.full  # type: ignore[union-attr]
    try:
        yield
    finally:
        for route, way in zip(routes, fast, strict=True):
            route.app = way


async def _world(session: AsyncSession) -> dict[str, Any]:
    controller = await make_controller(session, kind="platform", name="Spix")
    await make_system(session, "accounts")
    await make_category(session, "account.profile")
    await make_purpose(session, "marketing.email")
    record = await make_record(
        session,
        system="accounts",
        controller_id=controller.id,
        categories=["account.profile"],
        identities=ALICE,
    )
    return {
        "record": str(record),
        "admin": await bearer(session, "admin"),
        "system": await bearer(session, "system", system_key="accounts"),
        "controller": str(controller.id),
    }


def _requests(world: dict[str, Any], request_id: str) -> list[tuple[str, str, Any, bool]]:
    """(method, path, httpx arguments, whether the direct way answers it): plain requests,
    the guard's refusals (met on the direct way too), and every way out of it."""
    admin, system = world["admin"], world["system"]
    record = world["record"]
    retention = f"/v1/records/{record}/retention"
    check = "/v1/suppressions/check"
    raw = {**admin, **JSON}
    lookup = {"identities": ALICE}
    bom = b"\xef\xbb\xbf" + json.dumps(CHECK).encode()
    return [
        ("GET", "/healthz", {}, True),
        ("GET", "/healthz?verbose=1", {}, False),
        ("GET", retention, {"headers": admin}, True),
        ("GET", f"/v1/records/{uuid.uuid4()}/retention", {"headers": admin}, True),  # 404
        ("GET", "/v1/records/not-a-uuid/retention", {"headers": admin}, False),
        ("GET", "/v1/records/not-a-uuid/retention", {}, False),  # 401 before 422
        ("GET", retention, {}, True),  # 401
        ("GET", retention, {"headers": {"Authorization": "Bearer x"}}, True),  # 401
        ("GET", f"{retention}?x=1", {"headers": admin}, False),
        ("POST", check, {"headers": admin, "json": CHECK}, True),
        ("POST", check, {"json": CHECK}, True),  # 401
        ("POST", check, {"headers": admin, "json": {**CHECK, "channel": 1}}, False),
        ("POST", check, {"headers": admin, "json": []}, False),
        ("POST", check, {"headers": raw, "content": b"{"}, False),
        ("POST", check, {"headers": raw, "content": b""}, False),
        ("POST", check, {"headers": raw, "content": b"NaN"}, False),
        (
            "POST",
            check,
            {"headers": {**admin, "content-type": "text/plain"}, "content": b"{}"},
            False,
        ),
        ("POST", check, {"headers": raw, "content": bom}, False),
        (
            "POST",
            check,
            {
                "headers": {**admin, "content-type": "Application/JSON; charset=utf-8"},
                "content": json.dumps(CHECK).encode(),
            },
            True,
        ),
        ("POST", "/v1/subjects/lookup", {"headers": admin, "json": lookup}, True),
        ("POST", "/v1/subjects/lookup?limit=1", {"headers": admin, "json": lookup}, False),
        ("POST", "/v1/subjects/lookup?limit=0", {"headers": admin, "json": lookup}, False),
        ("POST", "/v1/subjects/lookup", {"headers": system, "json": lookup}, True),  # 403
        ("POST", "/v1/subjects/lookup", {"headers": admin, "json": {"identities": []}}, False),
        ("GET", f"/v1/requests/{request_id}", {"headers": admin}, True),
        ("GET", f"/v1/requests/{request_id}", {"headers": system}, True),  # 403
        ("GET", f"/v1/requests/{uuid.uuid4()}", {"headers": admin}, True),  # 404
        ("GET", "/v1/requests/123", {"headers": admin}, False),
    ]


def _answer(response: Any) -> tuple[int, str, Any]:
    body = response.json()
    if isinstance(body, dict):
        body.pop("request_id", None)
    return response.status_code, response.headers["content-type"], body


async def test_the_hot_routes_take_the_direct_way_and_answer_as_fastapi_does(
    settings: Settings, database: Database, session: AsyncSession
) -> None:
    world = await _world(session)
    app = create_app(settings, database=database)
    assert set(_fast_paths(app)) == HOT
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
        filed = await client.post(
            "/v1/requests",
            headers=world["admin"],
            json={"type": "access", "regime": "gdpr", "identities": ALICE, "verified": True},
        )
        assert filed.status_code == 201, filed.text
    requests = _requests(world, filed.json()["id"])

    answers: dict[str, list[tuple[int, str, Any]]] = {}
    direct: list[bool] = []
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
        with _counted(app) as counters:
            got = []
            for method, path, arguments, _ in requests:
                before = sum(counter.calls for counter in counters.values())
                got.append(_answer(await client.request(method, path, **arguments)))
                direct.append(sum(c.calls for c in counters.values()) == before)
            answers["fast"] = got
        with _fastapi_only(app):
            answers["slow"] = [
                _answer(await client.request(method, path, **arguments))
                for method, path, arguments, _ in requests
            ]

    for request, fast, slow in zip(requests, answers["fast"], answers["slow"], strict=True):
        assert fast == slow, request[:2]
    assert direct == [expected for *_, expected in requests]
    # The matrix does reach each kind of answer.
    assert {200, 401, 403, 404, 422} <= {status for status, _, _ in answers["fast"]}


def _filings(world: dict[str, Any], way: str) -> list[tuple[dict[str, Any], bool]]:
    """(httpx arguments of a filing, whether the direct way answers it). An Idempotency-Key
    of each way's own, so that neither way replays the other's answer."""
    admin, system = world["admin"], world["system"]
    access = {"type": "access", "regime": "gdpr", "identities": ALICE}
    return [
        ({"headers": admin, "json": access}, True),
        ({"headers": admin, "json": {**access, "verified": True}}, True),
        ({"headers": admin, "json": {**access, "type": "rectification"}}, True),  # 422, intake
        ({"headers": admin, "json": {**access, "controller_id": str(uuid.uuid4())}}, True),  # 422
        ({"json": access}, True),  # 401
        ({"headers": system, "json": access}, True),  # 403
        ({"headers": {**admin, "Idempotency-Key": f"k-{way}"}, "json": access}, False),
        ({"headers": {**admin, "Sec-GPC": "1"}, "json": access}, False),
        ({"headers": {**admin, "sec-gpc": "0"}, "json": access}, False),
        ({"headers": admin, "json": {**access, "type": "nope"}}, False),  # FastAPI's 422
        ({"headers": {**admin, **JSON}, "content": b"{"}, False),
    ]


def _normalised(value: Any) -> Any:
    """A filing's answer without what differs from one filing to the next: ids, times, the
    code."""
    if isinstance(value, dict):
        return {
            key: "<code>" if key == "code" else _normalised(item) for key, item in value.items()
        }
    if isinstance(value, list):
        return [_normalised(item) for item in value]
    if isinstance(value, str):
        try:
            uuid.UUID(value)
            return "<id>"
        except ValueError:
            pass
        if len(value) >= 19 and value[4:5] == "-" and value[10:11] == "T":
            return "<time>"
    return value


async def test_filing_takes_the_direct_way_commits_and_answers_as_fastapi_does(
    settings: Settings, database: Database, session: AsyncSession
) -> None:
    """Filing writes: on the direct way the request's session is committed before the answer
    leaves, and the audit events it wrote are linked after it, as on FastAPI's way."""
    world = await _world(session)
    app = create_app(settings, database=database)
    answers: dict[str, list[tuple[int, str, Any, bool]]] = {}
    direct: list[bool] = []
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
        for way in ("fast", "slow"):
            filings = _filings(world, way)
            got = []
            with _counted(app) as counters, _fastapi_only(app) if way == "slow" else nullcontext():
                for arguments, _ in filings:
                    before = counters["/v1/requests"].calls
                    response = await client.post("/v1/requests", **arguments)
                    status, kind, body = _answer(response)
                    got.append((status, kind, _normalised(body), "location" in response.headers))
                    if way == "fast":
                        direct.append(counters["/v1/requests"].calls == before)
                    if status == 201:  # committed: readable at once, on either way
                        read = await client.get(
                            response.headers["location"], headers=world["admin"]
                        )
                        assert read.status_code == 200, read.text
                        # The events it wrote are linked onto the audit chain once the answer
                        # is out (checked after each: a linking links whatever is waiting).
                        assert await pending_count(database) == 0, arguments
            answers[way] = got
    for filing, fast, slow in zip(
        _filings(world, "fast"), answers["fast"], answers["slow"], strict=True
    ):
        assert fast == slow, filing
    assert direct == [expected for _, expected in _filings(world, "fast")]
    assert {201, 401, 403, 422} <= {status for status, *_ in answers["fast"]}


class Body(BaseModel):
    name: str


async def tag(request: Request) -> str:
    return "t"


async def tagged(request: Request, value: Annotated[str, Depends(tag)]) -> str:
    return value


def test_a_route_the_direct_way_cannot_serve_stops_the_start() -> None:
    app = FastAPI()

    @app.post("/header")
    @fast_path
    async def with_header(body: Body, tag: Annotated[str, Header()]) -> Response:
        return Response(b"{}")

    # A required header has no default to pass when it is absent.
    with pytest.raises(TypeError, match="header parameter 'tag'"):
        install_fast_paths(app.router.routes)

    nested = FastAPI()

    @nested.get("/nested")
    @fast_path
    async def with_nested(value: Annotated[str, Depends(tagged)]) -> Response:
        return Response(value.encode())

    # A dependency's own dependencies: only the request's session is given on the direct way.
    with pytest.raises(TypeError, match="the dependency 'value'"):
        install_fast_paths(nested.router.routes)

    other = FastAPI()

    @other.get("/model")
    @fast_path
    async def returns_a_model() -> Body:
        return Body(name="x")

    with pytest.raises(TypeError, match="return annotation"):
        install_fast_paths(other.router.routes)

    plain = FastAPI()

    @plain.get("/plain/{n}")
    @fast_path
    async def fine(n: int) -> Response:
        return Response(str(n).encode())

    assert install_fast_paths(plain.router.routes) == 1
