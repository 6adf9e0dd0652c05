"""Tiering, routing, auto-reply and tag rules (pure functions driven by the taxonomy)."""

from __future__ import annotations

import pytest

from ticketlens.models.routing import RoutingPolicy, auto_reply_eligible, routing_group, tier
from ticketlens.models.scoring import helpdesk_fields, helpdesk_tags, removable_tags, segment_from_tags
from ticketlens.models.taxonomy import load_taxonomy

TAX = load_taxonomy()
POLICY = RoutingPolicy(triage_threshold=0.5, auto_reply_threshold=0.8, language_queues={"ja": "japanese_queue"})


def test_tier_follows_complexity_and_escalations():
    assert tier("account.password_reset", "neutral", "consumer", TAX) == 1  # simple
    assert tier("account.password_reset", "negative", "consumer", TAX) == 2  # angry customer
    assert tier("account.password_reset", "negative", "business", TAX) == 3
    assert tier("app_technical.crash", "neutral", "creator", TAX) == 3  # standard + creator
    assert tier("trust_safety.inappropriate_content", "positive", "consumer", TAX) == 3  # T&S raises
    assert tier("ads_business.billing_refund", "negative", "business", TAX) == 3  # capped


def test_routing_group():
    assert routing_group("ads_business.billing_refund", 0.9, "en", TAX, POLICY) == "ads_support"
    assert routing_group("ads_business.billing_refund", 0.3, "en", TAX, POLICY) == "tier1_general"  # low confidence
    assert routing_group("app_technical.crash", 0.9, "ja", TAX, POLICY) == "japanese_queue"
    assert routing_group("app_technical.crash", 0.9, "de", TAX, POLICY) == "technical_support"  # no German queue


def test_auto_reply_rules():
    assert auto_reply_eligible("account.password_reset", 0.9, "neutral", TAX, POLICY)
    assert not auto_reply_eligible("account.password_reset", 0.7, "neutral", TAX, POLICY)  # not confident
    assert not auto_reply_eligible("account.password_reset", 0.95, "negative", TAX, POLICY)  # angry
    assert not auto_reply_eligible("account.hacked", 0.99, "positive", TAX, POLICY)  # not an auto-reply category
    assert all(not auto_reply_eligible(k, 1.0, "positive", TAX, POLICY)
               for k, c in TAX.categories.items() if c.feedback_type == "trust_safety")


def test_tags_and_segments():
    pred = {"category": "account.password_reset", "parent_category": "account", "sentiment": "neutral", "tier": 1,
            "routing_group": "account_specialists", "auto_reply": True, "is_spam": False}
    tags = helpdesk_tags(pred, "tl_")
    assert "tl_cat_account-password_reset" in tags and "tl_autoreply" in tags and "tl_tier_1" in tags
    assert all(" " not in t and "." not in t for t in tags)
    assert removable_tags(["tl_tier_2", "tl_cat_x"], ["tl_cat_x"]) == ["tl_tier_2"]
    assert removable_tags(None, tags) == []
    assert segment_from_tags(["web", "vip"]) == "business" and segment_from_tags(None) == "consumer"


def test_custom_fields():
    pred = {"category": "app_technical.crash", "sentiment": "negative", "tier": 3, "routing_group": "x",
            "auto_reply": False}
    assert helpdesk_fields(pred, {"tier": 12, "category": 11}) == [
        {"id": 11, "value": "app_technical.crash"}, {"id": 12, "value": "tier_3"}]
    assert helpdesk_fields(pred, {}) == []
    with pytest.raises(ValueError, match="colour"):
        helpdesk_fields(pred, {"colour": 1})
