"""Seeded, deterministic synthetic helpdesk data modelled on a large consumer visual-discovery app's support.

What it plants, and why (each is something a TicketLens feature must find or survive):
* volume with daily and weekly seasonality, plus incidents — a category's volume several times normal for a
  few hours (spike detection);
* varied, messy text: many phrasings per category, shared vocabulary between neighbours, typos, HTML e-mails,
  signatures, quoted replies, PII, ~10% other languages, spam (classification, cleaning, PII masking);
* a self-selected contact reason that disagrees with the true category ~25% of the time and an
  agent-confirmed category with ~3% label noise (training labels, self-selection report);
* lifecycles with first reply, pending, solved, reopen, close and spam deletion (ingest updates, soft deletes);
* CSAT on ~20% of solved tickets from a logistic model with planted drivers — some agents and categories much
  worse, long resolution and reopens worse — and comments that state a reason (CSAT-driver analysis).

Everything comes from one ``random.Random(seed)``/``numpy`` generator pair: same config → identical dataset.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ticketlens.helpdesk_sim import phrases as P
from ticketlens.helpdesk_sim.dataset import Dataset, GroundTruth, Incident, RatingSpec, TicketSpec
from ticketlens.models.taxonomy import Taxonomy, load_taxonomy

HOUR = 3600
DAY = 86400
# Relative volume by hour of day (UTC) and day of week (Mon=0): evenings busiest, weekends a little lower.
HOURLY = np.array([0.45, 0.35, 0.3, 0.28, 0.3, 0.4, 0.55, 0.75, 0.95, 1.1, 1.2, 1.25,
                   1.3, 1.3, 1.3, 1.35, 1.4, 1.45, 1.5, 1.5, 1.4, 1.2, 0.9, 0.65])
WEEKLY = np.array([1.1, 1.1, 1.05, 1.0, 0.95, 0.85, 0.9])
TEAM_NAMES = {
    "tier1_general": "Tier 1 General", "account_specialists": "Account Specialists", "ads_support": "Ads Support",
    "creator_support": "Creator Support", "technical_support": "Technical Support",
    "trust_safety": "Trust & Safety", "privacy_team": "Privacy Team",
}
CONTACT_REASON_FIELD_ID = 360001
CONFIRMED_CATEGORY_FIELD_ID = 360002


@dataclass
class GeneratorConfig:
    seed: int = 42
    start: datetime = field(default_factory=lambda: datetime(2026, 8, 1, tzinfo=UTC))
    days: int = 30
    tickets_per_day: int = 300
    incidents: int | None = None  # default: one per 10 days, at least one
    foreign_share: float = 0.10
    reason_disagreement: float = 0.25
    label_noise: float = 0.03
    csat_share: float = 0.20
    delete_spam_share: float = 0.3
    agents_per_group: tuple[int, int] = (6, 10)
    bad_agents: int = 3
    bad_categories: tuple[str, ...] = ("ads_business.billing_refund", "trust_safety.suspension_appeal")
    # False: CSAT is pure noise at a similar overall bad rate (no agent, category, time or reopen effect) —
    # the null case on which the CSAT-driver analysis must report nothing.
    plant_csat_drivers: bool = True
    first_ticket_id: int = 1
    first_rating_id: int = 900_001
    # A continuation chunk (the live simulator, ``helpdesk_sim.live``): groups, agents and planted CSAT drivers
    # still come from ``seed`` (the same people across chunks), everything after them from ``stream``.
    stream: int | None = None
    # Incidents to plant instead of random ones (each must lie inside [start, start + days)); None → random.
    incident_plan: tuple[Incident, ...] | None = None

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            self.start = self.start.replace(tzinfo=UTC)


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Text:
    """Composes subjects and descriptions; all randomness from the generator's ``random.Random``."""

    def __init__(self, rng: random.Random, taxonomy: Taxonomy) -> None:
        self.rng = rng
        self.taxonomy = taxonomy
        self.leaves = taxonomy.leaves

    def fill(self, text: str) -> str:
        r = self.rng
        if "{" not in text:
            return text
        return text.format(
            count=r.choice((2, 3, 4, 5, 10, 50, 200)), when=r.choice(P.WHEN), device=r.choice(P.DEVICES),
            board=r.choice(P.BOARDS), product=r.choice(P.PRODUCTS), amount=r.choice((49, 120, 315, 1499)),
            phone=self.phone(), url=self.url(spam=True), name=self.name(), email=self.email(),
            shop=f"{r.choice(P.NAMES)}'s {r.choice(P.PRODUCTS).title()}", other=self.other_topic(),
            weekday=r.choice(("Mon", "Tue", "Wed", "Thu", "Fri")), date=f"Aug {r.randint(1, 28)}, 2026",
            n=r.randint(0, 9),
        )

    def name(self) -> str:
        return f"{self.rng.choice(P.NAMES)} {self.rng.choice(P.SURNAMES)}"

    def email(self) -> str:
        r = self.rng
        return f"{r.choice(P.NAMES).lower()}.{r.choice(P.SURNAMES).lower()}{r.randint(1, 99)}@{r.choice(P.EMAIL_DOMAINS)}"

    def phone(self) -> str:
        r = self.rng
        fmt = r.randrange(4)
        a, b, c = r.randint(200, 989), r.randint(200, 999), r.randint(1000, 9999)
        return (f"+1 {a} {b} {c}", f"({a}) {b}-{c}", f"1-800-{b}-{c}", f"+44 20 {b}{c % 10} {c}")[fmt]

    def url(self, spam: bool = False) -> str:
        r = self.rng
        if spam:
            return r.choice(("http://pinterest-verify-login.xyz/secure", "https://pin-rewards.top/claim?id=",
                             "http://account-check.pinterest.support-help.ru/login")) + str(r.randint(10, 999))
        return f"https://www.pinterest.com/pin/{r.randint(10**9, 10**10)}/"

    def other_topic(self) -> str:
        return self.rng.choice(("password", "boards", "ads", "account", "notifications", "pins", "billing"))

    def typos(self, text: str) -> str:
        r = self.rng
        words = text.split(" ")
        for i, w in enumerate(words):
            if len(w) > 3 and r.random() < 0.05:
                k = r.randrange(len(w) - 1)
                op = r.randrange(3)
                words[i] = (w[:k] + w[k + 1] + w[k] + w[k + 2:], w[:k] + w[k + 1:], w[:k] + w[k] + w[k:])[op]
        return " ".join(words)

    def compose(self, category: str, channel: str, language: str) -> tuple[str, str]:
        r = self.rng
        if language != "en":
            subject, detail = P.FOREIGN[language][category]
            body = detail
            if r.random() < 0.3:
                body += "\n" + r.choice(("Gracias", "Merci", "Danke", "Obrigado", "よろしくお願いします"))
            return subject, body
        subject = self.fill(r.choice(P.SUBJECTS[category])) if r.random() > 0.25 else r.choice(P.GENERIC_SUBJECTS)
        if r.random() < 0.1:
            subject = subject.lower()
        elif r.random() < 0.05:
            subject = "URGENT: " + subject
        short = r.random() < 0.04 and not category.startswith("spam")
        if short:
            return subject, r.choice(("help", "???", "it doesnt work", "see subject", "pls fix"))
        details = P.DETAILS[category]
        parts = [self.fill(r.choice(P.OPENERS))]
        chosen = r.sample(details, k=min(len(details), r.choice((1, 1, 1, 2, 2, 3))))
        parts.extend(self.fill(d) for d in chosen)
        siblings = self.taxonomy.siblings(category)
        if siblings and r.random() < 0.3:  # customers mention a related problem too ("I also tried ...")
            related = self.fill(r.choice(P.DETAILS[r.choice(siblings)]))
            parts.insert(r.randrange(1, len(parts) + 1), r.choice(("Also, ", "Before that ", "")) + related)
        if r.random() < 0.5 and not category.startswith("spam"):
            parts.append(self.fill(r.choice(P.CONTEXT)))
        if r.random() < 0.15:
            pii = r.randrange(3)
            parts.append(("My email is " + self.email() + ".", "You can call me at " + self.phone() + ".",
                          "Here is the pin: " + self.url())[pii])
        parts.append(self.fill(r.choice(P.CLOSERS)))
        body = "\n".join(p for p in parts if p)
        if r.random() < 0.3:
            body = self.typos(body)
        if channel == "email" and r.random() < 0.25:
            body += "\n\n" + self.fill(r.choice(P.SIGNATURES))
        elif r.random() < 0.05:
            body += "\n\nSent from my iPhone"
        if channel == "email" and r.random() < 0.15:
            body += "\n\n" + self.fill(r.choice(P.QUOTED))
        if channel == "email" and r.random() < 0.2:
            body = "<div>" + "".join(f"<p>{line}</p>" if line else "<br>" for line in body.split("\n")) + "</div>"
        return subject, body


