"""Which tickets a re-run hour scores: those updated in its window without a current champion prediction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.predictions import unscored_in_window
from ticketlens.adapters.warehouse.schema import ticket_predictions, tickets

H9 = datetime(2026, 11, 20, 9, tzinfo=UTC)


def ticket(id_: int, updated_at: datetime, deleted: bool = False) -> dict:
    return {"id": id_, "created_at": updated_at - timedelta(days=1), "updated_at": updated_at, "status": "open",
            "subject": f"ticket {id_}", "description": "text", "is_deleted": deleted, "extracted_at": updated_at}


def prediction(ticket_id: int, ticket_updated_at: datetime, version: str, current: bool = True) -> dict:
    return {"ticket_id": ticket_id, "ticket_updated_at": ticket_updated_at, "model_name": "clf",
            "model_version": version, "category": "account.hacked", "parent_category": "account",
            "feedback_type": "support", "confidence": 0.9, "top3": [], "sentiment": "neutral",
            "sentiment_score": 0.0, "is_spam": False, "tier": 1, "routing_group": "account", "auto_reply": False,
            "is_current": current, "predicted_at": H9, "run_id": "r"}


def test_only_window_tickets_lacking_a_current_prediction_of_this_version(warehouse_url):
    in_window = H9 + timedelta(minutes=30)
    with get_engine(warehouse_url).begin() as conn:
        conn.execute(sa.insert(tickets), [
            ticket(1, in_window),                          # scored by v2 for this version → skip
            ticket(2, in_window),                          # never scored → score
            ticket(3, in_window),                          # scored by v1 only (before a promotion) → score
            ticket(4, in_window),                          # scored, but an older ticket version → score
            ticket(5, H9 + timedelta(hours=1)),            # updated after the window (end is exclusive) → skip
            ticket(6, H9 - timedelta(seconds=1)),          # before the window → skip
            ticket(7, H9),                                 # at the start (inclusive), unscored → score
            ticket(8, in_window, deleted=True),            # soft-deleted → skip
        ])
        conn.execute(sa.insert(ticket_predictions), [
            prediction(1, in_window, "2"),
            prediction(3, in_window, "1"),
            prediction(4, in_window - timedelta(hours=3), "2"),
        ])
        frame = unscored_in_window(conn, "clf", "2", H9, H9 + timedelta(hours=1), after_id=-1, limit=100)
        assert list(frame["id"]) == [2, 3, 4, 7]
        # keyset pagination: the next page starts after the last id seen
        page = unscored_in_window(conn, "clf", "2", H9, H9 + timedelta(hours=1), after_id=3, limit=1)
        assert list(page["id"]) == [4]
