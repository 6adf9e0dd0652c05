"""The classifier pipeline factory: raw ticket fields in, taxonomy leaves and calibrated probabilities out."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
from ticketlens.models.classifier import (
    DEFAULT_PROFILE,
    INPUT_EXAMPLE,
    PROFILES,
    SKOPS_TRUSTED_TYPES,
    ClassifierConfig,
    build_pipeline,
    resolve_config,
)
from ticketlens.models.evaluation import classification_metrics


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


def test_encoder_ships_offline_and_gives_unit_vectors(monkeypatch):
    """The default install carries the encoder: loaded from site-packages with every hub access switched off."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from ticketlens.models.encoder import get_encoder, model_files

    model, tokenizer = model_files()
    assert model.is_file() and tokenizer.is_file() and "site-packages" in str(model)
    vectors = get_encoder().encode(["I lost my card", "my card was stolen", "what is the exchange rate", ""])
    assert vectors.shape == (4, 384) and np.allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2  # meaning, not spelling
    assert np.allclose(get_encoder().encode(["my card was stolen"])[0], vectors[1], atol=1e-5)  # order-free batching


TOY = pd.DataFrame({
    "subject": ["reset my password", "app crashes on open", "refund please", "card lost", "login fails"] * 6,
    "description": ["forgot it", "it crashes at start", "money back", "stolen card", "cannot sign in"] * 6,
})
TOY_Y = ["account", "bug", "billing", "card", "account"] * 6


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_profile_round_trips_through_mlflow_skops(profile, tmp_path):
    """What log-and-register does: skops serialisation with the trusted custom types, then load and predict."""
    import mlflow.sklearn

    pipeline = build_pipeline(resolve_config(profile, {"word_min_df": 1, "char_min_df": 1})).fit(TOY, TOY_Y)
    path = tmp_path / "model"
    mlflow.sklearn.save_model(pipeline, str(path), serialization_format="skops",
                              skops_trusted_types=SKOPS_TRUSTED_TYPES, pip_requirements=["scikit-learn"])
    loaded = mlflow.sklearn.load_model(str(path))
    assert np.allclose(loaded.predict_proba(TOY), pipeline.predict_proba(TOY), atol=1e-6)
    assert loaded.predict(INPUT_EXAMPLE)[0] in set(TOY_Y)


def test_cascade_sends_only_low_margin_tickets_to_the_encoder(monkeypatch):
    from ticketlens.models import encoder

    config = resolve_config("cascade", {"word_min_df": 1, "char_min_df": 1})
    pipeline = build_pipeline(config).fit(TOY, TOY_Y)
    model = pipeline.named_steps["model"]
    calls = []
    real = encoder.OnnxSentenceEncoder.encode
    monkeypatch.setattr(encoder.OnnxSentenceEncoder, "encode", lambda self, texts: calls.append(len(texts))
                        or real(self, texts))
    model.margin = 0.0  # nobody is uncertain enough: the fast stage answers alone
    fast = pipeline.predict_proba(TOY)
    assert calls == []
    model.margin = 1.01  # everybody goes to the full model
    full = pipeline.predict_proba(TOY)
    assert calls == [len(TOY)]
    prepared = pipeline.named_steps["prepare"].transform(TOY)
    assert np.allclose(fast, model.fast_.predict_proba(model.text_features_.transform(prepared)))
    assert not np.allclose(fast, full)


def test_profiles_and_overrides_are_checked():
    assert resolve_config("tfidf") == ClassifierConfig()
    assert resolve_config(DEFAULT_PROFILE).embeddings  # the default install's profile uses the encoder
    assert resolve_config("tfidf", {"C": 3.0}).C == 3.0
    with pytest.raises(ValueError, match="choose one of"):
        resolve_config("bert")
    with pytest.raises(ValueError, match="embedings"):
        resolve_config("tfidf", {"embedings": True})
