"""A request that waits for its code, filed through the API, is written from its row alone,
with no ORM object (app/requests/writes.py, `write_request_row`); filed any other way, from its
object. Both must write the same request: every column, defaults included, and the same
identities. A column missing from the row's defaults would show here as a difference."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import select

from app.auth.service import Principal
from app.requests import intake
from app.requests.context import app_context
from app.requests.models import RequestIdentity, SubjectRequest
from app.requests.schemas import RequestCreate
from tests.requests.conftest import ALICE, file

# Different for every filing: compared as set or not set.
_OWN = {
    "id",
    "filed_by_key_id",
    "contact_sealed",
    "verification_code_hash",
    "verification_expires_at",
    "clock_paused_at",
    "received_at",
    "acknowledge_by",
    "due_at",
    "created_at",
    "updated_at",
}


async def _stored(app: FastAPI, request_id: uuid.UUID) -> tuple[dict[str, Any], set[Any]]:
    async with app.state.db.sessionmaker() as session:
        row = (
            (
                await session.execute(
                    select(SubjectRequest.__table__).where(
                        SubjectRequest.__table__.c.id == request_id
                    )
                )
            )
            .mappings()
            .one()
        )
        identities = await session.execute(
            select(
                RequestIdentity.identity_type, RequestIdentity.key_id, RequestIdentity.digest
            ).where(RequestIdentity.request_id == request_id)
        )
        return dict(row), set(identities.all())


@pytest.mark.parametrize("regime", ["gdpr", "uk_gdpr"])
async def test_a_code_filing_from_its_row_writes_what_one_from_its_object_writes(
    client: AsyncClient, admin: dict[str, str], app: FastAPI, regime: str
) -> None:
    body = {"type": "access", "regime": regime, "identities": ALICE, "channel": "web"}
    answered = await file(client, admin, **body)  # the API's way: from the row
    async with app.state.db.sessionmaker() as session:
        request, challenge = await intake.file_request(  # from the object
            session,
            Principal(key_id=uuid.uuid4(), role="admin"),
            RequestCreate.model_validate(body),
            app_context(app),
        )
        assert challenge is not None
        await session.commit()
    from_row, row_identities = await _stored(app, uuid.UUID(answered["id"]))
    from_object, object_identities = await _stored(app, request.id)
    assert from_row.keys() == from_object.keys()
    for column in from_row:
        if column in _OWN:
            assert (from_row[column] is None) == (from_object[column] is None), column
        else:
            assert from_row[column] == from_object[column], column
    assert row_identities == object_identities
    assert from_row["verification_method"] == "code"
    assert (from_row["clock_paused_at"] is not None) == (regime == "uk_gdpr")
