"""Training-set preparation and the holdout split (pure functions on DataFrames).

Nothing is dropped silently: labels outside the taxonomy are rejected and counted, classes below the minimum
number of examples are reported and excluded, and both lists end up in MLflow and the flow's artifact.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import timedelta

import pandas as pd
from sklearn.model_selection import train_test_split


@dataclass
class TrainingSet:
    """Labelled tickets ready for training, plus what was left out and why."""

    frame: pd.DataFrame  # columns: id, created_at, subject, description, label
    rejected_labels: dict[str, int] = field(default_factory=dict)  # label outside the taxonomy → rows
    excluded_classes: dict[str, int] = field(default_factory=dict)  # class below the minimum → rows
    empty_text_rows: int = 0


def prepare_training_set(
    tickets: pd.DataFrame, leaves: Collection[str], *, min_examples_per_class: int
) -> TrainingSet:
    """Keep tickets whose agent-confirmed category is a taxonomy leaf and whose class has enough examples."""
    df = tickets.rename(columns={"confirmed_category": "label"})
    df = df[df["label"].notna()].copy()
    text_len = df["subject"].fillna("").str.strip().str.len() + df["description"].fillna("").str.strip().str.len()
    empty = int((text_len == 0).sum())
    df = df[text_len > 0]
    known = df["label"].isin(set(leaves))
    rejected = df.loc[~known, "label"].value_counts().to_dict()
    df = df[known]
    counts = df["label"].value_counts()
    small = counts[counts < min_examples_per_class]
    df = df[~df["label"].isin(small.index)]
    return TrainingSet(
        frame=df.reset_index(drop=True),
        rejected_labels={str(k): int(v) for k, v in rejected.items()},
        excluded_classes={str(k): int(v) for k, v in small.items()},
        empty_text_rows=empty,
    )


@dataclass
class Split:
    train: pd.DataFrame
    holdout: pd.DataFrame
    strategy: str  # "time" or "stratified" (the fallback: a random split, time drift not measured)
    holdout_start: pd.Timestamp | None


def holdout_split(
    frame: pd.DataFrame, *, holdout_days: int, min_holdout_rows: int, seed: int = 0, fallback_share: float = 0.2
) -> Split:
    """The most recent ``holdout_days`` are the holdout (how the model will be used: on future tickets).

    When history is too short for that (fewer than ``min_holdout_rows`` in the window, or nothing left to
    train on), fall back to a stratified random split so every class is still represented.
    """
    if frame.empty:
        raise ValueError("no labelled tickets to split")
    end = frame["created_at"].max()
    start = end - timedelta(days=holdout_days)
    recent = frame["created_at"] > start
    train, holdout = frame[~recent], frame[recent]
    classes_ok = set(holdout["label"]) <= set(train["label"])
    if len(holdout) >= min_holdout_rows and len(train) >= len(holdout) and classes_ok:
        return Split(train.reset_index(drop=True), holdout.reset_index(drop=True), "time", start)
    counts = frame["label"].value_counts()
    stratify = frame["label"] if counts.min() >= 2 else None
    train, holdout = train_test_split(frame, test_size=fallback_share, random_state=seed, stratify=stratify)
    return Split(train.reset_index(drop=True), holdout.reset_index(drop=True), "stratified", None)


def unseen_by_champion(
    holdout: pd.DataFrame, *, trained_ids: Collection[int] | None, trained_until: pd.Timestamp | None
) -> pd.DataFrame:
    """The holdout tickets the champion was not trained on — the only fair ground to compare it on.

    ``trained_ids`` are the ids the champion was fitted on (recorded with every version since issue 20); for
    older versions only the end of their training window is known, so every ticket up to ``trained_until`` is
    treated as seen. With neither known the whole holdout is returned (the caller warns).
    """
    keep = pd.Series(True, index=holdout.index)
    if trained_ids is not None:
        keep &= ~holdout["id"].isin(set(trained_ids))
    elif trained_until is not None:
        keep &= holdout["created_at"] > trained_until
    return holdout[keep]
