"""Load a generated dataset straight into a warehouse (no HTTP, no Prefect) for tests and benchmarks of later
stages (scoring, backfill, CSAT drivers), so they need not run ``ingest`` first.

It reuses the production path — the simulator's derived ticket JSON, ``normalize_tickets`` and the versioned
upsert — so the rows look exactly like what the ingest flow writes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ticketlens.adapters.warehouse.engine import get_engine, migrate
from ticketlens.adapters.warehouse.load import upsert_replace, upsert_versioned
from ticketlens.adapters.warehouse.schema import agents, csat_ratings, groups, tickets
from ticketlens.helpdesk_sim.dataset import Dataset
from ticketlens.helpdesk_sim.server import SimConfig, SimState
from ticketlens.models.records import FieldMap, normalize_ratings, normalize_tickets
from ticketlens.tasks.ingest import dimension_rows, frame_to_rows


def seed_warehouse(url: str, dataset: Dataset, now: int | None = None, chunk: int = 5000) -> int:
    """Migrate ``url`` and load what the export would show at ``now`` (default: the dataset's end); returns the
    number of tickets loaded."""
    migrate(url)
    state = SimState(dataset, SimConfig(clock=now))
    at = datetime.now(UTC)
    fields = FieldMap(dataset.contact_reason_field_id, dataset.confirmed_category_field_id)
    ids = [t.id for t in dataset.tickets if t.created_at <= state.now]
    columns = [c.name for c in tickets.columns]
    with get_engine(url).begin() as conn:
        upsert_replace(conn, groups, dimension_rows("groups", dataset.groups, at))
        upsert_replace(conn, agents, dimension_rows("agents", dataset.agents, at))
        for i in range(0, len(ids), chunk):
            part = ids[i: i + chunk]
            frame = normalize_tickets([state.ticket_json(t, state.now) for t in part],
                                      [state.metric_set(t, state.now) for t in part], fields)
            rows = frame_to_rows(frame, [c for c in columns if c in frame.columns])
            for row in rows:
                row.update(extracted_at=at, run_id="seed")
            upsert_versioned(conn, tickets, rows, version_cols=("updated_at", "generated_timestamp"))
        ratings = [body for _, _, body in state.visible_ratings(state.now)]
        if ratings:
            frame = normalize_ratings(ratings)
            rows = frame_to_rows(frame, [c.name for c in csat_ratings.columns if c.name in frame.columns])
            for row in rows:
                row.update(extracted_at=at, run_id="seed")
            upsert_versioned(conn, csat_ratings, rows)
    return len(ids)
