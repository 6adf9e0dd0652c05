"""Live simulator mode: the clock follows (here: a controllable) wall time, and data keeps arriving."""

from __future__ import annotations

import base64
import time
from collections import Counter

import httpx
import pytest

from ticketlens.helpdesk_sim.dataset import Incident
from ticketlens.helpdesk_sim.live import LiveConfig
from ticketlens.helpdesk_sim.testing import SimulatorProcess, free_port, running_live_simulator

H, DAY = 3600, 86400
T0 = 1_796_083_200 + 10 * H  # 2026-12-01T10:00:00Z, a Tuesday


class Wall:
    """A wall clock the test moves (the live feed reads it on every request)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def client(sim) -> httpx.Client:
    raw = f"{sim.email}/token:{sim.api_token}".encode()
    return httpx.Client(base_url=sim.base_url, headers={"Authorization": "Basic " + base64.b64encode(raw).decode()},
                        timeout=60)


def export(c: httpx.Client, **params) -> tuple[list[dict], str]:
    """Every page of the incremental export; returns the tickets and the cursor to resume from."""
    body = c.get("/api/v2/incremental/tickets/cursor.json", params={"per_page": 1000, **params}).json()
    tickets = list(body["tickets"])
    while not body["end_of_stream"]:
        body = c.get("/api/v2/incremental/tickets/cursor.json",
                     params={"cursor": body["after_cursor"], "per_page": 1000}).json()
        tickets.extend(body["tickets"])
    return tickets, body["after_cursor"]


def ratings(c: httpx.Client) -> list[dict]:
    out, params = [], {"start_time": 0, "page[size]": 100}
    while True:
        body = c.get("/api/v2/satisfaction_ratings.json", params=params).json()
        out.extend(body["satisfaction_ratings"])
        if not body["meta"]["has_more"]:
            return out
        params = {"start_time": 0, "page[size]": 100, "page[after]": body["meta"]["after_cursor"]}


def test_history_up_to_now_then_new_tickets_and_updates_as_wall_time_passes():
    wall = Wall(T0)
    with running_live_simulator(LiveConfig(seed=5, history_days=3, tickets_per_day=200, incidents_per_day=0),
                                wall=wall) as sim:
        assert sim.now() == T0
        c = client(sim)
        first, cursor = export(c, start_time=0)
        created = [t["created_at"] for t in first]
        # History: about three and a half days (3 full days + today until 10:00) of tickets, none from the future.
        assert 400 < len(first) < 1100
        assert max(created) < "2026-12-01T10:00:01Z" and min(created) >= "2026-11-28T00:00:00Z"
        before = {t["id"]: t for t in first}

        wall.t += 2 * H  # two hours pass
        assert sim.now() == T0 + 2 * H
        new, _ = export(c, cursor=cursor)
        ids = {t["id"] for t in new}
        arrived = [t for t in new if t["id"] not in before]
        changed = [t for t in new if t["id"] in before]
        assert len(arrived) >= 5, "no new tickets in two daytime hours"
        assert all("2026-12-01T10:00:00Z" < t["created_at"] <= "2026-12-01T12:00:00Z" for t in arrived)
        assert changed and all(t["updated_at"] > before[t["id"]]["updated_at"] for t in changed), \
            "older tickets should move on (replies, solves) as time passes"
        assert min(ids) > 0 and len(ids) == len(new)
        # The source-of-truth snapshot agrees with the export.
        assert {t["id"] for t in sim.snapshot()["tickets"]} == set(before) | {t["id"] for t in arrived}


def test_days_beyond_the_start_are_generated_with_the_same_people_and_unique_ids():
    wall = Wall(T0)
    with running_live_simulator(LiveConfig(seed=6, history_days=2, tickets_per_day=150, incidents_per_day=0),
                                wall=wall) as sim:
        c = client(sim)
        agents = {u["id"] for u in c.get("/api/v2/users.json", params={"page[size]": 100}).json()["users"]}
        rated_before = len(ratings(c))
        wall.t += 4 * DAY  # past the generated horizon: four more days are generated on the way
        tickets, _ = export(c, start_time=0)
        status = httpx.get(f"{sim.base_url}/_sim/live").json()
        assert status["chunks"] >= 5 and status["generated_until"] > "2026-12-05T10:00:00Z"
        ids = [t["id"] for t in sorted(tickets, key=lambda t: (t["created_at"], t["id"]))]
        assert len(ids) == len(set(ids)) and ids == sorted(ids), "ids ascend with creation across days"
        days = Counter(t["created_at"][:10] for t in tickets)
        assert all(days[f"2026-12-0{d}"] > 80 for d in (2, 3, 4)), days
        # The same organisation every day: every ticket's assignee is one of the agents served at start-up.
        assert {t["assignee_id"] for t in tickets if t["assignee_id"]} <= agents
        # Ratings keep arriving, with unique ids.
        later = ratings(c)
        assert len(later) > rated_before + 20 and len({r["id"] for r in later}) == len(later)


def test_planted_incident_multiplies_its_category_and_is_listed_once_started():
    wall = Wall(T0)
    start = T0 + 3 * H  # 13:00-16:00 today
    inc = Incident(id="plan-1", category="account.password_reset", start=start, end=start + 3 * H, multiplier=8.0)
    with running_live_simulator(LiveConfig(seed=7, history_days=2, tickets_per_day=300, incidents_per_day=0,
                                           incident_plan=(inc,)), wall=wall) as sim:
        assert sim.incidents() == []  # not started yet: the ground truth does not leak the future
        wall.t = start + 3 * H
        listed = sim.incidents()
        assert [(i["id"], i["category"], i["start_iso"]) for i in listed] == [
            ("plan-1", "account.password_reset", "2026-12-01T13:00:00Z")]
        tickets, _ = export(client(sim), start_time=0)

        def reason_count(first_hour: str, last_hour: str) -> int:  # by the self-selected contact reason (~75% right)
            return sum(1 for t in tickets if first_hour <= t["created_at"][:13] <= last_hour
                       and {"id": 360001, "value": inc.category} in t["custom_fields"])

        during = reason_count("2026-12-01T13", "2026-12-01T15")
        day_before = reason_count("2026-11-30T13", "2026-11-30T15")
        assert during >= 3 * max(day_before, 2), (during, day_before)


def test_clock_moves_in_live_mode_shift_it_and_it_keeps_running():
    wall = Wall(T0)
    with running_live_simulator(LiveConfig(seed=8, history_days=1, tickets_per_day=50, incidents_per_day=0),
                                wall=wall) as sim:
        assert sim.advance(3600) == T0 + H
        wall.t += 60
        assert sim.now() == T0 + H + 60  # still following wall time, one hour ahead of it
        assert sim.set_clock(T0) == T0
        wall.t += 60
        assert sim.now() == T0 + 60


def test_live_config_is_checked():
    with pytest.raises(ValueError, match="history_days"):
        LiveConfig(history_days=0)
    with pytest.raises(ValueError, match="incidents_per_day"):
        LiveConfig(incidents_per_day=-1)


def test_cli_live_mode_follows_wall_time():
    port = free_port()
    with SimulatorProcess(["--live", "--history-days", "1", "--tickets-per-day", "40", "--incidents-per-day", "0",
                           "--first-incident-in-hours", "0"], port=port) as proc:
        status = httpx.get(f"{proc.base_url}/_sim/live", timeout=30).json()
        assert status["live"] is True and abs(status["now"] - time.time()) < 30
        assert status["config"]["tickets_per_day"] == 40
        time.sleep(1.5)
        assert httpx.get(f"{proc.base_url}/_sim/clock", timeout=30).json()["now"] > status["now"]
        # --first-incident-in-hours 0: an incident from the top of the current hour, listed as started.
        (incident,) = httpx.get(f"{proc.base_url}/_sim/incidents", timeout=30).json()
        start = status["now"] - status["now"] % H
        # The feed generates whole UTC days: an incident that crosses midnight is listed up to the end of the day
        # generated so far (its next-day part arrives with that day).
        assert incident["start"] == start
        assert incident["end"] - incident["start"] == min(3 * H, (start // 86400 + 1) * 86400 - start)
