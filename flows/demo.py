"""``make demo``: a guided tour of TicketLens on the embedded defaults, against a local helpdesk simulator.

It runs the four scheduled flows the way they run in production, one after the other, on a seeded month of
simulated Zendesk data (August 2026), and prints one line per stage with its result and elapsed time:

1. start the Zendesk-compatible simulator (a separate process on 127.0.0.1:8765);
2. ``ingest``: tickets, CSAT ratings, agents, groups → validated SQLite warehouse ``ticketlens.db``;
3. ``nightly-retrain``: train the category classifier, register it in MLflow (``mlflow.db``), promote it to
   ``champion`` and re-score history with it (the backfill);
4. ``hourly-pipeline`` for the month's last hour: ingest → score → write tags back → spike detection;
5. ``csat-drivers`` over the month.

It ends with a recap of where to look. Nothing else is printed unless ``--verbose`` (``make demo VERBOSE=1``),
which shows the flows' own logs too. The flow runs are recorded in a persistent local Prefect database under
``var/demo/prefect`` (unless ``PREFECT_API_URL`` points at a server), so ``prefect server start`` with that home
shows them and their artifacts afterwards. A second run is idempotent: nothing is loaded or pushed twice.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import threading
import time
import unicodedata
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import sqlalchemy as sa

DEMO_START = datetime(2026, 8, 1, tzinfo=UTC)
DEMO_DAYS = 30
DEMO_TICKETS_PER_DAY = 300
DEMO_DATA_END = DEMO_START + timedelta(days=DEMO_DAYS)  # the simulator's clock: the end of its data
# Planted incidents (``ticketlens-sim serve --incident``): three the detector should page on at this volume — the
# category's usual ~1 ticket/hour at 8-10x for 3-4 daytime hours — and one too thin to page on (5x of ~0.1/hour
# stays under TICKETLENS_SPIKE_MIN_COUNT tickets an hour), so the recap shows both outcomes with their reasons.
DEMO_INCIDENTS = (
    "account.password_reset@2026-08-12T10+4x8",
    "pins_boards.missing_pins@2026-08-19T14+3x10",
    "app_technical.crash@2026-08-26T09+4x10",
    "creators.rich_pins@2026-08-16T16+5x5",
)
DEMO_SIM_ARGS = ["--seed", "42", "--start", f"{DEMO_START:%Y-%m-%d}", "--days", str(DEMO_DAYS),
                 "--tickets-per-day", str(DEMO_TICKETS_PER_DAY),
                 *(arg for incident in DEMO_INCIDENTS for arg in ("--incident", incident))]
PREFECT_HOME = Path("var/demo/prefect")
HEARTBEAT_SECONDS = 15.0
STAGES = 5

PLAN = f"""TicketLens demo — about 5 minutes on a 2-core machine (4-7 min; the first run also creates the databases).
It runs the scheduled flows in order on a simulated month of Zendesk data ({DEMO_START:%B %Y}, ~{DEMO_TICKETS_PER_DAY}
tickets a day):
  1. start the simulated helpdesk (Zendesk REST API on loopback)                  ~15 s
  2. ingest: tickets, CSAT ratings, agents, groups → validated warehouse          ~1 min (paced at Zendesk's
     10 export requests/minute, as against a real account)
  3. nightly-retrain: train, register in MLflow, promote, re-score history        ~2-3 min
  4. hourly-pipeline: ingest → score → write tags back → spike detection          ~40 s
  5. csat-drivers: what drives bad satisfaction ratings                           ~15 s
One line per stage; `make demo VERBOSE=1` shows every flow's own log as well."""


# ------------------------------------------------------------------------------------------- output helpers


