"""The Zendesk client against httpx.MockTransport: pagination, pacing, retries, error messages, no secrets."""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from tests.support.helpdesk import TOKEN, FakeTime, make_client
from ticketlens.adapters.helpdesk import (
    CursorRejectedError,
    HelpdeskAuthError,
    HelpdeskClient,
    HelpdeskError,
    HelpdeskNotFoundError,
    HelpdeskUnavailableError,
    MalformedPageError,
    TokenBucket,
    WriteOutcomeUnknownError,
    parse_retry_after,
)
from ticketlens.adapters.settings import load_settings


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


JOB = httpx.Response(200, json={"job_status": {"id": "j1", "status": "queued", "total": 1}})
ONE = [{"id": 1, "additional_tags": ["tl_x"]}]


@pytest.mark.parametrize("failure", [
    httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("peer closed"), httpx.ReadError("reset"),
    httpx.Response(500), httpx.Response(502), httpx.Response(504),
    httpx.Response(200, content=b'{"job_status": {"id": "j', headers={"Content-Type": "application/json"}),
], ids=["read-timeout", "protocol-error", "read-error", "500", "502", "504", "cut-off-body"])
def test_update_many_is_not_resent_when_it_may_have_been_applied(failure):
    """A write that may have reached the helpdesk is never sent twice: that would be a double write-back."""
    client, _, seen = make_client(sequence(failure, JOB))
    with pytest.raises(WriteOutcomeUnknownError, match="not re-sent") as info:
        client.update_many(ONE)
    assert len(seen) == 1 and TOKEN not in str(info.value)


@pytest.mark.parametrize("failure", [
    httpx.ConnectError("refused"), httpx.ConnectTimeout("no route"),
    httpx.Response(429, headers={"Retry-After": "1"}), httpx.Response(503), httpx.Response(409), httpx.Response(408),
], ids=["connect-error", "connect-timeout", "429", "503", "409", "408"])
def test_update_many_is_retried_when_it_certainly_was_not_applied(failure):
    client, _, seen = make_client(sequence(failure, JOB))
    assert client.update_many(ONE).id == "j1"
    assert len(seen) == 2


def test_reads_still_retry_ambiguous_failures():
    """Reads are safe to repeat: a 500 or read timeout on show_many is retried as before."""
    tickets = httpx.Response(200, json={"tickets": [{"id": 1, "tags": []}]})
    client, _, seen = make_client(sequence(httpx.ReadTimeout("slow"), httpx.Response(500), tickets))
    assert client.show_many([1]) == [{"id": 1, "tags": []}]
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
    assert bearer._auth_header.get_secret_value() == "Bearer oauth-abc"
    assert "oauth-abc" not in repr(vars(bearer))
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


# ------------------------------------------------------------------------------------- further edges


def test_export_is_lazy_and_needs_exactly_one_start():
    client, _, seen = make_client(lambda r: httpx.Response(200, json=export_body([1], "next", False)))
    pages = client.export_tickets(start_time=0)
    assert seen == []  # nothing fetched until the caller asks
    assert next(pages).after_cursor == "next" and len(seen) == 1
    with pytest.raises(ValueError, match="exactly one"):
        next(client.export_tickets())
    with pytest.raises(ValueError, match="exactly one"):
        next(client.export_tickets(start_time=0, cursor="c"))


def test_export_without_metric_sets_and_per_page():
    client, _, seen = make_client(sequence(OK))
    next(client.export_tickets(cursor="c", include_metric_sets=False, per_page=50))
    params = seen[0].url.params
    assert "include" not in params and params["per_page"] == "50" and params["cursor"] == "c"
    assert seen[0].headers["User-Agent"] == "ticketlens/0.1"


@pytest.mark.parametrize(("value", "expected"), [("false", False), ("true", True), (0, False), (1, True)])
def test_end_of_stream_booleanish(value, expected):
    body = {**export_body([1], "c2", value), "end_of_stream": value}
    client, _, _ = make_client(sequence(httpx.Response(200, json=body)))
    assert next(client.export_tickets(start_time=0)).end_of_stream is expected


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"tickets": []}, "end_of_stream"),
        ({"tickets": [], "end_of_stream": "maybe"}, "end_of_stream"),
        ({"tickets": {"id": 1}, "end_of_stream": True}, "tickets"),
        ({"tickets": [], "end_of_stream": False}, "after_cursor"),
        ([1, 2], "JSON"),
    ],
)
def test_export_shape_drift_is_malformed(body, key):
    client, _, seen = make_client(sequence(httpx.Response(200, json=body)), max_retries=1)
    with pytest.raises(MalformedPageError, match=key) as info:
        next(client.export_tickets(start_time=0))
    assert len(seen) == 2 and "after 2 attempts" in str(info.value)


def test_export_cursor_that_does_not_advance_stops():
    client, _, _ = make_client(lambda r: httpx.Response(200, json=export_body([1], "same", False)))
    pages = client.export_tickets(cursor="same")
    next(pages)
    with pytest.raises(MalformedPageError, match="did not advance"):
        next(pages)


