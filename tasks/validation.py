"""Great Expectations 1.x suites for every ingested batch, and the split into valid and quarantined rows.

Suites live in code (reviewed like code, no YAML store to drift). GX runs in an ephemeral context created
once per process: ``import great_expectations`` costs seconds, so it is imported lazily, only when the first
batch is validated, and nothing here touches the disk.

How a batch is judged:
* table-level checks (a required column exists) failing mean schema drift → ``SchemaDriftError``; the caller's
  transaction never starts, so the cursor does not move;
* row-level checks name the failing rows via ``unexpected_index_list`` on the ``_row`` column; those rows go to
  quarantine with the names of every check they failed, the rest load;
* if the quarantined share exceeds ``max_failure_share`` the batch is more likely a broken API than bad rows →
  ``ValidationFailedError``, nothing loads.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ticketlens.models.records import (
    PRIORITIES,
    RATING_REQUIRED,
    STATUSES,
    TICKET_REQUIRED,
    TYPES,
    SchemaDriftError,
)

# ``via.channel`` is deliberately not checked against a list: Zendesk documents it as "string or integer" with
# dozens of values and adds new ones; ``models.zendesk_via`` maps ids to names and unknown values are logged once
# (tasks.zendesk_compat), never quarantined.
MAX_SUBJECT_CHARS = 10_000
MAX_COMMENT_CHARS = 100_000


class ValidationFailedError(RuntimeError):
    """Too large a share of a batch failed validation: the source is more likely broken than the rows."""


@dataclass
class ValidationOutcome:
    """Result of validating one batch: rows to load, rows to quarantine, and per-check counts."""

    valid: pd.DataFrame
    quarantined: pd.DataFrame  # columns: record_id, payload, payload_sha256, failed_checks (list[str])
    checks: list[dict[str, Any]] = field(default_factory=list)
    rows: int = 0

    @property
    def failure_share(self) -> float:
        return len(self.quarantined) / self.rows if self.rows else 0.0


def _record_checks(e, required: Sequence[str]):
    """What every stream checks: required fields exist (else schema drift) and are filled, ids unique, values
    of the right type, and a record never updated before it was created."""
    return [
        *(e.ExpectColumnToExist(column=c) for c in required),
        *(e.ExpectColumnValuesToNotBeNull(column=c) for c in required),
        e.ExpectColumnValuesToBeUnique(column="id"),
        e.ExpectColumnValuesToBeNull(column="_type_errors"),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="updated_at", column_B="created_at", or_equal=True,
                                                  ignore_row_if="either_value_is_missing"),
    ]


def _ticket_suite(gx, max_text_chars: int):
    e = gx.expectations
    return [
        *_record_checks(e, TICKET_REQUIRED),
        e.ExpectColumnValuesToBeInSet(column="status", value_set=list(STATUSES)),
        e.ExpectColumnValuesToBeInSet(column="priority", value_set=list(PRIORITIES)),
        e.ExpectColumnValuesToBeInSet(column="type", value_set=list(TYPES)),
        e.ExpectColumnValueLengthsToBeBetween(column="subject", max_value=MAX_SUBJECT_CHARS),
        e.ExpectColumnValueLengthsToBeBetween(column="description", max_value=max_text_chars),
    ]


def _rating_suite(gx, max_text_chars: int):
    e = gx.expectations
    return [
        *_record_checks(e, RATING_REQUIRED),
        # Text, not an enum: "good"/"bad" today, 1-5 on newer CSAT scales.
        e.ExpectColumnValueLengthsToBeBetween(column="score", min_value=1, max_value=32),
        e.ExpectColumnValueLengthsToBeBetween(column="comment", max_value=min(max_text_chars, MAX_COMMENT_CHARS)),
    ]


class _Validator:
    """One ephemeral GX context with one pandas asset and suite per stream (built on first use)."""

    _lock = threading.Lock()
    _instance: _Validator | None = None

    def __init__(self) -> None:
        import great_expectations as gx

        self.gx = gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.context = gx.get_context(mode="ephemeral")
        # Per-page progress bars would flood the Prefect logs (one run validates hundreds of pages).
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        self.source = self.context.data_sources.add_pandas(name="ticketlens")
        self.batches: dict[str, Any] = {}
        self.suites: dict[tuple[str, int], Any] = {}

    @classmethod
    def get(cls) -> _Validator:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def suite(self, stream: str, max_text_chars: int):
        key = (stream, max_text_chars)
        if key not in self.suites:
            build = _ticket_suite if stream == "tickets" else _rating_suite
            suite = self.gx.ExpectationSuite(name=f"{stream}-{max_text_chars}")
            for expectation in build(self.gx, max_text_chars):
                suite.add_expectation(expectation)
            self.suites[key] = suite
        return self.suites[key]

    def batch_definition(self, stream: str):
        if stream not in self.batches:
            asset = self.source.add_dataframe_asset(name=stream)
            self.batches[stream] = asset.add_batch_definition_whole_dataframe(f"{stream}-page")
        return self.batches[stream]

    def run(self, stream: str, frame: pd.DataFrame, max_text_chars: int):
        with self._lock:  # GX contexts are not documented as thread-safe
            batch = self.batch_definition(stream).get_batch(batch_parameters={"dataframe": frame})
            return batch.validate(
                self.suite(stream, max_text_chars),
                result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["_row"]},
            )


def _check_name(config) -> str:
    kwargs = config.kwargs
    column = kwargs.get("column") or (
        f"{kwargs['column_A']},{kwargs['column_B']}" if "column_A" in kwargs else ""
    )
    return f"{config.type}({column})"


def validate_batch(
    stream: str, frame: pd.DataFrame, *, max_failure_share: float, max_text_chars: int
) -> ValidationOutcome:
    """Validate one normalized page (see ``models.records``); split it into valid and quarantined rows."""
    if frame.empty:
        empty_q = pd.DataFrame(columns=["record_id", "payload", "payload_sha256", "failed_checks"])
        return ValidationOutcome(valid=frame, quarantined=empty_q, checks=[], rows=0)
    result = _Validator.get().run(stream, frame, max_text_chars)

    failures: dict[int, list[str]] = {}
    checks: list[dict[str, Any]] = []
    drift: list[str] = []
    for res in result.results:
        config = res.expectation_config
        name = _check_name(config)
        if config.type == "expect_column_to_exist":
            if not res.success:
                drift.append(config.kwargs["column"])
            continue
        if res.exception_info and res.exception_info.get("raised_exception"):
            raise RuntimeError(f"Validation check {name} on {stream} could not run: "
                               f"{res.exception_info.get('exception_message')}. Nothing from this page was "
                               f"loaded and the cursor did not move. This is a TicketLens bug or an "
                               f"incompatible great-expectations version (the lock pins 1.x): re-run after "
                               f"`make install`, and report the message if it persists.")
        unexpected = (res.result or {}).get("unexpected_index_list") or []
        rows = {int(item["_row"]) for item in unexpected if isinstance(item, dict) and "_row" in item}
        checks.append({"expectation": config.type, "column": name[len(config.type) + 1:-1],
                       "success": bool(res.success), "unexpected_count": len(rows)})
        for row in rows:
            failures.setdefault(row, []).append(name)
    if drift:
        raise SchemaDriftError(
            f"Schema drift in the {stream} stream: required field(s) {', '.join(drift)} missing from every "
            f"record of the page. Nothing from this page was loaded and the cursor did not move; check whether "
            f"the helpdesk API changed before re-running."
        )
    _keep_newest_duplicates(frame, failures)

    bad_mask = frame["_row"].isin(failures.keys())
    bad = frame[bad_mask]
    quarantined = pd.DataFrame({
        "record_id": bad["_record_id"].tolist(),
        "payload": bad["_payload"].tolist(),
        "payload_sha256": bad["_sha256"].tolist(),
        "failed_checks": [_describe(failures[r], t) for r, t in zip(bad["_row"], bad["_type_errors"], strict=True)],
    })
    outcome = ValidationOutcome(valid=frame[~bad_mask], quarantined=quarantined, checks=checks, rows=len(frame))
    if outcome.failure_share > max_failure_share:
        worst = sorted(checks, key=lambda c: -c["unexpected_count"])[:3]
        raise ValidationFailedError(
            f"{len(quarantined)} of {len(frame)} {stream} rows ({outcome.failure_share:.0%}) failed validation, "
            f"above TICKETLENS_VALIDATION_MAX_FAILURE_SHARE={max_failure_share:g}. Worst checks: "
            + ", ".join(f"{c['expectation']}({c['column']}): {c['unexpected_count']}" for c in worst)
            + ". Nothing from this page was loaded and the cursor did not move."
        )
    return outcome


def _describe(names: Sequence[str], type_errors: Any) -> list[str]:
    out = []
    for name in names:
        if "_type_errors" in name and isinstance(type_errors, str):
            out.append(f"{name}: wrong type in {type_errors}")
        else:
            out.append(name)
    return out


def _keep_newest_duplicates(frame: pd.DataFrame, failures: dict[int, list[str]]) -> None:
    """Rows sharing an id fail the uniqueness check; keep the newest version if it passes everything else.

    A page can carry the same ticket twice (the API repeated it, or it changed mid-export). The newest version
    by (updated_at, generated_timestamp, position) is the truth; the others stay in quarantine for the record.
    """
    unique_check = "expect_column_values_to_be_unique(id)"
    dup_rows = [r for r, names in failures.items() if unique_check in names]
    if not dup_rows:
        return
    dups = frame[frame["_row"].isin(dup_rows) & frame["id"].notna()]
    order = [c for c in ("updated_at", "generated_timestamp", "_row") if c in dups.columns]
    newest = dups.sort_values(order).groupby("id", sort=False).tail(1)
    for row in newest["_row"]:
        names = failures[int(row)]
        names.remove(unique_check)
        if not names:
            del failures[int(row)]


class TrainingDataError(ValueError):
    """The training set failed its Great Expectations checks."""


def validate_training_frame(frame: pd.DataFrame, leaves: Sequence[str]) -> list[dict[str, Any]]:
    """GX checks on a prepared training set: unique ids, non-empty text, labels inside the taxonomy.

    (Classes below the minimum size are excluded and reported before this runs, in
    ``models.training_data.prepare_training_set``.) Raises ``TrainingDataError`` naming the failed checks.
    """
    validator = _Validator.get()
    gx = validator.gx
    text = (frame["subject"].fillna("") + " " + frame["description"].fillna("")).str.strip()
    checked = pd.DataFrame({"id": frame["id"], "text": text, "label": frame["label"]})
    suite = gx.ExpectationSuite(name="training-set")
    for expectation in (
        gx.expectations.ExpectTableRowCountToBeBetween(min_value=1),
        gx.expectations.ExpectColumnValuesToBeUnique(column="id"),
        gx.expectations.ExpectColumnValueLengthsToBeBetween(column="text", min_value=1),
        gx.expectations.ExpectColumnValuesToBeInSet(column="label", value_set=list(leaves)),
    ):
        suite.add_expectation(expectation)
    with validator._lock:
        batch = validator.batch_definition("training").get_batch(batch_parameters={"dataframe": checked})
        result = batch.validate(suite)
    checks = [{"expectation": r.expectation_config.type, "column": r.expectation_config.kwargs.get("column", ""),
               "success": bool(r.success)} for r in result.results]
    failed = [f"{c['expectation']}({c['column']})" for c in checks if not c["success"]]
    if failed:
        raise TrainingDataError(
            f"The training set failed validation: {', '.join(failed)}. Nothing was trained or registered and the "
            f"champion is unchanged. Look at the labelled tickets (`SELECT id, confirmed_category FROM tickets "
            f"WHERE confirmed_category IS NOT NULL`): duplicate ids point at the warehouse load, empty text or "
            f"unknown labels at the helpdesk's confirmed-category field (TICKETLENS_CONFIRMED_CATEGORY_FIELD_TITLE)."
        )
    return checks
