"""Why a record survives an erasure request, in the words of the request's own law.

Pure data: one row per ground, one citation per regime. A ground's citation comes from what
keeps the record (a `law` minimum rule, a legal hold, a contractual or policy minimum, a
restriction) and the regime the request was filed under; a CCPA request never cites a GDPR
article, a GDPR request never cites the Civil Code. Where a regime has no matching provision
the citation is None and the explanation carries the reason in plain words.

The citations summarise the statutes for engineers and are not legal advice; counsel should
confirm them, as for every figure in the service's settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

Ground = Literal[
    "legal_obligation", "legal_hold", "contractual_minimum", "policy_minimum", "restricted"
]

REGIMES = ("gdpr", "uk_gdpr", "ccpa", "vcdpa", "cpa", "ctdpa", "lgpd", "other")

# A legal-obligation exemption: only a `law` minimum rule cites it.
_LEGAL_OBLIGATION = {
    "gdpr": "GDPR Art. 17(3)(b)",
    "uk_gdpr": "UK GDPR Art. 17(3)(b)",
    "ccpa": "Cal. Civ. Code §1798.105(d)(8)",
    "vcdpa": "Va. Code §59.1-582(A)(1)",
    "cpa": "Colo. Rev. Stat. §6-1-1304(3)(a)",
    "ctdpa": "Conn. Gen. Stat. §42-524(a)(1)",
    "lgpd": "LGPD Art. 16, I",
    "other": None,
}
# A legal hold: the data is kept to establish, exercise or defend legal claims (and a
# litigation hold is itself a legal duty to preserve evidence).
_LEGAL_HOLD = {
    "gdpr": "GDPR Art. 17(3)(e)",
    "uk_gdpr": "UK GDPR Art. 17(3)(e)",
    "ccpa": "Cal. Civ. Code §1798.105(d)(8); §1798.145(a)(1)(E)",
    "vcdpa": "Va. Code §59.1-582(A)(4)",
    "cpa": "Colo. Rev. Stat. §6-1-1304(3)(a)",
    "ctdpa": "Conn. Gen. Stat. §42-524(a)(4)",
    "lgpd": "LGPD Art. 7, VI",
    "other": None,
}
# Restriction of processing (kept, not used): a GDPR-style right; the US state laws have none.
_RESTRICTED = {
    "gdpr": "GDPR Art. 18",
    "uk_gdpr": "UK GDPR Art. 18",
    "ccpa": None,
    "vcdpa": None,
    "cpa": None,
    "ctdpa": None,
    "lgpd": "LGPD Art. 18, IV",
    "other": None,
}

_EXPLANATIONS: Mapping[Ground, str] = MappingProxyType(
    {
        "legal_obligation": (
            "Kept because a law obliges us to keep it for the period shown; it is deleted "
            "when that period ends."
        ),
        "legal_hold": (
            "Kept under a legal hold: it is needed for legal claims (litigation, an "
            "investigation) and is deleted once the hold is released."
        ),
        "contractual_minimum": (
            "Not an exemption from erasure: the data is needed to provide the account the "
            "subject still has. Closing the account ends this, and the data is then erased. "
            "A person reviews the request and asks the subject whether to close the account."
        ),
        "policy_minimum": (
            "Not an exemption from erasure: a retention setting (not a law) keeps this "
            "record. A person reviews the request and decides whether it is erased."
        ),
        "restricted": (
            "Processing of this record is restricted: it is kept but not used, and it is "
            "not erased while the restriction lasts."
        ),
    }
)

_CITATIONS: Mapping[Ground, Mapping[str, str | None]] = MappingProxyType(
    {
        "legal_obligation": MappingProxyType(_LEGAL_OBLIGATION),
        "legal_hold": MappingProxyType(_LEGAL_HOLD),
        "restricted": MappingProxyType(_RESTRICTED),
    }
)

# Grounds that exempt a record from erasure by law. The others are no exemption: the
# request needs a person (see NEEDS_PERSON).
EXEMPTIONS: frozenset[Ground] = frozenset({"legal_obligation", "legal_hold", "restricted"})
NEEDS_PERSON: frozenset[Ground] = frozenset({"contractual_minimum", "policy_minimum"})


def minimum_ground(source: str | None) -> Ground:
    """The ground a minimum rule gives, by its source: only a `law` rule is a legal
    obligation; a `contract` rule keeps data to provide the account; any other minimum is
    a retention setting."""
    if source == "law":
        return "legal_obligation"
    if source == "contract":
        return "contractual_minimum"
    return "policy_minimum"


def ground(name: Ground, regime: str | None, **fields: Any) -> dict[str, Any]:
    """One ground of a withheld record: what keeps it, the provision of the request's regime
    that allows it (None where there is none), whether it is an exemption, and why in plain
    words."""
    regime = regime if regime in REGIMES else "other"
    return {
        "ground": name,
        "basis": _CITATIONS[name][regime] if name in _CITATIONS else None,
        "exemption": name in EXEMPTIONS,
        "needs_person": name in NEEDS_PERSON,
        "explanation": _EXPLANATIONS[name],
        **fields,
    }
