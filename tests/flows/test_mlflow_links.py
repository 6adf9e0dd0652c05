"""What ML owners see: the nightly MLflow run named by its date and linked to its Prefect run, the experiment in
MLflow's model-training view, described registry entries, and a decision artifact that links to both."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ticketlens.adapters.settings import Settings, get_settings
from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
from ticketlens.helpdesk_sim.seed import seed_warehouse
from ticketlens.tasks.mlflow_links import TrainingLinks, mlflow_ui_base


def test_ui_links_only_for_a_web_tracking_server_and_never_with_credentials():
    assert mlflow_ui_base(Settings(mlflow_tracking_uri="sqlite:///mlflow.db")) is None
    assert mlflow_ui_base(Settings(mlflow_tracking_uri="http://ml:s3cret@mlflow.internal:5000/")) == \
        "http://mlflow.internal:5000"
    links = TrainingLinks("http://m/#/experiments/1/runs/abc", "http://m/#/models/clf/versions/3",
                          "http://p/runs/flow-run/xyz", "retrain 2026-12-01")
    text = links.markdown("abc", "clf", "3")
    assert "[retrain 2026-12-01](http://m/#/experiments/1/runs/abc)" in text
    assert "[clf v3](http://m/#/models/clf/versions/3)" in text and "http://p/runs/flow-run/xyz" in text
    assert "`abc`" in TrainingLinks(None, None, None, "retrain x").markdown("abc", "clf", "3")


@pytest.fixture
def retrain_env(settings_env, tmp_path, sqlite_url):
    dataset = generate_dataset(GeneratorConfig(seed=12, start=datetime(2026, 5, 1, tzinfo=UTC), days=14,
                                               tickets_per_day=120))
    seed_warehouse(sqlite_url, dataset)
    env = {
        "TICKETLENS_WAREHOUSE_URL": sqlite_url,
        "TICKETLENS_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "TICKETLENS_MLFLOW_ARTIFACT_LOCATION": str(tmp_path / "mlartifacts"),
        "TICKETLENS_TRAINING_MIN_EXAMPLES_PER_CLASS": "10",
        "TICKETLENS_TRAINING_MIN_HOLDOUT_ROWS": "50",
        "TICKETLENS_BACKFILL_AFTER_PROMOTION": "false",
    }
    settings_env(env)


def test_nightly_run_is_named_linked_and_described(prefect_harness, retrain_env):
    import mlflow
    from prefect import get_client
    from prefect.artifacts import Artifact

    from ticketlens.adapters.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG
    from ticketlens.flows.nightly_retrain import nightly_retrain

    result = nightly_retrain()
    settings = get_settings()
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == "custom_model_development"

    run = client.get_run(result["run_id"])
    day = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")  # an ad-hoc run owns the day before now
    assert run.info.run_name == f"retrain {day}"
    flow_run_id = run.data.tags["prefect.flow_run_id"]
    assert flow_run_id in run.data.tags["prefect.flow_run_url"]
    assert f"registered `{settings.model_name}` v{result['version']}" in run.data.tags["mlflow.note.content"]
    with get_client(sync_client=True) as prefect:
        assert prefect.read_flow_run(flow_run_id).name == f"retrain {day}"

    model = client.get_registered_model(settings.model_name)
    assert "nightly-retrain" in model.description and "champion" in model.description
    version = client.get_model_version(settings.model_name, result["version"])
    assert f"for {day}" in version.description and "Promoted to champion: no champion yet" in version.description
    assert result["run_id"] in version.description

    decision = Artifact.get("nightly-retrain-decision").data
    assert "**Links**" in decision and f"`{settings.model_name}` v{result['version']}" in decision
    assert flow_run_id in decision


def test_existing_experiment_gets_the_training_view_tag(tmp_path):
    import mlflow

    from ticketlens.adapters.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, ensure_experiment

    uri = f"sqlite:///{tmp_path / 'old.db'}"
    mlflow.MlflowClient(uri).create_experiment("old-experiment", artifact_location=(tmp_path / "a").as_uri())
    experiment_id = ensure_experiment(uri, "old-experiment", str(tmp_path / "a"))
    assert mlflow.MlflowClient(uri).get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND

