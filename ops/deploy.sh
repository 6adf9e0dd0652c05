#!/usr/bin/env bash
# make deploy: the work pool + every deployment of prefect.yaml on the Prefect server at PREFECT_API_URL
# (default http://127.0.0.1:$PREFECT_PORT/api). On a stack with no champion model yet (a fresh `make up`), it
# then loads the helpdesk's history (`ingest`) and trains a first champion (`nightly-retrain`), waiting for both,
# so the next scheduled hourly-pipeline run has a model to score with. BOOTSTRAP=0 skips that step.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.venv/bin"
HOST=127.0.0.1
PREFECT_PORT="${PREFECT_PORT:-4200}"
MLFLOW_PORT="${MLFLOW_PORT:-5000}"
export PREFECT_API_URL="${PREFECT_API_URL:-http://$HOST:$PREFECT_PORT/api}"
TRACKING="${TICKETLENS_MLFLOW_TRACKING_URI:-http://$HOST:$MLFLOW_PORT}"
cd "$ROOT"

"$BIN/prefect" work-pool create ticketlens-process --type process --overwrite
"$BIN/prefect" --no-prompt deploy --all

[[ "${BOOTSTRAP:-1}" == 0 ]] && exit 0
if "$BIN/python" - "$TRACKING" <<'PY'
import sys
from ticketlens.adapters.settings import get_settings
from ticketlens.adapters.tracking import version_by_alias
sys.exit(0 if version_by_alias(sys.argv[1], get_settings().model_name, "champion") else 1)
PY
then
    echo "A champion model exists at $TRACKING: nothing to bootstrap."
    exit 0
fi
echo "No champion model at $TRACKING yet: loading history and training one (a few minutes; BOOTSTRAP=0 skips)."
"$BIN/prefect" deployment run 'ingest/ingest' --watch
"$BIN/prefect" deployment run 'nightly-retrain/nightly-retrain' --watch
