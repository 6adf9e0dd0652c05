"""Settings of the triage service (env prefix ``TICKETLENS_TRIAGE_``), beside the shared ``Settings``.

Kept in their own class so the shared settings module can be restructured independently; the service reads
both (warehouse, helpdesk, MLflow and write-back settings come from ``ticketlens.adapters.settings``).
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class TriageSettings(BaseSettings):
    """Configuration of ``ticketlens-triage`` and of the simulator's webhook sender."""

    model_config = SettingsConfigDict(env_prefix="TICKETLENS_TRIAGE_", env_file=".env", env_file_encoding="utf-8",
                                      extra="ignore")

    webhook_secret: SecretStr | None = Field(
        None, description="Zendesk webhook signing secret (Admin Center > Webhooks > the webhook > Reveal secret). "
        "Required: without it every webhook is rejected (401).")
    replay_window_seconds: float = Field(
        300.0, gt=0, description="Reject a webhook whose X-Zendesk-Webhook-Signature-Timestamp is further than this "
        "from now (either way): a captured request cannot be replayed later.")
    max_body_bytes: int = Field(
        262_144, gt=0, description="Largest webhook body accepted (bytes, read with this cap); larger → 413.")
    batch_size: int = Field(100, gt=0, le=100, description="Tickets per micro-batch (update_many takes ≤ 100).")
    batch_interval_seconds: float = Field(
        1.0, gt=0, description="A partial micro-batch is scored and pushed after at most this long.")
    queue_size: int = Field(
        5000, gt=0, description="Accepted-but-unscored webhooks held at most; when full the intake answers 503 with "
        "Retry-After (Zendesk retries) instead of storing more.")
    retry_after_seconds: int = Field(5, gt=0, description="Retry-After sent with a 503 (queue full, warehouse down).")
    model_poll_seconds: float = Field(
        30.0, gt=0, description="How often the champion alias is checked; a moved alias reloads the model.")
    job_poll_seconds: float = Field(0.5, gt=0, description="How often open write-back jobs are polled.")
    host: str = Field("127.0.0.1", description="Bind address of the service.")
    port: int = Field(8780, gt=0, lt=65536, description="Port of the service.")
    allow_root: bool = Field(
        False, description="Allow running as root (uid 0). Off: the service refuses to start as root.")
    simulator_webhook_url: str | None = Field(
        None, description="Where the helpdesk simulator sends its signed 'ticket created' webhooks, e.g. "
        "http://127.0.0.1:8780/webhooks/zendesk/ticket-created (empty: the simulator sends none).")
    simulator_webhook_body: str = Field(
        "full", description="Body the simulator sends: 'full' (ticket fields, like an event subscription) or "
        "'id' (only the ticket id, like a minimal trigger body; the service fetches the ticket).")
