"""Where side effects are written: services own them, entry points only call services.

Read from the source with `ast`, so a router that emits an audit event fails here before it
runs, whatever the tests of its domain exercise."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"
AUDIT_SERVICE = "app.audit.service"

# Routers whose audit emits move into their services on another branch of the same change.
# Empty this at merge: an entry whose router no longer emits fails below, so none goes stale.
# (The requests and tasks routers emit nothing already; only the records router is left.)
NOT_YET_MOVED = {
    "records",
}


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
    assert {"controllers", "systems", "legal_holds", "retention_rules"} <= set(routers)
    offenders = {}
    for domain, path in routers.items():
        imports, calls = _audit_uses(ast.parse(path.read_text(encoding="utf-8")))
        if (imports or calls) and domain not in NOT_YET_MOVED:
            offenders[f"app/{domain}/router.py"] = imports + calls
    assert not offenders, (
        "Routers parse, authorise, call one service function and shape the answer; the "
        f"service records the audit event. Move these emits into the service: {offenders}"
    )


def test_the_allow_list_names_only_routers_that_still_emit() -> None:
    routers = _routers()
    stale = sorted(
        domain
        for domain in NOT_YET_MOVED
        if domain not in routers
        or _audit_uses(ast.parse(routers[domain].read_text(encoding="utf-8"))) == ([], [])
    )
    assert not stale, f"Remove {stale} from NOT_YET_MOVED: those routers emit nothing now"


def test_the_command_line_records_no_audit_event_itself() -> None:
    # The CLI is an entry point like a router: it names its actor (the operator) and calls
    # the service that makes the change, which records the event.
    _, calls = _audit_uses(ast.parse((APP / "cli.py").read_text(encoding="utf-8")))
    assert not calls, f"app/cli.py records audit events itself: {calls}"
