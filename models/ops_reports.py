"""Support-ops reports (pure): misused self-selection options and auto-reply candidates.

*Self-selection.* Customers pick a contact reason from a menu; the classifier predicts what the ticket is about.
For each menu option: how often it matches the prediction, what it is most often used for instead, how many of
its tickets the option sends to a different team than the predicted category's (a wrong queue, a transfer), and
a suggested menu change:
* two options confused with each other in both directions → merge them (or make them one entry with a follow-up
  question);
* an option mostly used for one other category → rename it / add help text that points to that category;
* otherwise, with a low match rate → reword the option.
Only predictions at or above a confidence threshold count, so classifier mistakes are not blamed on the menu.

*Auto-reply candidates.* Per predicted category: volume, the share of tickets at or above the auto-reply
confidence, the category's complexity (simple tier), and CSAT (empirical-Bayes shrunk bad-rate vs the overall
rate). A candidate has enough volume, a high-confidence share above the minimum, simple complexity, no Trust &
Safety or spam, and a bad-rate no worse than overall.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ticketlens.models.csat_drivers import fit_beta_prior
from ticketlens.models.taxonomy import Taxonomy

SELF_SELECTION_COLUMNS = ["selected", "selected_name", "tickets", "matched_share", "top_actual", "top_actual_name",
                          "top_actual_share", "routed_elsewhere", "suggestion"]
AUTO_REPLY_COLUMNS = ["category", "name", "tickets", "mean_confidence", "high_confidence_share", "complexity",
                      "ratings", "bad_rate", "shrunk_bad_rate", "already_auto_reply", "is_candidate", "reason",
                      "deflectable_tickets"]


@dataclass(frozen=True)
class OpsConfig:
    """Thresholds of the ops reports; ``adapters.settings.OpsSettings.config()`` builds the deployed one.
    ``misuse_share`` is a reporting constant, not a setting."""

    min_confidence: float  # predictions below this are not used to judge the menu
    min_option_tickets: int  # options with fewer tickets are not judged
    auto_reply_threshold: float
    auto_reply_min_tickets: int
    auto_reply_min_high_confidence_share: float
    misuse_share: float = 0.2  # an option matched less often than (1 - this) is "misused"


def self_selection_report(tickets: pd.DataFrame, taxonomy: Taxonomy,
                          config: OpsConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``tickets``: contact_reason (and optionally contact_reasons), category (predicted), confidence.
    Returns (per option, confusion pairs).

    A multi-valued contact reason (a multiselect field, ``contact_reasons``) counts under each chosen option with
    weight 1/k, so every ticket weighs 1 in total: an option's "tickets" is a weighted count (rounded to 0.01)
    and its matched share is the weighted share of its tickets whose predicted category is that option.
    """
    c = config
    frame = _one_row_per_chosen_reason(tickets).dropna(subset=["contact_reason", "category"])
    frame = frame[(frame["confidence"] >= c.min_confidence) & frame["contact_reason"].isin(taxonomy.categories)
                  & frame["category"].isin(taxonomy.categories)]
    pairs_cols = ["selected", "actual", "tickets", "share_of_selected", "routes_elsewhere"]
    if frame.empty:
        return pd.DataFrame(columns=SELF_SELECTION_COLUMNS), pd.DataFrame(columns=pairs_cols)
    pairs = frame.groupby(["contact_reason", "category"])["weight"].sum().round(2).rename("tickets").reset_index()
    pairs.columns = ["selected", "actual", "tickets"]
    totals = pairs.groupby("selected")["tickets"].transform("sum")
    pairs["share_of_selected"] = pairs["tickets"] / totals
    team = {k: cat.team for k, cat in taxonomy.categories.items()}
    pairs["routes_elsewhere"] = pairs["selected"].map(team) != pairs["actual"].map(team)
    share = {(r.selected, r.actual): r.share_of_selected for r in pairs.itertuples()}
    rows = []
    for selected, group in pairs.groupby("selected"):
        n = _count(group["tickets"].sum())
        matched = float(group.loc[group["actual"] == selected, "tickets"].sum()) / n
        others = group[group["actual"] != selected].sort_values("tickets", ascending=False)
        top = others.iloc[0] if len(others) else None
        elsewhere = _count(group.loc[group["routes_elsewhere"], "tickets"].sum())
        suggestion = ""
        if n >= c.min_option_tickets and matched < 1 - c.misuse_share and top is not None:
            other = str(top["actual"])
            back = share.get((other, selected), 0.0)
            name, other_name = taxonomy.categories[selected].name, taxonomy.categories[other].name
            if back >= c.misuse_share / 2 and top["share_of_selected"] >= c.misuse_share / 2:
                suggestion = (f"merge '{name}' and '{other_name}' into one menu entry (or one entry with a "
                              f"follow-up question): customers confuse them both ways")
            elif top["share_of_selected"] >= c.misuse_share / 2:
                suggestion = (f"add help text to '{name}' pointing to '{other_name}' "
                              f"({top['share_of_selected']:.0%} of its tickets are about that)")
            else:
                suggestion = f"reword '{name}': only {matched:.0%} of tickets filed under it are about it"
            if elsewhere:
                suggestion += f"; {elsewhere} tickets went to the wrong team"
        rows.append({"selected": selected, "selected_name": taxonomy.categories[selected].name, "tickets": n,
                     "matched_share": matched,
                     "top_actual": None if top is None else str(top["actual"]),
                     "top_actual_name": None if top is None else taxonomy.categories[str(top["actual"])].name,
                     "top_actual_share": 0.0 if top is None else float(top["share_of_selected"]),
                     "routed_elsewhere": elsewhere, "suggestion": suggestion})
    options = pd.DataFrame(rows)
    options = options.sort_values(["routed_elsewhere", "tickets"], ascending=False).reset_index(drop=True)
    confusion = pairs[pairs["selected"] != pairs["actual"]].sort_values("tickets", ascending=False)
    return options[SELF_SELECTION_COLUMNS], confusion.reset_index(drop=True)[pairs_cols]


