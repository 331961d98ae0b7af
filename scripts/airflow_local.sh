#!/usr/bin/env bash
# Local Airflow for Chimera (what `make airflow` runs): this repo's DAGs and plugins, served from
# .venv-airflow on 127.0.0.1, stage tasks run by .venv's `chimera` CLI.
#
# Four components, each its own process group: api-server (1 worker), scheduler (LocalExecutor,
# parallelism 4), dag-processor, triggerer; no log servers (--skip-serve-logs: the api-server reads
# task logs from the local disk). SQLite metadata DB and logs live in AIRFLOW_HOME. Ctrl-C or
# SIGTERM stops every component (TERM, then KILL after a grace period).
#
# With arguments, runs that `airflow` CLI command in the same environment instead (the same
# AIRFLOW_HOME, database, DAGs and chimera CLI; Airflow may be up or not), e.g. one stage now,
# in the terminal, without the scheduler and whether the DAG is paused or not:
#   bash scripts/airflow_local.sh dags test chimera_training -c '{"stages": ["ingest"]}'
#
# Settings (environment):
#   AIRFLOW_LOCAL_HOME      AIRFLOW_HOME (default: .chimera/airflow)
#   AIRFLOW_LOCAL_PORT      api-server port on 127.0.0.1 (default: 8080)
#   AIRFLOW_LOCAL_PASSWORD  the admin's password (default: generated once, kept in AIRFLOW_HOME)
#   AIRFLOW_LOCAL_VENV      the Airflow venv (default: .venv-airflow)
#   AIRFLOW_LOCAL_CHIMERA   the chimera CLI the stage tasks run (default: .venv/bin/chimera)
#   AIRFLOW_LOCAL_GRACE_S   seconds a component gets to stop before KILL (default: 20)
# CHIMERA_* settings (CHIMERA_PROFILE, CHIMERA_PUBMEDQA_FILE, CHIMERA_ARTIFACTS__..., a MinIO
# connection as AIRFLOW_CONN_CHIMERA_MINIO) pass through to the DAG processor and the tasks.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

HOME_DIR="${AIRFLOW_LOCAL_HOME:-$REPO/.chimera/airflow}"
PORT="${AIRFLOW_LOCAL_PORT:-8080}"
VENV="${AIRFLOW_LOCAL_VENV:-$REPO/.venv-airflow}"
CHIMERA_CLI="${AIRFLOW_LOCAL_CHIMERA:-$REPO/.venv/bin/chimera}"
GRACE_S="${AIRFLOW_LOCAL_GRACE_S:-20}"
AIRFLOW="$VENV/bin/airflow"
URL="http://127.0.0.1:$PORT"

for need in "$AIRFLOW" "$CHIMERA_CLI"; do
    if [[ ! -x "$need" ]]; then
        echo "airflow_local: $need not found; run 'make setup' first" >&2
        exit 1
    fi
