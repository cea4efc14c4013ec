"""The shared HTTP machinery: problems, body limit, idempotency, commit before response."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from httpx import AsyncClient
from pydantic import BaseModel
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.audit.service import record
from app.auth.dependencies import AnyKey
from app.core.idempotency import IdempotencyDep
from app.core.session import SessionDep

PROBLEM = "application/problem+json"


class WidgetIn(BaseModel):
    name: str
    size: int


class WidgetOut(BaseModel):
    name: str
    size: int
    events_before: int


probe = APIRouter(prefix="/probe")


@probe.post("/widgets", status_code=201)
async def create_widget(
    body: WidgetIn, session: SessionDep, principal: AnyKey, idem: IdempotencyDep
) -> Any:
    before = await session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.event_type == "probe.widget")
    )
    record(session, principal, "probe.widget", "widget", body.name[:50])
    out = WidgetOut(name=body.name, size=body.size, events_before=before or 0)
    return await idem.respond(out, 201, headers={"Location": f"/probe/widgets/{body.name}"})


@probe.get("/boom")
async def boom(_principal: AnyKey) -> dict[str, str]:
    raise RuntimeError("internal detail that must not leak")


@probe.post("/failing-commit")
async def failing_commit(session: SessionDep, principal: AnyKey) -> dict[str, str]:
    record(session, principal, "probe.lost", "widget", "x")

    def fail(_session: Any) -> None:
        raise OperationalError("COMMIT", {}, Exception("disk full"))

    event.listen(session.sync_session, "before_commit", fail, once=True)
    return {"status": "written"}


@pytest.fixture
def probed(app: FastAPI) -> FastAPI:
    app.include_router(probe)
    return app


async def probe_events(session: AsyncSession, event_type: str) -> int:
    count = await session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.event_type == event_type)
    )
    return int(count or 0)


class TestProblems:
    async def test_unknown_route_is_a_problem(self, client: AsyncClient) -> None:
        response = await client.get("/v1/nothing-here")
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM
        body = response.json()
        assert body["status"] == 404 and body["type"].endswith("not-found")
        assert {"type", "title", "status", "detail"} <= body.keys()

    async def test_wrong_method_is_a_problem(self, client: AsyncClient) -> None:
        response = await client.delete("/healthz")
        assert response.status_code == 405
        assert response.headers["content-type"] == PROBLEM

    async def test_missing_key_is_401(self, client: AsyncClient) -> None:
        response = await client.get("/v1/audit-events")
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM
        assert response.headers["www-authenticate"] == "Bearer"

    @pytest.mark.parametrize(
        "header", ["Bearer nope", "Bearer sdsr_abc_def", "Basic Zm9vOmJhcg==", "Bearer "]
    )
    async def test_unknown_key_is_401(self, client: AsyncClient, header: str) -> None:
        response = await client.get("/v1/audit-events", headers={"Authorization": header})
        assert response.status_code == 401

    async def test_malformed_json_is_400(
        self, probed: FastAPI, client: AsyncClient, admin: dict[str, str]
    ) -> None:
        response = await client.post(
            "/probe/widgets",
            content=b'{"name": "a",',
            headers={**admin, "content-type": "application/json"},
        )
        assert response.status_code == 400
        assert response.headers["content-type"] == PROBLEM

    async def test_validation_error_names_fields_without_echoing_input(
        self, probed: FastAPI, client: AsyncClient, admin: dict[str, str]
    ) -> None:
        response = await client.post(
            "/probe/widgets", json={"name": "alice@example.com", "size": "big"}, headers=admin
        )
        assert response.status_code == 422
        assert response.headers["content-type"] == PROBLEM
        body = response.json()
        assert body["errors"][0]["loc"] == ["body", "size"]
        assert "alice@example.com" not in response.text and "big" not in response.text

    async def test_unexpected_error_is_500_without_internals(
        self, probed: FastAPI, client: AsyncClient, admin: dict[str, str]
    ) -> None:
        response = await client.get("/probe/boom", headers={**admin, "X-Request-ID": "req-42"})
        assert response.status_code == 500
        assert response.headers["content-type"] == PROBLEM
        assert "internal detail" not in response.text and "Traceback" not in response.text
        assert response.json()["request_id"] == "req-42"
        assert response.headers["x-request-id"] == "req-42"


class TestBodyLimit:
    async def test_declared_oversize_body_is_413(
        self, probed: FastAPI, client: AsyncClient, admin: dict[str, str]
    ) -> None:
        body = b'{"name": "' + b"x" * (1100 * 1024) + b'", "size": 1}'
        response = await client.post(
            "/probe/widgets", content=body, headers={**admin, "content-type": "application/json"}
        )
        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM

    async def test_streamed_oversize_body_is_413(
        self, probed: FastAPI, client: AsyncClient, admin: dict[str, str]
    ) -> None:
        async def chunks() -> Any:
            yield b'{"name": "'
            for _ in range(1100):
                yield b"x" * 1024
            yield b'", "size": 1}'

        response = await client.post(
            "/probe/widgets",
            content=chunks(),
            headers={**admin, "content-type": "application/json"},
        )
        assert response.status_code == 413

    async def test_body_under_limit_passes(
        self, probed: FastAPI, client: AsyncClient, admin: dict[str, str]
    ) -> None:
        response = await client.post(
            "/probe/widgets", json={"name": "x" * 1000, "size": 1}, headers=admin
        )
        assert response.status_code == 201


class TestCommitBeforeResponse:
    async def test_failing_commit_is_500_and_nothing_is_kept(
        self, probed: FastAPI, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        response = await client.post("/probe/failing-commit", headers=admin)
        assert response.status_code == 500
        assert response.headers["content-type"] == PROBLEM
        assert await probe_events(session, "probe.lost") == 0

    async def test_successful_write_is_committed(
        self, probed: FastAPI, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        response = await client.post("/probe/widgets", json={"name": "a", "size": 1}, headers=admin)
        assert response.status_code == 201
        assert await probe_events(session, "probe.widget") == 1


class TestIdempotency:
    async def test_replay_returns_first_response_and_runs_once(
        self, probed: FastAPI, client: AsyncClient, admin: dict[str, str], session: AsyncSession
    ) -> None:
        headers = {**admin, "Idempotency-Key": "k-1"}
        first = await client.post("/probe/widgets", json={"name": "a", "size": 1}, headers=headers)
        # Same body with other key order and spacing is the same request.
        second = await client.post(
            "/probe/widgets",
            content=b'{"size": 1,  "name": "a"}',
            headers={**headers, "content-type": "application/json"},
        )
        assert first.status_code == second.status_code == 201
        assert first.json() == second.json()
        assert second.headers["idempotent-replayed"] == "true"
        assert second.headers["location"] == "/probe/widgets/a"
        assert await probe_events(session, "probe.widget") == 1

    async def test_same_key_other_body_is_409(
        self, probed: FastAPI, client: AsyncClient, admin: dict[str, str]
    ) -> None:
        headers = {**admin, "Idempotency-Key": "k-2"}
        await client.post("/probe/widgets", json={"name": "a", "size": 1}, headers=headers)
        response = await client.post(
            "/probe/widgets", json={"name": "b", "size": 1}, headers=headers
        )
        assert response.status_code == 409
        assert response.headers["content-type"] == PROBLEM

    async def test_keys_are_per_api_key(
        self,
        probed: FastAPI,
        client: AsyncClient,
        admin: dict[str, str],
        auditor: dict[str, str],
        session: AsyncSession,
    ) -> None:
        await client.post(
            "/probe/widgets",
            json={"name": "a", "size": 1},
            headers={**admin, "Idempotency-Key": "shared"},
        )
        other = await client.post(
            "/probe/widgets",
            json={"name": "a", "size": 1},
            headers={**auditor, "Idempotency-Key": "shared"},
        )
        assert other.status_code == 201 and "idempotent-replayed" not in other.headers
        assert await probe_events(session, "probe.widget") == 2

    async def test_failed_request_does_not_burn_the_key(
        self, probed: FastAPI, client: AsyncClient, admin: dict[str, str]
    ) -> None:
        headers = {**admin, "Idempotency-Key": "k-3"}
        bad = await client.post("/probe/widgets", json={"name": "a"}, headers=headers)
        assert bad.status_code == 422
        good = await client.post(
            "/probe/widgets", json={"name": "a"} | {"size": 2}, headers=headers
        )
        assert good.status_code == 201
