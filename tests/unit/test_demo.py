"""The demo's own helpers: aligned tables with wide characters, stated decisions, a checkpointed warehouse."""

from __future__ import annotations

import sqlalchemy as sa

from ticketlens.adapters.warehouse.engine import checkpoint_warehouse, get_engine
from ticketlens.flows.demo import display_width, fit
from ticketlens.models.sentiment import sentiment_reason


def test_fit_pads_wide_characters_to_the_same_width():
    for subject in ("ピンが消えました", "Pins verschwunden", "A" * 40, ""):
        assert display_width(fit(subject, 26)) == 26
    assert fit("ピンが消えました", 5) == "ピン "  # never cut a wide character in half


def test_sentiment_reason_states_rule_numbers_and_near_chance():
    metrics = {"vader": {"roc_auc": 0.509, "macro_f1": 0.487}, "csat_model": {"roc_auc": 0.531, "macro_f1": 0.173}}
    reason = sentiment_reason(metrics, 0.02, "vader")
    assert reason.startswith("vader ships")
    assert "0.531" in reason and "0.173" in reason and "≥ 0.02" in reason
    assert "near chance" in reason
    strong = {"vader": {"roc_auc": 0.70, "macro_f1": 0.6}, "csat_model": {"roc_auc": 0.80, "macro_f1": 0.7}}
    assert "near chance" not in sentiment_reason(strong, 0.02, "csat_model")
    assert "only one score" in sentiment_reason({"vader": metrics["vader"]}, 0.02, "vader")


def test_checkpoint_folds_the_wal_back_into_the_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    engine = get_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x TEXT)"))
        conn.execute(sa.text("INSERT INTO t VALUES (:x)"), [{"x": "y" * 1000}] * 500)
    wal = tmp_path / "w.db-wal"
    assert wal.exists() and wal.stat().st_size > 0
    checkpoint_warehouse(url)
    assert not wal.exists() or wal.stat().st_size == 0
    with get_engine(url).connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM t")).scalar_one() == 500
    get_engine.cache_clear()


def test_planted_incidents_from_the_command_line_replace_the_random_ones():
    from datetime import UTC, datetime

    import pytest

    from ticketlens.helpdesk_sim.cli import main, parse_incident

    inc = parse_incident("account.password_reset@2026-08-12T10+4x8")
    assert (inc.category, inc.multiplier) == ("account.password_reset", 8.0)
    assert inc.start == int(datetime(2026, 8, 12, 10, tzinfo=UTC).timestamp()) and inc.end - inc.start == 4 * 3600
    with pytest.raises(SystemExit):  # argparse reports the expected form and exits 2
        main(["generate", "--incident", "no-at-sign", "--out", "/dev/null"])


def test_generated_truth_lists_exactly_the_planted_incidents(tmp_path):
    import json

    from ticketlens.helpdesk_sim.cli import main

    out = tmp_path / "truth.json"
    assert main(["generate", "--days", "10", "--tickets-per-day", "200", "--out", str(out),
                 "--incident", "account.password_reset@2026-08-05T10+3x8",
                 "--incident", "app_technical.crash@2026-08-07T09+2x10"]) == 0
    incidents = json.loads(out.read_text())["incidents"]
    assert [(i["id"], i["category"], i["multiplier"]) for i in incidents] == [
        ("inc-001", "account.password_reset", 8.0), ("inc-002", "app_technical.crash", 10.0)]
