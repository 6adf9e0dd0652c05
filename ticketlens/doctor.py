"""``ticketlens doctor`` (``make check-helpdesk``): is this Zendesk account ready for TicketLens?

For a data engineer pointing TicketLens at a real account before the first run. Every check reads; nothing is
written unless ``--write-check TICKET_ID`` is given (then the configured write-back fields of that one ticket
are set to the values they already hold, and the job is awaited). Prints a pass/fail table and exits 1 when a
check fails. Checks:

1. credentials — ``GET /api/v2/users/me`` answers for the configured e-mail/token (or OAuth token);
2. role — the user is an admin (the incremental export, satisfaction ratings and survey responses are
   admin-only);
3. contact-reason / confirmed-category fields — found by title (``TICKETLENS_*_FIELD_TITLE``), with their types;
4. CSAT API — which of legacy satisfaction ratings and current survey responses the account answers, and
   which holds ratings (``TICKETLENS_HELPDESK_CSAT_API`` must allow it);
5. export rate limit — what the account reports on one incremental-export request, against
   ``TICKETLENS_HELPDESK_EXPORT_REQUESTS_PER_MINUTE``;
6. write-back fields — every id in ``TICKETLENS_WRITEBACK_CUSTOM_FIELDS`` is an active custom ticket field of a
   type that can hold the value.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from ticketlens.adapters.helpdesk import (
    RATINGS_PATH,
    SURVEY_RESPONSES_PATH,
    HelpdeskAuthError,
    HelpdeskClient,
    HelpdeskError,
    HelpdeskNotFoundError,
)
from ticketlens.adapters.settings import Settings, SettingsError, load_settings

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"
#: Zendesk field types that hold a contact reason / category as option values or text.
REASON_TYPES = {"tagger": "drop-down", "multiselect": "multiselect (several reasons per ticket)", "text": "text"}
CATEGORY_TYPES = {"tagger": "drop-down", "text": "text", "textarea": "multi-line text"}
SYSTEM_TYPES = {"subject", "description", "status", "tickettype", "priority", "group", "assignee", "custom_status"}
#: Which field types can hold each write-back value (see models.scoring.helpdesk_fields).
WRITEBACK_TYPES = {"auto_reply": {"checkbox", "text", "tagger"}}
DEFAULT_WRITEBACK_TYPES = {"text", "tagger", "textarea", "regexp"}


@dataclass
class Check:
    check: str
    status: str
    detail: str


def _field_check(name: str, title: str, setting: str, fields: list[dict[str, Any]],
                 good_types: dict[str, str]) -> Check:
    wanted = title.strip().casefold()
    match = next((f for f in fields if str(f.get("title") or "").strip().casefold() == wanted), None)
    if match is None:
        return Check(name, FAIL, f"no ticket field titled {title!r}: create it or set {setting} to its title")
    kind = str(match.get("type"))
    if match.get("active") is False:
        return Check(name, FAIL, f"field {match.get('id')} {title!r} is inactive: activate it in Admin Center")
    if kind in good_types:
        return Check(name, PASS, f"field {match.get('id')} {title!r}, type {kind} ({good_types[kind]})")
    return Check(name, WARN, f"field {match.get('id')} {title!r} has type {kind}: its values are stored as text "
                             f"(expected one of {', '.join(good_types)})")


def _parse_limit(headers) -> tuple[int | None, int | None, str]:
    """(limit, remaining, header) from Zendesk's endpoint header, else the account-wide ones."""
    special = headers.get("zendesk-ratelimit-incremental-exports")
    if special:
        parts = dict(p.strip().split("=", 1) for p in special.split(";") if "=" in p)
        try:
            return int(parts.get("total", "")), int(parts.get("remaining", "")), \
                "zendesk-ratelimit-incremental-exports"
        except ValueError:
            pass  # a malformed export header: fall back to the generic rate-limit headers below
    for limit_h, left_h in (("ratelimit-limit", "ratelimit-remaining"), ("x-rate-limit", "x-rate-limit-remaining")):
        if headers.get(limit_h):
            try:
                return int(headers[limit_h]), int(headers.get(left_h) or -1), limit_h
            except ValueError:
                continue
    return None, None, ""