def generate_dataset(config: GeneratorConfig | None = None, taxonomy: Taxonomy | None = None) -> Dataset:
    """Build the whole dataset in memory (100k tickets take a few seconds).

    The steps below draw from the shared generators in a fixed order; reordering them (or the draws inside
    them) changes every dataset, which the tests and benchmarks compare against planted truth.
    """
    c = config or GeneratorConfig()
    tax = taxonomy or load_taxonomy()
    draw = _Draw.seeded(c.seed, tax)
    start = int(c.start.timestamp())
    end = start + c.days * DAY
    created_ts = start - 30 * DAY

    groups, agents, agents_by_team = _groups_and_agents(c, tax, draw, created_ts)
    bad_agents = _pick_bad_agents(c, draw, agents)
    if c.stream is not None:  # same organisation as `seed`, new tickets
        draw = _Draw.seeded(c.stream, tax)
    incidents = _plan_incidents(c, tax, draw.rng, start, end)
    arrivals = _arrivals(c, tax, draw.nrng, start, incidents)
    tickets, pending_ratings = _tickets(c, tax, draw, arrivals, agents_by_team, bad_agents)
    reason_themes = _attach_ratings(c, tickets, pending_ratings)
    truth = GroundTruth(incidents=incidents, csat_drivers=_planted_drivers(c, bad_agents),
                        csat_reason_themes=reason_themes,
                        config={**asdict(c), "start": c.start.isoformat(), "taxonomy_digest": tax.digest})
    return Dataset(tickets=tickets, groups=groups, agents=agents, ticket_fields=_ticket_fields(tax, created_ts),
                   contact_reason_field_id=CONTACT_REASON_FIELD_ID,
                   confirmed_category_field_id=CONFIRMED_CATEGORY_FIELD_ID, start=start, end=end, truth=truth)


