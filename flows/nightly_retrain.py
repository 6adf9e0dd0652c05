"""``nightly-retrain`` flow: labelled tickets → checked training set → challenger → MLflow → promotion.

Table of contents: load-labelled-tickets → check-training-set → train-challenger (evaluation fit, then a refit on
all rows) → score-champion-on-holdout (only tickets the champion was not trained on) → compare-sentiment-models
→ log-and-register (the refit, new version, alias ``challenger``) → decide-promotion (alias ``champion`` when it
beats the champion on the same unseen tickets; refused when too few) → a markdown artifact with the decision.
"""

from __future__ import annotations

from datetime import datetime
from uuid import uuid4

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from ticketlens.adapters.settings import get_settings
from ticketlens.adapters.tracking import ensure_experiment
from ticketlens.models.classifier import resolve_config
from ticketlens.tasks.mlflow_links import link_training_run
from ticketlens.tasks.run_names import retrain_run_name
from ticketlens.tasks.runlock import flow_lock
from ticketlens.tasks.runstate import RunSkippedError, final_state, skipped_state
from ticketlens.tasks.runtime import daily_window
from ticketlens.tasks.training import (
    check_training_set,
    compare_sentiment_models,
    decision_markdown,
    load_labelled_tickets,
    log_and_register,
    promote_if_better,
    score_champion,
    train_challenger,
)


@flow(name="nightly-retrain", log_prints=True, flow_run_name=retrain_run_name)
def nightly_retrain(classifier_config: dict | None = None, end: datetime | None = None,
                    classifier_profile: str | None = None) -> dict:
    """Retrain the ticket-category classifier; promote it only if it beats the champion on the same holdout.

    Args:
        classifier_config: overrides of ``models.classifier.ClassifierConfig`` fields (e.g. ``{"C": 5}``),
            for ML owners trying a variant; every value is logged to MLflow.
        classifier_profile: a named configuration (``models.classifier.PROFILES``); default
            ``TICKETLENS_CLASSIFIER_PROFILE``.
        end: train only on tickets created before this UTC time (re-create a past night's model). By default
            a run trains on everything in the warehouse; its window (the UTC day before its scheduled start)
            is reported in the decision artifact and the result.
    """
    settings = get_settings()
    window = daily_window(end=end)
    get_run_logger().info("Window %s%s", window, "; training cutoff at its end" if end is not None else "")
    lock_owner = str(flow_run.id or uuid4())
    with flow_lock(settings, "nightly-retrain", lock_owner) as held:
        if not held:
            return skipped_state("nightly-retrain", held.reason, {"skipped": True, "promoted": False})
        result, failures = _retrain(settings, classifier_profile or settings.classifier_profile, classifier_config,
                                    window, end)
    return final_state("nightly-retrain", result, failures)


def _retrain(settings, profile: str, classifier_config: dict | None, window,
             end: datetime | None) -> tuple[dict, dict[str, str]]:
    # Initialise the MLflow store once, before any parallel work (fresh SQLite stores crash on concurrent use).
    ensure_experiment(settings.mlflow_tracking_uri, settings.mlflow_experiment, settings.mlflow_artifact_location)
    frame = load_labelled_tickets(settings.warehouse_url, settings.training_max_rows,
                                  window.end if end is not None else None)
    training = check_training_set(frame, settings.training_min_examples_per_class)
    model = train_challenger(training, settings, resolve_config(profile, classifier_config), profile)
    comparison = score_champion(settings, model)  # on holdout tickets the champion was not trained on
    sentiment, sentiment_model = compare_sentiment_models(settings.warehouse_url)
    run_id, version = log_and_register(settings, model, comparison, sentiment, sentiment_model)
    decision = promote_if_better(settings, version, model, comparison)
    links = link_training_run(settings, run_id, version, decision, f"{window.start:%Y-%m-%d}")
    markdown = decision_markdown(settings, version, run_id, model, decision, comparison, sentiment)
    markdown += f"\n\nWindow: {window}" + (" — training data cut off at its end." if end is not None else ".")
    markdown += "\n" + links.markdown(run_id, settings.model_name, version)
    create_markdown_artifact(key="nightly-retrain-decision", markdown=markdown,
                             description="Challenger vs champion on the same holdout, and the decision.")
    print(markdown)
    backfilled = None
    failures: dict[str, str] = {}
    if decision.promote and settings.backfill_after_promotion:
        from ticketlens.flows.backfill import backfill

        try:
            backfilled = backfill(model_version=version)  # re-score history with the new champion
        except RunSkippedError as skip:  # promotion stands; history still carries the old champion's labels
            failures["backfill"] = (f"{skip} — v{version} is champion but history is not re-scored yet: run the "
                                    f"backfill deployment with model_version={version} once the other run ends")
    return {"window": window.as_dict(), "version": version, "run_id": run_id, "promoted": decision.promote,
            "mlflow_run_url": links.mlflow_run_url, "model_version_url": links.model_version_url,
            "reason": decision.reason,
            "metrics": {k: v for k, v in model.metrics.items() if not k.startswith("f1.")},
            "champion_version": comparison.version, "compared_rows": decision.compared_rows,
            "split_kind": model.split.strategy, "profile": profile,
            "sentiment_winner": sentiment.winner if sentiment else "vader",
            "sentiment_reason": sentiment.reason if sentiment else "vader ships: too few rated comments to compare",
            "backfill": backfilled}, failures


if __name__ == "__main__":
    nightly_retrain()
