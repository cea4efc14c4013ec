"""A DRP authorized agent as a test drives it: its own Ed25519 keys (made here), signed
messages in libsodium's combined mode, and the calls of the protocol."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from httpx import AsyncClient, Response
from nacl.signing import SigningKey

BUSINESS_ID = "SPIX_DSR_TEST"


def stamp(at: datetime, style: str = "z") -> str:
    text = at.astimezone(UTC).replace(microsecond=0).isoformat()
    if style == "z":
        return text.replace("+00:00", "Z")
    if style == "naive":
        return text.replace("+00:00", "")
    return text


@dataclass
class Agent:
    client: AsyncClient
    agent_id: str = field(default_factory=lambda: f"AGENT_{uuid.uuid4().hex[:8].upper()}")
    key: SigningKey = field(default_factory=SigningKey.generate)
    token: str | None = None

    @property
    def verify_key(self) -> str:
        return base64.b64encode(bytes(self.key.verify_key)).decode()

    def envelope(
        self, *, issued: datetime | None = None, ttl: int = 600, style: str = "z"
    ) -> dict[str, Any]:
        now = issued or datetime.now(UTC)
        return {
            "agent-id": self.agent_id,
            "business-id": BUSINESS_ID,
            "issued-at": stamp(now, style),
            "expires-at": stamp(now + timedelta(seconds=ttl), style),
        }

    def sign(self, message: dict[str, Any], key: SigningKey | None = None) -> bytes:
        signed = (key or self.key).sign(orjson.dumps(message))  # signature + message
        return base64.b64encode(bytes(signed))

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}", "Content-Type": "text/plain"}

    async def register(self, admin: dict[str, str], **fields: Any) -> None:
        body = {"agent_id": self.agent_id, "name": "Test Agent", "verify_key": self.verify_key}
        response = await self.client.post("/v1/drp-agents", json=body | fields, headers=admin)
        assert response.status_code == 201, response.text

    async def set_up(self, **envelope: Any) -> Response:
        message = self.envelope(**envelope) | {"drp.version": "1.0"}
        response = await self.client.post(
            f"/drp/v1/agent/{self.agent_id}",
            content=self.sign(message),
            headers={"Content-Type": "text/plain"},
        )
        if response.status_code == 200:
            self.token = response.json()["token"]
        return response

    def exercise_message(self, exercise: str, email: str, **extra: Any) -> dict[str, Any]:
        return (
            self.envelope()
            | {
                "drp.version": "1.0",
                "exercise": exercise,
                "regime": "ccpa",
                "email": email,
                "email_verified": True,
                "agent-request-id": uuid.uuid4().hex,
            }
            | extra
        )

    async def exercise(self, exercise: str, email: str, **extra: Any) -> Response:
        return await self.post_signed(self.exercise_message(exercise, email, **extra))

    async def post_signed(self, message: dict[str, Any], **kwargs: Any) -> Response:
        return await self.client.post(
            "/drp/v1/data-rights-request",
            content=self.sign(message, **kwargs),
            headers=self.headers(),
        )

    async def status(self, request_id: str, token: str | None = None) -> Response:
        return await self.client.get(
            f"/drp/v1/data-rights-request/{request_id}", headers=self.headers(token)
        )

    async def revoke(self, request_id: str, reason: str = "changed my mind") -> Response:
        message = self.envelope() | {"reason": reason}
        return await self.client.request(
            "DELETE",
            f"/drp/v1/data-rights-request/{request_id}",
            content=self.sign(message),
            headers=self.headers(),
        )
