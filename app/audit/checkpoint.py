"""Checkpoints: the signed head of the audit chain, to keep outside the database.

The chain's own head row lives next to the events, so whoever can cut the log can move the
head too. A checkpoint names the head event (position, id, hash) and the start of keyed links,
signed with the audit key; `spix-dsr audit verify --since-checkpoint` later proves that this
event is still there, unchanged, and that the chain runs from it to the head.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditChainHead, AuditEvent
from app.audit.service import Anchor, audit_key
from app.core.db import utcnow

_FIELDS = ("seq", "event_id", "hash", "keyed_from", "taken_at")


class InvalidCheckpoint(ValueError):
    """Not a checkpoint, or not one signed with this audit key."""


def _mac(key: bytes, fields: dict[str, Any]) -> str:
    body = orjson.dumps({f: fields[f] for f in _FIELDS}, option=orjson.OPT_SORT_KEYS)
    return hmac.new(key, b"spix-dsr audit checkpoint:" + body, hashlib.sha256).hexdigest()


async def take_checkpoint(session: AsyncSession, *, key: bytes | None = None) -> str:
    """One JSON line describing the chain's head, signed; empty chains have nothing to sign."""
    key = key or audit_key()
    seq, keyed_from = (
        await session.execute(
            select(AuditChainHead.seq, AuditChainHead.keyed_from_seq).where(AuditChainHead.id == 1)
        )
    ).one()
    event = (
        await session.execute(select(AuditEvent.id, AuditEvent.hash).where(AuditEvent.seq == seq))
    ).one_or_none()
    if event is None:
        raise InvalidCheckpoint("the audit chain has no events yet: nothing to checkpoint")
    fields: dict[str, Any] = {
        "seq": seq,
        "event_id": str(event.id),
        "hash": event.hash,
        "keyed_from": keyed_from,
        "taken_at": utcnow().isoformat(),
    }
    fields["mac"] = _mac(key, fields)
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS).decode()


def read_checkpoint(file_or_text: str, *, key: bytes | None = None) -> Anchor:
    """Parse a checkpoint given as its JSON line or a file holding it; check its signature."""
    key = key or audit_key()
    text = file_or_text.strip()
    if not text.startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise InvalidCheckpoint(f"{text}: neither a checkpoint nor a file holding one")
        text = path.read_text(encoding="utf-8").strip()
    try:
        fields = orjson.loads(text)
        anchor = Anchor(
            seq=int(fields["seq"]),
            event_id=uuid.UUID(fields["event_id"]),
            hash=str(fields["hash"]),
            keyed_from=int(fields["keyed_from"]),
        )
        datetime.fromisoformat(fields["taken_at"])
        given = str(fields["mac"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise InvalidCheckpoint("not a checkpoint of `spix-dsr audit checkpoint`") from None
    if not hmac.compare_digest(_mac(key, fields), given):
        raise InvalidCheckpoint("the checkpoint's signature does not match this audit key")
    return anchor
