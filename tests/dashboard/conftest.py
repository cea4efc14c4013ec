"""The dashboard's world: the small Spix of the request tests, a test IdP, and an app that
accepts its tokens (from a static JWKS file)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from app.core.config import Settings
from app.core.db import Database
from app.main import create_app
from tests.dashboard.idp import TestIdp
from tests.requests.conftest import spix  # noqa: F401  (the fixture, shared)


@pytest.fixture
def idp() -> TestIdp:
    return TestIdp()


def with_settings(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update=changes)


@pytest.fixture
def oidc_app(settings: Settings, database: Database, idp: TestIdp, tmp_path: Path) -> FastAPI:
    jwks = idp.write(tmp_path / "jwks.json")
    issuer = idp.issuer(jwks_file=str(jwks))
    return create_app(with_settings(settings, oidc_issuers=[issuer]), database=database)


@pytest.fixture
async def oidc_client(oidc_app: FastAPI) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=oidc_app)
    async with AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