def run_checks(settings: Settings, client: HelpdeskClient, write_ticket: int | None = None) -> list[Check]:
    """Every check in order; a failed prerequisite (credentials) skips the ones that need it."""
    out: list[Check] = []
    try:
        me = client.get_json("/api/v2/users/me.json").get("user") or {}
    except HelpdeskError as exc:
        out.append(Check("credentials", FAIL, str(exc)))
        return out + [Check(name, SKIP, "needs working credentials") for name in (
            "role", "contact-reason field", "confirmed-category field", "CSAT API", "export rate limit",
            "write-back fields")]
    if not me.get("id"):  # Zendesk answers an anonymous user when the credentials are not accepted
        out.append(Check("credentials", FAIL, "the helpdesk answered as an anonymous user: check "
                                              "TICKETLENS_HELPDESK_EMAIL / TICKETLENS_HELPDESK_API_TOKEN"))
        return out
    out.append(Check("credentials", PASS, f"authenticated as {me.get('email') or me.get('name')} "
                                          f"(user {me.get('id')}) on {client.base_url}"))
    role = str(me.get("role"))
    out.append(Check("role", PASS if role == "admin" else FAIL,
                     "admin" if role == "admin" else
                     f"role {role!r}: the incremental export, satisfaction ratings and CSAT survey responses are "
                     f"admin-only in Zendesk; use a token of an admin user"))

    try:
        fields = client.list_ticket_fields()
    except HelpdeskError as exc:
        fields = []
        out.append(Check("ticket fields", FAIL, str(exc)))
    out.append(_field_check("contact-reason field", settings.contact_reason_field_title,
                            "TICKETLENS_CONTACT_REASON_FIELD_TITLE", fields, REASON_TYPES))
    out.append(_field_check("confirmed-category field", settings.confirmed_category_field_title,
                            "TICKETLENS_CONFIRMED_CATEGORY_FIELD_TITLE", fields, CATEGORY_TYPES))
    out.append(_csat_check(settings, client))
    out.append(_rate_limit_check(settings, client))
    out.extend(_writeback_checks(settings, client, fields, write_ticket))
    return out


def _probe(client: HelpdeskClient, path: str, params: dict[str, Any], key: str) -> tuple[list | None, str]:
    try:
        body = client.get_json(path, params)
    except HelpdeskNotFoundError:
        return None, "not on this account (HTTP 404)"
    except HelpdeskAuthError:
        return None, "denied (HTTP 403: admin-only)"
    except HelpdeskError as exc:
        return None, f"error: {exc}"
    rows = body.get(key)
    return (rows if isinstance(rows, list) else []), "answers"


def _csat_check(settings: Settings, client: HelpdeskClient) -> Check:
    legacy, legacy_note = _probe(client, RATINGS_PATH, {"start_time": 0, "page[size]": 100}, "satisfaction_ratings")
    survey, survey_note = _probe(client, SURVEY_RESPONSES_PATH, {"page[size]": 100, "filter[created_at_start]": 0},
                                 "survey_responses")
    rated = [r for r in legacy or [] if isinstance(r, dict) and r.get("score") not in ("offered", "unoffered")]
    parts = [f"legacy satisfaction_ratings {legacy_note}"
             + (f" ({len(rated)} ratings, {len(legacy) - len(rated)} offered/unoffered on the first page)"
                if legacy is not None else ""),
             f"survey_responses {survey_note}" + (f" ({len(survey)} on the first page)" if survey is not None else "")]
    used = [name for name, rows in (("satisfaction_ratings", rated), ("survey_responses", survey)) if rows]
    setting = settings.helpdesk_csat_api
    needed = {"satisfaction_ratings": ["satisfaction_ratings"], "survey_responses": ["survey_responses"],
              "both": ["satisfaction_ratings", "survey_responses"], "auto": []}[setting]
    missing = [n for n in needed if (legacy if n == "satisfaction_ratings" else survey) is None]
    detail = (f"account uses {' and '.join(used) if used else 'neither yet (no ratings)'}; " + "; ".join(parts)
              + f"; TICKETLENS_HELPDESK_CSAT_API={setting}")
    if missing or (legacy is None and survey is None):
        return Check("CSAT API", FAIL, detail + f" — cannot read {', '.join(missing) or 'either API'}")
    unread = [n for n in used if setting != "auto" and n not in needed]
    if unread:
        return Check("CSAT API", WARN, detail + f" — ratings in {', '.join(unread)} are not read with this setting")
    return Check("CSAT API", PASS, detail)


def _rate_limit_check(settings: Settings, client: HelpdeskClient) -> Check:
    try:
        client.get_json("/api/v2/incremental/tickets/cursor.json",
                        {"start_time": int(time.time()) - 3600, "per_page": 1})
    except HelpdeskError as exc:
        return Check("export rate limit", FAIL, f"incremental export refused: {exc}")
    limit, remaining, header = _parse_limit(client.last_headers)
    ours = settings.helpdesk_export_requests_per_minute
    if limit is None:
        return Check("export rate limit", WARN, f"no rate-limit header on the export; TicketLens paces itself at "
                                                f"TICKETLENS_HELPDESK_EXPORT_REQUESTS_PER_MINUTE={ours}")
    detail = (f"{limit}/min reported ({header}, {remaining} left this minute); TicketLens paces at {ours}/min "
              f"(TICKETLENS_HELPDESK_EXPORT_REQUESTS_PER_MINUTE)")
    if header != "zendesk-ratelimit-incremental-exports":
        detail += "; the account-wide limit is shown (Zendesk allows 10/min on exports unless upgraded)"
        limit = min(limit, 10)
    if ours > limit:
        return Check("export rate limit", WARN, detail + f" — above the account's {limit}/min: expect 429s; lower it")
    return Check("export rate limit", PASS, detail)


