"""Warehouse reads and writes that tests share: row counts, comparing the warehouse with the simulator's truth,
and predictions written as the scorer writes them."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa

from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.schema import csat_ratings, tickets
from ticketlens.models.taxonomy import load_taxonomy


def count(url, table, *where):
    with get_engine(url).connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()


def warehouse_tickets(url: str) -> dict[int, tuple]:
    with get_engine(url).connect() as conn:
        return {r.id: (r.updated_at, r.status, r.is_deleted) for r in
                conn.execute(sa.select(tickets.c.id, tickets.c.updated_at, tickets.c.status, tickets.c.is_deleted))}


def warehouse_ratings(url: str) -> dict[int, tuple]:
    with get_engine(url).connect() as conn:
        return {r.id: (r.updated_at, r.score) for r in
                conn.execute(sa.select(csat_ratings.c.id, csat_ratings.c.updated_at, csat_ratings.c.score))}


def _ts(value) -> datetime:
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def assert_warehouse_equals_source(url: str, sim) -> None:
    """No lost ticket, no duplicate, every ticket at the source's latest version; same for ratings."""
    snap = sim.snapshot()
    expected = {t["id"]: (_ts(t["updated_at"]), t["status"]) for t in snap["tickets"]}
    got = warehouse_tickets(url)
    assert set(got) == set(expected), f"missing {sorted(set(expected) - set(got))[:5]}, extra {sorted(set(got) - set(expected))[:5]}"
    assert {k: v[:2] for k, v in got.items()} == expected
    assert all(v[2] == (v[1] == "deleted") for v in got.values())
    expected_r = {r["id"]: (_ts(r["updated_at"]), r["score"]) for r in snap["ratings"]}
    assert warehouse_ratings(url) == expected_r


def prediction_row(ticket_id: int, updated_at, leaf: str, taxonomy, version: str = "1") -> dict:
    """One prediction as the scorer writes it: ``leaf`` with its taxonomy attributes, confident, neutral."""
    cat = taxonomy.categories[leaf]
    confidence = 0.95 if cat.complexity == "simple" else 0.7
    return {"ticket_id": ticket_id, "ticket_updated_at": updated_at, "category": leaf,
            "parent_category": cat.parent, "feedback_type": cat.feedback_type,
            "confidence": confidence, "top3": [{"category": leaf, "p": confidence}],
            "sentiment": "neutral", "sentiment_score": 0.0, "language": "en",
            "is_spam": cat.feedback_type == "spam", "tier": 1, "routing_group": cat.team,
            "auto_reply": cat.auto_reply, "model_name": "ticket-category-classifier",
            "model_version": version}


def seed_predictions(url: str, dataset) -> None:
    """Predictions as the scorer writes them (a test double for the champion: the true category, confident)."""
    from ticketlens.adapters.warehouse.predictions import write_predictions

    taxonomy = load_taxonomy()
    truth = {t.id: t.true_category for t in dataset.tickets}
    with get_engine(url).begin() as conn:
        stored = conn.execute(sa.select(tickets.c.id, tickets.c.updated_at).where(tickets.c.is_deleted.is_(False)))
        rows = [prediction_row(ticket_id, updated_at, truth[ticket_id], taxonomy) for ticket_id, updated_at in stored]
        write_predictions(conn, pd.DataFrame(rows), "seed")
