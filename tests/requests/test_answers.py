"""The three ways a request is shown agree: the answer to filing (built from what filing
wrote), the one-statement read (`GET /v1/requests/{id}`) and the page of the list (the
request's scopes and tasks read table by table). And the hot paths stay few statements."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from tests.conftest import bearer
from tests.requests.conftest import ALICE, file

# (filed by, request fields): every type, verified at intake or waiting for its code.
CASES: list[tuple[str, dict[str, Any]]] = [
    ("admin", {"type": "access"}),
    ("admin", {"type": "access", "verified": True}),
    ("admin", {"type": "portability", "verified": True, "regime": "ccpa"}),
    ("admin", {"type": "erasure", "verified": True}),
    ("admin", {"type": "restriction", "verified": True}),
    ("admin", {"type": "rectification", "verified": True, "details": {"corrections": {"n": 1}}}),
    ("admin", {"type": "objection", "verified": True, "details": {"purpose": "analytics.product"}}),
    (
        "admin",
        {"type": "objection", "verified": True, "details": {"purpose": "marketing.communications"}},
    ),
    ("admin", {"type": "opt_out", "regime": "ccpa", "details": {"channel": "email"}}),
    ("admin", {"type": "access", "regime": "uk_gdpr"}),
    ("acme", {"type": "erasure", "verified": True}),
    ("acme", {"type": "access"}),
]


async def _get(client: AsyncClient, headers: dict[str, str], request_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/requests/{request_id}", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _listed(client: AsyncClient, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    response = await client.get("/v1/requests?limit=200", headers=headers)
    assert response.status_code == 200, response.text
    return {item["id"]: item for item in response.json()["items"]}


@pytest.mark.parametrize(("filer", "fields"), CASES)
async def test_the_answer_to_filing_is_what_a_read_shows(
    client: AsyncClient,
    admin: dict[str, str],
    spix: dict[str, Any],
    filer: str,
    fields: dict[str, Any],
) -> None:
    headers = admin if filer == "admin" else spix["acme_key"]
    filed = await file(client, headers, **fields)
    challenge = filed.pop("verification")
    assert (challenge is None) == (fields.get("verified", False) or fields["type"] == "opt_out")
    assert filed == await _get(client, headers, filed["id"])
    # The list reads the scopes and tasks table by table: the same request, seen by each key.
    for key in (admin, spix["acme_key"]):
        listed = await _listed(client, key)
        if filed["id"] in listed:
            assert listed[filed["id"]] == await _get(client, key, filed["id"])


async def test_every_read_agrees_with_the_list_as_work_moves(
    client: AsyncClient,
    admin: dict[str, str],
    spix: dict[str, Any],
    session: AsyncSession,
) -> None:
    """Decided, claimed, completed and suspended work (with what holds it), as the privacy
    team, the customer and another customer see it."""
    erasure = await file(client, admin, type="erasure", verified=True)
    access = await file(client, admin, type="access", verified=True)
    decided = await client.post(
        f"/v1/requests/{access['id']}/scopes/{spix['acme'].id}/decision",
        json={"decision": "approve", "reason": "asked"},
        headers=spix["acme_key"],
    )
    assert decided.status_code == 200, decided.text
    claimed = await client.post("/v1/tasks/claim", json={}, headers=spix["keys"]["messaging"])
    (task, *_) = claimed.json()["tasks"]
    assert task["action"] == "export"
    done = await client.post(
        f"/v1/tasks/{task['id']}/complete",
        json={"result": {"data": {"messages": 3}}},
        headers=spix["keys"]["messaging"],
    )
    assert done.status_code == 200, done.text
    hold = await client.post(
        "/v1/legal-holds", json={"reason": "litigation", "system": "accounts"}, headers=admin
    )
    assert hold.status_code == 201, hold.text

    suspended = await _get(client, admin, erasure["id"])
    (erase,) = [t for s in suspended["scopes"] for t in s["tasks"] if t["action"] == "erase"]
    assert erase["status"] == "suspended"
    assert erase["held_by"] == {"holds": [hold.json()["id"]], "restricted": 0}
    stranger = await bearer(session, "controller", controller_id=spix["platform"].id)
    for key in (admin, spix["acme_key"], stranger):
        listed = await _listed(client, key)
        for request_id, item in listed.items():
            assert item == await _get(client, key, request_id)
    assert set(await _listed(client, spix["acme_key"])) == {erasure["id"], access["id"]}
    hidden = await client.get(f"/v1/requests/{erasure['id']}", headers=stranger)
    # The platform's own key sees the request through its scope, the customer's part not.
    assert [s["controller_id"] for s in hidden.json()["scopes"]] == [str(spix["platform"].id)]


@pytest.fixture
async def statements(engine: AsyncEngine, connection: AsyncConnection) -> AsyncIterator[list[str]]:
    """The statements the database is sent, savepoints (the tests' transaction) left out:
    through SQLAlchemy (its cursor event) and, on PostgreSQL, straight on the test
    connection's driver (the hot reads), without the driver's own type introspection."""
    seen: list[str] = []
    # What SQLAlchemy announced and the driver has not logged yet: the driver logs some of
    # SQLAlchemy's statements too (after running them), and those count once.
    announced: Counter[str] = Counter()

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statement = " ".join(statement.split())
        announced[statement] += 1
        if not statement.startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO")):
            seen.append(statement)

    def _driver_seen(logged: Any) -> None:
        statement = " ".join(logged.query.split())
        if announced[statement] > 0:
            announced[statement] -= 1
        elif not statement.startswith(_INTROSPECTION):
            seen.append(statement)

    driver = None
    if engine.dialect.name == "postgresql":
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        driver.add_query_logger(_driver_seen)
    yield seen
    event.remove(engine.sync_engine, "before_cursor_execute", _seen)
    if driver is not None:
        driver.remove_query_logger(_driver_seen)


# What asyncpg itself sends the first time a connection meets a type.
_INTROSPECTION = (
    "WITH RECURSIVE typeinfo_tree",
    "SELECT current_setting('jit')",
    "SELECT set_config",
)


# The statements of linking committed audit events onto the chain, after the answer.
_LINKING = (
    "SELECT audit_chain_head",
    "SELECT audit_events.id",
    "UPDATE audit_events SET seq",
    "UPDATE audit_chain_head",
    "WITH linked AS ( UPDATE audit_events",
)


def _own_and_linking(statements: list[str]) -> tuple[list[str], list[str]]:
    linking = [s for s in statements if s.startswith(_LINKING)]
    return [s for s in statements if not s.startswith(_LINKING)], linking


async def test_the_hot_paths_stay_few_statements(
    client: AsyncClient,
    admin: dict[str, str],
    spix: dict[str, Any],
    statements: list[str],
    backend: str,
) -> None:
    await file(client, admin)  # the first request of a key (its last use is noted once)
    statements.clear()
    coded = await file(client, admin)
    postgresql = backend == "postgresql"
    # The request's own transaction: on PostgreSQL one statement, the request with its
    # identities and its audit events; elsewhere the request, its identities, and at commit
    # its audit events (an insert, after reading the last entry number). Then, after the
    # answer, linking the events onto the chain, which requests committing meanwhile share
    # (app/audit/chain.py): the head locked, the events read, and the events linked with the
    # head moved (one statement on PostgreSQL, two elsewhere).
    linking_statements = 3 if postgresql else 4
    own, linking = _own_and_linking(statements)
    assert len(own) == (1 if postgresql else 2 + 2), own
    assert len(linking) == linking_statements, linking

    statements.clear()
    verified = await file(client, admin, verified=True)
    # Two controllers' scopes: the request with its identities, the records with their
    # controllers, the scopes with their records and tasks (one statement on PostgreSQL,
    # four elsewhere), the outbox's receivers; the audit events ride on the two writing
    # statements on PostgreSQL (an insert at commit elsewhere, after reading the last entry
    # number). No read of what was just written, and no question about DRP or OpenDSR links:
    # nothing points at a request filed this instant. Then the same statements of linking.
    own, linking = _own_and_linking(statements)
    assert len(own) == (1 + 1 + 1 if postgresql else 2 + 1 + 4 + 2) + 1, own
    assert len(linking) == linking_statements, linking
    assert not [s for s in statements if "drp_requests" in s or "opendsr_requests" in s]
    assert not [s for s in statements if s.startswith("SELECT subject_requests")]

    for request in (coded, verified):
        statements.clear()
        await _get(client, admin, request["id"])
        await asyncio.sleep(0)  # the driver logs its statements soon after, not during them
        assert len(statements) == 1, statements

    # A status change of a request filed earlier: whether a DRP exercise or an OpenDSR link
    # points at it (their status callbacks) is one question for both kinds of row, and,
    # nothing pointing at it, neither hook asks the database anything more.
    statements.clear()
    cancelled = await client.post(f"/v1/requests/{verified['id']}/cancel", headers=admin)
    assert cancelled.status_code == 200, cancelled.text
    await asyncio.sleep(0)
    pointers = [s for s in statements if "drp_requests" in s or "opendsr_requests" in s]
    assert len(pointers) == 1, pointers
    assert "drp_requests" in pointers[0] and "opendsr_requests" in pointers[0], pointers
    assert verified["scopes"] and ALICE
