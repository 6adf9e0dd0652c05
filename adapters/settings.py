"""The one settings object for TicketLens.

Every knob a deployment may turn lives here, read from the environment (prefix ``TICKETLENS_``) or a
``.env`` file. Secrets are ``SecretStr`` so they never print in logs, reprs, artifacts or MLflow params.
Nothing here connects to anything: building ``Settings()`` is free of side effects.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, ClassVar, Literal, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from ticketlens.models.windows import as_utc

if TYPE_CHECKING:  # the builders import them when called: settings stay cheap to import (no pandas, scipy)
    from ticketlens.models.csat_drivers import DriverConfig
    from ticketlens.models.ops_reports import OpsConfig
    from ticketlens.models.routing import RoutingPolicy
    from ticketlens.models.spikes import LifecycleParams, SpikeParams


class SettingsError(ValueError):
    """Raised when the environment holds an invalid setting; the message names the variable."""


class SettingsGroup(BaseModel):
    """Settings that one consumer reads together, nested in ``Settings`` (``settings.spike.min_count``).

    Each field keeps the flat name it had before the grouping, ``flat_prefix`` + field name: the environment
    variable ``TICKETLENS_SPIKE_MIN_COUNT``, the ``.env`` line and the keyword ``Settings(spike_min_count=...)``
    all still set ``settings.spike.min_count``. The defaults live here and nowhere else: the ``models/``
    dataclasses the groups build (``SpikeParams``, ``RoutingPolicy``, ``OpsConfig``, ``DriverConfig``) are plain
    typed containers without them.
    """

    model_config = ConfigDict(extra="forbid")
    flat_prefix: ClassVar[str] = ""


class SpikeSettings(SettingsGroup):
    """Spike detector and alert lifecycle (flow spike-detection), ``TICKETLENS_SPIKE_*``."""

    flat_prefix: ClassVar[str] = "spike_"

    baseline_weeks: int = Field(4, ge=1, le=12, description="Trailing weeks of the hour-of-week baseline.")
    min_weeks_for_weekly: int = Field(
        2, ge=1, description="Fewer weeks of history → hour-of-day profile of the last 7 days instead."
    )
    level_hours: int = Field(72, ge=1, description="Window of the recent-level correction.")
    level_prior: float = Field(10.0, gt=0, description="Pseudo-tickets shrinking the level towards 1.")
    share_prior: float = Field(
        200.0, ge=0, description="Pseudo-tickets shrinking a category's hour-of-week share to its overall share."
    )
    dispersion_hours: int = Field(
        336, ge=24, description="Hours of one-step-ahead residuals for each category's NB dispersion (all hours)."
    )
    dispersion_prior: float = Field(
        100.0, ge=0, description="Shrinkage of a category's dispersion to the pooled one (pseudo Σμ² at 1 ticket/h)."
    )
    dispersion_clip: float = Field(
        5.0, gt=0, description="Counts above expected + N SD enter the dispersion estimate capped there (robustness)."
    )
    calibration_level: float = Field(
        0.01, gt=0, lt=0.5, description="Dispersions are scaled so the last week's PIT share below this equals it."
    )
    min_calibration: float = Field(0.5, gt=0, description="Lower bound of that calibration factor κ.")
    max_calibration: float = Field(8.0, gt=0, description="Upper bound of that calibration factor κ.")
    min_dispersion: float = Field(0.02, ge=0, description="Floor of the NB dispersion α.")
    max_dispersion: float = Field(2.0, gt=0, description="Ceiling of the NB dispersion α.")
    default_dispersion: float = Field(
        0.2, ge=0, description="NB dispersion used until there is enough volume to estimate it."
    )
    min_expected: float = Field(0.2, gt=0, description="Floor of the expected count (sparse categories).")
    fdr: float = Field(0.002, gt=0, lt=1, description="Benjamini-Hochberg false-discovery rate per hour.")
    alert_rate: float = Field(
        5e-4, ge=0, lt=1,
        description="A series also pages when its own p-value is at most this, whatever BH says: the false-alert "
                    "budget per category-hour (0 = BH alone). Off while the calibration lacks a week of history.")
    min_count: int = Field(5, ge=1, description="Fewer tickets than this in the hour never page.")
    min_ratio: float = Field(2.0, ge=1, description="Observed/expected below this never pages.")
    window_hours: int = Field(3, ge=1, le=12, description="Also test sums over the last 2..N hours.")
    min_history_hours: int = Field(72, ge=0, description="No paging before this much data exists.")
    min_category_history_hours: int = Field(
        48, ge=0, description="A category first seen more recently is 'new' and needs new_category_min_count."
    )
    new_category_min_count: int = Field(20, ge=1, description="Tickets/hour for a new category to page.")
    growth_factor: float = Field(
        2.0, gt=1, description="An ongoing alert is announced again when its hourly count grows this much."
    )
    resolve_after_hours: int = Field(2, ge=1, description="Quiet hours before an alert resolves.")
    max_catchup_hours: int = Field(
        6, ge=1, description="Hours evaluated in one run after the pipeline missed some (oldest first)."
    )

    def params(self) -> SpikeParams:
        """The detector's thresholds (every ``SpikeParams`` field is a field of this group)."""
        from ticketlens.models.spikes import SpikeParams

        return SpikeParams(**self.model_dump(include=set(SpikeParams.__dataclass_fields__)))

    def lifecycle(self) -> LifecycleParams:
        from ticketlens.models.spikes import LifecycleParams

        return LifecycleParams(growth_factor=self.growth_factor, resolve_after_hours=self.resolve_after_hours)


