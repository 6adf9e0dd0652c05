"""Worker processes for sentiment and language detection (models.offload): same results as in-process, survive
their own death, never outlive their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ticketlens.adapters.settings import RoutingSettings
from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
from ticketlens.models.classifier import build_pipeline
from ticketlens.models.language import detect_languages
from ticketlens.models.offload import ProcessWorker, finish, start
from ticketlens.models.scoring import score_tickets
from ticketlens.models.sentiment import SentimentWorker, VaderSentiment
from ticketlens.models.taxonomy import load_taxonomy

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["This is terrible, I was charged twice and nobody answers!", "Thanks a lot, works great now :)",
         "How do I change my username?", "", "NOT happy. Never again.", "not bad at all"] * 50


@pytest.fixture(scope="module")
def trained_pipeline():
    ds = generate_dataset(GeneratorConfig(seed=3, start=datetime(2026, 1, 5, tzinfo=UTC), days=5, tickets_per_day=200))
    frame = pd.DataFrame([(t.subject, t.description, t.true_category) for t in ds.tickets],
                         columns=["subject", "description", "label"])
    return build_pipeline().fit(frame[["subject", "description"]], frame["label"])


def test_worker_scores_equal_in_process_scores():
    vader = VaderSentiment()
    worker = SentimentWorker(VaderSentiment())
    try:
        np.testing.assert_array_equal(worker.score(TEXTS), vader.score(TEXTS))
        assert worker.name == "vader"
    finally:
        worker.close()


MULTILINGUAL = ["Je n'arrive pas à me connecter à mon compte depuis hier soir",
                "No puedo iniciar sesión en mi cuenta desde ayer", "Ich kann mich seit gestern nicht anmelden",
                "ログインできません。パスワードをリセットしても同じです", "I cannot log in to my account since yesterday",
                "hi", ""] * 20


def test_single_threaded_language_detection_in_a_worker_equals_the_parallel_one():
    worker = ProcessWorker(partial(detect_languages, parallel=False))
    try:
        assert worker(MULTILINGUAL) == detect_languages(MULTILINGUAL)
        assert set(detect_languages(MULTILINGUAL)) == {"fr", "es", "de", "ja", "en"}
    finally:
        worker.close()


def test_score_tickets_is_identical_with_workers(trained_pipeline):
    texts = TEXTS + MULTILINGUAL
    frame = pd.DataFrame({"id": range(1, len(texts) + 1), "updated_at": pd.Timestamp("2024-01-01", tz="UTC"),
                          "subject": ["Help"] * len(texts), "description": texts, "tags": [["web"]] * len(texts)})
    rules = (load_taxonomy(), RoutingSettings().policy())
    sentiment = SentimentWorker(VaderSentiment())
    languages = ProcessWorker(partial(detect_languages, parallel=False))
    try:
        offloaded = score_tickets(frame, trained_pipeline, sentiment, languages, *rules)
    finally:
        sentiment.close()
        languages.close()
    in_process = score_tickets(frame, trained_pipeline, VaderSentiment(), detect_languages, *rules)
    pd.testing.assert_frame_equal(offloaded, in_process)
    assert {"fr", "es", "de", "ja", "en"} <= set(offloaded["language"])


def test_a_worker_that_dies_falls_back_to_the_same_model_in_process():
    worker = SentimentWorker(VaderSentiment())
    try:
        worker.score(["warm up"])
        for child in __import__("multiprocessing").active_children():
            os.kill(child.pid, signal.SIGKILL)
        time.sleep(0.5)
        future = start(worker, TEXTS)
        np.testing.assert_array_equal(finish(worker, future, TEXTS), VaderSentiment().score(TEXTS))
        assert worker.broken, "a dead worker must be flagged so tasks.scoring.sentiment_for replaces it"
    finally:
        worker.close()


def test_worker_exits_when_its_parent_is_killed(tmp_path):
    """A SIGKILLed backfill must not leave an orphaned sentiment process behind."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import multiprocessing, sys, time
        from ticketlens.models.sentiment import SentimentWorker, VaderSentiment

        if __name__ == "__main__":
            worker = SentimentWorker(VaderSentiment())
            worker.score(["hello"])
            print(multiprocessing.active_children()[0].pid, flush=True)
            time.sleep(120)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        worker_pid = int(parent.stdout.readline())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _alive(worker_pid):
            time.sleep(0.2)
        assert not _alive(worker_pid), f"sentiment worker {worker_pid} outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def test_large_batches_get_a_worker_and_a_dead_one_is_replaced():
    from ticketlens.adapters.settings import load_settings
    from ticketlens.tasks.scoring import language_detector_for

    settings = load_settings(_env_file=None, scoring_workers_min_rows=100)
    assert language_detector_for(settings, 99) is detect_languages  # small hourly batch: in-process
    worker = language_detector_for(settings, 100)
    assert isinstance(worker, ProcessWorker) and language_detector_for(settings, 5000) is worker  # one per process
    worker.broken = True
    replacement = language_detector_for(settings, 5000)
    assert replacement is not worker and isinstance(replacement, ProcessWorker)
    assert replacement(["Ich kann mich seit gestern nicht anmelden"]) == ["de"]
    off = load_settings(_env_file=None, scoring_workers_min_rows=0)
    assert language_detector_for(off, 10**6) is detect_languages
    worker.close()
    replacement.close()


def _language_choice_in_a_daemon(queue) -> None:
    from ticketlens.adapters.settings import load_settings
    from ticketlens.tasks.scoring import language_detector_for

    chosen = language_detector_for(load_settings(_env_file=None, scoring_workers_min_rows=1), 5000)
    queue.put(chosen is detect_languages)


def test_no_worker_is_started_inside_a_daemonic_process():
    """Dask worker processes are daemonic and may not have children: large batches there stay in-process."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    daemon = ctx.Process(target=_language_choice_in_a_daemon, args=(queue,), daemon=True)
    daemon.start()
    try:
        assert queue.get(timeout=120) is True
    finally:
        daemon.join(10)
