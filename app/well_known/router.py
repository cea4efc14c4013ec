"""Documents published at well-known URLs (RFC 8615) for anyone to fetch without a key."""

from fastapi import APIRouter, Request
from pydantic import BaseModel

from app.core.signing import Signer

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


@router.get(
    "/receipt-keys",
    operation_id="get_receipt_keys",
    summary="The public keys that verify erasure receipts (a JSON Web Key Set, RFC 7517)",
)
async def get_receipt_keys(request: Request) -> KeySet:
    signer: Signer = request.app.state.receipt_signer
    return KeySet.model_validate(signer.jwks())
