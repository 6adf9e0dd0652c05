"""MLflow 3 tracking and registry helpers: experiment set-up, training-run logging, aliases.

Conventions (MLflow 3): ``log_model(name=...)``, registry aliases ``challenger``/``champion`` instead of the
deprecated stages, consumers load ``models:/<name>@champion``. Pip requirements are passed explicitly (inferring
them costs ~20 s per model). Nothing logged here contains ticket text: params and metrics are numbers and
names, the dataset input carries ids/labels/dates only, and the input example is a made-up ticket.
"""

from __future__ import annotations

import importlib.metadata as md
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

# MLflow 3's UI opens an experiment in the model-training view or the GenAI view by this tag.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
CHAMPION = "champion"
CHALLENGER = "challenger"
_INIT_LOCK = threading.Lock()


#: Distributions a registered model needs to load and predict, besides its own code (logged as code paths).
#: ``skops``: MLflow 3 stores sklearn models in the skops format, and skops is not an MLflow dependency, so a
#: clean environment built from the logged requirements cannot load the model without it.
MODEL_DISTRIBUTIONS = ("scikit-learn", "numpy", "pandas", "scipy", "mlflow", "skops")


def pip_requirements() -> list[str]:
    """What a model server needs to load the pipeline (pinned to this environment's versions)."""
    pins = []
    for dist in MODEL_DISTRIBUTIONS:
        try:
            pins.append(f"{dist}=={md.version(dist)}")
        except md.PackageNotFoundError:  # pragma: no cover - always installed here
            pins.append(dist)
    return pins


