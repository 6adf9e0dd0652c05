"""Prometheus metrics of the triage service, in a registry per service instance (tests run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.25, 0.5, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 30, 60, 120, 300, 600)


class TriageMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter("triage_webhooks_received", "Webhooks accepted and committed to the inbox "
                                "(duplicates counted separately).", registry=r)
        self.duplicates = Counter("triage_webhooks_duplicate", "Deliveries already in the inbox (acknowledged, "
                                  "nothing changed).", registry=r)
        self.rejected = Counter("triage_webhooks_rejected", "Webhooks refused, by reason.", ["reason"], registry=r)
        self.scored = Counter("triage_tickets_scored", "Tickets scored by the service.", registry=r)
        self.skipped = Counter("triage_tickets_skipped", "Inbox tickets not scored, by reason.", ["reason"],
                               registry=r)
        self.pushed = Counter("triage_tickets_pushed", "Tickets submitted to the helpdesk with update_many.",
                              registry=r)
        self.confirmed = Counter("triage_tickets_confirmed", "Tickets whose write-back job completed.", registry=r)
        self.push_failed = Counter("triage_tickets_push_failed", "Tickets whose push failed (the hourly run retries "
                                   "them).", registry=r)
        self.batches = Counter("triage_batches_flushed", "update_many micro-batches sent.", registry=r)
        self.queue_depth = Gauge("triage_queue_depth", "Accepted webhooks not yet scored.", registry=r)
        self.pending_push = Gauge("triage_pending_push", "Scored tickets waiting for their micro-batch.", registry=r)
        self.model_version = Gauge("triage_model_version", "Champion version loaded (0: none).", registry=r)
        self.latency = Histogram("triage_created_to_tagged_seconds", "Ticket creation → write-back confirmed.",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.intake_seconds = Histogram("triage_intake_seconds", "Webhook request handling time.",
                                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=r)
