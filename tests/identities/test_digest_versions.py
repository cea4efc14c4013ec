"""The hashes an identity is stored and looked up under, current and legacy, are the ones the
earlier implementation gave: each legacy input is now hashed once, and a phone is no longer
parsed a second time for version 1 (which wrote the same E.164 form). The reference below is
that implementation, frozen; any difference in a digest, a label or their order fails."""

from __future__ import annotations

import hashlib
import hmac
import uuid

import phonenumbers
import pytest

from app.core.identity import (
    BlindIndex,
    BlindIndexer,
    IdentityType,
    InvalidIdentity,
    _phone,
    normalise,
    normalise_v1,
    sha256_input,
    v1_spellings,
    version_label,
)
from tests.builders import TEST_SUBJECT_KEY

CONTROLLER = uuid.UUID(int=7)


def hmac_of(kind: IdentityType, text: str) -> str:
    return hmac.new(
        TEST_SUBJECT_KEY.encode(), f"{kind}:{text}".encode(), hashlib.sha256
    ).hexdigest()


def reference_digests(indexer: BlindIndexer, kind: IdentityType, value: str) -> list[BlindIndex]:
    """BlindIndexer.all_digests for a raw identity as it was before the change."""
    normal = normalise(kind, value, default_region=indexer.default_region, controller_id=CONTROLLER)
    keyed = hmac_of(kind, sha256_input(kind, normal))
    current = BlindIndex(kind, indexer.label, keyed)
    found = {current.digest: current}
    if 2 in indexer.legacy_versions:
        label = version_label(indexer.key_id, 2, companion=True)
        digest = hmac_of(kind, normal)
        found.setdefault(digest, BlindIndex(kind, label, digest))
    if 1 in indexer.legacy_versions:
        plain = normal.partition("/")[2] if kind is IdentityType.external_id else normal
        for spelling in sorted(v1_spellings(kind, value, plain) | {plain}):
            try:
                old = normalise_v1(
                    kind, spelling, default_region=indexer.default_region, controller_id=CONTROLLER
                )
            except InvalidIdentity:
                continue
            label = version_label(indexer.key_id, 1, companion=True)
            digest = hmac_of(kind, old)
            found.setdefault(digest, BlindIndex(kind, label, digest))
    return list(found.values())


def _phones() -> list[str]:
    """Example numbers of every region, written the ways callers write them."""
    written = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for number_type in (
            phonenumbers.PhoneNumberType.FIXED_LINE,
            phonenumbers.PhoneNumberType.MOBILE,
            phonenumbers.PhoneNumberType.TOLL_FREE,
        ):
            example = phonenumbers.example_number_for_type(region, number_type)
            if example is None:
                continue
            written.append(
                phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
            )
            if region == "US":
                written.append(
                    phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL)
                )
    return written


CASES = [
    *(
        ("email", v)
        for v in ("alice@example.com", "  Alice.Smith@Example.COM ", "x@Bücher.example")
    ),
    *(("email", v) for v in ("x@xn--bcher-kva.example", "Jose\u0301@example.com", "ü@Ü.example")),
    *(("ip_address", v) for v in ("192.0.2.1", "::ffff:192.0.2.1", "2001:DB8::1", "2001:db8::")),
    *(("external_id", v) for v in ("Contact-42", "Jose\u0301", "Éa")),
    *(("user_id", v) for v in ("u-1", "Ångström", "A\u030angstro\u0308m")),
    *(("device_id", v) for v in ("device-ABC", " padded ")),
    *(("email", v) for v in ("UPPER@EXAMPLE.ORG", "a@xn--Bcher-kva.example")),
    *(("external_id", v) for v in ("xn--abc", " Padded ")),
    *(("user_id", v) for v in ("XN--Mixed", "plain")),
    *(("phone", v) for v in ("(650) 253-0000", "+1 212 555 0100", "+44 20 7946 0958")),
    *(("phone", v) for v in _phones()),
]


@pytest.mark.parametrize("legacy", [(1, 2), (2,), (1,), ()])
def test_every_identity_hashes_as_before(legacy: tuple[int, ...]) -> None:
    indexer = BlindIndexer(TEST_SUBJECT_KEY.encode(), "k1", "US", legacy)
    compared = 0
    for kind_name, value in CASES:
        kind = IdentityType(kind_name)
        try:
            expected = reference_digests(indexer, kind, value)
        except InvalidIdentity:
            with pytest.raises(InvalidIdentity):
                indexer.all_digests(kind, value, controller_id=CONTROLLER)
            continue
        assert indexer.all_digests(kind, value, controller_id=CONTROLLER) == expected, value
        compared += 1
    assert compared > 500  # the corpus was hashed, not skipped


def test_version_1_of_a_phone_is_its_e164_form() -> None:
    """Why version 1 of a phone need not be parsed again: E.164 parses back to itself."""
    for value in _phones():
        once = _phone(value, "US")
        assert _phone(once, "US") == once
