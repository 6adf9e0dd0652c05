"""Normalization of Zendesk records: shapes, soft deletes, custom fields, type errors kept, nothing dropped."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.support.records import FIELDS, ticket
from ticketlens.models.records import (
    FieldMap,
    canonical_json,
    field_map_from_ticket_fields,
    normalize_ratings,
    normalize_tickets,
    payload_sha256,
)


def test_ticket_fields_are_mapped_and_text_is_cleaned():
    metrics = [{"ticket_id": 1, "reopens": 2, "reply_time_in_minutes": {"calendar": 14, "business": 9},
                "full_resolution_time_in_minutes": {"calendar": None}, "solved_at": None}]
    frame = normalize_tickets([ticket()], metrics, FIELDS)
    row = frame.iloc[0]
    assert row["id"] == 1 and row["channel"] == "email"
    assert row["contact_reason"] == "account.password_reset" and row["confirmed_category"] is None
    assert row["description"] == "Reset link expired"  # NUL stripped
    assert row["created_at"] == pd.Timestamp("2026-08-01T10:00:00Z")
    assert row["reopens"] == 2 and row["first_reply_minutes"] == 14
    assert pd.isna(row["full_resolution_minutes"])
    assert row["_type_errors"] is None and not row["is_deleted"]
    assert row["_sha256"] == payload_sha256(ticket())


def test_deleted_status_is_a_soft_delete():
    frame = normalize_tickets([ticket(status="deleted")], [], FIELDS)
    assert frame.iloc[0]["is_deleted"]
    assert frame.iloc[0]["deleted_at"] == frame.iloc[0]["updated_at"]


def test_wrong_types_are_flagged_not_dropped():
    frame = normalize_tickets([ticket(assignee_id="abc", tags="ios", created_at="yesterday")], [], FIELDS)
    assert len(frame) == 1
    assert set(frame.iloc[0]["_type_errors"].split(",")) == {"assignee_id", "tags", "created_at"}
    assert '"assignee_id":"abc"' in frame.iloc[0]["_payload"]  # the payload keeps what the API sent


def test_exact_duplicates_collapse_but_different_versions_stay():
    frame = normalize_tickets([ticket(), ticket(), ticket(updated_at="2026-08-01T12:00:00Z")], [], FIELDS)
    assert len(frame) == 2


def test_required_field_missing_everywhere_drops_the_column():
    records = [{k: v for k, v in ticket(id=i).items() if k != "created_at"} for i in (1, 2)]
    frame = normalize_tickets(records, [], FIELDS)
    assert "created_at" not in frame.columns  # the validation suite reports it as schema drift
    partial = normalize_tickets([records[0], ticket(id=3)], [], FIELDS)
    assert "created_at" in partial.columns and partial["created_at"].isna().sum() == 1


def test_ratings_keep_score_as_text():
    frame = normalize_ratings([
        {"id": 9, "ticket_id": 1, "score": "bad", "comment": "slow", "reason": "Other", "assignee_id": 7,
         "group_id": 3, "requester_id": 5, "created_at": "2026-08-02T10:00:00Z", "updated_at": "2026-08-02T10:00:00Z"},
        {"id": 10, "ticket_id": 2, "score": 4, "created_at": 1785664800, "updated_at": 1785664800},
    ])
    assert frame["score"].tolist() == ["bad", "4"]
    assert frame["created_at"].iloc[1] == pd.Timestamp(1785664800, unit="s", tz="UTC")


def test_field_map_finds_fields_by_title_case_insensitively():
    fields = [{"id": 1, "title": "Subject"}, {"id": 360001, "title": "contact reason "},
              {"id": 360002, "title": "Confirmed Category"}]
    assert field_map_from_ticket_fields(fields, "Contact reason", "Confirmed category") == FieldMap(360001, 360002)
    assert field_map_from_ticket_fields(fields[:1], "Contact reason", "Confirmed category") == FieldMap(None, None)


@pytest.mark.parametrize("record", [{"b": 1, "a": [1, 2]}, {"a": [1, 2], "b": 1}])
def test_canonical_json_is_order_independent(record):
    assert canonical_json(record) == '{"a":[1,2],"b":1}'


def test_every_normaliser_shares_one_prologue_no_record_is_dropped():
    """Tickets, legacy ratings and survey responses go through ``distinct_records``: a repeated record is one row,
    a record that is not a JSON object is still a row (type error ``record``, payload kept), positions count
    the distinct records."""
    from ticketlens.models.csat_api import normalize_survey_responses

    rating = {"id": 5, "ticket_id": 1, "score": "good", "created_at": "2026-08-01T10:00:00Z",
              "updated_at": "2026-08-01T10:00:00Z"}
    survey = {"id": "01J1WBE8QR0YQVE373K2JDJR0F", "subject_zrns": ["zen:ticket:1"], "answers": []}
    for frame in (normalize_tickets([ticket(), ticket(), "oops"], [], FIELDS),
                  normalize_ratings([rating, rating, "oops"]),
                  normalize_survey_responses([survey, survey, "oops"])):
        assert frame["_row"].tolist() == [0, 1]
        assert frame["_type_errors"].tolist()[1] == "record" and frame["_payload"].tolist()[1] == '"oops"'
        assert pd.isna(frame["_record_id"].tolist()[1])  # no id to name it by
