"""The audit key and what it computes: an event's link on the chain and its seal.

Links are HMAC-SHA256 under the audit key (SPIX_DSR_AUDIT_KEY), so rewriting an event and
recomputing the hashes after it needs the key. Events chained before the key existed (below the
head row's `keyed_from_seq`) keep their plain SHA-256 links and are verified as such.

A seal is the HMAC of an event's content alone, written with the event by its transaction.
Linking happens afterwards (app/audit/chain.py) and links only events whose seal matches, so
an event inserted or changed in the database without the key never joins the chain.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import orjson

from app.core.config import get_settings

GENESIS_HASH = "0" * 64
_SEAL = b"spix-dsr audit seal:"
_key: bytes | None = None


def use_audit_key(key: bytes) -> None:
    """Set the process's audit key (the CLI and the worker do, from their settings; the app
    hands its key to each request's session instead)."""
    global _key
    _key = key


def audit_key() -> bytes:
    """The process's audit key; unset, the configured one (production refuses to run without)."""
    global _key
    if _key is None:
        _key = get_settings().resolve_audit_key()
    return _key


def _content(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "occurred_at": row["occurred_at"].isoformat(),
        "event_type": row["event_type"],
        "actor_key_id": str(row["actor_key_id"]) if row["actor_key_id"] else None,
        "actor_role": row["actor_role"],
        "entity_type": row["entity_type"],
        "entity_id": row["entity_id"],
        "subject_request_id": (
            str(row["subject_request_id"]) if row["subject_request_id"] else None
        ),
        "details": row["details"],
    }


def _canonical(row: Mapping[str, Any]) -> bytes:
    return orjson.dumps({"seq": row["seq"], **_content(row)}, option=orjson.OPT_SORT_KEYS)


def event_hash(key: bytes, prev_hash: str, row: Mapping[str, Any]) -> str:
    """The keyed link: HMAC-SHA256(audit key, previous hash + the event's canonical JSON)."""
    return hmac.new(key, prev_hash.encode() + _canonical(row), hashlib.sha256).hexdigest()


def unkeyed_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    """The link of events chained before the audit key (below `keyed_from_seq`)."""
    digest = hashlib.sha256(prev_hash.encode())
    digest.update(_canonical(row))
    return digest.hexdigest()


def event_seal(key: bytes, row: Mapping[str, Any]) -> str:
    """HMAC-SHA256(audit key, the event's content without its chain position)."""
    body = orjson.dumps(_content(row), option=orjson.OPT_SORT_KEYS)
    return hmac.new(key, _SEAL + body, hashlib.sha256).hexdigest()


def sealed(key: bytes, row: Mapping[str, Any]) -> bool:
    """Whether the event carries the seal its content has under this key."""
    seal = row["seal"]
    return seal is not None and hmac.compare_digest(event_seal(key, row), seal)
