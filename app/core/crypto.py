"""Encryption for the few secrets the service must read back (webhook signing secrets, raw
contact identities of open requests): AES-GCM with a key derived from the subject key."""

from __future__ import annotations

import base64
import os
from typing import Annotated

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import Depends, Request


class SecretBox:
    def __init__(self, master_key: bytes, key_id: str) -> None:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"spix-dsr secret box v1"
        ).derive(master_key)
        self._aead = AESGCM(derived)
        self.key_id = key_id

    def seal(self, plaintext: str, *, context: str) -> str:
        """Encrypt; `context` (e.g. "controller:<id>") binds the text to where it is stored."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return f"{self.key_id}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, token: str, *, context: str) -> str:
        _key_id, _, payload = token.partition(":")
        raw = base64.urlsafe_b64decode(payload.encode())
        return self._aead.decrypt(raw[:12], raw[12:], context.encode()).decode()


async def get_secret_box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.secret_box
    return box


SecretBoxDep = Annotated[SecretBox, Depends(get_secret_box)]
