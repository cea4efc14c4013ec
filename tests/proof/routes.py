"""The route table, read from the application itself: each route's path, method, and the
roles its key dependency declares. A route added to the app joins every test built on this."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from app.auth.dependencies import ApiKeyAuth
from app.core.config import Settings
from app.main import create_app
from tests.builders import TEST_SUBJECT_KEY

# Every role the code knows; `roles is None` on a key dependency means any of them.
ROLES = frozenset({"admin", "auditor", "system", "controller"})


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    keyed: bool  # needs a bearer key at all
    roles: frozenset[str]  # the roles that may call it (empty when it is public)
    any_role: bool  # any key at all, even of a role this code does not know

    def admits(self, role: str) -> bool:
        return self.any_role or role in self.roles

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


def _key_dependencies(dependant: Dependant) -> Iterator[ApiKeyAuth]:
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, ApiKeyAuth):
            yield dependency.call
        yield from _key_dependencies(dependency)


def route_table() -> list[Route]:
    # Building the app opens no connection: the route table is all that is read.
    app = create_app(
        Settings(database_url="sqlite+aiosqlite:///:memory:", subject_key=TEST_SUBJECT_KEY)
    )
    routes = []
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        checks = list(_key_dependencies(route.dependant))
        roles = ROLES
        for check in checks:
            if check.roles is not None:
                roles = roles & check.roles
        any_role = bool(checks) and all(check.roles is None for check in checks)
        for method in sorted(route.methods):
            routes.append(
                Route(method, route.path, bool(checks), roles if checks else frozenset(), any_role)
            )
    return routes


ROUTES = route_table()
