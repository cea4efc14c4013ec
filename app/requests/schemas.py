import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import EmailStr, Field, StringConstraints

from app.core.identity import Identity, IdentityType
from app.core.schemas import DottedKey, InputModel, Name, OutputModel, PastDatetime, Text

RequestType = Literal[
    "access", "portability", "rectification", "erasure", "restriction", "objection", "opt_out"
]
Regime = Literal["gdpr", "uk_gdpr", "ccpa", "vcdpa", "cpa", "ctdpa", "lgpd", "other"]
RequestStatus = Literal["pending_verification", "in_progress", "completed", "denied", "cancelled"]
ScopeStatus = Literal[
    "awaiting_controller",
    "in_progress",
    "completed",
    "declined",
    "handled_by_controller",
    "failed",
]
Channel = Literal["email", "sms", "voice", "all"]
IntakeChannel = Literal["email", "web", "dashboard", "api"]
VerificationMethod = Literal["code", "manual"]
# How a request came to be verified: by the subject (code, manual) or at intake, where a
# trusted caller vouches for the subject or the request type needs no verification.
VerifiedBy = Literal["code", "manual", "trusted_session", "not_required"]
DenialReason = Literal["unverifiable", "manifestly_unfounded", "excessive", "exempt"]
# Whitespace is stripped before the length is checked: the document says a note needs a
# character that is not whitespace (the same set in Python's and pydantic-core's regexes).
Note = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=r"[^\s\x1c-\x1f]")]


class Requester(InputModel):
    kind: Literal["subject", "authorized_agent"] = "subject"
    name: Name | None = None
    email: EmailStr | None = None
    # The subject's signed permission for an agent (CCPA 11 CCR 7063): what it is, where kept.
    authorization_note: Note | None = None


class RequestDetails(InputModel):
    corrections: dict[Annotated[str, StringConstraints(max_length=100)], Any] | None = Field(
        None,
        max_length=50,
        description="Rectification: field name to corrected value; handed to systems only",
    )
    channel: Channel | None = Field(None, description="Opt-out and objection: which channel")
    purpose: DottedKey | None = Field(None, description="Objection: the purpose objected to")
    lift: bool = Field(False, description="Restriction: lift an earlier restriction")
    gpc: bool = Field(
        False,
        description="Filed with the Global Privacy Control signal (as `Sec-GPC: 1` does): an "
        "opt-out of sale and sharing, no verification needed (CCPA 11 CCR 7025)",
    )


class RequestCreate(InputModel):
    type: RequestType
    regime: Regime
    identities: list[Identity] = Field(min_length=1, max_length=20)
    requester: Requester = Field(default_factory=Requester)
    channel: IntakeChannel = "api"
    received_at: PastDatetime | None = None
    controller_id: uuid.UUID | None = None
    details: RequestDetails = Field(default_factory=RequestDetails)
    verified: bool = Field(False, description="A trusted session verified the subject")


class VerifyIn(InputModel):
    code: Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")] | None = None
    method: VerificationMethod = "code"
    note: Note | None = None
    evidence_received_at: PastDatetime | None = Field(
        None,
        description="Manual: when the identity evidence arrived (now when omitted); where "
        "the clock paused for it, the due date runs from then",
    )


class ExtendIn(InputModel):
    reason: Note
    subject_notified_at: PastDatetime = Field(
        description="When the subject was told of the extension and its reasons; no later "
        "than the original deadline"
    )


class AcknowledgeIn(InputModel):
    acknowledged_at: PastDatetime | None = Field(
        None, description="When the confirmation of receipt was sent; now when omitted"
    )


class DenyIn(InputModel):
    reason: DenialReason
    detail: Text | None = None


class CancelIn(InputModel):
    reason: Note | None = None


InstructionRef = Annotated[str, StringConstraints(min_length=1, max_length=500)]


class DecisionIn(InputModel):
    decision: Literal["approve", "decline", "handled_by_controller"]
    reason: Note | None = None
    instruction_ref: InstructionRef | None = Field(
        None,
        description="The customer's instruction behind an admin decision on a customer's "
        "scope (a ticket, an e-mail, the standing instruction): required then (GDPR Art. "
        "28(3)(a))",
    )


class VerificationChallenge(OutputModel):
    method: Literal["code"] = "code"
    code: str = Field(description="Shown once: deliver it to the subject")
    expires_at: datetime


class HeldBy(OutputModel):
    """Why a suspended erase task waits: the legal holds on its records, and how many of
    them are restricted (Art. 18)."""

    holds: list[uuid.UUID]
    restricted: int


class TaskSummary(OutputModel):
    id: uuid.UUID
    system: str
    action: Literal["export", "erase", "rectify", "restrict", "unrestrict"]
    status: Literal["pending", "claimed", "completed", "failed", "suspended"]
    records: int
    held_by: HeldBy | None = Field(
        None, description="A suspended erase task: what holds its records until released"
    )


class ScopeOut(OutputModel):
    controller_id: uuid.UUID
    status: ScopeStatus
    records: int
    tasks: list[TaskSummary]
    decision_reason: str | None = None
    instruction_ref: str | None = Field(
        None, description="The customer's instruction the decision or automatic run acted on"
    )
    outcome: dict[str, Any] | None = None


class RequestOut(OutputModel):
    id: uuid.UUID
    type: RequestType
    regime: Regime
    status: RequestStatus
    channel: IntakeChannel
    requester_kind: Literal["subject", "authorized_agent"]
    identity_types: list[IdentityType]
    filed_by_controller_id: uuid.UUID | None
    received_at: datetime
    acknowledge_by: datetime | None
    due_at: datetime
    extended_due_at: datetime | None
    extension_reason: str | None
    overdue: bool
    verified_at: datetime | None
    verification_method: VerifiedBy | None
    extension_notified_at: datetime | None = Field(
        None, description="When the subject was told of the extension"
    )
    acknowledged_at: datetime | None = Field(
        None, description="When receipt was confirmed to the subject"
    )
    acknowledgement_overdue: bool = Field(
        False, description="Open, receipt not confirmed, and past `acknowledge_by`"
    )
    clock_paused_at: datetime | None = Field(
        None,
        description="While identity evidence is awaited under a regime whose clock stands "
        "still for it (UK GDPR Art. 12A): when it was asked for; the due date then runs "
        "from the evidence's arrival",
    )
    denial_reason: DenialReason | None
    closed_at: datetime | None
    scopes: list[ScopeOut]
    outcome: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


class RequestCreated(RequestOut):
    verification: VerificationChallenge | None = None


class RequestPage(OutputModel):
    items: list[RequestOut]
    next_cursor: str | None = None


class SignedReceipt(OutputModel):
    """A completed erasure's receipt and its Ed25519 signature over the canonical JSON of
    `receipt` (sorted keys, no whitespace)."""

    alg: Literal["EdDSA"]
    # The signing key's JWK thumbprint (RFC 7638), found in /.well-known/spix-dsr/receipt-keys.
    kid: str
    receipt: dict[str, Any]
    # base64url, no padding.
    signature: str