def test_malformed_json_message_names_attempts_status_and_path_without_query():
    broken = httpx.Response(200, content=b"<html>maintenance</html>", headers={"Content-Type": "text/html"})
    client, _, _ = make_client(sequence(broken), max_retries=1)
    with pytest.raises(MalformedPageError) as info:
        next(client.export_tickets(cursor="secret-ish-cursor"))
    message = str(info.value)
    assert "JSON" in message and "2 attempts" in message and "status 200" in message
    assert "/api/v2/incremental/tickets/cursor.json" in message and "secret-ish-cursor" not in message


def test_5xx_forever_message_and_logged_retries(caplog):
    client, fake, _ = make_client(sequence(httpx.Response(502)), max_retries=2, backoff_base=2, backoff_max=3)
    with caplog.at_level(logging.WARNING, logger="ticketlens.helpdesk"):
        with pytest.raises(HelpdeskUnavailableError) as info:
            client.list_groups()
    assert "last status 502" in str(info.value) and "/api/v2/groups.json" in str(info.value)
    assert "TICKETLENS_HELPDESK_BASE_URL" in str(info.value)
    assert all(0.2 <= w <= 3 for w in fake.waits) and len(fake.waits) == 2  # capped by backoff_max
    retries = [r for r in caplog.records if r.name == "ticketlens.helpdesk" and r.levelno == logging.WARNING]
    assert len(retries) == 2
    text = " ".join(r.getMessage() for r in retries)
    assert "GET /api/v2/groups.json" in text and "502" in text and TOKEN not in text
    assert base64.b64encode(f"ops@acme.test/token:{TOKEN}".encode()).decode() not in text


def test_timeouts_forever_become_unavailable():
    client, _, seen = make_client(sequence(httpx.ConnectTimeout("no route")), max_retries=1)
    with pytest.raises(HelpdeskUnavailableError, match="timeout"):
        next(client.export_tickets(start_time=0))
    assert len(seen) == 2


@pytest.mark.parametrize("header", ["nan", "inf", "-5"])
def test_odd_numeric_retry_after(header):
    client, fake, _ = make_client(sequence(httpx.Response(429, headers={"Retry-After": header}), OK))
    next(client.export_tickets(start_time=0))
    assert len(fake.waits) == 1
    assert fake.waits[0] == 0.0 if header == "-5" else 0.1 <= fake.waits[0] <= 1.0


def test_429_with_http_date_waits_until_then():
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    client, fake, _ = make_client(sequence(httpx.Response(429, headers={"Retry-After": when}), OK))
    next(client.export_tickets(start_time=0))
    assert 25 <= fake.waits[0] <= 31
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT") == 0.0  # in the past → no wait
    assert parse_retry_after("not a date") is None and parse_retry_after("  ") is None


def test_503_retry_after_is_honoured():
    client, fake, _ = make_client(sequence(httpx.Response(503, headers={"Retry-After": "7"}), OK))
    next(client.export_tickets(start_time=0))
    assert fake.waits == [7.0]
    client, fake, _ = make_client(sequence(httpx.Response(500, headers={"Retry-After": "9999"}), OK))
    next(client.export_tickets(start_time=0))  # a 500's Retry-After is not a promise: plain backoff
    assert len(fake.waits) == 1 and fake.waits[0] <= 1.0


def test_403_is_an_auth_error_and_400_without_cursor_is_not_a_cursor_error():
    client, _, seen = make_client(sequence(httpx.Response(403, json={"error": "Forbidden"})))
    with pytest.raises(HelpdeskAuthError, match=re.escape("https://acme.zendesk.test")) as info:
        client.list_ticket_fields()
    assert "TICKETLENS_HELPDESK_OAUTH_TOKEN" in str(info.value) and TOKEN not in str(info.value)
    client, _, seen = make_client(sequence(httpx.Response(400, json={"error": "bad start_time"})))
    with pytest.raises(HelpdeskError, match="bad start_time") as info:
        next(client.export_tickets(start_time=0))
    assert not isinstance(info.value, CursorRejectedError) and len(seen) == 1


def test_404_message_names_the_path():
    client, _, _ = make_client(sequence(httpx.Response(404)))
    with pytest.raises(HelpdeskNotFoundError, match=re.escape("/api/v2/incremental/tickets/cursor.json")):
        next(client.export_tickets(start_time=0))


def test_rejected_ratings_cursor_raises_cursor_rejected():
    client, _, seen = make_client(sequence(httpx.Response(400, json={"error": "InvalidPaginationParameter"})))
    with pytest.raises(CursorRejectedError):
        next(client.export_satisfaction_ratings(
            next_url="https://acme.zendesk.test/api/v2/satisfaction_ratings?page[after]=old"))
    assert seen[0].url.params["page[after]"] == "old"


def test_redirects_are_not_followed():
    client, _, seen = make_client(sequence(httpx.Response(
        301, headers={"Location": "https://login.example.test/sso?token=abc"})))
    with pytest.raises(HelpdeskError, match="TICKETLENS_HELPDESK_BASE_URL") as info:
        client.list_groups()
    assert len(seen) == 1 and "token=abc" not in str(info.value)


