# TicketLens developer entry points. Every target installs what it needs first (uv + the locked env).
SHELL := /bin/bash
UV := python3 -m uv
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export GX_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
# No internet here: a Prefect server that tries to send telemetry logs an ERROR line on every start.
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: install demo test lint unit bench bench-accuracy bench-triage fuzz fault-suite sim triage up down status deploy soak clean reset check-helpdesk

install:
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv>=0.5"
	@$(UV) sync --frozen --quiet

## Run the main job on the embedded defaults against a local simulator (SQLite warehouse ./ticketlens.db).
## One line per stage; VERBOSE=1 shows every flow's own log too.
demo: install
	$(UV) run python -m ticketlens.flows.demo $(if $(VERBOSE),--verbose,)

## Lint + the whole test suite (SQLite always; PostgreSQL when reachable, mandatory when CI=true).
test: install lint
	$(UV) run pytest --durations=15

lint: install
	$(UV) run ruff check .

## Preflight: is the helpdesk in TICKETLENS_* (or .env) ready for TicketLens? Reads only; pass/fail table.
## Add ARGS="--write-check TICKET_ID" to also prove the write-back fields are writable (writes current values).
check-helpdesk: install
	$(UV) run ticketlens doctor $(ARGS)

## Regenerate docs/configuration.md from the settings' field descriptions (tests/unit/test_docs.py fails when it is stale).
.PHONY: docs
docs: install
	$(UV) run python -m ticketlens.docgen

## Benchmarks (print results tables).
bench: install
	$(UV) run python -m bench.ingest_bench
	$(UV) run python -m bench.backfill_bench
	$(UV) run python -m bench.spike_bench
	$(UV) run python -m bench.csat_bench
	$(UV) run python -m bench.response_cap_bench

## Kill -9 fault suite: ingest, scoring, write-back and backfill SIGKILLed at seeded random moments, rerun, compared
## with the source (FAULT_TRIALS per step on SQLite, FAULT_PG_TRIALS on PostgreSQL when reachable).
FAULT_TRIALS ?= 20
FAULT_PG_TRIALS ?= 5
fault-suite: install
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(UV) run python -c "import sys; from bench.fault_suite import main; sys.exit(main(sys.argv[1:]))" --trials $(FAULT_TRIALS) --pg-trials $(FAULT_PG_TRIALS)

## Classifier accuracy on the real BANKING77 dataset (../shared/data/banking77).
fuzz: install
	TICKETLENS_FUZZ_EXAMPLES=200 $(UV) run pytest tests/warehouse/test_ingest_fuzz.py -p no:cacheprovider

bench-accuracy: install
	$(UV) run python -m bench.accuracy_bench

## Start the Zendesk-compatible simulator in the foreground on 127.0.0.1:8765.
sim: install
	$(UV) run ticketlens-sim serve --port 8765

## The real-time triage service alone, in the foreground (TICKETLENS_TRIAGE_* settings; see docs/triage.md).
## It refuses to run as root unless TICKETLENS_TRIAGE_ALLOW_ROOT=true.
triage: install
	$(UV) run ticketlens-triage

## Triage latency benchmark: simulator + service + warehouse here, creation → write-back confirmed at each rate.
## Full run: make bench-triage (5, 20, 50 tickets/s, 600 s each); short: TRIAGE_BENCH_ARGS="--seconds 60".
TRIAGE_BENCH_ARGS ?=
bench-triage: install
	$(UV) run python -m bench.triage_bench $(TRIAGE_BENCH_ARGS)

## Local stack on loopback (Prefect server, MLflow server, simulator, process worker); state under var/.
## PostgreSQL by setting, e.g. make up TICKETLENS_WAREHOUSE_URL=postgresql+psycopg://…  (see README, Operations guide)
up: install
	@ops/stack.sh up

down:
	@ops/stack.sh down

status:
	@ops/stack.sh status

## Create the work pool (idempotent) and deploy everything in prefect.yaml to the server at PREFECT_API_URL
## (default: the local stack's, http://127.0.0.1:$(PREFECT_PORT)/api); on a stack without a champion model, also
## load history and train one (BOOTSTRAP=0 skips that). Same ports as `make up`: PREFECT_PORT, MLFLOW_PORT.
PREFECT_PORT ?= 4200
MLFLOW_PORT ?= 5000
PREFECT_API_URL ?= http://127.0.0.1:$(PREFECT_PORT)/api
deploy: install
	PREFECT_PORT=$(PREFECT_PORT) MLFLOW_PORT=$(MLFLOW_PORT) PREFECT_API_URL=$(PREFECT_API_URL) ops/deploy.sh

## Soak: the local stack (make up + make deploy) running its real schedules for SOAK_HOURS real hours, then a
## table: runs per deployment, tickets ingested vs in the helpdesk, write-backs, echoes, alerts vs incidents, memory.
SOAK_HOURS ?= 1
soak: install
	PREFECT_PORT=$(PREFECT_PORT) MLFLOW_PORT=$(MLFLOW_PORT) $(UV) run python -m bench.soak --hours $(SOAK_HOURS)

## clean: caches only (pytest, ruff, __pycache__); your warehouse, models and reports stay.
clean:
	rm -rf .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +

## reset: everything the demo and the local stack created — the warehouse, the MLflow store and artifacts
## (registered models and their aliases), var/ (reports, the demo's Prefect runs, the stack's state). The next
## `make demo` starts from scratch: version 1 becomes champion and history is backfilled again. Stop the stack first.
reset: clean
	@if [ -f var/run/prefect-server.pid ] && kill -0 "$$(cat var/run/prefect-server.pid)" 2>/dev/null; then \
		echo "The local stack is running: make down first" >&2; exit 1; fi
	rm -rf ticketlens.db ticketlens.db-* mlflow.db mlflow.db-* mlartifacts/ mlruns/ var/
