"""Contract tests: Zendesk's documented example responses (written from the API reference, one case per
documented variant) parse with zero quarantined rows; via ids, typed custom fields and both CSAT APIs."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from ticketlens.adapters.settings import OpsSettings, RoutingSettings
from ticketlens.models.custom_fields import single_text, value_list
from ticketlens.models.ops_reports import self_selection_report
from ticketlens.models.records import FieldMap, normalize_ratings, normalize_tickets
from ticketlens.models.taxonomy import load_taxonomy
from ticketlens.models.zendesk_via import channel_name

REASON, CATEGORY = 360005, 360006
FIELDS = FieldMap(REASON, CATEGORY)

# A ticket as the Tickets API reference documents it (JSON format + example), as the incremental export returns it.
TICKET = {
    "url": "https://example.zendesk.com/api/v2/tickets/35436.json",
    "id": 35436, "external_id": "ahg35h3jh", "created_at": "2009-07-20T22:55:29Z",
    "updated_at": "2011-05-05T10:38:52Z", "generated_timestamp": 1304591932, "type": "incident",
    "subject": "Help, my printer is on fire!", "raw_subject": "{{dc.printer_on_fire}}",
    "description": "The fire is very colorful.", "priority": "high", "status": "open", "recipient": "support@example.com",
    "requester_id": 20978392, "submitter_id": 76872, "assignee_id": 235323, "organization_id": 509974,
    "group_id": 98738, "collaborator_ids": [35334, 234], "follower_ids": [35334, 234], "email_cc_ids": [],
    "forum_topic_id": None, "problem_id": 9873764, "has_incidents": False, "is_public": True,
    "due_at": None, "tags": ["enterprise", "other_tag"],
    "via": {"channel": "web", "source": {"from": {}, "to": {}, "rel": None}},
    "custom_fields": [{"id": 27642, "value": "745"}, {"id": 27648, "value": "yes"},
                      {"id": REASON, "value": "account.password_reset"}, {"id": CATEGORY, "value": None}],
    "satisfaction_rating": {"id": 1234, "score": "good", "comment": "Great support!"},
    "sharing_agreement_ids": [84432], "followup_ids": [], "ticket_form_id": 2, "brand_id": 1,
    "allow_channelback": False, "allow_attachments": True, "from_messaging_channel": False,
}

METRIC_SET = {
    "url": "https://example.zendesk.com/api/v2/ticket_metrics/33.json", "id": 33, "ticket_id": 35436,
    "created_at": "2009-07-20T22:55:29Z", "updated_at": "2011-05-05T10:38:52Z", "group_stations": 7,
    "assignee_stations": 1, "reopens": 55, "replies": 322, "assignee_updated_at": "2011-05-06T10:38:52Z",
    "requester_updated_at": "2011-05-07T10:38:52Z", "status_updated_at": "2011-05-04T10:38:52Z",
    "initially_assigned_at": "2011-05-03T10:38:52Z", "assigned_at": "2011-05-05T10:38:52Z",
    "solved_at": "2011-05-09T10:38:52Z", "latest_comment_added_at": "2011-05-09T10:38:52Z",
    "reply_time_in_minutes": {"calendar": 2391, "business": 737},
    "first_resolution_time_in_minutes": {"calendar": 2391, "business": 737},
    "full_resolution_time_in_minutes": {"calendar": 2391, "business": 737},
    "agent_wait_time_in_minutes": {"calendar": 2391, "business": 737},
    "requester_wait_time_in_minutes": {"calendar": 2391, "business": 737},
    "on_hold_time_in_minutes": {"calendar": 2290, "business": 637},
}


def _variant(**changes):
    ticket = copy.deepcopy(TICKET)
    for key, value in changes.items():
        if value is _DROP:
            ticket.pop(key, None)
        else:
            ticket[key] = value
    return ticket


_DROP = object()


def _quarantined(records, metric_sets=None):
    """Rows the validation suite would quarantine (Great Expectations, as the ingest flow runs it)."""
    from ticketlens.tasks.validation import validate_batch

    frame = normalize_tickets(records, metric_sets, FIELDS)
    outcome = validate_batch("tickets", frame, max_failure_share=1.0, max_text_chars=1_000_000)
    return frame, outcome.quarantined


VARIANTS = {
    "documented example": ([TICKET], [METRIC_SET]),
    "null priority and type": ([_variant(priority=None, type=None)], [METRIC_SET]),
    "missing metric_set": ([TICKET], None),
    "13-digit ids": ([_variant(id=4398080151295, requester_id=4398080151296, assignee_id=4398080151297,
                               group_id=4398080151298, organization_id=4398080151299)], None),
    "+00:00 timestamps": ([_variant(created_at="2009-07-20T22:55:29+00:00",
                                    updated_at="2011-05-05T10:38:52+00:00")], [METRIC_SET]),
    "zone-less timestamps": ([_variant(created_at="2009-07-20T22:55:29", updated_at="2011-05-05T10:38:52")],
                             [METRIC_SET]),
    "integer channel": ([_variant(via={"channel": 4, "source": {"from": {"address": "a@example.com"}}})], None),
    "numeric-string channel": ([_variant(via={"channel": "29", "source": {}})], None),
    "undocumented channel string": ([_variant(via={"channel": "brand_new_channel", "source": {}})], None),
    "unknown via id": ([_variant(via={"channel": 977, "source": {}})], None),
    "multiselect contact reason": ([_variant(custom_fields=[
        {"id": REASON, "value": ["account.password_reset", "account.two_factor"]},
        {"id": CATEGORY, "value": "account.two_factor"}])], None),
    "checkbox, numeric and date fields": ([_variant(custom_fields=[
        {"id": 1, "value": True}, {"id": 2, "value": 12.5}, {"id": 3, "value": "2024-08-14"},
        {"id": REASON, "value": True}, {"id": CATEGORY, "value": 3.0}])], None),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_documented_ticket_variants_load_with_nothing_quarantined(name):
    records, metric_sets = VARIANTS[name]
    frame, quarantined = _quarantined(records, metric_sets)
    assert len(frame) == 1 and quarantined.empty, quarantined.to_dict("records")


def test_variant_values_are_stored_as_documented():
    frame, _ = _quarantined(*VARIANTS["integer channel"])
    assert frame.loc[0, "channel"] == "mail"  # via id 4 is "mail" in the Via types reference
    assert _quarantined(*VARIANTS["numeric-string channel"])[0].loc[0, "channel"] == "chat"
    assert _quarantined(*VARIANTS["undocumented channel string"])[0].loc[0, "channel"] == "brand_new_channel"
    assert _quarantined(*VARIANTS["unknown via id"])[0].loc[0, "channel"] == "via_977"
    big = _quarantined(*VARIANTS["13-digit ids"])[0]
    assert int(big.loc[0, "id"]) == 4398080151295 and int(big.loc[0, "organization_id"]) == 4398080151299
    zone_less = _quarantined(*VARIANTS["zone-less timestamps"])[0]
    assert zone_less.loc[0, "created_at"] == pd.Timestamp("2009-07-20T22:55:29Z")
    multi = _quarantined(*VARIANTS["multiselect contact reason"])[0]
    assert multi.loc[0, "contact_reasons"] == ["account.password_reset", "account.two_factor"]
    assert multi.loc[0, "contact_reason"] is None  # several chosen: the text column holds one reason or none
    assert multi.loc[0, "confirmed_category"] == "account.two_factor"
    typed = _quarantined(*VARIANTS["checkbox, numeric and date fields"])[0]
    assert typed.loc[0, "contact_reason"] == "true" and typed.loc[0, "confirmed_category"] == "3"
    assert typed.loc[0, "custom_fields"][0] == {"id": 1, "value": True}  # the typed JSON is kept as sent
    example = _quarantined(*VARIANTS["documented example"])[0]
    assert example.loc[0, "reopens"] == 55 and example.loc[0, "first_reply_minutes"] == 2391


@pytest.mark.parametrize("value, text, chosen", [
    (None, None, None), ("a", "a", ["a"]), (["a"], "a", ["a"]), (["a", "b"], None, ["a", "b"]), ([], None, None),
    (True, "true", ["true"]), (False, "false", ["false"]), (3, "3", ["3"]), (2.0, "2", ["2"]), (2.5, "2.5", ["2.5"]),
    ("", None, None), ({"x": 1}, None, None),
])
def test_custom_field_value_forms(value, text, chosen):
    assert single_text(value) == text and value_list(value) == chosen


@pytest.mark.parametrize("raw, name, known", [
    (0, "web_form", True), (4, "mail", True), ("4", "mail", True), (29, "chat", True), (56, "mobile", True),
    ("native_messaging", "native_messaging", True), ("web", "web", True), ("something_new", "something_new", False),
    (12345, "via_12345", False), (None, None, True), (True, None, False), ("x" * 50, "x" * 32, False),
])
def test_via_channel_names(raw, name, known):
    assert channel_name(raw) == (name, known)


def test_multi_valued_contact_reasons_weigh_one_ticket_in_total():
    taxonomy = load_taxonomy()
    single = [{"contact_reason": "account.two_factor", "contact_reasons": ["account.two_factor"],
               "category": "account.two_factor", "confidence": 0.9}] * 30
    both = [{"contact_reason": None, "contact_reasons": ["account.two_factor", "account.password_reset"],
             "category": "account.password_reset", "confidence": 0.9}] * 10
    options, confusion = self_selection_report(pd.DataFrame(single + both), taxonomy,
                                                OpsSettings().config(RoutingSettings()))
    by = options.set_index("selected")
    assert by.loc["account.two_factor", "tickets"] == 35  # 30 + 10 × 1/2
    assert by.loc["account.password_reset", "tickets"] == 5
    assert by.loc["account.password_reset", "matched_share"] == 1.0
    assert by.loc["account.two_factor", "matched_share"] == pytest.approx(30 / 35)
    assert options["tickets"].sum() == 40  # every ticket weighs 1 in total
    pair = confusion[(confusion["selected"] == "account.two_factor") & (confusion["actual"] == "account.password_reset")]
    assert pair["tickets"].tolist() == [5]


LEGACY_RATINGS = {"satisfaction_ratings": [
    {"assignee_id": 135, "comment": "Awesome support!", "created_at": "2011-07-20T22:55:29Z", "group_id": 44,
     "id": 35436, "requester_id": 7881, "score": "good", "ticket_id": 208, "updated_at": "2011-07-20T22:55:29Z",
     "url": "https://example.zendesk.com/api/v2/satisfaction_ratings/35436.json"},
    {"assignee_id": 136, "comment": "Awesome support!", "created_at": "2012-02-01T04:31:29Z", "group_id": 44,
     "id": 120447, "requester_id": 7881, "score": "good", "ticket_id": 209, "updated_at": "2012-02-02T10:32:59Z",
     "url": "https://example.zendesk.com/api/v2/satisfaction_ratings/120447.json"},
    {"assignee_id": 135, "created_at": "2011-07-20T22:55:29Z", "group_id": 44, "id": 62, "requester_id": 7881,
     "score": "offered", "ticket_id": 210, "updated_at": "2011-07-20T22:55:29Z", "comment": None, "reason": None,
     "url": "https://example.zendesk.com/api/v2/satisfaction_ratings/62.json"},
    {"assignee_id": None, "created_at": "2011-07-20T22:55:29Z", "group_id": None, "id": 63, "requester_id": 7881,
     "score": "unoffered", "ticket_id": 211, "updated_at": "2011-07-20T22:55:29Z",
     "url": "https://example.zendesk.com/api/v2/satisfaction_ratings/63.json"},
]}


def test_documented_legacy_ratings_parse_and_offered_is_not_a_rating():
    from ticketlens.models.csat_drivers import score_is_bad
    from ticketlens.tasks.validation import validate_batch

    frame = normalize_ratings(LEGACY_RATINGS["satisfaction_ratings"])
    outcome = validate_batch("satisfaction_ratings", frame, max_failure_share=1.0, max_text_chars=1_000_000)
    assert outcome.quarantined.empty and len(outcome.valid) == 4
    verdict = score_is_bad(frame["score"])
    assert verdict.isna().tolist() == [False, False, True, True]  # offered/unoffered: neither good nor bad


# The List Survey Responses example from the CSAT survey responses reference (current CSAT).
SURVEY_RESPONSES = {"meta": {"after_cursor": "MW", "before_cursor": "MQ", "has_more": False}, "survey_responses": [{
    "answers": [
        {"created_at": "2024-08-14T12:00:00.000Z", "rating": 1, "rating_category": "bad", "type": "rating_scale",
         "question": {"id": "01J1WBE8QR0YQVE373K2JDJR0F", "sub_type": "customer_satisfaction",
                      "type": "rating_scale_numeric"}, "updated_at": "2024-08-14T12:00:00.000Z"},
        {"created_at": "2024-08-14T12:00:00.000Z", "question": {"id": "01J1WBGX1BR4ECKTS87CRJTXSF",
                                                               "type": "closed_ended"},
         "selections": [{"option_id": "01J1WBKRG57E6M8C1145EXJ535", "type": "predefined"}], "type": "closed_ended",
         "updated_at": "2024-08-14T12:00:00.000Z"},
        {"created_at": "2024-08-14T12:00:00.000Z", "question": {"id": "01J1WBNS76ZC4TTFWP9RCNQ1S8",
                                                               "type": "open_ended"},
         "type": "open_ended", "updated_at": "2024-08-14T12:00:00.000Z",
         "value": "I had to repeatedly answer the same questions."},
        {"created_at": "2024-08-14T12:00:00.000Z", "question": {"id": "01J1WBSAZWVY2XR1EFZKS3CM13",
                                                               "type": "open_ended"},
         "type": "skipped", "updated_at": "2024-08-14T12:00:00.000Z"}],
    "expires_at": "2024-08-14T12:00:00.000Z", "id": "01J1WB51MG6HXTYWE6Q0C93RNW", "responder_id": 4398080151295,
    "subject_zrns": ["zen:ticket:99"], "subjects": [{"id": "99", "type": "ticket", "zrn": "zen:ticket:99"}],
    "survey": {"id": "01J58KJ9RAE0D2EK7HRVM7Z8F2", "state": "enabled", "version": 3}}]}


def test_documented_survey_response_parses_into_a_rating_row():
    from ticketlens.models.csat_api import normalize_survey_responses, survey_response_row_id
    from ticketlens.tasks.validation import validate_batch

    frame = normalize_survey_responses(SURVEY_RESPONSES["survey_responses"])
    outcome = validate_batch("csat_survey_responses", frame, max_failure_share=1.0, max_text_chars=1_000_000)
    assert outcome.quarantined.empty
    row = outcome.valid.iloc[0]
    assert row["ticket_id"] == 99 and row["score"] == "bad" and row["rating"] == 1
    assert row["comment"] == "I had to repeatedly answer the same questions."
    assert row["source_id"] == "01J1WB51MG6HXTYWE6Q0C93RNW" and row["id"] == survey_response_row_id(row["source_id"])
    assert row["id"] < 0 and row["requester_id"] == 4398080151295
    # Variants: only subject_zrns, a skipped rating (not a rating), and a conversation without a ticket.
    only_zrn = copy.deepcopy(SURVEY_RESPONSES["survey_responses"][0])
    only_zrn.pop("subjects")
    only_zrn["id"] = "01J1WB51MG6HXTYWE6Q0C93RNX"
    only_zrn["answers"][0] = {"type": "skipped", "question": only_zrn["answers"][0]["question"],
                              "created_at": "2024-08-15T12:00:00.000Z", "updated_at": "2024-08-15T12:00:00.000Z"}
    frame = normalize_survey_responses([only_zrn])
    assert frame.loc[0, "ticket_id"] == 99 and frame.loc[0, "score"] == "skipped"
    from ticketlens.models.csat_api import not_a_rating

    assert not_a_rating(frame["score"]) == 1
    # Offered, not answered yet: no answers at all. Its times come from the ULID (2024-07-03), it is no rating,
    # and it is not quarantined.
    offered = {k: v for k, v in SURVEY_RESPONSES["survey_responses"][0].items() if k != "answers"}
    offered["answers"] = []
    outcome = validate_batch("csat_survey_responses", normalize_survey_responses([offered]),
                             max_failure_share=1.0, max_text_chars=1_000_000)
    assert outcome.quarantined.empty and outcome.valid.iloc[0]["score"] == "skipped"
    assert outcome.valid.iloc[0]["created_at"] == pd.Timestamp(1720011884176, unit="ms", tz="UTC")


def test_client_sends_support_type_scope_and_pages_survey_responses():
    import httpx

    from ticketlens.adapters.helpdesk import HelpdeskClient

    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        if request.url.path.endswith("cursor.json"):
            return httpx.Response(200, json={"tickets": [], "end_of_stream": True, "after_cursor": None})
        if "page[after]" not in request.url.params:
            body = copy.deepcopy(SURVEY_RESPONSES)
            body["meta"] = {"has_more": True, "after_cursor": "MW", "before_cursor": None}
            return httpx.Response(200, json=body)
        return httpx.Response(200, json={"survey_responses": [], "meta": {"has_more": False}})

    client = HelpdeskClient("https://acme.zendesk.test", email="a@b.c", api_token="t", support_type_scope="all",
                            transport=httpx.MockTransport(handler), requests_per_minute=None,
                            export_requests_per_minute=None)
    list(client.export_tickets(start_time=0))
    assert seen[0].params["support_type_scope"] == "all"
    pages = list(client.export_survey_responses(created_after_ms=1_700_000_000_000))
    assert [len(p.ratings) for p in pages] == [1, 0]
    assert seen[1].params["filter[created_at_start]"] == "1700000000000"
    assert seen[2].params["page[after]"] == "MW" and seen[2].params["filter[created_at_start]"] == "1700000000000"


def test_a_403_asks_for_an_admin_token():
    import httpx

    from ticketlens.adapters.helpdesk import HelpdeskAuthError, HelpdeskClient

    forbidden = {"error": "Forbidden", "description": "You do not have access to this page."}
    client = HelpdeskClient("https://acme.zendesk.test", email="a@b.c", api_token="secret-token",
                            transport=httpx.MockTransport(lambda r: httpx.Response(403, json=forbidden)),
                            requests_per_minute=None, export_requests_per_minute=None)
    with pytest.raises(HelpdeskAuthError, match="admin-only") as err:
        next(client.export_tickets(start_time=0))
    assert "admin role" in str(err.value) and "secret-token" not in str(err.value)
    assert "agent or admin" not in str(err.value)
