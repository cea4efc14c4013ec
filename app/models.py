"""Every table, imported in one place so Alembic sees the whole schema."""

from app.audit.models import AuditChainHead, AuditEvent
from app.auth.models import ApiKey
from app.core.db import Base
from app.core.idempotency import IdempotencyRecord

metadata = Base.metadata

__all__ = ["ApiKey", "AuditChainHead", "AuditEvent", "IdempotencyRecord", "metadata"]
