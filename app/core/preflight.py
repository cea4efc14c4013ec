"""OPTIONS without CORS: what a path allows, rather than the router's 405 naming only the
methods of the first route that shares the path."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send


class AllowMiddleware:
    """Answers `OPTIONS <path>` with 204 and an `Allow` header listing every method the path's
    routes take. Installed only when no CORS origin is configured (CORS answers preflights
    itself then). A path no route serves is passed on (404)."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "OPTIONS":
            await self.app(scope, receive, send)
            return
        methods: set[str] = set()
        for route in self.routes:
            route_methods = getattr(route, "methods", None)
            if route_methods and route.matches(scope)[0] != Match.NONE:
                methods.update(route_methods)
        if not methods:
            await self.app(scope, receive, send)
            return
        methods.add("OPTIONS")
        allow = ", ".join(sorted(methods)).encode()
        await send({"type": "http.response.start", "status": 204, "headers": [(b"allow", allow)]})
        await send({"type": "http.response.body", "body": b""})
