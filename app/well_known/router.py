"""Documents published at well-known URLs (RFC 8615) for anyone to fetch without a key."""

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from app.core.signing import Signer
from app.webhooks.signing import whpk

router = APIRouter(prefix="/.well-known/spix-dsr", tags=["operations"])


class PublicKey(BaseModel):
    """An Ed25519 public key as a JWK (RFC 8037): `x` is the key, base64url."""

    kty: str
    crv: str
    x: str
    kid: str
    alg: str
    use: str


class KeySet(BaseModel):
    keys: list[PublicKey]


class WebhookKey(PublicKey):
    whpk: str = Field(
        description="The same key as the Standard Webhooks specification writes it: `whpk_` "
        "and the 32 bytes in standard base64",
        examples=["whpk_bB8OxwGfkOh4ogDHHrS1kn1Ro5c0zrA0ZOeP0Y2gNHk="],
    )


class WebhookKeySet(BaseModel):
    """The keys that verify `v1a` (Ed25519) webhook signatures; empty when the service has no
    webhook key (then every endpoint uses `v1`)."""

    keys: list[WebhookKey]


@router.get(
    "/receipt-keys",
    operation_id="get_receipt_keys",
    summary="The public keys that verify erasure receipts (a JSON Web Key Set, RFC 7517)",
)
async def get_receipt_keys(request: Request) -> KeySet:
    signer: Signer = request.app.state.receipt_signer
    return KeySet.model_validate(signer.jwks())


@router.get(
    "/webhook-keys",
    operation_id="get_webhook_keys",
    summary="The public keys that verify `v1a` webhook signatures (a JSON Web Key Set)",
)
async def get_webhook_keys(request: Request) -> WebhookKeySet:
    signer: Signer | None = request.app.state.webhook_signer
    if signer is None:
        return WebhookKeySet(keys=[])
    return WebhookKeySet(keys=[WebhookKey(**signer.jwk, whpk=whpk(signer))])
