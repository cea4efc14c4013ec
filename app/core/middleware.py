"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware): request id, access log, metrics,
and the request body limit."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

import orjson
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import PROBLEM_BASE, PROBLEM_MEDIA_TYPE
from app.core.logging import request_id_var

log = logging.getLogger("spix_dsr.access")

HTTP_REQUESTS = Counter(
    "spix_dsr_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "spix_dsr_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    # Unmatched paths are not labelled by their text: that would let callers grow the metrics.
    return path if isinstance(path, str) else "unmatched"


def _header(scope: Scope, name: bytes) -> bytes | None:
    """The last value of a header, as dict(scope["headers"]) would give it, without the dict."""
    found = None
    for key, value in scope["headers"]:
        if key == name:
            found = value
    return found


# The labelled children of the two metrics, per (method, route, status): prometheus_client's
# labels() takes a lock and checks its arguments on every call. Bounded like the labels are:
# routes are templates or "unmatched", and statuses are the app's own.
_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def _observe(method: str, route: str, status: int, elapsed: float) -> None:
    series = _series.get((method, route, status))
    if series is None:
        series = _series[(method, route, status)] = (
            HTTP_REQUESTS.labels(method, route, str(status)),
            HTTP_LATENCY.labels(method, route),
        )
    series[0].inc()
    series[1].observe(elapsed)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = (_header(scope, b"x-request-id") or b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        status = 500
        started = time.perf_counter()
        response_started = False
        request_id_header = (b"x-request-id", request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message.setdefault("headers", []).append(request_id_header)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Handled here rather than re-raised to the server, which would log it again.
            log.error("unhandled error", exc_info=exc, extra={"error_type": type(exc).__name__})
            if not response_started:
                await send_problem(
                    send_with_id,
                    500,
                    "internal-error",
                    "Internal server error",
                    "The service failed to answer; quote the request id when reporting it",
                    request_id,
                )
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            method = scope["method"]
            _observe(method, route, status, elapsed)
            if log.isEnabledFor(logging.INFO):
                principal = scope["state"].get("principal")
                log.info(
                    "request",
                    extra={
                        "method": method,
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                        "key_id": str(principal.key_id) if principal else None,
                    },
                )
            request_id_var.reset(token)


class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """413 for bodies over the limit, whether announced by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._send_413(scope, send)
            return
        received = 0
        too_large = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:
                return  # the app's answer to a cut-off body is replaced by the 413 below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not too_large:
                raise
        if too_large and not started:
            await self._send_413(scope, send)

    async def _send_413(self, scope: Scope, send: Send) -> None:
        await send_problem(
            send,
            413,
            "payload-too-large",
            "Request body too large",
            f"The body exceeds the limit of {self.max_bytes} bytes",
            scope.get("state", {}).get("request_id"),
        )


async def send_problem(
    send: Send, status: int, slug: str, title: str, detail: str, request_id: str | None
) -> None:
    """A problem answer from middleware, outside FastAPI's exception handlers."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if request_id:
        body["request_id"] = request_id
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
