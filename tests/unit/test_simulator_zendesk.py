"""The simulator is as strict as Zendesk's documentation (helpdesk_sim.zendesk_extras): job expiry and queue
limit, admin-only endpoints, rate-limit headers, .json-less paths, absolute urls, both CSAT APIs, last-minute
exclusion from the export."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
from ticketlens.helpdesk_sim.testing import running_simulator


@pytest.fixture(scope="module")
def dataset():
    return generate_dataset(GeneratorConfig(seed=5, start=datetime(2026, 8, 1, tzinfo=UTC), days=3,
                                            tickets_per_day=80))


def client(sim) -> httpx.Client:
    return httpx.Client(base_url=sim.base_url, auth=(f"{sim.email}/token", sim.api_token), timeout=10)


def test_job_statuses_expire_and_the_queue_is_limited(dataset):
    with running_simulator(dataset, job_polls_before_complete=1000, job_run_seconds=60, max_queued_jobs=2) as sim:
        c = client(sim)
        jobs = [c.put("/api/v2/tickets/update_many", json={"tickets": [{"id": i, "additional_tags": ["x"]}]})
                for i in (1, 2, 3)]
        assert [j.status_code for j in jobs] == [200, 200, 429]
        assert jobs[2].json()["error"] == "TooManyJobs" and "queued jobs" in jobs[2].json()["description"]
        assert jobs[2].headers["Retry-After"]
        job_id = jobs[0].json()["job_status"]["id"]
        assert c.get(f"/api/v2/job_statuses/{job_id}.json").json()["job_status"]["status"] == "working"
        sim.advance(3599)
        assert c.get(f"/api/v2/job_statuses/{job_id}").status_code == 200
        sim.advance(1)  # one hour of the simulated clock after the job: gone, as in Zendesk
        gone = c.get(f"/api/v2/job_statuses/{job_id}.json")
        assert gone.status_code == 404 and gone.json()["error"] == "RecordNotFound"


def test_admin_only_endpoints_headers_paths_and_urls(dataset):
    with running_simulator(dataset, user_role="agent", export_requests_per_minute=10) as sim:
        c = client(sim)
        assert c.get("/api/v2/users/me").json()["user"]["role"] == "agent"
        for path in ("/api/v2/incremental/tickets/cursor.json?start_time=0", "/api/v2/satisfaction_ratings",
                     "/api/v2/guide/survey_responses"):
            answer = c.get(path)
            assert answer.status_code == 403 and answer.json()["error"] == "Forbidden", path
        groups = c.get("/api/v2/groups")  # .json-less path
        assert groups.status_code == 200 and groups.json()["groups"]
        assert int(groups.headers["X-Rate-Limit"]) > 0 and "ratelimit-remaining" in groups.headers
        assert httpx.get(f"{sim.base_url}/api/v2/groups.json").status_code == 401  # auth before the role
    with running_simulator(dataset, export_requests_per_minute=10) as sim:
        c = client(sim)
        page = c.get("/api/v2/incremental/tickets/cursor", params={"start_time": 0, "per_page": 5})
        assert page.status_code == 200
        assert page.headers["zendesk-ratelimit-incremental-exports"].startswith("total=10; remaining=")
        ticket = page.json()["tickets"][0]
        assert ticket["url"].startswith("http://") and ticket["url"].endswith(f"/api/v2/tickets/{ticket['id']}.json")
        fields = {f["id"]: f["value"] for f in ticket["custom_fields"]}
        assert isinstance(fields[360020], bool) and isinstance(fields[360021], int | float) and fields[360010] is None
        channels = [t["via"]["channel"] for t in c.get("/api/v2/incremental/tickets/cursor.json",
                                                       params={"start_time": 0}).json()["tickets"]]
        assert any(isinstance(ch, int) for ch in channels) and any(isinstance(ch, str) and ch.isdigit()
                                                                   for ch in channels)


def test_the_export_leaves_out_the_last_minute(dataset):
    with running_simulator(dataset) as sim:
        c = client(sim)
        newest = max(t.created_at for t in dataset.tickets if t.created_at <= sim.now())
        sim.set_clock(newest)
        ids = {t["id"] for t in c.get("/api/v2/incremental/tickets/cursor.json",
                                      params={"start_time": newest - 3600}).json()["tickets"]}
        last = next(t.id for t in dataset.tickets if t.created_at == newest)
        assert last not in ids
        sim.advance(60)
        ids = {t["id"] for t in c.get("/api/v2/incremental/tickets/cursor.json",
                                      params={"start_time": newest - 3600}).json()["tickets"]}
        assert last in ids


def test_both_csat_apis_are_served(dataset):
    with running_simulator(dataset, csat_api="both", offered_share=0.5) as sim:
        c = client(sim)
        legacy = c.get("/api/v2/satisfaction_ratings.json", params={"start_time": 0, "page[size]": 100}).json()
        scores = {r["score"] for r in legacy["satisfaction_ratings"]}
        assert "offered" in scores and scores <= {"good", "bad", "offered", "unoffered"}
        first = c.get("/api/v2/guide/survey_responses", params={"page[size]": 2}).json()
        assert len(first["survey_responses"]) == 2 and first["meta"]["has_more"]
        response = first["survey_responses"][0]
        assert len(response["id"]) == 26 and response["subject_zrns"][0].startswith("zen:ticket:")
        assert response["answers"][0]["type"] == "rating_scale" and response["answers"][0]["rating_category"] in (
            "good", "bad")
        second = c.get("/api/v2/guide/survey_responses",
                       params={"page[size]": 2, "page[after]": first["meta"]["after_cursor"]}).json()
        assert second["survey_responses"][0]["id"] > response["id"]
        legacy_tickets = {r["ticket_id"] for r in legacy["satisfaction_ratings"] if r["score"] in ("good", "bad")}
        survey_tickets = {int(z.rsplit(":", 1)[1]) for r in first["survey_responses"] for z in r["subject_zrns"]}
        assert not legacy_tickets & survey_tickets  # each rating is served by exactly one API