@contextmanager
def model_code_paths() -> Iterator[list[str]]:
    """The ``code_paths`` for ``log_model``: the Prefect-free model code, staged as the package ``ticketlens``.

    Why staged: a fitted pipeline pickles its custom steps by module path (``ticketlens.models.classifier.
    TicketTextPreparer``), and MLflow puts each code path on ``sys.path`` when it loads the model. Logging the
    checkout's ``models/`` directory would put a top-level package called ``models`` there, which collides with
    any other ``models`` package in the loading process. Staged as ``ticketlens/models`` with a bare
    ``ticketlens/__init__.py``, the model imports only under the distribution's own name and loads in a clean
    virtualenv built from its logged requirements, from any working directory. The ``models`` layer imports
    nothing outside itself, so it is complete on its own.
    """
    import ticketlens.models

    source = Path(ticketlens.models.__file__).resolve().parent
    with tempfile.TemporaryDirectory(prefix="ticketlens-model-code-") as tmp:
        package = Path(tmp) / "ticketlens"
        package.mkdir()
        (package / "__init__.py").write_text(
            '"""TicketLens model code, logged with a registered model (see adapters/tracking.py)."""\n')
        shutil.copytree(source, package / "models", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        yield [str(package)]


def _artifact_uri(location: str) -> str:
    if "://" in location:
        return location
    return Path(location).expanduser().resolve().as_uri()


def ensure_experiment(tracking_uri: str, experiment: str, artifact_location: str) -> str:
    """Point MLflow at the store and create the experiment once per process.

    Creating a fresh SQLite store runs its migrations; two processes or threads doing that at once crash, so
    this runs before any parallel work, under a lock.
    """
    import mlflow

    with _INIT_LOCK:
        mlflow.set_tracking_uri(tracking_uri)
        client = mlflow.MlflowClient(tracking_uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            experiment_id = client.create_experiment(experiment, artifact_location=_artifact_uri(artifact_location),
                                                     tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        else:
            experiment_id = found.experiment_id
            if found.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # experiments made before this tag
                client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id


class RegistryUnavailableError(RuntimeError):
    """The MLflow tracking server / registry could not be asked (down, unreachable, broken store)."""


# Error codes that mean "asked, and there is no such model or alias" (as opposed to "could not ask").
NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"})


def describe_tracking_uri(uri: str) -> str:
    """The tracking URI with any password hidden (http://user:***@host), for messages and logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password:
        host = parts.hostname or ""
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return uri


def scrub_uri(text: str, uri: str) -> str:
    """``text`` with the tracking URI's password removed (MLflow's own errors quote the full URL)."""
    from urllib.parse import unquote, urlsplit

    password = urlsplit(uri).password
    if password:
        for form in {password, unquote(password)}:
            text = text.replace(form, "***")
    return text


def version_by_alias(tracking_uri: str, model_name: str, alias: str):
    """The registered version behind an alias, or None (no model or no alias yet).

    An unreachable or failing registry raises ``RegistryUnavailableError`` instead: "could not ask" must never
    look like "no champion" (that would silently switch models, e.g. to VADER for sentiment).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri)
    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if exc.error_code in NOT_FOUND_CODES:
            return None
        reason = f"{exc.error_code}: {str(exc).splitlines()[0][:300]}"
    except Exception as exc:  # the store itself failed (connection refused, broken SQLite file, ...)
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    raise RegistryUnavailableError(
        f"The MLflow registry at TICKETLENS_MLFLOW_TRACKING_URI={describe_tracking_uri(tracking_uri)} could not "
        f"be reached while looking up '{model_name}@{alias}' ({scrub_uri(reason, tracking_uri)})"
    )


def relocate_artifact_uri(uri: str, artifact_root: str | None) -> str:
    """A registered version's artifact URI, re-rooted under today's artifact root when the store was moved.

    Why: MLflow stores a local artifact location as an absolute path (``file:///old/checkout/mlartifacts/...``)
    whatever path it was given, so a checkout (or a ``var/`` directory) moved with its ``mlflow.db`` and
    ``mlartifacts/`` would otherwise lose every registered model. When the stored path no longer exists, the part
    after the directory named like today's artifact root is looked up under today's root. Remote URIs and paths
    that still exist are returned unchanged.
    """
    if not artifact_root or not uri.startswith("file:"):
        return uri
    stored = Path(unquote(urlparse(uri).path))
    if stored.exists():
        return uri
    root = Path(unquote(urlparse(_artifact_uri(artifact_root)).path))
    for i in range(len(stored.parts) - 1, -1, -1):
        if stored.parts[i] == root.name:
            candidate = root.joinpath(*stored.parts[i + 1:])
            if candidate.exists():
                return candidate.as_uri()
    return uri


def version_artifact_uri(tracking_uri: str, model_name: str, version: str | int,
                         artifact_root: str | None = None) -> str:
    """Where a registered version's files are, relocated when the local store was moved."""
    import mlflow

    uri = mlflow.MlflowClient(tracking_uri).get_model_version_download_uri(model_name, str(version))
    return relocate_artifact_uri(uri, artifact_root)


def load_version(tracking_uri: str, model_name: str, version: str | int, artifact_root: str | None = None):
    """Load a registered version (``artifact_root``: today's TICKETLENS_MLFLOW_ARTIFACT_LOCATION, to find a
    version whose local store was moved; see ``relocate_artifact_uri``)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    return load_sklearn_model(version_artifact_uri(tracking_uri, model_name, version, artifact_root))


def load_sklearn_model(uri: str):
    """``mlflow.sklearn.load_model``, without leaving the model's code directory on ``sys.path``.

    Why: MLflow puts a model's ``code/`` directory first on ``sys.path`` for good. For a version logged with the
    ``ticketlens`` namespace that directory holds a bare ``ticketlens`` package (``model_code_paths``); this
    process has imported the real one already, but a worker process it spawns afterwards (scoring offloads
    language detection and sentiment to spawned workers) inherits ``sys.path`` and would import the bare one,
    which has no ``ticketlens.adapters``. The classes the model needs are imported by the time it is loaded, so
    such directories are taken off again. A pre-namespace version's directory (a top-level ``models`` package)
    stays, as it always did: its pickles need ``models`` importable.
    """
    import mlflow

    before = set(sys.path)
    try:
        return mlflow.sklearn.load_model(uri)
    finally:
        sys.path[:] = [entry for entry in sys.path
                       if entry in before or not (Path(entry) / "ticketlens" / "__init__.py").is_file()]


def set_alias(tracking_uri: str, model_name: str, alias: str, version: str | int) -> None:
    import mlflow

    mlflow.MlflowClient(tracking_uri).set_registered_model_alias(model_name, alias, str(version))


def tag_version(tracking_uri: str, model_name: str, version: str | int, tags: dict[str, Any]) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    for key, value in tags.items():
        client.set_model_version_tag(model_name, str(version), key, str(value))
