"""The Zendesk-compatible simulator over real HTTP on loopback, with a small hand-built dataset."""

from __future__ import annotations

import base64

import httpx
import pytest

from ticketlens.helpdesk_sim.dataset import Dataset, RatingSpec, TicketSpec
from ticketlens.helpdesk_sim.testing import running_simulator

T0 = 1_785_542_400  # 2026-08-01T00:00:00Z
H = 3600


def spec(i: int, created: int, events, **kw) -> TicketSpec:
    base = dict(
        id=i, created_at=created, subject=f"Subject {i}", description=f"Body {i}", channel="web",
        priority="normal", type="question", requester_id=100 + i, submitter_id=100 + i, organization_id=None,
        group_id=7, assignee_id=70, tags=("web",), events=tuple(events), true_category="account.password_reset",
        contact_reason="account.password_reset", confirmed_category="account.password_reset", language="en",
        customer_segment="consumer", first_reply_minutes=30, full_resolution_minutes=120,
    )
    return TicketSpec(**{**base, **kw})


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    tickets = [spec(i, T0 + i * H, [(T0 + i * H, "new"), (T0 + i * H + 1800, "open"), (T0 + i * H + 7200, "solved")])
               for i in range(1, 11)]
    tickets[2] = spec(3, T0 + 3 * H, [(T0 + 3 * H, "new"), (T0 + 3 * H + 600, "deleted")])
    tickets[4] = spec(5, T0 + 5 * H, [(T0 + 5 * H, "new"), (T0 + 5 * H + 1800, "open"), (T0 + 5 * H + 3600, "solved"),
                                      (T0 + 5 * H + 5400, "open"), (T0 + 5 * H + 9000, "solved")],
                      rating=RatingSpec(1, T0 + 8 * H, T0 + 8 * H, "bad", "slow", "Other", 70, 7))
    tickets[5] = spec(6, T0 + 6 * H, tickets[5].events,
                      rating=RatingSpec(2, T0 + 9 * H, T0 + 20 * H, "good", "thanks", None, 70, 7))
    return Dataset(
        tickets=tickets, groups=[{"id": 7, "name": "Tier 1"}], agents=[{"id": 70, "name": "A", "role": "agent"},
                                                                        {"id": 71, "name": "E", "role": "end-user"}],
        ticket_fields=[{"id": 501, "title": "Contact reason"}, {"id": 502, "title": "Confirmed category"}],
        contact_reason_field_id=501, confirmed_category_field_id=502, start=T0, end=T0 + 24 * H,
    )


@pytest.fixture
def sim(dataset):
    with running_simulator(dataset, clock=T0 + 24 * H) as handle:
        yield handle


def client(sim, token=None) -> httpx.Client:
    raw = f"{sim.email}/token:{token or sim.api_token}".encode()
    return httpx.Client(base_url=sim.base_url, headers={"Authorization": "Basic " + base64.b64encode(raw).decode()})


def export_all(c: httpx.Client, **params):
    pages, body = [], c.get("/api/v2/incremental/tickets/cursor.json", params=params).json()
    pages.append(body)
    while not body["end_of_stream"]:
        body = c.get("/api/v2/incremental/tickets/cursor.json",
                     params={"cursor": body["after_cursor"], "per_page": params.get("per_page", 1000),
                             "include": params.get("include", "")}).json()
        pages.append(body)
    return pages


def test_auth_is_required(sim):
    assert client(sim, token="wrong").get("/api/v2/groups.json").status_code == 401
    bearer = httpx.get(f"{sim.base_url}/api/v2/groups.json", headers={"Authorization": f"Bearer {sim.oauth_token}"})
    assert bearer.status_code == 200 and bearer.json()["groups"][0]["id"] == 7


def test_export_paginates_in_update_order_to_end_of_stream(sim):
    pages = export_all(client(sim), start_time=0, per_page=3, include="metric_sets")
    ids = [t["id"] for p in pages for t in p["tickets"]]
    assert sorted(ids) == list(range(1, 11)) and len(ids) == 10
    stamps = [t["generated_timestamp"] for p in pages for t in p["tickets"]]
    assert stamps == sorted(stamps)
    by_id = {t["id"]: t for p in pages for t in p["tickets"]}
    assert by_id[3]["status"] == "deleted" and by_id[1]["status"] == "solved"
    assert {"id": 502, "value": "account.password_reset"} in by_id[1]["custom_fields"]
    metrics = {m["ticket_id"]: m for p in pages for m in p["metric_sets"]}
    assert metrics[5]["reopens"] == 1 and metrics[1]["reply_time_in_minutes"]["calendar"] == 30


