"""Warehouse schema: SQLAlchemy 2 Core tables, one place, with a constraint naming convention.

Changes go through Alembic (``adapters/warehouse/migrations``); this module is the migration target.
Natural keys are the helpdesk ids, so every load is an idempotent upsert.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator

from ticketlens.models.windows import as_utc

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC timestamps on every backend.

    SQLite has no timezone type, so values are stored as naive UTC and re-tagged as UTC on the way out;
    PostgreSQL stores ``timestamptz``. Naive inputs are rejected rather than guessed.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the warehouse; use UTC-aware datetimes")
        value = as_utc(value)  # also turns pendulum/pandas values into the plain datetime drivers expect
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return as_utc(value)  # naive (SQLite, raw SQL strings) = UTC


JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

tickets = sa.Table(
    "tickets",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("generated_timestamp", sa.BigInteger),
    sa.Column("subject", sa.Text),
    sa.Column("description", sa.Text),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("priority", sa.String(16)),
    sa.Column("type", sa.String(16)),
    sa.Column("tags", JSONType),
    # Zendesk via type (ids mapped to names, unknown values kept; models.zendesk_via).
    sa.Column("channel", sa.String(32)),
    sa.Column("requester_id", sa.BigInteger),
    sa.Column("submitter_id", sa.BigInteger),
    sa.Column("assignee_id", sa.BigInteger),
    sa.Column("group_id", sa.BigInteger),
    sa.Column("organization_id", sa.BigInteger),
    sa.Column("custom_fields", JSONType),
    # Resolved from custom_fields through the ticket_fields dimension (see Settings *_field_title).
    # contact_reason: the reason when exactly one was chosen; contact_reasons: every option chosen (a JSON list,
    # multiselect fields hold several). See models.custom_fields.
    sa.Column("contact_reason", sa.String(128)),
    sa.Column("contact_reasons", JSONType),
    sa.Column("confirmed_category", sa.String(128)),
    # From the export's metric_sets side-load; feed CSAT-driver analysis.
    sa.Column("solved_at", UTCDateTime),
    sa.Column("first_reply_minutes", sa.Integer),
    sa.Column("full_resolution_minutes", sa.Integer),
    sa.Column("reopens", sa.Integer),
    sa.Column("is_deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("deleted_at", UTCDateTime),
    sa.Column("extracted_at", UTCDateTime, nullable=False),
    sa.Column("run_id", sa.String(64)),
)
sa.Index(None, tickets.c.updated_at)
sa.Index(None, tickets.c.created_at)

csat_ratings = sa.Table(
    "csat_ratings",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("ticket_id", sa.BigInteger, nullable=False),
    # Text, not an enum: classic CSAT is good/bad, newer CSAT scales are numeric (1-5).
    sa.Column("score", sa.String(32), nullable=False),
    # Which Zendesk API the row came from: satisfaction_ratings (legacy CSAT; id = its id) or survey_responses
    # (current CSAT; id derived from the response's string id, kept in source_id). See models.csat_api.
    sa.Column("source", sa.String(32), nullable=False, server_default="satisfaction_ratings"),
    sa.Column("source_id", sa.String(64)),
    # The numeric answer on the survey's rating scale (current CSAT), with score = its good/neutral/bad category.
    sa.Column("rating", sa.Integer),
    sa.Column("comment", sa.Text),
    sa.Column("reason", sa.String(128)),
    # The assignee and group at rating time, as Zendesk records them on the rating.
    sa.Column("assignee_id", sa.BigInteger),
    sa.Column("group_id", sa.BigInteger),
    sa.Column("requester_id", sa.BigInteger),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("extracted_at", UTCDateTime, nullable=False),
    sa.Column("run_id", sa.String(64)),
)
sa.Index(None, csat_ratings.c.ticket_id)

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(255)),
    sa.Column("email", sa.String(255)),
    sa.Column("role", sa.String(32)),
    sa.Column("default_group_id", sa.BigInteger),
    sa.Column("active", sa.Boolean),
    sa.Column("created_at", UTCDateTime),
    sa.Column("updated_at", UTCDateTime),
    sa.Column("extracted_at", UTCDateTime, nullable=False),
)

groups = sa.Table(
    "groups",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(255)),
    sa.Column("description", sa.Text),
    sa.Column("is_deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", UTCDateTime),
    sa.Column("updated_at", UTCDateTime),
    sa.Column("extracted_at", UTCDateTime, nullable=False),
)

ticket_fields = sa.Table(
    "ticket_fields",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("title", sa.String(255), nullable=False),
    sa.Column("type", sa.String(32)),
    sa.Column("active", sa.Boolean),
    sa.Column("options", JSONType),
    sa.Column("updated_at", UTCDateTime),
    sa.Column("extracted_at", UTCDateTime, nullable=False),
)

raw_records = sa.Table(
    "raw_records",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("stream", sa.String(32), nullable=False),
    sa.Column("record_id", sa.String(64)),
    # sha256 of the canonical JSON: the same record fetched twice lands once.
    sa.Column("payload_sha256", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("extracted_at", UTCDateTime, nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.UniqueConstraint("stream", "payload_sha256"),
)

extraction_state = sa.Table(
    "extraction_state",
    metadata,
    sa.Column("stream", sa.String(32), primary_key=True),
    # Opaque resume point from the API (after_cursor or links.next); NULL when a stream starts from watermark.
    sa.Column("cursor", sa.Text),
    # Unix seconds: max(generated_timestamp) for tickets, max(updated_at) for ratings.
    sa.Column("watermark", sa.BigInteger),
    sa.Column("pages", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("run_id", sa.String(64)),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("stream", sa.String(32), nullable=False),
    sa.Column("record_id", sa.String(64)),
    sa.Column("payload_sha256", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("failed_checks", JSONType, nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("quarantined_at", UTCDateTime, nullable=False),
    sa.Column("times_seen", sa.Integer, nullable=False, server_default="1"),
    sa.UniqueConstraint("stream", "payload_sha256"),
)

# ----------------------------------------------------------------------------------- scoring + write-back

ticket_predictions = sa.Table(
    "ticket_predictions",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("ticket_id", sa.BigInteger, nullable=False),
    # Which version of the ticket was scored: a re-score of the same version by the same model is a no-op.
    sa.Column("ticket_updated_at", UTCDateTime, nullable=False),
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("category", sa.String(128), nullable=False),
    sa.Column("parent_category", sa.String(64), nullable=False),
    sa.Column("feedback_type", sa.String(32), nullable=False),
    sa.Column("confidence", sa.Float, nullable=False),
    sa.Column("top3", JSONType, nullable=False),
    sa.Column("sentiment", sa.String(16), nullable=False),
    sa.Column("sentiment_score", sa.Float, nullable=False),
    sa.Column("language", sa.String(8)),
    sa.Column("is_spam", sa.Boolean, nullable=False),
    sa.Column("tier", sa.Integer, nullable=False),
    sa.Column("routing_group", sa.String(64), nullable=False),
    sa.Column("auto_reply", sa.Boolean, nullable=False),
    sa.Column("is_current", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("predicted_at", UTCDateTime, nullable=False),
    sa.Column("run_id", sa.String(64)),
    # Fingerprints of the scored ticket version without TicketLens's own tags/fields (models.echoes): a later
    # version with the same input_sha256 keeps this prediction; same content_sha256 too = a write-back echo.
    sa.Column("input_sha256", sa.String(64)),
    sa.Column("content_sha256", sa.String(64)),
    # Made by the real-time triage service (services/triage) rather than a scheduled run (migration 0012).
    sa.Column("realtime", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("ticket_id", "model_name", "model_version", "ticket_updated_at"),
    sa.Index("ix_ticket_predictions_current", "ticket_id", "is_current"),
)

writeback_state = sa.Table(
    "writeback_state",
    metadata,
    sa.Column("ticket_id", sa.BigInteger, primary_key=True, autoincrement=False),
    # What the helpdesk should carry (desired) and what it is known to carry (pushed).
    sa.Column("desired_tags", JSONType, nullable=False),
    sa.Column("desired_fields", JSONType),  # [{"id": custom field id, "value": ...}] when fields are configured
    sa.Column("desired_sha256", sa.String(64), nullable=False),
    sa.Column("pushed_tags", JSONType),
    sa.Column("pushed_sha256", sa.String(64)),
    sa.Column("status", sa.String(16), nullable=False),  # pending | pushing | submitted | done | failed
    sa.Column("job_id", sa.String(64)),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

writeback_jobs = sa.Table(
    "writeback_jobs",
    metadata,
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("submitted_at", UTCDateTime, nullable=False),
    sa.Column("ticket_ids", JSONType, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("results", JSONType),
    sa.Column("checked_at", UTCDateTime),
    sa.Column("run_id", sa.String(64)),
)

backfill_partitions = sa.Table(
    "backfill_partitions",
    metadata,
    sa.Column("model_name", sa.String(128), primary_key=True),
    sa.Column("model_version", sa.String(32), primary_key=True),
    sa.Column("partition_key", sa.String(32), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # done
    sa.Column("tickets", sa.Integer, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=False),
    sa.Column("run_id", sa.String(64)),
)

# ------------------------------------------------------------------------------------ spike alerts + Slack

spike_alerts = sa.Table(
    "spike_alerts",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("series", sa.String(128), nullable=False),  # a leaf category key or a parent category key
    sa.Column("kind", sa.String(8), nullable=False),  # leaf | parent
    sa.Column("parent_category", sa.String(64)),
    sa.Column("started_at", UTCDateTime, nullable=False),  # start of the first flagged hour
    sa.Column("state", sa.String(16), nullable=False),  # open | ongoing | resolved
    sa.Column("last_spike_at", UTCDateTime, nullable=False),
    sa.Column("resolved_at", UTCDateTime),
    # The latest flagged hour's numbers, the peak, and the hourly count the last message announced.
    sa.Column("observed", sa.Integer, nullable=False),
    sa.Column("expected", sa.Float, nullable=False),
    sa.Column("ratio", sa.Float, nullable=False),
    sa.Column("p_value", sa.Float, nullable=False),
    sa.Column("peak_observed", sa.Integer, nullable=False),
    sa.Column("notified_observed", sa.Integer, nullable=False),
    sa.Column("hours_flagged", sa.Integer, nullable=False),
    sa.Column("chart_path", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.UniqueConstraint("series", "started_at"),
    sa.Index("ix_spike_alerts_state", "state"),
)

slack_messages = sa.Table(
    "slack_messages",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("alert_id", sa.BigInteger, sa.ForeignKey("spike_alerts.id"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # opened | grew | resolved
    sa.Column("hour", UTCDateTime, nullable=False),  # the evaluated hour that produced it
    sa.Column("text", sa.Text, nullable=False),  # fallback text (notifications); PII-masked
    sa.Column("blocks", JSONType, nullable=False),  # Block Kit
    sa.Column("status", sa.String(16), nullable=False),  # pending | sent | failed | not_sent
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime),
    sa.UniqueConstraint("alert_id", "kind", "hour"),
    sa.Index("ix_slack_messages_status", "status"),
)

# ------------------------------------------------------------------------- CSAT drivers and ops reports
# One row per (report period, segment): a re-run of the same period replaces its rows (idempotent upsert, and
# segments that no longer appear are removed), different periods accumulate as history.


def _period_columns() -> list[sa.Column]:
    return [sa.Column("period_start", UTCDateTime, primary_key=True),
            sa.Column("period_end", UTCDateTime, primary_key=True)]


def _run_columns() -> list[sa.Column]:
    return [sa.Column("run_id", sa.String(64)), sa.Column("computed_at", UTCDateTime, nullable=False)]


csat_drivers = sa.Table(
    "csat_drivers",
    metadata,
    *_period_columns(),
    # category | team | agent | channel | sentiment | resolution_time | first_reply_time | reopened
    sa.Column("factor", sa.String(32), primary_key=True),
    sa.Column("level", sa.String(128), primary_key=True),
    sa.Column("label", sa.String(255)),
    sa.Column("ratings", sa.Integer, nullable=False),
    sa.Column("bad", sa.Integer, nullable=False),
    sa.Column("raw_rate", sa.Float),
    sa.Column("wilson_low", sa.Float),
    sa.Column("wilson_high", sa.Float),
    sa.Column("shrunk_rate", sa.Float),  # empirical-Bayes posterior mean
    sa.Column("shrunk_low", sa.Float),
    sa.Column("shrunk_high", sa.Float),
    # Adjusted effect from the logistic regression (NULL for segments too small to be tested).
    sa.Column("odds_ratio", sa.Float),
    sa.Column("or_low", sa.Float),
    sa.Column("or_high", sa.Float),
    sa.Column("p_value", sa.Float),
    sa.Column("q_value", sa.Float),
    sa.Column("is_driver", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("direction", sa.String(8)),
    sa.Column("excess_bad", sa.Float),
    sa.Column("driver_rank", sa.Integer),
    sa.Column("top_reason", sa.String(64)),
    *_run_columns(),
)

csat_reason_counts = sa.Table(
    "csat_reason_counts",
    metadata,
    *_period_columns(),
    sa.Column("scope", sa.String(160), primary_key=True),  # "all" or "<factor>:<level>" of a top driver
    sa.Column("theme", sa.String(64), primary_key=True),
    sa.Column("comments", sa.Integer, nullable=False),
    sa.Column("share", sa.Float, nullable=False),
    *_run_columns(),
)

csat_weekly_trends = sa.Table(
    "csat_weekly_trends",
    metadata,
    *_period_columns(),
    sa.Column("factor", sa.String(32), primary_key=True),
    sa.Column("level", sa.String(128), primary_key=True),
    sa.Column("week_start", UTCDateTime, primary_key=True),
    sa.Column("label", sa.String(255)),
    sa.Column("ratings", sa.Integer, nullable=False),
    sa.Column("bad", sa.Integer, nullable=False),
    sa.Column("bad_rate", sa.Float, nullable=False),
    *_run_columns(),
)

self_selection_options = sa.Table(
    "self_selection_options",
    metadata,
    *_period_columns(),
    sa.Column("selected", sa.String(128), primary_key=True),
    sa.Column("tickets", sa.Integer, nullable=False),
    sa.Column("matched_share", sa.Float, nullable=False),
    sa.Column("top_actual", sa.String(128)),
    sa.Column("top_actual_share", sa.Float),
    sa.Column("routed_elsewhere", sa.Integer, nullable=False),
    sa.Column("suggestion", sa.Text),
    *_run_columns(),
)

auto_reply_candidates = sa.Table(
    "auto_reply_candidates",
    metadata,
    *_period_columns(),
    sa.Column("category", sa.String(128), primary_key=True),
    sa.Column("tickets", sa.Integer, nullable=False),
    sa.Column("mean_confidence", sa.Float, nullable=False),
    sa.Column("high_confidence_share", sa.Float, nullable=False),
    sa.Column("complexity", sa.String(16), nullable=False),
    sa.Column("ratings", sa.Integer, nullable=False),
    sa.Column("shrunk_bad_rate", sa.Float),
    sa.Column("already_auto_reply", sa.Boolean, nullable=False),
    sa.Column("is_candidate", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("deflectable_tickets", sa.Integer, nullable=False),
    *_run_columns(),
)

run_locks = sa.Table(
    "run_locks",
    metadata,
    # One row per lock name ("ingest", "backfill", ...): who holds it and until when (renewed by a heartbeat).
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(255), nullable=False),  # host:pid:run id
    sa.Column("acquired_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

triage_inbox = sa.Table(
    "triage_inbox",
    metadata,
    # Zendesk "ticket created" webhooks accepted by the triage service (services/triage), committed before the
    # service answers 2xx. (ticket_id, event_key) is the delivery's natural key: a retried or duplicated
    # delivery hits the unique constraint and changes nothing.
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("ticket_id", sa.BigInteger, nullable=False),
    sa.Column("event_key", sa.String(128), nullable=False),  # the event id, else "ticket.created:<created_at>"
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("ticket_created_at", UTCDateTime),
    sa.Column("ticket", JSONType),  # the ticket fields the body carried (None: id only, fetched when scored)
    sa.Column("status", sa.String(16), nullable=False),  # queued | scored | skipped | failed
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("processed_at", UTCDateTime),
    sa.Column("model_version", sa.String(32)),
    sa.Column("last_error", sa.Text),
    sa.UniqueConstraint("ticket_id", "event_key"),
    sa.Index("ix_triage_inbox_status", "status", "id"),
)
