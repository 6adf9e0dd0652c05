"""Why customers rated support badly: classify bad-rating comments into the taxonomy's ``csat_reasons`` themes.

The same machinery as the ticket-category classifier (``models.classifier.build_pipeline``: the text-preparation
step that masks PII, word + character TF-IDF, multinomial logistic regression), configured for short texts and
trained on labelled comments. Labels: the hand-written seed set ``models/csat_reason_seed.yaml`` (about a dozen
examples per theme) plus any labelled comments the caller adds. It is a small model from seed labels, not a
keyword list: its cross-validated accuracy on the seed set is reported with every run, and
``bench/csat_bench.py`` measures it on the generator's comments, whose themes are ground truth the model never
saw. A comment the model is unsure about (top probability below ``min_confidence``) is counted as ``other``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ticketlens.models.classifier import ClassifierConfig, build_pipeline
from ticketlens.models.taxonomy import Taxonomy

SEED_PATH = Path(__file__).with_name("csat_reason_seed.yaml")
FALLBACK_THEME = "other"
#: Short comments: keep every n-gram (min_df=1), smaller vocabularies than the ticket classifier.
REASON_CONFIG = ClassifierConfig(word_ngram_max=2, word_min_df=1, word_max_features=20_000, char_ngram_min=2,
                                 char_ngram_max=5, char_min_df=1, char_max_features=50_000, C=10.0)


@dataclass(frozen=True)
class ReasonTrainingSet:
    texts: list[str]
    themes: list[str]
    digest: str  # sha256 of the labelled examples (recorded with every report)


def load_seed_examples(taxonomy: Taxonomy, path: str | Path | None = None,
                       extra: pd.DataFrame | None = None) -> ReasonTrainingSet:
    """Seed labels (+ optional extra labelled comments with columns ``comment``, ``theme``), checked against the
    taxonomy's themes."""
    data = yaml.safe_load(Path(path or SEED_PATH).read_text(encoding="utf-8")) or {}
    examples: dict[str, list[str]] = data.get("examples") or {}
    texts, themes = [], []
    for theme, comments in examples.items():
        texts += [str(c) for c in comments]
        themes += [theme] * len(comments)
    if extra is not None and not extra.empty:
        texts += [str(c) for c in extra["comment"]]
        themes += [str(t) for t in extra["theme"]]
    unknown = sorted(set(themes) - set(taxonomy.csat_reasons))
    if unknown:
        raise ValueError(f"CSAT-reason labels {unknown} are not themes of the taxonomy's csat_reasons "
                         f"({sorted(taxonomy.csat_reasons)})")
    counts = pd.Series(themes).value_counts()
    too_few = sorted(counts.index[counts < 5])
    missing = sorted(set(taxonomy.csat_reasons) - set(counts.index))
    if too_few or missing:
        raise ValueError(f"every CSAT-reason theme needs at least 5 labelled comments; too few: {too_few + missing}")
    digest = hashlib.sha256(json.dumps(sorted(zip(texts, themes, strict=True))).encode()).hexdigest()
    return ReasonTrainingSet(texts, themes, digest)


def _inputs(comments: Sequence[str | None]) -> pd.DataFrame:
    return pd.DataFrame({"subject": [""] * len(comments), "description": ["" if c is None else str(c)
                                                                          for c in comments]})


def train_reason_classifier(training: ReasonTrainingSet):
    pipeline = build_pipeline(REASON_CONFIG)
    pipeline.fit(_inputs(training.texts), np.asarray(training.themes))
    return pipeline


def cross_validated_accuracy(training: ReasonTrainingSet, folds: int = 5, seed: int = 0) -> float:
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(training.themes)
    X = _inputs(training.texts)
    hits = 0
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
        model = build_pipeline(REASON_CONFIG).fit(X.iloc[train], y[train])
        hits += int((model.predict(X.iloc[test]) == y[test]).sum())
    return hits / len(y)


def classify_reasons(model, comments: Sequence[str | None], min_confidence: float = 0.3) -> pd.DataFrame:
    """Theme and confidence per comment; empty comments get no theme (None)."""
    comments = list(comments)
    present = [i for i, c in enumerate(comments) if isinstance(c, str) and c.strip()]
    theme: list[str | None] = [None] * len(comments)
    confidence = np.full(len(comments), np.nan)
    if present:
        proba = model.predict_proba(_inputs([comments[i] for i in present]))
        classes = np.asarray(model.classes_, dtype=object)
        best = proba.argmax(axis=1)
        for j, i in enumerate(present):
            confidence[i] = float(proba[j, best[j]])
            theme[i] = str(classes[best[j]]) if confidence[i] >= min_confidence else FALLBACK_THEME
    return pd.DataFrame({"theme": theme, "confidence": confidence})


def reason_summary(themes: pd.Series, taxonomy: Taxonomy) -> pd.DataFrame:
    """Count and share of bad-rating comments per theme (every theme listed, most frequent first)."""
    counts = themes.dropna().value_counts()
    total = int(counts.sum())
    rows = [{"theme": t, "label": name, "comments": int(counts.get(t, 0)),
             "share": (counts.get(t, 0) / total) if total else 0.0} for t, name in taxonomy.csat_reasons.items()]
    return pd.DataFrame(rows).sort_values(["comments", "theme"], ascending=[False, True]).reset_index(drop=True)


@dataclass
class ReasonReport:
    """What the ``classify-bad-rating-reasons`` task hands on: theme summaries and how they were made."""

    summaries: dict[str, pd.DataFrame]  # scope ("all", or "factor:level" of a top driver) → ``reason_summary``
    themes: pd.DataFrame  # theme and confidence per bad rating (index: the rating's row in the prepared frame)
    commented: int  # bad ratings whose comment got a theme
    bad: int  # bad ratings in the window
    seed_examples: int  # labelled comments the classifier was trained on
    seed_digest: str  # first 12 hex digits of ``ReasonTrainingSet.digest``
    seed_cv_accuracy: float  # cross-validated accuracy on the seed set
