"""Turn a batch of warehouse tickets into prediction rows (pure: models are passed in, nothing is loaded here).

One function used by both the hourly scoring and the backfill, so a re-scored history looks exactly like live
scoring: leaf + parent + feedback type from the taxonomy, confidence and top-3, sentiment, language, spam flag,
tier, routing group, auto-reply eligibility, and the helpdesk tags that carry them.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from ticketlens.models import offload
from ticketlens.models.offload import ProcessWorker
from ticketlens.models.routing import RoutingPolicy, auto_reply_eligible, routing_group, tier
from ticketlens.models.sentiment import label_scores
from ticketlens.models.taxonomy import Taxonomy

SEGMENT_TAGS = {"business": "business", "vip": "business", "creator": "creator"}


def segment_from_tags(tags: Any) -> str:
    """Customer segment from ticket tags (helpdesks tag business / VIP / creator customers)."""
    for tag in tags if isinstance(tags, list) else ():
        if tag in SEGMENT_TAGS:
            return SEGMENT_TAGS[tag]
    return "consumer"


def score_tickets(
    frame: pd.DataFrame,
    classifier,
    sentiment_model,
    detect_language,
    taxonomy: Taxonomy,
    policy: RoutingPolicy,
) -> pd.DataFrame:
    """``frame`` has id, updated_at, subject, description, tags. Returns one prediction row per ticket."""
    if frame.empty:
        return pd.DataFrame()
    inputs = frame[["subject", "description"]]
    if hasattr(classifier, "named_steps") and "prepare" in classifier.named_steps:
        # Clean once: the pipeline's own first step prepares the text, the rest of the pipeline, sentiment and
        # language detection all read that same prepared text.
        texts = list(classifier.named_steps["prepare"].transform(inputs))
        predictor = classifier[1:]
    else:
        texts = list(frame["subject"].fillna("") + "\n" + frame["description"].fillna(""))
        predictor = classifier
    # Workers (models.offload, used for large batches) score sentiment and detect languages in their own
    # processes from here on, beside the classifier. In-process, sentiment runs now and language detection on a
    # thread: lingua runs in Rust without the GIL, so it overlaps the (GIL-bound) classifier.
    score_sentiment = sentiment_model if isinstance(sentiment_model, ProcessWorker) else sentiment_model.score
    sentiment_future = offload.start(score_sentiment, texts)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lang") as pool:
        languages_future = offload.start(detect_language, texts, executor=pool)
        proba = predictor.predict_proba(texts if predictor is not classifier else inputs)
        classes = np.asarray(classifier.classes_, dtype=object)
        order = np.argsort(-proba, axis=1)[:, :3]
        languages = offload.finish(detect_language, languages_future, texts)
    sentiment_scores = offload.finish(score_sentiment, sentiment_future, texts)
    sentiments = label_scores(sentiment_scores)
    top_classes = classes[order].tolist()
    top_p = np.round(np.take_along_axis(proba, order, axis=1), 4).tolist()
    rows = []
    for i, (ticket_id, updated_at, tags) in enumerate(zip(frame["id"], frame["updated_at"], frame["tags"],
                                                          strict=True)):
        leaf = str(top_classes[i][0])
        confidence = float(proba[i, order[i, 0]])
        cat = taxonomy.categories[leaf]
        segment = segment_from_tags(tags)
        rows.append({
            "ticket_id": int(ticket_id), "ticket_updated_at": updated_at, "category": leaf,
            "parent_category": cat.parent, "feedback_type": cat.feedback_type, "confidence": confidence,
            "top3": [{"category": str(c), "p": p} for c, p in zip(top_classes[i], top_p[i], strict=True)],
            "sentiment": sentiments[i], "sentiment_score": float(sentiment_scores[i]), "language": languages[i],
            "is_spam": cat.feedback_type == "spam",
            "tier": tier(leaf, sentiments[i], segment, taxonomy),
            "routing_group": routing_group(leaf, confidence, languages[i], taxonomy, policy),
            "auto_reply": auto_reply_eligible(leaf, confidence, sentiments[i], taxonomy, policy),
        })
    return pd.DataFrame(rows)


def helpdesk_tags(prediction: dict[str, Any], prefix: str) -> list[str]:
    """The tags that carry a prediction into the helpdesk (Zendesk tags: no spaces or dots)."""

    def safe(value: Any) -> str:
        return str(value).replace(".", "-").replace(" ", "_").lower()

    tags = [
        f"{prefix}cat_{safe(prediction['category'])}",
        f"{prefix}parent_{safe(prediction['parent_category'])}",
        f"{prefix}sentiment_{safe(prediction['sentiment'])}",
        f"{prefix}tier_{int(prediction['tier'])}",
        f"{prefix}route_{safe(prediction['routing_group'])}",
    ]
    if prediction.get("auto_reply"):
        tags.append(f"{prefix}autoreply")
    if prediction.get("is_spam"):
        tags.append(f"{prefix}spam")
    return sorted(tags)


FIELD_VALUES = {
    "category": lambda p: p["category"],
    "sentiment": lambda p: p["sentiment"],
    "tier": lambda p: f"tier_{int(p['tier'])}",
    "routing_group": lambda p: p["routing_group"],
    "auto_reply": lambda p: bool(p["auto_reply"]),
}


def helpdesk_fields(prediction: dict[str, Any], field_ids: dict[str, int]) -> list[dict[str, Any]]:
    """Custom-field values for the configured fields (``{"category": 360010, ...}``), sorted by field id."""
    unknown = set(field_ids) - set(FIELD_VALUES)
    if unknown:
        raise ValueError(f"unknown write-back field(s) {sorted(unknown)}; known: {sorted(FIELD_VALUES)}")
    return sorted(({"id": int(fid), "value": FIELD_VALUES[name](prediction)} for name, fid in field_ids.items()),
                  key=lambda f: f["id"])


def removable_tags(previously_pushed: Sequence[str] | None, desired: Sequence[str]) -> list[str]:
    """Only tags TicketLens itself pushed before and no longer wants; never the ticket's own tags."""
    return sorted(set(previously_pushed or ()) - set(desired))