def test_clock_reveals_new_tickets_and_updates_and_cursor_resumes(sim):
    c = client(sim)
    sim.set_clock(T0 + 4 * H + 900)  # tickets 1-4 exist; 4 is still new
    pages = export_all(c, start_time=0)
    seen = {t["id"]: t for p in pages for t in p["tickets"]}
    assert set(seen) == {1, 2, 3, 4} and seen[4]["status"] == "new" and seen[4]["assignee_id"] is None
    cursor = pages[-1]["after_cursor"]
    assert c.get("/api/v2/incremental/tickets/cursor.json", params={"cursor": cursor}).json()["tickets"] == []
    sim.advance(3 * H)
    later = c.get("/api/v2/incremental/tickets/cursor.json", params={"cursor": cursor}).json()
    got = {t["id"]: t["status"] for t in later["tickets"]}
    assert got[4] == "solved" and 5 in got and 1 not in got


def test_start_time_filters_by_update_time(sim):
    body = client(sim).get("/api/v2/incremental/tickets/cursor.json", params={"start_time": T0 + 9 * H}).json()
    assert {t["id"] for t in body["tickets"]} == {7, 8, 9, 10}  # 7 was solved exactly at T0+9h


def test_ratings_paginate_and_change_with_the_clock(sim):
    c = client(sim)
    sim.set_clock(T0 + 10 * H)
    first = c.get("/api/v2/satisfaction_ratings", params={"start_time": 0, "page[size]": 1}).json()
    assert first["meta"]["has_more"] and first["satisfaction_ratings"][0]["id"] == 1
    second = c.get(first["links"]["next"]).json()
    assert second["satisfaction_ratings"][0]["score"] == "bad" and not second["meta"]["has_more"]
    sim.set_clock(T0 + 24 * H)
    # Ticket 10 was solved and never rated: Zendesk lists an "offered" record for it (not a rating).
    assert {r["id"]: r["score"] for r in sim.snapshot()["ratings"]} == {1: "bad", 2: "good", 10**12 + 10: "offered"}


def test_rate_limit_answers_429_with_retry_after(dataset):
    with running_simulator(dataset, requests_per_minute=2, retry_after="0.25") as sim:
        c = client(sim)
        codes = [c.get("/api/v2/groups.json").status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        assert c.get("/api/v2/groups.json").headers["Retry-After"] == "0.25"


def test_faults(sim):
    c = client(sim)
    sim.set_faults(error_rate=1.0)
    assert c.get("/api/v2/groups.json").status_code in (500, 503)
    assert sim.stats()["errors_served"] == 1
    sim.set_faults(error_rate=0.0, malformed_pages=1)
    broken = c.get("/api/v2/incremental/tickets/cursor.json", params={"start_time": 0})
    with pytest.raises(ValueError):
        broken.json()
    assert c.get("/api/v2/incremental/tickets/cursor.json", params={"start_time": 0}).json()["tickets"]
    sim.set_faults(missing_field_pages=1, missing_field="created_at")
    assert all("created_at" not in t for t in
               c.get("/api/v2/incremental/tickets/cursor.json", params={"start_time": 0}).json()["tickets"])
    sim.set_faults(reject_cursors=True)
    assert c.get("/api/v2/incremental/tickets/cursor.json", params={"cursor": "MSwx"}).status_code == 422
    sim.set_faults(reject_cursors=False, invalid_row_pages=1)
    statuses = [t["status"] for t in c.get("/api/v2/incremental/tickets/cursor.json",
                                           params={"start_time": 0}).json()["tickets"]]
    assert "bogus" in statuses


def test_update_many_adds_and_removes_tags_and_reports_a_job(sim):
    c = client(sim)
    r = c.put("/api/v2/tickets/update_many.json", json={"tickets": [
        {"id": 1, "additional_tags": ["tl_cat_x"], "custom_fields": [{"id": 900, "value": "x"}]},
        {"id": 2, "remove_tags": ["web"]}, {"id": 999, "additional_tags": ["a"]}]})
    job = r.json()["job_status"]
    assert job["status"] == "queued" and job["total"] == 3
    status = c.get(f"/api/v2/job_statuses/{job['id']}").json()["job_status"]
    assert status["status"] == "completed"
    assert [x["success"] for x in status["results"]] == [True, True, False]
    assert sim.ticket(1)["tags"] == ["web", "tl_cat_x"]  # added, not replaced
    assert sim.ticket(2)["tags"] == []
    assert {"id": 900, "value": "x"} in sim.ticket(1)["custom_fields"]
    assert sim.ticket(1)["generated_timestamp"] == sim.now()  # an update is a new version
    r = c.put("/api/v2/tickets/update_many.json", params={"ids": ",".join(map(str, range(1, 102)))},
              json={"ticket": {"additional_tags": ["x"]}})
    assert r.status_code == 400
    assert len(sim.updates()) == 1
    assert c.get("/api/v2/job_statuses/nope").status_code == 404


def test_users_filter_by_role(sim):
    users = client(sim).get("/api/v2/users.json", params=[("role[]", "agent"), ("role[]", "admin")]).json()["users"]
    assert [u["id"] for u in users] == [70]
