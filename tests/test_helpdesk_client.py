"""The Zendesk client against httpx.MockTransport: pagination, pacing, retries, error messages, no secrets."""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from tasks.helpdesk import (
    CursorRejectedError,
    HelpdeskAuthError,
    HelpdeskClient,
    HelpdeskNotFoundError,
    HelpdeskUnavailableError,
    MalformedPageError,
    parse_retry_after,
)
from tasks.settings import load_settings

TOKEN = "s3cr3t-token-value"


class FakeTime:
    """Injected clock and sleep: waits are recorded and advance the clock instantly."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def make_client(handler, *, fake=None, **kw) -> tuple[HelpdeskClient, FakeTime, list[httpx.Request]]:
    fake = fake or FakeTime()
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    kw.setdefault("requests_per_minute", None)
    kw.setdefault("export_requests_per_minute", None)
    client = HelpdeskClient(
        "https://acme.zendesk.test", email="ops@acme.test", api_token=TOKEN,
        transport=httpx.MockTransport(record), sleep=fake.sleep, clock=fake.clock, rng=random.Random(1), **kw,
    )
    return client, fake, seen


def export_body(ids, cursor, end):
    return {"tickets": [{"id": i} for i in ids], "after_cursor": cursor, "end_of_stream": end,
            "metric_sets": [{"ticket_id": i, "reopens": 0} for i in ids]}


def test_export_paginates_to_end_of_stream_with_url_encoded_cursor():
    pages = {None: export_body([1, 2], "a+b/c=", False), "a+b/c=": export_body([3], "z==", False),
             "z==": export_body([], "z==", True)}
    client, _, seen = make_client(lambda r: httpx.Response(200, json=pages[r.url.params.get("cursor")]))
    got = list(client.export_tickets(start_time=1700000000))
    assert [t["id"] for p in got for t in p.tickets] == [1, 2, 3]
    assert got[-1].end_of_stream and got[0].metric_sets[0]["ticket_id"] == 1
    assert seen[0].url.params["start_time"] == "1700000000" and seen[0].url.params["include"] == "metric_sets"
    assert "cursor=a%2Bb%2Fc%3D" in str(seen[1].url) and "start_time" not in seen[1].url.params


def test_ratings_follow_links_next_until_has_more_is_false():
    base = "https://acme.zendesk.test/api/v2/satisfaction_ratings"

    def handler(request):
        after = request.url.params.get("page[after]")
        if after is None:
            return httpx.Response(200, json={"satisfaction_ratings": [{"id": 1}], "meta": {"has_more": True},
                                             "links": {"next": f"{base}?page[after]=c1&page[size]=1"}})
        return httpx.Response(200, json={"satisfaction_ratings": [{"id": 2}], "meta": {"has_more": False},
                                         "links": {"next": None}})

    client, _, seen = make_client(handler)
    pages = list(client.export_satisfaction_ratings(start_time=5, page_size=1))
    assert [r["id"] for p in pages for r in p.ratings] == [1, 2]
    assert pages[0].has_more and pages[0].next_url.endswith("page[after]=c1&page[size]=1")
    assert not pages[1].has_more and pages[1].next_url is None
    assert seen[0].url.params["start_time"] == "5"


def test_pagination_link_to_another_host_is_refused():
    client, _, _ = make_client(lambda r: httpx.Response(200, json={}))
    with pytest.raises(Exception, match="another host"):
        next(client.export_satisfaction_ratings(next_url="https://evil.test/api/v2/satisfaction_ratings"))


def sequence(*responses):
    items = list(responses)

    def handler(request):
        item = items.pop(0) if len(items) > 1 else items[0]
        if isinstance(item, Exception):
            raise item
        return item

    return handler


OK = httpx.Response(200, json=export_body([1], "c", True))


def test_429_waits_for_fractional_retry_after():
    client, fake, seen = make_client(sequence(httpx.Response(429, headers={"Retry-After": "1.5"}), OK))
    assert next(client.export_tickets(start_time=0)).tickets == [{"id": 1}]
    assert fake.waits == [1.5] and len(seen) == 2


@pytest.mark.parametrize("header", ["garbage", "", None])
def test_unparseable_retry_after_falls_back_to_backoff(header):
    headers = {"Retry-After": header} if header is not None else {}
    client, fake, _ = make_client(sequence(httpx.Response(429, headers=headers), OK))
    next(client.export_tickets(start_time=0))
    assert len(fake.waits) == 1 and 0.1 <= fake.waits[0] <= 1.0


def test_retry_after_http_date_is_understood():
    when = datetime.now(UTC) + timedelta(seconds=30)
    assert 25 <= parse_retry_after(format_datetime(when, usegmt=True)) <= 31
    assert parse_retry_after(" 3 ") == 3.0


def test_retry_after_beyond_the_cap_fails_clearly():
    client, _, seen = make_client(sequence(httpx.Response(429, headers={"Retry-After": "3600"})),
                                  max_retry_after=600)
    with pytest.raises(HelpdeskUnavailableError, match="TICKETLENS_HELPDESK_MAX_RETRY_AFTER_SECONDS"):
        next(client.export_tickets(start_time=0))
    assert len(seen) == 1


def test_5xx_retried_with_growing_jittered_backoff():
    client, fake, seen = make_client(sequence(*[httpx.Response(503)] * 3, OK), backoff_base=1, backoff_max=60)
    next(client.export_tickets(start_time=0))
    assert len(seen) == 4 and len(fake.waits) == 3
    for attempt, wait in enumerate(fake.waits, start=1):
        assert 0.1 * 2 ** (attempt - 1) <= wait <= 2 ** (attempt - 1)


def test_5xx_forever_gives_up_after_max_retries():
    client, _, seen = make_client(sequence(httpx.Response(500)), max_retries=3)
    with pytest.raises(HelpdeskUnavailableError, match="after 4 attempts"):
        next(client.export_tickets(start_time=0))
    assert len(seen) == 4


def test_timeouts_and_connection_errors_are_retried():
    client, _, seen = make_client(sequence(httpx.ReadTimeout("slow"), httpx.ConnectError("refused"), OK))
    assert next(client.export_tickets(start_time=0)).tickets
    assert len(seen) == 3


def test_401_fails_at_once_naming_the_settings_without_the_token():
    client, _, seen = make_client(sequence(httpx.Response(401, json={"error": "Couldn't authenticate you"})))
    with pytest.raises(HelpdeskAuthError, match="TICKETLENS_HELPDESK_API_TOKEN") as info:
        next(client.export_tickets(start_time=0))
    assert len(seen) == 1 and TOKEN not in str(info.value) and TOKEN not in repr(client)


def test_404_names_the_base_url_setting():
    client, _, seen = make_client(sequence(httpx.Response(404)))
    with pytest.raises(HelpdeskNotFoundError, match="TICKETLENS_HELPDESK_BASE_URL"):
        client.list_groups()
    assert len(seen) == 1


def test_rejected_cursor_raises_cursor_rejected():
    client, _, seen = make_client(sequence(httpx.Response(422, json={"error": "InvalidPaginationParameter"})))
    with pytest.raises(CursorRejectedError):
        next(client.export_tickets(cursor="stale"))
    assert len(seen) == 1


def test_truncated_json_is_retried_then_reported():
    broken = httpx.Response(200, content=b'{"tickets": [{"id": 1}, {"id"', headers={"Content-Type": "application/json"})
    client, _, seen = make_client(sequence(broken, OK))
    assert next(client.export_tickets(start_time=0)).tickets == [{"id": 1}]
    client, _, seen = make_client(sequence(broken), max_retries=2)
    with pytest.raises(MalformedPageError, match="JSON"):
        next(client.export_tickets(start_time=0))
    assert len(seen) == 3


def test_page_without_tickets_key_is_malformed():
    client, _, _ = make_client(sequence(httpx.Response(200, json={"end_of_stream": True})), max_retries=0)
    with pytest.raises(MalformedPageError, match="tickets"):
        next(client.export_tickets(start_time=0))


def test_basic_and_bearer_auth_headers():
    client, _, seen = make_client(sequence(OK))
    next(client.export_tickets(start_time=0))
    assert seen[0].headers["Authorization"] == "Basic " + base64.b64encode(f"ops@acme.test/token:{TOKEN}".encode()).decode()
    bearer = HelpdeskClient("https://x.test", oauth_token="oauth-abc",
                            transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"groups": []})))
    assert bearer._auth_header == "Bearer oauth-abc"
    with pytest.raises(HelpdeskAuthError, match="TICKETLENS_HELPDESK_EMAIL"):
        HelpdeskClient("https://x.test")


def test_export_limiter_paces_requests():
    pages = [export_body([i], f"c{i}", i == 3) for i in (1, 2, 3)]
    client, fake, _ = make_client(lambda r: httpx.Response(200, json=pages[int((r.url.params.get("cursor") or "c0")[1:])]),
                                  export_requests_per_minute=10)
    start = fake.now
    assert len(list(client.export_tickets(start_time=0))) == 3
    assert fake.now - start == pytest.approx(12.0)  # 10/min → one every 6 s after the first


def test_update_many_and_job_status():
    def handler(request):
        if request.method == "PUT":
            body = json.loads(request.content)
            assert body == {"tickets": [{"id": 1, "additional_tags": ["tl_x"]}]}
            return httpx.Response(200, json={"job_status": {"id": "j1", "status": "queued", "total": 1}})
        return httpx.Response(200, json={"job_status": {"id": "j1", "status": "completed", "total": 1, "progress": 1,
                                                        "results": [{"id": 1, "success": True}]}})

    client, _, seen = make_client(handler)
    assert client.update_many([{"id": 1, "additional_tags": ["tl_x"]}]).status == "queued"
    job = client.get_job_status("j1")
    assert job.finished and job.results == [{"id": 1, "success": True}]
    assert seen[1].url.path == "/api/v2/job_statuses/j1"
    with pytest.raises(ValueError, match="at most 100"):
        client.update_many([{"id": i} for i in range(101)])


def test_lists_follow_cursor_links():
    def handler(request):
        if request.url.params.get("page[after]"):
            return httpx.Response(200, json={"users": [{"id": 2}], "meta": {"has_more": False}, "links": {}})
        return httpx.Response(200, json={"users": [{"id": 1}], "meta": {"has_more": True}, "links": {
            "next": "https://acme.zendesk.test/api/v2/users.json?page[after]=x"}})

    client, _, seen = make_client(handler)
    assert [u["id"] for u in client.list_agents()] == [1, 2]
    assert seen[0].url.params.get_list("role[]") == ["agent", "admin"]


def test_from_settings():
    settings = load_settings(helpdesk_base_url="https://acme.zendesk.test", helpdesk_api_token=TOKEN)
    client = HelpdeskClient.from_settings(settings)
    assert client.base_url == "https://acme.zendesk.test" and TOKEN not in repr(client)
