"""A moved checkout keeps its models (issue 21): MLflow stores local artifact paths as absolute paths, so
TicketLens's loader re-roots a version whose stored path is gone under today's artifact root."""

from __future__ import annotations

import multiprocessing
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ticketlens.adapters.settings import Settings
from ticketlens.adapters.tracking import ensure_experiment, relocate_artifact_uri, set_alias
from ticketlens.models.classifier import build_pipeline, resolve_config

TOY = pd.DataFrame({"subject": ["reset my password", "app crashes", "refund please", "card lost"] * 5,
                    "description": ["forgot it", "at start", "money back", "stolen card"] * 5})
TOY_Y = ["account", "bug", "billing", "card"] * 5
CHECKOUT = Path(__file__).resolve().parents[2]


def _settings_module_in_child() -> str:
    """Runs in a spawned worker: the worker must import TicketLens itself, not a model's bare code copy."""
    from ticketlens.adapters import settings

    return settings.__name__


def test_relocation_only_touches_missing_local_paths(tmp_path):
    kept = tmp_path / "mlartifacts" / "1" / "models" / "m-1" / "artifacts"
    kept.mkdir(parents=True)
    assert relocate_artifact_uri(kept.as_uri(), str(tmp_path / "mlartifacts")) == kept.as_uri()
    remote = "mlflow-artifacts:/1/models/m-1/artifacts"
    assert relocate_artifact_uri(remote, str(tmp_path / "mlartifacts")) == remote
    gone = "file:///old/checkout/mlartifacts/1/models/m-1/artifacts"
    assert relocate_artifact_uri(gone, str(tmp_path / "mlartifacts")) == kept.as_uri()
    assert relocate_artifact_uri(gone, None) == gone  # no root configured: nothing to guess from
    assert relocate_artifact_uri("file:///old/elsewhere/x/artifacts", str(tmp_path / "mlartifacts")) == \
        "file:///old/elsewhere/x/artifacts"  # no such directory under today's root: left for MLflow to report


def test_a_registered_model_survives_moving_the_checkout(tmp_path, monkeypatch):
    """The demo's layout (relative ``mlflow.db`` and ``mlartifacts`` in the working directory), moved whole."""
    import mlflow
    from mlflow.models import infer_signature

    from ticketlens.tasks.scoring import load_registered
    from ticketlens.tasks.training import log_classifier_model

    before, after = tmp_path / "checkout", tmp_path / "moved-checkout"
    before.mkdir()
    monkeypatch.chdir(before)
    uri = f"sqlite:///{before / 'mlflow.db'}"
    ensure_experiment(uri, "relocation", "mlartifacts")
    config = resolve_config("tfidf", {"word_min_df": 1, "char_min_df": 1})
    pipeline = build_pipeline(config).fit(TOY, TOY_Y)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("relocation")
    with mlflow.start_run():
        version = log_classifier_model(pipeline, config, "tl-relocation", infer_signature(TOY, pipeline.predict(TOY)))
    set_alias(uri, "tl-relocation", "champion", version)

    shutil.move(before, after)
    monkeypatch.chdir(after)
    settings = Settings(mlflow_tracking_uri=f"sqlite:///{after / 'mlflow.db'}", mlflow_artifact_location="mlartifacts",
                        mlflow_cache_dir=str(after / "cache"))
    loaded = load_registered(settings, "tl-relocation", version)
    assert np.allclose(loaded.predict_proba(TOY), pipeline.predict_proba(TOY), atol=1e-9)
    assert (after / "cache" / "tl-relocation" / version / "MLmodel").is_file()  # the cache fills from the new place

    # A worker spawned after the load (scoring offloads language detection and sentiment to spawned processes)
    # inherits sys.path: the model's bare code copy of the ticketlens package must not be on it.
    leaked = [entry for entry in sys.path if (Path(entry) / "ticketlens" / "__init__.py").is_file()
              and Path(entry).resolve() != CHECKOUT]
    assert leaked == []
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(_settings_module_in_child) == "ticketlens.adapters.settings"
