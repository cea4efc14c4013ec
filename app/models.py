"""Every table, imported in one place so Alembic sees the whole schema."""

from app.audit.models import AuditChainHead, AuditEvent
from app.auth.models import ApiKey
from app.controllers.models import Controller
from app.core.db import Base
from app.core.idempotency import IdempotencyRecord
from app.core.service_identity import ServiceIdentity
from app.data_categories.models import DataCategory
from app.interop.drp.models import DrpAgent, DrpRequest
from app.interop.opendsr import callbacks as _opendsr_callbacks  # noqa: F401  (status listener)
from app.interop.opendsr.models import OpenDsrRequest
from app.jobs.models import Job
from app.legal_holds.models import LegalHold, LegalHoldIdentity, LegalHoldRecord
from app.outbox.models import OutboxEvent, ScheduledNotice
from app.purposes.models import Purpose
from app.recipients.models import Recipient
from app.records.models import (
    ErasureMemory,
    Reappearance,
    Record,
    RecordIdentity,
    RecordProfile,
    RecordProfileCategory,
    RecordProfilePurpose,
)
from app.requests.models import (
    ErasureReceipt,
    RequestIdentity,
    RequestScope,
    ScopeRecord,
    SubjectRequest,
)
from app.retention_rules.models import RetentionRule
from app.suppressions.models import Suppression
from app.systems.models import System
from app.tasks.models import Task, TaskRecord
from app.webhooks.models import WebhookSecret

metadata = Base.metadata

__all__ = [
    "ApiKey",
    "AuditChainHead",
    "AuditEvent",
    "Controller",
    "DataCategory",
    "DrpAgent",
    "DrpRequest",
    "ErasureMemory",
    "ErasureReceipt",
    "IdempotencyRecord",
    "Job",
    "LegalHold",
    "LegalHoldIdentity",
    "LegalHoldRecord",
    "OpenDsrRequest",
    "OutboxEvent",
    "Purpose",
    "Reappearance",
    "Recipient",
    "Record",
    "RecordIdentity",
    "RecordProfile",
    "RecordProfileCategory",
    "RecordProfilePurpose",
    "RequestIdentity",
    "RequestScope",
    "RetentionRule",
    "ScheduledNotice",
    "ScopeRecord",
    "ServiceIdentity",
    "SubjectRequest",
    "Suppression",
    "System",
    "Task",
    "TaskRecord",
    "WebhookSecret",
    "metadata",
]
