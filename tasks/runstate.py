"""Final states of TicketLens flow runs: what a user scanning the Prefect runs page must see at a glance.

Prefect marks a flow run ``Completed`` whenever its function returns, so a run that swallowed a failed step
(spike detection, a write-back the helpdesk refused, a Slack alert that was not delivered) or that did nothing
because another run held the warehouse run lock looked exactly like a run that did all its work. Flows return one
of these states instead (Prefect uses a returned, manually created ``State`` as the run's final state):

- ``Completed``: every step did its work.
- ``Failed`` (type FAILED, name ``Failed``): the run committed what succeeded, but at least one step did not do
  its work; the message names each failed step and what happens next (``spike-detection: ...; write-back: ...``).
  The name stays ``Failed`` so that automations on ``prefect.flow-run.Failed`` fire for it; the flow's result
  (what was done) is kept in the state's data.
- ``Skipped`` (type CANCELLED, name ``Skipped``): another run of the same flow held the run lock, nothing was
  done. CANCELLED is terminal, never retried, grey in the UI (not green) and emits the event
  ``prefect.flow-run.Skipped``, which automations can match on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect.states import Cancelled, Failed, State

SKIPPED = "Skipped"
_PREFIX = "Did not finish: "
_SUFFIX = " — everything else this run did is committed."


class RunNotCompleteError(Exception):
    """The data of a Failed/Skipped final state: a Python caller of the flow gets it raised, with ``.result``."""

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result

    def __reduce__(self):  # picklable with its result (Prefect may persist state data)
        return type(self), (str(self), self.result)


class StepsFailedError(RunNotCompleteError):
    """Some steps of the run did not do their work; the message names them."""


class RunSkippedError(RunNotCompleteError):
    """Another run held the run lock; this run did nothing."""


def skipped_state(flow_name: str, reason: str, result: Any) -> State:
    """The final state of a run that exited because another run holds its lock (``reason`` names the holder).

    ``result``: what the flow returns when skipped (a mapping is copied; a result dataclass is kept as it is).
    """
    message = f"{flow_name} skipped, nothing done: {reason or 'another run holds the run lock'}"
    data = dict(result) if isinstance(result, Mapping) else result
    return Cancelled(name=SKIPPED, message=message, data=RunSkippedError(message, data))


def final_state(flow_name: str, result: Any, failures: Mapping[str, str]) -> Any:
    """``result`` itself (→ Completed) when nothing failed; otherwise a Failed state naming every failed step."""
    if not failures:
        return result
    message = _PREFIX + "; ".join(f"{step}: {why}" for step, why in failures.items()) + _SUFFIX
    return Failed(message=message, data=StepsFailedError(f"{flow_name}: {message}", result))


def is_skipped(state: State) -> bool:
    return state.is_cancelled() and state.name == SKIPPED


def subflow_outcome(state: State) -> tuple[Any, str | None]:
    """(result, failure) of a subflow called with ``return_state=True``.

    A completed or skipped subflow gives its result and no failure; a failed, crashed or cancelled one gives the
    result it kept (a state from ``final_state`` keeps it) and its message as the failure.
    """
    if state.is_completed():
        return state.result(), None
    try:
        data = state.result(raise_on_failure=False)
    except Exception:  # the result could not be read back (e.g. a crash before anything was stored)
        data = None
    result = data.result if isinstance(data, RunNotCompleteError) else None
    if is_skipped(state):
        return result, None
    message = state.message or state.name
    if message.startswith(_PREFIX) and message.endswith(_SUFFIX):
        message = message[len(_PREFIX):-len(_SUFFIX)]
    return result, message