def display_width(text: str) -> int:
    """Columns a string takes in a terminal: East Asian wide/full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def fit(text: str, width: int) -> str:
    """``text`` cut and padded to exactly ``width`` terminal columns (so CJK subjects keep tables aligned)."""
    out, used = [], 0
    for ch in text:
        w = 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
        if used + w > width:
            break
        out.append(ch)
        used += w
    return "".join(out) + " " * (width - used)


class Stage:
    """One numbered stage: a header, a progress line every ``HEARTBEAT_SECONDS`` while it runs, then its result.

    In quiet mode what the libraries write to stderr during the stage (MLflow's registration chatter, say) is
    held back and shown only if the stage fails, so an error is never hidden.
    """

    def __init__(self, number: int, title: str, probe: Callable[[], str] | None = None, quiet: bool = True):
        self.number, self.title, self.probe, self.quiet = number, title, probe, quiet
        self.started = 0.0
        self._stop = threading.Event()
        self._stderr = io.StringIO()

    def elapsed(self) -> str:
        seconds = time.monotonic() - self.started
        return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                detail = self.probe() if self.probe else ""
            except Exception:  # a progress probe must never break the stage it reports on
                detail = ""
            print(f"      … {detail + ', ' if detail else ''}{self.elapsed()} so far", flush=True)

    @contextlib.contextmanager
    def run(self) -> Iterator[Stage]:
        print(f"\n[{self.number}/{STAGES}] {self.title}", flush=True)
        self.started = time.monotonic()
        beat = threading.Thread(target=self._beat, name="demo-progress", daemon=True)
        beat.start()
        redirect = contextlib.redirect_stderr(self._stderr) if self.quiet else contextlib.nullcontext()
        try:
            with redirect:
                yield self
        except BaseException:
            held = self._stderr.getvalue()
            if held:
                sys.stderr.write(held)
            print(f"      FAILED after {self.elapsed()} (the error follows)", flush=True)
            raise
        finally:
            self._stop.set()
            beat.join(timeout=1)

    def done(self, result: str) -> None:
        print(f"      done in {self.elapsed()}: {result}", flush=True)

    def detail(self, line: str) -> None:
        print(f"      {line}", flush=True)

    def call(self, flow, **kwargs) -> dict:
        """Run a flow; a run that ended Failed or Skipped (``tasks.runstate``) is reported, with what it did."""
        from ticketlens.tasks.runstate import RunNotCompleteError

        try:
            return flow(**kwargs)
        except RunNotCompleteError as exc:
            self.detail(f"NOT COMPLETE: {exc}")
            return dict(exc.result or {})


def quiet_libraries() -> None:
    """Keep library chatter out of the tour (their warnings about the demo's own data are not the user's)."""
    # Warnings that matter (quarantined rows, a refused promotion) reach the stage's own result line.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
    for name in ("mlflow", "great_expectations", "alembic", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # GX sets this module logger to INFO when it is imported (after us): a filter survives that.
    logging.getLogger("great_expectations.data_context.types.base").addFilter(
        lambda record: record.levelno >= logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*Inferred schema contains integer column", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def use_local_prefect_home() -> str | None:
    """Record the demo's runs in a persistent Prefect database under var/ (unless a server is configured)."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    home = PREFECT_HOME.resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(home))
    # The demo's Prefect server starts in a subprocess on the first flow; Prefect waits 20 s for it, which a busy
    # 2-core machine can exceed (seen: the demo failing at ingest with "Timed out while attempting to connect").
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    # Its telemetry service phones home every 10 min; offline that prints an ERROR line into the tour.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    return os.environ["PREFECT_HOME"]


# ------------------------------------------------------------------------------------------- warehouse reads


def scalar(url: str, sql: str, **params) -> int:
    from ticketlens.adapters.warehouse.engine import get_engine

    with get_engine(url).connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one() or 0


def count_probe(url: str, sql: str, label: str) -> Callable[[], str]:
    def probe() -> str:
        n = scalar(url, sql)
        return f"{n:,} {label}" if n else ""
    return probe


def print_routed(url: str, limit: int = 6) -> None:
    """A sample of scored tickets with what was pushed back to the helpdesk."""
    from ticketlens.adapters.warehouse.engine import get_engine

    with get_engine(url).connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT p.ticket_id, t.subject, p.category, p.confidence, p.tier, p.routing_group, "
            "p.auto_reply, w.status FROM ticket_predictions p JOIN tickets t ON t.id = p.ticket_id "
            "LEFT JOIN writeback_state w ON w.ticket_id = p.ticket_id WHERE p.is_current "
            "ORDER BY t.created_at DESC LIMIT :n"), {"n": limit}).all()
    print("      newest routed tickets (tags pushed to the helpdesk with prefix tl_):")
    for r in rows:
        print(f"        #{r.ticket_id:<5} {fit(r.subject or '', 26)} → {fit(r.category, 32)} p={r.confidence:.2f} "
              f"tier {r.tier} → {r.routing_group}{' +auto-reply' if r.auto_reply else ''} ({r.status})")


