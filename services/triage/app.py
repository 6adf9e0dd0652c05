"""HTTP face of the triage service: the Zendesk webhook intake, health, readiness and Prometheus metrics.

The intake answers 200 only after the delivery is committed to the warehouse inbox (``triage_inbox``); every
refusal says why in a JSON ``error`` and stores nothing. Bodies are never logged (they hold customer text).
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from ticketlens.services.triage.payload import PayloadError, parse_delivery
from ticketlens.services.triage.service import QueueFullError, TriageService
from ticketlens.services.triage.signature import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    parse_timestamp,
    signature_matches,
)

log = logging.getLogger("ticketlens.triage")
INTAKE_PATH = "/webhooks/zendesk/ticket-created"


class BodyTooLargeError(Exception):
    """The body passed TICKETLENS_TRIAGE_MAX_BODY_BYTES while it was being read (answered 413)."""


async def read_capped(request: Request, cap: int) -> bytes:
    """The raw body, read in chunks and abandoned as soon as it exceeds ``cap`` (Content-Length is a claim,
    and chunked requests have none)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > cap:
        raise BodyTooLargeError
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise BodyTooLargeError
    return bytes(body)


def create_app(service: TriageService, *, manage: bool = True) -> FastAPI:
    """The app around ``service``; with ``manage`` the app's lifespan starts and stops the service's threads."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if manage:
            await run_in_threadpool(service.start)
        try:
            yield
        finally:
            if manage:
                await run_in_threadpool(service.stop)

    app = FastAPI(title="TicketLens triage", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.triage = service
    triage = service.triage
    metrics = service.metrics

    def reject(status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        metrics.rejected.labels(reason).inc()
        log.info("Webhook rejected (%s): %s", reason, message)
        return JSONResponse({"error": reason, "message": message}, status_code=status, headers=headers)

    @app.post(INTAKE_PATH)
    async def ticket_created(request: Request):
        started = time.perf_counter()
        try:
            return await _intake(request)
        finally:
            metrics.intake_seconds.observe(time.perf_counter() - started)

    async def _intake(request: Request):
        try:
            body = await read_capped(request, triage.max_body_bytes)
        except BodyTooLargeError:
            return reject(413, "body_too_large", f"the body exceeds {triage.max_body_bytes} bytes "
                          "(TICKETLENS_TRIAGE_MAX_BODY_BYTES)")
        secret = triage.webhook_secret.get_secret_value() if triage.webhook_secret else ""
        if not secret:
            return reject(401, "no_secret_configured", "the service has no signing secret "
                          "(TICKETLENS_TRIAGE_WEBHOOK_SECRET); every webhook is refused")
        signature = request.headers.get(SIGNATURE_HEADER)
        stamp = request.headers.get(TIMESTAMP_HEADER)
        if not signature or not stamp:
            missing = [h for h, v in ((SIGNATURE_HEADER, signature), (TIMESTAMP_HEADER, stamp)) if not v]
            return reject(401, "missing_signature", f"missing header(s): {', '.join(missing)}")
        when = parse_timestamp(stamp)
        if when is None:
            return reject(401, "bad_timestamp", f"{TIMESTAMP_HEADER} is not an ISO 8601 UTC time or Unix seconds")
        skew = abs((datetime.now(UTC) - when).total_seconds())
        if skew > triage.replay_window_seconds:
            return reject(401, "stale_timestamp", f"{TIMESTAMP_HEADER} is {skew:.0f} s from now, outside the "
                          f"replay window of {triage.replay_window_seconds:g} s (TICKETLENS_TRIAGE_REPLAY_WINDOW_SECONDS)")
        if not signature_matches(secret, stamp, body, signature):
            return reject(401, "bad_signature", f"{SIGNATURE_HEADER} does not match base64(HMAC-SHA256(secret, "
                          "timestamp + body)); check the signing secret")
        try:
            parsed = json.loads(body.decode("utf-8"))  # Zendesk sends UTF-8 JSON
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            return reject(400, "bad_json", f"the body is not valid JSON{where}: "
                          f"{exc.msg if isinstance(exc, json.JSONDecodeError) else 'not UTF-8'}")
        try:
            delivery = parse_delivery(parsed)
        except PayloadError as exc:
            return reject(400, "bad_payload", str(exc))
        try:
            outcome = await run_in_threadpool(service.accept, delivery)
        except QueueFullError as exc:
            return reject(503, "queue_full", f"{exc}; retry later", {"Retry-After": str(triage.retry_after_seconds)})
        except sa.exc.SQLAlchemyError as exc:
            return reject(503, "warehouse_unavailable", f"the inbox could not be written ({type(exc).__name__}); "
                          "retry later", {"Retry-After": str(triage.retry_after_seconds)})
        return JSONResponse({"status": outcome, "ticket_id": delivery.ticket_id})

    @app.get("/healthz")
    def healthz():
        """Alive: the process answers (the worker's state is /readyz's business)."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        ok, checks = service.ready()
        return JSONResponse({"ready": ok, **checks}, status_code=200 if ok else 503)

    @app.get("/metrics")
    def prometheus_metrics():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
