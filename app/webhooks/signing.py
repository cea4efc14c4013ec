"""Standard Webhooks signatures (https://www.standardwebhooks.com), made with the
`standardwebhooks` package so receivers verify with the same library in any language."""

from __future__ import annotations

import base64
import os
from datetime import datetime

from standardwebhooks.webhooks import Webhook


def new_secret() -> str:
    """A `whsec_` secret as the specification writes it: base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def signature_header(secrets: list[str], msg_id: str, timestamp: datetime, body: str) -> str:
    """`webhook-signature`: one `v1,` signature per secret, space-separated (during a rotation
    the old and the new secret both sign, so a receiver holding either verifies)."""
    return " ".join(Webhook(secret).sign(msg_id, timestamp, body) for secret in secrets)
