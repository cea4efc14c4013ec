"""Identities and the blind index: values are normalised, then stored only as
HMAC-SHA256(subject key, type + ":" + SHA-256(value)). Keying over the SHA-256 lets a partner
send an identity already hashed (OpenDSR, regulators' deletion platforms) and match it exactly
like the raw value. Lookups hash the query the same way, under every normalisation version
still in use."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

import idna
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


class IdentityFormat(StrEnum):
    raw = "raw"
    sha256 = "sha256"


# Types a sender may give as the SHA-256 of their normal form: the ones partners hash.
HASHABLE_TYPES = frozenset({IdentityType.email, IdentityType.phone, IdentityType.external_id})
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class Identity(BaseModel):
    """An identity as callers send it; the value never reaches a log, an error or the database."""

    type: IdentityType = Field(examples=["email"])
    value: Annotated[str, StringConstraints(min_length=1, max_length=320)] = Field(
        examples=["alice@example.com"]
    )
    format: IdentityFormat = Field(
        IdentityFormat.raw,
        description=(
            "`raw`, or `sha256`: the value is the lower-case hex SHA-256 of the identity's "
            "normal form (email, phone and external_id only; see the partners' guide)"
        ),
        examples=["raw"],
    )


class InvalidIdentity(ValueError):
    """The value cannot be normalised; the message names the type, never the value."""


@dataclass(frozen=True, slots=True)
class BlindIndex:
    """The stored form of one identity: its type, the id of the key and the digest."""

    type: IdentityType
    key_id: str
    digest: str

    @property
    def companion(self) -> bool:
        """A legacy hash stored beside the current one: it matches, it is not shown."""
        return parse_label(self.key_id)[2]


# Normalisation versions. Version 1 trimmed and lower-cased emails and took other values
# as sent; version 2 also equates the spellings of one identity that version 1 kept apart;
# version 3 keys the index over the SHA-256 of the version-2 normal form, so a hashed identity
# matches. Hashes cannot be recomputed without the raw values, so each stored hash carries a
# label naming its key and version (`KEY.n3`), and lookups hash the query under every version
# still in use. See "Identity normalisation versions" in the README.
CURRENT_VERSION = 3
LEGACY_VERSIONS = frozenset({1, 2})
# Unicode categories never part of an identity: controls, format characters (zero-width
# space and joiners, BOM, soft hyphen, bidi controls) and lone surrogates.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs"})


def version_label(key_id: str, version: int, *, companion: bool = False) -> str:
    """The label stored beside a hash. A bare key id is a version-1 hash written before
    versions were labelled; a companion is a legacy hash written beside a current one so
    that hashes stored under either version keep matching."""
    return f"{key_id}.{'c' if companion else 'n'}{version}"


def parse_label(label: str) -> tuple[str, int, bool]:
    """(key id, normalisation version, whether it is a companion) of a stored label."""
    key_id, dot, tail = label.rpartition(".")
    if dot and len(tail) > 1 and tail[0] in "nc" and tail[1:].isdigit():
        return key_id, int(tail[1:]), tail[0] == "c"
    return label, 1, False


def _reject_invisible(identity_type: IdentityType, value: str) -> None:
    if value.isascii():
        if not value.isprintable():
            raise InvalidIdentity(f"a {identity_type} identity contains a control character")
        return
    if any(unicodedata.category(c) in _INVISIBLE for c in value):
        raise InvalidIdentity(
            f"a {identity_type} identity contains an invisible or control character"
        )


def _ascii_domain(domain: str) -> str:
    """The domain as its IDNA ASCII form (UTS 46), so `bücher.example` and
    `xn--bcher-kva.example` are one domain. ASCII domains are only lower-cased."""
    if domain.isascii():
        return domain.lower()
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        raise InvalidIdentity("an email identity has a domain that is not a valid name") from None


def _unicode_domain(domain: str) -> str:
    if "xn--" not in domain:
        return domain
    try:
        return str(idna.decode(domain))
    except idna.IDNAError:
        return domain


def normalise(
    identity_type: IdentityType,
    value: str,
    *,
    default_region: str = "US",
    controller_id: uuid.UUID | None = None,
) -> str:
    """The current (version 2) normal form: one per identity, the same for every caller."""
    value = value.strip()
    if not value:
        raise InvalidIdentity(f"an empty {identity_type} identity")
    _reject_invisible(identity_type, value)
    value = unicodedata.normalize("NFC", value)
    if identity_type is IdentityType.email:
        local, at, domain = value.rpartition("@")
        if not at or not local or "." not in domain or any(map(str.isspace, value)):
            raise InvalidIdentity("an email identity must look like name@domain")
        return f"{unicodedata.normalize('NFC', local.lower())}@{_ascii_domain(domain)}"
    if identity_type is IdentityType.phone:
        return _phone(value, default_region)
    if identity_type is IdentityType.ip_address:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise InvalidIdentity("an ip_address identity is not an IP address") from None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(address)
    if identity_type is IdentityType.external_id:
        # A customer's contact id only means something within that customer.
        if controller_id is None:
            raise InvalidIdentity("an external_id identity needs its controller")
        return f"{controller_id}/{value}"
    return value


def sha256_input(identity_type: IdentityType, normal: str) -> str:
    """Version 3's input from a version-2 normal form: its SHA-256 in lower-case hex. An
    external id keeps its controller in front: the sender hashes the id alone."""
    scope, plain = "", normal
    if identity_type is IdentityType.external_id:
        controller, _, plain = normal.partition("/")
        scope = f"{controller}/"
    return scope + hashlib.sha256(plain.encode()).hexdigest()


def hashed_input(
    identity_type: IdentityType, value: str, *, controller_id: uuid.UUID | None = None
) -> str:
    """Version 3's input from an identity sent as `sha256`: the hex digest as the sender
    computed it (any case), checked for shape."""
    if identity_type not in HASHABLE_TYPES:
        raise InvalidIdentity(f"a {identity_type} identity cannot be sent hashed")
    digest = value.strip().lower()
    if not _SHA256_HEX.fullmatch(digest):
        raise InvalidIdentity(f"a sha256 {identity_type} identity must be 64 hex characters")
    if identity_type is IdentityType.external_id:
        if controller_id is None:
            raise InvalidIdentity("an external_id identity needs its controller")
        return f"{controller_id}/{digest}"
    return digest


def _phone(value: str, default_region: str) -> str:
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException:
        raise InvalidIdentity("a phone identity could not be parsed") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidIdentity("a phone identity is not a valid number")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def normalise_v1(
    identity_type: IdentityType,
    value: str,
    *,
    default_region: str = "US",
    controller_id: uuid.UUID | None = None,
) -> str:
    """Version 1, frozen: how hashes were made before versions. Kept to match old hashes."""
    value = value.strip()
    if not value:
        raise InvalidIdentity(f"an empty {identity_type} identity")
    if identity_type is IdentityType.email:
        local, at, domain = value.rpartition("@")
        if not at or not local or "." not in domain or any(map(str.isspace, value)):
            raise InvalidIdentity("an email identity must look like name@domain")
        return value.lower()
    if identity_type is IdentityType.phone:
        return _phone(value, default_region)
    if identity_type is IdentityType.ip_address:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise InvalidIdentity("an ip_address identity is not an IP address") from None
    if identity_type is IdentityType.external_id:
        if controller_id is None:
            raise InvalidIdentity("an external_id identity needs its controller")
        return f"{controller_id}/{value}"
    return value


def v1_spellings(identity_type: IdentityType, value: str, current: str) -> set[str]:
    """Spellings of one identity that version 2 equates and version 1 hashed apart: a hash
    stored under version 1 from any of them is this identity's (`current` is its v2 form)."""
    value = value.strip()
    if identity_type is IdentityType.phone:
        return set()  # both versions write E.164: a stored phone hash is the current one
    if identity_type is IdentityType.ip_address:
        return {value, current, f"::ffff:{current}"} if "." in current else {value, current}
    if value.isascii() and "xn--" not in current:
        return {value}
    if identity_type is IdentityType.email:
        local, _, domain = current.rpartition("@")
        domains = {domain, _unicode_domain(domain)}
        return {value} | {
            unicodedata.normalize(form, f"{local}@{name}")
            for form in ("NFC", "NFD")
            for name in domains
        }
    return {value, unicodedata.normalize("NFC", value), unicodedata.normalize("NFD", value)}


