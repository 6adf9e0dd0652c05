"""Nightly retraining: metrics, promotion rule, training-set checks, MLflow run contents, no raw text logged."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from helpdesk_sim.generator import GeneratorConfig, generate_dataset
from models.evaluation import classification_metrics, decide_promotion, expected_calibration_error
from models.taxonomy import load_taxonomy
from models.training_data import holdout_split, prepare_training_set
from tasks.settings import get_settings
from tasks.warehouse.engine import get_engine
from tasks.warehouse.schema import tickets

from .seed import seed_warehouse

# ------------------------------------------------------------------------------------------- pure parts


def test_promotion_rule():
    assert decide_promotion({"macro_f1": 0.7}, None).promote
    better = decide_promotion({"macro_f1": 0.80}, {"macro_f1": 0.78}, margin=0.01)
    assert better.promote and "beats" in better.reason
    assert not decide_promotion({"macro_f1": 0.785}, {"macro_f1": 0.78}, margin=0.01).promote
    worse = decide_promotion({"macro_f1": 0.70}, {"macro_f1": 0.78}, margin=0.0)
    assert not worse.promote and worse.champion_score == 0.78


def test_metrics_on_known_predictions():
    classes = ["a", "b", "c"]
    proba = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.1, 0.2, 0.7]])
    m = classification_metrics(["a", "b", "b", "unknown"], proba, classes, threshold=0.6)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["top2_accuracy"] == pytest.approx(0.75)
    assert m["coverage_at_threshold"] == pytest.approx(0.75)
    assert m["accuracy_at_threshold"] == pytest.approx(2 / 3)
    assert m["f1.a"] > 0 and "f1.unknown" in m and m["log_loss"] > 0
    assert expected_calibration_error(np.array([0.9, 0.9]), np.array([1, 1])) == pytest.approx(0.1)


def frame_of(labels, days):
    n = len(labels)
    return pd.DataFrame({
        "id": range(1, n + 1),
        "created_at": pd.date_range(end=datetime(2026, 9, 1, tzinfo=UTC), periods=n, freq=f"{days * 24 * 60 // n}min"),
        "subject": ["s"] * n, "description": ["d"] * n, "confirmed_category": labels,
    })


def test_training_set_rejects_unknown_labels_and_reports_small_classes():
    labels = ["account.password_reset"] * 30 + ["account.hacked"] * 5 + ["legacy.old_queue"] * 4 + [None] * 3
    ts = prepare_training_set(frame_of(labels, 30), load_taxonomy().leaves, min_examples_per_class=10)
    assert ts.rejected_labels == {"legacy.old_queue": 4}
    assert ts.excluded_classes == {"account.hacked": 5}
    assert set(ts.frame["label"]) == {"account.password_reset"} and len(ts.frame) == 30


def test_holdout_is_time_based_with_stratified_fallback():
    labels = (["account.password_reset", "account.hacked"] * 200)
    frame = prepare_training_set(frame_of(labels, 40), load_taxonomy().leaves, min_examples_per_class=1).frame
    split = holdout_split(frame, holdout_days=7, min_holdout_rows=20)
    assert split.strategy == "time" and split.holdout["created_at"].min() > split.train["created_at"].max()
    short = holdout_split(frame, holdout_days=7, min_holdout_rows=1000)
    assert short.strategy == "stratified" and set(short.holdout["label"]) == set(labels)


# ------------------------------------------------------------------------------------------ flow + MLflow


@pytest.fixture(scope="module")
def small_dataset():
    return generate_dataset(GeneratorConfig(seed=11, start=datetime(2026, 5, 1, tzinfo=UTC), days=21,
                                            tickets_per_day=150))


@pytest.fixture
def retrain_env(monkeypatch, tmp_path, sqlite_url, small_dataset):
    seed_warehouse(sqlite_url, small_dataset)
    env = {
        "TICKETLENS_WAREHOUSE_URL": sqlite_url,
        "TICKETLENS_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "TICKETLENS_MLFLOW_ARTIFACT_LOCATION": str(tmp_path / "mlartifacts"),
        "TICKETLENS_TRAINING_MIN_EXAMPLES_PER_CLASS": "15",
        "TICKETLENS_TRAINING_MIN_HOLDOUT_ROWS": "100",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def _client():
    import mlflow

    return mlflow.MlflowClient(get_settings().mlflow_tracking_uri)


WEAK = {"C": 0.01, "word_max_features": 50, "char_max_features": 50}


def test_retrain_registers_promotes_only_when_better_and_logs_no_text(prefect_harness, retrain_env, sqlite_url,
                                                                       small_dataset):
    from flows.nightly_retrain import nightly_retrain

    with get_engine(sqlite_url).begin() as conn:  # a label outside the taxonomy must be rejected and counted
        conn.execute(sa.update(tickets).where(tickets.c.id.in_([1, 2, 3])).values(confirmed_category="legacy.queue"))

    first = nightly_retrain(classifier_config=WEAK)
    assert first["promoted"] and first["reason"] == "no champion yet"
    client = _client()
    run = client.get_run(first["run_id"])
    for key in ("accuracy", "macro_f1", "weighted_f1", "top2_accuracy", "log_loss", "ece",
                "coverage_at_threshold", "accuracy_at_threshold", "fit_seconds"):
        assert key in run.data.metrics
    assert any(k.startswith("f1.account.") for k in run.data.metrics)
    params = run.data.params
    assert params["data.rejected_label_rows"] == "3" and params["taxonomy.digest"] == load_taxonomy().digest
    assert "clf.C" in params and "data.holdout_start" in params
    artifacts = {a.path for a in client.list_artifacts(first["run_id"])}
    assert {"confusion_matrix.png", "per_class_f1.png", "excluded_classes.csv"} <= artifacts
    assert len(run.inputs.dataset_inputs) == 2
    # Sentiment: both candidates scored on held-out rated comments; the winner is recorded (and registered if
    # it is the CSAT-trained model).
    assert {"sentiment.vader.roc_auc", "sentiment.csat_model.roc_auc"} <= set(run.data.metrics)
    winner = run.data.tags["sentiment.winner"]
    aucs = {n: run.data.metrics[f"sentiment.{n}.roc_auc"] for n in ("vader", "csat_model")}
    f1s = {n: run.data.metrics[f"sentiment.{n}.macro_f1"] for n in ("vader", "csat_model")}
    expected = "csat_model" if aucs["csat_model"] >= aucs["vader"] + 0.02 and f1s["csat_model"] >= f1s["vader"] \
        else "vader"
    assert winner == expected
    if winner == "csat_model":
        assert client.get_model_version_by_alias(get_settings().sentiment_model_name, "champion")
    name = get_settings().model_name
    assert str(client.get_model_version_by_alias(name, "champion").version) == first["version"]

    second = nightly_retrain()  # the default pipeline is much stronger than WEAK
    assert second["promoted"] and second["champion_version"] == first["version"]
    assert second["metrics"]["macro_f1"] > first["metrics"]["macro_f1"]
    third = nightly_retrain(classifier_config=WEAK)  # worse: stays challenger, champion unchanged
    assert not third["promoted"] and "does not beat" in third["reason"]
    assert str(client.get_model_version_by_alias(name, "champion").version) == second["version"]
    assert str(client.get_model_version_by_alias(name, "challenger").version) == third["version"]
    tags = client.get_model_version(name, third["version"]).tags
    assert tags["promotion.decision"] == "rejected" and tags["promotion.champion_version"] == second["version"]

    # No raw ticket text (or PII) anywhere in the tracking store or artifacts.
    samples = [t.description for t in small_dataset.tickets[:400] if len(t.description) > 60][:50]
    needles = {s[10:50] for s in samples}
    store = [Path(retrain_env) / "mlflow.db", *(Path(retrain_env) / "mlartifacts").rglob("*")]
    blobs = [p.read_bytes() for p in store if p.is_file()]
    assert len(blobs) > 10
    for needle in needles:
        assert not any(needle.encode() in b for b in blobs), needle


def test_a_class_below_the_minimum_is_reported(prefect_harness, retrain_env, monkeypatch):
    from flows.nightly_retrain import nightly_retrain

    monkeypatch.setenv("TICKETLENS_TRAINING_MIN_EXAMPLES_PER_CLASS", "60")
    get_settings.cache_clear()
    result = nightly_retrain()
    params = _client().get_run(result["run_id"]).data.params
    assert params["data.excluded_classes"] != "-" and int(params["data.excluded_class_rows"]) > 0


def test_sentiment_model_that_calls_everything_negative_does_not_ship():
    from models.sentiment import compare_sentiment

    comments = ["It took ages and nothing was fixed."] * 40 + ["Thanks, great help!"] * 40
    bad = [True] * 40 + [False] * 40
    tickets_text = ["My pins disappeared, please help"] * 30 + ["The app crashes every time"] * 30
    held_bad = [True, False] * 30
    comparison, _ = compare_sentiment(comments, bad, tickets_text, held_bad, margin=0.02)
    assert comparison.winner == "vader"
