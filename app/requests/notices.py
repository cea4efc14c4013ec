"""What a refusal must tell the subject: where to complain and that a court is open to them,
by the request's regime (GDPR Arts. 12(4), 77, 79; UK GDPR the same with the ICO; CCPA and the
US state laws their enforcers and appeals; LGPD Art. 18 §1 and Art. 22)."""

from __future__ import annotations

from typing import Any

from app.requests.rights import authority_of

# The courts, by regime; where to complain comes from the package's table (`rights.py`), so a
# denial and an access package name the same authority on the same basis.
_JUDICIAL_REMEDY: dict[str, str] = {
    "gdpr": "You may seek an effective judicial remedy against the controller or processor "
    "before the courts (GDPR Art. 79).",
    "uk_gdpr": "You may apply to a court for a compliance order "
    "(UK GDPR Art. 79; Data Protection Act 2018 s. 167).",
    "ccpa": "Where a data breach is concerned you may bring a civil action "
    "(Cal. Civ. Code 1798.150).",
    "vcdpa": "You may appeal this decision to us; if the appeal is denied you may contact the "
    "Attorney General to submit a complaint.",
    "cpa": "You may appeal this decision to us; if the appeal is denied you may contact the "
    "Attorney General.",
    "ctdpa": "You may appeal this decision to us; if the appeal is denied you may contact the "
    "Attorney General to submit a complaint.",
    "lgpd": "You may defend your rights in court, individually or collectively (LGPD Art. 22).",
    "other": "You may seek a remedy before the courts.",
}


def complaint_rights(regime: str) -> dict[str, Any]:
    """The notice every denial carries: the authority to complain to, and the courts."""
    authority = authority_of(regime)
    return {
        "regime": regime,
        "right_to_complain": f"You may lodge a complaint with {authority['name']}.",
        "authority": authority["name"],
        "legal_basis": authority["basis"] or "the law that applies to you",
        "judicial_remedy": _JUDICIAL_REMEDY.get(regime, _JUDICIAL_REMEDY["other"]),
    }


def denial_outcome(regime: str, reason: str, detail: str | None) -> dict[str, Any]:
    return {"denied": reason, "detail": detail, "complaint_rights": complaint_rights(regime)}