def incident_report(url: str, settings) -> list[str]:
    """Planted incidents (ground truth) against the alerts raised, with why each missed one was missed."""
    from dataclasses import replace

    from ticketlens.adapters.warehouse.engine import get_engine
    from ticketlens.adapters.warehouse.schema import spike_alerts, ticket_predictions, tickets
    from ticketlens.helpdesk_sim.cli import parse_incident
    from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset

    p, t = ticket_predictions, tickets
    plan = tuple(replace(parse_incident(text), id=f"inc-{i:03d}") for i, text in enumerate(DEMO_INCIDENTS, 1))
    truth = generate_dataset(GeneratorConfig(seed=42, start=DEMO_START, days=DEMO_DAYS,
                                             tickets_per_day=DEMO_TICKETS_PER_DAY, incident_plan=plan)).truth.incidents
    lines = []
    a = spike_alerts
    with get_engine(url).connect() as conn:
        for inc in truth:
            start, end = datetime.fromtimestamp(inc.start, UTC), datetime.fromtimestamp(inc.end, UTC)
            alert = conn.execute(
                sa.select(a.c.started_at).where(a.c.series == inc.category, a.c.started_at < end,
                                                a.c.last_spike_at >= start - timedelta(hours=1))
                .order_by(a.c.started_at).limit(1)).first()
            hourly = conn.execute(
                sa.select(sa.func.count()).select_from(p.join(t, t.c.id == p.c.ticket_id))
                .where(p.c.is_current.is_(True), p.c.category == inc.category, t.c.created_at >= start,
                       t.c.created_at < end)).scalar_one()
            month = conn.execute(sa.text(
                "SELECT COUNT(*) FROM ticket_predictions p WHERE p.is_current AND p.category = :c"),
                {"c": inc.category}).scalar_one()
            hours = max(1, (inc.end - inc.start) // 3600)
            usual = month / (DEMO_DAYS * 24)
            what = (f"{inc.category} {inc.multiplier:.0f}× for {hours} h from {start:%d %b %H:%M}: "
                    f"{hourly} tickets in those hours ({hourly / hours:.1f}/h vs {usual:.1f}/h usually)")
            if alert is not None:
                lines.append(f"FOUND   {what}; alert opened {alert.started_at:%d %b %H:%M}")
            elif hourly / hours < settings.spike.min_count:
                lines.append(f"missed  {what}; below the paging floor of {settings.spike.min_count} tickets/hour "
                             f"(TICKETLENS_SPIKE_MIN_COUNT): too thin to page on at {DEMO_TICKETS_PER_DAY} "
                             "tickets/day")
            else:
                lines.append(f"missed  {what}; not significant against this category's own noise")
    return lines


# ------------------------------------------------------------------------------------------------ the tour


def recap(settings, charts: list[str], prefect_home: str | None) -> None:
    db = urlparse(settings.warehouse_url).path.lstrip("/") if settings.warehouse_url.startswith("sqlite") else None
    print("\n=== Where to look now")
    if db:
        print(f"Warehouse  {db} (SQLite). Three queries worth running:")
        print(f'  sqlite3 {db} "SELECT category, routing_group, COUNT(*) FROM ticket_predictions '
              'WHERE is_current GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 10"')
        print(f'  sqlite3 {db} "SELECT factor, level, odds_ratio, q_value, excess_bad FROM csat_drivers '
              'WHERE is_driver ORDER BY driver_rank"')
        print(f'  sqlite3 {db} "SELECT series, started_at, peak_observed, state FROM spike_alerts"')
        print("  (no sqlite3? `python3 -m uv run python -c \"import sqlite3; ...\"`, or any SQL client)")
    else:
        print(f"Warehouse  {settings.warehouse_url.split('@')[-1]}: tables tickets, ticket_predictions, "
              "spike_alerts, csat_drivers")
    print(f"MLflow     python3 -m uv run mlflow ui --backend-store-uri {settings.mlflow_tracking_uri} --port 5000")
    print(f"           → http://127.0.0.1:5000: experiment {settings.mlflow_experiment}, registered model "
          f"{settings.model_name} (alias champion)")
    print(f"Charts     {settings.reports_dir}/ :")
    for chart in charts:
        print(f"             {chart}")
    if prefect_home:
        rel = os.path.relpath(prefect_home)
        print(f"Prefect    PREFECT_HOME={rel} python3 -m uv run prefect server start")
        print("           → http://127.0.0.1:4200/runs: these runs with their logs, and the Artifacts page "
              "(ingest-summary, nightly-retrain-decision, hourly-pipeline-summary, spike-alerts, csat-drivers-*)")
    print("Again      make demo (idempotent: nothing is loaded or pushed twice); make reset starts from scratch")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ticketlens.flows.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="show the flows' own logs as well")
    args = parser.parse_args(argv)
    quiet = not args.verbose
    if quiet:
        quiet_libraries()
    # Before Prefect is imported: its settings are read once.
    prefect_home = use_local_prefect_home()
    # Replay the whole month once. The flows read their settings themselves (get_settings(): a deployment takes
    # no settings parameter), so this one demo override goes where a deployment's would, the environment;
    # setdefault lets a value the user exported win. The simulator subprocess does not read TICKETLENS_SPIKE_*.
    os.environ.setdefault("TICKETLENS_SPIKE_MAX_CATCHUP_HOURS", "720")

    from ticketlens.adapters.settings import get_settings
    from ticketlens.adapters.warehouse.engine import checkpoint_warehouse
    from ticketlens.flows.csat_drivers import csat_drivers
    from ticketlens.flows.hourly_pipeline import hourly_pipeline
    from ticketlens.flows.ingest import ingest
    from ticketlens.flows.nightly_retrain import nightly_retrain
    from ticketlens.helpdesk_sim.testing import SimulatorProcess

    get_settings.cache_clear()
    settings = get_settings()
    url = settings.warehouse_url
    print(PLAN)
    demo_started = time.monotonic()
    parsed = urlparse(settings.helpdesk_base_url)

    stage = Stage(1, f"Starting the simulated helpdesk on {settings.helpdesk_base_url}", quiet=quiet)
    with contextlib.ExitStack() as simulator:
        with stage.run():
            simulator.enter_context(SimulatorProcess(DEMO_SIM_ARGS, host=parsed.hostname or "127.0.0.1",
                                                     port=parsed.port or 8765))
        stage.done(f"{DEMO_DAYS} days of tickets from {DEMO_START:%Y-%m-%d}, clock at {DEMO_DATA_END:%Y-%m-%d}")

        stage = Stage(2, "ingest: helpdesk → Great Expectations → warehouse", quiet=quiet,
                      probe=count_probe(url, "SELECT COUNT(*) FROM tickets", "tickets in the warehouse"))
        with stage.run():
            result = stage.call(ingest)
        if result.get("skipped"):
            raise SystemExit("Another ingest run holds the warehouse run lock; wait for it (or `make reset`).")
        t, r = result["tickets"], result["satisfaction_ratings"]
        stage.done(f"{t['fetched']:,} tickets ({t['inserted']:,} new, {t['updated']:,} updated, "
                   f"{t['quarantined']} quarantined) and {r['fetched'] - r.get('not_ratings', 0):,} CSAT ratings (+"
                   f"{r.get('not_ratings', 0):,} surveys offered but not answered) in {t['pages']} + {r['pages']} "
                   f"pages → {url}")

        stage = Stage(3, "nightly-retrain: train → MLflow → promote → backfill history", quiet=quiet,
                      probe=count_probe(url, "SELECT COUNT(*) FROM ticket_predictions WHERE is_current",
                                        "tickets with a current prediction"))
        with stage.run():
            trained = stage.call(nightly_retrain)
        if trained.get("skipped"):
            stage.done("skipped: another nightly-retrain holds the run lock")
        else:
            m = trained["metrics"]
            verdict = "promoted to champion" if trained["promoted"] else "kept as challenger (champion stays)"
            stage.done(f"{settings.model_name} v{trained['version']} {verdict}")
            stage.detail(f"why: {trained['reason']}")
            stage.detail(f"holdout: accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}, "
                         f"ECE {m['ece']:.3f}; auto-routes {m['coverage_at_threshold']:.0%} of tickets at "
                         f"accuracy {m['accuracy_at_threshold']:.3f}")
            stage.detail(f"sentiment: {trained.get('sentiment_reason') or trained['sentiment_winner']}")
            if trained["backfill"]:
                stage.detail(f"backfill: {trained['backfill']['scored']:,} tickets re-scored with "
                             f"v{trained['version']}")
            else:
                stage.detail("backfill: none (no new champion, history keeps its predictions)")

        stage = Stage(4, "hourly-pipeline for the month's last hour: ingest → score → write back → spikes",
                      quiet=quiet, probe=count_probe(url, "SELECT COUNT(*) FROM writeback_state "
                                                          "WHERE status = 'done'", "tickets tagged"))
        with stage.run():
            hourly = stage.call(hourly_pipeline, end=DEMO_DATA_END)
        if hourly.get("skipped"):
            stage.done("skipped: another hourly-pipeline holds the run lock")
        else:
            spikes, scored = hourly["spikes"], hourly["scoring"]
            stage.done(f"{scored['scored']:,} tickets scored, {hourly['push']['submitted']:,} pushed "
                       f"and {hourly['poll']['done']:,} confirmed by the helpdesk")
            stage.detail(f"not re-scored: {scored.get('already_current', 0):,} already scored by this model version "
                         f"(the backfill), {scored.get('echoes', 0):,} write-back echoes")
            print_routed(url)
            if spikes is None:
                stage.detail(f"spike detection FAILED: {hourly['failed_steps'].get('spike-detection')}")
            else:
                stage.detail(f"spike detection over the month: {spikes.opened} new alert(s) this run "
                             f"({spikes.slack.not_sent} Slack message(s) stored as not sent: set "
                             "TICKETLENS_SLACK_WEBHOOK_URL to post them). Planted incidents:")
                for line in incident_report(url, settings):
                    stage.detail(f"  {line}")

    stage = Stage(5, "csat-drivers over the month: what drives bad ratings", quiet=quiet)
    with stage.run():
        report = stage.call(csat_drivers, start=DEMO_START, end=DEMO_START + timedelta(days=31))
    if isinstance(report, dict):  # a run that did not complete: skipped for the run lock (stage.call said so)
        raise SystemExit("Another csat-drivers run holds the warehouse run lock; wait for it and run again.")
    stage.done(f"{report.ratings:,} ratings ({report.bad} bad): {len(report.driver_lines)} driver(s) at "
               f"FDR {settings.csat.fdr}")
    for line in report.driver_lines[:5]:
        stage.detail(f"  {line}")

    checkpoint_warehouse(url)
    charts = sorted(str(p) for p in Path(settings.reports_dir).rglob("*.png"))
    print(f"\nFinished in {(time.monotonic() - demo_started) / 60:.1f} min.")
    recap(settings, charts, prefect_home)
    return 0


if __name__ == "__main__":
    sys.exit(main())
