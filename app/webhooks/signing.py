"""Standard Webhooks signatures (https://www.standardwebhooks.com).

`v1`: HMAC-SHA256 with the endpoint's `whsec_` secret, made with the `standardwebhooks` package
so receivers verify with the same library in any language.

`v1a`: the specification's asymmetric scheme, Ed25519 with the service's webhook key, so a
receiver holds no secret: it verifies with our public key (published at
/.well-known/spix-dsr/webhook-keys, also in the specification's `whpk_` form). Both sign the
same content, `{webhook-id}.{webhook-timestamp}.{body}`; the signature is standard base64.
The `standardwebhooks` package signs only `v1`, so `v1a` is made here with `cryptography`."""

from __future__ import annotations

import base64
import os
from datetime import datetime
from math import floor

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from standardwebhooks.webhooks import Webhook

from app.core.signing import Signer, SigningKeyError, load_private_key

SCHEMES = ("v1", "v1a")
_PUBLIC_PREFIX = "whpk_"
_PRIVATE_PREFIX = "whsk_"


def new_secret() -> str:
    """A `whsec_` secret as the specification writes it: base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def signature_header(secrets: list[str], msg_id: str, timestamp: datetime, body: str) -> str:
    """`webhook-signature`: one `v1,` signature per secret, space-separated (during a rotation
    the old and the new secret both sign, so a receiver holding either verifies)."""
    return " ".join(Webhook(secret).sign(msg_id, timestamp, body) for secret in secrets)


def signed_content(msg_id: str, timestamp: datetime, body: str) -> bytes:
    """What both schemes sign: id, timestamp (whole seconds) and body, joined by dots."""
    return f"{msg_id}.{floor(timestamp.timestamp())}.{body}".encode()


def asymmetric_signature(signer: Signer, msg_id: str, timestamp: datetime, body: str) -> str:
    """`webhook-signature` of the `v1a` scheme: `v1a,` and the Ed25519 signature."""
    signature = signer.key.sign(signed_content(msg_id, timestamp, body))
    return "v1a," + base64.b64encode(signature).decode()


def webhook_signer(material: bytes | None) -> Signer | None:
    """The webhook key from its configured form (PEM, base64 of 32 bytes, or `whsk_`), or None
    when none is configured."""
    if material is None:
        return None
    text = material.strip()
    if text.startswith(_PRIVATE_PREFIX.encode()):
        try:
            raw = base64.b64decode(text[len(_PRIVATE_PREFIX) :], validate=True)
            # Some libraries write the seed followed by the public key: the seed comes first.
            return Signer(Ed25519PrivateKey.from_private_bytes(raw[:32]))
        except ValueError:
            raise SigningKeyError("the webhook signing key is not a valid whsk_ key") from None
    return Signer(load_private_key(text, "webhook signing key"))


def whpk(signer: Signer) -> str:
    """The public key as Standard Webhooks writes it: `whpk_` and base64 of its 32 bytes."""
    raw = signer.key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return _PUBLIC_PREFIX + base64.b64encode(raw).decode()