class RoutingSettings(SettingsGroup):
    """Confidence thresholds and queues that route a scored ticket (hourly scoring, backfill, training reports)."""

    triage_threshold: float = Field(
        0.5, ge=0, le=1, description="Below this confidence a ticket goes to the general triage queue."
    )
    auto_reply_threshold: float = Field(0.8, ge=0, le=1, description="Minimum confidence for auto-reply.")
    language_queues: dict[str, str] = Field(
        default_factory=dict, description='Language → routing group, e.g. {"ja": "japanese_queue"} (JSON).'
    )
    auto_route_threshold: float = Field(
        0.6, ge=0, le=1, description="Confidence at or above which a ticket is routed without triage."
    )

    def policy(self) -> RoutingPolicy:
        from ticketlens.models.routing import RoutingPolicy

        return RoutingPolicy(triage_threshold=self.triage_threshold, auto_reply_threshold=self.auto_reply_threshold,
                             language_queues=dict(self.language_queues))


class CsatSettings(SettingsGroup):
    """CSAT-driver analysis (flow csat-drivers), ``TICKETLENS_CSAT_*``."""

    flat_prefix: ClassVar[str] = "csat_"

    window_days: int = Field(
        90, gt=0, description="Default analysis window: the N days before the run's scheduled start."
    )
    fdr: float = Field(
        0.05, gt=0, lt=1,
        description="False discovery rate over one family: every tested level of every factor (agents, teams, "
        "categories, channels, sentiments) and each continuous effect; the per-factor tests are only shown.",
    )
    fdr_method: Literal["by", "bh"] = Field(
        "by", description="by = Benjamini-Yekutieli (FDR proven under any dependence); bh = Benjamini-Hochberg."
    )
    min_segment_ratings: int = Field(
        20, gt=0, description="Segments with fewer ratings are pooled in the model and never reported as drivers."
    )
    top_drivers: int = Field(10, gt=0, description="Drivers listed in reports; the top 5 get weekly trends.")
    reason_min_confidence: float = Field(
        0.3, ge=0, le=1, description="Below this the reason classifier's theme for a comment is counted as 'other'."
    )

    def drivers(self) -> DriverConfig:
        from ticketlens.models.csat_drivers import DriverConfig

        return DriverConfig(fdr=self.fdr, method=self.fdr_method, min_segment_ratings=self.min_segment_ratings)


