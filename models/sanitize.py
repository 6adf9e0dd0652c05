"""Poison-record checks for helpdesk JSON (pure: no Prefect, no I/O).

A hostile or broken helpdesk can send values that parse as JSON but break something downstream: a lone UTF-16
surrogate (no UTF-8 encoding exists, so no database or JSON encoder accepts it), an integer beyond 64 bits (no
BIGINT column holds it), ``NaN``/``Infinity`` (not JSON for PostgreSQL's JSONB), nesting hundreds of levels deep
(encoders and ``repr`` recurse), or a "record" that is not an object at all. Any of these used to crash a whole
page, on every rerun. ``screen_records`` takes them out of the page *before* normalization, with a reason each,
so they can be quarantined while the rest of the page loads.

Reasons and record labels never quote field content (ticket text may hold PII): they name the field, the kind
of problem and, when it has a usable one, the record id.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

#: Deeper than this anywhere in a record is a poison record. Zendesk's deepest real values (a multi-select
#: custom field, ``via.source.from``) are 4-5 levels; JSON encoders start failing in the hundreds.
MAX_JSON_DEPTH = 32
#: Quarantined payloads keep at most this depth (deeper containers are replaced by a marker string).
MAX_PAYLOAD_DEPTH = 64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
TRUNCATED = "<ticketlens: nested deeper than {depth} levels, truncated>"
_SAFE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\[\]]{0,63}", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class Poisoned:
    """A record taken out of a page before normalization, with what is wrong with it."""

    index: int
    record_id: str | None
    payload: str
    payload_sha256: str
    reasons: list[str]


@dataclass
class Screened:
    """A page split into records safe to normalize and poison records (to quarantine as they are)."""

    clean: list[Any] = field(default_factory=list)
    poisoned: list[Poisoned] = field(default_factory=list)
    metric_sets: list[Any] = field(default_factory=list)


def has_lone_surrogate(text: str) -> bool:
    """True when ``text`` holds an unpaired UTF-16 surrogate (``"\\ud800"`` in JSON): it has no UTF-8 form."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def record_label(value: Any) -> str | None:
    """A record id fit for a log line, an error message and the 64-character ``record_id`` columns.

    Integers and strings are kept (non-ASCII and control characters escaped, at most 64 characters); any other
    JSON type has no usable id (``None``): the reason then says what the id was.
    """
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, float):
        text = repr(value)
    elif isinstance(value, (bool, int)):
        text = str(value) if not isinstance(value, int) or abs(value) < 10**60 else f"{str(value)[:20]}...(int)"
    elif isinstance(value, str):
        text = value.encode("ascii", "backslashreplace").decode("ascii")
        text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    else:
        return None
    return text if len(text) <= 64 else text[:61] + "..."


def _field_name(key: Any) -> str:
    """A top-level field name for a reason: the key itself when it looks like a field name, never raw data."""
    return key if isinstance(key, str) and _SAFE_NAME.fullmatch(key) else "a field with an unusual name"


