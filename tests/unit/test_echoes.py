"""ticketlens.models.echoes: fingerprints blind to TicketLens's own write-back, sensitive to every real edit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ticketlens.models.echoes import classify_versions, content_fingerprint, input_fingerprint

T0 = datetime(2026, 7, 1, 9, tzinfo=UTC)
T1 = datetime(2026, 7, 1, 10, tzinfo=UTC)
FIELDS = (360010, 360011)  # the configured write-back custom fields


def ticket(**changes):
    base = {"subject": "App crashes on start", "description": "Since the update it closes at once.",
            "channel": "email", "contact_reason": "technical", "confirmed_category": None,
            "tags": ["business", "mobile"], "status": "open", "priority": "normal", "type": "problem",
            "requester_id": 7, "submitter_id": 7, "assignee_id": 3, "group_id": 2, "organization_id": None,
            "solved_at": None, "first_reply_minutes": 12, "full_resolution_minutes": None, "reopens": 0,
            "is_deleted": False, "custom_fields": [{"id": 555, "value": "technical"}],
            "updated_at": T0, "generated_timestamp": 1}
    return {**base, **changes}


def fps(t):
    return input_fingerprint(t, "tl_"), content_fingerprint(t, "tl_", FIELDS)


def test_ticketlens_tags_fields_and_version_stamps_change_neither_fingerprint():
    echo = ticket(tags=["tl_cat_app-crash", "business", "tl_tier_2", "mobile"], updated_at=T1,
                  generated_timestamp=99,
                  custom_fields=[{"id": 360011, "value": "tier_2"}, {"id": 555, "value": "technical"},
                                 {"id": 360010, "value": "app.crash"}])
    assert fps(echo) == fps(ticket())


@pytest.mark.parametrize(("change", "input_changes"), [
    ({"subject": "App crashes on start!!"}, True),
    ({"description": "Since the update it closes at once. Also on Wi-Fi."}, True),
    ({"contact_reason": "billing"}, True),  # a human re-categorising the ticket
    ({"confirmed_category": "app.crash"}, True),
    ({"tags": ["business", "mobile", "vip"]}, True),  # an agent's own tag (segment → tier)
    ({"channel": "web"}, True),
    ({"status": "pending"}, False),
    ({"assignee_id": 4}, False),
    ({"custom_fields": [{"id": 555, "value": "billing"}]}, False),  # another custom field
    ({"reopens": 1}, False),
])
def test_every_real_edit_changes_the_content_fingerprint(change, input_changes):
    before, after = fps(ticket()), fps(ticket(**change))
    assert after[1] != before[1]
    assert (after[0] != before[0]) is input_changes


def test_tag_order_is_not_a_change():
    assert fps(ticket(tags=["mobile", "business"])) == fps(ticket())


def test_classify_versions():
    i, c = fps(ticket())
    i2, c2 = fps(ticket(description="new text"))
    _, c3 = fps(ticket(status="solved"))
    split = classify_versions(
        [(1, T1, i, c), (2, T1, i2, c2), (3, T1, i, c3), (4, T1, i, c), (5, T0, i, c)],
        {1: (T0, i, c), 2: (T0, i, c), 3: (T0, i, c), 4: (T0, None, None), 5: (T0, i, c)})
    assert split == {"echo": [1], "rescore": [2, 4], "kept": [3], "current": [5]}
