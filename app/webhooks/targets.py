"""Safe webhook targets: https, and never an address inside our own network (loopback,
link-local, private, multicast or reserved ranges), checked when a URL is registered and again
at delivery (the name may resolve elsewhere by then): the form before every attempt, the
addresses when a connection opens, which then goes to a checked address
(app/webhooks/transport.py). The setting SPIX_DSR_WEBHOOK_ALLOW_PRIVATE_TARGETS lifts both
rules for development and tests."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request

from app.core.errors import Unprocessable


class UnsafeTarget(Exception):
    """The URL may not receive webhooks; the message says why (and holds no secret)."""


def check_shape(url: str, *, allow_private: bool) -> str:
    """The URL's host, when its form is acceptable; literal addresses are checked here too."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (allow_private and parts.scheme == "http"):
        raise UnsafeTarget("a webhook URL must use https")
    host = parts.hostname
    if not host:
        raise UnsafeTarget("a webhook URL needs a host")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not allow_private and host.rstrip(".").lower() in ("localhost",):
            raise UnsafeTarget("a webhook URL may not point at this machine") from None
        return host
    if not allow_private:
        check_address(address)
    return host


def check_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    ):
        raise UnsafeTarget(
            "a webhook URL may not resolve to a loopback, link-local or private address"
        )


class SafeWebhooks:
    """The check a registry write runs on a webhook URL: its form, and the addresses its host
    resolves to now. A host that does not resolve yet is accepted (each delivery checks again)."""

    def __init__(self, allow_private: bool, v1a_available: bool = True) -> None:
        self.allow_private = allow_private
        self.v1a_available = v1a_available

    def check_scheme(self, scheme: str | None, loc: list[str | int]) -> None:
        """`v1a` needs the service's webhook signing key (optional in production)."""
        if scheme == "v1a" and not self.v1a_available:
            raise Unprocessable(
                "this service has no webhook signing key (SPIX_DSR_WEBHOOK_SIGNING_KEY): "
                "only the v1 scheme can sign",
                loc=loc,
            )

    async def check(self, url: str | None, loc: list[str | int]) -> None:
        if url is None:
            return
        try:
            host = check_shape(url, allow_private=self.allow_private)
        except UnsafeTarget as exc:
            raise Unprocessable(str(exc), loc=loc) from None
        if self.allow_private:
            return
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM), 2
            )
        except (OSError, TimeoutError):
            return
        try:
            for info in infos:
                check_address(ipaddress.ip_address(info[4][0]))
        except UnsafeTarget as exc:
            raise Unprocessable(str(exc), loc=loc) from None


async def get_safe_webhooks(request: Request) -> SafeWebhooks:
    return SafeWebhooks(
        request.app.state.settings.webhook_allow_private_targets,
        request.app.state.webhook_signer is not None,
    )


SafeWebhooksDep = Annotated[SafeWebhooks, Depends(get_safe_webhooks)]
