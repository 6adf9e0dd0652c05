"""``tasks.training`` called directly, step by step, on a seeded warehouse and an MLflow store in a SQLite file
under tmp_path: which labelled tickets training reads, and what each step of the nightly retrain hands the
next: a challenger fitted on the training split (or refitted on all rows), "no champion" → promoted, a second
challenger compared with the registered champion on exactly the holdout tickets the champion never saw, the
registry's aliases and tags after each decision, and the decision text. The flow tests (tests/flows/
test_training.py) show the same through ``nightly_retrain``; these show which task does what."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from prefect.logging import disable_run_logger

from ticketlens.adapters.settings import Settings
from ticketlens.adapters.tracking import CHALLENGER, CHAMPION, version_by_alias
from ticketlens.adapters.warehouse.engine import migrate
from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
from ticketlens.helpdesk_sim.seed import seed_warehouse
from ticketlens.helpdesk_sim.server import SimConfig, SimState
from ticketlens.models.classifier import resolve_config
from ticketlens.models.taxonomy import load_taxonomy
from ticketlens.models.training_data import prepare_training_set
from ticketlens.tasks.training import (
    ChampionComparison,
    NoTrainingDataError,
    champion_training_data,
    compare_sentiment_models,
    decision_markdown,
    encoder_requirements,
    load_labelled_tickets,
    log_and_register,
    promote_if_better,
    score_champion,
    train_challenger,
)

# A small, fast configuration of the tfidf profile: these tests are about what the steps hand on, not accuracy.
SMALL = {"C": 0.5, "word_max_features": 2000, "char_max_features": 2000}


@pytest.fixture(scope="module")
def dataset():
    return generate_dataset(GeneratorConfig(seed=11, start=datetime(2026, 5, 1, tzinfo=UTC), days=14,
                                            tickets_per_day=100))


def labelled_at_end(dataset) -> dict[int, str]:
    """Ticket id → confirmed category for tickets solved or closed at the dataset's end (what ingest stores)."""
    state = SimState(dataset, SimConfig())
    return {t.id: t.confirmed_category for t in dataset.tickets
            if t.confirmed_category is not None and state.status_at(t, state.now) in ("solved", "closed")}


def test_training_reads_the_confirmed_live_tickets_oldest_first(warehouse_url, dataset):
    migrate(warehouse_url)
    with pytest.raises(NoTrainingDataError, match="run the ingest flow first"):
        load_labelled_tickets.fn(warehouse_url, 1000)
    seed_warehouse(warehouse_url, dataset)

    frame = load_labelled_tickets.fn(warehouse_url, 10**6)
    assert list(frame.columns) == ["id", "created_at", "subject", "description", "confirmed_category"]
    assert dict(zip(frame["id"], frame["confirmed_category"], strict=True)) == labelled_at_end(dataset)
    assert frame["created_at"].is_monotonic_increasing and str(frame["created_at"].dt.tz) == "UTC"

    recent = load_labelled_tickets.fn(warehouse_url, 100)  # the most recent 100, still oldest first
    assert len(recent) == 100 and recent["created_at"].is_monotonic_increasing
    assert recent["created_at"].min() == frame["created_at"].iloc[-100]

    cutoff = pd.Timestamp("2026-05-08", tz="UTC")
    before = load_labelled_tickets.fn(warehouse_url, 10**6, created_before=cutoff.to_pydatetime())
    assert set(before["id"]) == set(frame.loc[frame["created_at"] < cutoff, "id"])
    with pytest.raises(NoTrainingDataError, match="created before 2026-04-01"):
        load_labelled_tickets.fn(warehouse_url, 10, created_before=datetime(2026, 4, 1, tzinfo=UTC))


def test_too_few_rated_comments_keep_vader(warehouse_url):
    migrate(warehouse_url)
    with disable_run_logger():
        assert compare_sentiment_models.fn(warehouse_url) == (None, None)


def test_each_retrain_step_called_directly(sqlite_url, tmp_path, dataset):
    seed_warehouse(sqlite_url, dataset)
    settings = Settings(warehouse_url=sqlite_url, mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                        mlflow_artifact_location=str(tmp_path / "mlartifacts"), training_min_examples_per_class=10,
                        training_min_holdout_rows=50, promotion_margin=0.01)
    uri, name = settings.mlflow_tracking_uri, settings.model_name
    config = resolve_config("tfidf", SMALL)
    assert encoder_requirements(config) == []  # no ONNX encoder in this profile: nothing extra to pin
    with disable_run_logger():
        frame = load_labelled_tickets.fn(sqlite_url, settings.training_max_rows)
        training = prepare_training_set(frame, load_taxonomy().leaves, min_examples_per_class=10)

        first = train_challenger.fn(training, settings, config, "tfidf", refit=False)
        assert first.split.strategy == "time" and len(first.split.train) + len(first.split.holdout) == len(training.frame)
        assert first.final_pipeline is first.pipeline and first.final_rows is first.split.train
        assert first.holdout_proba.shape == (len(first.split.holdout), len(first.pipeline.classes_))
        assert first.metrics["holdout_rows"] == len(first.split.holdout) and 0 < first.metrics["macro_f1"] <= 1

        nothing = score_champion.fn(settings, first)
        assert nothing == ChampionComparison()  # no champion registered yet
        first_run, v1 = log_and_register.fn(settings, first, nothing, None)
        assert str(version_by_alias(uri, name, CHALLENGER).version) == v1
        assert version_by_alias(uri, name, CHAMPION) is None  # registering does not promote
        decision = promote_if_better.fn(settings, v1, first, nothing)
        assert decision.promote and decision.reason.startswith("no champion yet")
        champion = version_by_alias(uri, name, CHAMPION)
        assert str(champion.version) == v1 and champion.tags["promotion.decision"] == "promoted"
        ids, until = champion_training_data(uri, first_run)  # what the registered model was fitted on
        assert ids == set(first.split.train["id"]) and until == first.split.train["created_at"].max()

        second = train_challenger.fn(training, settings, config, "tfidf")  # refitted on every row
        assert second.final_pipeline is not second.pipeline and len(second.final_rows) == len(training.frame)
        comparison = score_champion.fn(settings, second)
        # The champion was fitted on the training split only, so every holdout ticket is fair to compare on.
        assert (comparison.version, comparison.rows, comparison.seen_rows, comparison.basis) == \
            (v1, len(second.split.holdout), 0, "training-ids")
        # Same configuration, same split: the champion loaded back from the registry scores like the new fit.
        assert comparison.champion["macro_f1"] == pytest.approx(comparison.challenger["macro_f1"])
        second_run, v2 = log_and_register.fn(settings, second, comparison, None)
        kept = promote_if_better.fn(settings, v2, second, comparison)
    assert not kept.promote and kept.compared_rows == len(second.split.holdout)
    assert str(version_by_alias(uri, name, CHAMPION).version) == v1
    assert version_by_alias(uri, name, CHALLENGER).tags["promotion.decision"] == "rejected"
    ids, _ = champion_training_data(uri, second_run)
    assert ids == set(training.frame["id"])  # a later night compares v2 only on tickets newer than these
    text = decision_markdown(settings, v2, second_run, second, kept, comparison, None)
    assert "**Decision: not promoted**" in text and f"| challenger v{v2} | champion v{v1} |" in text
