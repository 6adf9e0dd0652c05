"""The csat-drivers flow end to end on both warehouse backends: tables, artifacts, charts, idempotent re-run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from tests.seed import seed_warehouse
from ticketlens.adapters.settings import get_settings
from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.schema import (
    auto_reply_candidates,
    csat_drivers,
    csat_ratings,
    csat_reason_counts,
    csat_weekly_trends,
    self_selection_options,
    tickets,
)
from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
from ticketlens.models.taxonomy import load_taxonomy

pytestmark = pytest.mark.slow
START = datetime(2026, 3, 2, tzinfo=UTC)
ARTIFACT_KEYS = ("csat-drivers", "csat-reasons", "self-selection", "auto-reply-candidates")


@pytest.fixture(scope="module")
def dataset():
    return generate_dataset(GeneratorConfig(seed=11, start=START, days=42, tickets_per_day=260))


def seed_predictions(url: str, dataset) -> None:
    """Predictions as the scorer writes them (a test double for the champion: the true category, confident)."""
    from ticketlens.adapters.warehouse.predictions import write_predictions

    taxonomy = load_taxonomy()
    truth = {t.id: t.true_category for t in dataset.tickets}
    with get_engine(url).begin() as conn:
        stored = conn.execute(sa.select(tickets.c.id, tickets.c.updated_at).where(tickets.c.is_deleted.is_(False)))
        rows = []
        for ticket_id, updated_at in stored:
            leaf = truth[ticket_id]
            cat = taxonomy.categories[leaf]
            confidence = 0.95 if cat.complexity == "simple" else 0.7
            rows.append({"ticket_id": ticket_id, "ticket_updated_at": updated_at, "category": leaf,
                         "parent_category": cat.parent, "feedback_type": cat.feedback_type,
                         "confidence": confidence, "top3": [{"category": leaf, "p": confidence}],
                         "sentiment": "neutral", "sentiment_score": 0.0, "language": "en",
                         "is_spam": cat.feedback_type == "spam", "tier": 1, "routing_group": cat.team,
                         "auto_reply": cat.auto_reply, "model_name": "ticket-category-classifier",
                         "model_version": "1"})
        write_predictions(conn, pd.DataFrame(rows), "seed")


def table_counts(url: str) -> dict[str, int]:
    with get_engine(url).connect() as conn:
        return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in (csat_drivers, csat_reason_counts, csat_weekly_trends, self_selection_options,
                          auto_reply_candidates)}


def test_csat_drivers_flow(prefect_harness, warehouse_url, dataset, monkeypatch, tmp_path):
    from prefect.artifacts import Artifact

    from ticketlens.flows.csat_drivers import csat_drivers as flow

    seed_warehouse(warehouse_url, dataset)
    seed_predictions(warehouse_url, dataset)
    monkeypatch.setenv("TICKETLENS_WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("TICKETLENS_REPORTS_DIR", str(tmp_path / "reports"))
    get_settings.cache_clear()
    start, end = START, START + timedelta(days=45)
    try:
        result = flow(start=start, end=end)
    finally:
        get_settings.cache_clear()

    # Drivers: the planted categories and reopens are found, every driver makes ratings worse.
    drivers = result["drivers"]
    found = set(zip(drivers["factor"], drivers["level"], strict=True))
    assert ("category", "trust_safety.suspension_appeal") in found or ("category", "ads_business.billing_refund") in found
    assert ("reopened", "reopened") in found
    assert (drivers["odds_ratio"] > 1).all() and result["driver_lines"]
    planted_agents = {str(d["key"]) for d in dataset.truth.csat_drivers if d["kind"] == "agent"}
    assert {lvl for f, lvl in found if f == "agent"} <= planted_agents  # no innocent agent blamed

    counts = table_counts(warehouse_url)
    assert all(n > 0 for n in counts.values()), counts
    with get_engine(warehouse_url).connect() as conn:
        stored = conn.execute(sa.select(csat_drivers).where(csat_drivers.c.is_driver.is_(True))
                              .order_by(csat_drivers.c.driver_rank)).mappings().all()
        reasons_all = conn.execute(sa.select(csat_reason_counts.c.theme, csat_reason_counts.c.comments)
                                   .where(csat_reason_counts.c.scope == "all")).all()
        options = conn.execute(sa.select(self_selection_options)).mappings().all()
        candidates = conn.execute(sa.select(auto_reply_candidates)
                                  .where(auto_reply_candidates.c.is_candidate.is_(True))).mappings().all()
        period = conn.execute(sa.select(csat_drivers.c.period_start, csat_drivers.c.period_end).distinct()).all()
    assert [r["level"] for r in stored] == list(drivers["level"])
    assert stored[0]["odds_ratio"] > 1 and stored[0]["q_value"] <= 0.05 and stored[0]["period_start"] == start
    assert period == [(start, end)]
    # every bad-rating comment got a theme
    with get_engine(warehouse_url).connect() as conn:
        commented_bad = conn.execute(sa.select(sa.func.count()).select_from(csat_ratings).where(
            csat_ratings.c.score == "bad", csat_ratings.c.comment.is_not(None), csat_ratings.c.comment != "",
            csat_ratings.c.created_at >= start, csat_ratings.c.created_at < end)).scalar_one()
    assert commented_bad > 100
    assert sum(n for _, n in reasons_all) == commented_bad
    assert {theme for theme, n in reasons_all if n} >= {"agent_attitude", "slow_response", "not_resolved"}
    assert any(o["suggestion"] for o in options)  # ~25% self-selection disagreement shows up
    assert {c["category"] for c in candidates} and all(c["complexity"] == "simple" for c in candidates)

    # Charts and artifacts.
    assert len(result["charts"]) == 4
    for path in result["charts"]:
        with open(path, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    comments = {t.rating.comment for t in dataset.tickets if t.rating and t.rating.comment}
    for key in ARTIFACT_KEYS:
        artifact = Artifact.get(key)
        assert artifact is not None and artifact.type == "markdown", key
        assert not any(c in artifact.data for c in comments if len(c) > 12)  # no customer text leaves
        assert Artifact.get(f"{key}-table").type == "table"
    assert "OR " in Artifact.get("csat-drivers").data

    # Re-running the same period replaces its rows: nothing duplicated.
    monkeypatch.setenv("TICKETLENS_WAREHOUSE_URL", warehouse_url)
    get_settings.cache_clear()
    try:
        flow(start=start, end=end)
    finally:
        get_settings.cache_clear()
    assert table_counts(warehouse_url) == counts


def test_a_window_without_ratings_reports_nothing_and_fails_nothing(prefect_harness, sqlite_url, monkeypatch,
                                                                      tmp_path):
    from ticketlens.flows.csat_drivers import csat_drivers as flow

    monkeypatch.setenv("TICKETLENS_WAREHOUSE_URL", sqlite_url)
    monkeypatch.setenv("TICKETLENS_REPORTS_DIR", str(tmp_path / "reports"))
    get_settings.cache_clear()
    try:
        result = flow(start=START, end=START + timedelta(days=7))  # an empty, freshly migrated warehouse
    finally:
        get_settings.cache_clear()
    assert result["ratings"] == 0 and result["drivers"].empty and result["driver_lines"] == []
    assert len(result["charts"]) == 4
    assert table_counts(sqlite_url)["csat_drivers"] == 0
