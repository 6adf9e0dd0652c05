"""Run a flow the way the Prefect scheduler does: a Scheduled flow run with a slot time and no parameters.

``client.create_flow_run(state=Scheduled(...))`` stores the run on the (test) API; the flow run that comes back
and the one the engine reads carry ``expected_start_time`` as the exact type Prefect 3.8's runtime hands to
``prefect.runtime.flow_run.scheduled_start_time`` (a pendulum ``DateTime`` on Python < 3.13). Calling the flow
function directly gives it "now" instead and hides every bug of the scheduled path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


def run_as_scheduled(flow_obj, scheduled: datetime, parameters: dict[str, Any] | None = None):
    """Create a scheduled run of ``flow_obj`` at ``scheduled`` and execute it here; returns (flow_run, final state).

    The state is returned, never raised, so tests can assert on its type, name and message.
    """
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow
    from prefect.states import Scheduled

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(flow_obj, state=Scheduled(scheduled_time=scheduled),
                                     parameters=parameters or {})
    state = run_flow(flow_obj, flow_run=run, parameters=parameters or {}, return_type="state")
    with get_client(sync_client=True) as client:
        stored = client.read_flow_run(run.id)
    return stored, state


def runtime_start_type() -> type:
    """The class ``prefect.runtime.flow_run.scheduled_start_time`` returns for a run read from the API."""
    from prefect.client.schemas.objects import FlowRun

    run = FlowRun.model_validate({"flow_id": "00000000-0000-0000-0000-000000000000",
                                  "expected_start_time": "2026-12-01T10:05:00+00:00"})
    return type(run.expected_start_time)
