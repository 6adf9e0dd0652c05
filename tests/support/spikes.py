"""A warehouse history with one planted surge, for spike-detection tests (warehouse, flow and scheduled runs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import sqlalchemy as sa

from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.schema import ticket_predictions, tickets

START = datetime(2026, 6, 1, tzinfo=UTC)
SPIKE_AT = START + timedelta(days=15, hours=10)  # three hours of 40/hour "app crashes"
PII_SUBJECT = "App crashes!! reach me at jane.doe@example.com or +1 415 555 0134, see https://evil.example.com/x"


def seed(url: str) -> None:
    """15½ days of steady tickets in three categories, then a three-hour surge of app crashes."""
    rng = np.random.default_rng(11)
    rates = {("account.password_reset", "account"): 6.0, ("app_technical.crash", "app_technical"): 3.0,
             ("pins_boards.missing_pins", "pins_boards"): 4.0}
    rows, preds, tid = [], [], 1
    now = datetime.now(UTC)
    for h in range(16 * 24):
        hour = START + timedelta(hours=h)
        for (cat, parent), rate in rates.items():
            n = rng.poisson(rate)
            if cat == "app_technical.crash" and SPIKE_AT <= hour < SPIKE_AT + timedelta(hours=3):
                n = 40
            for k in range(n):
                created = hour + timedelta(seconds=int(rng.integers(0, 3500)) if k else 3599)  # k=0: newest
                subject = PII_SUBJECT if cat == "app_technical.crash" and k == 0 else f"{cat} question {tid}"
                rows.append({"id": tid, "created_at": created, "updated_at": created, "subject": subject,
                             "status": "open", "extracted_at": now})
                preds.append({"ticket_id": tid, "ticket_updated_at": created, "model_name": "m", "model_version": "1",
                              "category": cat, "parent_category": parent, "feedback_type": "support",
                              "confidence": 0.9, "top3": [], "sentiment": "neutral", "sentiment_score": 0.0,
                              "is_spam": False, "tier": 1, "routing_group": "g", "auto_reply": False,
                              "is_current": True, "predicted_at": now})
                tid += 1
    with get_engine(url).begin() as conn:
        conn.execute(sa.insert(tickets), rows)
        conn.execute(sa.insert(ticket_predictions), preds)
