"""Adversarial edges: hostile cursors, NUL characters and dates at the ends of the calendar.

Each of these answered 500 (or stored what PostgreSQL cannot) before: the replays below
must answer a clear 4xx, and nothing stored may make a read fail."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.controllers.models import Controller
from app.core.db import Database
from app.core.migrate import upgrade
from app.data_categories.models import DataCategory
from app.legal_holds.models import LegalHold
from app.records.models import Record
from app.requests.models import SubjectRequest
from app.retention import policy
from app.retention.recompute import Scope, recompute
from app.systems.models import System
from tests.builders import (
    make_category,
    make_category_at_revision,
    make_controller,
    make_controller_at_revision,
    make_purpose,
    make_record,
    make_rule,
    make_system,
    make_system_at_revision,
)
from tests.databases import fresh_database

ALICE = [{"type": "email", "value": "alice@example.com"}]
PROBLEM = "application/problem+json"


@pytest.fixture
async def world(session: AsyncSession) -> dict[str, Any]:
    platform = await make_controller(session, kind="platform", name="Spix")
    await make_system(session, "voice")
    await make_category(session, "communications.recording")
    await make_purpose(session, "service.provide")
    record_id = await make_record(
        session,
        system="voice",
        controller_id=platform.id,
        categories=["communications.recording"],
        identities=ALICE,
        record_ref="rec-1",
    )
    return {"platform": platform, "record_id": record_id}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def assert_problem(response: Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:spix-dsr:problem:{slug}"
    return body


# ---------------------------------------------------------------------------------------------
# Item 7: a cursor that is not exactly what the endpoint issued is a 400 problem.

# (name, method, path, key kind); "{request}" is a filed request's id.
LISTS = [
    ("controllers", "GET", "/v1/controllers", "uuid"),
    ("systems", "GET", "/v1/systems", "text"),
    ("data-categories", "GET", "/v1/data-categories", "text"),
    ("purposes", "GET", "/v1/purposes", "text"),
    ("retention-rules", "GET", "/v1/retention-rules", "uuid"),
    ("legal-holds", "GET", "/v1/legal-holds", "uuid"),
    ("records", "GET", "/v1/records", "uuid"),
    ("lookup", "POST", "/v1/subjects/lookup", "uuid"),
    ("due", "GET", "/v1/retention/due", "due"),
    ("requests", "GET", "/v1/requests", "uuid"),
    ("request-events", "GET", "/v1/requests/{request}/events", "int"),
    ("tasks", "GET", "/v1/tasks", "uuid"),
    ("suppressions", "GET", "/v1/suppressions", "uuid"),
    ("audit-events", "GET", "/v1/audit-events", "int"),
]

A_UUID = "0b0e7c4e-5f4d-4a8e-9c39-3d1f0f2f6a11"
# Wrong for every endpoint: shapes and types no endpoint issues.
HOSTILE_ANY = {
    "list-of-object": _b64(b"[{}]"),
    "list-of-true": _b64(b"[true]"),
    "list-of-1e300": _b64(b"[1e300]"),
    "list-of-null": _b64(b"[null]"),
    "list-of-list": _b64(b"[[]]"),
    "list-of-float": _b64(b"[1.5]"),
    "empty-list": _b64(b"[]"),
    "three-items": _b64(b'[1, "a", 2]'),
    "string": _b64(b'"x"'),
    "null": _b64(b"null"),
    "object": _b64(b'{"id": 1}'),
    "not-base64": "!!!~~~",
    "not-utf8": _b64(b"\xff\xfe\xfd"),
    "not-json": _b64(b"[1,"),
    "infinity": _b64(b"[1e400]"),
    "non-ascii": "curs\u00f6r",
}
# Wrong for a kind: what some other kind of endpoint issues, or nearly its own.
HOSTILE_BY_KIND = {
    "uuid": {
        "int": _b64(b"[123]"),
        "not-a-uuid": _b64(b'["not-a-uuid"]'),
        "uuid-without-dashes": _b64(b'["0b0e7c4e5f4d4a8e9c393d1f0f2f6a11"]'),
        "nul": _b64(b'["\\u0000"]'),
    },
    "text": {
        "int": _b64(b"[123]"),
        "empty": _b64(b'[""]'),
        "nul": _b64(b'["a\\u0000b"]'),
    },
    "int": {
        "beyond-int64": _b64(b"[9223372036854775808]"),
        "beyond-uint64": _b64(b"[18446744073709551615]"),
        "beyond-64-bits": _b64(b"[99999999999999999999]"),
        "negative": _b64(b"[-1]"),
        "text": _b64(b'["5"]'),
        "bool": _b64(b"[false]"),
    },
    "due": {
        "one-item": _b64(b"[123]"),
        "naive-datetime": _b64(f'["2026-01-01T00:00:00", "{A_UUID}"]'.encode()),
        "swapped": _b64(f'["{A_UUID}", "2026-01-01T00:00:00+00:00"]'.encode()),
        "off-the-calendar": _b64(f'["0001-01-01T00:00:00+14:00", "{A_UUID}"]'.encode()),
        "number-for-datetime": _b64(f'[1e300, "{A_UUID}"]'.encode()),
        "bad-uuid": _b64(b'["2026-01-01T00:00:00+00:00", 123]'),
    },
}
CASES = [
    pytest.param(method, path, cursor, id=f"{name}-{case}")
    for name, method, path, kind in LISTS
    for case, cursor in {**HOSTILE_ANY, **HOSTILE_BY_KIND[kind]}.items()
]


@pytest.fixture
async def filed(client: AsyncClient, admin: dict[str, str], world: dict[str, Any]) -> str:
    body = {"type": "access", "regime": "gdpr", "identities": ALICE}
    response = await client.post("/v1/requests", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.mark.parametrize(("method", "path", "cursor"), CASES)
async def test_a_hostile_cursor_is_a_400_problem(
    client: AsyncClient, admin: dict[str, str], filed: str, method: str, path: str, cursor: str
) -> None:
    url = path.format(request=filed)
    params = {"cursor": cursor}
    if method == "POST":
        response = await client.post(url, params=params, json={"identities": ALICE}, headers=admin)
    else:
        response = await client.get(url, params=params, headers=admin)
    body = assert_problem(response, 400, "bad-request")
    assert body["detail"] == "The cursor is not one this service issued"


@pytest.mark.parametrize(("name", "method", "path", "kind"), LISTS, ids=[n for n, *_ in LISTS])
async def test_issued_cursors_still_page(
    client: AsyncClient,
    admin: dict[str, str],
    session: AsyncSession,
    filed: str,
    name: str,
    method: str,
    path: str,
    kind: str,
) -> None:
    """The strict decoding takes back every cursor an endpoint issues."""
    platform = (await session.scalars(select(Controller))).one()
    for index in range(3):
        await make_record(
            session,
            system="voice",
            controller_id=platform.id,
            categories=["communications.recording"],
            identities=ALICE,
            record_ref=f"more-{index}",
            collected_at="2001-01-01T00:00:00Z",
        )
    # Two of everything listed; due records need a maximum rule that has ended.
    await make_controller(session, name="Acme")
    await make_system(session, "billing")
    await make_purpose(session, "service.bill")
    await make_rule(session, kind="maximum", period="P1D", category="communications")
    await make_rule(session, kind="minimum", period="P1D", category="communications")
    session.add_all([LegalHold(reason=r, system="billing") for r in ("one", "two")])
    await session.commit()
    await recompute(session, [Scope()])
    await session.commit()
    again = {"type": "access", "regime": "gdpr", "identities": ALICE}
    assert (await client.post("/v1/requests", json=again, headers=admin)).status_code == 201
    url, seen, cursor = path.format(request=filed), 0, None
    for _ in range(20):
        params: dict[str, Any] = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        if method == "POST":
            json = {"identities": ALICE}
            response = await client.post(url, params=params, json=json, headers=admin)
        else:
            response = await client.get(url, params=params, headers=admin)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += len(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert cursor is None
    # None or one here: walked, not paged (audit-events pages the same kind of cursor).
    if name not in ("tasks", "suppressions", "request-events"):
        assert seen >= 2, f"{name}: too few items to page through"


# ---------------------------------------------------------------------------------------------
# Item 8: a NUL character in any text of a request is a 422 problem, and nothing is stored.


def _nul_locs(response: Response) -> list[list[Any]]:
    body = assert_problem(response, 422, "validation-error")
    return [error["loc"] for error in body["errors"]]


async def test_nul_in_a_record_ref_is_rejected(
    client: AsyncClient, admin: dict[str, str], session: AsyncSession, world: dict[str, Any]
) -> None:
    body = {
        "system": "voice",
        "record_ref": "rec\u0000-2",
        "controller_id": str(world["platform"].id),
        "identities": ALICE,
        "categories": ["communications.recording"],
        "collected_at": "2026-01-01T00:00:00Z",
    }
    response = await client.post("/v1/records", json=body, headers=admin)
    assert _nul_locs(response) == [["body", "record_ref"]]
    batch = {"records": [{**body, "record_ref": "fine"}, body]}
    response = await client.post("/v1/records/batch", json=batch, headers=admin)
    assert _nul_locs(response) == [["body", "records", 1, "record_ref"]]
    count = await session.scalar(select(func.count()).select_from(Record))
    assert count == 1  # the world's own record only


async def test_nul_in_a_system_description_is_rejected(
    client: AsyncClient, admin: dict[str, str], session: AsyncSession, world: dict[str, Any]
) -> None:
    body = {"key": "chat", "name": "Chat", "description": "nul \u0000 here"}
    response = await client.post("/v1/systems", json=body, headers=admin)
    assert _nul_locs(response) == [["body", "description"]]
    assert await session.get(System, "chat") is None


async def test_nul_in_a_category_name_is_rejected(
    client: AsyncClient, admin: dict[str, str], session: AsyncSession, world: dict[str, Any]
) -> None:
    body = {"key": "contact", "name": "\u0000Contact", "sensitivity": "low"}
    response = await client.post("/v1/data-categories", json=body, headers=admin)
    assert _nul_locs(response) == [["body", "name"]]
    assert await session.get(DataCategory, "contact") is None


async def test_nul_in_a_request_is_rejected(
    client: AsyncClient, admin: dict[str, str], session: AsyncSession, world: dict[str, Any]
) -> None:
    body = {
        "type": "access",
        "regime": "gdpr",
        "identities": [{"type": "email", "value": "alice@example.com\u0000"}],
        "requester": {"name": "Al\u0000ice"},
    }
    response = await client.post("/v1/requests", json=body, headers=admin)
    assert sorted(_nul_locs(response)) == [
        ["body", "identities", 0, "value"],
        ["body", "requester", "name"],
    ]
    assert await session.scalar(select(func.count()).select_from(SubjectRequest)) == 0
    # The problem names where, never the value.
    assert "alice" not in response.text.lower()


async def test_nul_in_an_object_key_and_escaped_backslashes(
    client: AsyncClient, admin: dict[str, str], world: dict[str, Any]
) -> None:
    record = str(world["record_id"])
    raw = b'{"events": {"clo\\u0000sed": "2026-01-02T00:00:00Z"}}'
    headers = {**admin, "Content-Type": "application/json"}
    response = await client.patch(f"/v1/records/{record}", content=raw, headers=headers)
    assert _nul_locs(response) == [["body", "events", "closed"]]
    # A backslash followed by "u0000" is text, not a NUL: the usual validation answers.
    raw = b'{"categories": ["\\\\u0000"]}'
    response = await client.patch(f"/v1/records/{record}", content=raw, headers=headers)
    body = assert_problem(response, 422, "validation-error")
    assert body["errors"][0]["type"] != "string_nul"


async def test_nul_in_a_query_filter_is_rejected(
    client: AsyncClient, admin: dict[str, str], world: dict[str, Any]
) -> None:
    response = await client.get("/v1/records", params={"system": "vo\u0000ice"}, headers=admin)
    assert _nul_locs(response) == [["query", "system"]]
    response = await client.get("/v1/retention/due?system=a%00b", headers=admin)
    assert _nul_locs(response) == [["query", "system"]]


# ---------------------------------------------------------------------------------------------
# Item 5: dates at the edge, and date arithmetic at the end of the calendar.


def _record_body(world: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "system": "voice",
        "record_ref": f"rec-{uuid.uuid4().hex[:8]}",
        "controller_id": str(world["platform"].id),
        "identities": ALICE,
        "categories": ["communications.recording"],
        "collected_at": "2026-01-01T00:00:00Z",
        **fields,
    }


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


FUTURE = _iso(datetime.now(UTC) + timedelta(hours=1))


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"collected_at": "9999-12-31T23:59:59Z"}, ["body", "collected_at"]),
        ({"collected_at": FUTURE}, ["body", "collected_at"]),
        ({"collected_at": "1899-12-31T23:59:59Z"}, ["body", "collected_at"]),
        ({"collected_at": "0001-01-01T00:00:00+14:00"}, ["body", "collected_at"]),
        ({"collected_at": "9999-12-31T23:00:00-05:00"}, ["body", "collected_at"]),
        ({"last_activity_at": "9999-12-31T00:00:00Z"}, ["body", "last_activity_at"]),
        ({"events": {"closed": "9999-12-31T23:59:59Z"}}, ["body", "events", "closed"]),
        ({"events": {"closed": FUTURE}}, ["body", "events", "closed"]),
    ],
    ids=[
        "collected-9999",
        "collected-in-an-hour",
        "collected-1899",
        "collected-year-1-east",
        "collected-year-10000-utc",
        "last-activity-9999",
        "event-9999",
        "event-in-an-hour",
    ],
)
async def test_dates_out_of_range_are_422(
    client: AsyncClient,
    admin: dict[str, str],
    session: AsyncSession,
    world: dict[str, Any],
    fields: dict[str, Any],
    loc: list[Any],
) -> None:
    response = await client.post("/v1/records", json=_record_body(world, **fields), headers=admin)
    body = assert_problem(response, 422, "validation-error")
    assert loc in [error["loc"] for error in body["errors"]]
    record = str(world["record_id"])
    patch = {k: v for k, v in fields.items() if k != "collected_at"}
    if patch:
        response = await client.patch(f"/v1/records/{record}", json=patch, headers=admin)
        assert_problem(response, 422, "validation-error")
    assert await session.scalar(select(func.count()).select_from(Record)) == 1


async def test_dates_within_the_clock_skew_are_accepted(
    client: AsyncClient, admin: dict[str, str], world: dict[str, Any]
) -> None:
    soon = _iso(datetime.now(UTC) + timedelta(minutes=2))
    body = _record_body(world, collected_at=soon, events={"closed": soon})
    response = await client.post("/v1/records", json=body, headers=admin)
    assert response.status_code == 201, response.text
    old = _record_body(world, collected_at="1900-01-01T00:00:00Z")
    assert (await client.post("/v1/records", json=old, headers=admin)).status_code == 201


@pytest.mark.parametrize(
    "received_at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59Z", "1899-01-01T00:00:00Z"]
)
async def test_request_received_at_out_of_range_is_422(
    client: AsyncClient, admin: dict[str, str], world: dict[str, Any], received_at: str
) -> None:
    body = {"type": "access", "regime": "gdpr", "identities": ALICE, "received_at": received_at}
    response = await client.post("/v1/requests", json=body, headers=admin)
    body = assert_problem(response, 422, "validation-error")
    assert ["body", "received_at"] in [error["loc"] for error in body["errors"]]


async def test_a_period_beyond_1000_years_is_422(
    client: AsyncClient, admin: dict[str, str], world: dict[str, Any]
) -> None:
    body = {
        "name": "forever",
        "kind": "minimum",
        "period": "P9999Y",
        "anchor": "collected_at",
        "source": "law",
        "category": "communications",
    }
    response = await client.post("/v1/retention-rules", json=body, headers=admin)
    assert_problem(response, 422, "validation-error")


def test_add_period_saturates_at_the_end_of_time() -> None:
    end = policy.END_OF_TIME
    period = policy.parse_period
    assert policy.add_period(datetime(9998, 12, 31, tzinfo=UTC), period("P1000Y")) == end
    assert policy.add_period(datetime(9999, 12, 30, tzinfo=UTC), period("P1Y")) == end
    assert policy.add_period(datetime(9999, 12, 30, 12, tzinfo=UTC), period("P1D")) == end
    assert policy.add_period(datetime(9999, 12, 31, 23, 59, tzinfo=UTC), period("P1W")) == end
    late = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    assert policy.add_period(late, period("P0D")) == end
    naive = datetime(9999, 6, 30)
    assert policy.add_period(naive, period("P1Y")) == end.replace(tzinfo=None)
    # Short of the end nothing changes.
    assert policy.add_period(datetime(9999, 6, 30, tzinfo=UTC), period("P6M")) == datetime(
        9999, 12, 30, tzinfo=UTC
    )


LATE = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)


async def _push_to_the_end(session: AsyncSession, record_id: uuid.UUID, moment: datetime) -> None:
    """What the API now refuses but a database may hold: dates at the end of the calendar."""
    await session.execute(
        update(Record)
        .where(Record.id == record_id)
        .values(
            collected_at=moment,
            last_activity_at=moment,
            events={"closed": moment.isoformat(timespec="microseconds")},
        )
    )
    await session.commit()


async def _reads_answer(
    client: AsyncClient, admin: dict[str, str], record_id: uuid.UUID
) -> dict[str, Any]:
    """Every read that touched the record before: none may fail."""
    got = await client.get(f"/v1/records/{record_id}", headers=admin)
    assert got.status_code == 200, got.text
    listed = await client.get("/v1/records", headers=admin)
    assert listed.status_code == 200, listed.text
    looked = await client.post("/v1/subjects/lookup", json={"identities": ALICE}, headers=admin)
    assert looked.status_code == 200, looked.text
    assert [item["id"] for item in looked.json()["items"]] == [str(record_id)]
    checked = await client.post(
        "/v1/retention/eligibility", json={"records": [{"id": str(record_id)}]}, headers=admin
    )
    assert checked.status_code == 200, checked.text
    due = await client.get("/v1/retention/due", headers=admin)
    assert due.status_code == 200, due.text
    erase = {"type": "erasure", "regime": "gdpr", "identities": ALICE, "verified": True}
    filed = await client.post("/v1/requests", json=erase, headers=admin)
    assert filed.status_code == 201, filed.text
    retention: dict[str, Any] = got.json()["retention"]
    return retention


@pytest.mark.parametrize("period", ["P1000Y", "P1D", "P0D"])
async def test_a_record_at_the_end_of_time_stays_readable_when_its_rule_lengthens(
    client: AsyncClient,
    admin: dict[str, str],
    session: AsyncSession,
    world: dict[str, Any],
    period: str,
) -> None:
    """The issue's replay: a record dated at the end of the calendar, then a rule that counts
    past it. Python (the rule's create) and SQL (the change's recompute) both saturate."""
    record_id = world["record_id"]
    await _push_to_the_end(session, record_id, datetime(9998, 12, 31, tzinfo=UTC))
    rule = {
        "name": "keep",
        "kind": "maximum",
        "period": "P1Y",
        "anchor": "collected_at",
        "source": "platform_default",
        "category": "communications",
    }
    created = await client.post("/v1/retention-rules", json=rule, headers=admin)
    assert created.status_code == 201, created.text
    retention = await _reads_answer(client, admin, record_id)
    assert retention["delete_by"] == "9999-12-31T00:00:00Z"

    await _push_to_the_end(session, record_id, LATE)
    for anchor in ("collected_at", "last_activity_at", "event:closed"):
        changed = await client.patch(
            f"/v1/retention-rules/{created.json()['id']}",
            json={"period": period, "anchor": anchor},
            headers={**admin, "If-Match": created.headers["ETag"]},
        )
        assert changed.status_code == 200, changed.text
        created = changed
        stored = await session.scalar(select(Record.delete_by).where(Record.id == record_id))
        assert stored == policy.END_OF_TIME
        retention = await _reads_answer(client, admin, record_id)
        assert retention["delete_by"] == "9999-12-31T00:00:00Z"
        assert retention["rules"][0]["ends_at"] == "9999-12-31T00:00:00Z"


async def test_the_migration_saturates_dates_stored_past_the_end(
    backend: str, tmp_path: Path
) -> None:
    """Dates the old recompute stored past year 9999 (PostgreSQL) or past the end of time
    (SQLite) become the end of time, and the record reads again."""
    before = "9f3a6c1e2b47"
    beyond = {
        "postgresql": "TIMESTAMP WITH TIME ZONE '10998-12-31 00:00:00+00'",
        "sqlite": "'9999-12-31 12:00:00.000000'",
    }[backend]
    async with fresh_database(backend, tmp_path, migrate=False) as url:
        await asyncio.to_thread(upgrade, url, before)
        database = Database.from_url(url)
        try:
            async with database.sessionmaker() as session:
                controller_id = await make_controller_at_revision(
                    session, kind="platform", name="Spix"
                )
                await make_system_at_revision(session, "voice")
                await make_category_at_revision(session, "communications.recording")
                far, near = [
                    await make_record(
                        session,
                        system="voice",
                        controller_id=controller_id,
                        categories=["communications.recording"],
                    )
                    for _ in range(2)
                ]
                await session.execute(
                    text(f"UPDATE records SET delete_by = {beyond}, keep_until = {beyond}")
                )
                await session.execute(
                    update(Record)
                    .where(Record.id == near)
                    .values(delete_by=datetime(2030, 1, 1, tzinfo=UTC), keep_until=None)
                )
                await session.commit()

            await asyncio.to_thread(upgrade, url)
            async with database.sessionmaker() as session:
                rows = await session.execute(select(Record.id, Record.keep_until, Record.delete_by))
                stored = {row.id: (row.keep_until, row.delete_by) for row in rows}
            end = policy.END_OF_TIME
            assert stored == {far: (end, end), near: (None, datetime(2030, 1, 1, tzinfo=UTC))}
        finally:
            await database.dispose()
