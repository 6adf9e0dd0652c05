"""Preloaded only by the fault suite's forkserver: import Great Expectations, build the language detector and
load the champion once, before any child is forked, so each killed or rerun child spends its time on the step,
not on loading.

It reads FAULT_WARM_MLFLOW_URI / FAULT_WARM_MODEL_VERSION from the environment the forkserver started with.
Nothing here starts threads (lingua's thread pool starts on the first detection, in the child).
"""

from __future__ import annotations

import os


def warm() -> None:
    import great_expectations  # noqa: F401 - ~12 s to import here; every ingest child would pay it otherwise

    from ticketlens.models.language import DEFAULT_LANGUAGES, _detector

    _detector(tuple(DEFAULT_LANGUAGES))
    uri, version = os.environ.get("FAULT_WARM_MLFLOW_URI"), os.environ.get("FAULT_WARM_MODEL_VERSION")
    if uri and version:
        from ticketlens.adapters.settings import load_settings
        from ticketlens.tasks.scoring import load_classifier, load_sentiment

        settings = load_settings(_env_file=None, mlflow_tracking_uri=uri)
        load_classifier(settings, version)
        load_sentiment(settings)


if os.environ.get("FAULT_WARM_MODEL_VERSION"):
    warm()
