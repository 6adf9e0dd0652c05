#!/usr/bin/env bash
# Local TicketLens stack on loopback: Prefect server, MLflow tracking server, helpdesk simulator, process worker.
#   ops/stack.sh up | down | status        (make up / make down / make status)
# State lives under var/: pid files in var/run, logs in var/log, Prefect's home + SQLite DB in var/prefect,
# MLflow's SQLite backend + artifacts in var/mlflow, the SQLite warehouse in var/ticketlens.db.
# Ports: PREFECT_PORT (4200), MLFLOW_PORT (5000), SIM_PORT (8765), REPORTS_PORT (8766, the static server of
# var/reports that makes charts visible in Prefect artifacts).
# PostgreSQL instead of SQLite, by setting (exported, or on the make command line):
#   TICKETLENS_WAREHOUSE_URL=postgresql+psycopg://…          the warehouse
#   PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://…  the Prefect server's database
#   MLFLOW_BACKEND_STORE_URI=postgresql+psycopg://…           the MLflow tracking/registry store
# SIM=0 skips the simulator (point TICKETLENS_HELPDESK_BASE_URL and the token at a real helpdesk instead).
# The simulator runs in live mode (its clock is wall time; tickets, ratings and incidents keep arriving), with
# SIM_HISTORY_DAYS of history up to now, SIM_TICKETS_PER_DAY, SIM_INCIDENTS_PER_DAY and a first incident
# SIM_FIRST_INCIDENT_IN_HOURS after start-up (empty: none), so scheduled windows have data from the start.
# The real-time triage service (services/triage) listens on TRIAGE_PORT (8780); the simulator sends it signed
# "ticket created" webhooks. Its signing secret is TICKETLENS_TRIAGE_WEBHOOK_SECRET, or one generated once into
# var/triage-secret (mode 600). It refuses to run as root: as root the stack skips it unless
# TICKETLENS_TRIAGE_ALLOW_ROOT=true. TRIAGE=0 skips it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VAR="$ROOT/var"
BIN="$ROOT/.venv/bin"
HOST=127.0.0.1
PREFECT_PORT="${PREFECT_PORT:-4200}"
MLFLOW_PORT="${MLFLOW_PORT:-5000}"
SIM_PORT="${SIM_PORT:-8765}"
REPORTS_PORT="${REPORTS_PORT:-8766}"
TRIAGE_PORT="${TRIAGE_PORT:-8780}"
TRIAGE="${TRIAGE:-1}"
SIM="${SIM:-1}"
SIM_SEED="${SIM_SEED:-42}"
SIM_HISTORY_DAYS="${SIM_HISTORY_DAYS:-90}"
SIM_TICKETS_PER_DAY="${SIM_TICKETS_PER_DAY:-300}"
SIM_INCIDENTS_PER_DAY="${SIM_INCIDENTS_PER_DAY:-0.5}"
SIM_FIRST_INCIDENT_IN_HOURS="${SIM_FIRST_INCIDENT_IN_HOURS-2}"
POOL=ticketlens-process
SERVICES=(prefect-server mlflow simulator reports triage worker)

export PREFECT_API_URL="http://$HOST:$PREFECT_PORT/api"
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 GX_ANALYTICS_ENABLED=false
MLFLOW_BACKEND_STORE_URI="${MLFLOW_BACKEND_STORE_URI:-sqlite:///$VAR/mlflow/mlflow.db}"

pidfile() { echo "$VAR/run/$1.pid"; }

