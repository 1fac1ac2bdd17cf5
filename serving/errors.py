"""Turning bad input into 4xx answers that name the field, and the request-size limit.

FastAPI already answers malformed JSON and fields with 422 and the field's location; this adds the
checks pydantic cannot make alone (an unknown event type), a 413 for oversized bodies before they
are read, and maps Wayfinder's own errors: bad arguments 422, a store or model problem 503. A
replica behind a handle that died mid-call (the updater, while Serve replaces it), or did not answer
within the deadline (:func:`within`), is a 503 too: the event may or may not be stored, and a retry
with the same ``event_id`` is safe.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection
from datetime import datetime, timezone
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray.exceptions import RayActorError

from recsys.engine import IncomingEvent
from recsys.errors import ArtifactError, ConfigError, DataError
from recsys.store import StoreError
from serving.auth import denial
from serving.schemas import EventIn

MAX_BODY_BYTES = 1_000_000


class ReplicaTimeoutError(Exception):
    """A call to another deployment did not answer in time (answered 503)."""


async def within(response: Any, seconds: float, what: str) -> Any:
    """Await a ``DeploymentResponse``, cancelling it after ``seconds``.

    A call in flight on a replica that is killed can stay unanswered (measured in
    ``benchmarks/soak.py``); without a deadline the client would wait for its own timeout.
    """

    async def result() -> Any:
        return await response

    try:
        return await asyncio.wait_for(result(), seconds)
    except asyncio.TimeoutError:
        response.cancel()
        raise ReplicaTimeoutError(f"{what} did not answer within {seconds:g} s") from None


def to_incoming(event: EventIn, position: int, known_types: Collection[str]) -> IncomingEvent:
    """The engine's event; 422 naming ``events[i].event_type`` for a type the model does not know."""
    if event.event_type not in known_types:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "events", position, "event_type"),
                    "msg": f"unknown event type {event.event_type!r}; known: {sorted(known_types)}",
                    "type": "value_error",
                    "input": event.event_type,
                }
            ]
        )
    stamp = event.timestamp or datetime.now(timezone.utc)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    context = dict(event.context)
    if event.request_id:
        context["request_id"] = event.request_id
    return IncomingEvent(
        user_id=event.user_id,
        item_id=event.item_id,
        event_type=event.event_type,
        timestamp=stamp.timestamp(),
        value=event.value,
        event_id=event.event_id,
        context=context,
        request_id=event.request_id,
    )


class BodyLimit:
    """Pure ASGI middleware: 413 for a declared ``content-length`` over :data:`MAX_BODY_BYTES` (or not
    a number), before the body is read. Pure ASGI, not ``@app.middleware``: Starlette's
    ``BaseHTTPMiddleware`` runs every request through an extra task group and response stream."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length":
                    if not value.isdigit() or int(value) > MAX_BODY_BYTES:
                        detail = f"request body over {MAX_BODY_BYTES} bytes (the limit); send smaller batches"
                        await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped. A validation error echoes the input, which may
    hold a lone surrogate (a JSON ``"\\ud800"`` escape of half a UTF-16 pair: valid JSON that
    pydantic refuses as a string); it has no UTF-8 form, so the default rendering raised (a 500)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def install_error_handlers(api: FastAPI) -> None:
    """Register the body-size limit and the mapping of Wayfinder errors to status codes."""

    api.add_middleware(BodyLimit)

    @api.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # A body that is not JSON fails before the route's dependencies run, the API-key check
        # included: an unauthenticated caller gets the key's 401 (or 403, 429), not the 422.
        if any(error.get("type") == "json_invalid" for error in exc.errors()):
            denied = denial(request)
            if denied is not None:
                return await http_exception_handler(request, denied)
        return AsciiJSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)

    @api.exception_handler(ConfigError)
    @api.exception_handler(DataError)
    async def bad_input(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @api.exception_handler(StoreError)
    @api.exception_handler(ArtifactError)
    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        cause = getattr(exc, "cause", None)  # raised in the updater: a RayTaskError with a traceback
        message = cause if isinstance(cause, Exception) else exc
        return JSONResponse({"detail": f"temporarily unavailable: {message}"}, status_code=503)

    @api.exception_handler(RayActorError)  # also ActorDiedError and ActorUnavailableError
    @api.exception_handler(ReplicaTimeoutError)
    async def replica_gone(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            {"detail": f"temporarily unavailable ({type(exc).__name__}); retry, the same event_id is safe"},
            status_code=503,
        )
