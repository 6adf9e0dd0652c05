"""The Great Expectations suites: bad rows quarantined with reasons, drift and mass failure stop the batch."""

from __future__ import annotations

import pytest

from tests.support.records import FIELDS, ticket
from ticketlens.models.records import FieldMap, SchemaDriftError, normalize_ratings, normalize_tickets
from ticketlens.tasks.validation import ValidationFailedError, validate_batch


def tickets_page(n=50, **per_id):
    records = [ticket(id=i, generated_timestamp=1785582000 + i) for i in range(1, n + 1)]
    for i, overrides in per_id.items():
        records[int(i) - 1].update(overrides)
    return normalize_tickets(records, [], FIELDS)


def run(frame, stream="tickets", share=0.2, max_chars=10_000):
    return validate_batch(stream, frame, max_failure_share=share, max_text_chars=max_chars)


def test_clean_page_passes_entirely():
    outcome = run(tickets_page())
    assert len(outcome.valid) == 50 and outcome.quarantined.empty
    assert all(c["success"] for c in outcome.checks)


def test_bad_rows_are_quarantined_with_the_names_of_failed_checks():
    frame = tickets_page(**{
        "2": {"status": "bogus"},
        "3": {"created_at": "2026-08-02T00:00:00Z"},  # after updated_at
        "4": {"assignee_id": {"id": 7}},
        "5": {"channel": None, "via": {"channel": "carrier_pigeon"}},
        "6": {"description": "x" * 10_001},
        "7": {"id": None},
        "8": {"updated_at": "not a date"},
    })
    outcome = run(frame)
    reasons = dict(zip(outcome.quarantined["record_id"].fillna("none"), outcome.quarantined["failed_checks"],
                       strict=True))
    assert reasons["2"] == ["expect_column_values_to_be_in_set(status)"]
    assert reasons["3"] == ["expect_column_pair_values_a_to_be_greater_than_b(updated_at,created_at)"]
    assert reasons["4"] == ["expect_column_values_to_be_null(_type_errors): wrong type in assignee_id"]
    assert "5" not in reasons  # an undocumented channel is stored as sent, never quarantined (issue 16)
    assert reasons["6"] == ["expect_column_value_lengths_to_be_between(description)"]
    assert "expect_column_values_to_not_be_null(id)" in reasons["none"]
    assert any("updated_at" in r for r in reasons["8"])
    assert len(outcome.valid) == 44 and set(outcome.valid["id"]) == set(range(9, 51)) | {1, 5}
    assert outcome.valid.set_index("id").loc[5, "channel"] == "carrier_pigeon"
    assert all(p.startswith("{") for p in outcome.quarantined["payload"])  # the payload is kept verbatim


def test_duplicate_ids_keep_the_newest_version():
    frame = tickets_page()
    dup = normalize_tickets([ticket(id=1, updated_at="2026-08-01T12:00:00Z", status="solved")], [], FIELDS)
    import pandas as pd

    both = pd.concat([frame, dup.assign(_row=len(frame))], ignore_index=True)
    outcome = run(both)
    kept = outcome.valid[outcome.valid["id"] == 1]
    assert kept["status"].tolist() == ["solved"]
    assert outcome.quarantined["failed_checks"].tolist() == [["expect_column_values_to_be_unique(id)"]]


def test_schema_drift_fails_the_batch_naming_the_field():
    records = [{k: v for k, v in ticket(id=i).items() if k != "status"} for i in range(1, 5)]
    with pytest.raises(SchemaDriftError, match="status"):
        run(normalize_tickets(records, [], FieldMap()))


def test_too_many_bad_rows_fail_the_batch_with_the_setting_name():
    frame = tickets_page(**{str(i): {"status": "bogus"} for i in range(1, 20)})
    with pytest.raises(ValidationFailedError, match="TICKETLENS_VALIDATION_MAX_FAILURE_SHARE"):
        run(frame)
    assert len(run(frame, share=0.5).quarantined) == 19


def test_ratings_suite():
    frame = normalize_ratings([
        {"id": 1, "ticket_id": 1, "score": "good", "created_at": 1785664800, "updated_at": 1785664800},
        {"id": 2, "ticket_id": None, "score": "bad", "created_at": 1785664800, "updated_at": 1785664800},
        {"id": 3, "ticket_id": 3, "score": "", "created_at": 1785664800, "updated_at": 1785664800},
        *({"id": i, "ticket_id": i, "score": "5", "created_at": 1785664800, "updated_at": 1785664900}
          for i in range(4, 20)),
    ])
    outcome = run(frame, stream="satisfaction_ratings")
    assert sorted(outcome.quarantined["record_id"]) == ["2", "3"]
    assert len(outcome.valid) == 17


def test_empty_page_is_valid():
    outcome = run(normalize_tickets([], [], FIELDS))
    assert outcome.rows == 0 and outcome.valid.empty