def json_problems(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> list[str]:
    """What in a parsed JSON value would break the warehouse or the pipeline, one reason per kind and field.

    Iterative (an explicit stack), so nesting of any depth is judged without recursing.
    """
    found: dict[tuple[str, str], None] = {}
    top = value if isinstance(value, Mapping) else {"record": value}
    stack: list[tuple[Any, str, int]] = []
    for key, child in top.items():
        name = _field_name(key)
        if isinstance(key, str) and has_lone_surrogate(key):
            found[("a lone UTF-16 surrogate (invalid Unicode) in a key", "record")] = None
        stack.append((child, name, 1))
    while stack:
        node, name, depth = stack.pop()
        if depth > max_depth:
            found[(f"nested deeper than {max_depth} levels", name)] = None
            continue
        if isinstance(node, Mapping):
            for key, child in node.items():
                if not isinstance(key, str):
                    found[("a key that is not a string", name)] = None
                elif has_lone_surrogate(key):
                    found[("a lone UTF-16 surrogate (invalid Unicode) in a key", name)] = None
                stack.append((child, name, depth + 1))
        elif isinstance(node, list):
            stack.extend((child, name, depth + 1) for child in node)
        elif isinstance(node, str):
            if has_lone_surrogate(node):
                found[("a lone UTF-16 surrogate (invalid Unicode)", name)] = None
        elif isinstance(node, bool) or node is None:
            continue
        elif isinstance(node, int):
            if not INT64_MIN <= node <= INT64_MAX:
                found[("an integer outside the signed 64-bit range", name)] = None
        elif isinstance(node, float):
            if not math.isfinite(node):
                found[("a non-finite number (NaN or Infinity)", name)] = None
        else:
            found[(f"a value of type {type(node).__name__}", name)] = None
    return [f"{kind} in {name}" for kind, name in found]


def truncate_depth(value: Any, max_depth: int = MAX_PAYLOAD_DEPTH) -> Any:
    """A copy of ``value`` with containers deeper than ``max_depth`` replaced by a marker string (iterative)."""
    marker = TRUNCATED.format(depth=max_depth)

    def shell(node: Any) -> Any:
        return {} if isinstance(node, Mapping) else [] if isinstance(node, list) else node

    root = shell(value)
    stack: list[tuple[Any, Any, int]] = [(value, root, 1)] if isinstance(value, (Mapping, list)) else []
    while stack:
        src, dst, depth = stack.pop()
        items = src.items() if isinstance(src, Mapping) else enumerate(src)
        for key, child in items:
            if isinstance(child, (Mapping, list)):
                if depth + 1 > max_depth:
                    copy: Any = marker
                else:
                    copy = shell(child)
                    stack.append((child, copy, depth + 1))
            else:
                copy = child
            if isinstance(dst, dict):
                dst[key] = copy
            else:
                dst.append(copy)
    return root


def canonical_json(record: Any) -> str:
    """Stable JSON text of any parsed record (sorted keys); never raises.

    orjson for normal records (fast, and the form earlier versions hashed); for what orjson refuses (lone
    surrogates, integers beyond 64 bits, very deep nesting) the stdlib encoder with ASCII escapes, so the text
    keeps what the API sent (``\\ud800`` stays an escape, big integers stay exact) after truncating nesting
    deeper than ``MAX_PAYLOAD_DEPTH``.
    """
    try:
        return orjson.dumps(record, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str).decode()
    except (orjson.JSONEncodeError, TypeError, RecursionError):
        pass  # too deep, a lone surrogate or a huge int for orjson: the slower stdlib path below handles them
    return json.dumps(truncate_depth(record), sort_keys=True, ensure_ascii=True, allow_nan=True, default=str)


def payload_sha256(payload: str) -> str:
    return hashlib.sha256(payload.encode("utf-8", "backslashreplace")).hexdigest()


def _poison(index: int, rec: Any, reasons: list[str]) -> Poisoned:
    payload = canonical_json(rec)
    rid = record_label(rec.get("id")) if isinstance(rec, Mapping) else None
    return Poisoned(index, rid, payload, payload_sha256(payload), reasons)


def record_reasons(rec: Any) -> list[str]:
    """Why a record cannot be normalized at all (empty when it can)."""
    if not isinstance(rec, Mapping):
        kind = "null" if rec is None else type(rec).__name__
        return [f"record is not a JSON object (got {kind})"]
    reasons = json_problems(rec)
    rid = rec.get("id")
    if isinstance(rid, (Mapping, list)):  # other wrong types are type errors of the normal path
        reasons.append(f"id is {'an object' if isinstance(rid, Mapping) else 'a list'}, not an integer")
    return reasons


def screen_records(records: Sequence[Any], metric_sets: Sequence[Any] | None = None) -> Screened:
    """Split a page into records safe to normalize and poison records (with reasons).

    Metric sets (tickets only) are screened too: a ticket whose metric set is poisoned is quarantined with the
    metric set's reason, and poisoned or unkeyed metric sets never reach normalization.
    """
    out = Screened()
    bad_metrics: dict[Any, list[str]] = {}
    for m in metric_sets or ():
        key = m.get("ticket_id") if isinstance(m, Mapping) else None
        problems = json_problems(m) if isinstance(m, Mapping) else ["not a JSON object"]
        if key is None or isinstance(key, bool) or not isinstance(key, (int, str)):
            continue  # cannot belong to any ticket: ignored, as before
        if problems:
            bad_metrics.setdefault(key, []).extend(f"metric set: {p}" for p in problems)
        else:
            out.metric_sets.append(m)
    for index, rec in enumerate(records):
        reasons = record_reasons(rec)
        if not reasons and bad_metrics:
            reasons = bad_metrics.get(rec.get("id"), [])
        if reasons:
            out.poisoned.append(_poison(index, rec, reasons))
        else:
            out.clean.append(rec)
    return out


def list_item_errors(name: str, value: Any) -> bool:
    """True when a list field holds items of the wrong type (``tags`` must be strings; ``custom_fields`` must be
    objects with an integer ``id`` and a scalar or list-of-scalars ``value``)."""
    if not isinstance(value, list):
        return False
    if name == "tags":
        return not all(isinstance(tag, str) for tag in value)
    if name == "custom_fields":
        for entry in value:
            if not isinstance(entry, Mapping):
                return True
            fid = entry.get("id")
            if isinstance(fid, bool) or not isinstance(fid, int):
                return True
            val = entry.get("value")
            if isinstance(val, list):
                if not all(v is None or isinstance(v, (str, int, float, bool)) for v in val):
                    return True
            elif not (val is None or isinstance(val, (str, int, float, bool))):
                return True
    return False


def strip_nul(value: Any) -> Any:
    """A copy of a JSON value without NUL characters in any string or key.

    PostgreSQL cannot store U+0000 in ``text`` or ``jsonb`` (``\\u0000`` is rejected), and it carries no
    meaning in a ticket; stripping it on every backend keeps SQLite and PostgreSQL identical.
    """
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, Mapping):
        return {strip_nul(k): strip_nul(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strip_nul(v) for v in value]
    return value


def warehouse_json_dumps(value: Any) -> str:
    """The warehouse's JSON serializer (both backends): ``json.dumps`` (SQLAlchemy's default) without NUL."""
    return json.dumps(strip_nul(value))
