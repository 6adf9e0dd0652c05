"""Ticket-category classifier pipelines (scikit-learn, Prefect-free).

The pipeline takes raw ticket fields, prepares the text (``models.text.prepare_text``) and predicts the taxonomy
leaf; parent and feedback type are looked up in the taxonomy, never predicted separately, so they are always
consistent with the leaf.

Named profiles (``PROFILES``; ``TICKETLENS_CLASSIFIER_PROFILE`` chooses one, README has the measured numbers):
- ``tfidf``: word 1-2-gram + character 2-5-gram TF-IDF (sublinear tf) into a multinomial logistic regression.
  Logistic regression: as accurate as a calibrated linear SVM here, one fit, well-calibrated probabilities.
  Character n-grams carry typos, inflections and the ~10% non-English tickets. Fastest; for cheap backfills.
- ``minilm``: the same TF-IDF joined with all-MiniLM-L6-v2 sentence vectors (int8 ONNX from the default install,
  ``models.encoder``; no torch, no download), one logistic regression on both: the words a class uses *and*
  what the ticket means (paraphrases TF-IDF has never seen).
- ``cascade``: TF-IDF first; the ``minilm`` model only for tickets whose top-2 probability margin is small.
- ``static``: TF-IDF joined with static word vectors distilled from the encoder at training time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from ticketlens.models.text import prepare_text

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
    """all-MiniLM-L6-v2 sentence vectors (int8 ONNX, ``models.encoder``; L2-normalised, × ``weight``) as features.

    Stateless: the encoder ships in the default install (no torch, no download) and is loaded once per process,
    never serialised with the pipeline, so a registered model stays a few MB of scikit-learn state.
    """

    def __init__(self, weight: float = 1.0, max_tokens: int = 128, batch_size: int = 64):
        self.weight = weight
        self.max_tokens = max_tokens
        self.batch_size = batch_size

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        from scipy import sparse

        from ticketlens.models.encoder import get_encoder

        vectors = get_encoder(max_tokens=self.max_tokens, batch_size=self.batch_size).encode(list(X))
        return sparse.csr_matrix(vectors * np.float32(self.weight))


class StaticEmbedder(BaseEstimator, TransformerMixin):
    """Static word vectors distilled from the sentence encoder at training time (model2vec-style).

    ``fit`` encodes every word of the training vocabulary once with the encoder; ``transform`` is then a sparse
    (tf-idf weights × word vectors) product, L2-normalised and × ``weight``, as fast as TF-IDF — no encoder at
    prediction time. Measured against the contextual encoder in ``make bench-accuracy``.
    """

    def __init__(self, weight: float = 1.0, ngram_max: int = 1, min_df: int = 1):
        self.weight = weight
        self.ngram_max = ngram_max
        self.min_df = min_df

    def fit(self, X, y=None):
        from ticketlens.models.encoder import get_encoder

        self.vectorizer_ = TfidfVectorizer(
            analyzer="word", ngram_range=(1, self.ngram_max), min_df=self.min_df, lowercase=True,
            token_pattern=r"(?u)<\w+>|\b\w+\b", sublinear_tf=True, norm=None, dtype=np.float32,  # noqa: S106
        ).fit(list(X))
        self.vectors_ = get_encoder().encode(list(self.vectorizer_.get_feature_names_out())).astype(np.float32)
        return self

    def transform(self, X):
        from scipy import sparse
        from sklearn.preprocessing import normalize

        dense = normalize(np.asarray(self.vectorizer_.transform(list(X)) @ self.vectors_, dtype=np.float32))
        return sparse.csr_matrix(dense * np.float32(self.weight))


class CascadeClassifier(BaseEstimator, ClassifierMixin):
    """TF-IDF logistic regression first; the encoder model only for tickets whose top-2 margin is below ``margin``.

    Both stages are fitted on the same rows. Confident tickets (most of them) never reach the encoder, so batch
    throughput is several times the full model's; the accuracy lost is what the encoder would have fixed on
    tickets the fast stage was already sure about (measured in ``make bench-accuracy``).
    """

    def __init__(self, text_features=None, embedder=None, C: float = 10.0, max_iter: int = 2000,
                 class_weight: str | None = None, margin: float = 0.3):
        self.text_features = text_features
        self.embedder = embedder
        self.C = C
        self.max_iter = max_iter
        self.class_weight = class_weight
        self.margin = margin

    def _lr(self):
        return LogisticRegression(C=self.C, max_iter=self.max_iter, class_weight=self.class_weight)

    def fit(self, X, y):
        from scipy import sparse

        X = list(X)
        self.text_features_ = clone(self.text_features)
        tfidf = self.text_features_.fit_transform(X)
        self.fast_ = self._lr().fit(tfidf, y)
        self.embedder_ = clone(self.embedder).fit(X)
        self.full_ = self._lr().fit(sparse.hstack([tfidf, self.embedder_.transform(X)]).tocsr(), y)
        self.classes_ = self.fast_.classes_
        return self

    def predict_proba(self, X):
        from scipy import sparse

        X = list(X)
        tfidf = self.text_features_.transform(X)
        proba = self.fast_.predict_proba(tfidf)
        top2 = np.sort(proba, axis=1)[:, -2:] if proba.shape[1] > 1 else np.hstack([0 * proba, proba])
        hard = np.flatnonzero(top2[:, 1] - top2[:, 0] < self.margin)
        if hard.size:
            embedded = self.embedder_.transform([X[i] for i in hard])
            proba[hard] = self.full_.predict_proba(sparse.hstack([tfidf[hard], embedded]).tocsr())
        return proba

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def _str(value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value)


@dataclass(frozen=True)
class ClassifierConfig:
    """Every hyperparameter of the pipeline (logged to MLflow as params). Named profiles: ``PROFILES``."""

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
    # all-MiniLM-L6-v2 sentence vectors (int8 ONNX, models.encoder; in the default install) joined with TF-IDF.
    embeddings: bool = False
    embedding_weight: float = 1.0
    encoder_max_tokens: int = 128
    # With embeddings: run the encoder only for tickets whose TF-IDF top-2 probability margin is below this.
    cascade_margin: float | None = None
    # Static word vectors distilled from the encoder at training time, joined with TF-IDF (no encoder at
    # prediction time).
    static_embeddings: bool = False

    def as_params(self) -> dict[str, Any]:
        return {f"clf.{k}": v for k, v in asdict(self).items()}


#: Named configurations; ``TICKETLENS_CLASSIFIER_PROFILE`` chooses one for ``nightly-retrain`` (and the bench
#: measures each exactly as the flow builds it). Numbers: README, "Real-data benchmark: BANKING77".
PROFILES: dict[str, ClassifierConfig] = {
    # TF-IDF only: ~10x faster to score, ~2-3 points less accurate. For cheap backfills.
    "tfidf": ClassifierConfig(),
    # TF-IDF + contextual MiniLM sentence vectors for every ticket.
    "minilm": ClassifierConfig(embeddings=True, C=30.0),
    # TF-IDF first, MiniLM only for low-margin tickets: the default (accuracy of "minilm", several times faster).
    "cascade": ClassifierConfig(embeddings=True, C=30.0, cascade_margin=0.5),
    # TF-IDF + static word vectors distilled from MiniLM at training time.
    "static": ClassifierConfig(static_embeddings=True),
}
DEFAULT_PROFILE = "cascade"


def resolve_config(profile: str = DEFAULT_PROFILE, overrides: dict[str, Any] | None = None) -> ClassifierConfig:
    """The named profile with field overrides applied (what ``nightly-retrain`` trains and the bench measures)."""
    if profile not in PROFILES:
        raise ValueError(f"Unknown classifier profile {profile!r}: choose one of {', '.join(PROFILES)}")
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(asdict(PROFILES[profile]))
    if unknown:
        raise ValueError(f"Unknown ClassifierConfig fields {sorted(unknown)}: valid fields are "
                         f"{', '.join(asdict(PROFILES[profile]))}")
    return replace(PROFILES[profile], **overrides)


#: Custom types in a fitted pipeline that MLflow's skops serialisation must be told to trust (load and save).
SKOPS_TRUSTED_TYPES = [f"{__name__}.{name}" for name in
                       ("TicketTextPreparer", "SentenceEmbedder", "StaticEmbedder", "CascadeClassifier")]


def _text_features(c: ClassifierConfig) -> FeatureUnion:
    return FeatureUnion([
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


def build_pipeline(config: ClassifierConfig | None = None) -> Pipeline:
    """Prepare text → TF-IDF (words + characters) [+ sentence / static vectors] → logistic regression.

    With ``embeddings`` and ``cascade_margin`` the last step is a ``CascadeClassifier`` instead.
    """
    c = config or ClassifierConfig()
    embedder = SentenceEmbedder(weight=c.embedding_weight, max_tokens=c.encoder_max_tokens)
    if c.embeddings and c.cascade_margin is not None:
        cascade = CascadeClassifier(text_features=_text_features(c), embedder=embedder, C=c.C, max_iter=c.max_iter,
                                    class_weight=c.class_weight, margin=c.cascade_margin)
        return Pipeline([("prepare", TicketTextPreparer()), ("model", cascade)])
    features = _text_features(c)
    if c.embeddings:
        features.transformer_list.append(("embed", embedder))
    if c.static_embeddings:
        features.transformer_list.append(("static", StaticEmbedder(weight=c.embedding_weight)))
    model = LogisticRegression(C=c.C, max_iter=c.max_iter, class_weight=c.class_weight)
    return Pipeline([("prepare", TicketTextPreparer()), ("features", features), ("model", model)])
