"""Helpers for the triage tests: a small registered champion, and the service served on a loopback port."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pandas as pd

from ticketlens.helpdesk_sim.dataset import Dataset
from ticketlens.helpdesk_sim.testing import free_port


def fresh(dataset: Dataset) -> Dataset:
    """A dataset a simulator may grow (tickets created through its API are inserted into ``tickets``) without
    the next test's simulator, built on the same module fixture, seeing them."""
    import dataclasses

    return dataclasses.replace(dataset, tickets=list(dataset.tickets))


def register_champion(tracking_uri: str, artifact_location: str, name: str, dataset: Dataset, *,
                      seed: int = 0, alias: str = "champion") -> str:
    """Fit the fast tfidf profile on the dataset's tickets and register it under ``name`` with ``alias``.

    The registry part is the production one (a registered version behind an alias); the model is small so
    the tests are about the service, not about training (tests/test_training.py covers that).
    """
    import mlflow

    from ticketlens.adapters.tracking import ensure_experiment, set_alias
    from ticketlens.models.classifier import build_pipeline, resolve_config

    frame = pd.DataFrame({"subject": [t.subject for t in dataset.tickets],
                          "description": [t.description for t in dataset.tickets],
                          "label": [t.true_category for t in dataset.tickets]})
    counts = frame["label"].value_counts()
    frame = frame[frame["label"].isin(counts[counts >= 3].index)].sample(frac=1.0, random_state=seed)
    pipeline = build_pipeline(resolve_config("tfidf")).fit(frame[["subject", "description"]], frame["label"])
    mlflow.set_tracking_uri(tracking_uri)
    experiment = ensure_experiment(tracking_uri, "triage-tests", artifact_location)
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.sklearn.log_model(pipeline, name="model", registered_model_name=name,
                                        serialization_format="cloudpickle")
    version = str(info.registered_model_version)
    set_alias(tracking_uri, name, alias, version)
    return version


@contextlib.contextmanager
def serving_triage(service, port: int | None = None) -> Iterator[str]:
    """The triage app (lifespan starts the service's threads) with uvicorn in a background thread."""
    import uvicorn

    from ticketlens.services.triage.app import create_app

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, name="triage", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{url}/healthz"), 60, "the triage service to start")
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"waited {timeout:.0f} s for {what}")


SECRET = "sim-signing-secret"
MODEL = "triage-test-classifier"


def create_tickets(sim, dataset, n: int, offset: int = 0) -> list[int]:
    ids = []
    auth = {"Authorization": f"Bearer {sim.oauth_token}"}
    for spec in dataset.tickets[offset:offset + n]:
        response = httpx.post(f"{sim.base_url}/api/v2/tickets.json", headers=auth, timeout=10, json={
            "ticket": {"subject": spec.subject, "comment": {"body": spec.description}, "tags": list(spec.tags)}})
        assert response.status_code == 201, response.text
        ids.append(response.json()["ticket"]["id"])
    return ids


def tagged(sim, ids: list[int], prefix: str = "tl_") -> bool:
    return all(any(t.startswith(f"{prefix}cat_") for t in sim.ticket(i)["tags"]) for i in ids)


def pushes_per_ticket(sim) -> Counter:
    return Counter(t["id"] for update in sim.updates() for t in update["tickets"])


def champion_registry(tmp_path_factory, dataset) -> dict:
    """A fresh MLflow store with a champion trained on ``dataset`` (for a module-scoped ``registry`` fixture)."""
    root = tmp_path_factory.mktemp("mlflow")
    uri, artifacts = f"sqlite:///{root / 'mlflow.db'}", str(root / "artifacts")
    return {"uri": uri, "artifacts": artifacts, "version": register_champion(uri, artifacts, MODEL, dataset)}