def _one_row_per_chosen_reason(tickets: pd.DataFrame) -> pd.DataFrame:
    """One row per (ticket, chosen reason) with weight 1/k; a ticket without ``contact_reasons`` keeps its
    ``contact_reason`` with weight 1 (see ``models.custom_fields``)."""
    frame = tickets.copy()
    if "contact_reasons" not in frame.columns:
        frame["weight"] = 1.0
        return frame
    chosen = [list(many) if isinstance(many, list | tuple) and len(many) else ([one] if isinstance(one, str) else [None])
              for many, one in zip(frame["contact_reasons"], frame["contact_reason"], strict=True)]
    frame["contact_reason"] = chosen
    frame["weight"] = [1.0 / len(c) for c in chosen]
    return frame.explode("contact_reason", ignore_index=True)


def _count(value: float) -> int | float:
    """Weighted ticket counts stay whole numbers when they are (the usual single-reason case)."""
    rounded = round(float(value), 2)
    return int(rounded) if rounded.is_integer() else rounded


def auto_reply_candidates(predictions: pd.DataFrame, ratings: pd.DataFrame, taxonomy: Taxonomy,
                          config: OpsConfig) -> pd.DataFrame:
    """``predictions``: category, confidence (one row per ticket); ``ratings``: category, bad (one per rating)."""
    c = config
    if predictions.empty:
        return pd.DataFrame(columns=AUTO_REPLY_COLUMNS)
    vol = predictions.groupby("category").agg(
        tickets=("confidence", "size"), mean_confidence=("confidence", "mean"),
        high_confidence_share=("confidence", lambda s: float((s >= c.auto_reply_threshold).mean())))
    if ratings.empty:
        rated = pd.DataFrame({"ratings": [], "bad": []})
    else:
        rated = ratings.groupby("category")["bad"].agg(ratings="size", bad="sum")
    out = vol.join(rated, how="left").fillna({"ratings": 0, "bad": 0}).reset_index()
    overall = float(out["bad"].sum() / out["ratings"].sum()) if out["ratings"].sum() else float("nan")
    a, b = fit_beta_prior(out["bad"], out["ratings"]) if out["ratings"].sum() else (1.0, 1.0)
    out["bad_rate"] = np.where(out["ratings"] > 0, out["bad"] / out["ratings"].clip(lower=1), np.nan)
    out["shrunk_bad_rate"] = (out["bad"] + a) / (out["ratings"] + a + b)
    rows = []
    for r in out.itertuples():
        cat = taxonomy.categories.get(r.category)
        if cat is None:
            continue
        why = []
        if cat.feedback_type in ("trust_safety", "spam"):
            why.append(f"{cat.feedback_type} is never auto-replied")
        if cat.complexity != "simple":
            why.append(f"{cat.complexity} complexity")
        if r.tickets < c.auto_reply_min_tickets:
            why.append(f"only {r.tickets} tickets")
        if r.high_confidence_share < c.auto_reply_min_high_confidence_share:
            why.append(f"{r.high_confidence_share:.0%} at confidence ≥ {c.auto_reply_threshold}")
        if r.ratings == 0:
            why.append("no CSAT ratings to judge by")
        elif not np.isnan(overall) and r.shrunk_bad_rate > overall:
            why.append(f"CSAT worse than average ({r.shrunk_bad_rate:.0%} bad vs {overall:.0%})")
        rows.append({"category": r.category, "name": cat.name, "tickets": int(r.tickets),
                     "mean_confidence": float(r.mean_confidence),
                     "high_confidence_share": float(r.high_confidence_share), "complexity": cat.complexity,
                     "ratings": int(r.ratings), "bad_rate": float(r.bad_rate),
                     "shrunk_bad_rate": float(r.shrunk_bad_rate), "already_auto_reply": cat.auto_reply,
                     "is_candidate": not why, "reason": "; ".join(why) or "meets every criterion",
                     "deflectable_tickets": round(r.tickets * r.high_confidence_share)})
    result = pd.DataFrame(rows, columns=AUTO_REPLY_COLUMNS)
    return result.sort_values(["is_candidate", "deflectable_tickets"], ascending=False).reset_index(drop=True)


@dataclass
class OpsReports:
    """What the ``build-ops-reports`` task hands on (the two reports of this module)."""

    options: pd.DataFrame  # one row per contact-reason option (``SELF_SELECTION_COLUMNS``)
    confusion: pd.DataFrame  # (selected, actual) pairs that disagree, most tickets first
    candidates: pd.DataFrame  # every category judged for auto-reply (``AUTO_REPLY_COLUMNS``)
