"""Settings from the environment (prefix SPIX_DSR_)."""

import json
import secrets
from collections.abc import Callable
from datetime import date
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.core.oidc_settings import OidcIssuer


class Environment(StrEnum):
    development = "development"
    production = "production"


class ConfigurationError(RuntimeError):
    """The service cannot start with these settings; the message says why."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPIX_DSR_", extra="ignore")

    env: Environment = Environment.development
    # Folder of every default path (the SQLite file, development keys): resolved once, at
    # load, to an absolute path, so a command run from another folder uses the same files.
    data_dir: Path = Path(".spix-dsr")
    # Default (development only): the SQLite file `spix-dsr.db` in data_dir. Production
    # requires an explicit URL.
    database_url: str = ""
    # HMAC key of the identity blind index; hex or any string of at least 32 characters.
    subject_key: str | None = None
    # Stored beside each hash with its normalisation version (`k1.n3`): at most 12 characters.
    subject_key_id: str = Field("k1", min_length=1, max_length=12)
    # Identity normalisation versions older than the current one whose hashes lookups still
    # match (JSON list); `[]` once `spix-dsr identities versions` reports none left.
    identity_legacy_versions: list[int] = Field(default_factory=lambda: [1, 2])
    # HMAC key of the audit chain (its own key, not the subject key); same forms as above.
    audit_key: str | None = None
    # Ed25519 key that signs erasure receipts: PEM (PKCS#8) or the 32-byte private key in
    # base64. Its public key is published at /.well-known/spix-dsr/receipt-keys.
    receipt_signing_key: str | None = None
    # Ed25519 key that signs webhook deliveries of endpoints that chose the asymmetric scheme
    # (`v1a`): PEM (PKCS#8), the 32-byte private key in base64, or a Standard Webhooks `whsk_`
    # key. Its public key is published at /.well-known/spix-dsr/webhook-keys. Optional in
    # production: without it no endpoint may choose `v1a`.
    webhook_signing_key: str | None = None
    # How long an erasure is remembered (blind indexes, controller, date): a record registered
    # for an erased identity within this period is flagged for review. 0 remembers nothing.
    erasure_memory_days: int = Field(365, ge=0)
    default_phone_region: str = "US"
    # OpenDSR (customers filing toward Spix as their processor): the domain the signing
    # certificate is issued to (sent as X-OpenDSR-Processor-Domain), and the RSA private key
    # and certificate (PEM files) that sign answers and callbacks. Development creates a
    # self-signed pair in data_dir; production serves OpenDSR only with all three set.
    opendsr_processor_domain: str | None = None
    opendsr_signing_key_path: Path | None = None
    opendsr_certificate_path: Path | None = None
    # Dashboard origins allowed to call across origins: a JSON list or comma-separated.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Identity providers whose tokens sign in (JSON list; see app/core/oidc_settings.py).
    oidc_issuers: list[OidcIssuer] = Field(default_factory=list)
    # Requests per principal and route class ("read", "write"), as `limits` strings;
    # an empty string lifts that class's limit.
    rate_limits: dict[str, str] = Field(
        default_factory=lambda: {"read": "1200/minute", "write": "600/minute"}
    )
    # `memory://` (per process) or a Redis URL (`redis://host:6379/0`): replicas share it.
    rate_limit_storage: str = "memory://"
    max_body_bytes: int = 5 * 1024 * 1024
    # When set, /metrics answers only `Authorization: Bearer <this token>` (401 otherwise).
    metrics_token: SecretStr | None = None
    # How far ahead of ours a client's clock may run: a time of something that happened
    # (collected_at, an event, received_at) may be at most this far in the future. Request
    # bodies validate against the process's settings (get_settings), read from the environment.
    clock_skew_seconds: int = 300
    # Verified API keys are cached this long per process; revocation elsewhere shows after it.
    api_key_cache_seconds: float = 10.0
    # The longest maximum period a customer's own retention setting may name (ISO 8601).
    customer_retention_cap: str = "P10Y"
    # After a customer's agreement ends (its controller's effective_until), the time it has
    # to take its data back before the data must be deleted (GDPR Art. 28(3)(g)); ISO 8601.
    contract_end_grace: str = "P30D"
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
    # A job whose chunk fails (raises, or its worker dies) this many times ends `failed`; the
    # waits between tries grow from the base.
    job_max_failures: int = Field(5, ge=1)
    job_retry_base_seconds: float = Field(5.0, ge=0)
    worker_batch_size: int = Field(20, ge=1, le=500)
    log_level: str = "INFO"
    # Above the concurrent requests one worker serves, so steady load opens no connections.
    db_pool_size: int = 20
    db_echo: bool = False
    # `spix-dsr bootstrap`: a first admin key chosen by the operator (`sdsr_<prefix>_<secret>`),
    # given directly or as a file (a mounted secret), stored hashed when no admin key exists.
    bootstrap_admin_key: SecretStr | None = None
    bootstrap_admin_key_file: Path | None = None
    # The Data Rights Protocol (/drp): our covered-business id in the DRP directory, which
    # every signed message must name as its `business-id`. Unset, every agent is refused.
    drp_business_id: str | None = None
    # `spix-dsr bootstrap` loads the Spix default taxonomy when the registry is empty.
    seed_on_empty: bool = False

    @field_validator("subject_key", "audit_key")
    @classmethod
    def _long_enough(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and len(value) < 32:
            raise ValueError(
                f"SPIX_DSR_{(info.field_name or '').upper()} must be at least 32 characters"
            )
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [origin.strip() for origin in text.split(",") if origin.strip()]
        return value

    @field_validator("identity_legacy_versions")
    @classmethod
    def _known_versions(cls, value: list[int]) -> list[int]:
        if any(v not in (1, 2) for v in value):
            raise ValueError("SPIX_DSR_IDENTITY_LEGACY_VERSIONS may list only versions 1 and 2")
        return value

    @model_validator(mode="after")
    def _resolve_paths(self) -> "Settings":
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.database_url:
            if self.env is Environment.production:
                raise ValueError(
                    "SPIX_DSR_DATABASE_URL is not set: production requires an explicit "
                    "database URL (postgresql+asyncpg://user:password@host/database)"
                )
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / 'spix-dsr.db'}"
        return self

    @property
    def database_display(self) -> str:
        """The database URL without its password (safe to print)."""
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.database_url).set(password=None).render_as_string()
        except Exception:  # an unparsable URL fails later, with its own error
            return "(unparsable database URL)"

    @property
    def subject_key_source(self) -> str:
        if self.subject_key:
            return "SPIX_DSR_SUBJECT_KEY"
        return str(self.data_dir / "subject.key")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def resolve_subject_key(self) -> bytes:
        """The blind-index key: configured, or (development only) created once in data_dir."""
        return self._resolve_key(self.subject_key, "SUBJECT_KEY", "blind-index key", "subject.key")

    def resolve_audit_key(self) -> bytes:
        """The audit chain's HMAC key: configured, or (development only) created in data_dir."""
        return self._resolve_key(self.audit_key, "AUDIT_KEY", "audit chain key", "audit.key")

    def resolve_receipt_key(self) -> bytes:
        """The receipt signing key (PEM or base64 text): configured, or (development only)
        created once in data_dir as PKCS#8 PEM."""
        return self._resolve_key(
            self.receipt_signing_key,
            "RECEIPT_SIGNING_KEY",
            "receipt signing key",
            "receipt.key",
            new_key=new_ed25519_pem,
            how="`openssl genpkey -algorithm ed25519`",
        )

    def resolve_webhook_key(self) -> bytes | None:
        """The webhook signing key: configured, None in production without one (no `v1a`),
        or (development only) created once in data_dir as PKCS#8 PEM."""
        if not self.webhook_signing_key and self.env is Environment.production:
            return None
        return self._resolve_key(
            self.webhook_signing_key,
            "WEBHOOK_SIGNING_KEY",
            "webhook signing key",
            "webhook.key",
            new_key=new_ed25519_pem,
        )

    def _resolve_key(
        self,
        configured: str | None,
        name: str,
        what: str,
        filename: str,
        *,
        new_key: Callable[[], str] = lambda: secrets.token_hex(32),
        how: str = "`python -c 'import secrets; print(secrets.token_hex(32))'`",
    ) -> bytes:
        if configured:
            return configured.encode()
        if self.env is Environment.production:
            raise ConfigurationError(
                f"SPIX_DSR_{name} is not set: production refuses to start without the "
                f"{what} (generate one with {how} and keep it in your secret store)"
            )
        path = self.data_dir / filename
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Exclusive create: two processes starting together keep one key.
            try:
                with open(path, "x", encoding="ascii") as handle:
                    handle.write(new_key())
                path.chmod(0o600)
            except FileExistsError:
                pass
        return path.read_text(encoding="ascii").strip().encode()


def new_ed25519_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode("ascii")
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
