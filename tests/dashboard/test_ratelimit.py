"""Rate limits per principal and route class: 429 with Retry-After, shared through Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from httpx import ASGITransport, AsyncClient

from app.core.config import Settings
from app.core.db import Database
from app.main import create_app
from tests.dashboard.conftest import with_settings

REDIS = "redis://127.0.0.1:6379/0"


@asynccontextmanager
async def instance(
    settings: Settings, database: Database, **changes: object
) -> AsyncIterator[AsyncClient]:
    app = create_app(with_settings(settings, **changes), database=database)
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        yield client


class TestBudgets:
    async def test_a_spent_budget_answers_429_with_retry_after(
        self, settings: Settings, database: Database, admin: dict[str, str], auditor: dict[str, str]
    ) -> None:
        limits = {"read": "3/minute", "write": "2/minute"}
        async with instance(settings, database, rate_limits=limits) as client:
            for _ in range(3):
                assert (await client.get("/v1/controllers", headers=admin)).status_code == 200
            spent = await client.get("/v1/systems", headers=admin)
            assert spent.status_code == 429
            assert spent.headers["content-type"] == "application/problem+json"
            assert spent.json()["status"] == 429
            assert 1 <= int(spent.headers["retry-after"]) <= 60
            # Another principal has its own budget, and writes have theirs.
            assert (await client.get("/v1/controllers", headers=auditor)).status_code == 200
            made = await client.post(
                "/v1/systems", json={"key": "crm", "name": "CRM"}, headers=admin
            )
            assert made.status_code == 201, made.text

    async def test_an_empty_limit_lifts_the_class(
        self, settings: Settings, database: Database, admin: dict[str, str]
    ) -> None:
        async with instance(settings, database, rate_limits={"read": ""}) as client:
            for _ in range(5):
                assert (await client.get("/v1/controllers", headers=admin)).status_code == 200


class TestSharedBudget:
    async def test_two_instances_sharing_redis_share_the_budget(
        self, settings: Settings, database: Database, admin: dict[str, str]
    ) -> None:
        shared = {"rate_limits": {"read": "4/minute"}, "rate_limit_storage": REDIS}
        async with (
            instance(settings, database, **shared) as one,
            instance(settings, database, **shared) as two,
        ):
            for client in (one, two, one, two):
                assert (await client.get("/v1/controllers", headers=admin)).status_code == 200
            assert (await one.get("/v1/controllers", headers=admin)).status_code == 429
            assert (await two.get("/v1/controllers", headers=admin)).status_code == 429

    async def test_in_memory_budgets_are_per_process(
        self, settings: Settings, database: Database, admin: dict[str, str]
    ) -> None:
        limits = {"rate_limits": {"read": "2/minute"}}
        async with (
            instance(settings, database, **limits) as one,
            instance(settings, database, **limits) as two,
        ):
            for client in (one, one, two, two):
                assert (await client.get("/v1/controllers", headers=admin)).status_code == 200
            assert (await one.get("/v1/controllers", headers=admin)).status_code == 429

    async def test_an_unreachable_redis_lets_requests_through(
        self, settings: Settings, database: Database, admin: dict[str, str]
    ) -> None:
        down = {"rate_limits": {"read": "1/minute"}, "rate_limit_storage": "redis://127.0.0.1:9/0"}
        async with instance(settings, database, **down) as client:
            for _ in range(2):
                assert (await client.get("/v1/controllers", headers=admin)).status_code == 200
