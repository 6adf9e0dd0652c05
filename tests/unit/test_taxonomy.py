"""The taxonomy file: shape, validation errors that name the key, a stable digest."""

from __future__ import annotations

import pytest

from ticketlens.models.taxonomy import load_taxonomy, parse_taxonomy


def test_taxonomy_shape():
    tax = load_taxonomy()
    assert 30 <= len(tax.leaves) <= 50
    assert {c.feedback_type for c in tax.categories.values()} == {"support", "trust_safety", "spam", "csat_feedback"}
    assert tax.parent_of("account.password_reset") == "account"
    assert tax.feedback_type_of("spam.phishing") == "spam"
    assert "account.hacked" in tax.siblings("account.two_factor")
    assert set(tax.csat_reasons) >= {"slow_response", "not_resolved", "policy_disagreement", "canned_reply",
                                     "agent_attitude", "product_bug"}
    assert any(c.auto_reply for c in tax.categories.values())
    assert load_taxonomy().digest == tax.digest and len(tax.digest) == 64


@pytest.mark.parametrize("mutation, message", [
    (lambda d: d["categories"].append(dict(d["categories"][0])), "defined twice"),
    (lambda d: d["categories"][0].update(team="nobody"), "account.password_reset.*team"),
    (lambda d: d["categories"][0].update(parent="nowhere"), "account.password_reset.*parent"),
])
def test_invalid_taxonomy_names_the_key(mutation, message):
    import copy

    data = copy.deepcopy(load_taxonomy().raw)
    mutation(data)
    with pytest.raises(ValueError, match=message):
        parse_taxonomy(data)
