"""Typed Zendesk custom-field values → what the warehouse stores (pure).

A ticket's ``custom_fields`` keep every value exactly as the API typed it (the JSON column ``custom_fields``):
text and drop-down fields hold strings, multiselect fields lists of option values, checkboxes booleans, numeric
and decimal fields numbers (or numeric strings), date fields ``YYYY-MM-DD`` strings. ``str()`` on those gives
``"['a', 'b']"`` and ``"True"``, which no report can use, so the two fields TicketLens reads get a defined form:

* ``contact_reasons`` (JSON list of text): every option the customer chose, in the order Zendesk sent them; a
  single-valued field gives a one-element list, an empty field NULL.
* ``contact_reason`` / ``confirmed_category`` (text): the value when there is exactly one; NULL when a
  multiselect holds several (the full choice is in ``contact_reasons``). Booleans become ``"true"``/``"false"``,
  integral numbers ``"3"`` (not ``"3.0"``).

Self-selection reports (``models.ops_reports.self_selection_report``) count a ticket whose customer chose k
reasons under each of them with weight 1/k, so every ticket weighs 1 in total and an option's share of tickets
is not inflated by customers who ticked everything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def value_text(value: Any) -> str | None:
    """One scalar field value as text; None for None/NaN/empty; objects are not scalar → None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value if value.strip() else None
    return None


def value_list(value: Any) -> list[str] | None:
    """Every chosen value as text (see the module docstring); None when nothing was chosen."""
    items = value if isinstance(value, list) else [value]
    out = [text for text in (value_text(v) for v in items) if text is not None]
    return out or None


def single_text(value: Any) -> str | None:
    """The value when exactly one was chosen, else None (several in a multiselect, or none)."""
    chosen = value_list(value)
    return chosen[0] if chosen and len(chosen) == 1 else None


def custom_value(custom_fields: Any, field_id: int | None) -> Any:
    """The raw (typed) value of one custom field in a ticket's ``custom_fields`` list; ids compare as integers."""
    if field_id is None or not isinstance(custom_fields, list):
        return None
    for entry in custom_fields:
        if isinstance(entry, Mapping):
            fid = entry.get("id")
            if fid == field_id or (isinstance(fid, str) and fid.strip().isdigit() and int(fid) == field_id):
                return entry.get("value")
    return None
