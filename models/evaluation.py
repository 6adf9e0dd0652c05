"""Classifier evaluation and the champion/challenger promotion rule (pure functions).

Every metric is computed from (true labels, predicted probabilities, class order) so that the champion and the
challenger are scored identically on the same holdout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, log_loss


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width confidence bins: mean |accuracy − confidence| weighted by bin size."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    if confidence.size == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def classification_metrics(
    y_true: Sequence[str], proba: np.ndarray, classes: Sequence[str], *, threshold: float
) -> dict[str, float]:
    """Accuracy, macro/weighted F1, top-2, log loss, ECE, coverage and accuracy above ``threshold``, per-class F1.

    Labels the model has never seen count as errors (they cannot be predicted) and are kept in log loss by
    giving them a tiny probability, instead of being silently dropped.
    """
    y_true = np.asarray(list(y_true), dtype=object)
    classes = np.asarray(list(classes), dtype=object)
    proba = np.asarray(proba, dtype=float)
    order = np.argsort(-proba, axis=1)
    pred = classes[order[:, 0]]
    top2 = classes[order[:, : min(2, len(classes))]]
    confidence = proba[np.arange(len(proba)), order[:, 0]]
    correct = pred == y_true
    labels = sorted(set(y_true) | set(classes))
    index = {c: i for i, c in enumerate(classes)}
    eps = 1e-15
    p_true = np.array([proba[i, index[y]] if y in index else eps for i, y in enumerate(y_true)])
    covered = confidence >= threshold
    metrics = {
        "accuracy": float(accuracy_score(y_true, pred)),
        "macro_f1": float(f1_score(y_true, pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, pred, labels=labels, average="weighted", zero_division=0)),
        "top2_accuracy": float(np.mean([y in row for y, row in zip(y_true, top2, strict=True)])),
        "log_loss": float(-np.mean(np.log(np.clip(p_true, eps, 1.0)))),
        "ece": expected_calibration_error(confidence, correct),
        "coverage_at_threshold": float(covered.mean()) if len(covered) else 0.0,
        "accuracy_at_threshold": float(correct[covered].mean()) if covered.any() else 0.0,
        "holdout_rows": float(len(y_true)),
    }
    per_class = f1_score(y_true, pred, labels=labels, average=None, zero_division=0)
    for label, value in zip(labels, per_class, strict=True):
        metrics[f"f1.{label}"] = float(value)
    return metrics


# sklearn's log_loss is kept importable for callers that want the reference implementation.
__all__ = ["PromotionDecision", "classification_metrics", "decide_promotion", "expected_calibration_error",
           "log_loss"]


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    challenger_score: float
    champion_score: float | None
    metric: str
    margin: float
    compared_rows: int | None = None  # tickets both models were scored on (none of them seen by either)
    too_small: bool = False  # refused because the fair holdout is below the minimum


def decide_promotion(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    *,
    metric: str = "macro_f1",
    margin: float = 0.005,
    min_holdout_rows: int = 1,
) -> PromotionDecision:
    """Promote when there is no champion, or the challenger beats it by at least ``margin`` on ``metric``.

    Both score dicts must come from the *same* tickets, and none of them may be in either model's training data
    (``models.training_data.unseen_by_champion``): a champion scored on tickets it was trained on looks better
    than it is, which silently tilts the decision towards keeping it. When fewer than ``min_holdout_rows``
    tickets are left for that comparison the decision is refused ("too small to decide"), never guessed.
    """
    score = float(challenger[metric])
    if champion is None:
        rows = int(challenger.get("holdout_rows", min_holdout_rows))
        note = f" (warning: holdout has only {rows} tickets < {min_holdout_rows})" if rows < min_holdout_rows else ""
        return PromotionDecision(True, "no champion yet" + note, score, None, metric, margin, rows)
    rows = int(champion.get("holdout_rows", min_holdout_rows))
    if rows < min_holdout_rows:
        return PromotionDecision(
            False, f"holdout too small to decide: only {rows} tickets unseen by the champion "
            f"(< {min_holdout_rows}); champion kept until more new tickets are labelled",
            score, None, metric, margin, rows, too_small=True,
        )
    best = float(champion[metric])
    if score >= best + margin:
        return PromotionDecision(
            True, f"{metric} {score:.4f} beats champion {best:.4f} by ≥ {margin:g} on {rows} unseen tickets",
            score, best, metric, margin, rows,
        )
    return PromotionDecision(
        False, f"{metric} {score:.4f} does not beat champion {best:.4f} by {margin:g} on {rows} unseen tickets",
        score, best, metric, margin, rows,
    )
