"""Rating frames with a known answer for the CSAT-driver benchmark: one bad agent among many, or nobody.

The case study's core use is "drivers by team, agent and issue", and its hard case is one agent who is clearly
worse among dozens of ordinary ones. ``one_bad_agent_ratings`` builds the raw ratings frame the flow loads
(``models.csat_drivers.RATING_COLUMNS``): ``agents`` agents with about ``ratings_per_agent`` ratings each, in teams
of ``team_size``, every rating bad with probability ``bad_rate`` -- except the bad agent's, bad with probability
``bad_agent_rate``. Category, channel, sentiment, first-reply and resolution times and reopens are drawn
independently of the verdict, so the model has its usual ~100 segments to test but only one true driver.
With ``bad_agent_rate=None`` there is no driver at all (the null case).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

FIRST_AGENT_ID = 50001
FIRST_GROUP_ID = 70001


def one_bad_agent_ratings(seed: int, agents: int = 40, ratings_per_agent: int = 80, bad_rate: float = 0.4,
                          bad_agent_rate: float | None = 0.7, team_size: int = 8, categories: int = 30,
                          start: datetime = datetime(2026, 5, 1, tzinfo=UTC),
                          days: int = 90) -> tuple[pd.DataFrame, str | None]:
    """(raw ratings frame, the bad agent's id as a level key or None). Ratings per agent vary (Poisson)."""
    rng = np.random.default_rng(seed)
    per_agent = np.maximum(rng.poisson(ratings_per_agent, size=agents), 1)
    agent_ids = FIRST_AGENT_ID + np.repeat(np.arange(agents), per_agent)
    n = len(agent_ids)
    bad_agent = None if bad_agent_rate is None else int(FIRST_AGENT_ID + rng.integers(agents))
    p_bad = np.full(n, bad_rate)
    if bad_agent is not None:
        p_bad[agent_ids == bad_agent] = bad_agent_rate
    bad = rng.random(n) < p_bad
    shares = rng.dirichlet(np.full(categories, 2.0))
    frame = pd.DataFrame({
        "rating_id": np.arange(1, n + 1),
        "ticket_id": np.arange(1, n + 1) + 100_000,
        "score": np.where(bad, "bad", "good"),
        "rated_at": [start + timedelta(seconds=int(s)) for s in rng.integers(0, days * 86400, size=n)],
        "assignee_id": agent_ids,
        "group_id": FIRST_GROUP_ID + (agent_ids - FIRST_AGENT_ID) // team_size,
        "channel": rng.choice(["web", "email", "chat", "api", "mobile"], p=[0.35, 0.3, 0.2, 0.05, 0.1], size=n),
        "category": [f"cat{int(i):02d}" for i in rng.choice(categories, p=shares, size=n)],
        "sentiment": rng.choice(["negative", "neutral", "positive"], p=[0.3, 0.5, 0.2], size=n),
        "first_reply_minutes": np.exp(rng.normal(np.log(90), 1.0, size=n)).round(),
        "full_resolution_minutes": np.exp(rng.normal(np.log(1800), 1.2, size=n)).round(),
        "reopens": rng.choice([0, 0, 0, 0, 0, 0, 0, 1, 1, 2], size=n),
    })
    return frame, None if bad_agent is None else str(bad_agent)