class OpsSettings(SettingsGroup):
    """Ops reports of flow csat-drivers: the contact-reason menu and auto-reply candidates."""

    self_selection_min_tickets: int = Field(
        20, gt=0, description="Contact-reason options with fewer tickets are listed but not judged."
    )
    auto_reply_min_tickets: int = Field(30, gt=0, description="Minimum volume for an auto-reply candidate.")
    auto_reply_min_high_confidence_share: float = Field(
        0.6, ge=0, le=1, description="Share of a category's tickets at/above the auto-reply confidence needed."
    )

    def config(self, routing: RoutingSettings) -> OpsConfig:
        """The reports judge predictions with the routing thresholds the scoring flow applies."""
        from ticketlens.models.ops_reports import OpsConfig

        return OpsConfig(min_confidence=routing.auto_route_threshold, min_option_tickets=self.self_selection_min_tickets,
                         auto_reply_threshold=routing.auto_reply_threshold,
                         auto_reply_min_tickets=self.auto_reply_min_tickets,
                         auto_reply_min_high_confidence_share=self.auto_reply_min_high_confidence_share)



class Settings(BaseSettings):
    """Runtime configuration. Defaults run the demo against the local simulator with a SQLite warehouse."""

    model_config = SettingsConfigDict(
        env_prefix="TICKETLENS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- warehouse -------------------------------------------------------------------------------------
    warehouse_url: str = Field(
        "sqlite:///ticketlens.db",
        description="SQLAlchemy URL of the warehouse; postgresql+psycopg://... in production.",
    )

    # --- helpdesk (Zendesk REST API contract) --------------------------------------------------------
    helpdesk_base_url: str = Field(
        "http://127.0.0.1:8765", description="Base URL, e.g. https://yourcompany.zendesk.com"
    )
    helpdesk_email: str = Field("demo@example.com", description="Agent e-mail for API-token auth.")
    helpdesk_api_token: SecretStr | None = Field(
        SecretStr("demo-token"), description="Zendesk API token (basic auth as email/token:TOKEN)."
    )
    helpdesk_oauth_token: SecretStr | None = Field(
        None, description="OAuth bearer token; used instead of the API token when set."
    )
    helpdesk_requests_per_minute: int = Field(
        400, gt=0, description="Client-side cap for ordinary endpoints (Zendesk plans allow 200-2500)."
    )
    helpdesk_export_requests_per_minute: int = Field(
        10, gt=0, description="Client-side cap for incremental exports (Zendesk allows 10/min by default)."
    )
    helpdesk_timeout_seconds: float = Field(
        30.0, gt=0, description="Timeout of one helpdesk HTTP request.")
    helpdesk_max_retries: int = Field(6, ge=0, description="Retries for 429, 5xx, timeouts, broken pages.")
    helpdesk_backoff_base_seconds: float = Field(
        1.0, ge=0, description="First retry waits up to this; each further retry doubles it (jittered: 10-100 % of the bound).")
    helpdesk_backoff_max_seconds: float = Field(
        60.0, ge=0, description="Ceiling of one retry wait without a Retry-After header.")
    helpdesk_max_retry_after_seconds: float = Field(
        600.0, gt=0, description="Longest Retry-After honoured before giving up on a request."
    )
    helpdesk_max_response_mb: float = Field(
        64.0, gt=0, description="Largest helpdesk response body accepted, after decompression (MiB)."
    )
    helpdesk_csat_page_size: int = Field(
        100, gt=0, le=100, description="Ratings per page of the satisfaction-rating and survey-response APIs (at most 100).")
    helpdesk_csat_api: Literal["auto", "satisfaction_ratings", "survey_responses", "both"] = Field(
        "auto", description="CSAT API(s) to read: auto (both; one the account lacks is skipped and the ingest summary "
        "says which is used), satisfaction_ratings (legacy), survey_responses (current CSAT), both (strict).",
    )
    csat_survey_lookback_hours: int = Field(
        168, ge=0, description="Survey responses are re-read from this long before the last one seen: a response is "
        "created when the survey is offered and answered (or changed) later, until it expires.",
    )
    helpdesk_support_type_scope: str | None = Field(
        "all", description="support_type_scope sent with the incremental export ('all' includes tickets handled by "
        "AI agents); empty = not sent.",
    )
    helpdesk_export_page_size: int = Field(
        1000, gt=0, le=1000, description="Tickets per incremental-export page (Zendesk allows up to 1000)."
    )

    # --- custom ticket fields (matched on the field title from /api/v2/ticket_fields) ------------------
    contact_reason_field_title: str = Field(
        "Contact reason", description="Ticket field holding the user's self-selected contact reason."
    )
    confirmed_category_field_title: str = Field(
        "Confirmed category", description="Ticket field holding the agent-confirmed category."
    )

    # --- ingest ------------------------------------------------------------------------------------------
    ingest_initial_start_time: datetime = Field(
        datetime(2000, 1, 1, tzinfo=UTC),
        description="Where a stream with no stored cursor starts (UTC).",
    )
    ingest_max_pages_per_run: int = Field(
        500, gt=0, description="Page budget per stream per run; the next run continues from the stored cursor."
    )
    ingest_future_tolerance_seconds: int = Field(
        600, ge=0, description="Rows stamped later than the run's clock plus this are quarantined (clock skew allowance)."
    )
    validation_max_failure_share: float = Field(
        0.2, ge=0, le=1, description="A page with a larger share of invalid rows fails the run."
    )
    max_text_chars: int = Field(
        1_000_000, gt=0, description="Longest subject/description accepted; longer rows are quarantined."
    )

    # --- training and model registry (MLflow) ------------------------------------------------------------
    mlflow_tracking_uri: str = Field(
        "sqlite:///mlflow.db", description="MLflow tracking/registry URI: a sqlite:/// file or http://server:5000."
    )
    mlflow_artifact_location: str = Field(
        "mlartifacts", description="Artifact root for the experiment when TicketLens creates it (path or URI)."
    )
    mlflow_experiment: str = Field("ticket-category", description="MLflow experiment for training runs.")
    model_name: str = Field("ticket-category-classifier", description="Registered model name.")
    sentiment_model_name: str = Field(
        "ticket-sentiment", description="Registered name of the CSAT-trained sentiment model (when it beats VADER)."
    )
    classifier_profile: Literal["cascade", "minilm", "static", "tfidf"] = Field(
        "cascade", description="Named classifier configuration nightly-retrain trains (models.classifier.PROFILES)."
    )
    training_holdout_days: int = Field(7, gt=0, description="The most recent N days are the holdout.")
    training_min_holdout_rows: int = Field(
        200, gt=0, description="Fewer holdout rows than this → stratified random holdout instead; fewer tickets "
        "unseen by the champion than this → no promotion (too small to decide)."
    )
    training_min_examples_per_class: int = Field(
        20, gt=0, description="Classes with fewer training examples are reported and excluded."
    )
    training_max_rows: int = Field(500_000, gt=0, description="Train on at most the N most recent labelled rows.")
    promotion_metric: str = Field("macro_f1", description="Holdout metric that decides promotion.")
    promotion_margin: float = Field(
        0.005, ge=0, description="The challenger must beat the champion by at least this much."
    )

    # --- scoring, routing and write-back ------------------------------------------------------------------
    routing: RoutingSettings = Field(
        default_factory=RoutingSettings, description="Routing thresholds and language queues."
    )
    backfill_workers: int = Field(2, gt=0, description="Partitions scored in parallel (threads or Dask workers).")
    backfill_dask_address: str | None = Field(
        None, description="Run backfill partitions on Dask: a scheduler address (tcp://host:8786) or 'local'."
    )
    backfill_after_promotion: bool = Field(True, description="nightly-retrain re-scores history after a promotion.")
    writeback_tag_prefix: str = Field("tl_", description="Prefix of every tag TicketLens adds to tickets.")
    writeback_custom_fields: dict[str, int] = Field(
        default_factory=dict,
        description='Also set custom fields: JSON map of category/sentiment/tier/routing_group/auto_reply → field id.',
    )
    scoring_chunk_size: int = Field(
        5000, gt=0, description="Tickets scored per transaction (hourly scoring and each backfill partition)."
    )
    scoring_workers_min_rows: int = Field(
        2000, ge=0, description="Batches of at least this many tickets (backfill chunks) score sentiment and detect "
        "languages in two worker processes beside the classifier; 0 = always in-process. Starting them costs "
        "~1-2 s once per process.",
    )
    writeback_dry_run: bool = Field(False, description="Plan write-back and log it, but push nothing.")
    writeback_job_polls: int = Field(5, ge=0, description="Job-status polls per run before leaving it for later.")
    writeback_poll_interval_seconds: float = Field(
        1.0, ge=0, description="Pause between two job-status polls within one run.")
    writeback_job_deadline_seconds: float = Field(
        3600.0, gt=0, description="A write-back job still open this long after submission is settled by reading its "
        "tickets back (show_many); so is one whose status Zendesk already dropped (404, after about an hour).",
    )

    # --- spike detection and Slack alerts ------------------------------------------------------------------
    slack_webhook_url: SecretStr | None = Field(
        None, description="Slack incoming-webhook URL; unset → alerts are stored and logged, not sent."
    )
    slack_timeout_seconds: int = Field(10, gt=0, description="Timeout of one Slack webhook request.")
    reports_dir: str = Field("var/reports", description="Where report charts (PNG: spikes, CSAT drivers) are written.")
    reports_base_url: str | None = Field(
        None, description="URL at which the reports dir is served (make up: http://127.0.0.1:$REPORTS_PORT): "
                          "charts show as images in Prefect artifacts and are linked from Slack."
    )
    spike_chart_base_url: str | None = Field(
        None, description="Older, spike-only name of TICKETLENS_REPORTS_BASE_URL (used when that is unset)."
    )
    spike: SpikeSettings = Field(default_factory=SpikeSettings, description="Spike detector and alert lifecycle.")

    # --- CSAT drivers and ops reports (flow csat-drivers) ------------------------------------------------
    csat: CsatSettings = Field(default_factory=CsatSettings, description="CSAT-driver analysis.")
    ops: OpsSettings = Field(default_factory=OpsSettings, description="Contact-reason and auto-reply reports.")

    # --- hardening -----------------------------------------------------------------------------------------
    run_lock_wait_seconds: float = Field(
        0.0, ge=0, description="How long a run waits for another run of the same flow before exiting cleanly."
    )
    run_lock_lease_seconds: float = Field(
        300.0, gt=0, description="Run-lock lease, renewed by a heartbeat; a crashed run's lock expires after it."
    )
    mlflow_cache_dir: str | None = Field(
        None, description="Directory of locally cached model versions, used only with TICKETLENS_MLFLOW_PINNED_VERSION."
    )
    mlflow_pinned_version: str | None = Field(
        None, description="Champion version to load from TICKETLENS_MLFLOW_CACHE_DIR when MLflow is unreachable."
    )

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        """The usual sources and order (keywords, environment, ``.env``, secrets), each also reading the flat
        names of grouped settings."""
        return (_FlatNames(settings_cls, init_settings), _FlatNames(settings_cls, env_settings),
                _FlatNames(settings_cls, dotenv_settings), file_secret_settings)

    @field_validator("ingest_initial_start_time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return as_utc(value)

    @field_validator("helpdesk_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("slack_webhook_url", mode="before")
    @classmethod
    def _webhook(cls, value):
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw is None or str(raw).strip() == "":
            return None
        if not str(raw).startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL (Slack incoming webhooks start with https://hooks.slack.com/)")
        return value

    @field_validator("spike_chart_base_url")
    @classmethod
    def _chart_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _some_auth(self) -> Settings:
        if self.helpdesk_api_token is None and self.helpdesk_oauth_token is None:
            raise ValueError(
                "set TICKETLENS_HELPDESK_API_TOKEN (with TICKETLENS_HELPDESK_EMAIL) "
                "or TICKETLENS_HELPDESK_OAUTH_TOKEN"
            )
        return self


def flat_names() -> dict[str, tuple[str, str]]:
    """Flat name of every grouped setting → (group, field), e.g. ``spike_min_count`` → ``("spike", "min_count")``."""
    out = {}
    for group, info in Settings.model_fields.items():
        model = info.annotation
        if isinstance(model, type) and issubclass(model, SettingsGroup):
            out.update({model.flat_prefix + name: (group, name) for name in model.model_fields})
    return out


def all_env_names() -> list[str]:
    """Every environment variable TicketLens reads, in field order (grouped settings under their flat names)."""
    grouped = {group for group, _ in flat_names().values()}
    out = []
    for name, info in Settings.model_fields.items():
        if name in grouped:
            out += [env_name(name, field) for field in info.annotation.model_fields]
        else:
            out.append(env_name(name))
    return out


def env_name(*path: str) -> str:
    """Environment variable of a setting: ``env_name("spike", "min_count")`` → ``TICKETLENS_SPIKE_MIN_COUNT``."""
    flat = {where: name for name, where in flat_names().items()}.get(tuple(path[:2]), "_".join(path))
    return (Settings.model_config["env_prefix"] + flat).upper()


class _FlatNames(PydanticBaseSettingsSource):
    """Wraps a settings source so that a grouped setting given under its flat name lands in its group.

    Keyword arguments arrive as extras of the init source (``spike_min_count=3``); environment and ``.env``
    values are looked up in the source's variables (``TICKETLENS_SPIKE_MIN_COUNT``), JSON-decoded for dict
    fields the way pydantic-settings decodes them. The nested form (``spike={"min_count": 3}``) still works and
    the flat form wins within one source.
    """

    def __init__(self, settings_cls: type[BaseSettings], source: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self.source = source

    def get_field_value(self, field, field_name):  # required by the base class; __call__ does the work
        return None, field_name, False

    def _flat_values(self, data: dict) -> dict:
        if isinstance(self.source, EnvSettingsSource):  # also DotEnvSettingsSource
            prefix = self.source.env_prefix.lower()
            return {key[len(prefix):]: value for key, value in self.source.env_vars.items()
                    if key.lower().startswith(prefix) and value is not None}
        return data

    def __call__(self) -> dict:
        data = dict(self.source())
        flat = {key.lower(): value for key, value in self._flat_values(data).items()}
        for name, (group, field) in flat_names().items():
            if name not in flat:
                continue
            data.pop(name, None)
            value = flat[name]
            if isinstance(value, str) and isinstance(self.source, EnvSettingsSource):
                model = Settings.model_fields[group].annotation
                if _is_json_field(model.model_fields[field]):
                    try:
                        value = json.loads(value)
                    except ValueError as exc:
                        raise SettingsError(f"{env_name(group, field)}: not valid JSON ({exc})") from None
            nested = data.get(group)
            nested = nested.model_dump() if isinstance(nested, BaseModel) else dict(nested or {})
            data[group] = {**nested, field: value}
        return data


def _is_json_field(info: FieldInfo) -> bool:
    origin = get_origin(info.annotation) or info.annotation
    return isinstance(origin, type) and issubclass(origin, dict | list)


def load_settings(**overrides) -> Settings:
    """Build settings, turning pydantic's error into one that names the environment variable to fix."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(part) for part in err["loc"] if part != "__root__"]
            name = env_name(*loc) if loc else "settings"
            problems.append(f"{name}: {err['msg']}")
        raise SettingsError("invalid TicketLens settings — " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once. Tests build their own ``Settings`` and pass them explicitly."""
    return load_settings()
