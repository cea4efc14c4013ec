"""Health, readiness, metrics, request ids."""

import pytest
from httpx import ASGITransport, AsyncClient

from app.core.config import Settings
from app.core.db import Database
from app.main import create_app


async def test_healthz(client: AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_with_database(client: AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200


async def test_readyz_without_database_is_503(tmp_path: object) -> None:
    settings = Settings(
        database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none",
        subject_key="k" * 32,
        audit_key="a" * 32,
    )
    app = create_app(settings)
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/readyz")
    await app.state.db.dispose()
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "nobody" not in response.text


async def test_metrics_count_requests_by_route_template(client: AsyncClient) -> None:
    await client.get("/healthz")
    await client.get("/v1/audit-events/does-not-exist-" + "x" * 10)
    text = (await client.get("/metrics")).text
    assert 'spix_dsr_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert "does-not-exist" not in text
    assert "spix_dsr_http_request_duration_seconds_bucket" in text


@pytest.mark.parametrize(
    ("sent", "echoed"), [("abc-123", True), ("bad id with spaces", False), ("", False)]
)
async def test_request_id_is_echoed_when_sane(client: AsyncClient, sent: str, echoed: bool) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": sent} if sent else {})
    assert (response.headers["x-request-id"] == sent) is echoed
    assert response.headers["x-request-id"]


def test_production_refuses_to_start_without_subject_key(tmp_path: object) -> None:
    settings = Settings(env="production", database_url="sqlite+aiosqlite://", subject_key=None)
    with pytest.raises(RuntimeError, match="SPIX_DSR_SUBJECT_KEY"):
        create_app(settings, database=Database.from_url("sqlite+aiosqlite://"))


def test_development_creates_and_keeps_a_subject_key(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    settings = Settings(database_url="sqlite+aiosqlite://", data_dir=tmp_path / "data")
    first = settings.resolve_subject_key()
    assert len(first) == 64
    assert settings.resolve_subject_key() == first
    assert (tmp_path / "data" / "subject.key").stat().st_mode & 0o077 == 0
