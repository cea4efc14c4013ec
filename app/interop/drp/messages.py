"""Signed DRP messages: base64 of an Ed25519 signature followed by the JSON it signs (libsodium's
"combined mode"), checked in the order the protocol gives (section 3.07): decodes, the signature
verifies with the agent's key, the agent and business named inside are the ones expected, and
the message is within its issued-at / expires-at window. Pure: no database, no clock of its own.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from app.core.identity import Identity, IdentityType

SIGNATURE_BYTES = 64
SUPPORTED_VERSIONS = frozenset({"1.0"})
EXERCISES = (
    "access",
    "deletion",
    "sale:opt-out",
    "sale:opt-in",
    "access:categories",
    "access:specific",
)
# Spellings real agents send for the same actions (earlier drafts wrote an underscore).
EXERCISE_ALIASES = {"sale:opt_out": "sale:opt-out", "sale:opt_in": "sale:opt-in"}
REGIMES = ("ccpa", "voluntary")


class DrpError(Exception):
    """A refusal in the protocol's error shape (section 3.06): `code`, `message`, `fatal`."""

    def __init__(self, status: int, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fatal = fatal

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": str(self.status), "message": self.message}
        if self.fatal:
            out["fatal"] = True
        return out


def decode_verify_key(text: str) -> VerifyKey:
    """A verify key as the service directory publishes it (base64), or hex as 0.9 drafts did."""
    raw: bytes | None = None
    candidate = text.strip()
    if len(candidate) == 64:
        try:
            raw = bytes.fromhex(candidate)
        except ValueError:
            raw = None
    if raw is None:
        try:
            raw = base64.b64decode(candidate, validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) != 32:
        raise ValueError("a verify key is 32 bytes, in base64")
    return VerifyKey(raw)


def open_signed(body: bytes, key: VerifyKey) -> dict[str, Any]:
    """The JSON object the agent signed; 400 when the body is not base64 of a signed message,
    403 when the signature does not verify with the agent's key."""
    compact = b"".join(body.split())  # line breaks some encoders add
    try:
        signed = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        try:
            signed = base64.urlsafe_b64decode(compact)
        except (binascii.Error, ValueError):
            raise DrpError(400, "The body is not a base64-encoded signed message") from None
    if len(signed) <= SIGNATURE_BYTES:
        raise DrpError(400, "The body is not a base64-encoded signed message")
    try:
        message = key.verify(signed)
    except BadSignatureError:
        raise DrpError(403, "The signature does not verify with the agent's key") from None
    try:
        claims = orjson.loads(message)
    except orjson.JSONDecodeError:
        raise DrpError(400, "The signed message is not JSON") from None
    if not isinstance(claims, dict):
        raise DrpError(400, "The signed message is not a JSON object")
    return claims


def parse_time(claims: dict[str, Any], name: str) -> datetime:
    """An ISO 8601 timestamp; `Z` and `+00:00` alike, a time without an offset read as UTC."""
    value = claims.get(name)
    if not isinstance(value, str):
        raise DrpError(400, f"`{name}` must be an ISO 8601 timestamp")
    text = value.strip()
    if text.endswith(("z", "Z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise DrpError(400, f"`{name}` must be an ISO 8601 timestamp") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def check_envelope(
    claims: dict[str, Any],
    *,
    agent_id: str,
    business_id: str,
    now: datetime,
    skew: timedelta,
) -> None:
    """The agent and business named inside, and the window: refused with 403, as the
    protocol asks of a message that is not for us or not for now."""
    if claims.get("agent-id") != agent_id:
        raise DrpError(403, "`agent-id` does not match the agent of this token")
    if claims.get("business-id") != business_id:
        raise DrpError(403, "`business-id` names another covered business")
    issued = parse_time(claims, "issued-at")
    expires = parse_time(claims, "expires-at")
    if expires <= issued:
        raise DrpError(400, "`expires-at` must be after `issued-at`")
    if issued > now + skew:
        raise DrpError(403, "`issued-at` is in the future: check the agent's clock")
    if expires <= now:
        raise DrpError(403, "The message expired at `expires-at`", fatal=True)


def check_version(claims: dict[str, Any]) -> None:
    version = claims.get("drp.version")
    if version not in SUPPORTED_VERSIONS:
        raise DrpError(400, "Unsupported `drp.version`: this business speaks DRP 1.0")


@dataclass(frozen=True, slots=True)
class Exercise:
    """What an exercise asks, in the protocol's words, and the subject's identities."""

    action: str
    regime: str
    identities: list[Identity]
    verified: bool
    agent_request_id: str | None
    status_callback: str | None


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def parse_exercise(claims: dict[str, Any]) -> Exercise:
    check_version(claims)
    raw = claims.get("exercise")
    action = EXERCISE_ALIASES.get(raw, raw) if isinstance(raw, str) else None
    if action not in EXERCISES:
        raise DrpError(400, "Unsupported rights actions submitted.")
    assert isinstance(action, str)
    regime = claims.get("regime") or "voluntary"  # none given: voluntary (section 2.01)
    if regime not in REGIMES:
        raise DrpError(400, "Unsupported `regime`: this business takes `ccpa` and `voluntary`")
    identities: list[Identity] = []
    verified = False
    for claim, kind in (("email", IdentityType.email), ("phone_number", IdentityType.phone)):
        value = claims.get(claim)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip() or len(value) > 320:
            raise DrpError(400, f"`{claim}` must be a non-empty string")
        identities.append(Identity(type=kind, value=value.strip()))
        verified = verified or _flag(claims.get(f"{claim}_verified"))
    if not identities:
        raise DrpError(400, "Send the subject's `email` or `phone_number` claim")
    request_ref = claims.get("agent-request-id")
    if request_ref is not None and (not isinstance(request_ref, str) or len(request_ref) > 200):
        raise DrpError(400, "`agent-request-id` must be a string of at most 200 characters")
    callback = claims.get("status_callback")
    if callback is not None and (not isinstance(callback, str) or len(callback) > 2000):
        raise DrpError(400, "`status_callback` must be a URL")
    return Exercise(action, regime, identities, verified, request_ref, callback or None)
