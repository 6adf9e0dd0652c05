"""CSAT-driver analysis, bad-rating reasons and ops reports (pure functions, generated data)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from ticketlens.adapters.settings import CsatSettings, OpsSettings, RoutingSettings
from ticketlens.helpdesk_sim.csat_frames import agent_names, group_names, rating_frame
from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
from ticketlens.models.csat_drivers import (
    analyse_drivers,
    fit_beta_prior,
    prepare_ratings,
    score_is_bad,
    segment_rates,
    weekly_trends,
)
from ticketlens.models.csat_reasons import (
    classify_reasons,
    load_seed_examples,
    reason_summary,
    train_reason_classifier,
)
from ticketlens.models.ops_reports import auto_reply_candidates, self_selection_report
from ticketlens.models.taxonomy import load_taxonomy

DRIVERS = CsatSettings().drivers()  # the deployed defaults (TICKETLENS_CSAT_* unset)
OPS = OpsSettings().config(RoutingSettings())
START = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def planted():
    return generate_dataset(GeneratorConfig(seed=7, start=START, days=60, tickets_per_day=400))


@pytest.fixture(scope="module")
def null_dataset():
    return generate_dataset(GeneratorConfig(seed=8, start=START, days=60, tickets_per_day=400,
                                            plant_csat_drivers=False))


def frame_of(dataset) -> pd.DataFrame:
    return prepare_ratings(rating_frame(dataset), agent_names(dataset), group_names(dataset))


def test_scores_good_bad_and_numeric_scales():
    bad = score_is_bad(pd.Series(["good", "bad", "offered", "unoffered", "1", "2", "3", "5", None, "bad_with_comment"]))
    assert bad.tolist()[:4] == [False, True, pd.NA, pd.NA]
    assert bad.tolist()[4:8] == [True, True, False, False]
    assert bad.isna().tolist()[8] and bad.tolist()[9] is True


def test_shrinkage_ranks_a_3_rating_segment_below_a_300_rating_one(planted):
    frame = frame_of(planted)
    base_rate = frame["bad"].mean()
    extra = []
    for i in range(300):  # a big segment: 195 of 300 bad (65%)
        extra.append({"agent": "big", "bad": i < 195})
    extra += [{"agent": "small", "bad": b} for b in (True, True, False)]  # 2 of 3 bad (67%)
    data = pd.concat([frame[["agent", "bad"]], pd.DataFrame(extra)], ignore_index=True)
    rates = segment_rates(data, "agent").set_index("level")
    assert rates.loc["small", "raw_rate"] > rates.loc["big", "raw_rate"]  # raw, the small one would top the list
    order = list(rates.index)
    assert order.index("big") < order.index("small")  # shrunk, the big one ranks first
    assert order[0] == "big"
    # the small segment is pulled most of the way to the typical rate, the big one hardly at all
    assert abs(rates.loc["small", "shrunk_rate"] - base_rate) < abs(rates.loc["small", "raw_rate"] - base_rate) / 2
    assert abs(rates.loc["big", "shrunk_rate"] - 0.65) < 0.03
    assert rates.loc["small", "shrunk_high"] - rates.loc["small", "shrunk_low"] > \
        rates.loc["big", "shrunk_high"] - rates.loc["big", "shrunk_low"]


def test_beta_prior_recovers_the_spread_of_segment_rates():
    rng = np.random.default_rng(0)
    p = rng.beta(4, 16, size=400)  # mean 0.2
    n = rng.integers(30, 200, size=400)
    k = rng.binomial(n, p)
    a, b = fit_beta_prior(k, n)
    assert abs(a / (a + b) - 0.2) < 0.02 and 10 < a + b < 40


def test_agent_with_only_a_bad_category_is_not_blamed_once_category_is_controlled():
    rng = np.random.default_rng(3)
    categories = [f"cat{i}" for i in range(8)]
    rows = []
    for agent in [f"a{i}" for i in range(15)]:
        for _ in range(120):
            rows.append({"agent": agent, "category": str(rng.choice(categories))})
    rows += [{"agent": "specialist", "category": "cat0"} for _ in range(150)]  # only the hard category
    rows += [{"agent": "bad_agent", "category": str(rng.choice(categories))} for _ in range(150)]
    frame = pd.DataFrame(rows)
    logit = -1.8 + 1.5 * (frame["category"] == "cat0") + 1.3 * (frame["agent"] == "bad_agent")
    frame["bad"] = rng.random(len(frame)) < 1 / (1 + np.exp(-logit))
    frame["score"] = np.where(frame["bad"], "bad", "good")
    frame["channel"] = rng.choice(["web", "email"], size=len(frame))
    frame["assignee_id"], frame["group_id"] = None, None
    data = prepare_ratings(frame)
    data["agent"] = frame["agent"].to_numpy()  # named agents instead of ids

    raw = segment_rates(data, "agent").set_index("level")
    typical = raw.drop(index=["specialist", "bad_agent"])["raw_rate"].median()
    assert raw.loc["specialist", "raw_rate"] > typical + 0.15  # raw: the specialist looks bad

    report = analyse_drivers(data, DRIVERS)
    flagged = {(r.factor, r.level) for r in report.drivers.itertuples()}
    assert ("agent", "specialist") not in flagged  # adjusted for category: not blamed
    assert ("category", "cat0") in flagged and ("agent", "bad_agent") in flagged
    effect = report.effects.set_index(["factor", "level"]).loc[("agent", "specialist")]
    assert effect["or_low"] < 1 and effect["q_value"] > 0.05  # neither blamed nor praised
    assert ("agent", "specialist") not in {(r.factor, r.level) for r in report.protective.itertuples()}


def test_planted_drivers_are_found_with_the_right_sign(planted):
    report = analyse_drivers(frame_of(planted), DRIVERS)
    found = {(r.factor, str(r.level)) for r in report.drivers.itertuples()}
    for driver in planted.truth.csat_drivers:
        key = {"agent": ("agent", str(driver["key"])), "category": ("category", driver["key"]),
               "resolution_time": ("resolution_time", "per doubling of resolution time"),
               "reopened": ("reopened", "reopened")}[driver["kind"]]
        if driver["kind"] != "agent":  # agents have ~80 ratings each here; the benchmark checks them at scale
            assert key in found, f"planted driver {key} not found"
    agents_found = [k for k in found if k[0] == "agent"]
    assert len(agents_found) >= 2
    planted_agents = {str(d["key"]) for d in planted.truth.csat_drivers if d["kind"] == "agent"}
    assert {level for _, level in agents_found} <= planted_agents  # no innocent agent flagged
    assert report.drivers["odds_ratio"].gt(1).all()
    assert report.drivers["excess_bad"].is_monotonic_decreasing
    top = report.drivers.iloc[0]
    assert top["or_low"] > 1 and top["q_value"] <= 0.05


def test_no_signal_reports_nothing(null_dataset):
    report = analyse_drivers(frame_of(null_dataset), DRIVERS)
    assert report.ratings > 3000 and len(report.effects) > 50  # many segments were tested ...
    assert report.drivers.empty and report.protective.empty  # ... and none reported


def test_too_few_ratings_report_nothing_with_a_note():
    frame = prepare_ratings(pd.DataFrame({"score": ["bad", "good", "good"], "category": ["a", "b", "a"]}))
    report = analyse_drivers(frame, DRIVERS)
    assert report.drivers.empty and "too few" in report.notes[0]


def test_weekly_trends_per_top_driver(planted):
    frame = frame_of(planted)
    report = analyse_drivers(frame, DRIVERS)
    trends = weekly_trends(frame, report.drivers, top_n=3)
    assert set(trends["factor"]) >= {"all"} and trends["level"].nunique() == 4
    assert (trends["week_start"].dt.day_of_week == 0).all()  # ISO weeks start on Monday
    everyone = trends[trends["factor"] == "all"]
    assert everyone["n"].sum() == len(frame)
    first = report.drivers.iloc[0]
    worst = trends[(trends["factor"] == first["factor"]) & (trends["level"] == first["level"])]
    assert (worst["bad"].sum() / worst["n"].sum()) > everyone["bad"].sum() / everyone["n"].sum()


def test_bad_rating_comments_are_classified_into_reason_themes(planted):
    taxonomy = load_taxonomy()
    model = train_reason_classifier(load_seed_examples(taxonomy))
    themes = planted.truth.csat_reason_themes
    rated = [t.rating for t in planted.tickets if t.rating and t.rating.id in themes and t.rating.comment]
    result = classify_reasons(model, [r.comment for r in rated])
    truth = np.array([themes[r.id] for r in rated])
    accuracy = float((result["theme"].to_numpy() == truth).mean())
    assert accuracy >= 0.8  # the generator's comments were never in the seed labels
    assert set(result["theme"]) <= set(taxonomy.csat_reasons)
    summary = reason_summary(result["theme"], taxonomy)
    assert list(summary["theme"])[:2] != ["other", "other"] and summary["comments"].sum() == len(rated)
    empty = classify_reasons(model, [None, "  ", "The agent was rude and useless"])
    assert empty["theme"].isna().tolist() == [True, True, False]  # no comment, no theme
    assert empty["theme"].iloc[2] == "agent_attitude"


def test_seed_labels_must_be_taxonomy_themes(tmp_path):
    bad = tmp_path / "seed.yaml"
    bad.write_text("examples:\n  angry_customer: [a, b, c, d, e]\n")
    with pytest.raises(ValueError, match="angry_customer"):
        load_seed_examples(load_taxonomy(), bad)


def test_self_selection_finds_misused_options_and_suggests_menu_changes():
    taxonomy = load_taxonomy()
    rows = []
    # "Missing pins" is picked for upload failures 60% of the time; two-factor and password reset are confused
    # both ways; "Password reset" otherwise fine.
    rows += [("pins_boards.missing_pins", "pins_boards.missing_pins")] * 40
    rows += [("pins_boards.missing_pins", "pins_boards.upload_failure")] * 60
    rows += [("account.two_factor", "account.password_reset")] * 30 + [("account.two_factor",
                                                                        "account.two_factor")] * 50
    rows += [("account.password_reset", "account.two_factor")] * 25 + [("account.password_reset",
                                                                        "account.password_reset")] * 75
    rows += [("app_technical.crash", "app_technical.crash")] * 50
    rows += [("app_technical.crash", "ads_business.billing_refund")] * 5
    tickets = pd.DataFrame(rows, columns=["contact_reason", "category"])
    tickets["confidence"] = 0.9
    tickets.loc[tickets.index[:10], "confidence"] = 0.2  # unsure predictions are not held against the menu
    options, confusion = self_selection_report(tickets, taxonomy, OPS)
    by = options.set_index("selected")
    assert by.loc["pins_boards.missing_pins", "tickets"] == 90
    assert by.loc["pins_boards.missing_pins", "top_actual"] == "pins_boards.upload_failure"
    assert "help text" in by.loc["pins_boards.missing_pins", "suggestion"]
    assert by.loc["pins_boards.missing_pins", "routed_elsewhere"] == 0  # same team: no transfer
    assert by.loc["app_technical.crash", "routed_elsewhere"] == 5  # billing tickets sent to technical support
    assert "merge" in by.loc["account.two_factor", "suggestion"]
    assert by.loc["app_technical.crash", "suggestion"] == ""  # 91% match: fine
    assert confusion.iloc[0]["tickets"] == 60


def test_auto_reply_candidates():
    taxonomy = load_taxonomy()
    rng = np.random.default_rng(1)
    preds = pd.concat([
        pd.DataFrame({"category": "account.password_reset", "confidence": rng.uniform(0.85, 1, 200)}),
        pd.DataFrame({"category": "privacy.privacy_settings", "confidence": rng.uniform(0.85, 1, 60)}),
        pd.DataFrame({"category": "pins_boards.board_visibility", "confidence": rng.uniform(0.7, 1, 100)}),
        pd.DataFrame({"category": "account.hacked", "confidence": rng.uniform(0.85, 1, 200)}),  # complex
        pd.DataFrame({"category": "spam.phishing", "confidence": rng.uniform(0.85, 1, 200)}),
        pd.DataFrame({"category": "account.deactivation", "confidence": rng.uniform(0.3, 0.7, 200)}),  # unsure
        pd.DataFrame({"category": "account.email_change", "confidence": rng.uniform(0.85, 1, 200)}),  # bad CSAT
    ], ignore_index=True)
    ratings = pd.DataFrame(
        [("account.password_reset", b) for b in [True] * 5 + [False] * 45]
        + [("account.email_change", b) for b in [True] * 30 + [False] * 20]
        + [("pins_boards.board_visibility", b) for b in [True] * 2 + [False] * 28]
        + [(c, b) for c in ("account.hacked", "app_technical.crash") for b in [True] * 10 + [False] * 40],
        columns=["category", "bad"])
    result = auto_reply_candidates(preds, ratings, taxonomy, OPS).set_index("category")
    assert result.loc["account.password_reset", "is_candidate"]
    assert not result.loc["privacy.privacy_settings", "is_candidate"]  # CSAT unknown: not judged good
    assert "no CSAT" in result.loc["privacy.privacy_settings", "reason"]
    assert not result.loc["account.hacked", "is_candidate"] and "complex" in result.loc["account.hacked", "reason"]
    assert not result.loc["spam.phishing", "is_candidate"]
    assert not result.loc["account.deactivation", "is_candidate"]
    assert "CSAT" in result.loc["account.email_change", "reason"]
    assert result.loc["pins_boards.board_visibility", "is_candidate"]
    assert list(result.index[:2]) == ["account.password_reset", "pins_boards.board_visibility"]  # by deflection


def test_window_defaults_to_the_days_before_the_scheduled_start():
    from ticketlens.tasks.csat import resolve_window

    scheduled = datetime(2026, 9, 1, 6, tzinfo=UTC)
    window = resolve_window(None, None, scheduled, 30)
    assert window.end == scheduled and window.start == scheduled - timedelta(days=30)
    explicit = resolve_window(datetime(2026, 8, 1), datetime(2026, 8, 15), scheduled, 30)
    assert explicit.start.tzinfo is not None and explicit.end == datetime(2026, 8, 15, tzinfo=UTC)
    with pytest.raises(ValueError, match="not before"):
        resolve_window(scheduled, scheduled, None, 30)


# ------------------------------------------------------------------ one bad agent among many, FDR, inputs (issue 19)


def test_one_bad_agent_among_40_is_found_where_the_factor_test_alone_would_hide_it():
    from ticketlens.helpdesk_sim.csat_cases import one_bad_agent_ratings

    raw, bad_agent = one_bad_agent_ratings(seed=1, agents=40, ratings_per_agent=80)
    report = analyse_drivers(prepare_ratings(raw), DRIVERS)
    drivers = {(r.factor, r.level) for r in report.drivers.itertuples()}
    assert ("agent", bad_agent) in drivers
    row = report.effects.set_index(["factor", "level"]).loc[("agent", bad_agent)]
    # the 39-degree-of-freedom agent test does not reach the FDR here; the old two-stage gate reported nothing
    assert row["factor_q"] > 0.05 and row["q_value"] <= 0.05
    assert not [k for k in drivers if k[0] == "agent" and k[1] != bad_agent]  # no innocent agent flagged


def test_q_values_are_one_flat_family_over_every_tested_level(planted):
    from statsmodels.stats.multitest import multipletests

    report = analyse_drivers(frame_of(planted), replace(DRIVERS, method="bh"))
    effects = report.effects
    expected = multipletests(effects["p_value"], method="fdr_bh")[1]
    assert np.allclose(effects["q_value"], expected)  # a real q-value for every level, no placeholder
    assert (effects["q_value"] >= effects["p_value"] - 1e-12).all()
    assert (effects["significant"] == (effects["q_value"] <= 0.05)).all()
    assert effects["factor_p"].notna().all() and effects["factor_q"].between(0, 1).all()  # shown, not a gate
    by = analyse_drivers(frame_of(planted), DRIVERS).effects  # the default
    assert np.allclose(by["q_value"], multipletests(by["p_value"], method="fdr_by")[1])
    assert by["significant"].sum() <= effects["significant"].sum()
    with pytest.raises(ValueError, match="method"):
        replace(DRIVERS, method="holm")


def test_entirely_missing_continuous_inputs_are_reported_not_dropped_silently(planted):
    raw = rating_frame(planted).drop(columns=["first_reply_minutes"])
    raw["reopens"] = None
    raw.loc[raw.index[:10], "full_resolution_minutes"] = None
    report = analyse_drivers(prepare_ratings(raw), DRIVERS)
    notes = "\n".join(report.notes)
    assert "per doubling of first-reply time is not in the model: no value in any rating" in notes
    assert "reopened is not in the model: no value in any rating (column reopens)" in notes
    assert "per doubling of resolution time: unknown for 10 of" in notes
    assert "first_reply_time" not in set(report.effects["factor"])


def test_agent_and_team_names_label_the_rows_while_levels_stay_ids():
    frame = pd.DataFrame({"score": ["bad", "good", "good", "bad"], "assignee_id": [7.0, 7.0, 8, None],
                          "group_id": ["3", "3", None, "3"]})
    data = prepare_ratings(frame, {7: "Ada Agent", 8: "Bo"}, {"3": "Billing"})
    assert data["agent"].tolist() == ["7", "7", "8", "(unassigned)"]
    assert data["team"].tolist() == ["3", "3", "(no group)", "3"]
    rates = segment_rates(data, "agent").set_index("level")
    assert rates.loc["7", "label"] == "Ada Agent" and rates.loc["(unassigned)", "label"] == "(unassigned)"
    assert segment_rates(data, "team").set_index("level").loc["3", "label"] == "Billing"


def test_agent_and_team_names_reach_the_driver_rows_and_lines(planted):
    """Issue 17 point 7 (``label()`` ignored its ``names``): the names given to ``prepare_ratings`` label every
    agent and team row of the report and its printed driver lines; without names the label is the id."""
    from ticketlens.models.reporting.csat import driver_lines

    names = agent_names(planted)
    report = analyse_drivers(frame_of(planted), replace(DRIVERS, fdr=0.05))
    agents = report.drivers[report.drivers["factor"] == "agent"]
    assert len(agents) >= 2
    assert agents["label"].tolist() == [names[int(level)] for level in agents["level"]]
    teams = report.effects[report.effects["factor"] == "team"]
    assert teams["label"].tolist() == [group_names(planted)[int(level)] for level in teams["level"]]
    lines = "\n".join(driver_lines(report, len(report.drivers)))
    assert all(f"agent: {names[int(level)]}:" in lines for level in agents["level"])
    unnamed = analyse_drivers(prepare_ratings(rating_frame(planted)), replace(DRIVERS, fdr=0.05))
    unnamed_agents = unnamed.effects[unnamed.effects["factor"] == "agent"]
    assert (unnamed_agents["label"] == unnamed_agents["level"]).all()