class BlindIndexer:
    """Hashes identities with the configured subject key, under the current normalisation
    and, while they are still in use, the legacy ones."""

    def __init__(
        self,
        key: bytes,
        key_id: str,
        default_region: str = "US",
        legacy_versions: Iterable[int] = LEGACY_VERSIONS,
    ) -> None:
        self._key = key
        self.key_id = key_id
        self.default_region = default_region
        self.legacy_versions = frozenset(legacy_versions)
        unknown = self.legacy_versions - LEGACY_VERSIONS
        if unknown:
            raise ValueError(f"unknown identity normalisation versions: {sorted(unknown)}")
        self.label = version_label(key_id, CURRENT_VERSION)
        self._companion_labels = {
            version: version_label(key_id, version, companion=True) for version in LEGACY_VERSIONS
        }
        # The key's HMAC state, copied for each hash rather than keyed again.
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def _hash(self, identity_type: IdentityType, text: str) -> str:
        mac = self._keyed.copy()
        mac.update(f"{identity_type}:{text}".encode())
        return mac.hexdigest()

    def digest(
        self,
        identity_type: IdentityType,
        value: str,
        *,
        controller_id: uuid.UUID | None = None,
        hashed: bool = False,
    ) -> BlindIndex:
        """The hash under the current normalisation only."""
        return self.all_digests(
            identity_type, value, controller_id=controller_id, hashed=hashed, legacy=False
        )[0]

    def all_digests(
        self,
        identity_type: IdentityType,
        value: str,
        *,
        controller_id: uuid.UUID | None = None,
        hashed: bool = False,
        legacy: bool = True,
    ) -> list[BlindIndex]:
        """The current hash first, then the distinct hashes this identity has under every
        legacy version in use (as companions). Stored hashes of this identity under any of
        those versions are among them. A hashed identity has the current hash only: older
        versions hashed raw values."""
        if hashed:
            text = hashed_input(identity_type, value, controller_id=controller_id)
            return [BlindIndex(identity_type, self.label, self._hash(identity_type, text))]
        normal = normalise(
            identity_type, value, default_region=self.default_region, controller_id=controller_id
        )
        keyed = self._hash(identity_type, sha256_input(identity_type, normal))
        current = BlindIndex(identity_type, self.label, keyed)
        found = {current.digest: current}
        if not legacy:
            return [current]
        # Each legacy input hashed once: most spellings normalise to the same text.
        legacy_digests: dict[str, str] = {}
        if 2 in self.legacy_versions:
            label = self._companion_labels[2]
            digest = legacy_digests[normal] = self._hash(identity_type, normal)
            found.setdefault(digest, BlindIndex(identity_type, label, digest))
        if 1 in self.legacy_versions:
            label = self._companion_labels[1]
            for old in self._v1_inputs(identity_type, value, normal, controller_id):
                # Where version 1 agrees with version 2 the hash is already there, as c2.
                known = legacy_digests.get(old)
                if known is None:
                    known = legacy_digests[old] = self._hash(identity_type, old)
                found.setdefault(known, BlindIndex(identity_type, label, known))
        return list(found.values())

    def _v1_inputs(
        self,
        identity_type: IdentityType,
        value: str,
        normal: str,
        controller_id: uuid.UUID | None,
    ) -> list[str]:
        """What version 1 hashed for each spelling of this identity, in spelling order."""
        if identity_type is IdentityType.phone:
            # Version 1 wrote the same E.164 form (`_phone` of the value sent): parsing that
            # form again, the costliest step of a registration, would give it back unchanged.
            return [normal]
        if (
            identity_type is not IdentityType.ip_address
            and value.isascii()
            and "xn--" not in normal
        ):
            # An ASCII value has one spelling, and version 1 made of it what version 2 makes
            # (an email lower-cased, any other value as sent): the normal form.
            return [normal]
        plain = normal.partition("/")[2] if identity_type is IdentityType.external_id else normal
        inputs = []
        for spelling in sorted(v1_spellings(identity_type, value, plain) | {plain}):
            try:
                inputs.append(
                    normalise_v1(
                        identity_type,
                        spelling,
                        default_region=self.default_region,
                        controller_id=controller_id,
                    )
                )
            except InvalidIdentity:
                continue
        return inputs

    def mac(self, purpose: str, text: str) -> str:
        """A keyed digest for other secrets (verification codes): useless without the key."""
        return hmac.new(self._key, f"{purpose}:{text}".encode(), hashlib.sha256).hexdigest()

    def of(self, identity: Identity, *, controller_id: uuid.UUID | None = None) -> BlindIndex:
        return self.digest(
            identity.type,
            identity.value,
            controller_id=controller_id,
            hashed=identity.format is IdentityFormat.sha256,
        )

    def all_of(
        self, identity: Identity, *, controller_id: uuid.UUID | None = None
    ) -> list[BlindIndex]:
        return self.all_digests(
            identity.type,
            identity.value,
            controller_id=controller_id,
            hashed=identity.format is IdentityFormat.sha256,
        )

    def matching(self, identity: Identity, *, controller_id: uuid.UUID | None = None) -> list[str]:
        """The hashes a lookup of this identity matches: under every version in use."""
        return [b.digest for b in self.all_of(identity, controller_id=controller_id)]


async def get_indexer(request: Request) -> BlindIndexer:
    indexer: BlindIndexer = request.app.state.indexer
    return indexer


IndexerDep = Annotated[BlindIndexer, Depends(get_indexer)]
