"""The HTTP client of deliveries, closed to DNS rebinding: each connection resolves the host
once, checks every address it got (unless private targets are allowed) and connects to one of
those very addresses. Nothing resolves the name a second time between the check and the
connection, so a name that answers a public address to the check and a private one a moment
later reaches nothing inside our network. The URL keeps its host name, so the Host header, TLS
SNI and the certificate check are those of the name, as without pinning.

A kept-alive connection goes on talking to the address it was opened to (checked then)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore
import httpx

from app.webhooks.targets import UnsafeTarget, check_address

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system's resolver gives for the host, in its order."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UnsafeTarget("the webhook host does not resolve") from exc
    return [str(info[4][0]) for info in infos]


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Resolves once, checks, and connects to a checked address."""

    def __init__(self, *, allow_private: bool, resolver: Resolver = system_resolver) -> None:
        self.allow_private = allow_private
        self.resolver = resolver
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = list(dict.fromkeys(await self.resolver(host, port)))
        if not addresses:
            raise UnsafeTarget("the webhook host does not resolve")
        if not self.allow_private:
            for address in addresses:
                check_address(ipaddress.ip_address(address))
        error: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(self, *_args: Any, **_kwargs: Any) -> Any:
        raise UnsafeTarget("webhooks are not delivered over unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool whose connections go through PinnedBackend."""

    def __init__(self, *, allow_private: bool, resolver: Resolver = system_resolver) -> None:
        options = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        super().__init__(trust_env=False, socket_options=options)
        # httpx builds its pool without a way to pass a network backend: build it again, as
        # httpx does, with ours. (tests/worker/test_targets.py shows the pin holds.)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            socket_options=options,
            network_backend=PinnedBackend(allow_private=allow_private, resolver=resolver),
        )


def delivery_client(
    *, allow_private: bool, resolver: Resolver = system_resolver
) -> httpx.AsyncClient:
    # trust_env=False: a proxy named in the environment would connect on its own, unpinned.
    # No Nagle delay (TCP_NODELAY): headers and body go out in separate writes, and a
    # receiver's delayed ACK would otherwise hold every small POST ~40 ms.
    return httpx.AsyncClient(
        transport=PinnedTransport(allow_private=allow_private, resolver=resolver),
        follow_redirects=False,
        trust_env=False,
    )