@dataclass
class _Draw:
    """The generator's randomness: one ``random.Random`` (choices, text) and one numpy generator (counts,
    durations), seeded alike, plus the text composer that draws from the former."""

    rng: random.Random
    nrng: np.random.Generator
    text: _Text

    @classmethod
    def seeded(cls, seed: int, taxonomy: Taxonomy) -> _Draw:
        rng = random.Random(seed)
        return cls(rng=rng, nrng=np.random.default_rng(seed), text=_Text(rng, taxonomy))


class _PendingRating(NamedTuple):
    """A CSAT rating drawn for a ticket, before rating ids are numbered in creation order."""

    rated: int
    changed: int
    score: str
    comment: str | None
    reason: str | None
    assignee: int
    group_id: int
    theme: str | None
    ticket_index: int


def _groups_and_agents(c: GeneratorConfig, tax: Taxonomy, draw: _Draw, created_ts: int
                       ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, tuple[int, list[int]]]]:
    """One group per taxonomy team and a random number of agents in each (Zendesk shapes, relative urls)."""
    groups, agents, agents_by_team = [], [], {}
    agent_id = 10_001
    for gi, team in enumerate(tax.teams):
        gid = 20_001 + gi
        groups.append({"id": gid, "url": f"/api/v2/groups/{gid}.json", "name": TEAM_NAMES.get(team, team),
                       "description": f"{TEAM_NAMES.get(team, team)} queue", "default": team == "tier1_general",
                       "deleted": False, "created_at": _iso(created_ts), "updated_at": _iso(created_ts)})
        members = []
        for _ in range(draw.rng.randint(*c.agents_per_group)):
            name = draw.text.name()
            agents.append({"id": agent_id, "url": f"/api/v2/users/{agent_id}.json", "name": name,
                           "email": f"agent{agent_id}@support.example", "role": "admin" if agent_id % 17 == 0 else "agent",
                           "default_group_id": gid, "active": True, "created_at": _iso(created_ts),
                           "updated_at": _iso(created_ts)})
            members.append(agent_id)
            agent_id += 1
        agents_by_team[team] = (gid, members)
    return groups, agents, agents_by_team


