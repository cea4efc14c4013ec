"""Settings from the environment (prefix SPIX_DSR_)."""

import secrets
from datetime import date
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    development = "development"
    production = "production"


class ConfigurationError(RuntimeError):
    """The service cannot start with these settings; the message says why."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPIX_DSR_", extra="ignore")

    env: Environment = Environment.development
    database_url: str = "sqlite+aiosqlite:///spix-dsr.db"
    # Folder for files a development install creates for itself (the subject key).
    data_dir: Path = Path(".spix-dsr")
    # HMAC key of the identity blind index; hex or any string of at least 32 characters.
    subject_key: str | None = None
    # Stored beside each hash with its normalisation version (`k1.n2`): at most 12 characters.
    subject_key_id: str = Field("k1", min_length=1, max_length=12)
    # Identity normalisation versions older than the current one whose hashes lookups still
    # match (JSON list); `[]` once `spix-dsr identities versions` reports none left.
    identity_legacy_versions: list[int] = Field(default_factory=lambda: [1])
    # HMAC key of the audit chain (its own key, not the subject key); same forms as above.
    audit_key: str | None = None
    default_phone_region: str = "US"
    cors_origins: list[str] = Field(default_factory=list)
    max_body_bytes: int = 5 * 1024 * 1024
    # How far ahead of ours a client's clock may run: a time of something that happened
    # (collected_at, an event, received_at) may be at most this far in the future. Request
    # bodies validate against the process's settings (get_settings), read from the environment.
    clock_skew_seconds: int = 300
    # Verified API keys are cached this long per process; revocation elsewhere shows after it.
    api_key_cache_seconds: float = 10.0
    # The longest maximum period a customer's own retention setting may name (ISO 8601).
    customer_retention_cap: str = "P10Y"
    # Subject requests. Legal clocks default to reference/deadlines.md; override per regime
    # with JSON, e.g. {"other": {"respond_days": 30}} (see app/requests/clocks.py).
    regime_clocks: dict[str, dict[str, Any]] = Field(default_factory=dict)
    holidays: list[date] = Field(default_factory=list)
    verification_code_ttl_hours: int = 72
    verification_max_attempts: int = 5
    # How long a closed request keeps its sealed contact details (CCPA: records 24 months).
    request_proof_days: int = 730
    # How long a stored Idempotency-Key answer is replayed; older rows are ignored and purged.
    idempotency_ttl_hours: int = Field(24, ge=1)
    # The worker (`spix-dsr worker`): webhook deliveries from the outbox and scheduled work.
    webhook_timeout_seconds: float = Field(10.0, gt=0)
    # Attempts before an event is dead-lettered (redeliver it by hand); waits between them
    # grow exponentially from the base, with jitter, up to the maximum.
    webhook_max_attempts: int = Field(8, ge=1)
    webhook_backoff_base_seconds: float = Field(10.0, ge=0)
    webhook_backoff_max_seconds: float = Field(3600.0, ge=0)
    # Development and tests only: allow plain http and loopback, link-local and private
    # addresses as webhook targets.
    webhook_allow_private_targets: bool = False
    # How long a rotated-out system signing secret still signs deliveries beside the new one.
    webhook_secret_overlap_hours: float = Field(24.0, ge=0)
    worker_poll_seconds: float = Field(1.0, gt=0)
    # Scheduled work: how often a worker runs it, how many days before a deadline
    # `request.due_soon` goes out, and after how many lapsed leases of one task
    # `task.lease_lapsed` does.
    schedule_interval_seconds: float = Field(60.0, gt=0)
    deadline_notice_days: int = Field(7, ge=0)
    lease_lapses_before_event: int = Field(3, ge=1)
    # A rule change reaching more records than this answers 202 with a job (GET /v1/jobs/{id})
    # that workers run in chunks of `job_chunk_records`, each committed on its own.
    recompute_inline_max_records: int = Field(100_000, ge=0)
    job_chunk_records: int = Field(10_000, ge=1)
    job_lease_seconds: float = Field(60.0, gt=0)
    worker_batch_size: int = Field(20, ge=1, le=500)
    log_level: str = "INFO"
    db_pool_size: int = 10
    db_echo: bool = False

    @field_validator("subject_key", "audit_key")
    @classmethod
    def _long_enough(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and len(value) < 32:
            raise ValueError(
                f"SPIX_DSR_{(info.field_name or '').upper()} must be at least 32 characters"
            )
        return value

    @field_validator("identity_legacy_versions")
    @classmethod
    def _known_versions(cls, value: list[int]) -> list[int]:
        if any(v != 1 for v in value):
            raise ValueError("SPIX_DSR_IDENTITY_LEGACY_VERSIONS may list only version 1")
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def resolve_subject_key(self) -> bytes:
        """The blind-index key: configured, or (development only) created once in data_dir."""
        return self._resolve_key(self.subject_key, "SUBJECT_KEY", "blind-index key", "subject.key")

    def resolve_audit_key(self) -> bytes:
        """The audit chain's HMAC key: configured, or (development only) created in data_dir."""
        return self._resolve_key(self.audit_key, "AUDIT_KEY", "audit chain key", "audit.key")

    def _resolve_key(self, configured: str | None, name: str, what: str, filename: str) -> bytes:
        if configured:
            return configured.encode()
        if self.env is Environment.production:
            raise ConfigurationError(
                f"SPIX_DSR_{name} is not set: production refuses to start without the "
                f"{what} (generate one with `python -c 'import secrets; "
                "print(secrets.token_hex(32))'` and keep it in your secret store)"
            )
        path = self.data_dir / filename
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Exclusive create: two processes starting together keep one key.
            try:
                with open(path, "x", encoding="ascii") as handle:
                    handle.write(secrets.token_hex(32))
                path.chmod(0o600)
            except FileExistsError:
                pass
        return path.read_text(encoding="ascii").strip().encode()


@lru_cache
def get_settings() -> Settings:
    return Settings()
