"""How many stored identity hashes each normalisation version still holds, per table: what
an operator reads before dropping a legacy version (`spix-dsr identities versions`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.identity import CURRENT_VERSION, LEGACY_VERSIONS, parse_label
from app.legal_holds.models import LegalHold, LegalHoldIdentity
from app.records.models import RecordIdentity
from app.requests.models import RequestIdentity, SubjectRequest
from app.suppressions.models import Suppression

# Released holds and closed requests match nothing any more: their hashes do not count.
_OPEN_REQUESTS = ("pending_verification", "in_progress")


@dataclass
class VersionReport:
    # table -> (version, "current" | "legacy" | "companion") -> hashes
    counts: dict[str, Counter[tuple[int, str]]] = field(default_factory=dict)

    def legacy_only(self, version: int) -> int:
        """Hashes stored only under this legacy version (no current hash beside them): rows a
        raw identity still finds through the legacy version, and a sha256 one does not."""
        return sum(c[(version, "legacy")] for c in self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "current_version": CURRENT_VERSION,
            "tables": {
                table: [
                    {"version": version, "kind": kind, "hashes": n}
                    for (version, kind), n in sorted(counts.items())
                ]
                for table, counts in self.counts.items()
            },
            "legacy_only": {str(v): self.legacy_only(v) for v in sorted(LEGACY_VERSIONS)},
        }


async def version_report(session: AsyncSession) -> VersionReport:
    """One grouped count per table, over the labels stored beside the hashes."""
    statements = {
        "record_identities": select(RecordIdentity.key_id, func.count()).group_by(
            RecordIdentity.key_id
        ),
        "legal_hold_identities": select(LegalHoldIdentity.key_id, func.count())
        .join(LegalHold, LegalHold.id == LegalHoldIdentity.hold_id)
        .where(LegalHold.released_at.is_(None))
        .group_by(LegalHoldIdentity.key_id),
        "suppressions": select(Suppression.key_id, func.count()).group_by(Suppression.key_id),
        "request_identities": select(RequestIdentity.key_id, func.count())
        .join(SubjectRequest, SubjectRequest.id == RequestIdentity.request_id)
        .where(SubjectRequest.status.in_(_OPEN_REQUESTS))
        .group_by(RequestIdentity.key_id),
    }
    report = VersionReport()
    for table, statement in statements.items():
        counts: Counter[tuple[int, str]] = Counter()
        for label, n in await session.execute(statement):
            _key_id, version, companion = parse_label(label)
            kind = (
                "companion"
                if companion
                else ("current" if version == CURRENT_VERSION else "legacy")
            )
            counts[(version, kind)] += n
        report.counts[table] = counts
    return report
