"""A scripted, hostile Zendesk look-alike on 127.0.0.1 for flow tests and the response-cap benchmark of
odd-but-possible responses.

The simulator (helpdesk_sim) is faithful to the API; this one says exactly what a test scripts, byte for byte:
pages whose records are raw JSON text (so they can hold ``NaN``, ``"\\ud800"``, 2^70 or 5,000 levels of
nesting, which no Python encoder writes), cursors that repeat or cycle, gzip bombs, 422 on a cursor.

Pages are keyed by the cursor that asks for them (``"start"`` for a ``start_time`` request). A start_time
request on either stream serves the records whose timestamp is at or after it, like Zendesk.
"""

from __future__ import annotations

import contextlib
import json
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ticketlens.helpdesk_sim.testing import free_port


@dataclass
class Page:
    """One page: raw JSON texts of its records, where it points next, and how it is sent."""

    records: list[str]
    next: str | None = None  # the after_cursor / links.next cursor
    end: bool = True  # end_of_stream (tickets) / not meta.has_more (ratings)
    metric_sets: list[str] = field(default_factory=list)
    raw_body: bytes | None = None  # sent as is (e.g. a gzip bomb), with ``headers``
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200


@dataclass
class Script:
    tickets: dict[str, Page] = field(default_factory=dict)
    ratings: dict[str, Page] = field(default_factory=dict)
    # start_time requests: records (raw JSON) with the unix time they are filtered on.
    ticket_feed: list[tuple[int, str]] = field(default_factory=list)
    rating_feed: list[tuple[int, str]] = field(default_factory=list)
    groups: list[str] = field(default_factory=lambda: ['{"id": 1, "name": "Support"}'])
    users: list[str] = field(default_factory=lambda: ['{"id": 10, "name": "Agent", "role": "agent"}'])
    ticket_fields: list[str] = field(default_factory=list)
    reject_cursors: bool = False
    requests: list[str] = field(default_factory=list)


def ticket(tid: Any, ts: int, **over: Any) -> str:
    """A valid export ticket as JSON text; ``over`` values are raw JSON texts replacing fields (None drops)."""
    from datetime import UTC, datetime

    iso = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    fields = {"id": json.dumps(tid), "created_at": json.dumps(iso), "updated_at": json.dumps(iso),
              "generated_timestamp": str(ts), "status": '"open"', "subject": '"Card declined"',
              "description": '"My card was declined at checkout"', "priority": '"normal"', "type": '"question"',
              "tags": '["billing"]', "via": '{"channel": "email"}', "custom_fields": "[]"}
    fields.update(over)
    return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in fields.items() if v is not None) + "}"


def rating(rid: int, ts: int, **over: Any) -> str:
    from datetime import UTC, datetime

    iso = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    fields = {"id": str(rid), "ticket_id": str(rid), "score": '"good"', "comment": '"thanks"',
              "created_at": json.dumps(iso), "updated_at": json.dumps(iso)}
    fields.update(over)
    return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in fields.items() if v is not None) + "}"


def gzip_bomb(decompressed_mb: int) -> bytes:
    """A valid export page whose gzip body inflates to ``decompressed_mb`` MiB (whitespace padding)."""
    out = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [out.compress(b'{"tickets": [')]
    block = b" " * 2**20
    parts.extend(out.compress(block) for _ in range(decompressed_mb))
    parts.append(out.compress(b'], "end_of_stream": true, "after_cursor": "x"}'))
    parts.append(out.flush())
    return b"".join(parts)


class _Handler(BaseHTTPRequestHandler):
    script: Script
    base: str

    def log_message(self, *args: Any) -> None:  # quiet
        return

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        s = self.script
        s.requests.append(self.path)
        listing = {"/api/v2/groups.json": ("groups", s.groups), "/api/v2/users.json": ("users", s.users),
                   "/api/v2/ticket_fields.json": ("ticket_fields", s.ticket_fields)}
        if parts.path in listing:
            key, items = listing[parts.path]
            body = f'{{"{key}": [{", ".join(items)}], "meta": {{"has_more": false}}, "links": {{"next": null}}}}'
            return self._send(200, body.encode())
        if parts.path == "/api/v2/incremental/tickets/cursor.json":
            if "cursor" in q:
                if s.reject_cursors or q["cursor"] not in s.tickets:
                    return self._send(422, b'{"error": "InvalidPaginationParameter"}')
                page = s.tickets[q["cursor"]]
            elif "start" in s.tickets:
                page = s.tickets["start"]
            else:
                since = int(q["start_time"])
                page = Page([r for ts, r in s.ticket_feed if ts >= since], next="feed-end", end=True)
            if page.raw_body is not None:
                return self._send(page.status, page.raw_body, page.headers)
            body = (f'{{"tickets": [{", ".join(page.records)}], "metric_sets": [{", ".join(page.metric_sets)}], '
                    f'"after_cursor": {json.dumps(page.next)}, "end_of_stream": {json.dumps(page.end)}}}')
            return self._send(page.status, body.encode(), page.headers)
        if parts.path == "/api/v2/satisfaction_ratings":
            if "page[after]" in q:
                if s.reject_cursors or q["page[after]"] not in s.ratings:
                    return self._send(422, b'{"error": "InvalidPaginationParameter"}')
                page = s.ratings[q["page[after]"]]
            elif "start" in s.ratings:
                page = s.ratings["start"]
            else:
                since = int(q["start_time"])
                page = Page([r for ts, r in s.rating_feed if ts >= since], end=True)
            nxt = f"{self.base}/api/v2/satisfaction_ratings?page[after]={page.next}" if page.next else None
            body = (f'{{"satisfaction_ratings": [{", ".join(page.records)}], "meta": {{"has_more": '
                    f'{json.dumps(not page.end)}}}, "links": {{"next": {json.dumps(nxt)}}}}}')
            return self._send(page.status, body.encode(), page.headers)
        return self._send(404, b'{"error": "not found"}')


@dataclass
class HostileHandle:
    base_url: str
    script: Script
    email: str = "demo@example.com"
    api_token: str = "demo-token"  # noqa: S105 - the simulator's published demo credential
    oauth_token: str = ""


@contextlib.contextmanager
def hostile_helpdesk(script: Script) -> Iterator[HostileHandle]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    handler = type("Handler", (_Handler,), {"script": script, "base": base})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, name="hostile-helpdesk", daemon=True)
    thread.start()
    try:
        yield HostileHandle(base, script)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


