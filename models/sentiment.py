"""Ticket sentiment: an offline lexicon baseline (VADER) versus a model trained on CSAT comments.

Both produce a score in [-1, 1] (negative → positive) and a label negative / neutral / positive with the same
cut-offs, so they are compared on equal terms: on held-out rated tickets, how well does the score of the rating
comment separate bad from good ratings (ROC AUC) and how accurate is "negative ⇒ bad" (macro-F1 on bad/good)?
The better one ships (the CSAT model must beat VADER by a margin); both numbers go to MLflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ticketlens.models.offload import ProcessWorker
from ticketlens.models.text import mask_pii

# scikit-learn is imported where it is used: a VADER-only SentimentWorker process then starts in well under a
# second instead of the ~4 s that importing sklearn takes on these machines.

NEGATIVE_BELOW = -0.25
POSITIVE_ABOVE = 0.25


def label_scores(scores: np.ndarray) -> list[str]:
    scores = np.asarray(scores, dtype=float)
    return ["negative" if s <= NEGATIVE_BELOW else "positive" if s >= POSITIVE_ABOVE else "neutral" for s in scores]


class VaderSentiment:
    """The lexicon baseline: VADER's compound score (no training, works offline)."""

    name = "vader"

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._analyzer = SentimentIntensityAnalyzer()

    def fit(self, texts: Sequence[str], bad: Sequence[bool]) -> VaderSentiment:
        return self

    def __getstate__(self) -> dict:
        return {}  # the lexicon is rebuilt from the package on the other side (cheaper than pickling it)

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    def score(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([self._analyzer.polarity_scores(t or "")["compound"] for t in texts], dtype=float)


class CsatSentiment:
    """TF-IDF + logistic regression trained to tell bad-rating comments from good ones; score = 1 − 2·P(bad)."""

    name = "csat_model"

    def __init__(self, C: float = 4.0) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion, Pipeline

        self.pipeline = Pipeline([
            ("features", FeatureUnion([
                ("word", TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)),
                ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=2, sublinear_tf=True)),
            ])),
            ("model", LogisticRegression(C=C, max_iter=1000, class_weight="balanced")),
        ])

    def fit(self, texts: Sequence[str], bad: Sequence[bool]) -> CsatSentiment:
        self.pipeline.fit([mask_pii(t or "") for t in texts], np.asarray(bad, dtype=bool))
        return self

    def score(self, texts: Sequence[str]) -> np.ndarray:
        proba = self.pipeline.predict_proba([mask_pii(t or "") for t in texts])
        bad_col = list(self.pipeline.classes_).index(True)
        return 1.0 - 2.0 * proba[:, bad_col]


class SentimentWorker(ProcessWorker):
    """A sentiment model scored in its own process (see ``models.offload``): VADER holds the GIL for ~0.6 s per
    5,000 tickets, a fifth of a backfill chunk here; beside the classifier it costs almost no wall time."""

    def __init__(self, model) -> None:
        super().__init__(model.score)
        self.model = model
        self.name = model.name

    def score(self, texts: Sequence[str]) -> np.ndarray:
        return self(list(texts))


@dataclass(frozen=True)
class SentimentComparison:
    metrics: dict[str, dict[str, float]]  # model name → {"roc_auc", "macro_f1", "rows"}
    winner: str
    reason: str = ""  # the rule and the numbers that decided, in words (logs, decision artifact, demo)


def evaluate_sentiment(model, texts: Sequence[str], bad: Sequence[bool]) -> dict[str, float]:
    from sklearn.metrics import f1_score, roc_auc_score

    bad = np.asarray(bad, dtype=bool)
    scores = model.score(texts)
    predicted_bad = np.array([lab == "negative" for lab in label_scores(scores)])
    auc = float(roc_auc_score(bad, -scores)) if 0 < bad.sum() < len(bad) else float("nan")
    return {"roc_auc": auc, "macro_f1": float(f1_score(bad, predicted_bad, average="macro", zero_division=0)),
            "rows": float(len(bad))}


def compare_sentiment(
    train_texts: Sequence[str], train_bad: Sequence[bool], test_texts: Sequence[str], test_bad: Sequence[bool],
    margin: float = 0.0,
) -> tuple[SentimentComparison, dict[str, object]]:
    """Fit both on the training texts, score both on held-out texts; the CSAT model wins only by beating
    VADER's ROC AUC by ``margin`` without a worse macro-F1 (the lexicon is the simpler, domain-independent
    default)."""
    models = {"vader": VaderSentiment().fit(train_texts, train_bad)}
    if len(set(map(bool, train_bad))) == 2:
        models["csat_model"] = CsatSentiment().fit(train_texts, train_bad)
    metrics = {name: evaluate_sentiment(m, test_texts, test_bad) for name, m in models.items()}
    auc = {n: float(np.nan_to_num(m["roc_auc"], nan=-1.0)) for n, m in metrics.items()}
    # The labels (negative/neutral/positive) drive tiering and auto-reply, so the CSAT model must also not
    # be worse on macro-F1 of "negative ⇒ bad" — a model that calls everything negative loses here.
    better = "csat_model" in auc and auc["csat_model"] >= auc["vader"] + margin \
        and metrics["csat_model"]["macro_f1"] >= metrics["vader"]["macro_f1"]
    winner = "csat_model" if better else "vader"
    return SentimentComparison(metrics=metrics, winner=winner, reason=sentiment_reason(metrics, margin, winner)), models


def sentiment_reason(metrics: dict[str, dict[str, float]], margin: float, winner: str) -> str:
    """Why ``winner`` ships, stating the rule: the CSAT model must beat VADER's ROC AUC by ``margin`` without a
    worse macro-F1; VADER is the default. Says so when both are near chance (AUC < 0.6)."""
    vader = metrics["vader"]
    if "csat_model" not in metrics:
        return "vader ships: no CSAT-trained model (the rated comments had only one score)"
    csat = metrics["csat_model"]
    rule = (f"rule: the CSAT model ships only if its ROC AUC beats VADER's by ≥ {margin:.2f} with a macro-F1 at "
            "least as good; otherwise VADER, the simpler domain-independent default")
    numbers = (f"ROC AUC vader {vader['roc_auc']:.3f} vs csat_model {csat['roc_auc']:.3f}, macro-F1 "
               f"{vader['macro_f1']:.3f} vs {csat['macro_f1']:.3f}")
    near_chance = max(vader["roc_auc"], csat["roc_auc"]) < 0.6
    note = "; both are near chance (0.5) on ticket text, so sentiment labels are weak signals here" if near_chance else ""
    return f"{winner} ships ({numbers}; {rule}){note}"
