#!/usr/bin/env bash
# THE test command for imgidx. On a fresh Debian machine it installs what is
# missing, starts private RabbitMQ + PostgreSQL servers (loopback only, under
# <repo>/.run), runs `cargo test --workspace` against them, and stops them.
#
#   tests/run.sh [--keep-services] [cargo test args...]
#   tests/run.sh -p imgidx-shared                  # one crate
#   tests/run.sh -- --nocapture                    # args for the test binaries
#   QDRANT_URL=http://127.0.0.1:6334 tests/run.sh  # also the Qdrant-server tests
#
# --keep-services (or KEEP_SERVICES=1) leaves the servers running afterwards;
# a later run reuses them (same ports), and stop them with
# `scripts/services.sh stop .run`. Servers that were already running when
# this script started are left running too.
# IMGIDX_RUN_DIR overrides the state directory (default <repo>/.run).
# Exit status: cargo's (or non-zero if setup failed).
set -euo pipefail

START=$SECONDS
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

say() { printf '==> %s\n' "$*" >&2; }

KEEP=${KEEP_SERVICES:-0}
[[ $KEEP == 1 || $KEEP == true ]] && KEEP=1 || KEEP=0
CARGO_ARGS=()
for arg in "$@"; do
    # Only our own flag is taken out; everything else goes to cargo as is.
    if [[ $arg == --keep-services ]]; then KEEP=1; else CARGO_ARGS+=("$arg"); fi
done

RUN_DIR=${IMGIDX_RUN_DIR:-$REPO/.run}

# rustup installs put cargo in ~/.cargo/bin, which a non-login shell (CI)
# may not have on PATH.
if ! command -v cargo >/dev/null && [[ -f $HOME/.cargo/env ]]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || { echo "tests/run.sh: error: cargo not found" >&2; exit 1; }

# --- ONNX Runtime ----------------------------------------------------------------
say "ONNX Runtime (scripts/setup-ort.sh)"
ORT_DYLIB_PATH=$(scripts/setup-ort.sh)
export ORT_DYLIB_PATH
say "ORT_DYLIB_PATH=$ORT_DYLIB_PATH"

# --- schemathesis: fuzzes the API from its OpenAPI document (services/imgidx/tests/e2e/openapi.rs)
SCHEMATHESIS_VERSION=4.32.5
if ! "$REPO/.venv/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
    say "pip install schemathesis==$SCHEMATHESIS_VERSION (into .venv)"
    "$REPO/.venv/bin/python" -m pip install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
export IMGIDX_SCHEMATHESIS=$REPO/.venv/bin/schemathesis

# --- moto: a real S3-protocol server on loopback for the object-store tests (services/imgidx/tests/e2e/moto.rs)
MOTO_VERSION=5.2.5
if ! "$REPO/.venv/bin/python" -m pip show moto 2>/dev/null | grep -qx "Version: $MOTO_VERSION" || [[ ! -x $REPO/.venv/bin/moto_server ]]; then
    say "pip install moto[server]==$MOTO_VERSION (into .venv)"
    "$REPO/.venv/bin/python" -m pip install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi
export IMGIDX_MOTO_SERVER=$REPO/.venv/bin/moto_server

# --- websockets: seed 004's own Python examples run against the server (services/imgidx/tests/e2e/batches.rs;
# they use requests too, which schemathesis brings)
WEBSOCKETS_VERSION=15.0.1
if ! "$REPO/.venv/bin/python" -c "import websockets, requests; assert websockets.__version__ == '$WEBSOCKETS_VERSION'" 2>/dev/null; then
    say "pip install websockets==$WEBSOCKETS_VERSION requests (into .venv)"
    "$REPO/.venv/bin/python" -m pip install -q --disable-pip-version-check "websockets==$WEBSOCKETS_VERSION" requests
fi
export IMGIDX_SEED_PYTHON=$REPO/.venv/bin/python

# --- RabbitMQ + PostgreSQL ------------------------------------------------------------
# shellcheck disable=SC2317  # invoked via trap
finish() {
    local rc=$?
    if (( STOP_SERVICES )); then
        scripts/services.sh stop "$RUN_DIR" || say "warning: stopping services failed"
    elif [[ -f $RUN_DIR/state.env ]]; then
        say "services left running; stop them with: scripts/services.sh stop $RUN_DIR"
    fi
    say "total time: $((SECONDS - START))s (exit status $rc)"
    exit "$rc"
}
# Servers we find already running belong to whoever started them.
STOP_SERVICES=0
if (( ! KEEP )) && ! scripts/services.sh status "$RUN_DIR" >/dev/null 2>&1; then
    STOP_SERVICES=1
fi
trap finish EXIT
# Make Ctrl-C / a CI kill go through the EXIT trap (which stops the servers).
trap 'exit 130' INT
trap 'exit 143' TERM

scripts/services.sh start "$RUN_DIR"
eval "$(scripts/services.sh env "$RUN_DIR")"
export IMGIDX_REQUIRE_SERVICES=1   # tests needing the servers fail instead of skipping
say "IMGIDX_TEST_AMQP_URL=$IMGIDX_TEST_AMQP_URL"
say "IMGIDX_TEST_RABBIT_MGMT_URL=$IMGIDX_TEST_RABBIT_MGMT_URL"
say "IMGIDX_TEST_PG_URL=$IMGIDX_TEST_PG_URL"
if [[ -n ${QDRANT_URL:-} ]]; then say "QDRANT_URL=$QDRANT_URL (Qdrant-server tests enabled)"; fi

# --- the tests ---------------------------------------------------------------------
say "cargo test --workspace ${CARGO_ARGS[*]}"
set +e
cargo test --workspace "${CARGO_ARGS[@]}"
status=$?
set -e
exit "$status"
