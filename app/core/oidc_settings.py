"""How one identity provider's tokens are checked and read (`SPIX_DSR_OIDC_ISSUERS`)."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Asymmetric algorithms only: never `none`, never HMAC (a public key is no shared secret).
ASYMMETRIC_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)


class OidcIssuer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The `iss` claim, exactly.
    issuer: str = Field(min_length=1)
    # The `aud` this service accepts (its client id at the provider).
    audience: str = Field(min_length=1)
    # Where the signing keys are: a JWKS URL, or a JWKS file (air-gapped installs, tests).
    jwks_url: str | None = None
    jwks_file: str | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    # The claim naming the role, and provider values mapped to ours (absent: taken as is).
    role_claim: str = "spix_role"
    role_map: dict[str, str] = Field(default_factory=dict)
    # The claims binding customer staff to their controller, and a system to its key.
    controller_claim: str = "spix_controller_id"
    system_claim: str = "spix_system"
    # How long fetched keys are trusted before they are fetched again.
    jwks_cache_seconds: float = Field(300.0, gt=0)
    # A token naming an unknown `kid` fetches the keys again, at most this often (a stream
    # of made-up kids cannot become a stream of fetches).
    jwks_min_refresh_seconds: float = Field(5.0, ge=0)
    # exp / nbf / iat tolerance.
    leeway_seconds: int = Field(30, ge=0, le=300)

    @model_validator(mode="after")
    def _checked(self) -> Self:
        if (self.jwks_url is None) == (self.jwks_file is None):
            raise ValueError("an OIDC issuer names exactly one of jwks_url and jwks_file")
        if not self.algorithms:
            raise ValueError("an OIDC issuer allows at least one algorithm")
        refused = [a for a in self.algorithms if a not in ASYMMETRIC_ALGORITHMS]
        if refused:
            raise ValueError(
                f"OIDC algorithms must be asymmetric ({', '.join(ASYMMETRIC_ALGORITHMS)}); "
                f"refused: {', '.join(refused)}"
            )
        return self
