"""Signed "ticket created" webhooks from the simulator, the way Zendesk sends them to the triage service.

When a ticket is created — a live-mode ticket whose creation time the clock passes, or one created through the
API (``POST /api/v2/tickets.json``, what a load generator calls) — the simulator POSTs a JSON body to the
configured URL, signed like Zendesk: ``X-Zendesk-Webhook-Signature = base64(HMAC-SHA256(secret, timestamp +
body))`` with ``X-Zendesk-Webhook-Signature-Timestamp``. It retries on timeouts, connection errors, 5xx and 429
(with backoff, honouring Retry-After), like Zendesk. Fault switches (``POST /_sim/webhooks``) drop, duplicate,
delay or reorder deliveries, or send them with a bad signature.

Configuration: ``TICKETLENS_TRIAGE_SIMULATOR_WEBHOOK_URL`` / ``TICKETLENS_TRIAGE_WEBHOOK_SECRET`` /
``TICKETLENS_TRIAGE_SIMULATOR_WEBHOOK_BODY`` at start-up (services.triage.settings), or ``POST /_sim/webhooks``
at run time. No URL → nothing is sent and no thread runs.
"""

from __future__ import annotations

import bisect
import contextlib
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Request

from ticketlens.helpdesk_sim.dataset import TicketSpec

EVENT_TYPE = "zen:event-type:ticket.created"
API_TICKET_IDS = 900_000_000  # tickets created through the API get ids from here (no clash with the live feed)


@dataclass
class WebhookFaults:
    drop_rate: float = 0.0  # share of deliveries never sent (the hourly sweep must catch these tickets)
    duplicate_rate: float = 0.0  # share sent twice (same event id: the service must store one)
    delay_ms: int = 0  # added before each delivery
    reorder_window: int = 0  # hold up to N deliveries and send them shuffled (flushed after 1 s anyway)
    bad_signature_rate: float = 0.0  # share signed with a wrong secret (the service must answer 401)


@dataclass
class WebhookConfig:
    url: str | None = None
    secret: str = ""
    body: str = "full"  # "full": event-subscription body with the ticket's fields; "id": trigger body, id only
    timeout_seconds: float = 12.0  # Zendesk's webhook timeout
    max_attempts: int = 4  # the first try + 3 retries
    backoff_seconds: float = 0.5
    senders: int = 4  # concurrent deliveries
    seed: int = 0
    faults: WebhookFaults = field(default_factory=WebhookFaults)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def webhook_body(ticket: dict[str, Any], mode: str) -> bytes:
    """The JSON a Zendesk webhook carries for a new ticket (docs/triage.md shows both shapes)."""
    event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"ticketlens-sim/ticket/{ticket['id']}/created"))
    if mode == "id":
        return orjson.dumps({"event": "ticket.created", "event_id": event_id,
                             "ticket": {"id": str(ticket["id"]), "created_at": ticket["created_at"]}})
    detail = {k: ticket.get(k) for k in ("subject", "description", "tags", "created_at", "updated_at", "status",
                                         "priority", "type", "requester_id", "organization_id")}
    return orjson.dumps({"type": EVENT_TYPE, "id": event_id, "time": ticket["created_at"],
                         "zendesk_event_version": "2022-11-06", "subject": f"zen:ticket:{ticket['id']}",
                         "detail": {"id": str(ticket["id"]), **detail}})


