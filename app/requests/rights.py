"""The subject's rights and where to complain, per regime, as an access package states them
(GDPR Art. 15(1)(e)-(f); CCPA §1798.130; the state laws' appeal and complaint routes).

Each regime names only its own law: a CCPA request is never told about GDPR articles."""

from __future__ import annotations

from typing import Any

_GDPR_RIGHTS = [
    ("access", "Art. 15"),
    ("rectification", "Art. 16"),
    ("erasure", "Art. 17"),
    ("restriction", "Art. 18"),
    ("portability", "Art. 20"),
    ("objection", "Art. 21"),
    ("not to be subject to a decision based solely on automated processing", "Art. 22"),
    ("withdraw consent at any time", "Art. 7(3)"),
    ("complaint to a supervisory authority", "Art. 77"),
    ("effective judicial remedy", "Art. 79"),
]

_US_STATE_RIGHTS = [
    "access",
    "correction",
    "deletion",
    "portability",
    "opt out of targeted advertising, sale and profiling",
    "appeal a refusal",
]

REGIME_RIGHTS: dict[str, dict[str, Any]] = {
    "gdpr": {
        "law": "GDPR (Regulation (EU) 2016/679)",
        "rights": [(right, f"GDPR {article}") for right, article in _GDPR_RIGHTS],
        "authority": {
            "name": "A data protection supervisory authority in the EU/EEA Member State of "
            "your habitual residence, place of work or of the alleged infringement",
            "basis": "GDPR Art. 77; a court remedy under GDPR Art. 79",
            "url": "https://edpb.europa.eu/about-edpb/about-edpb/members_en",
        },
    },
    "uk_gdpr": {
        "law": "UK GDPR and the Data Protection Act 2018",
        "rights": [(right, f"UK GDPR {article}") for right, article in _GDPR_RIGHTS],
        "authority": {
            "name": "Information Commissioner's Office (ICO)",
            "basis": "UK GDPR Art. 77; a court remedy under UK GDPR Art. 79 and DPA 2018 s.167",
            "url": "https://ico.org.uk/make-a-complaint/",
        },
    },
    "ccpa": {
        "law": "California Consumer Privacy Act (Cal. Civ. Code §1798.100 et seq.)",
        "rights": [
            ("know and access", "Cal. Civ. Code §1798.100, §1798.110, §1798.115"),
            ("delete", "Cal. Civ. Code §1798.105"),
            ("correct", "Cal. Civ. Code §1798.106"),
            ("opt out of sale or sharing", "Cal. Civ. Code §1798.120"),
            ("limit use of sensitive personal information", "Cal. Civ. Code §1798.121"),
            ("no retaliation for exercising these rights", "Cal. Civ. Code §1798.125"),
        ],
        "authority": {
            "name": "California Privacy Protection Agency (CPPA); also the California "
            "Attorney General",
            "basis": "Cal. Civ. Code §1798.199.10 et seq., §1798.199.90",
            "url": "https://cppa.ca.gov/webapplications/complaint",
        },
    },
    "vcdpa": {
        "law": "Virginia Consumer Data Protection Act (Va. Code §59.1-575 et seq.)",
        "rights": [(right, "Va. Code §59.1-577") for right in _US_STATE_RIGHTS],
        "authority": {
            "name": "Office of the Attorney General of Virginia",
            "basis": "Va. Code §59.1-577(C) (complaint after an appeal is denied)",
            "url": "https://www.oag.state.va.us/consumer-protection/",
        },
    },
    "cpa": {
        "law": "Colorado Privacy Act (C.R.S. §6-1-1301 et seq.)",
        "rights": [(right, "C.R.S. §6-1-1306") for right in _US_STATE_RIGHTS],
        "authority": {
            "name": "Colorado Attorney General",
            "basis": "C.R.S. §6-1-1306(3)(e) (contacting the Attorney General after an appeal)",
            "url": "https://coag.gov/file-complaint/",
        },
    },
    "ctdpa": {
        "law": "Connecticut Data Privacy Act (Conn. Gen. Stat. §42-515 et seq.)",
        "rights": [(right, "Conn. Gen. Stat. §42-518") for right in _US_STATE_RIGHTS],
        "authority": {
            "name": "Connecticut Attorney General",
            "basis": "Conn. Gen. Stat. §42-518(d) (complaint after an appeal is denied)",
            "url": "https://portal.ct.gov/ag/sections/privacy/the-connecticut-data-privacy-act",
        },
    },
    "lgpd": {
        "law": "Lei Geral de Proteção de Dados (Lei nº 13.709/2018)",
        "rights": [
            ("confirmation that data is processed", "LGPD Art. 18, I"),
            ("access", "LGPD Art. 18, II"),
            ("correction", "LGPD Art. 18, III"),
            ("anonymisation, blocking or deletion", "LGPD Art. 18, IV and VI"),
            ("portability", "LGPD Art. 18, V"),
            ("information about sharing", "LGPD Art. 18, VII"),
            ("withdraw consent", "LGPD Art. 18, IX"),
            ("review of automated decisions", "LGPD Art. 20"),
        ],
        "authority": {
            "name": "Autoridade Nacional de Proteção de Dados (ANPD)",
            "basis": "LGPD Art. 18 §1",
            "url": "https://www.gov.br/anpd/",
        },
    },
    "other": {
        "law": "The data protection law that applies where you live",
        "rights": [
            (right, None)
            for right in ("access", "correction", "deletion", "portability", "objection")
        ],
        "authority": {
            "name": "The data protection authority where you live",
            "basis": None,
            "url": None,
        },
    },
}


def authority_of(regime: str) -> dict[str, Any]:
    """Where a subject of this regime complains: name, basis and address."""
    return dict(REGIME_RIGHTS.get(regime, REGIME_RIGHTS["other"])["authority"])


def rights_of(regime: str) -> dict[str, Any]:
    """The package's `rights` (a list of {right, basis}), `law` and `complaint_authority`."""
    entry = REGIME_RIGHTS.get(regime, REGIME_RIGHTS["other"])
    return {
        "law": entry["law"],
        "rights": [{"right": right, "basis": basis} for right, basis in entry["rights"]],
        "complaint_authority": authority_of(regime),
    }
