"""CORS for the dashboard's origins, and docs whose assets come from the service itself."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from httpx import ASGITransport, AsyncClient

from app.core.config import Settings
from app.core.db import Database
from app.main import create_app
from tests.dashboard.conftest import with_settings

DASHBOARD = "https://dashboard.spix.example"


class TestOriginsSetting:
    @pytest.mark.parametrize(
        "raw",
        [
            "https://dashboard.spix.example,https://admin.spix.example",
            " https://dashboard.spix.example , https://admin.spix.example ",
            '["https://dashboard.spix.example", "https://admin.spix.example"]',
        ],
    )
    def test_a_json_list_or_a_comma_separated_string(
        self, raw: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SPIX_DSR_CORS_ORIGINS", raw)
        assert Settings().cors_origins == [DASHBOARD, "https://admin.spix.example"]

    def test_a_single_origin(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("SPIX_DSR_CORS_ORIGINS", DASHBOARD)
        assert Settings().cors_origins == [DASHBOARD]

    def test_unset_or_empty(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("SPIX_DSR_CORS_ORIGINS", "")
        assert Settings().cors_origins == []


class TestCors:
    @pytest.fixture
    async def cors_client(
        self, settings: Settings, database: Database
    ) -> AsyncIterator[AsyncClient]:
        app = create_app(with_settings(settings, cors_origins=[DASHBOARD]), database=database)
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as c:
            yield c

    async def test_preflight_from_the_dashboard_passes(self, cors_client: AsyncClient) -> None:
        response = await cors_client.options(
            "/v1/requests/0194f5b2-0000-7000-8000-000000000000/scopes/x/decision",
            headers={
                "Origin": DASHBOARD,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
            },
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == DASHBOARD
        assert "POST" in response.headers["access-control-allow-methods"]

    async def test_preflight_from_elsewhere_is_refused(self, cors_client: AsyncClient) -> None:
        response = await cors_client.options(
            "/v1/requests",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert response.status_code == 400
        assert "access-control-allow-origin" not in response.headers

    async def test_answers_expose_the_headers_a_dashboard_reads(
        self, cors_client: AsyncClient, admin: dict[str, str]
    ) -> None:
        response = await cors_client.get("/v1/controllers", headers={**admin, "Origin": DASHBOARD})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == DASHBOARD
        exposed = {
            h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
        }
        assert {"etag", "location", "retry-after", "x-request-id"} <= exposed
        # Errors too (a 401 must be readable by the dashboard to send the user to sign in).
        refused = await cors_client.get("/v1/controllers", headers={"Origin": DASHBOARD})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == DASHBOARD


class TestDocs:
    async def test_swagger_ui_loads_its_assets_from_the_service(self, client: AsyncClient) -> None:
        page = await client.get("/docs")
        assert page.status_code == 200
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sources and all(s.startswith("/") for s in sources), sources
        assert "cdn" not in page.text
        for source in sources:
            asset = await client.get(source)
            assert asset.status_code == 200, source
            assert len(asset.content) > 1000

    async def test_redoc_is_served_and_loads_its_script_from_the_service(
        self, client: AsyncClient
    ) -> None:
        page = await client.get("/redoc")
        assert page.status_code == 200
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sources and all(s.startswith("/") for s in sources), sources
        assert "fonts.googleapis" not in page.text
        script = await client.get("/docs-assets/redoc.standalone.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