class WebhookSender:
    """Delivers webhooks from a queue on ``senders`` threads, with Zendesk-like retries and the fault switches."""

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.lock = threading.Lock()
        self.queue: deque[tuple[dict[str, Any], bool]] = deque()
        self.held: list[tuple[dict[str, Any], bool]] = []  # reorder buffer
        self.held_since = 0.0
        self.ready = threading.Condition(self.lock)
        self.threads: list[threading.Thread] = []
        self.stopping = False
        self.stats = {"notified": 0, "delivered": 0, "retries": 0, "failed": 0, "dropped": 0, "duplicated": 0,
                      "bad_signature": 0, "rejected": 0}
        self.client = httpx.Client(timeout=config.timeout_seconds)

    def notify(self, ticket: dict[str, Any]) -> None:
        faults = self.config.faults
        with self.lock:
            if not self.config.url:
                return
            self.stats["notified"] += 1
            if faults.drop_rate and self.rng.random() < faults.drop_rate:
                self.stats["dropped"] += 1
                return
            bad = bool(faults.bad_signature_rate) and self.rng.random() < faults.bad_signature_rate
            copies = 2 if faults.duplicate_rate and self.rng.random() < faults.duplicate_rate else 1
            self.stats["duplicated"] += copies - 1
            for _ in range(copies):
                if faults.reorder_window > 1:
                    if not self.held:
                        self.held_since = time.monotonic()
                    self.held.append((ticket, bad))
                    if len(self.held) >= faults.reorder_window:
                        self._release_held()
                else:
                    self.queue.append((ticket, bad))
            self._ensure_threads()
            self.ready.notify_all()

    def _release_held(self) -> None:
        self.rng.shuffle(self.held)
        self.queue.extend(self.held)
        self.held = []

    def _ensure_threads(self) -> None:
        self.threads = [t for t in self.threads if t.is_alive()]
        while len(self.threads) < max(1, self.config.senders):
            thread = threading.Thread(target=self._run, name="sim-webhooks", daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self) -> None:
        while True:
            with self.lock:
                while not self.queue and not self.stopping:
                    if self.held and time.monotonic() - self.held_since >= 1.0:
                        self._release_held()
                        continue
                    self.ready.wait(timeout=0.2)
                if self.stopping:
                    return
                ticket, bad = self.queue.popleft()
            self._deliver(ticket, bad)

    def _deliver(self, ticket: dict[str, Any], bad: bool) -> None:
        from ticketlens.services.triage.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

        config = self.config
        if config.faults.delay_ms:
            time.sleep(config.faults.delay_ms / 1000)
        body = webhook_body(ticket, config.body)
        for attempt in range(1, config.max_attempts + 1):
            stamp = _iso(time.time())  # each attempt is signed afresh, as Zendesk does
            secret = config.secret + ("-wrong" if bad else "")
            headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, stamp, body),
                       TIMESTAMP_HEADER: stamp, "User-Agent": "Zendesk Webhook"}
            wait = config.backoff_seconds * 2 ** (attempt - 1)
            try:
                response = self.client.post(config.url, content=body, headers=headers)
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code < 300:
                with self.lock:
                    self.stats["delivered"] += 1
                    self.stats["bad_signature"] += int(bad)
                return
            if response is not None and response.status_code < 500 and response.status_code != 429:
                with self.lock:  # 4xx: Zendesk does not retry (bad signature → 401 lands here)
                    self.stats["rejected"] += 1
                    self.stats["bad_signature"] += int(bad)
                return
            if response is not None and response.headers.get("Retry-After", "").isdigit():
                wait = max(wait, float(response.headers["Retry-After"]))
            if attempt < config.max_attempts:
                with self.lock:
                    self.stats["retries"] += 1
                time.sleep(min(wait, 30.0))
        with self.lock:
            self.stats["failed"] += 1

    def close(self) -> None:
        with self.lock:
            self.stopping = True
            self.ready.notify_all()
        for thread in self.threads:
            thread.join(timeout=5)
        self.client.close()


def _config_from_settings() -> WebhookConfig:
    from ticketlens.services.triage.settings import TriageSettings

    triage = TriageSettings()
    secret = triage.webhook_secret.get_secret_value() if triage.webhook_secret else ""
    return WebhookConfig(url=triage.simulator_webhook_url or None, secret=secret, body=triage.simulator_webhook_body)


def create_ticket(state, body: dict[str, Any]) -> TicketSpec:
    """A new ticket at the simulator's clock, as ``POST /api/v2/tickets.json`` creates one in Zendesk."""
    ticket = body.get("ticket") if isinstance(body.get("ticket"), dict) else {}
    comment = ticket.get("comment") if isinstance(ticket.get("comment"), dict) else {}
    tags = tuple(str(t) for t in ticket.get("tags") or () if isinstance(t, str))
    with state.lock:
        now = state.now
        hooks = state.webhooks
        hooks["next_id"] = hooks.get("next_id", API_TICKET_IDS) + 1
        first = state.ds.tickets[0] if state.ds.tickets else None
        spec = TicketSpec(
            id=hooks["next_id"], created_at=now, subject=str(ticket.get("subject") or "")[:500],
            description=str(comment.get("body") or ticket.get("description") or ""), channel="api",
            priority=ticket.get("priority") if isinstance(ticket.get("priority"), str) else None,
            type=ticket.get("type") if isinstance(ticket.get("type"), str) else None,
            requester_id=first.requester_id if first else 1, submitter_id=first.submitter_id if first else 1,
            organization_id=None, group_id=None, assignee_id=None, tags=tags, events=((now, "new"),),
            true_category=first.true_category if first else "", contact_reason=first.contact_reason if first else "",
            confirmed_category=None, language="en", customer_segment="consumer",
            first_reply_minutes=None, full_resolution_minutes=None)
        hooks.setdefault("created_via_api", set()).add(spec.id)  # announced by the API call, not the watcher
        state.by_id[spec.id] = spec
        state.changes[spec.id] = [now]
        bisect.insort(state.entries, (now, spec.id))
        state.static[spec.id] = state._static_json(spec)
        bisect.insort(state.ds.tickets, spec, key=lambda t: t.created_at)
    return spec


