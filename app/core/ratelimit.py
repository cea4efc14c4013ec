"""Rate limits per principal and route class, with the `limits` library.

Each principal (an API key, or a token's subject) has one budget per route class: `read`
(GET, HEAD) and `write` (everything else). Budgets are counted in a sliding window (the
`limits` library's closest kin to a token bucket: a burst up to the limit, then requests
come back as the window slides). They are kept in memory per process by default, or in Redis
(`SPIX_DSR_RATE_LIMIT_STORAGE=redis://…`) so that several replicas share one budget. A spent
budget answers 429 with `Retry-After`. If Redis cannot be reached the request goes through
(with a warning in the log): a rate limit protects the service, it must not take it down."""

from __future__ import annotations

import logging
import math
import time
import uuid

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from app.core.errors import AppError

log = logging.getLogger("spix_dsr.ratelimit")

READ_METHODS = frozenset({"GET", "HEAD"})


class TooManyRequests(AppError):
    status, slug, title = 429, "too-many-requests", "Too many requests"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"This credential's budget for this kind of request is spent; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )


def _storage(uri: str) -> Storage:
    if uri in ("", "memory://"):
        return MemoryStorage()
    if uri.startswith(("redis://", "rediss://", "redis+unix://")):
        # redis-py's asyncio client (the `limits[redis]` extra), not coredis.
        uri = "async+" + uri
        storage = storage_from_string(uri, implementation="redispy", wrap_exceptions=True)
    else:
        storage = storage_from_string(uri, wrap_exceptions=True)
    if not isinstance(storage, Storage):
        raise ValueError("SPIX_DSR_RATE_LIMIT_STORAGE names a storage without async support")
    return storage


class RateLimiter:
    def __init__(self, limits: dict[str, str], storage: str = "memory://") -> None:
        self._items: dict[str, RateLimitItem] = {
            route_class: parse(text) for route_class, text in limits.items() if text.strip()
        }
        self._storage = _storage(storage)
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)

    @staticmethod
    def route_class(method: str) -> str:
        return "read" if method in READ_METHODS else "write"

    async def hit(self, principal_id: uuid.UUID, method: str) -> None:
        """Spend one request of this principal's budget; 429 when it is spent."""
        route_class = self.route_class(method)
        item = self._items.get(route_class)
        if item is None:
            return
        identity = (route_class, str(principal_id))
        try:
            if await self._limiter.hit(item, *identity):
                return
            stats = await self._limiter.get_window_stats(item, *identity)
        except StorageError as exc:
            log.warning("rate limit storage unavailable", extra={"error": str(exc)})
            return
        raise TooManyRequests(max(1, math.ceil(stats.reset_time - time.time())))

    async def reset(self) -> None:
        await self._storage.reset()
