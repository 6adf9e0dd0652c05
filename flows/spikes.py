"""``spike-detection`` flow: count tickets per category and hour → detect spikes → alert lifecycle → Slack.

Runs inside ``hourly-pipeline`` after write-back (and can run alone, e.g. to re-check an hour). ``as_of`` is the
end of the evaluated hour (UTC; any datetime kind or ISO string, see ``models.windows.as_utc``). By default it is
the end of the clock hour before the run's *scheduled* start (like ``hourly-pipeline``'s window), so a late or
retried run evaluates its own hour; a missed hour is caught up on the next run.
A Slack failure loses nothing (the message stays in ``slack_messages`` and is retried next run), but the run
ends ``Failed`` after committing the alerts, with a message saying how many alerts were not delivered: an alert
nobody received is work not done. A run that finds the lock held ends ``Skipped`` (``tasks.runstate``).
"""

from __future__ import annotations

from datetime import datetime
from uuid import uuid4

from prefect import flow
from prefect.runtime import flow_run

from ticketlens.adapters.settings import get_settings
from ticketlens.models.spike_report import SlackDelivery, SpikeRun, describe_hours
from ticketlens.models.windows import as_utc
from ticketlens.tasks.run_names import spikes_run_name
from ticketlens.tasks.runlock import flow_lock
from ticketlens.tasks.runstate import final_state, skipped_state
from ticketlens.tasks.runtime import hourly_window
from ticketlens.tasks.spikes import detect_spikes_task, publish_spike_report, send_slack_alerts
from ticketlens.tasks.warehouse import prepare_warehouse


@flow(name="spike-detection", log_prints=True, flow_run_name=spikes_run_name)
def spike_detection(as_of: datetime | None = None) -> SpikeRun:
    settings = get_settings()
    run_id = str(flow_run.id or uuid4())
    as_of = hourly_window().end if as_of is None else as_utc(as_of)
    prepare_warehouse(settings.warehouse_url)
    # One evaluator at a time: two overlapping runs would both open (and announce) the same alert.
    with flow_lock(settings, "spike-detection", run_id) as held:
        if not held:
            return skipped_state("spike-detection", held.reason, SpikeRun(skipped=True))
        result = _detect(settings, run_id, as_of)
    return final_state("spike-detection", result, slack_failures(result.slack))


def _detect(settings, run_id: str, as_of: datetime | None) -> SpikeRun:
    summary = detect_spikes_task(settings, run_id, as_of)
    sent = send_slack_alerts(settings)
    publish_spike_report(settings, summary, sent)
    print(f"spike detection for the hour(s) ending {describe_hours(summary.hours)}: {summary.opened} opened, "
          f"{summary.grew} grew, {summary.resolved} resolved; Slack {sent.as_dict()}")
    return SpikeRun.of(summary, sent)


def slack_failures(sent: SlackDelivery) -> dict[str, str]:
    """The failed step, if any Slack message was not delivered (``not_sent`` = no webhook configured: not a failure)."""
    if sent.error:
        return {"slack": "could not read the Slack outbox; queued messages are sent next run"}
    if sent.failed:
        return {"slack": f"{sent.failed} alert message(s) not delivered (kept in slack_messages with the error, "
                         "retried next run)"}
    return {}


if __name__ == "__main__":
    spike_detection()