def install_webhooks(app: FastAPI, state, config: WebhookConfig | None = None) -> None:
    """Routes and the creation watcher; the one call ``helpdesk_sim.server.create_app`` makes."""
    state.webhooks = {"created_via_api": set()}
    sender = WebhookSender(config if config is not None else _config_from_settings())
    app.state.webhooks = sender
    watcher = {"seen_until": state.now, "thread": None}
    stop = threading.Event()

    def created_between(start: int, end: int) -> list[int]:
        tickets = state.ds.tickets
        lo = bisect.bisect_right(tickets, start, key=lambda t: t.created_at)
        hi = bisect.bisect_right(tickets, end, key=lambda t: t.created_at)
        return [t.id for t in tickets[lo:hi] if t.id not in state.webhooks["created_via_api"]]

    def watch() -> None:
        while not stop.wait(0.2):
            if not sender.config.url:
                continue
            with state.lock:
                now = state.now
                if now <= watcher["seen_until"]:
                    watcher["seen_until"] = min(watcher["seen_until"], now)  # clock moved back: do not resend
                    continue
                ids = created_between(watcher["seen_until"], now)
                watcher["seen_until"] = now
                bodies = [state.ticket_json(i, now) for i in ids]
            for body in bodies:
                sender.notify(body)

    def ensure_watcher() -> None:
        if watcher["thread"] is None and sender.config.url:
            with state.lock:
                watcher["seen_until"] = state.now  # history before the URL was set sends nothing
            watcher["thread"] = threading.Thread(target=watch, name="sim-webhook-watch", daemon=True)
            watcher["thread"].start()

    ensure_watcher()

    @app.post("/api/v2/tickets.json", status_code=201)
    async def create(request: Request):
        from ticketlens.helpdesk_sim.server import json_response

        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return json_response({"error": "InvalidJSON"}, 400)
        if not isinstance(body, dict) or not isinstance(body.get("ticket"), dict):
            return json_response({"error": "RecordInvalid", "description": "ticket object required"}, 422)
        spec = create_ticket(state, body)
        with state.lock:
            record = state.ticket_json(spec.id, state.now)
        sender.notify(record)
        return json_response({"ticket": record}, 201)

    @app.get("/_sim/webhooks")
    def get_webhooks():
        with sender.lock:
            config = asdict(sender.config)
            config["secret"] = "***" if config["secret"] else ""
            return {"config": config, "stats": dict(sender.stats), "queued": len(sender.queue)}

    @app.post("/_sim/webhooks")
    async def set_webhooks(request: Request):
        """Configure (url, secret, body, timeout_seconds, max_attempts, backoff_seconds) and fault switches."""
        from ticketlens.helpdesk_sim.server import json_response

        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return json_response({"error": "InvalidJSON"}, 400)
        known = {f.name for f in fields(WebhookConfig)} - {"faults", "senders"}
        fault_names = {f.name for f in fields(WebhookFaults)}
        unknown = set(body) - known - fault_names
        if unknown:
            return json_response({"error": "unknown settings", "names": sorted(unknown)}, 400)
        with sender.lock:
            for key, value in body.items():
                setattr(sender.config.faults if key in fault_names else sender.config, key, value)
            if "seed" in body:  # reproducible fault draws from here on
                sender.rng = random.Random(body["seed"])
        ensure_watcher()
        return get_webhooks()

    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application):  # stop the watcher and the senders with the server
        try:
            async with inner(application) as value:
                yield value
        finally:
            stop.set()
            sender.close()

    app.router.lifespan_context = lifespan
