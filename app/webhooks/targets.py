"""Safe webhook targets: https, and never an address inside our own network (loopback,
link-local, private, multicast or reserved ranges), checked when a URL is registered and again
before every delivery (the name may resolve elsewhere by then). The setting
SPIX_DSR_WEBHOOK_ALLOW_PRIVATE_TARGETS lifts both rules for development and tests."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


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
        _check_address(address)
    return host


def _check_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
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


async def check_target(url: str, *, allow_private: bool) -> None:
    """Check the URL's form and every address its host resolves to now."""
    host = check_shape(url, allow_private=allow_private)
    if allow_private:
        return
    port = urlsplit(url).port or 443
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UnsafeTarget("the webhook host does not resolve") from exc
    for info in infos:
        _check_address(ipaddress.ip_address(info[4][0]))
