"""A Zendesk-REST-compatible helpdesk simulator (FastAPI), serving a generated ``Dataset`` at a simulated clock.

Nothing "current" is stored: what a ticket looks like at clock time ``now`` is derived from its timed events
(plus write-back overlays), so advancing the clock makes new tickets arrive and old ones change,
deterministically. Indexes are built once so an export page of 1,000 tickets is served in milliseconds.

Only the endpoints TicketLens uses are implemented, in Zendesk's shapes: cursor incremental ticket export (with
metric sets), satisfaction ratings, groups, users, ticket fields, ``update_many`` and job statuses. Admin routes
under ``/_sim`` move the clock, switch faults on and expose the source of truth for tests.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import random
import secrets
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from ticketlens.helpdesk_sim.dataset import Dataset, RatingSpec, TicketSpec
from ticketlens.helpdesk_sim.webhooks import install_webhooks
from ticketlens.helpdesk_sim.zendesk_extras import (
    contact_reason_value,
    extra_custom_fields,
    legacy_ratings,
    sim_channel,
    ticket_fields,
)
from ticketlens.helpdesk_sim.zendesk_extras import install as install_zendesk_extras

RATE_LIMITED = {"error": "APIRateLimitExceeded", "description": "Number of allowed API requests per minute exceeded"}


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def encode_cursor(*parts: int) -> str:
    return base64.urlsafe_b64encode(",".join(map(str, parts)).encode()).decode()


def decode_cursor(value: str, n: int) -> tuple[int, ...] | None:
    try:
        parts = tuple(int(p) for p in base64.urlsafe_b64decode(value.encode()).decode().split(","))
    except (ValueError, UnicodeDecodeError):
        return None
    return parts if len(parts) == n else None


@dataclass
class Faults:
    """Switchable failure modes (start-up flags or ``POST /_sim/faults``)."""

    error_rate: float = 0.0  # share of /api requests answered 500/503
    slow_ms: int = 0  # added latency on every /api response
    malformed_pages: int = 0  # next N ticket-export pages: truncated JSON with status 200
    missing_field_pages: int = 0  # next N export pages: `missing_field` removed from every ticket
    missing_field: str = "created_at"
    invalid_row_pages: int = 0  # next N export pages: ~5% of tickets with an invalid status / times
    duplicate_id_pages: int = 0  # next N export pages: some tickets repeated within the page
    reject_cursors: bool = False  # every cursor request → 422
    rate_limit_storm: int = 0  # next N /api requests → 429 with Retry-After (a storm, regardless of the budget)
    error_burst: int = 0  # next N /api requests → 500/503
    repeat_across_pages: int = 0  # next N export pages: also repeat the first tickets of the stream (seen before)
    wrong_type_pages: int = 0  # next N export pages: some tickets with fields of an unexpected JSON type
    huge_body_pages: int = 0  # next N export pages: one ticket with a 1 MiB description
    dirty_text_pages: int = 0  # next N export pages: control chars, invalid UTF-8 bytes, HTML and <script>
    lost_write_responses: int = 0  # next N update_many: applied and queued, but answered 504 (a gateway timeout)


@dataclass
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    email: str = "demo@example.com"
    api_token: str = "demo-token"  # noqa: S105 - the simulator's published demo credential
    oauth_token: str = "demo-oauth-token"  # noqa: S105
    clock: int | None = None  # None → the dataset's end
    requests_per_minute: int | None = None  # None/0 → no server-side limit
    export_requests_per_minute: int | None = None
    retry_after: str = "1.5"
    rate_window_seconds: float = 60.0  # the limits above count requests over this window (tests shorten it)
    fault_seed: int = 0
    job_polls_before_complete: int = 1
    # Zendesk keeps a job status about one hour: after this many seconds of the simulated clock it is a 404.
    job_ttl_seconds: int = 3600
    # Zendesk's job queue limit: more queued/running jobs than this → 429 on update_many (0 = no limit).
    max_queued_jobs: int = 30
    job_run_seconds: float = 1.0  # wall-clock seconds after which an unpolled job counts as finished
    export_exclude_recent_seconds: int = 60  # the export leaves out changes from the last minute (as Zendesk does)
    # Zendesk-documented behaviour (helpdesk_sim.zendesk_extras):
    user_role: str = "admin"  # role of the demo credentials' user; export/ratings/survey responses need admin
    csat_api: str = "satisfaction_ratings"  # satisfaction_ratings | survey_responses | both (switched mid-way)
    offered_share: float = 0.1  # share of solved, unrated tickets with an offered/unoffered legacy record
    channel_ids: bool = True  # some chat/mobile tickets carry their via id (29/56) instead of the name
    multiselect_reasons: bool = False  # the contact-reason field is a multiselect (lists of options)
    faults: Faults = field(default_factory=Faults)


class SimState:
    """The dataset plus derived indexes, clock, overlays, faults and counters. Guarded by one lock."""

    def __init__(self, dataset: Dataset, config: SimConfig) -> None:
        self.ds = dataset
        self.config = config
        self.lock = threading.RLock()
        self._now = int(config.clock if config.clock is not None else dataset.end)
        # helpdesk_sim.live.LiveFeed when the clock follows wall time and data keeps arriving (live mode)
        self.live: Any = None
        self.faults = config.faults
        self.rng = random.Random(config.fault_seed)
        self.by_id: dict[int, TicketSpec] = {t.id: t for t in dataset.tickets}
        # Per ticket: sorted change times (its events + write-back updates); globally: sorted (time, id).
        self.changes: dict[int, list[int]] = {}
        entries: list[tuple[int, int]] = []
        for t in dataset.tickets:
            times = sorted({e[0] for e in t.events})
            self.changes[t.id] = times
            entries.extend((ts, t.id) for ts in times)
        entries.sort()
        self.entries = entries
        self.static = {t.id: self._static_json(t) for t in dataset.tickets}
        self.overlays: dict[int, dict[str, Any]] = {}
        self.ratings = [(t.rating, t) for t in dataset.tickets if t.rating is not None]
        self.jobs: dict[str, dict[str, Any]] = {}
        self.updates: list[dict[str, Any]] = []
        self.stats: dict[str, Any] = {"requests": 0, "errors_served": 0, "rate_limited": 0, "by_path": {}}
        self.windows: dict[str, deque[float]] = {"all": deque(), "export": deque()}

    @property
    def now(self) -> int:
        """The simulated clock: fixed until moved (``/_sim/clock``), or wall time in live mode."""
        return self._now if self.live is None else self.live.now()

    @now.setter
    def now(self, value: int) -> None:
        if self.live is None:
            self._now = int(value)
        else:  # live mode: moving the clock shifts its offset from wall time; it keeps running from there
            self.live.set_now(int(value))

    def add_tickets(self, tickets: list[TicketSpec]) -> None:
        """Append tickets created after every existing one (the live feed's next chunk) to the indexes."""
        with self.lock:
            if self.ds.tickets and tickets and tickets[0].created_at < self.ds.tickets[-1].created_at:
                raise ValueError("appended tickets must be created after the existing ones")
            for t in tickets:
                self.by_id[t.id] = t
                times = sorted({e[0] for e in t.events})
                self.changes[t.id] = times
                self.entries.extend((ts, t.id) for ts in times)
                self.static[t.id] = self._static_json(t)
                if t.rating is not None:
                    self.ratings.append((t.rating, t))
            self.entries.sort()  # two sorted runs: timsort merges them in linear time
            self.ds.tickets.extend(tickets)

    # ------------------------------------------------------------------------------------- derivation

    def _static_json(self, t: TicketSpec) -> dict[str, Any]:
        return {
            "id": t.id, "url": f"http://{self.config.host}:{self.config.port}/api/v2/tickets/{t.id}.json",
            "external_id": None, "created_at": iso(t.created_at),
            "subject": t.subject, "raw_subject": t.subject, "description": t.description, "priority": t.priority,
            "type": t.type, "via": {"channel": sim_channel(t, self.config), "source": {}},
            "requester_id": t.requester_id,
            "submitter_id": t.submitter_id, "organization_id": t.organization_id,
        }

    def updated_at(self, ticket_id: int, now: int) -> int | None:
        times = self.changes[ticket_id]
        i = bisect.bisect_right(times, now)
        return times[i - 1] if i else None

    def status_at(self, t: TicketSpec, now: int) -> str:
        status = "new"
        for ts, st in t.events:
            if ts > now:
                break
            status = st
        return status

    def ticket_json(self, ticket_id: int, now: int) -> dict[str, Any]:
        t = self.by_id[ticket_id]
        updated = self.updated_at(ticket_id, now) or t.created_at
        status = self.status_at(t, now)
        body = dict(self.static[ticket_id])
        overlay = self.overlays.get(ticket_id, {})
        tags = list(t.tags)
        for tag in overlay.get("tags_added", ()):
            if tag not in tags:
                tags.append(tag)
        tags = [tag for tag in tags if tag not in overlay.get("tags_removed", set())]
        custom = {
            self.ds.contact_reason_field_id: contact_reason_value(self, t),
            self.ds.confirmed_category_field_id: t.confirmed_category if status in ("solved", "closed") else None,
            **extra_custom_fields(t),
            **overlay.get("custom_fields", {}),
        }
        body.update(
            updated_at=iso(updated), generated_timestamp=updated, status=status, tags=tags,
            assignee_id=None if status == "new" else t.assignee_id,
            group_id=None if status == "new" else t.group_id,
            custom_fields=[{"id": k, "value": v} for k, v in custom.items()],
        )
        return body

    def metric_set(self, ticket_id: int, now: int) -> dict[str, Any]:
        t = self.by_id[ticket_id]
        reopens, solved_at, was_solved, replies = 0, None, False, 0
        for ts, st in t.events:
            if ts > now:
                break
            if st == "solved":
                was_solved, solved_at = True, ts
            elif st == "open" and was_solved:
                reopens += 1
                was_solved = False
            if st in ("open", "pending", "solved"):
                replies += 1
        status = self.status_at(t, now)
        reply = t.first_reply_minutes if t.first_reply_minutes is not None and \
            t.created_at + t.first_reply_minutes * 60 <= now else None
        resolution = t.full_resolution_minutes if status in ("solved", "closed") else None
        updated = self.updated_at(ticket_id, now) or t.created_at
        return {
            "id": ticket_id, "ticket_id": ticket_id, "created_at": iso(t.created_at), "updated_at": iso(updated),
            "reopens": reopens, "replies": replies, "solved_at": iso(solved_at) if solved_at else None,
            "reply_time_in_minutes": {"calendar": reply, "business": reply},
            "full_resolution_time_in_minutes": {"calendar": resolution, "business": resolution},
        }

    def export(self, start: tuple[int, int], now: int, limit: int) -> tuple[list[int], tuple[int, int] | None, bool]:
        """Ticket ids whose current version is at or after ``start`` (time, id), in (updated_at, id) order."""
        i = bisect.bisect_left(self.entries, start)
        out: list[int] = []
        last: tuple[int, int] | None = None
        n = len(self.entries)
        while i < n:
            ts, tid = self.entries[i]
            i += 1
            if ts > now:
                break
            if self.updated_at(tid, now) != ts:
                continue  # an older version: the ticket changed again later
            out.append(tid)
            last = (ts, tid)
            if len(out) == limit:
                break
        more = False
        while i < n:  # is there any current version left after this page?
            ts, tid = self.entries[i]
            if ts > now:
                break
            if self.updated_at(tid, now) == ts:
                more = True
                break
            i += 1
        return out, last, not more

    def rating_json(self, r: RatingSpec, t: TicketSpec, now: int) -> dict[str, Any] | None:
        """A rating as of ``now``. A later score change shows the opposite score until it happens."""
        if r.created_at > now:
            return None
        changed = r.updated_at <= now
        score = r.score if changed else ({"good": "bad", "bad": "good"}.get(r.score, r.score))
        return {
            "id": r.id, "url": f"http://{self.config.host}:{self.config.port}/api/v2/satisfaction_ratings/{r.id}.json",
            "assignee_id": r.assignee_id,
            "group_id": r.group_id, "requester_id": t.requester_id, "ticket_id": t.id, "score": score,
            "created_at": iso(r.created_at), "updated_at": iso(r.updated_at if changed else r.created_at),
            "comment": r.comment if changed else None, "reason": r.reason if changed else None,
        }

    def visible_ratings(self, now: int) -> list[tuple[int, int, dict[str, Any]]]:
        out = []
        for r, t in legacy_ratings(self):  # legacy-era ratings and offered/unoffered records (zendesk_extras)
            body = self.rating_json(r, t, now)
            if body is not None:
                updated = r.updated_at if r.updated_at <= now else r.created_at
                out.append((updated, r.id, body))
        out.sort(key=lambda x: (x[0], x[1]))
        return out

    def apply_update(self, ticket_id: int, update: dict[str, Any]) -> bool:
        if ticket_id not in self.by_id:
            return False
        overlay = self.overlays.setdefault(ticket_id, {"tags_added": [], "tags_removed": set(), "custom_fields": {}})
        for tag in update.get("additional_tags") or ():
            if tag not in overlay["tags_added"]:
                overlay["tags_added"].append(tag)
            overlay["tags_removed"].discard(tag)
        for tag in update.get("remove_tags") or ():
            overlay["tags_removed"].add(tag)
            if tag in overlay["tags_added"]:
                overlay["tags_added"].remove(tag)
        for cf in update.get("custom_fields") or ():
            if isinstance(cf, dict) and "id" in cf:
                overlay["custom_fields"][cf["id"]] = cf.get("value")
        times, now = self.changes[ticket_id], self.now  # read once: a live clock moves
        if now not in times:
            bisect.insort(times, now)
            bisect.insort(self.entries, (now, ticket_id))
        return True

    # ------------------------------------------------------------------------------------------ limits

    def queued_jobs(self) -> int:
        """Jobs still queued or running: neither polled to completion nor past their (wall-clock) run time."""
        now = time.monotonic()
        return sum(1 for job in self.jobs.values()
                   if job["polls"] < self.config.job_polls_before_complete
                   and now - job["started"] < self.config.job_run_seconds)

    def over_limit(self, kind: str, per_minute: int | None) -> bool:
        if not per_minute:
            return False
        window = self.windows[kind]
        now = time.monotonic()
        while window and now - window[0] > self.config.rate_window_seconds:
            window.popleft()
        if len(window) >= per_minute:
            return True
        window.append(now)
        return False


def create_app(dataset: Dataset, config: SimConfig | None = None) -> FastAPI:
    """Build the app around one ``SimState``; nothing is created at import time.

    Each API area registers its own routes (below), so a new area is one more ``_add_*`` call. The order of
    the two middleware matters: the gatekeeper (auth, rate limits, faults) is added first, so the Zendesk edge
    middleware that ``install_zendesk_extras`` adds last runs outermost, as it always has.
    """
    config = config or SimConfig()
    state = SimState(dataset, config)
    app = FastAPI(title="TicketLens helpdesk simulator", docs_url="/_sim/docs", openapi_url="/_sim/openapi.json")
    app.state.sim = state
    credentials = _credentials(config)
    _add_gatekeeper(app, state, config, credentials)
    _add_ticket_routes(app, state, config)
    _add_rating_routes(app, state)
    _add_directory_routes(app, state, dataset)
    _add_job_routes(app, state, config)
    _add_admin_routes(app, state)
    install_zendesk_extras(app, state, config, credentials)
    install_webhooks(app, state)  # signed "ticket created" webhooks (helpdesk_sim.webhooks)
    _add_truth_routes(app, state, config, dataset)
    return app


def _credentials(config: SimConfig) -> tuple[str, str]:
    """The two ``Authorization`` header values the simulator accepts: API token (Basic) and OAuth (Bearer)."""
    basic = "Basic " + base64.b64encode(f"{config.email}/token:{config.api_token}".encode()).decode()
    return basic, f"Bearer {config.oauth_token}"


def _add_gatekeeper(app: FastAPI, state: SimState, config: SimConfig, credentials: tuple[str, str]) -> None:
    """Every ``/api/`` request: counted, authenticated, slowed, rate-limited and failed as the faults say."""

    @app.middleware("http")
    async def gatekeeper(request: Request, call_next):
        path = request.url.path
        if not path.startswith("/api/"):
            return await call_next(request)
        with state.lock:
            state.stats["requests"] += 1
            state.stats["by_path"][path] = state.stats["by_path"].get(path, 0) + 1
        if request.headers.get("Authorization") not in credentials:
            return json_response({"error": "Couldn't authenticate you"}, 401)
        faults = state.faults
        if faults.slow_ms:
            await asyncio.sleep(faults.slow_ms / 1000)
        with state.lock:
            limited = state.over_limit("all", config.requests_per_minute) or (
                path.startswith("/api/v2/incremental/") and state.over_limit("export", config.export_requests_per_minute)
            )
            if limited:
                state.stats["rate_limited"] += 1
                return json_response(RATE_LIMITED, 429, {"Retry-After": config.retry_after})
            if faults.rate_limit_storm > 0:
                faults.rate_limit_storm -= 1
                state.stats["rate_limited"] += 1
                return json_response(RATE_LIMITED, 429, {"Retry-After": config.retry_after})
            if faults.error_burst > 0:
                faults.error_burst -= 1
                state.stats["errors_served"] += 1
                return json_response({"error": "ServiceUnavailable"}, state.rng.choice((500, 503)))
            if faults.error_rate and state.rng.random() < faults.error_rate:
                state.stats["errors_served"] += 1
                return json_response({"error": "ServiceUnavailable"}, state.rng.choice((500, 503)))
        return await call_next(request)


# ------------------------------------------------------------------------------------------------ tickets

def _export_start(q: Any, faults: Faults) -> tuple[int, int] | Response:
    """Where an export request starts, as (time, id), from its ``cursor`` or ``start_time``; or the error."""
    if "cursor" in q:
        decoded = decode_cursor(q["cursor"], 2)
        if faults.reject_cursors or decoded is None:
            return json_response({"error": "InvalidPaginationParameter",
                                  "description": "cursor is invalid or expired"}, 422)
        return decoded[0], decoded[1] + 1
    if "start_time" in q:
        try:
            return int(q["start_time"]), 0
        except ValueError:
            return json_response({"error": "InvalidValue", "description": "start_time must be unix"}, 400)
    return json_response({"error": "InvalidPaginationParameter",
                          "description": "start_time or cursor is required"}, 400)


def _damage_export_page(state: SimState, faults: Faults, tickets: list[dict[str, Any]], now: int,
                        resumed: bool) -> bool:
    """Apply the page-level faults that are switched on to ``tickets`` (in place), each using up one page.

    Returns whether the page is to be served with raw non-UTF-8 bytes (``dirty_text_pages``), which the
    caller does when it serialises the body. Called with ``state.lock`` held.
    """
    if faults.missing_field_pages > 0:
        faults.missing_field_pages -= 1
        for t in tickets:
            t.pop(faults.missing_field, None)
    if faults.invalid_row_pages > 0:
        faults.invalid_row_pages -= 1
        for k, t in enumerate(tickets):
            if k % 20 == 3:
                t["status"] = "bogus"
            elif k % 20 == 11:
                t["created_at"] = iso(t["generated_timestamp"] + 86400)
    if faults.duplicate_id_pages > 0 and tickets:
        faults.duplicate_id_pages -= 1
        tickets.extend(dict(t) for t in tickets[: max(1, len(tickets) // 20)])
    if faults.repeat_across_pages > 0 and resumed:
        faults.repeat_across_pages -= 1
        first, _, _ = state.export((0, 0), now, 5)
        tickets[:0] = [state.ticket_json(i, now) for i in first]
    if faults.wrong_type_pages > 0:
        faults.wrong_type_pages -= 1
        for k, t in enumerate(tickets):
            if k % 20 == 5:
                t["requester_id"] = "not-a-number"
            elif k % 20 == 7:
                t["tags"] = "comma,separated,string"
            elif k % 20 == 9:
                t["subject"] = {"unexpected": "object"}
    if faults.huge_body_pages > 0 and tickets:
        faults.huge_body_pages -= 1
        tickets[0]["description"] = "A very long complaint. " * (2**20 // 23 + 1)
    dirty = faults.dirty_text_pages > 0 and bool(tickets)
    if dirty:
        faults.dirty_text_pages -= 1
        for k, t in enumerate(tickets):
            if k % 10 == 2:
                t["subject"] = "Refund\x00 please\x07\x1b[31m now"
                t["description"] = (t["description"] or "") + " BADUTF8 <p>Hi</p><script>alert('x')</script>"
    return dirty


def _add_ticket_routes(app: FastAPI, state: SimState, config: SimConfig) -> None:
    """Cursor-based incremental ticket export (with metric sets and page faults) and ``show_many``."""

    @app.get("/api/v2/incremental/tickets/cursor.json")
    def export_tickets(request: Request):
        q = request.query_params
        per_page = min(int(q.get("per_page", 1000)), 1000)
        with state.lock:
            # Zendesk leaves the most recent minute's changes out of the export (they come with a later request).
            now, faults = state.now - config.export_exclude_recent_seconds, state.faults
            start = _export_start(q, faults)
            if isinstance(start, Response):
                return start
            ids, last, end = state.export(start, now, per_page)
            tickets = [state.ticket_json(i, now) for i in ids]
            metric_sets = [state.metric_set(i, now) for i in ids] if "metric_sets" in q.get("include", "") else None
            cursor_pos = last or (start[0], start[1] - 1)
            after = encode_cursor(*cursor_pos)
            body: dict[str, Any] = {
                "tickets": tickets, "after_cursor": after,
                "after_url": f"{request.base_url}api/v2/incremental/tickets/cursor.json?cursor={after}",
                "before_cursor": None, "before_url": None, "end_of_stream": end,
            }
            if metric_sets is not None:
                body["metric_sets"] = metric_sets
            dirty = _damage_export_page(state, faults, tickets, now, resumed="cursor" in q)
            if faults.malformed_pages > 0:
                faults.malformed_pages -= 1
                raw = orjson.dumps(body)
                return Response(raw[: max(1, len(raw) // 2)], media_type="application/json")
        if dirty:  # raw bytes that are not UTF-8, inside a JSON string: what a broken mail gateway produces
            return Response(orjson.dumps(body).replace(b"BADUTF8", b"caf\xe9 \xff\xfe"),
                            media_type="application/json")
        return json_response(body)

    @app.get("/api/v2/tickets/show_many.json")
    def show_many(request: Request):
        try:
            ids = [int(x) for x in request.query_params.get("ids", "").split(",") if x]
        except ValueError:
            return json_response({"error": "InvalidValue", "description": "ids must be integers"}, 400)
        if len(ids) > 100:
            return json_response({"error": "TooManyValues", "description": "at most 100 ids"}, 400)
        with state.lock:
            now = state.now
            found = [state.ticket_json(i, now) for i in ids
                     if i in state.by_id and state.by_id[i].created_at <= now]
        return json_response({"tickets": found})


# ------------------------------------------------------------------------------------------------ ratings

def _add_rating_routes(app: FastAPI, state: SimState) -> None:
    """Legacy CSAT: ``satisfaction_ratings`` with cursor pagination. (The newer survey-responses API, and the
    switch between the two, live in ``helpdesk_sim.zendesk_extras``.)"""

    @app.get("/api/v2/satisfaction_ratings")
    @app.get("/api/v2/satisfaction_ratings.json")
    def satisfaction_ratings(request: Request):
        q = request.query_params
        size = min(int(q.get("page[size]", 100)), 100)
        start_time = int(q.get("start_time", 0))
        with state.lock:
            rows = [r for r in state.visible_ratings(state.now) if r[0] >= start_time]
        if "page[after]" in q:
            pos = decode_cursor(q["page[after]"], 2)
            if pos is None or state.faults.reject_cursors:
                return json_response({"error": "InvalidPaginationParameter",
                                      "description": "page[after] is invalid or expired"}, 422)
            rows = [r for r in rows if (r[0], r[1]) > pos]
        page, more = rows[:size], len(rows) > size
        after = encode_cursor(page[-1][0], page[-1][1]) if page else None
        nxt = (f"{request.base_url}api/v2/satisfaction_ratings?start_time={start_time}&page[size]={size}"
               f"&page[after]={after}") if more else None
        return json_response({
            "satisfaction_ratings": [r[2] for r in page],
            "meta": {"has_more": more, "after_cursor": after, "before_cursor": None},
            "links": {"next": nxt, "prev": None},
        })


# ---------------------------------------------------------------------------------- users, groups, fields

def _listing(request: Request, key: str, items: list[dict[str, Any]]) -> Response:
    """One page of a cursor-paginated list endpoint (``page[size]``/``page[after]``), with absolute urls."""
    q = request.query_params
    size = min(int(q.get("page[size]", 100)), 100)
    offset = 0
    if "page[after]" in q:
        decoded = decode_cursor(q["page[after]"], 1)
        if decoded is None:
            return json_response({"error": "InvalidPaginationParameter"}, 422)
        offset = decoded[0]
    page, more = items[offset: offset + size], offset + size < len(items)
    base = str(request.base_url).rstrip("/")  # Zendesk's url fields are absolute
    page = [{**item, "url": base + item["url"]} if str(item.get("url", "")).startswith("/") else item
            for item in page]
    after = encode_cursor(offset + size) if more else None
    nxt = f"{request.base_url}{request.url.path.lstrip('/')}?page[size]={size}&page[after]={after}" \
        if more else None
    return json_response({key: page, "meta": {"has_more": more, "after_cursor": after},
                          "links": {"next": nxt, "prev": None}})


def _add_directory_routes(app: FastAPI, state: SimState, dataset: Dataset) -> None:
    """Groups, users (agents, filterable by role) and ticket fields: the lookups ingest and preflight read."""

    @app.get("/api/v2/groups.json")
    def list_groups(request: Request):
        return _listing(request, "groups", dataset.groups)

    @app.get("/api/v2/users.json")
    def list_users(request: Request):
        roles = request.query_params.getlist("role[]") or request.query_params.getlist("role")
        users = [u for u in dataset.agents if not roles or u.get("role") in roles]
        return _listing(request, "users", users)

    @app.get("/api/v2/ticket_fields.json")
    def list_ticket_fields(request: Request):
        return _listing(request, "ticket_fields", ticket_fields(state, str(request.base_url).rstrip("/")))


# ----------------------------------------------------------------------------------- write-back and jobs

def _parse_updates(request: Request, body: Any) -> list[tuple[int, dict[str, Any]]] | Response:
    """The (ticket id, update) pairs of an ``update_many`` body: ``tickets[]``, or ``ids=`` plus one
    ``ticket``; or the 400 answer."""
    if isinstance(body.get("tickets"), list):
        updates = [(int(u["id"]), u) for u in body["tickets"] if isinstance(u, dict) and "id" in u]
    elif isinstance(body.get("ticket"), dict) and request.query_params.get("ids"):
        try:
            ids = [int(x) for x in request.query_params["ids"].split(",") if x]
        except ValueError:
            return json_response({"error": "InvalidValue", "description": "ids must be integers"}, 400)
        updates = [(i, body["ticket"]) for i in ids]
    else:
        return json_response({"error": "InvalidValue", "description": "tickets[] or ids + ticket required"}, 400)
    if len(updates) > 100:
        return json_response({"error": "TooManyValues", "description": "at most 100 tickets per request"}, 400)
    return updates


def _add_job_routes(app: FastAPI, state: SimState, config: SimConfig) -> None:
    """``update_many`` (applied at once, answered with a queued job; queue limit, lost answers) and
    ``job_statuses`` (completes after a number of polls, expires after ``job_ttl_seconds``)."""

    @app.put("/api/v2/tickets/update_many.json")
    async def update_many(request: Request):
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return json_response({"error": "InvalidJSON"}, 400)
        updates = _parse_updates(request, body)
        if isinstance(updates, Response):
            return updates
        with state.lock:
            if config.max_queued_jobs and state.queued_jobs() >= config.max_queued_jobs:
                state.stats["rate_limited"] += 1
                return json_response({"error": "TooManyJobs", "description": (
                    f"Number of allowed queued jobs ({config.max_queued_jobs}) has been reached. Please wait for "
                    f"the jobs to finish before enqueuing more.")}, 429, {"Retry-After": config.retry_after})
            results = []
            for tid, update in updates:
                ok = state.apply_update(tid, update)
                results.append({"id": tid, "action": "update", "success": ok, "status": "Updated"} if ok else
                               {"id": tid, "action": "update", "success": False, "error": "TicketNotFound",
                                "details": f"Ticket {tid} not found"})
            job_id = secrets.token_hex(16)
            state.jobs[job_id] = {"total": len(updates), "results": results, "polls": 0, "created": state.now,
                                  "started": time.monotonic()}
            state.updates.append({"job_id": job_id, "at": state.now,
                                  "tickets": [{"id": tid, **{k: v for k, v in u.items() if k != "id"}}
                                              for tid, u in updates]})
            if state.faults.lost_write_responses > 0:
                # The update was applied, but the answer never reaches the client intact.
                state.faults.lost_write_responses -= 1
                state.stats["errors_served"] += 1
                return json_response({"error": "GatewayTimeout"}, 504)
        return json_response({"job_status": {
            "id": job_id, "url": f"{request.base_url}api/v2/job_statuses/{job_id}.json", "status": "queued",
            "total": len(updates), "progress": 0, "results": None, "message": None}})

    @app.get("/api/v2/job_statuses/{job_id}")
    @app.get("/api/v2/job_statuses/{job_id}.json")
    def job_status(job_id: str, request: Request):
        job_id = job_id.removesuffix(".json")
        with state.lock:
            job = state.jobs.get(job_id)
            if job is not None and state.now - job["created"] >= config.job_ttl_seconds:
                del state.jobs[job_id]  # expired, as Zendesk drops job statuses after about an hour
                job = None
            if job is None:
                return json_response({"error": "RecordNotFound", "description": "Not found"}, 404)
            job["polls"] += 1
            done = job["polls"] > config.job_polls_before_complete - 1
        return json_response({"job_status": {
            "id": job_id, "url": f"{request.base_url}api/v2/job_statuses/{job_id}.json",
            "status": "completed" if done else "working", "total": job["total"],
            "progress": job["total"] if done else 0, "results": job["results"] if done else None,
            "message": "Completed" if done else None}})


# ------------------------------------------------------------------------------------------------ admin

def _add_admin_routes(app: FastAPI, state: SimState) -> None:
    """``/_sim`` controls: health, the clock, the fault switches, request counters, one ticket as served."""

    @app.get("/_sim/health")
    def health():
        return {"ok": True, "tickets": len(state.ds.tickets), "now": state.now}

    @app.get("/_sim/clock")
    def get_clock():
        return {"now": state.now, "iso": iso(state.now)}

    @app.post("/_sim/clock")
    async def set_clock(request: Request):
        body = orjson.loads(await request.body() or b"{}")
        with state.lock:
            if "set" in body:
                state.now = int(body["set"])
            state.now += int(body.get("advance_seconds", 0))
            return {"now": state.now, "iso": iso(state.now)}

    @app.get("/_sim/faults")
    def get_faults():
        return asdict(state.faults)

    @app.post("/_sim/faults")
    async def set_faults(request: Request):
        body = orjson.loads(await request.body() or b"{}")
        known = {f.name: f.type for f in fields(Faults)}
        unknown = set(body) - set(known)
        if unknown:
            return json_response({"error": f"unknown faults {sorted(unknown)}"}, 400)
        with state.lock:
            for key, value in body.items():
                setattr(state.faults, key, value)
            return asdict(state.faults)

    @app.get("/_sim/stats")
    def get_stats():
        with state.lock:
            return dict(state.stats)

    @app.get("/_sim/tickets/{ticket_id}")
    def get_ticket(ticket_id: int):
        with state.lock:
            if ticket_id not in state.by_id:
                return json_response({"error": "RecordNotFound"}, 404)
            return state.ticket_json(ticket_id, state.now)


def _add_truth_routes(app: FastAPI, state: SimState, config: SimConfig, dataset: Dataset) -> None:
    """The source of truth tests compare TicketLens with: what the export can show, and every write-back."""

    @app.get("/_sim/snapshot")
    def snapshot():
        """The source of truth at the clock: every ticket's version and status as the export can show it (the
        last minute's changes excluded), every rating's."""
        with state.lock:
            now = state.now
            horizon = now - config.export_exclude_recent_seconds  # what the export can show (tickets)
            tickets = []
            for t in dataset.tickets:
                if t.created_at > horizon:
                    break
                tickets.append({"id": t.id, "updated_at": state.updated_at(t.id, horizon),
                                "status": state.status_at(t, horizon)})
            ratings = [{"id": r[1], "updated_at": r[0], "score": r[2]["score"]} for r in state.visible_ratings(now)]
        return json_response({"now": now, "tickets": tickets, "ratings": ratings})

    @app.get("/_sim/updates")
    def get_updates():
        with state.lock:
            return json_response(list(state.updates))
