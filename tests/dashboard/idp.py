"""A test identity provider: keys it generates, tokens it signs, a JWKS as a file or served
from loopback (rotating on demand)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from app.core.oidc_settings import OidcIssuer

ISSUER = "https://idp.test/realms/spix"
AUDIENCE = "spix-dsr"


class SigningKey:
    def __init__(self, kind: str = "RS256") -> None:
        self.kid = uuid.uuid4().hex[:12]
        self.alg = kind
        if kind == "ES256":
            self.private: Any = ec.generate_private_key(ec.SECP256R1())
            public = json.loads(ECAlgorithm.to_jwk(self.private.public_key()))
        else:
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            public = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        self.jwk = {**public, "kid": self.kid, "use": "sig", "alg": kind}


class TestIdp:
    __test__ = False

    def __init__(self) -> None:
        self.keys = [SigningKey("RS256")]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.jwk for key in self.keys]}

    def rotate(self, kind: str = "RS256") -> SigningKey:
        """A new key replaces every old one (the old one is no longer published)."""
        self.keys = [SigningKey(kind)]
        return self.keys[0]

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        base = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": f"staff-{uuid.uuid4().hex[:8]}",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
        }
        return {k: v for k, v in {**base, **overrides}.items() if v is not None}

    def token(self, key: SigningKey | None = None, **claims: Any) -> str:
        key = key or self.keys[0]
        return jwt.encode(
            self.claims(**claims), key.private, algorithm=key.alg, headers={"kid": key.kid}
        )

    def staff(self, controller_id: uuid.UUID, **claims: Any) -> dict[str, str]:
        token = self.token(spix_role="controller", spix_controller_id=str(controller_id), **claims)
        return {"Authorization": f"Bearer {token}"}

    def issuer(self, **fields: Any) -> OidcIssuer:
        return OidcIssuer(issuer=ISSUER, audience=AUDIENCE, **fields)

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(self.jwks()))
        return path


@contextmanager
def serve_jwks(idp: TestIdp) -> Iterator[tuple[str, list[int]]]:
    """The IdP's current JWKS at a loopback URL; yields the URL and a list counting fetches."""
    fetches: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fetches.append(1)
            body = json.dumps(idp.jwks()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks", fetches
    finally:
        server.shutdown()
        server.server_close()
