"""Ed25519 signatures over canonical JSON, and the public key as a JSON Web Key Set.

A signed document is `{"alg": "EdDSA", "kid", "receipt": {...}, "signature"}`: the
signature (base64url, no padding) is over the canonical bytes of `receipt` (JSON with sorted
keys and no whitespace, as orjson writes it with OPT_SORT_KEYS). The key id is the key's JWK
thumbprint (RFC 7638), so anyone holding the key set finds the key without trusting a name.
Ed25519 is deterministic (RFC 8032): the same bytes and key give the same signature."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

ALG = "EdDSA"


class SigningKeyError(ValueError):
    """The configured key is not an Ed25519 private key (the message never holds the key)."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical(document: Any) -> bytes:
    """The bytes a signature covers: sorted keys, no whitespace, UTF-8."""
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def load_private_key(material: bytes, what: str = "receipt signing key") -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM (PKCS#8) or from its 32 raw bytes in base64."""
    text = material.strip()
    try:
        if text.startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(text + b"\n", password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise SigningKeyError(f"the {what} is not an Ed25519 key")
            return key
        raw = base64.b64decode(text + b"=" * (-len(text) % 4), altchars=b"-_")
        return Ed25519PrivateKey.from_private_bytes(raw)
    except SigningKeyError:
        raise
    except ValueError:
        raise SigningKeyError(
            f"the {what} is neither an Ed25519 PEM key nor 32 bytes in base64"
        ) from None


def public_jwk(key: Ed25519PublicKey) -> dict[str, str]:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = b64url(raw)
    # RFC 7638: the required members in lexicographic order, no whitespace.
    thumbprint = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True
    )
    kid = b64url(hashlib.sha256(thumbprint.encode()).digest())
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": ALG, "use": "sig"}


def keys_from_jwks(jwks: Any) -> dict[str, Ed25519PublicKey]:
    """The Ed25519 keys of a JWK Set, by kid (keys of other types are skipped)."""
    found: dict[str, Ed25519PublicKey] = {}
    for jwk in jwks.get("keys", []) if isinstance(jwks, dict) else []:
        if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        try:
            key = Ed25519PublicKey.from_public_bytes(b64url_decode(str(jwk["x"])))
        except (KeyError, ValueError):
            continue
        found[str(jwk.get("kid") or public_jwk(key)["kid"])] = key
    return found


@dataclass(frozen=True)
class Signer:
    key: Ed25519PrivateKey

    @classmethod
    def from_material(cls, material: bytes) -> Signer:
        return cls(load_private_key(material))

    @property
    def jwk(self) -> dict[str, str]:
        return public_jwk(self.key.public_key())

    @property
    def kid(self) -> str:
        return self.jwk["kid"]

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [self.jwk]}

    def sign(self, receipt: dict[str, Any]) -> dict[str, Any]:
        """The signed document for this receipt."""
        signature = self.key.sign(canonical(receipt))
        return {"alg": ALG, "kid": self.kid, "receipt": receipt, "signature": b64url(signature)}


def verify(document: Any, keys: dict[str, Ed25519PublicKey]) -> str | None:
    """None when the document is signed by one of these keys; otherwise why not (one line)."""
    if not isinstance(document, dict) or not isinstance(document.get("receipt"), dict):
        return "not a signed receipt (no receipt object)"
    if document.get("alg") != ALG:
        return f"unsupported algorithm {document.get('alg')!r}"
    key = keys.get(str(document.get("kid")))
    if key is None:
        return f"no published key with kid {document.get('kid')!r}"
    try:
        key.verify(
            b64url_decode(str(document.get("signature", ""))), canonical(document["receipt"])
        )
    except (InvalidSignature, ValueError):
        return "the signature does not match the receipt"
    return None
