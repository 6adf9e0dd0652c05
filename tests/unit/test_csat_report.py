"""The csat-drivers reports as people see them (``models.reporting.csat``): artifact text, tables and charts,
built without Prefect or a warehouse."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ticketlens.adapters.settings import CsatSettings, OpsSettings, RoutingSettings
from ticketlens.helpdesk_sim.csat_cases import one_bad_agent_ratings
from ticketlens.models.csat_drivers import (
    DriverAnalysis,
    analyse_drivers,
    prepare_ratings,
    weekly_trends,
)
from ticketlens.models.csat_reasons import ReasonReport, reason_summary
from ticketlens.models.ops_reports import (
    AUTO_REPLY_COLUMNS,
    SELF_SELECTION_COLUMNS,
    OpsReports,
    self_selection_report,
)
from ticketlens.models.reporting.csat import (
    CHART_FILES,
    csat_artifacts,
    draw_csat_charts,
    driver_lines,
    plain_value,
    table_records,
)
from ticketlens.models.taxonomy import load_taxonomy

PERIOD = "2026-05-01 00:00 → 2026-07-30 00:00 UTC"


def analysis_of(raw: pd.DataFrame, names: dict | None = None, unscored: int = 0) -> DriverAnalysis:
    frame = prepare_ratings(raw, names)
    report = analyse_drivers(frame, replace(CsatSettings().drivers(), fdr=0.05))
    return DriverAnalysis(frame, report, weekly_trends(frame, report.drivers), unscored)


@pytest.fixture(scope="module")
def bad_agent_case():
    raw, bad_agent = one_bad_agent_ratings(seed=1, agents=40, ratings_per_agent=80)
    return analysis_of(raw, {int(bad_agent): "Ada Agent"}, unscored=3), bad_agent


@pytest.fixture(scope="module")
def reasons():
    taxonomy = load_taxonomy()
    themes = pd.Series(["slow_response"] * 6 + ["agent_attitude"] * 3 + [None] * 2)
    summaries = {"all": reason_summary(themes, taxonomy), "agent:7": reason_summary(themes[:4], taxonomy)}
    return ReasonReport(summaries, pd.DataFrame({"theme": themes}), commented=9, bad=11, seed_examples=120,
                        seed_digest="0123456789ab", seed_cv_accuracy=0.875)


def ops_of(tickets: pd.DataFrame) -> OpsReports:
    options, confusion = self_selection_report(tickets, load_taxonomy(), OpsSettings().config(RoutingSettings()))
    return OpsReports(options, confusion, pd.DataFrame(columns=AUTO_REPLY_COLUMNS))


def test_the_drivers_report_names_the_bad_agent_and_states_its_method(bad_agent_case, reasons):
    analysis, bad_agent = bad_agent_case
    ops = OpsReports(pd.DataFrame(columns=SELF_SELECTION_COLUMNS), pd.DataFrame(),
                     pd.DataFrame(columns=AUTO_REPLY_COLUMNS))
    drivers, why, options, auto = csat_artifacts(PERIOD, analysis, reasons, ops, replace(CsatSettings().drivers(), fdr=0.05),
                                                 OpsSettings().config(RoutingSettings()), 10, ["", "## Charts"])
    assert [a.key for a in (drivers, why, options, auto)] == [
        "csat-drivers", "csat-reasons", "self-selection", "auto-reply-candidates"]
    assert drivers.table_key == "csat-drivers-table"
    lines = drivers.markdown.splitlines()
    assert lines[0] == f"# CSAT drivers, {PERIOD}"
    assert "significant at FDR 0.05 (Benjamini-Yekutieli across" in lines[2]
    assert lines[4] == driver_lines(analysis.report, 10)[0] and lines[4].startswith("1. agent: Ada Agent: OR ")
    assert "3 rated tickets were not scored yet" in drivers.markdown and lines[-1] == "## Charts"
    assert analysis.report.drivers.iloc[0]["level"] == bad_agent
    top = drivers.table[0]
    assert (top["factor"], top["label"]) == ("agent", "Ada Agent")
    assert all(isinstance(v, float) and round(v, 4) == v for k, v in top.items() if k in ("raw_rate", "q_value"))
    assert f"| {load_taxonomy().csat_reasons['slow_response']} | 6 | 67% |" in why.markdown
    assert "- agent:7: mostly *" in why.markdown and "9 of 11 bad ratings have a comment" in why.markdown
    assert {r["scope"] for r in why.table} == {"all", "agent:7"}
    assert options.markdown.endswith("No misused option.") and options.table == []
    assert auto.markdown.endswith("No candidate.") and "≥ 30 tickets, ≥ 60% of them at confidence ≥ 0.8" in auto.markdown


def test_too_few_ratings_report_no_driver_with_the_reason(reasons):
    raw, _ = one_bad_agent_ratings(seed=2, agents=2, ratings_per_agent=10)
    analysis = analysis_of(raw)
    ops = ops_of(pd.DataFrame(columns=["contact_reason", "category", "confidence"]))
    drivers = csat_artifacts(PERIOD, analysis, reasons, ops, replace(CsatSettings().drivers(), fdr=0.1, method="bh"), OpsSettings().config(RoutingSettings()), 10,
                             [])[0]
    assert "**No driver** at FDR 0.1." in drivers.markdown
    assert "Benjamini-Hochberg" in drivers.markdown
    n, bad = analysis.report.ratings, analysis.report.bad
    assert drivers.markdown.endswith(f"- {n} ratings ({bad} bad): too few, or no variation, to fit the driver model")
    assert drivers.table == []


def test_four_png_charts_whether_or_not_there_is_anything_to_show(bad_agent_case, reasons, tmp_path):
    analysis, _ = bad_agent_case
    taxonomy = load_taxonomy()
    a, b = sorted(taxonomy.categories)[:2]
    misused = pd.DataFrame({"contact_reason": [a] * 30, "category": [b] * 20 + [a] * 10, "confidence": 0.9})
    for name, ops in (("full", ops_of(misused)), ("empty", ops_of(misused.iloc[:0]))):
        out = tmp_path / name
        out.mkdir()
        paths = draw_csat_charts(out, PERIOD, analysis, reasons, ops, top_drivers=10, fdr=0.05)
        assert paths == [str(out / f) for f in CHART_FILES]
        for path in paths:
            with open(path, "rb") as fh:
                assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_missing_values_are_null_in_tables_not_nan():
    assert plain_value(np.float64("nan")) is None and plain_value(pd.NA) is None and plain_value(np.int64(3)) == 3
    rows = table_records(pd.DataFrame({"rate": [0.123456, math.nan], "n": [1, 2]}), ["rate", "n"])
    assert rows == [{"rate": 0.1235, "n": 1}, {"rate": None, "n": 2}]