def _pick_bad_agents(c: GeneratorConfig, draw: _Draw, agents: list[dict[str, Any]]) -> list[int]:
    """The agents whose tickets get slower replies and worse CSAT (none in the null case; drawn either way)."""
    all_agents = [a["id"] for a in agents]
    bad_agents = draw.rng.sample(all_agents, k=min(c.bad_agents, len(all_agents)))
    return bad_agents if c.plant_csat_drivers else []


def _plan_incidents(c: GeneratorConfig, tax: Taxonomy, rng: random.Random, start: int, end: int) -> list[Incident]:
    """The configured incident plan, or random daytime surges of one support category each."""
    if c.incident_plan is not None:
        return list(c.incident_plan)
    n_incidents = c.incidents if c.incidents is not None else max(1, c.days // 10)
    support_leaves = [k for k in tax.leaves if tax.categories[k].feedback_type == "support"]
    incidents: list[Incident] = []
    for i in range(n_incidents):
        cat = rng.choices(support_leaves, weights=[tax.categories[k].base_share for k in support_leaves])[0]
        lo, hi = start + min(2 * DAY, c.days * DAY // 4), end - min(DAY, c.days * DAY // 4)
        begin = lo + rng.randrange(max(1, (hi - lo) // DAY)) * DAY + rng.randint(7, 19) * HOUR  # daytime
        incidents.append(Incident(id=f"inc-{i + 1:03d}", category=cat, start=begin,
                                  end=begin + rng.randint(2, 6) * HOUR, multiplier=float(rng.randint(3, 8))))
    return incidents


def _arrivals(c: GeneratorConfig, tax: Taxonomy, nrng: np.random.Generator, start: int,
              incidents: list[Incident]) -> list[tuple[int, str, str | None]]:
    """(created, category, incident id) per ticket, in time order: per hour a Poisson total split by
    category (daily and weekly seasonality), plus each incident's surge in its category."""
    leaves = tax.leaves
    shares = np.array([tax.categories[k].base_share for k in leaves], dtype=float)
    shares /= shares.sum()
    hours = c.days * 24
    hour_starts = start + np.arange(hours) * HOUR
    dows = ((hour_starts // DAY) + 3) % 7  # 1970-01-01 was a Thursday
    rate = c.tickets_per_day / 24 * HOURLY[(hour_starts % DAY) // HOUR] * WEEKLY[dows]
    rate *= (c.tickets_per_day * c.days) / rate.sum()
    counts = nrng.poisson(rate)
    arrivals: list[tuple[int, str, str | None]] = []
    leaf_index = {k: i for i, k in enumerate(leaves)}
    for h, n in enumerate(counts):
        if n:
            cats = nrng.choice(len(leaves), size=int(n), p=shares)
            offsets = nrng.integers(0, HOUR, size=int(n))
            arrivals.extend((int(hour_starts[h] + o), leaves[k], None) for k, o in zip(cats, offsets, strict=True))
    for inc in incidents:
        base = rate[(inc.start - start) // HOUR: (inc.end - start) // HOUR] * shares[leaf_index[inc.category]]
        for h, lam in enumerate(base):
            extra = max(1, int(nrng.poisson(lam * (inc.multiplier - 1))))  # an incident always shows
            t0 = inc.start + h * HOUR
            arrivals.extend((t0 + int(o), inc.category, inc.id) for o in nrng.integers(0, HOUR, size=extra))
    arrivals.sort(key=lambda a: a[0])
    return arrivals


def _tickets(c: GeneratorConfig, tax: Taxonomy, draw: _Draw, arrivals: list[tuple[int, str, str | None]],
             agents_by_team: dict[str, tuple[int, list[int]]], bad_agents: list[int]
             ) -> tuple[list[TicketSpec], list[_PendingRating]]:
    """One ticket per arrival: its attributes, text, lifecycle and (maybe) a CSAT rating still to be numbered."""
    rng, nrng, leaves = draw.rng, draw.nrng, tax.leaves
    foreign_langs = [lang for lang in P.FOREIGN]
    foreign_cats = {lang: list(P.FOREIGN[lang]) for lang in foreign_langs}
    tickets: list[TicketSpec] = []
    pending_ratings: list[_PendingRating] = []
    for idx, (created, category, incident_id) in enumerate(arrivals):
        tid = c.first_ticket_id + idx
        cat = tax.categories[category]
        language = "en"
        if rng.random() < c.foreign_share:
            # foreign-language tickets are about the common problems the phrase bank covers per language
            language = rng.choice(foreign_langs)
            category = rng.choice(foreign_cats[language])
            cat = tax.categories[category]
        channel = rng.choices(("web", "email", "chat", "api", "mobile"), weights=(35, 30, 20, 5, 10))[0]
        subject, description = draw.text.compose(category, channel, language)
        segment = ("business" if category.startswith("ads_business") and rng.random() < 0.8 else
                   "creator" if category.startswith("creators") and rng.random() < 0.8 else
                   rng.choices(("consumer", "creator", "business"), weights=(85, 8, 7))[0])
        team = cat.team if rng.random() < 0.85 else "tier1_general"
        group_id, members = agents_by_team[team]
        assignee = rng.choice(members)
        contact_reason = _contact_reason(c, tax, rng, category)
        priority = ("urgent" if cat.feedback_type == "trust_safety" and rng.random() < 0.15 else
                    "high" if (cat.complexity == "complex" and rng.random() < 0.3) or (segment == "business" and rng.random() < 0.3)
                    else rng.choices(("normal", "low"), weights=(80, 20))[0])
        ttype = "incident" if incident_id else rng.choices(("question", "problem", "task", None), weights=(45, 35, 10, 10))[0]
        tags = [channel, rng.choice(("ios", "android", "web"))] + (["vip"] if segment == "business" else []) + \
            ([segment] if segment != "consumer" else [])

        events: list[tuple[int, str]] = [(created, "new")]
        first_reply = full_resolution = None
        confirmed = None
        is_spam = cat.feedback_type == "spam"
        if is_spam and rng.random() < c.delete_spam_share:
            events.append((created + rng.randint(600, 12 * HOUR), "deleted"))
        else:
            first_reply = max(2, int(nrng.lognormal(math.log(90 * _SPEED[cat.complexity]), 0.8)))
            if assignee in bad_agents:
                first_reply = int(first_reply * 1.8)
            solved = _work_ticket(draw, cat.complexity, events, created + first_reply * 60)
            if solved is not None:
                solved_at, reopened = solved
                full_resolution = max(1, (solved_at - created) // 60)
                confirmed = category
                if rng.random() < c.label_noise:
                    sibs = tax.siblings(category)
                    confirmed = rng.choice(sibs) if sibs else rng.choice([k for k in leaves if k != category])
                events.append((solved_at + 4 * DAY, "closed"))
                if not is_spam and rng.random() < c.csat_share:
                    pending_ratings.append(_rate(c, draw, category, assignee, group_id, bad_agents, solved_at,
                                                 full_resolution, reopened, ticket_index=len(tickets)))
        requester_id = 5_000_000 + rng.randrange(10**6)
        tickets.append(TicketSpec(
            id=tid, created_at=created, subject=subject, description=description, channel=channel,
            priority=priority, type=ttype, requester_id=requester_id,
            submitter_id=requester_id, organization_id=(30_001 + rng.randrange(50)) if segment == "business" else None,
            group_id=group_id, assignee_id=assignee, tags=tuple(tags), events=tuple(events),
            true_category=category, contact_reason=contact_reason, confirmed_category=confirmed,
            language=language, customer_segment=segment, first_reply_minutes=first_reply,
            full_resolution_minutes=full_resolution, incident_id=incident_id, rating=None,
        ))
    return tickets, pending_ratings


# How much longer replies and resolutions take, by the category's complexity.
_SPEED = {"simple": 1.0, "standard": 1.6, "complex": 2.6}


def _contact_reason(c: GeneratorConfig, tax: Taxonomy, rng: random.Random, category: str) -> str:
    """The customer's self-selected reason: right ~75%, else a sibling (similar menu item) or any other leaf."""
    if rng.random() < c.reason_disagreement:
        sibs = tax.siblings(category)
        contact_reason = rng.choice(sibs) if sibs and rng.random() < 0.7 else rng.choice(tax.leaves)
        if contact_reason == category:
            contact_reason = rng.choice([k for k in tax.leaves if k != category])
        return contact_reason
    return category


def _work_ticket(draw: _Draw, complexity: str, events: list[tuple[int, str]], replied: int
                 ) -> tuple[int, bool] | None:
    """Append the statuses after the first reply (at ``replied``) to ``events``: open, maybe pending, solved,
    maybe reopened and solved again. Returns (solved at, reopened), or None for the ~5% that stay open."""
    rng, nrng = draw.rng, draw.nrng
    t = replied
    events.append((t, "open"))
    if rng.random() < 0.35:
        t += int(nrng.lognormal(math.log(8 * HOUR), 0.7))
        events.append((t, "pending"))
        t += int(nrng.lognormal(math.log(4 * HOUR), 0.7))
        events.append((t, "open"))
    if rng.random() >= 0.95:  # 5% stay open for good
        return None
    t += int(nrng.lognormal(math.log(10 * HOUR * _SPEED[complexity]), 0.9))
    events.append((t, "solved"))
    reopened = rng.random() < 0.08
    if reopened:
        t += rng.randint(2 * HOUR, 3 * DAY)
        events.append((t, "open"))
        t += int(nrng.lognormal(math.log(12 * HOUR), 0.8))
        events.append((t, "solved"))
    return t, reopened


def _rate(c: GeneratorConfig, draw: _Draw, category: str, assignee: int, group_id: int, bad_agents: list[int],
          solved_at: int, full_resolution: int, reopened: bool, ticket_index: int) -> _PendingRating:
    """A CSAT rating from the logistic model with the planted drivers (or pure noise in the null case), with a
    comment and reason that state a theme when bad; ~5% change their score later."""
    rng = draw.rng
    logit = -1.9 + (1.6 if assignee in bad_agents else 0.0) \
        + (1.2 if category in c.bad_categories else 0.0) \
        + 0.5 * max(-1.5, min(3.0, math.log2(max(full_resolution, 1) / (24 * 60) + 1e-9) + 0.0)) \
        + (0.9 if reopened else 0.0)
    if not c.plant_csat_drivers:
        logit = -1.5
    bad = rng.random() < 1 / (1 + math.exp(-logit))
    rated = solved_at + rng.randint(HOUR, 2 * DAY)
    theme = None
    if bad:
        if assignee in bad_agents and rng.random() < 0.5:
            theme = "agent_attitude"
        elif category in c.bad_categories and rng.random() < 0.6:
            theme = "policy_disagreement"
        elif reopened and rng.random() < 0.6:
            theme = "not_resolved"
        elif full_resolution > 3 * 24 * 60 and rng.random() < 0.6:
            theme = "slow_response"
        else:
            theme = rng.choice(("slow_response", "not_resolved", "canned_reply", "product_bug", "other"))
        comment = draw.text.fill(rng.choice(P.CSAT_COMMENTS[theme])) if rng.random() < 0.85 else None
        reason = P.CSAT_REASON_LABELS[theme]
    else:
        comment = rng.choice(P.GOOD_COMMENTS) if rng.random() < 0.4 else None
        reason = None
    changed = rated + rng.randint(HOUR, DAY) if rng.random() < 0.05 else rated
    return _PendingRating(rated, changed, "bad" if bad else "good", comment, reason, assignee, group_id, theme,
                          ticket_index)


def _attach_ratings(c: GeneratorConfig, tickets: list[TicketSpec], pending: list[_PendingRating]) -> dict[int, str]:
    """Number the ratings (ids ascend with creation time, like Zendesk's), attach each to its ticket in place,
    and return the planted theme of every bad rating by rating id."""
    order = sorted(range(len(pending)), key=lambda i: (pending[i].rated, pending[i].ticket_index))
    reason_themes: dict[int, str] = {}
    for rank, i in enumerate(order):
        p = pending[i]
        if p.theme is not None:
            reason_themes[c.first_rating_id + rank] = p.theme
        tickets[p.ticket_index] = _replace(tickets[p.ticket_index], rating=RatingSpec(
            id=c.first_rating_id + rank, created_at=p.rated, updated_at=p.changed, score=p.score,
            comment=p.comment, reason=p.reason, assignee_id=p.assignee, group_id=p.group_id))
    return reason_themes


def _ticket_fields(tax: Taxonomy, created_ts: int) -> list[dict[str, Any]]:
    """The ticket fields served at ``/ticket_fields``: subject, the two category taggers, an order number."""
    options = [{"name": tax.categories[k].name, "value": k} for k in tax.leaves]
    return [
        {"id": 360000, "url": "/api/v2/ticket_fields/360000.json", "type": "subject", "title": "Subject",
         "active": True, "updated_at": _iso(created_ts)},
        {"id": CONTACT_REASON_FIELD_ID, "url": f"/api/v2/ticket_fields/{CONTACT_REASON_FIELD_ID}.json",
         "type": "tagger", "title": "Contact reason", "active": True, "updated_at": _iso(created_ts),
         "custom_field_options": [dict(o) for o in options]},
        {"id": CONFIRMED_CATEGORY_FIELD_ID, "url": f"/api/v2/ticket_fields/{CONFIRMED_CATEGORY_FIELD_ID}.json",
         "type": "tagger", "title": "Confirmed category", "active": True, "updated_at": _iso(created_ts),
         "custom_field_options": [dict(o) for o in options]},
        {"id": 360003, "url": "/api/v2/ticket_fields/360003.json", "type": "text", "title": "Order number",
         "active": True, "updated_at": _iso(created_ts)},
    ]


def _planted_drivers(c: GeneratorConfig, bad_agents: list[int]) -> list[dict[str, Any]]:
    """The CSAT drivers the ratings were drawn from (the truth the CSAT-driver analysis should find)."""
    if not c.plant_csat_drivers:
        return []
    drivers: list[dict[str, Any]] = [{"kind": "agent", "key": a, "effect": 1.6} for a in bad_agents]
    drivers += [{"kind": "category", "key": k, "effect": 1.2} for k in c.bad_categories]
    drivers += [{"kind": "resolution_time", "key": "log2(days)", "effect": 0.5},
                {"kind": "reopened", "key": True, "effect": 0.9}]
    return drivers


def _replace(spec: TicketSpec, **changes: Any) -> TicketSpec:
    from dataclasses import replace

    return replace(spec, **changes)


def write_ground_truth(dataset: Dataset, path: str | Path) -> None:
    """Write what was planted (config, incidents, CSAT drivers, per-ticket truth) as compact JSON."""
    t = dataset.tickets
    body = {
        "config": dataset.truth.config,
        "incidents": [asdict(i) for i in dataset.truth.incidents],
        "csat_drivers": dataset.truth.csat_drivers,
        "tickets": {
            "id": [x.id for x in t], "true_category": [x.true_category for x in t],
            "contact_reason": [x.contact_reason for x in t], "confirmed_category": [x.confirmed_category for x in t],
            "language": [x.language for x in t], "incident_id": [x.incident_id for x in t],
            "customer_segment": [x.customer_segment for x in t],
        },
    }
    Path(path).write_text(json.dumps(body, default=str, separators=(",", ":")), encoding="utf-8")
