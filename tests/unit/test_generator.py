"""The synthetic-data generator: deterministic, realistic proportions, planted incidents and CSAT drivers."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest

from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset, write_ground_truth
from ticketlens.models.taxonomy import load_taxonomy


@pytest.fixture(scope="module")
def ds():
    return generate_dataset(GeneratorConfig(seed=3, start=datetime(2026, 3, 2, tzinfo=UTC), days=40,
                                            tickets_per_day=400))


def test_deterministic_per_seed():
    cfg = dict(start=datetime(2026, 8, 1, tzinfo=UTC), days=3, tickets_per_day=100)
    a, b = generate_dataset(GeneratorConfig(seed=1, **cfg)), generate_dataset(GeneratorConfig(seed=1, **cfg))
    c = generate_dataset(GeneratorConfig(seed=2, **cfg))
    assert a.tickets == b.tickets and a.agents == b.agents
    assert a.tickets != c.tickets


def test_volume_ids_and_events(ds):
    n = len(ds.tickets)
    assert 0.9 * 16_000 < n < 1.2 * 16_000
    ids = [t.id for t in ds.tickets]
    assert ids == sorted(ids) and len(set(ids)) == n
    assert [t.created_at for t in ds.tickets] == sorted(t.created_at for t in ds.tickets)
    for t in ds.tickets[:2000]:
        assert t.events[0] == (t.created_at, "new")
        assert [e[0] for e in t.events] == sorted(e[0] for e in t.events)
    assert set(t.true_category for t in ds.tickets) == set(load_taxonomy().leaves)
    assert any(t.events[-1][1] == "deleted" for t in ds.tickets)


def test_label_proportions(ds):
    tk = ds.tickets
    assert 0.20 < sum(t.contact_reason != t.true_category for t in tk) / len(tk) < 0.30
    labelled = [t for t in tk if t.confirmed_category]
    assert 0.01 < sum(t.confirmed_category != t.true_category for t in labelled) / len(labelled) < 0.05
    assert 0.06 < sum(t.language != "en" for t in tk) / len(tk) < 0.14
    solved = [t for t in tk if any(s == "solved" for _, s in t.events)]
    assert 0.15 < sum(t.rating is not None for t in solved) / len(solved) < 0.25


def test_text_is_messy(ds):
    bodies = [t.description for t in ds.tickets]
    assert sum("<p>" in b for b in bodies) > 100
    assert sum("@" in b for b in bodies) > 100
    assert sum("wrote:" in b or "Original Message" in b for b in bodies) > 100
    assert len(set(t.subject for t in ds.tickets)) > 200


def test_incidents_raise_their_category_volume(ds):
    assert len(ds.truth.incidents) == 4  # one per 10 days
    observed = expected = 0.0
    for inc in ds.truth.incidents:
        observed += sum(1 for t in ds.tickets if t.true_category == inc.category and inc.start <= t.created_at < inc.end)
        total = sum(1 for t in ds.tickets if t.true_category == inc.category and t.incident_id is None)
        expected += total / (40 * 24) * (inc.end - inc.start) / 3600
        assert any(t.incident_id == inc.id for t in ds.tickets)
    assert observed > 2.5 * expected


def test_planted_bad_agents_rate_worse(ds):
    bad = {d["key"] for d in ds.truth.csat_drivers if d["kind"] == "agent"}
    rated = [t.rating for t in ds.tickets if t.rating]
    rate = lambda rs: sum(r.score == "bad" for r in rs) / max(1, len(rs))  # noqa: E731
    assert rate([r for r in rated if r.assignee_id in bad]) > rate([r for r in rated if r.assignee_id not in bad]) + 0.15
    ids = [r.id for r in sorted(rated, key=lambda r: r.created_at)]
    assert ids == sorted(ids)


def test_ground_truth_file(ds, tmp_path):
    path = tmp_path / "truth.json"
    write_ground_truth(ds, path)
    data = json.loads(path.read_text())
    assert len(data["tickets"]["id"]) == len(ds.tickets) and data["incidents"] and data["csat_drivers"]
    assert Counter(data["tickets"]["language"])["en"] > 0


def test_csat_without_planted_drivers(ds):
    """The null case for the CSAT-driver benchmark: same tickets, no driver, a similar overall bad-rate."""
    null = generate_dataset(GeneratorConfig(seed=3, start=datetime(2026, 3, 2, tzinfo=UTC), days=40,
                                            tickets_per_day=400, plant_csat_drivers=False))
    assert ds.truth.csat_drivers and null.truth.csat_drivers == []

    def bad_rate(dataset):
        ratings = [t.rating for t in dataset.tickets if t.rating]
        return sum(r.score == "bad" for r in ratings) / len(ratings)

    assert abs(bad_rate(null) - bad_rate(ds)) < 0.05
    # every bad rating's reason theme is recorded as ground truth for the reason classifier
    bad_ids = {t.rating.id for t in ds.tickets if t.rating and t.rating.score == "bad"}
    assert set(ds.truth.csat_reason_themes) == bad_ids
    assert set(ds.truth.csat_reason_themes.values()) <= set(load_taxonomy().csat_reasons)
