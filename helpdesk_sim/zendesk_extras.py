"""Simulator behaviour that matches Zendesk's documentation where the core simulator was friendlier.

Registered by ``create_app`` (``install``); everything is switched by ``SimConfig`` fields:

* **Admin-only endpoints** (``user_role``): the incremental export, satisfaction ratings and CSAT survey
  responses answer 403 (Zendesk's body) to a non-admin token; ``/api/v2/users/me`` reports the role.
* **Rate-limit headers** on every API answer: ``X-Rate-Limit``/``X-Rate-Limit-Remaining`` and
  ``ratelimit-limit``/``ratelimit-remaining``/``ratelimit-reset`` for the account, plus
  ``zendesk-ratelimit-incremental-exports: total=…; remaining=…; resets=…`` on exports (the documented
  ``zendesk-ratelimit-<endpoint>`` pattern).
* **``.json``-less paths** (``/api/v2/groups`` as well as ``/api/v2/groups.json``), as Zendesk accepts both.
* **Both CSAT APIs** (``csat_api``): legacy ``satisfaction_ratings`` (with ``offered``/``unoffered`` records for
  a share of solved tickets nobody rated, ``offered_share``) and current-CSAT ``/api/v2/guide/survey_responses``
  (ULID ids, ``subjects``/``subject_zrns``, rating-scale answers in milliseconds-precision timestamps,
  ``filter[created_at_start]`` in unix ms, ``page[after]`` cursors in ``meta``). ``both`` = an account that
  switched: ratings before the dataset's midpoint are legacy, later ones survey responses.
* **Varied ticket payloads**: integer via ids for chat and mobile tickets (``channel_ids``), checkbox, decimal
  and date custom fields on every ticket, the contact reason as a multiselect (``multiselect_reasons``), and
  the write-back fields (category, tier, …) as ticket fields so a preflight check can find them.
"""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request

from ticketlens.helpdesk_sim.dataset import RatingSpec, TicketSpec

if TYPE_CHECKING:
    from ticketlens.helpdesk_sim.server import SimState

ADMIN_ONLY_PREFIXES = ("/api/v2/incremental/", "/api/v2/satisfaction_ratings", "/api/v2/guide/survey_responses")
JSONLESS = ("/api/v2/incremental/tickets/cursor", "/api/v2/groups", "/api/v2/users", "/api/v2/ticket_fields",
            "/api/v2/tickets/show_many", "/api/v2/tickets/update_many", "/api/v2/users/me")
OFFERED_ID_BASE = 10**12  # offered/unoffered records: ids far above the generated ratings'
# Extra custom fields on every ticket (checkbox, decimal, date), and the write-back target fields.
CHECKBOX_FIELD, DECIMAL_FIELD, DATE_FIELD = 360020, 360021, 360022
WRITEBACK_FIELDS = {360010: ("TicketLens category", "tagger"), 360011: ("TicketLens tier", "text"),
                    360012: ("TicketLens sentiment", "text"), 360013: ("TicketLens routing group", "text"),
                    360014: ("TicketLens auto reply", "checkbox")}
VIA_IDS = {"chat": 29, "mobile": 56}  # channels whose documented via id maps back to the same name
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def forbidden() -> dict[str, str]:
    return {"error": "Forbidden",
            "description": "You do not have access to this page. Please contact the account owner of this help desk "
                           "for further help."}


