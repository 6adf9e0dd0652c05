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


def test_new_tickets_resume_inside_a_page_that_shares_one_extracted_at(warehouse_url):
    """The scoring watermark is (extracted_at, id): a chunk smaller than one loaded page must not skip the rest
    of that page, nor score a ticket twice."""
    from ticketlens.adapters.warehouse.load import StreamState
    from ticketlens.adapters.warehouse.predictions import EPOCH, read_new_tickets

    def state(cursor, watermark):
        return StreamState(stream="scoring", cursor=cursor, watermark=watermark, pages=1, run_id=None, updated_at=H9)

    page, later = H9, H9 + timedelta(minutes=5)
    with get_engine(warehouse_url).begin() as conn:
        conn.execute(sa.insert(tickets), [{**ticket(i, page), "extracted_at": page} for i in (1, 2, 3, 4)]
                     + [{**ticket(5, later), "extracted_at": later}, {**ticket(6, later, deleted=True),
                                                                      "extracted_at": later}])
    watermark = (page - EPOCH) // timedelta(microseconds=1)
    with get_engine(warehouse_url).connect() as conn:
        first = read_new_tickets(conn, None, 3)
        rest = read_new_tickets(conn, state(cursor="3", watermark=watermark), 10)
        after_page = read_new_tickets(conn, state(cursor=None, watermark=watermark), 10)
    assert list(first["id"]) == [1, 2, 3]
    assert list(rest["id"]) == [4, 5]  # the rest of the page, then the next page; deleted tickets never
    assert list(after_page["id"]) == [5]  # no cursor: the whole page at the watermark counts as scored