done
if (($# == 0)) && (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    echo "airflow_local: port $PORT is in use (set AIRFLOW_LOCAL_PORT)" >&2
    exit 1
fi

mkdir -p "$HOME_DIR/logs"
HOME_DIR="$(cd "$HOME_DIR" && pwd)"

# Secrets of this local install, made once and kept (mode 600) in AIRFLOW_HOME.
secret() {  # secret FILE: print the file's content, creating it with a random token first
    if [[ ! -s "$1" ]]; then
        (umask 077 && "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(24))' >"$1")
    fi
    cat "$1"
}
JWT_SECRET="$(secret "$HOME_DIR/.jwt_secret")"
if [[ -n "${AIRFLOW_LOCAL_PASSWORD:-}" ]]; then
    PASSWORD="$AIRFLOW_LOCAL_PASSWORD"
else
    PASSWORD="$(secret "$HOME_DIR/.admin_password")"
fi
PASSWORDS_FILE="$HOME_DIR/simple_auth_manager_passwords.json.generated"
(umask 077 && ADMIN_PASSWORD="$PASSWORD" "$VENV/bin/python" -c \
    'import json, os, sys; json.dump({"admin": os.environ["ADMIN_PASSWORD"]}, sys.stdout)' \
    >"$PASSWORDS_FILE")

export AIRFLOW_HOME="$HOME_DIR"
export AIRFLOW__CORE__DAGS_FOLDER="$REPO/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$REPO/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__PARALLELISM=4
export AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG=2
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$HOME_DIR/airflow.db"
export AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$PASSWORDS_FILE"
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT="$PORT"
export AIRFLOW__API__WORKERS=1
export AIRFLOW__API__BASE_URL="$URL"
export AIRFLOW__API_AUTH__JWT_SECRET="$JWT_SECRET"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="$URL/execution/"
export AIRFLOW__LOGGING__BASE_LOG_FOLDER="$HOME_DIR/logs"
# Stage tasks call .venv's CLI (the two venvs cannot be merged; see the Makefile).
export CHIMERA_ORCHESTRATION__CHIMERA_COMMAND="[\"$CHIMERA_CLI\"]"
export LITELLM_LOCAL_MODEL_COST_MAP=True
# The DAG files import this repo's chimera_core (installed --no-deps in the Airflow venv).
export PYTHONPATH="$REPO/plugins${PYTHONPATH:+:$PYTHONPATH}"

echo "airflow_local: AIRFLOW_HOME=$HOME_DIR; migrating the metadata database" >&2
"$AIRFLOW" db migrate >"$HOME_DIR/logs/db-migrate.log" 2>&1 || {
    tail -n 30 "$HOME_DIR/logs/db-migrate.log" >&2
    exit 1
}

if (($# > 0)); then # one CLI command (see the top), not the components
    exec "$AIRFLOW" "$@"
fi

PIDS=()
PID_FILE="$HOME_DIR/components.pid"
: >"$PID_FILE"
STOPPING=0

stop_all() {
    [[ "$STOPPING" == 1 ]] && return
    STOPPING=1
    trap '' INT TERM
    echo "airflow_local: stopping ${#PIDS[@]} components"
    local pid waited=0
    for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    while ((waited < GRACE_S * 10)); do
        local alive=0
        for pid in "${PIDS[@]}"; do
            kill -0 -- "-$pid" 2>/dev/null && alive=1
        done
        ((alive == 0)) && break
        sleep 0.1
        waited=$((waited + 1))
    done
    for pid in "${PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
    rm -f "$PID_FILE"
    echo "airflow_local: stopped"
}
trap 'stop_all; exit 0' INT TERM
trap 'stop_all' EXIT

start() {  # start NAME ARGS...: one component in its own session and process group
    local name="$1"
    shift
    setsid "$AIRFLOW" "$@" >"$HOME_DIR/logs/$name.log" 2>&1 &
    PIDS+=("$!")
    echo "$!" >>"$PID_FILE"
    echo "airflow_local: $name started (pid $!, log $HOME_DIR/logs/$name.log)"
}

start api-server api-server --host 127.0.0.1 --port "$PORT" --workers 1
start scheduler scheduler --skip-serve-logs
start dag-processor dag-processor
start triggerer triggerer --skip-serve-logs

READY=0
for _ in $(seq 1 240); do
    if "$VENV/bin/python" - "$URL" <<'EOF' 2>/dev/null; then
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/api/v2/monitor/health", timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
        READY=1
        break
    fi
    for pid in "${PIDS[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "airflow_local: a component exited early; see $HOME_DIR/logs/" >&2
            exit 1
        fi
    done
    sleep 1
done
if ((READY == 0)); then
    echo "airflow_local: the api-server did not answer in 240 s; see $HOME_DIR/logs/" >&2
    exit 1
fi

cat <<EOF

  Airflow is up: $URL
  user: admin   password: $PASSWORD
  DAGs: chimera_training, chimera_evaluate (paused until you unpause them)
  logs: $HOME_DIR/logs/   stop: Ctrl-C

EOF
echo "airflow_local: ready" # the tests wait for this line

# Stay up while every component is; if one dies, stop the others.
while true; do
    for pid in "${PIDS[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "airflow_local: component pid $pid exited; see $HOME_DIR/logs/" >&2
            exit 1
        fi
    done
    sleep 2
done
