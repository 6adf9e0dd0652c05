"""``adapters.tracking`` called directly on an MLflow store in a SQLite file under tmp_path (MLflow 3.17 refuses
the ./mlruns file store): the experiment is set up once with its training-view tag, a model goes registry →
alias → tags → loaded back and predicts the same, "no champion yet" is None while an unreachable registry is
an error (it must never look like "no champion"), and URIs in messages never show a password."""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from ticketlens.adapters.tracking import (
    CHALLENGER,
    CHAMPION,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    RegistryUnavailableError,
    describe_tracking_uri,
    ensure_experiment,
    load_version,
    pip_requirements,
    scrub_uri,
    set_alias,
    tag_version,
    version_by_alias,
)

X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0], [4.0, 1.0], [5.0, 0.0]])
Y = np.array(["a", "a", "a", "b", "b", "b"])


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, Path]:
    """One store for the module: creating it runs MLflow's migrations (seconds)."""
    root = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{root / 'mlflow.db'}", root / "artifacts"


def test_the_experiment_is_created_once_for_the_training_view(store):
    import mlflow

    uri, artifacts = store
    first = ensure_experiment(uri, "tracking-direct", str(artifacts))
    assert ensure_experiment(uri, "tracking-direct", str(artifacts)) == first
    experiment = mlflow.MlflowClient(uri).get_experiment(first)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    assert experiment.artifact_location == artifacts.resolve().as_uri()
    with mlflow.start_run() as run:  # ensure_experiment also made it the active experiment
        assert run.info.experiment_id == first


def test_a_registered_model_round_trips_by_alias_with_its_tags(store):
    import mlflow

    uri, artifacts = store
    ensure_experiment(uri, "tracking-direct", str(artifacts))
    assert version_by_alias(uri, "tracking-clf", CHAMPION) is None  # no such model yet: "no champion", no error
    model = LogisticRegression().fit(X, Y)
    requirements = pip_requirements()
    assert f"scikit-learn=={md.version('scikit-learn')}" in requirements
    assert f"mlflow=={md.version('mlflow')}" in requirements
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name="tracking-clf",
                                        pip_requirements=requirements)
    version = str(info.registered_model_version)
    assert version_by_alias(uri, "tracking-clf", CHAMPION) is None  # registered, but no alias yet

    set_alias(uri, "tracking-clf", CHALLENGER, version)
    tag_version(uri, "tracking-clf", version, {"promotion.decision": "promoted", "training.rows": 6})
    assert version_by_alias(uri, "tracking-clf", CHAMPION) is None
    set_alias(uri, "tracking-clf", CHAMPION, version)
    found = version_by_alias(uri, "tracking-clf", CHAMPION)
    assert str(found.version) == version
    assert found.tags == {"promotion.decision": "promoted", "training.rows": "6"}  # values stored as text
    assert str(version_by_alias(uri, "tracking-clf", CHALLENGER).version) == version

    loaded = load_version(uri, "tracking-clf", found.version)
    assert list(loaded.predict(X)) == list(model.predict(X))
    assert np.allclose(loaded.predict_proba(X), model.predict_proba(X))


def test_an_unreachable_registry_is_an_error_naming_the_setting_not_no_champion(monkeypatch):
    from ticketlens.helpdesk_sim.testing import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    down = f"http://ml:s3cretPW@127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(RegistryUnavailableError, match=r"TICKETLENS_MLFLOW_TRACKING_URI=http://ml:\*\*\*@127") as err:
        version_by_alias(down, "clf", CHAMPION)
    assert "'clf@champion'" in str(err.value) and "s3cretPW" not in str(err.value)


def test_tracking_uris_in_messages_never_show_a_password():
    uri = "https://ml:p%40ss@mlflow.internal:5000"
    assert describe_tracking_uri(uri) == "https://ml:***@mlflow.internal:5000"
    assert describe_tracking_uri("sqlite:///var/mlflow.db") == "sqlite:///var/mlflow.db"
    message = f"GET {uri}/api/2.0/mlflow/registered-models failed for user ml with p@ss"
    assert scrub_uri(message, uri) == "GET https://ml:***@mlflow.internal:5000/api/2.0/mlflow/registered-models " \
        "failed for user ml with ***"
    assert scrub_uri("no password here", "sqlite:///x.db") == "no password here"
