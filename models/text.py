"""Ticket text preparation for models: strip HTML, quoted replies and signatures; mask PII; combine fields.

Why: classifiers should learn from what the customer wrote *this time*, not from the e-mail client's quoting,
the agent's previous reply or a phone signature; and no customer e-mail, phone number or URL may reach MLflow,
Slack or a model artifact. Masks are typed placeholders (``<email>``, ``<phone>``, ``<url>``) so the fact that a
ticket contains a link (phishing!) or a phone number (fake support-number spam) remains a usable signal.
"""

from __future__ import annotations

import html
import re

_TAG = re.compile(r"<\s*(script|style)[^>]*>.*?<\s*/\s*\1\s*>|<[^>]+>", re.IGNORECASE | re.DOTALL)
_BLOCK_TAG = re.compile(r"<\s*(br|/p|/div|/li|/tr|p|div|li|tr)\b[^>]*>", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"(?:https?://|www\.)[^\s<>\"')\]]+", re.IGNORECASE)
# Phone numbers: 7+ digits with optional +country, separators, parentheses. Requires digits-only groups so
# dates like 2026-08-01 (8 digits but ISO shape) and order ids with letters are left alone.
_PHONE = re.compile(r"(?<![\w/])(?:\+?\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,4}(?![\w/])")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Start of a quoted reply in the common mail clients (English and the other languages we see).
_QUOTE_HEADERS = re.compile(
    r"^\s*(?:On .{4,120}wrote:|Le .{4,120}a écrit\s*:|El .{4,120}escribió:|Am .{4,120}schrieb.{0,40}:|"
    r"Em .{4,120}escreveu:|-{2,}\s*Original Message\s*-{2,}|-{2,}\s*Forwarded message\s*-{2,}|From:\s.+|"
    r"De\s*:\s.+|Von:\s.+|\d{4}年.{1,40}:)\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_SIGNATURE = re.compile(
    r"^\s*(?:--\s*|Sent from my \w+.*|Enviado desde mi .*|Envoyé de mon .*|Von meinem .* gesendet|"
    r"Best(?: regards)?,?|Kind regards,?|Regards,?|Thanks(?: in advance)?,?|Thank you,?|Cheers,?|Saludos,?|"
    r"Cordialement,?|Mit freundlichen Grüßen,?|Atenciosamente,?|Obrigad[oa],?)\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_WS = re.compile(r"[ \t\r\f\v]+")
_BLANKS = re.compile(r"\n\s*\n+")


def strip_html(text: str) -> str:
    """HTML e-mail → plain text (block tags become line breaks, entities decoded, scripts dropped)."""
    if "<" not in text and "&" not in text:
        return text
    text = _BLOCK_TAG.sub("\n", text)
    text = _TAG.sub(" ", text)
    return html.unescape(text)


def strip_quoted_reply(text: str) -> str:
    """Cut at the first quoted-reply header and drop ``>``-quoted lines."""
    match = _QUOTE_HEADERS.search(text)
    if match and match.start() > 0:
        text = text[: match.start()]
    return "\n".join(line for line in text.split("\n") if not line.lstrip().startswith(">"))


def strip_signature(text: str) -> str:
    """Cut at a sign-off line ("Best, …", "Sent from my iPhone", "-- ") when it is not the whole message."""
    match = _SIGNATURE.search(text)
    if match and match.start() > 0:
        return text[: match.start()]
    return text


def _phone(match: re.Match) -> str:
    value = match.group(0)
    digits = sum(ch.isdigit() for ch in value)
    if digits < 7 or digits > 15 or _ISO_DATE.match(value.strip()):
        return value
    return "<phone>"


def mask_pii(text: str) -> str:
    """Replace e-mail addresses, URLs and phone numbers with typed placeholders."""
    text = _EMAIL.sub("<email>", text)
    text = _URL.sub("<url>", text)
    return _PHONE.sub(_phone, text)


def prepare_text(subject: str | None, description: str | None) -> str:
    """Subject + cleaned, PII-masked description: the one input every model in TicketLens sees."""
    body = description or ""
    body = strip_html(body)
    body = strip_quoted_reply(body)
    body = strip_signature(body)
    combined = f"{subject or ''}\n{body}"
    combined = mask_pii(combined)
    combined = _WS.sub(" ", combined)
    return _BLANKS.sub("\n", combined).strip()
