"""The sentiment worker process: same scores as in-process, survives its own death, never outlives its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpdesk_sim.generator import GeneratorConfig, generate_dataset
from models.classifier import build_pipeline
from models.language import detect_languages
from models.routing import RoutingPolicy
from models.scoring import score_tickets
from models.sentiment import SentimentWorker, VaderSentiment, score_with, submit_scores
from models.taxonomy import load_taxonomy

ROOT = Path(__file__).resolve().parents[1]
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


def test_score_tickets_is_identical_with_a_worker(trained_pipeline):
    frame = pd.DataFrame({"id": range(1, len(TEXTS) + 1), "updated_at": pd.Timestamp("2024-01-01", tz="UTC"),
                          "subject": ["Help"] * len(TEXTS), "description": TEXTS, "tags": [["web"]] * len(TEXTS)})
    args = (detect_languages, load_taxonomy(), RoutingPolicy())
    worker = SentimentWorker(VaderSentiment())
    try:
        offloaded = score_tickets(frame, trained_pipeline, worker, *args)
    finally:
        worker.close()
    pd.testing.assert_frame_equal(offloaded, score_tickets(frame, trained_pipeline, VaderSentiment(), *args))


def test_a_worker_that_dies_falls_back_to_the_same_model_in_process():
    worker = SentimentWorker(VaderSentiment())
    try:
        worker.score(["warm up"])
        for child in __import__("multiprocessing").active_children():
            os.kill(child.pid, signal.SIGKILL)
        time.sleep(0.5)
        future = submit_scores(worker, TEXTS)
        np.testing.assert_array_equal(score_with(worker, TEXTS, future), VaderSentiment().score(TEXTS))
        assert worker.broken, "a dead worker must be flagged so tasks.scoring.sentiment_for replaces it"
    finally:
        worker.close()


def test_worker_exits_when_its_parent_is_killed(tmp_path):
    """A SIGKILLed backfill must not leave an orphaned sentiment process behind."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import multiprocessing, sys, time
        from models.sentiment import SentimentWorker, VaderSentiment

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
