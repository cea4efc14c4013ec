"""Identities and the blind index: values are normalised, then stored only as
HMAC-SHA256(subject key, type + ":" + value). Lookups hash the query the same way."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

import phonenumbers
from fastapi import Depends, Request
from pydantic import BaseModel, Field, StringConstraints


class IdentityType(StrEnum):
    email = "email"
    phone = "phone"
    user_id = "user_id"
    external_id = "external_id"
    device_id = "device_id"
    ip_address = "ip_address"


class Identity(BaseModel):
    """An identity as callers send it; the value never reaches a log, an error or the database."""

    type: IdentityType = Field(examples=["email"])
    value: Annotated[str, StringConstraints(min_length=1, max_length=320)] = Field(
        examples=["alice@example.com"]
    )


class InvalidIdentity(ValueError):
    """The value cannot be normalised; the message names the type, never the value."""


@dataclass(frozen=True, slots=True)
class BlindIndex:
    """The stored form of one identity: its type, the id of the key and the digest."""

    type: IdentityType
    key_id: str
    digest: str


def normalise(
    identity_type: IdentityType,
    value: str,
    *,
    default_region: str = "US",
    controller_id: uuid.UUID | None = None,
) -> str:
    value = value.strip()
    if not value:
        raise InvalidIdentity(f"an empty {identity_type} identity")
    if identity_type is IdentityType.email:
        local, at, domain = value.rpartition("@")
        if not at or not local or "." not in domain or any(c.isspace() for c in value):
            raise InvalidIdentity("an email identity must look like name@domain")
        return value.lower()
    if identity_type is IdentityType.phone:
        try:
            number = phonenumbers.parse(value, default_region)
        except phonenumbers.NumberParseException:
            raise InvalidIdentity("a phone identity could not be parsed") from None
        if not phonenumbers.is_valid_number(number):
            raise InvalidIdentity("a phone identity is not a valid number")
        return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    if identity_type is IdentityType.ip_address:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise InvalidIdentity("an ip_address identity is not an IP address") from None
    if identity_type is IdentityType.external_id:
        # A customer's contact id only means something within that customer.
        if controller_id is None:
            raise InvalidIdentity("an external_id identity needs its controller")
        return f"{controller_id}/{value}"
    return value


class BlindIndexer:
    """Hashes identities with the configured subject key."""

    def __init__(self, key: bytes, key_id: str, default_region: str = "US") -> None:
        self._key = key
        self.key_id = key_id
        self.default_region = default_region

    def digest(
        self,
        identity_type: IdentityType,
        value: str,
        *,
        controller_id: uuid.UUID | None = None,
    ) -> BlindIndex:
        normal = normalise(
            identity_type, value, default_region=self.default_region, controller_id=controller_id
        )
        mac = hmac.new(self._key, f"{identity_type}:{normal}".encode(), hashlib.sha256)
        return BlindIndex(identity_type, self.key_id, mac.hexdigest())

    def mac(self, purpose: str, text: str) -> str:
        """A keyed digest for other secrets (verification codes): useless without the key."""
        return hmac.new(self._key, f"{purpose}:{text}".encode(), hashlib.sha256).hexdigest()

    def of(self, identity: Identity, *, controller_id: uuid.UUID | None = None) -> BlindIndex:
        return self.digest(identity.type, identity.value, controller_id=controller_id)


def get_indexer(request: Request) -> BlindIndexer:
    indexer: BlindIndexer = request.app.state.indexer
    return indexer


IndexerDep = Annotated[BlindIndexer, Depends(get_indexer)]
