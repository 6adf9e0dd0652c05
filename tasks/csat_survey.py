"""Ingest tasks for Zendesk's current CSAT (survey responses), beside the legacy satisfaction-ratings stream.

Which API(s) a run reads is ``TICKETLENS_HELPDESK_CSAT_API``: ``auto`` (default) reads the legacy ratings and
the survey responses and reports which one the account actually uses — an API the account lacks (404) or this
token may not read (403) is skipped with a note instead of failing the run; ``satisfaction_ratings`` or
``survey_responses`` reads only that one (and its errors fail the run); ``both`` reads both strictly.
Both land in ``csat_ratings`` (``source`` says which API); see ``models.csat_api``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ticketlens.adapters.helpdesk import (
    HelpdeskAuthError,
    HelpdeskNotFoundError,
    RatingPage,
    client_from_settings,
)
from ticketlens.adapters.settings import Settings
from ticketlens.models.csat_api import not_a_rating
from ticketlens.tasks.ingest import SURVEY_STREAM, Position, judge_page, not_after


@dataclass(frozen=True)
class CsatPlan:
    legacy: bool
    survey: bool
    strict_legacy: bool
    strict_survey: bool


def csat_plan(setting: str) -> CsatPlan:
    """Which CSAT APIs to read, and whether a missing one is an error (see the module docstring)."""
    if setting == "satisfaction_ratings":
        return CsatPlan(True, False, True, False)
    if setting == "survey_responses":
        return CsatPlan(False, True, False, True)
    if setting == "both":
        return CsatPlan(True, True, True, True)
    return CsatPlan(True, True, True, False)  # auto: the legacy endpoint exists on every account


@task(name="fetch-survey-page", cache_policy=NO_CACHE)
def fetch_survey_page(settings: Settings, position: Position, strict: bool) -> tuple[RatingPage | None, str | None]:
    """GET one page of CSAT survey responses; (None, why) when the account has no such API and not ``strict``.

    A new read starts ``TICKETLENS_CSAT_SURVEY_LOOKBACK_HOURS`` before the watermark: the endpoint filters on
    creation time, and a customer may still change an answer until the response expires; the versioned upsert
    absorbs the overlap.
    """
    client = client_from_settings(settings)
    created_after_ms = None
    if position.cursor is None:
        start = int(position.start_time or 0) - int(timedelta(hours=settings.csat_survey_lookback_hours)
                                                     .total_seconds())
        created_after_ms = max(0, start) * 1000
    try:
        return next(iter(client.export_survey_responses(created_after_ms=created_after_ms, next_url=position.cursor,
                                                         page_size=settings.helpdesk_csat_page_size))), None
    except (HelpdeskNotFoundError, HelpdeskAuthError) as exc:
        if strict:
            raise
        status = "HTTP 404" if isinstance(exc, HelpdeskNotFoundError) else "HTTP 403"
        reason = (f"survey responses API not available to this account or token ({status}); only the legacy "
                  f"satisfaction ratings are read")
        get_run_logger().info("CSAT: %s. Set TICKETLENS_HELPDESK_CSAT_API=survey_responses to make this an error.",
                              reason)
        return None, reason


@task(name="validate-survey-page", cache_policy=NO_CACHE)
def validate_survey_page(settings: Settings, page: RatingPage):
    """Screen poison records, normalise survey responses into rating rows, run the ratings suite and hold back
    far-future rows (the same ``judge_page`` as the other streams); returns (outcome, watermark over the rows
    that load — never past this run's clock — and the number of responses that are not ratings)."""
    judged = judge_page(
        SURVEY_STREAM, page.ratings, None, field_map=None,
        max_failure_share=settings.validation_max_failure_share, max_text_chars=settings.max_text_chars,
        latest=not_after(settings), tolerance=settings.ingest_future_tolerance_seconds,
    )
    return judged, judged.watermark, not_a_rating(judged.valid["score"]) if len(judged.valid) else 0
