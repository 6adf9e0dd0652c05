"""Fast unit tests of the poison-record screen, the bounded body reader and the content-free load error.

The flow-level proof is tests/flows/test_hostile_helpdesk.py; these pin the helpers' edge cases cheaply.
"""

from __future__ import annotations

import gzip
import json

import httpx
import pytest
import sqlalchemy as sa

from ticketlens.adapters import http_body
from ticketlens.models import sanitize


def test_screen_names_each_poison_kind_and_keeps_clean_records():
    records = [{"id": 1, "subject": "ok"}, {"id": 2, "subject": "a\ud800"}, {"id": 3, "n": 2**64},
               {"id": 4, "x": float("nan")}, {"id": 5, "deep": sanitize.truncate_depth([[[[]]]])}, 7, None,
               {"id": {"a": 1}}, {"id": 6, "cf": json.loads("[" * 40 + "]" * 40)}]
    screened = sanitize.screen_records(records, [{"ticket_id": 1, "reopens": 2**70}])
    assert [r["id"] for r in screened.clean] == [5]
    reasons = {p.index: p.reasons for p in screened.poisoned}
    assert reasons[0] == ["metric set: an integer outside the signed 64-bit range in reopens"]
    assert reasons[1] == ["a lone UTF-16 surrogate (invalid Unicode) in subject"]
    assert reasons[2] == ["an integer outside the signed 64-bit range in n"]
    assert reasons[3] == ["a non-finite number (NaN or Infinity) in x"]
    assert reasons[5] == ["record is not a JSON object (got int)"]
    assert reasons[6] == ["record is not a JSON object (got null)"]
    assert reasons[7] == ["id is an object, not an integer"]
    assert reasons[8] == ["nested deeper than 32 levels in cf"]
    assert all(p.payload and len(p.payload_sha256) == 64 for p in screened.poisoned)


def test_canonical_json_never_raises_and_keeps_what_was_sent():
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    for value in ({"s": "\ud800"}, {"n": 2**70}, {"d": deep}, {"f": float("inf")}):
        text = sanitize.canonical_json(value)
        assert text.isascii() or "\ud800" not in text
    assert "\\ud800" in sanitize.canonical_json({"s": "\ud800"})
    assert str(2**70) in sanitize.canonical_json({"n": 2**70})


def test_record_labels_are_short_and_printable():
    assert sanitize.record_label(12) == "12"
    assert sanitize.record_label("²") == "\\xb2"
    assert sanitize.record_label("a\x00b") == "a\\x00b"
    assert len(sanitize.record_label("x" * 500)) == 64
    assert sanitize.record_label({"a": 1}) is None


def test_strip_nul_reaches_keys_and_nested_values():
    assert sanitize.strip_nul({"a\x00": ["b\x00", {"c": "\x00d"}]}) == {"a": ["b", {"c": "d"}]}


def test_deep_json_is_parsed_iteratively_with_a_marker():
    body = ('{"tickets": [{"id": 1, "cf": ' + "[" * 5000 + "]" * 5000 + '}, {"id": 2, "x": NaN}]}').encode()
    parsed = http_body.loads(body)
    assert parsed["tickets"][1]["id"] == 2 and parsed["tickets"][1]["x"] != parsed["tickets"][1]["x"]
    assert http_body.DEEP_MARKER in json.dumps(parsed["tickets"][0])


def _streamed(body: bytes, headers: dict[str, str]) -> httpx.Response:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=headers, stream=httpx.ByteStream(body))

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        response = client.send(client.build_request("GET", "http://127.0.0.1/x"), stream=True)
        return response


@pytest.mark.parametrize("encoding", ["gzip", "deflate", ""])
def test_body_cap_counts_decompressed_bytes(encoding):
    raw = b"{" + b" " * (3 * 2**20) + b"}"
    body = gzip.compress(raw) if encoding == "gzip" else __import__("zlib").compress(raw) if encoding else raw
    headers = {"Content-Encoding": encoding} if encoding else {}
    with pytest.raises(http_body.ResponseTooLargeError):
        http_body.read_capped(_streamed(body, headers), 2**20)
    ok = http_body.read_capped(_streamed(body, headers), 4 * 2**20)
    assert ok.content == raw and ok.json() == {}


def test_a_refused_page_error_carries_no_field_content(monkeypatch, sqlite_url):
    import pandas as pd

    from ticketlens.adapters.warehouse.engine import migrate
    from ticketlens.tasks import ingest

    migrate(sqlite_url)

    def refuse(*args, **kwargs):
        raise sa.exc.DataError("INSERT", {}, ValueError('invalid input: "Jane Doe, card 4111"'))

    monkeypatch.setattr(ingest, "upsert_versioned", refuse)
    empty = pd.DataFrame(columns=["record_id", "payload", "payload_sha256", "failed_checks"])
    outcome = ingest.JudgedPage(valid=pd.DataFrame({"id": [1]}), quarantined=empty, checks=[], rows=1,
                                watermark=None)
    with pytest.raises(ingest.WarehouseLoadError) as info:
        ingest.load_page.fn(sqlite_url, ingest.TICKET_STREAM, [{"id": 1, "subject": "Jane Doe, card 4111"}],
                            outcome, next_cursor=None, watermark=None, run_id="r")
    message = str(info.value)
    assert "Jane Doe" not in message and "4111" not in message
    assert "ValueError" in message and "Record ids on the page: 1" in message
