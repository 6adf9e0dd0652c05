"""Zendesk ``via.channel``: a via type (string) or a via id (integer, sometimes as a numeric string).

Zendesk documents ``via.channel`` as "string or integer" (developer.zendesk.com, Via object reference) and maps
via ids to via types in its Via types reference. A channel is descriptive, never a reason to reject a ticket:
ids in the table become their names, ids outside it become ``via_<id>`` (kept, not guessed), and any string is
kept as sent. Pure functions; the caller decides how to log unknown values (once per value).
"""

from __future__ import annotations

from typing import Any

#: Via id → via type, from Zendesk's Via types reference (ids 0-41 as listed there; 56 is the id its Via object
#: reference gives for ``mobile``). Ids not listed here are kept as ``via_<id>``.
VIA_TYPES: dict[int, str] = {
    0: "web_form", 4: "mail", 5: "web_service", 8: "rule", 9: "linked_problem", 10: "group_deletion",
    11: "user_change", 12: "user_deletion", 13: "group_change", 14: "resource_push", 15: "iphone",
    16: "get_satisfaction", 17: "dropbox", 19: "merge", 20: "batch", 21: "recovered_from_suspended_tickets",
    22: "automatic_solution_suggestions", 23: "twitter_favorite", 24: "topic", 25: "user_merge", 26: "twitter_dm",
    27: "closed_ticket", 28: "logmein_rescue", 29: "chat", 30: "twitter", 31: "ticket_sharing",
    32: "macro_reference", 33: "voicemail", 34: "phone_call_inbound", 35: "phone_call_outbound", 36: "blog",
    37: "text_message", 38: "facebook_post", 39: "import", 40: "github", 41: "facebook_message", 56: "mobile",
}

#: Via types TicketLens has seen documented for tickets (the ones above plus the newer string-only values).
#: Used only to decide what is worth a log line, never to reject a ticket.
KNOWN_CHANNELS: frozenset[str] = frozenset(VIA_TYPES.values()) | {
    "web", "email", "api", "mobile_sdk", "voice", "sms", "native_messaging", "any_channel", "web_widget",
    "helpcenter", "help_center", "sample_ticket", "sample_interactive_ticket", "side_conversation", "instagram_dm",
    "whatsapp", "line", "wechat", "telegram", "messagebird_sms", "kakaotalk", "apple_business_chat",
    "google_business_messages", "google_rcs", "facebook", "admin_setting", "satisfaction_prediction",
    "ticket_tagging", "connect_ipm", "connect_mail", "connect_sms", "rule_revision", "answer_bot",
    "answer_bot_api", "answer_bot_for_agents", "answer_bot_for_sdk", "answer_bot_for_slack",
    "answer_bot_for_web_widget", "business_messaging_slack_connect", "chat_offline_message", "chat_transcript",
    "churned_account", "api_voicemail", "api_phone_call_inbound", "api_phone_call_outbound", "lotus",
    "monitor_event", "mailgun", "omnichannel", "ai_agent", "system",
}

#: Longest channel text stored (the warehouse column; the longest documented via type has 32 characters);
#: longer values are cut, never rejected.
MAX_CHANNEL_CHARS = 32


def channel_name(value: Any) -> tuple[str | None, bool]:
    """(channel name, known). ``4`` and ``"4"`` → ``"mail"``; ``"native_messaging"`` stays; ``77`` → ``"via_77"``.

    ``known`` is False for an id missing from the table or a string TicketLens has not seen documented, so the
    caller can log it once. Booleans, objects and lists are not channels: they come back as None (unknown).
    """
    if value is None:
        return None, True
    if isinstance(value, bool) or isinstance(value, dict | list):
        return None, False
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        name = VIA_TYPES.get(value)
        return (name, True) if name else (f"via_{value}", False)
    text = str(value).strip()
    if text.isdigit():
        return channel_name(int(text))
    text = text[:MAX_CHANNEL_CHARS]
    return text, text.lower() in KNOWN_CHANNELS


def unknown_channels(records) -> dict[str, Any]:
    """Stored name → raw value of every channel in a page that is not a documented via type or id."""
    out: dict[str, Any] = {}
    for rec in records:
        via = rec.get("via") if isinstance(rec, dict) else None
        if isinstance(via, dict) and via.get("channel") is not None:
            name, known = channel_name(via["channel"])
            if not known:
                out.setdefault(str(name), via["channel"])
    return out
