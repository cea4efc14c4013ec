"""What a refusal must tell the subject: where to complain and that a court is open to them,
by the request's regime (GDPR Arts. 12(4), 77, 79; UK GDPR the same with the ICO; CCPA and the
US state laws their enforcers and appeals; LGPD Art. 18 §1 and Art. 22)."""

from __future__ import annotations

from typing import Any

_COMPLAINT: dict[str, dict[str, str]] = {
    "gdpr": {
        "authority": "the competent data protection supervisory authority, in particular in the "
        "Member State of your habitual residence, place of work or of the alleged infringement",
        "complaint": "GDPR Art. 77",
        "judicial_remedy": "You may seek an effective judicial remedy against the controller "
        "or processor before the courts (GDPR Art. 79).",
    },
    "uk_gdpr": {
        "authority": "the Information Commissioner's Office (ICO)",
        "complaint": "UK GDPR Art. 77",
        "judicial_remedy": "You may apply to a court for a compliance order "
        "(UK GDPR Art. 79; Data Protection Act 2018 s. 167).",
    },
    "ccpa": {
        "authority": "the California Privacy Protection Agency or the California Attorney General",
        "complaint": "Cal. Civ. Code 1798.199.45; 1798.155",
        "judicial_remedy": "Where a data breach is concerned you may bring a civil action "
        "(Cal. Civ. Code 1798.150).",
    },
    "vcdpa": {
        "authority": "the Virginia Attorney General",
        "complaint": "Va. Code 59.1-581 (appeal first: 59.1-577(C))",
        "judicial_remedy": "You may appeal this decision to us; if the appeal is denied you "
        "may contact the Attorney General to submit a complaint.",
    },
    "cpa": {
        "authority": "the Colorado Attorney General",
        "complaint": "C.R.S. 6-1-1306(3)",
        "judicial_remedy": "You may appeal this decision to us; if the appeal is denied you "
        "may contact the Attorney General.",
    },
    "ctdpa": {
        "authority": "the Connecticut Attorney General",
        "complaint": "Conn. Gen. Stat. 42-518(d)",
        "judicial_remedy": "You may appeal this decision to us; if the appeal is denied you "
        "may contact the Attorney General to submit a complaint.",
    },
    "lgpd": {
        "authority": "the Autoridade Nacional de Proteção de Dados (ANPD)",
        "complaint": "LGPD Art. 18 §1",
        "judicial_remedy": "You may defend your rights in court, individually or collectively "
        "(LGPD Art. 22).",
    },
    "other": {
        "authority": "the data protection authority competent where you live",
        "complaint": "the law that applies to you",
        "judicial_remedy": "You may seek a remedy before the courts.",
    },
}


def complaint_rights(regime: str) -> dict[str, Any]:
    """The notice every denial carries: the authority to complain to, and the courts."""
    entry = _COMPLAINT.get(regime, _COMPLAINT["other"])
    return {
        "regime": regime,
        "right_to_complain": f"You may lodge a complaint with {entry['authority']}.",
        "authority": entry["authority"],
        "legal_basis": entry["complaint"],
        "judicial_remedy": entry["judicial_remedy"],
    }


def denial_outcome(regime: str, reason: str, detail: str | None) -> dict[str, Any]:
    return {"denied": reason, "detail": detail, "complaint_rights": complaint_rights(regime)}
