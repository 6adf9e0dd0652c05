"""Zendesk webhook signatures: ``base64(HMAC-SHA256(secret, timestamp + raw body))``.

Zendesk sends the signature in ``X-Zendesk-Webhook-Signature`` and the signed timestamp in
``X-Zendesk-Webhook-Signature-Timestamp`` (ISO 8601, e.g. ``2026-12-01T23:59:58Z``). The timestamp is part of
the signed message, so a replay window on it stops a captured request from being replayed later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature Zendesk computes (and the simulator sends)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signature_matches(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Constant-time comparison of the expected signature with the one received."""
    return hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.strip().encode())


def parse_timestamp(value: str) -> datetime | None:
    """The signature timestamp as UTC: ISO 8601 (what Zendesk sends) or Unix seconds; None if neither."""
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        try:
            return datetime.fromtimestamp(int(text), UTC)
        except (OverflowError, OSError, ValueError):
            return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else None


def utc_timestamp(now: datetime | None = None) -> str:
    """A signature timestamp in Zendesk's format."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