def _iso_ms(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


def ulid(ms: int, entropy: int) -> str:
    """A ULID-shaped id (26 Crockford base-32 characters, time-ordered) — what survey response ids look like."""
    value = (ms << 80) | (entropy & ((1 << 80) - 1))
    return "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


# ------------------------------------------------------------------------------------------- payloads


def sim_channel(t: TicketSpec, config) -> Any:
    """The ticket's via.channel as served: a documented via id for some chat/mobile tickets, else the name."""
    if getattr(config, "channel_ids", True) and t.channel in VIA_IDS and t.id % 3 == 0:
        return VIA_IDS[t.channel] if t.id % 2 else str(VIA_IDS[t.channel])  # integers and numeric strings
    return t.channel


def contact_reason_value(state: SimState, t: TicketSpec) -> Any:
    if not getattr(state.config, "multiselect_reasons", False):
        return t.contact_reason
    if t.id % 10 == 7 and t.true_category != t.contact_reason:
        return [t.contact_reason, t.true_category]  # a customer who ticked two reasons
    return [t.contact_reason]


def extra_custom_fields(t: TicketSpec) -> dict[int, Any]:
    """Typed values Zendesk sends for other field types (a checkbox, a decimal and a date field), and the
    write-back fields, empty until written (Zendesk lists every custom field of a ticket, null when unset)."""
    day = time.strftime("%Y-%m-%d", time.gmtime(t.created_at))
    return {CHECKBOX_FIELD: t.id % 4 == 0, DECIMAL_FIELD: round((t.id % 500) * 1.25, 2), DATE_FIELD: day,
            **dict.fromkeys(WRITEBACK_FIELDS)}


def extra_ticket_fields(base_url: str, state: SimState) -> list[dict[str, Any]]:
    out = []
    for fid, (title, kind) in {CHECKBOX_FIELD: ("Escalated", "checkbox"), DECIMAL_FIELD: ("Order total", "decimal"),
                               DATE_FIELD: ("Purchase date", "date"), **WRITEBACK_FIELDS}.items():
        out.append({"id": fid, "url": f"{base_url}/api/v2/ticket_fields/{fid}.json", "type": kind, "title": title,
                    "active": True, "removable": True, "required": False, "editable_in_portal": False})
    return out


def ticket_fields(state: SimState, base_url: str) -> list[dict[str, Any]]:
    fields = [dict(f) for f in state.ds.ticket_fields]
    for f in fields:
        if str(f.get("url", "")).startswith("/"):
            f["url"] = base_url + f["url"]
        if f.get("id") == state.ds.contact_reason_field_id and getattr(state.config, "multiselect_reasons", False):
            f["type"] = "multiselect"
        f.setdefault("removable", f.get("type") not in ("subject", "description", "status", "priority"))
    return fields + extra_ticket_fields(base_url, state)


# --------------------------------------------------------------------------------------------- CSAT


def _midpoint(state: SimState) -> int:
    return state.ds.start + (state.ds.end - state.ds.start) // 2


def _era(state: SimState, r: RatingSpec) -> str:
    mode = getattr(state.config, "csat_api", "satisfaction_ratings")
    if mode == "both":
        return "survey_responses" if r.created_at >= _midpoint(state) else "satisfaction_ratings"
    return mode


def legacy_ratings(state: SimState) -> list[tuple[RatingSpec, TicketSpec]]:
    """What /api/v2/satisfaction_ratings serves: legacy-era ratings plus offered/unoffered records."""
    key = (len(state.ratings), len(state.ds.tickets))  # recomputed if the dataset grows (live mode)
    cached = getattr(state, "_legacy_ratings", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    out = [(r, t) for r, t in state.ratings if _era(state, r) == "satisfaction_ratings"]
    share = float(getattr(state.config, "offered_share", 0.0) or 0.0)
    if share > 0 and getattr(state.config, "csat_api", "satisfaction_ratings") != "survey_responses":
        step = max(1, round(1 / share))
        for t in state.ds.tickets:
            if t.rating is not None or t.id % step:
                continue
            solved = next((ts for ts, st in t.events if st == "solved"), None)
            if solved is None:
                continue
            spec = RatingSpec(id=OFFERED_ID_BASE + t.id, created_at=solved, updated_at=solved,
                              score="unoffered" if t.id % (4 * step) == 0 else "offered", comment=None,
                              reason=None, assignee_id=t.assignee_id, group_id=t.group_id)
            if _era(state, spec) == "satisfaction_ratings":
                out.append((spec, t))
    state._legacy_ratings = (key, out)
    return out


def survey_response(state: SimState, r: RatingSpec, t: TicketSpec, now: int) -> dict[str, Any] | None:
    body = state.rating_json(r, t, now)
    if body is None:
        return None
    score = body["score"]
    rating = (5 if r.id % 2 else 4) if score == "good" else (1 if r.id % 2 else 2)
    created, updated = r.created_at, (r.updated_at if r.updated_at <= now else r.created_at)
    answers: list[dict[str, Any]] = [{
        "type": "rating_scale", "rating": rating, "rating_category": score,
        "question": {"id": "01J1WBE8QR0YQVE373K2JDJR0F", "type": "rating_scale_numeric",
                     "sub_type": "customer_satisfaction", "alias": "rating"},
        "created_at": _iso_ms(created), "updated_at": _iso_ms(updated)}]
    if body.get("comment"):
        answers.append({"type": "open_ended", "value": body["comment"],
                        "question": {"id": "01J1WBNS76ZC4TTFWP9RCNQ1S8", "type": "open_ended", "alias": "comment"},
                        "created_at": _iso_ms(created), "updated_at": _iso_ms(updated)})
    else:
        answers.append({"type": "skipped", "question": {"id": "01J1WBNS76ZC4TTFWP9RCNQ1S8", "type": "open_ended",
                                                         "alias": "comment"},
                        "created_at": _iso_ms(created), "updated_at": _iso_ms(updated)})
    return {"id": ulid(created * 1000, r.id), "answers": answers, "expires_at": _iso_ms(created + 14 * 86400),
            "responder_id": t.requester_id, "subject_zrns": [f"zen:ticket:{t.id}"],
            "subjects": [{"id": str(t.id), "type": "ticket", "zrn": f"zen:ticket:{t.id}"}],
            "survey": {"id": "01J58KJ9RAE0D2EK7HRVM7Z8F2", "state": "enabled", "version": 3}}


# -------------------------------------------------------------------------------------------- routes


def install(app: FastAPI, state: SimState, config, credentials: tuple[str, ...]) -> None:
    """Add the routes and the ASGI middleware described in the module docstring."""

    @app.get("/api/v2/guide/survey_responses")
    @app.get("/api/v2/guide/survey_responses.json")
    def survey_responses(request: Request):
        from ticketlens.helpdesk_sim.server import json_response

        q = request.query_params
        try:
            size = min(int(q.get("page[size]", 100)), 100)
            start_ms = int(q.get("filter[created_at_start]", 0))
            end_ms = int(q["filter[created_at_end]"]) if "filter[created_at_end]" in q else None
        except ValueError:
            return json_response({"error": "InvalidValue", "description": "filters are unix milliseconds"}, 400)
        with state.lock:
            now = state.now
            rows = []
            for r, t in state.ratings:
                if _era(state, r) != "survey_responses" or r.created_at > now:
                    continue
                ms = r.created_at * 1000
                if ms < start_ms or (end_ms is not None and ms > end_ms):
                    continue
                body = survey_response(state, r, t, now)
                if body is not None:
                    rows.append(body)
        rows.sort(key=lambda b: b["id"], reverse=q.get("sort") == "-id")
        if "page[after]" in q:
            try:
                after = base64.urlsafe_b64decode(q["page[after]"].encode()).decode()
            except (ValueError, UnicodeDecodeError):
                after = None
            if not after or state.faults.reject_cursors:
                return json_response({"errors": [{"code": "InvalidPaginationParameter",
                                                  "title": "page[after] is invalid or expired"}]}, 400)
            rows = [b for b in rows if b["id"] > after]
        page, more = rows[:size], len(rows) > size
        cursor = base64.urlsafe_b64encode(page[-1]["id"].encode()).decode() if page else None
        return json_response({"survey_responses": page,
                              "meta": {"has_more": more, "after_cursor": cursor if more else None,
                                       "before_cursor": None}})

    @app.get("/api/v2/users/me.json")
    def users_me(request: Request):
        from ticketlens.helpdesk_sim.server import json_response

        role = getattr(config, "user_role", "admin")
        return json_response({"user": {"id": 1, "url": f"{str(request.base_url).rstrip('/')}/api/v2/users/1.json",
                                       "name": "TicketLens integration", "email": config.email, "role": role,
                                       "active": True, "verified": True}})

    @app.get("/api/v2/ticket_fields/{field_id}")
    def ticket_field(field_id: str, request: Request):
        from ticketlens.helpdesk_sim.server import json_response

        wanted = field_id.removesuffix(".json")
        base = str(request.base_url).rstrip("/")
        for f in ticket_fields(state, base):
            if str(f.get("id")) == wanted:
                return json_response({"ticket_field": f})
        return json_response({"error": "RecordNotFound", "description": "Not found"}, 404)

    app.add_middleware(_ZendeskEdge, state=state, config=config, credentials=credentials)


class _ZendeskEdge:
    """Pure ASGI middleware: ``.json``-less paths, admin-only endpoints, rate-limit headers."""

    def __init__(self, app, state, config, credentials: tuple[str, ...]) -> None:
        self.app, self.state, self.config, self.credentials = app, state, config, credentials

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            return await self.app(scope, receive, send)
        path = scope["path"].rstrip("/")
        if path in JSONLESS:
            scope = dict(scope, path=path + ".json", raw_path=(path + ".json").encode())
            path += ".json"
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        authed = headers.get("authorization") in self.credentials
        if authed and path.startswith(ADMIN_ONLY_PREFIXES) and getattr(self.config, "user_role", "admin") != "admin":
            body = orjson.dumps(forbidden())
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return None
        export = path.startswith("/api/v2/incremental/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":  # after the request was counted against the limits
                message = dict(message, headers=list(message.get("headers", [])) + self._rate_headers(export))
            await send(message)

        return await self.app(scope, receive, send_with_headers)

    def _rate_headers(self, export: bool) -> list[tuple[bytes, bytes]]:
        config, state = self.config, self.state
        window = config.rate_window_seconds

        def remaining(kind: str, limit: int) -> tuple[int, int]:
            now = time.monotonic()
            recent = [t for t in state.windows[kind] if now - t <= window]
            reset = int(window - (now - recent[0])) + 1 if recent else int(window)
            return max(0, limit - len(recent)), reset

        limit = int(config.requests_per_minute or 700)
        left, reset = remaining("all", limit)
        out = [(b"x-rate-limit", str(limit).encode()), (b"x-rate-limit-remaining", str(left).encode()),
               (b"ratelimit-limit", str(limit).encode()), (b"ratelimit-remaining", str(left).encode()),
               (b"ratelimit-reset", str(reset).encode())]
        if export:
            elimit = int(config.export_requests_per_minute or 10)
            eleft, ereset = remaining("export", elimit)
            out.append((b"zendesk-ratelimit-incremental-exports",
                        f"total={elimit}; remaining={eleft}; resets={ereset}".encode()))
        return out
