"""Tiering, routing and auto-reply rules (pure, driven by the taxonomy file).

They decide what the helpdesk does with a classified ticket, so they are small, explicit and unit-tested:
* tier: the category's complexity (simple=1, standard=2, complex=3), raised one step each for negative
  sentiment, a business or creator customer, and Trust & Safety; capped at 3;
* routing group: low confidence → the general triage queue (a wrong specialist queue costs more than a
  triage hop); a configured language queue for non-English tickets; otherwise the category's team;
* auto-reply: only for categories marked ``auto_reply``, above a confidence threshold, never for negative
  sentiment (an angry customer should not get a canned answer) and never for Trust & Safety.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ticketlens.models.taxonomy import Taxonomy

BASE_TIER = {"simple": 1, "standard": 2, "complex": 3}
RAISING_SEGMENTS = ("business", "creator")


@dataclass(frozen=True)
class RoutingPolicy:
    """Routing thresholds; ``adapters.settings.RoutingSettings.policy()`` builds the deployed one. The triage
    group's name is a taxonomy constant, not a setting."""

    triage_threshold: float
    auto_reply_threshold: float
    language_queues: Mapping[str, str]  # e.g. {"ja": "japanese_queue"}
    triage_group: str = "tier1_general"


def tier(category: str, sentiment: str | None, segment: str | None, taxonomy: Taxonomy) -> int:
    cat = taxonomy.categories[category]
    level = BASE_TIER[cat.complexity]
    level += sentiment == "negative"
    level += segment in RAISING_SEGMENTS
    level += cat.feedback_type == "trust_safety"
    return min(3, level)


def routing_group(category: str, confidence: float, language: str | None, taxonomy: Taxonomy,
                  policy: RoutingPolicy) -> str:
    if confidence < policy.triage_threshold:
        return policy.triage_group
    if language and language != "en" and language in policy.language_queues:
        return policy.language_queues[language]
    return taxonomy.categories[category].team


def auto_reply_eligible(category: str, confidence: float, sentiment: str | None, taxonomy: Taxonomy,
                        policy: RoutingPolicy) -> bool:
    cat = taxonomy.categories[category]
    return (cat.auto_reply and confidence >= policy.auto_reply_threshold and sentiment != "negative"
            and cat.feedback_type != "trust_safety")