running() {  # running NAME → 0 when its recorded process is alive
    local f; f="$(pidfile "$1")"
    [[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null
}

port_busy() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

start() {  # start NAME PORT CMD... : own session (so `down` stops its children too), log + pid under var/
    local name="$1" port="$2"; shift 2
    if running "$name"; then echo "  $name already running (pid $(cat "$(pidfile "$name")"))"; return; fi
    if [[ "$port" != - ]] && port_busy "$port"; then
        echo "ERROR: port $port on $HOST ($name) is in use by something else: stop it, or choose other ports," >&2
        echo "       e.g. make up PREFECT_PORT=4300 MLFLOW_PORT=5300 SIM_PORT=8865" >&2
        exit 1
    fi
    setsid "$@" >"$VAR/log/$name.log" 2>&1 < /dev/null &
    echo $! >"$(pidfile "$name")"
    echo "  $name started (pid $!, log var/log/$name.log)"
}

wait_http() {  # wait_http NAME URL SECONDS
    local name="$1" url="$2" limit="$3" waited=0
    until curl -fsS -o /dev/null "$url" 2>/dev/null; do
        if ! running "$name"; then
            echo "ERROR: $name exited during start-up; last lines of var/log/$name.log:" >&2
            tail -n 20 "$VAR/log/$name.log" >&2
            echo "Fix the cause, then \`make down\` (stops what did start) and \`make up\` again." >&2; exit 1
        fi
        if (( waited >= limit )); then
            echo "ERROR: $name did not answer $url within ${limit}s; see var/log/$name.log, then \`make down\`" >&2
            exit 1
        fi
        sleep 1; waited=$((waited + 1))
    done
    echo "  $name ready: $url (${waited}s)"
}

up() {
    mkdir -p "$VAR/run" "$VAR/log" "$VAR/prefect" "$VAR/mlflow/artifacts" "$VAR/reports"
    echo "Starting the TicketLens stack on $HOST ..."
    start prefect-server "$PREFECT_PORT" env PREFECT_HOME="$VAR/prefect" \
        "$BIN/prefect" server start --host "$HOST" --port "$PREFECT_PORT"
    start mlflow "$MLFLOW_PORT" "$BIN/mlflow" server --host "$HOST" --port "$MLFLOW_PORT" \
        --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" --artifacts-destination "$VAR/mlflow/artifacts" --workers 1
    if [[ -z "${TICKETLENS_TRIAGE_WEBHOOK_SECRET:-}" ]]; then  # one local secret, shared by simulator and service
        [[ -s "$VAR/triage-secret" ]] || (umask 077; head -c 32 /dev/urandom | base64 | tr -d '\n' >"$VAR/triage-secret")
        TICKETLENS_TRIAGE_WEBHOOK_SECRET="$(cat "$VAR/triage-secret")"
    fi
    export TICKETLENS_TRIAGE_WEBHOOK_SECRET
    local triage_url="http://$HOST:$TRIAGE_PORT/webhooks/zendesk/ticket-created"
    if [[ "$SIM" != 0 ]]; then
        local first=()
        [[ -n "$SIM_FIRST_INCIDENT_IN_HOURS" ]] && first=(--first-incident-in-hours "$SIM_FIRST_INCIDENT_IN_HOURS")
        start simulator "$SIM_PORT" env TICKETLENS_TRIAGE_SIMULATOR_WEBHOOK_URL="$([[ "$TRIAGE" != 0 ]] && echo "$triage_url")" \
            "$BIN/ticketlens-sim" serve --live --seed "$SIM_SEED" \
            --history-days "$SIM_HISTORY_DAYS" --tickets-per-day "$SIM_TICKETS_PER_DAY" \
            --incidents-per-day "$SIM_INCIDENTS_PER_DAY" "${first[@]}" --host "$HOST" --port "$SIM_PORT"
    fi
    # Report charts (spike and CSAT PNGs) served read-only, so Prefect artifacts show them and Slack links them.
    start reports "$REPORTS_PORT" "$BIN/python" -m http.server "$REPORTS_PORT" --bind "$HOST" --directory "$VAR/reports"
    wait_http prefect-server "$PREFECT_API_URL/health" 180
    wait_http mlflow "http://$HOST:$MLFLOW_PORT/health" 180
    [[ "$SIM" != 0 ]] && wait_http simulator "http://$HOST:$SIM_PORT/_sim/health" 120
    wait_http reports "http://$HOST:$REPORTS_PORT/" 30
    if [[ "$TRIAGE" != 0 ]]; then
        if [[ "$(id -u)" == 0 && "${TICKETLENS_TRIAGE_ALLOW_ROOT:-false}" != true ]]; then
            echo "  triage NOT started: it refuses to run as root (run make up as an ordinary user, or set" >&2
            echo "         TICKETLENS_TRIAGE_ALLOW_ROOT=true); the hourly run routes new tickets meanwhile" >&2
        else
            local sim_base=()
            [[ "$SIM" != 0 ]] && sim_base=(TICKETLENS_HELPDESK_BASE_URL="${TICKETLENS_HELPDESK_BASE_URL:-http://$HOST:$SIM_PORT}")
            start triage "$TRIAGE_PORT" env TICKETLENS_HOME="$ROOT" \
                TICKETLENS_WAREHOUSE_URL="${TICKETLENS_WAREHOUSE_URL:-sqlite:///$VAR/ticketlens.db}" \
                TICKETLENS_MLFLOW_TRACKING_URI="${TICKETLENS_MLFLOW_TRACKING_URI:-http://$HOST:$MLFLOW_PORT}" \
                "${sim_base[@]}" "$BIN/ticketlens-triage" --host "$HOST" --port "$TRIAGE_PORT"
            wait_http triage "http://$HOST:$TRIAGE_PORT/healthz" 120
        fi
    fi

    "$BIN/prefect" work-pool create "$POOL" --type process --overwrite >/dev/null
    echo "  work pool $POOL (process) ready"
    # The worker's flow runs read TICKETLENS_* from this environment, then .env in TICKETLENS_HOME.
    # Values exported before `make up` win over these local defaults.
    local sim_url=()
    [[ "$SIM" != 0 ]] && sim_url=(TICKETLENS_HELPDESK_BASE_URL="${TICKETLENS_HELPDESK_BASE_URL:-http://$HOST:$SIM_PORT}")
    start worker - env TICKETLENS_HOME="$ROOT" PREFECT_HOME="$VAR/prefect" \
        TICKETLENS_WAREHOUSE_URL="${TICKETLENS_WAREHOUSE_URL:-sqlite:///$VAR/ticketlens.db}" \
        TICKETLENS_MLFLOW_TRACKING_URI="${TICKETLENS_MLFLOW_TRACKING_URI:-http://$HOST:$MLFLOW_PORT}" \
        TICKETLENS_MLFLOW_ARTIFACT_LOCATION="${TICKETLENS_MLFLOW_ARTIFACT_LOCATION:-$VAR/mlflow/artifacts}" \
        TICKETLENS_REPORTS_DIR="${TICKETLENS_REPORTS_DIR:-$VAR/reports}" \
        TICKETLENS_REPORTS_BASE_URL="${TICKETLENS_REPORTS_BASE_URL:-http://$HOST:$REPORTS_PORT}" \
        "${sim_url[@]}" \
        "$BIN/prefect" worker start --pool "$POOL" --name "ticketlens-local-worker"
    sleep 3
    running worker || { echo "ERROR: the worker exited; see var/log/worker.log" >&2; tail -n 20 "$VAR/log/worker.log" >&2; exit 1; }
    cat <<MSG

TicketLens stack is up:
  Prefect UI   http://$HOST:$PREFECT_PORT      (export PREFECT_API_URL=$PREFECT_API_URL for the CLI)
  MLflow UI    http://$HOST:$MLFLOW_PORT
  simulator    $([[ "$SIM" != 0 ]] && echo "http://$HOST:$SIM_PORT" || echo "off (SIM=0)")
  reports      http://$HOST:$REPORTS_PORT   (charts in var/reports, shown in Prefect artifacts)
  triage       http://$HOST:$TRIAGE_PORT/readyz   (webhooks: $triage_url, metrics: /metrics)
  worker       pool $POOL, logs var/log/worker.log
Deploy:  make deploy PREFECT_PORT=$PREFECT_PORT MLFLOW_PORT=$MLFLOW_PORT   (first time: also loads history and trains a champion)
Stop:    make down
MSG
}

stop() {  # stop NAME: TERM the whole process group, KILL after 20 s
    local name="$1" f pid i
    f="$(pidfile "$name")"
    [[ -f "$f" ]] || return 0
    pid="$(cat "$f")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
        echo "  $name stopped (pid $pid)"
    fi
    rm -f "$f"
}

down() {
    echo "Stopping the TicketLens stack ..."
    local i
    for (( i=${#SERVICES[@]}-1; i>=0; i-- )); do stop "${SERVICES[i]}"; done
}

status() {
    local name
    for name in "${SERVICES[@]}"; do
        if running "$name"; then echo "  $name: running (pid $(cat "$(pidfile "$name")"))"
        else echo "  $name: stopped"; fi
        if [[ "$name" == triage ]] && running triage; then  # ready = champion loaded and warehouse reachable
            echo "    readyz: $(curl -s "http://$HOST:$TRIAGE_PORT/readyz" 2>/dev/null || echo unreachable)"
        fi
    done
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
