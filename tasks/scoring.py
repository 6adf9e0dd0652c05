"""Scoring tasks: load the champion, score tickets changed since the last run, store predictions as history.

Models are cached per (tracking URI, name, version) in the process, so an hourly worker loads a version once
and a promotion is picked up on the next run. No champion → a clear error, never a silent fallback model.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ticketlens.adapters.settings import Settings
from ticketlens.adapters.tracking import (
    CHAMPION,
    RegistryUnavailableError,
    describe_tracking_uri,
    load_sklearn_model,
    load_version,
    scrub_uri,
    version_artifact_uri,
    version_by_alias,
)
from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.load import get_stream_state, save_stream_state
from ticketlens.adapters.warehouse.predictions import (
    EchoMarks,
    current_fingerprints,
    read_new_tickets,
    unscored_in_window,
    update_content_fingerprints,
    write_predictions,
)
from ticketlens.models.echoes import classify_versions
from ticketlens.models.scoring import score_tickets
from ticketlens.models.taxonomy import load_taxonomy
from ticketlens.models.windows import as_utc

SCORING_STREAM = "scoring"  # its extraction_state watermark: max tickets.extracted_at scored, in µs
_CACHE: dict[tuple[str, str, str], Any] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class ScoringResult:
    """One score-new-tickets run: tickets scored with ``model_version``, and why the others kept their prediction
    (write-back echoes, changes to fields scoring does not read, already scored by this version)."""

    model_version: str
    scored: int
    echoes: int
    unchanged_inputs: int
    already_current: int


@dataclass(frozen=True)
class WindowScoringResult:
    """One score-window-tickets run: tickets of the window scored, and those that kept their prediction."""

    model_version: str
    scored: int
    kept: int


class ChampionMissingError(RuntimeError):
    """No registered version carries the alias the scorer was asked to use."""


def resolve_version(settings: Settings, alias: str = CHAMPION, version: str | None = None) -> str:
    if version is not None:
        return str(version)
    try:
        found = version_by_alias(settings.mlflow_tracking_uri, settings.model_name, alias)
    except RegistryUnavailableError as exc:
        return pinned_version(settings, exc)
    if found is None:
        raise ChampionMissingError(
            f"No version of '{settings.model_name}' has the alias '{alias}' in the MLflow registry at "
            f"TICKETLENS_MLFLOW_TRACKING_URI={describe_tracking_uri(settings.mlflow_tracking_uri)}. Run the "
            f"nightly-retrain flow first (it registers and promotes a champion), or check the tracking URI."
        )
    return str(found.version)


def pinned_version(settings: Settings, outage: RegistryUnavailableError) -> str:
    """The explicitly pinned, locally cached version during a registry outage — or a clear failure."""
    hint = ("Scoring stopped before writing anything. To keep scoring through an outage with a known model, set "
            "TICKETLENS_MLFLOW_CACHE_DIR and TICKETLENS_MLFLOW_PINNED_VERSION (a version an earlier run cached).")
    if not settings.mlflow_cache_dir or not settings.mlflow_pinned_version:
        raise RegistryUnavailableError(f"{outage}. {hint}") from None
    pinned = str(settings.mlflow_pinned_version)
    if not (cache_path(settings, settings.model_name, pinned) / "MLmodel").exists():
        raise RegistryUnavailableError(
            f"{outage}. TICKETLENS_MLFLOW_PINNED_VERSION={pinned} is not cached in TICKETLENS_MLFLOW_CACHE_DIR="
            f"{settings.mlflow_cache_dir} (a run with MLflow reachable caches the versions it loads)."
        ) from None
    get_run_logger().warning(
        "%s. Scoring with the explicitly pinned cached version %s v%s from %s (TICKETLENS_MLFLOW_PINNED_VERSION); "
        "predictions record that version.", outage, settings.model_name, pinned, settings.mlflow_cache_dir)
    return pinned


def cache_path(settings: Settings, name: str, version: str) -> Path:
    return Path(settings.mlflow_cache_dir or ".").expanduser() / name / str(version)


def load_registered(settings: Settings, name: str, version: str):
    """A registered version, from the local cache when configured (and filling it), else from MLflow."""
    import mlflow

    path = cache_path(settings, name, version) if settings.mlflow_cache_dir else None
    if path is not None and (path / "MLmodel").exists():
        return load_sklearn_model(str(path))
    try:
        model = load_version(settings.mlflow_tracking_uri, name, version, settings.mlflow_artifact_location)
        if path is not None:
            staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=_ensure_dir(path.parent)))
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=version_artifact_uri(settings.mlflow_tracking_uri, name, version,
                                                  settings.mlflow_artifact_location), dst_path=str(staging))
            Path(local).rename(path)  # atomic: a cache entry is complete or absent
            shutil.rmtree(staging, ignore_errors=True)  # the download lands in staging/<last path part>
    except RegistryUnavailableError:
        raise
    except Exception as exc:
        raise RegistryUnavailableError(
            f"Could not load {name} v{version} from the MLflow registry at TICKETLENS_MLFLOW_TRACKING_URI="
            f"{describe_tracking_uri(settings.mlflow_tracking_uri)} ({type(exc).__name__}: "
            f"{scrub_uri(str(exc).splitlines()[0][:300], settings.mlflow_tracking_uri) if str(exc) else ''})"
        ) from None
    return model


def _ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_classifier(settings: Settings, version: str):
    key = (settings.mlflow_tracking_uri, settings.model_name, version)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = load_registered(settings, settings.model_name, version)
        return _CACHE[key]


def load_sentiment(settings: Settings):
    """The registered CSAT sentiment champion when there is one, else VADER (see models.sentiment).

    The choice is remembered in the model cache dir (when configured), so a registry outage with a pinned
    classifier keeps the same sentiment model instead of silently switching.
    """
    from ticketlens.models.sentiment import CsatSentiment, VaderSentiment

    choice_file = Path(settings.mlflow_cache_dir).expanduser() / "sentiment-choice.json" \
        if settings.mlflow_cache_dir else None
    try:
        found = version_by_alias(settings.mlflow_tracking_uri, settings.sentiment_model_name, CHAMPION)
        version = None if found is None else str(found.version)
        if choice_file is not None:
            _ensure_dir(choice_file.parent)
            choice_file.write_text(json.dumps({"version": version}))
    except RegistryUnavailableError as exc:
        if choice_file is None or not settings.mlflow_pinned_version or not choice_file.exists():
            raise RegistryUnavailableError(f"{exc}. Scoring stopped before writing anything.") from None
        version = json.loads(choice_file.read_text())["version"]
        get_run_logger().warning("MLflow unreachable: sentiment from the cached choice (%s).",
                                 f"{settings.sentiment_model_name} v{version}" if version else "VADER")
    if version is None:
        key = ("vader", "", "")
        with _LOCK:
            if key not in _CACHE:
                _CACHE[key] = VaderSentiment()
            return _CACHE[key]
    key = (settings.mlflow_tracking_uri, settings.sentiment_model_name, version)
    with _LOCK:
        if key not in _CACHE:
            model = CsatSentiment()
            model.pipeline = load_registered(settings, settings.sentiment_model_name, version)
            _CACHE[key] = model
        return _CACHE[key]


def _use_workers(settings: Settings, rows: int) -> bool:
    from ticketlens.models.offload import can_start_workers

    return (bool(settings.scoring_workers_min_rows) and rows >= settings.scoring_workers_min_rows
            and can_start_workers())


def _worker(key: tuple, make):
    with _LOCK:
        if key not in _CACHE or _CACHE[key].broken:  # a worker that died is replaced on the next batch
            _CACHE[key] = make()
        return _CACHE[key]


def sentiment_for(settings: Settings, rows: int):
    """The sentiment model for a batch of ``rows`` tickets: large batches (backfill chunks) score it in one
    long-lived worker process beside the classifier (``models.offload``), small hourly batches in-process,
    where starting a worker would cost more than it saves. Same model either way."""
    from ticketlens.models.sentiment import SentimentWorker

    model = load_sentiment(settings)
    if not _use_workers(settings, rows):
        return model
    return _worker(("sentiment-worker", id(model), ""), lambda: SentimentWorker(model))


def language_detector_for(settings: Settings, rows: int):
    """Language detection for a batch: lingua on all cores in-process for small batches; for large ones a
    single-threaded lingua in its own worker process, which leaves the classifier its core."""
    from functools import partial

    from ticketlens.models.language import detect_languages
    from ticketlens.models.offload import ProcessWorker

    if not _use_workers(settings, rows):
        return detect_languages
    return _worker(("language-worker", "", ""), lambda: ProcessWorker(partial(detect_languages, parallel=False)))


def predict_frame(settings: Settings, frame: pd.DataFrame, version: str) -> pd.DataFrame:
    if frame.empty:
        return pd.DataFrame()
    scored = score_tickets(frame, load_classifier(settings, version), sentiment_for(settings, len(frame)),
                           language_detector_for(settings, len(frame)), load_taxonomy(), settings.routing.policy())
    if not scored.empty:
        scored["model_name"] = settings.model_name
        scored["model_version"] = version
        if "input_sha256" in frame:  # the fingerprints of the scored ticket version (models.echoes)
            marks = frame.set_index("id")[["input_sha256", "content_sha256"]].reindex(scored["ticket_id"])
            scored["input_sha256"] = marks["input_sha256"].to_numpy()
            scored["content_sha256"] = marks["content_sha256"].to_numpy()
    return scored


def drop_unchanged(conn: sa.Connection, frame: pd.DataFrame, model_name: str,
                   version: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """The tickets of ``frame`` that need a new prediction, and how many did not (``echo`` / ``kept``).

    A version whose scoring inputs match those stored with the current prediction of this model version keeps
    that prediction (nothing to re-score, so nothing new to push). ``echo``: nothing but TicketLens's own tags
    and fields changed; ``kept``: something else changed that scoring does not read (status, assignee...) —
    its content fingerprint is updated so that the next write-back echo of it is recognised as one.
    """
    if frame.empty or "input_sha256" not in frame:
        return frame, {"echo": 0, "kept": 0, "current": 0}
    ids = [int(i) for i in frame["id"]]
    updated = [as_utc(v) for v in frame["updated_at"]]
    split = classify_versions(zip(ids, updated, frame["input_sha256"], frame["content_sha256"], strict=True),
                              current_fingerprints(conn, model_name, version, ids))
    content = dict(zip(ids, frame["content_sha256"], strict=True))
    update_content_fingerprints(conn, model_name, version, {i: content[i] for i in split["kept"]})
    keep = frame["id"].isin(split["rescore"])
    return frame[keep], {k: len(split[k]) for k in ("echo", "kept", "current")}


def rescore_in_chunks(engine: sa.Engine, fetch, predict, run_id: str) -> int:
    """Keyset chunks read → predict → write, with the database I/O overlapped with the model.

    ``fetch(conn, after_id)`` returns the next chunk (ordered by id) and ``predict(frame)`` its prediction rows.
    One background thread reads chunk i+1 and writes chunk i-1 while chunk i is scored: the drivers release the
    GIL, so on PostgreSQL and SQLite the I/O (about a fifth of a backfill) hides behind the classifier. At most
    three chunks are in memory. Each chunk's write is its own transaction; a failure surfaces here and the
    caller's partition is not marked done, so a rerun redoes it (the writes are idempotent upserts).
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    def read(after_id: int) -> pd.DataFrame:
        with engine.connect() as conn:
            return fetch(conn, after_id)

    def write(scored: pd.DataFrame) -> int:
        with engine.begin() as conn:
            return write_predictions(conn, scored, run_id)

    total = 0
    pending: Future | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rescore-io") as io:  # one thread: writes in order
        upcoming = io.submit(read, -1)
        while True:
            frame = upcoming.result()
            if frame.empty:
                break
            upcoming = io.submit(read, int(frame["id"].max()))
            scored = predict(frame)
            if pending is not None:
                total += pending.result()
            pending = io.submit(write, scored)
        if pending is not None:
            total += pending.result()
    return total


