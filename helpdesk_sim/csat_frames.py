"""The CSAT-driver model's input built straight from a generated dataset (no warehouse, no HTTP).

For benchmarks and unit tests of ``models.csat_drivers``: one row per rating with the columns the warehouse
join produces (``tasks.csat.load_rating_frame``). The "predicted" category here is the generator's true category
and sentiment is left unknown — the flow test covers the real join over ingested and scored tickets.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from ticketlens.helpdesk_sim.dataset import Dataset


def rating_frame(dataset: Dataset) -> pd.DataFrame:
    rows = []
    for t in dataset.tickets:
        r = t.rating
        if r is None:
            continue
        solved = [ts for ts, status in t.events if status == "solved"]
        rows.append({
            "rating_id": r.id, "ticket_id": t.id, "score": r.score, "comment": r.comment, "reason": r.reason,
            "rated_at": datetime.fromtimestamp(r.created_at, UTC), "assignee_id": r.assignee_id,
            "group_id": r.group_id, "channel": t.channel, "category": t.true_category, "sentiment": None,
            "contact_reason": t.contact_reason, "first_reply_minutes": t.first_reply_minutes,
            "full_resolution_minutes": t.full_resolution_minutes, "reopens": max(0, len(solved) - 1),
        })
    return pd.DataFrame(rows)


def agent_names(dataset: Dataset) -> dict[int, str]:
    return {a["id"]: a["name"] for a in dataset.agents}


def group_names(dataset: Dataset) -> dict[int, str]:
    return {g["id"]: g["name"] for g in dataset.groups}