def _writeback_checks(settings: Settings, client: HelpdeskClient, fields: list[dict[str, Any]],
                      write_ticket: int | None) -> list[Check]:
    configured = settings.writeback_custom_fields
    if not configured:
        return [Check("write-back fields", SKIP, "TICKETLENS_WRITEBACK_CUSTOM_FIELDS is empty: only tags are written")]
    by_id = {f.get("id"): f for f in fields}
    out, writable = [], {}
    for name, field_id in sorted(configured.items()):
        field = by_id.get(field_id)
        if field is None:
            try:
                field = client.get_json(f"/api/v2/ticket_fields/{int(field_id)}.json").get("ticket_field")
            except HelpdeskNotFoundError:
                field = None
            except HelpdeskError as exc:
                out.append(Check(f"write-back field {name}", FAIL, f"field {field_id}: {exc}"))
                continue
        label = f"write-back field {name}"
        if not field:
            out.append(Check(label, FAIL, f"no ticket field {field_id} (TICKETLENS_WRITEBACK_CUSTOM_FIELDS)"))
            continue
        kind, title = str(field.get("type")), field.get("title")
        if kind in SYSTEM_TYPES or field.get("removable") is False:
            out.append(Check(label, FAIL, f"field {field_id} {title!r} is a system field ({kind}), not a custom one"))
        elif field.get("active") is False:
            out.append(Check(label, FAIL, f"field {field_id} {title!r} is inactive: writes to it are ignored"))
        elif kind not in WRITEBACK_TYPES.get(name, DEFAULT_WRITEBACK_TYPES):
            out.append(Check(label, FAIL, f"field {field_id} {title!r} has type {kind}, which cannot hold {name} "
                                          f"values (use {', '.join(sorted(WRITEBACK_TYPES.get(name, DEFAULT_WRITEBACK_TYPES)))})"))
        else:
            writable[name] = field_id
            out.append(Check(label, PASS, f"field {field_id} {title!r}, active custom field of type {kind}"
                                          + ("" if write_ticket else " (not written: --write-check TICKET_ID proves it)")))
    if write_ticket is not None and writable:
        out.append(_write_check(client, write_ticket, writable))
    return out


def _write_check(client: HelpdeskClient, ticket_id: int, writable: dict[str, int]) -> Check:
    """Write the fields' current values back to one ticket (a change-free update) and wait for the job."""
    try:
        found = client.show_many([ticket_id])
        if not found:
            return Check("write check", FAIL, f"ticket {ticket_id} not found")
        current = {f.get("id"): f.get("value") for f in found[0].get("custom_fields") or () if isinstance(f, dict)}
        updates = [{"id": ticket_id, "custom_fields": [{"id": fid, "value": current.get(fid)}
                                                      for fid in writable.values()]}]
        job = client.update_many(updates)
        for _ in range(30):
            if job.finished:
                break
            time.sleep(1)
            job = client.get_job_status(job.id)
    except HelpdeskError as exc:
        return Check("write check", FAIL, f"ticket {ticket_id}: {exc}")
    ok = job.status == "completed" and all(r.get("success") for r in job.results or [{"success": True}])
    return Check("write check", PASS if ok else FAIL,
                 f"wrote the current values of {', '.join(sorted(writable))} back to ticket {ticket_id}: job "
                 f"{job.status}" + ("" if ok else f" ({job.message or job.results})"))


def render(checks: list[Check]) -> str:
    width = max(len(c.check) for c in checks)
    lines = [f"{'check':<{width}}  status  detail", f"{'-' * width}  ------  {'-' * 40}"]
    lines += [f"{c.check:<{width}}  {c.status:<6}  {c.detail}" for c in checks]
    failed = sum(c.status == FAIL for c in checks)
    lines.append("")
    lines.append("helpdesk ready for TicketLens" if not failed else f"{failed} check(s) failed: fix them before the "
                                                                       f"first ingest")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ticketlens", description="TicketLens operator commands.")
    sub = parser.add_subparsers(dest="command", required=True)
    doctor = sub.add_parser("doctor", help="check the helpdesk account and settings (reads only, unless asked)")
    doctor.add_argument("--write-check", type=int, metavar="TICKET_ID",
                        help="also prove the write-back fields are writable by writing their current values back to "
                             "this ticket (the only option that writes)")
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"settings: FAIL  {exc}", file=sys.stderr)
        return 1
    try:
        client = HelpdeskClient.from_settings(settings, max_retries=min(settings.helpdesk_max_retries, 2))
    except HelpdeskError as exc:
        print(render([Check("credentials", FAIL, str(exc))]))
        return 1
    with client:
        checks = run_checks(settings, client, args.write_check)
    print(json.dumps([asdict(c) for c in checks], indent=2) if args.json else render(checks))
    return 1 if any(c.status == FAIL for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