@task(name="score-new-tickets", cache_policy=NO_CACHE)
def score_new_tickets(settings: Settings, run_id: str, chunk: int | None = None) -> ScoringResult:
    """Score tickets loaded since the scoring watermark (``tickets.extracted_at``), chunk by chunk.

    Each chunk's predictions and the watermark that follows it commit together, so a killed run resumes.
    """
    logger = get_run_logger()
    chunk = chunk or settings.scoring_chunk_size
    version = resolve_version(settings)
    engine = get_engine(settings.warehouse_url)
    marks = EchoMarks.of(settings)
    scored_total = 0
    unchanged = {"echo": 0, "kept": 0, "current": 0}
    while True:
        with engine.begin() as conn:
            frame = read_new_tickets(conn, get_stream_state(conn, SCORING_STREAM), chunk, marks)
            if frame.empty:
                break
            changed, skipped = drop_unchanged(conn, frame, settings.model_name, version)
            scored = predict_frame(settings, changed, version)
            scored_total += write_predictions(conn, scored, run_id)
            last = frame.iloc[-1]
            mark = pd.Timestamp(last["extracted_at"])
            save_stream_state(conn, SCORING_STREAM, cursor=str(int(last["id"])), watermark=int(mark.value // 1000),
                              run_id=run_id)
        unchanged = {k: unchanged[k] + skipped[k] for k in unchanged}
        logger.info("Scored %d of %d loaded tickets with %s v%s; not re-scored: %d already scored in this version "
                    "(e.g. by the backfill), %d write-back echoes (only TicketLens's own tags/fields changed), %d "
                    "with unchanged scoring inputs", len(changed), len(frame), settings.model_name, version,
                    skipped["current"], skipped["echo"], skipped["kept"])
    return ScoringResult(model_version=version, scored=scored_total, echoes=unchanged["echo"],
                         unchanged_inputs=unchanged["kept"], already_current=unchanged["current"])


@task(name="score-window-tickets", cache_policy=NO_CACHE)
def score_window_tickets(settings: Settings, run_id: str, start: datetime, end: datetime,
                         chunk: int | None = None) -> WindowScoringResult:
    """Make sure every ticket updated in the run's window carries a current prediction by the champion.

    ``score-new-tickets`` follows a watermark, so after it this usually finds nothing; it matters when an hour
    is re-run (after a failed run, a restored warehouse, or a rollback of the champion alias): the tickets of
    that hour are scored again, idempotently (same ticket version + model version = the same row).
    """
    chunk = chunk or settings.scoring_chunk_size
    version = resolve_version(settings)
    engine = get_engine(settings.warehouse_url)
    marks = EchoMarks.of(settings)
    last_id, total, kept = -1, 0, 0
    while True:
        with engine.begin() as conn:
            frame = unscored_in_window(conn, settings.model_name, version, start, end, last_id, chunk, marks)
            if frame.empty:
                break
            # A write-back echo (or another change scoring does not read) keeps its prediction here too.
            changed, skipped = drop_unchanged(conn, frame, settings.model_name, version)
            kept += sum(skipped.values())
            total += write_predictions(conn, predict_frame(settings, changed, version), run_id)
            last_id = int(frame["id"].max())
    get_run_logger().info("Window %s → %s: %d tickets without a current v%s prediction scored (%d kept their "
                          "prediction: scoring inputs unchanged)", start.isoformat(), end.isoformat(), total,
                          version, kept)
    return WindowScoringResult(model_version=version, scored=total, kept=kept)
