"""The warehouse step every flow starts with: reachable, and at the current schema (Alembic)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from ticketlens.adapters.warehouse import engine


@task(name="prepare-warehouse", cache_policy=NO_CACHE)
def prepare_warehouse(warehouse_url: str) -> None:
    """Fail early with what to fix when the warehouse is unreachable; apply pending migrations (a no-op when
    the schema is current). A task, so that the flow run shows the step and its error."""
    engine.prepare_warehouse(warehouse_url)
