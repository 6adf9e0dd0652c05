"""Text preparation: HTML, quoted replies, signatures removed; PII masked (nothing identifying survives)."""

from __future__ import annotations

import pytest

from ticketlens.models.text import mask_pii, prepare_text, strip_html


@pytest.mark.parametrize("raw", [
    "write to maria.lopez+pins@example.co.uk please",
    "call me at +1 415 555 0134",
    "call me at (415) 555-0134",
    "mi número es 612 34 56 78",
    "see https://evil.example.com/login?x=1 now",
    "go to www.pinterest-help.top",
])
def test_pii_is_masked(raw):
    masked = mask_pii(raw)
    assert not any(token in masked for token in ("@example", "555", "612 34", "evil.example", "pinterest-help"))
    assert "<" in masked


def test_dates_and_small_numbers_survive_masking():
    assert mask_pii("since 2026-08-01 I lost 30 pins") == "since 2026-08-01 I lost 30 pins"


def test_html_email_becomes_plain_text():
    text = strip_html("<div><p>My board&nbsp;is gone</p><script>alert(1)</script><br>help</div>")
    assert "alert" not in text and "<" not in text and "board" in text and "help" in text


def test_quoted_reply_and_signature_are_removed():
    raw = (
        "<p>The reset link still does not work.</p><p>Best,<br>Maria<br>+1 415 555 0134</p>"
        "<p>On Mon, Aug 3, 2026 at 10:00 AM Support &lt;help@example.com&gt; wrote:</p>"
        "<p>&gt; Please try the link we sent about your boards</p>"
    )
    text = prepare_text("Password reset", raw)
    assert text.startswith("Password reset")
    assert "reset link still does not work" in text
    assert "Maria" not in text and "boards" not in text and "555" not in text


def test_empty_inputs():
    assert prepare_text(None, None) == ""
    assert prepare_text("help", "") == "help"
