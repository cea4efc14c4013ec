"""Spix's record as a processor, one per customer (GDPR Art. 30(2)): the categories of
processing carried out on the customer's behalf, read from what its registered records hold;
the sub-processors and transfers that touch that data; the security measures."""

from __future__ import annotations

import uuid
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import Principal
from app.controllers.models import Controller
from app.core.db import utcnow
from app.core.errors import NotFound
from app.recipients.models import Recipient
from app.records.models import Record, RecordProfile, RecordProfilePurpose
from app.ropa.schemas import ProcessingOnBehalf, ProcessorRecord, RopaController, RopaRecipient
from app.ropa.service import transfers_of


async def build_processor_record(
    session: AsyncSession, principal: Principal, controller_id: uuid.UUID
) -> ProcessorRecord:
    """A controller key reads only its own record; admins and auditors read any."""
    visibility = principal.visibility
    if not visibility.everything and not (
        visibility.kind == "controller" and visibility.controller_id == controller_id
    ):
        raise NotFound("No customer with this id")
    customer = await session.scalar(
        select(Controller).where(Controller.id == controller_id, Controller.kind == "customer")
    )
    if customer is None:
        raise NotFound("No customer with this id")
    platform = await session.scalar(select(Controller).where(Controller.kind == "platform"))

    # Profiles, not records: one row per distinct combination the customer's records hold.
    live = (
        select(Record.id)
        .where(Record.profile_id == RecordProfile.id, Record.state != "erased")
        .exists()
    )
    profiles = (
        await session.scalars(
            select(RecordProfile).where(RecordProfile.controller_id == controller_id, live)
        )
    ).all()
    purposes = await session.execute(
        select(RecordProfilePurpose.purpose, RecordProfile.system, RecordProfile.categories)
        .join(RecordProfile, RecordProfile.id == RecordProfilePurpose.profile_id)
        .where(RecordProfile.controller_id == controller_id, live)
    )
    per_purpose: dict[str, tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
    for purpose, system, kinds in purposes:
        per_purpose[purpose][0].add(system)
        per_purpose[purpose][1].update(kinds)
    systems = {p.system for p in profiles}
    held = {c for p in profiles for c in p.categories}

    recipients = [
        r
        for r in await session.scalars(select(Recipient).order_by(Recipient.key))
        if set(r.systems) & systems
    ]
    return ProcessorRecord(
        generated_at=utcnow(),
        processor=RopaController.model_validate(platform) if platform else None,
        controller=RopaController.model_validate(customer),
        agreement_ref=customer.agreement_ref,
        categories_of_processing=[
            ProcessingOnBehalf(
                purpose=purpose,
                systems=sorted(per_purpose[purpose][0]),
                categories=sorted(per_purpose[purpose][1]),
            )
            for purpose in sorted(per_purpose)
        ],
        systems=sorted(systems),
        categories=sorted(held),
        sub_processors=[
            RopaRecipient.model_validate(r) for r in recipients if r.role == "sub_processor"
        ],
        transfers=[RopaRecipient.model_validate(r) for r in transfers_of(recipients)],
        security_measures=platform.security_measures if platform else None,
    )
