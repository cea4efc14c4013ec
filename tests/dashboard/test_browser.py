"""A real browser: Debian's headless Chromium, driven by Playwright (no browser download).

A dashboard page served from a second loopback origin signs in with a test token, calls the
API across origins (the CORS preflight passes), lists the scopes awaiting its customer and
approves one; and `/docs` renders its operations with no network beyond loopback."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import uvicorn
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from app.core.config import Settings
from app.core.db import Database
from app.main import create_app
from tests.dashboard.conftest import with_settings
from tests.dashboard.idp import TestIdp
from tests.dashboard.test_oidc import AWAITING, globex_request
from tests.requests.conftest import file

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.async_api import Browser, Request, async_playwright
    from playwright.async_api import Route as PwRoute
except ImportError:  # pragma: no cover - the test extra installs it
    async_playwright = None  # type: ignore[assignment]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or async_playwright is None,
    reason="Chromium (Debian package `chromium`; .ci/run installs it) or Playwright is missing",
)

# Flags for a root user on a machine with no outside network: no sandbox (root), and none of
# the background connections Chromium makes on its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    # Nothing resolves but loopback: a page that reaches for a CDN would find nothing there.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]

DASHBOARD_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Spix privacy dashboard (test)</title></head>
<body>
<h1>Requests awaiting your decision</h1>
<p id="status">signing in</p>
<ul id="queue"></ul>
<script>
const params = new URLSearchParams(location.hash.slice(1));
const api = params.get("api"), token = params.get("token"), controller = params.get("controller");
const headers = {"Authorization": "Bearer " + token};
async function load() {
  const response = await fetch(api + "/v1/requests?scope_status=awaiting_controller", {headers});
  if (!response.ok) {
    document.getElementById("status").textContent = "error " + response.status;
    return;
  }
  const page = await response.json();
  const queue = document.getElementById("queue");
  queue.innerHTML = "";
  for (const item of page.items) {
    const li = document.createElement("li");
    li.dataset.id = item.id;
    li.textContent = item.type + " " + item.id + " ";
    const button = document.createElement("button");
    button.textContent = "Approve";
    button.onclick = () => approve(item.id);
    li.appendChild(button);
    queue.appendChild(li);
  }
  document.getElementById("status").textContent = "loaded " + page.items.length;
}
async function approve(id) {
  const response = await fetch(api + "/v1/requests/" + id + "/scopes/" + controller + "/decision", {
    method: "POST",
    headers: {...headers, "Content-Type": "application/json"},
    body: JSON.stringify({decision: "approve", reason: "approved in the dashboard"}),
  });
  const body = await response.json();
  const rid = response.headers.get("X-Request-ID") ? "yes" : "no";
  document.getElementById("status").textContent =
    "decided " + response.status + " " + body.scopes[0].status + " rid:" + rid;
}
load();
</script>
</body></html>
"""


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """The app on a loopback port, in this event loop (so it shares the test's database)."""
    sock = _listening_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.02)
        assert server.started, "the loopback server did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    assert async_playwright is not None and CHROMIUM is not None
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


def dashboard_app() -> Starlette:
    async def page(_request: Any) -> HTMLResponse:
        return HTMLResponse(DASHBOARD_PAGE)

    return Starlette(routes=[Route("/", page)])


class Recorded:
    """The API app, noting the method and path of each request it is sent."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.seen: list[tuple[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)


@pytest.fixture
async def browser_api(
    settings: Settings, database: Database, idp: TestIdp, tmp_path: Path
) -> AsyncIterator[tuple[Recorded, str, str]]:
    """The API and the dashboard, each on its own loopback origin."""
    async with serving(dashboard_app()) as dashboard:
        issuer = idp.issuer(jwks_file=str(idp.write(tmp_path / "jwks.json")))
        app = Recorded(
            create_app(
                with_settings(settings, oidc_issuers=[issuer], cors_origins=[dashboard]),
                database=database,
            )
        )
        async with serving(app) as api:
            yield app, api, dashboard


class TestInTheBrowser:
    async def test_the_dashboard_signs_in_and_approves_across_origins(
        self,
        browser_api: tuple[Recorded, str, str],
        client: AsyncClient,
        admin: dict[str, str],
        spix: dict[str, Any],
        idp: TestIdp,
        session: AsyncSession,
    ) -> None:
        recorded, api, dashboard = browser_api
        acme = spix["acme"].id
        mine = await file(client, admin, type="erasure", verified=True)
        _globex, theirs = await globex_request(session, client, admin)
        token = idp.staff(acme)["Authorization"].removeprefix("Bearer ")
        async with chromium() as browser:
            page = await browser.new_page()
            await page.goto(f"{dashboard}/#api={api}&token={token}&controller={acme}")
            await page.wait_for_function(
                "document.getElementById('status').textContent.startsWith('loaded')",
                timeout=10_000,
            )
            listed = await page.eval_on_selector_all(
                "#queue li", "els => els.map(e => e.dataset.id)"
            )
            assert listed == [mine["id"]]
            assert theirs["id"] not in listed
            await page.click(f"#queue li[data-id='{mine['id']}'] button")
            await page.wait_for_function(
                "document.getElementById('status').textContent.startsWith('decided')",
                timeout=10_000,
            )
            status = await page.text_content("#status")
            # 200, the scope moved on, and the exposed request id was readable across origins.
            assert status == "decided 200 in_progress rid:yes", status
        # Chromium asked first (the Authorization header is not CORS-safelisted), then called.
        decision = f"/v1/requests/{mine['id']}/scopes/{acme}/decision"
        assert ("OPTIONS", "/v1/requests") in recorded.seen
        assert recorded.seen.index(("OPTIONS", decision)) < recorded.seen.index(("POST", decision))
        queue = await client.get(AWAITING, headers=spix["acme_key"])
        assert queue.json()["items"] == []

    async def test_docs_render_with_no_network_beyond_loopback(
        self, browser_api: tuple[Recorded, str, str], admin: dict[str, str]
    ) -> None:
        _app, api, _dashboard = browser_api
        outside: list[str] = []

        async def loopback_only(route: PwRoute, request: Request) -> None:
            if urlsplit(request.url).hostname in ("127.0.0.1", "localhost"):
                await route.continue_()
            else:
                outside.append(request.url)
                await route.abort()

        async with chromium() as browser:
            page = await browser.new_page()
            await page.route("**/*", loopback_only)
            await page.goto(f"{api}/docs")
            await page.wait_for_selector(".opblock", timeout=15_000)
            operations = await page.locator(".opblock").count()
            assert operations > 40

            await page.goto(f"{api}/redoc")
            await page.wait_for_selector("[data-section-id]", timeout=15_000)
            assert await page.locator("[data-section-id]").count() > 10
        assert outside == [], outside
        # The dashboard's JSON reached the browser unchanged: the spec is the one served.
        spec = json.loads((await _fetch(api, "/openapi.json")).decode())
        assert "/v1/api-keys" in spec["paths"]


async def _fetch(base: str, path: str) -> bytes:
    async with AsyncClient(base_url=base) as http:
        return (await http.get(path)).content
