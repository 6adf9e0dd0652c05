"""Zendesk-shaped records for tests of normalisation and validation."""

from __future__ import annotations

from ticketlens.models.records import FieldMap

FIELDS = FieldMap(contact_reason_field_id=11, confirmed_category_field_id=12)


def ticket(**overrides):
    base = {
        "id": 1, "created_at": "2026-08-01T10:00:00Z", "updated_at": "2026-08-01T11:00:00Z",
        "generated_timestamp": 1785582000, "subject": "Can't log in", "description": "Reset link\x00 expired",
        "status": "open", "priority": "normal", "type": "question", "tags": ["ios"],
        "via": {"channel": "email", "source": {}}, "requester_id": 5, "submitter_id": 5, "assignee_id": 7,
        "group_id": 3, "organization_id": None,
        "custom_fields": [{"id": 11, "value": "account.password_reset"}, {"id": 12, "value": None}],
    }
    return {**base, **overrides}
