"""Where side effects are written: services own them, entry points only call services.

Read from the source with `ast`, so a router that emits an audit event fails here before it
runs, whatever the tests of its domain exercise."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"
AUDIT_SERVICE = "app.audit.service"


def _audit_uses(tree: ast.AST) -> tuple[list[str], list[str]]:
    """Imports of the audit service, and calls of its `record`, as `line: text` findings."""
    imports: list[str] = []
    calls: list[str] = []
    record_names: set[str] = set()  # names bound to app.audit.service.record
    module_names: set[str] = set()  # names bound to the app.audit.service module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == AUDIT_SERVICE:
            imports.append(f"{node.lineno}: from {AUDIT_SERVICE} import ...")
            record_names |= {a.asname or a.name for a in node.names if a.name == "record"}
        elif isinstance(node, ast.ImportFrom) and node.module == "app.audit":
            for alias in node.names:
                if alias.name == "service":
                    imports.append(f"{node.lineno}: from app.audit import service")
                    module_names.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == AUDIT_SERVICE:
                    imports.append(f"{node.lineno}: import {AUDIT_SERVICE}")
                    module_names.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in record_names:
            calls.append(f"{node.lineno}: {func.id}(...)")
        elif (
            isinstance(func, ast.Attribute)
            and func.attr == "record"
            and ast.unparse(func.value) in module_names
        ):
            calls.append(f"{node.lineno}: {ast.unparse(func)}(...)")
    return imports, calls


def _routers() -> dict[str, Path]:
    return {path.parent.name: path for path in sorted(APP.glob("*/router.py"))}


def test_the_checker_sees_every_way_of_emitting() -> None:
    source = """
from app.audit.service import record as audit
from app.audit import service as audit_service
import app.audit.service
audit(session, principal, "x.created", "x", 1)
audit_service.record(session, principal, "x.created", "x", 1)
app.audit.service.record(session, principal, "x.created", "x", 1)
"""
    imports, calls = _audit_uses(ast.parse(source))
    assert len(imports) == 3 and len(calls) == 3
    assert _audit_uses(ast.parse("from app.audit.models import AuditEvent")) == ([], [])


def test_no_router_emits_audit_events() -> None:
    routers = _routers()
    assert {"controllers", "systems", "legal_holds", "retention_rules", "records"} <= set(routers)
    offenders = {}
    for domain, path in routers.items():
        imports, calls = _audit_uses(ast.parse(path.read_text(encoding="utf-8")))
        if imports or calls:
            offenders[f"app/{domain}/router.py"] = imports + calls
    assert not offenders, (
        "Routers parse, authorise, call one service function and shape the answer; the "
        f"service records the audit event. Move these emits into the service: {offenders}"
    )


def test_the_command_line_records_no_audit_event_itself() -> None:
    # The CLI is an entry point like a router: it names its actor (the operator) and calls
    # the service that makes the change, which records the event.
    calls = {
        str(path.relative_to(APP)): found
        for path in sorted((APP / "cli").glob("*.py"))
        if (found := _audit_uses(ast.parse(path.read_text(encoding="utf-8")))[1])
    }
    assert not calls, f"the command line records audit events itself: {calls}"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _domains() -> set[str]:
    return {p.name for p in APP.iterdir() if p.is_dir() and (p / "__init__.py").exists()} - {"core"}


def test_core_imports_no_domain() -> None:
    domains = _domains()
    offenders = {
        str(path.relative_to(APP)): sorted(
            i for i in _imports(path) if i.split(".")[:2][-1] in domains and i.startswith("app.")
        )
        for path in (APP / "core").glob("*.py")
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_retention_reads_only_the_records_tables() -> None:
    for path in (APP / "retention").glob("*.py"):
        records = {i for i in _imports(path) if i.startswith("app.records")}
        assert records <= {"app.records.models"} | {
            i for i in records if i.startswith("app.records.models.")
        }, path.name


def test_no_module_is_over_500_lines() -> None:
    long = {
        str(path.relative_to(APP)): n
        for path in APP.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 500
    }
    assert not long, f"split these by what they do: {long}"


def _sync_dependencies(dependant: object, seen: set[object]) -> list[str]:
    """Names of the plain-`def` callables among a route's dependencies, at any depth."""
    import inspect

    found = []
    for sub in dependant.dependencies:  # type: ignore[attr-defined]
        call = sub.call
        target = call if inspect.isroutine(call) or inspect.isclass(call) else call.__call__
        if target in seen:
            continue
        seen.add(target)
        if not (inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)):
            found.append(getattr(call, "__qualname__", repr(call)))
        found += _sync_dependencies(sub, seen)
    return found


def test_no_route_depends_on_a_plain_function() -> None:
    # FastAPI runs a plain `def` dependency in a worker thread: a thread hop on every request
    # (four of them cost a subject lookup a tenth of its time). Dependencies are `async def`.
    from fastapi.routing import APIRoute

    from app.core.config import Settings
    from app.main import create_app

    app = create_app(
        Settings(
            database_url="sqlite+aiosqlite:///:memory:", subject_key="x" * 32, audit_key="x" * 32
        )
    )
    sync: set[str] = set()
    for route in app.routes:
        if isinstance(route, APIRoute):
            sync.update(_sync_dependencies(route.dependant, set()))
    assert not sync, f"plain-def dependencies (make them async def): {sorted(sync)}"


def test_no_route_of_one_router_matches_a_path_of_another() -> None:
    # The app tries the hottest routers' routes first (app.main.MATCH_FIRST): safe only while
    # no path one router serves is matched by another router's route, whatever the method.

    from app.main import DOCUMENT_ORDER, MATCH_FIRST

    assert all(any(hot is router for router in DOCUMENT_ORDER) for hot in MATCH_FIRST)
    routes = [
        (number, route)
        for number, router in enumerate(DOCUMENT_ORDER)
        for route in router.routes
        if hasattr(route, "path_regex")
    ]
    overlaps = [
        (route.path, other.path)
        for number, route in routes
        for other_number, other in routes
        if number != other_number and route.path_regex.match(other.path)
    ]
    assert overlaps == []