@pytest.mark.parametrize("link", ["http://acme.zendesk.test/api/v2/satisfaction_ratings?page[after]=x",
                                  "//evil.test/api/v2/satisfaction_ratings", "javascript:alert(1)"])
def test_pagination_links_must_stay_on_the_configured_origin(link):
    client, _, seen = make_client(lambda r: httpx.Response(200, json={}))
    with pytest.raises(HelpdeskError, match="Refusing"):
        next(client.export_satisfaction_ratings(next_url=link))
    assert seen == []


def test_has_more_without_next_link_is_malformed():
    body = {"satisfaction_ratings": [], "meta": {"has_more": True}, "links": {"next": None}}
    client, _, _ = make_client(sequence(httpx.Response(200, json=body)), max_retries=0)
    with pytest.raises(MalformedPageError, match=r"links\.next"):
        next(client.export_satisfaction_ratings(start_time=0))


def test_lists_tolerate_offset_next_page_and_stop_on_loops():
    def handler(request):
        if request.url.params.get("page") == "2":
            return httpx.Response(200, json={"ticket_fields": [{"id": 2}], "next_page": None})
        return httpx.Response(200, json={"ticket_fields": [{"id": 1}],
                                         "next_page": "https://acme.zendesk.test/api/v2/ticket_fields.json?page=2"})

    client, _, seen = make_client(handler)
    assert [f["id"] for f in client.list_ticket_fields()] == [1, 2]
    assert seen[0].url.params["page[size]"] == "100"

    loop = "https://acme.zendesk.test/api/v2/groups.json?page[after]=x"
    client, _, _ = make_client(lambda r: httpx.Response(200, json={
        "groups": [], "meta": {"has_more": True}, "links": {"next": loop}}))
    with pytest.raises(MalformedPageError, match="already read"):
        client.list_groups()


def test_update_many_body_shape_and_validation():
    bodies = []

    def handler(request):
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"job_status": {"id": "j9", "status": "queued", "url": "u"}})

    client, _, seen = make_client(handler)
    update = {"id": 7, "additional_tags": ["tl_billing"], "remove_tags": ["tl_other"],
              "custom_fields": [{"id": 42, "value": "billing"}]}
    job = client.update_many([update])
    assert seen[0].method == "PUT" and seen[0].url.path == "/api/v2/tickets/update_many.json"
    assert bodies == [{"tickets": [update]}]
    assert job.id == "j9" and job.total is None and job.results == [] and job.raw["url"] == "u"
    assert not job.finished
    for bad in ([], [{"id": i} for i in range(101)], [{"tags": ["x"]}]):
        with pytest.raises(ValueError):
            client.update_many(bad)
    assert len(seen) == 1  # no request for invalid batches


def test_job_status_without_job_is_malformed():
    client, _, _ = make_client(sequence(httpx.Response(200, json={"oops": 1})), max_retries=0)
    with pytest.raises(MalformedPageError, match="job_status"):
        client.get_job_status("j1")


def test_general_limiter_paces_every_request_and_zero_disables():
    client, fake, _ = make_client(lambda r: httpx.Response(200, json={"groups": []}), requests_per_minute=60)
    for _ in range(3):
        client.list_groups()
    assert fake.waits == pytest.approx([1.0, 1.0])
    client, fake, _ = make_client(lambda r: httpx.Response(200, json={"groups": []}), requests_per_minute=0)
    for _ in range(3):
        client.list_groups()
    assert fake.waits == []


def test_token_bucket_is_thread_safe():
    """Concurrent callers each reserve a distinct slot: with a frozen clock the waits are 0, 1, 2, ... s."""
    waits: list[float] = []
    lock = threading.Lock()

    def sleep(seconds):
        with lock:
            waits.append(seconds)

    bucket = TokenBucket(60, clock=lambda: 0.0, sleep=sleep)
    threads = [threading.Thread(target=bucket.acquire) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(waits) == pytest.approx([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])


def test_no_credentials_and_bad_base_url():
    with pytest.raises(HelpdeskAuthError, match="TICKETLENS_HELPDESK_API_TOKEN"):
        HelpdeskClient("https://x.test", email="a@b.test")
    with pytest.raises(HelpdeskError, match="TICKETLENS_HELPDESK_BASE_URL"):
        HelpdeskClient("acme.zendesk.com", oauth_token="t")


def test_from_settings_with_secret_oauth_and_overrides():
    settings = load_settings(helpdesk_base_url="https://acme.zendesk.test", helpdesk_oauth_token="oauth-xyz",
                             helpdesk_max_retries=0)
    fake = FakeTime()
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json={"groups": [{"id": 1}]})

    with HelpdeskClient.from_settings(settings, transport=httpx.MockTransport(handler), sleep=fake.sleep,
                                      clock=fake.clock) as client:
        assert client.list_groups() == [{"id": 1}]
        assert client.max_retries == 0 and "oauth-xyz" not in repr(client)
    assert seen[0].headers["Authorization"] == "Bearer oauth-xyz"
