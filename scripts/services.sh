#!/usr/bin/env bash
# Private RabbitMQ + PostgreSQL instances for the imgidx test suite.
#
#   scripts/services.sh start  DIR   start both (installs missing packages); no-op if running
#   scripts/services.sh stop   DIR   stop both
#   scripts/services.sh status DIR   exit 0 iff both are up
#   scripts/services.sh env    DIR   print `export IMGIDX_TEST_...=...` lines (eval them)
#   scripts/services.sh rabbit-start DIR   start (or start again) RabbitMQ alone
#   scripts/services.sh rabbit-stop  DIR   stop it; its queues and messages stay in DIR
#
# rabbit-start/-stop give a test a node of its own that it may stop mid-job (a
# broker outage) without touching the shared one; ports are in DIR/state.env.
#
# Everything lives under DIR (logs, data, pid files, the chosen ports in
# DIR/state.env). Both servers listen on 127.0.0.1 only, on free ports chosen
# at the first start (never the defaults 5672/15672/5432/4369, so they can't
# clash with system services or with a second checkout's instances). The
# ports are kept across stop/start so exported URLs stay valid.
#
# Runs without systemd: the servers are plain background processes.
set -euo pipefail

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'services.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,13s/^# \{0,1\}//p' "$0" >&2
    exit 2
}

[[ $# -eq 2 ]] || usage
CMD=$1
mkdir -p "$2"
DIR=$(cd "$2" && pwd)
STATE=$DIR/state.env

START_TIMEOUT=${IMGIDX_SERVICE_TIMEOUT:-120}   # seconds to wait for each server

# ---------------------------------------------------------------------------
# helpers

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root to run '$*' (no sudo found)"; fi
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# True when a server could bind 127.0.0.1:$1, i.e. nothing listens on it on
# any address. SO_REUSEADDR as the servers use it: connections of a stopped
# server lingering in TIME_WAIT must not make its port look taken.
port_free() {
    if command -v python3 >/dev/null; then
        python3 - "$1" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
EOF
    elif port_open "$1"; then
        return 1
    fi
}

# A free port in 20000-29999: below the kernel's ephemeral range (32768+), so
# an outgoing connection won't grab it between now and the server's start.
# Sets the variable named $1 (not echoed: TAKEN must survive, so no subshell);
# ports already picked in this run (TAKEN) are skipped.
TAKEN=" "
pick_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 10000))
        [[ $TAKEN == *" $p "* ]] && continue
        if port_free "$p"; then TAKEN+="$p "; printf -v "$1" '%s' "$p"; return 0; fi
    done
    die "could not find a free TCP port"
}

# Wait until "$@" succeeds, or fail after $1 seconds. $2 is a pid that must
# stay alive meanwhile (0 = don't check), $3 a log to show on failure.
wait_for() {
    local timeout=$1 pid=$2 log=$3 what=$4; shift 4
    local deadline=$((SECONDS + timeout))
    until "$@"; do
        if [[ $pid != 0 ]] && ! kill -0 "$pid" 2>/dev/null; then
            printf '\n--- last lines of %s ---\n' "$log" >&2; tail -n 40 "$log" >&2 || true
            die "$what exited during startup (log above: $log)"
        fi
        if (( SECONDS >= deadline )); then
            printf '\n--- last lines of %s ---\n' "$log" >&2; tail -n 40 "$log" >&2 || true
            die "$what not ready after ${timeout}s (log above: $log)"
        fi
        sleep 0.5
    done
}

# ---------------------------------------------------------------------------
# locating / installing binaries

RABBIT_BIN=/usr/lib/rabbitmq/bin   # the real scripts, not Debian's /usr/sbin wrappers (see rabbit_start)
# shellcheck disable=SC2012  # plain version-numbered dirs
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

# The versioned server package (postgresql-15 on Debian 12) has the binaries
# without pulling in the `postgresql` metapackage's extras (contrib).
pg_package() {
    apt-cache depends postgresql 2>/dev/null \
        | sed -n 's/^ *Depends: \(postgresql-[0-9][0-9]*\)$/\1/p' | head -n 1
}

ensure_packages() {
    local want=()
    [[ -x $RABBIT_BIN/rabbitmq-server ]] || want+=(rabbitmq-server)
    command -v curl >/dev/null || want+=(curl)
    command -v openssl >/dev/null || want+=(openssl)
    # HEIC and AVIF decoding (loaded at run time by the workers; its tests need it).
    compgen -G '/usr/lib/*/libheif.so.1' >/dev/null || compgen -G '/usr/lib/libheif.so.1' >/dev/null || want+=(libheif1)
    # worker.preprocess = "fast"'s scaled JPEG decode (loaded at run time; its tests use it).
    compgen -G '/usr/lib/*/libturbojpeg.so.0' >/dev/null || compgen -G '/usr/lib/libturbojpeg.so.0' >/dev/null || want+=(libturbojpeg0)
    local need_pg=0
    [[ -n $(pg_bin) && -x $(pg_bin)/initdb ]] || need_pg=1
    command -v pg_isready >/dev/null || need_pg=1
    (( ${#want[@]} + need_pg )) || return 0

    command -v apt-get >/dev/null || die "missing ${want[*]} postgresql, and no apt-get to install them"
    export DEBIAN_FRONTEND=noninteractive
    # `apt-get update` only when there are no package lists yet; a stale list
    # (install fails) gets one retry after an update.
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        say "apt-get update"
        as_root apt-get update -qq
    fi
    if (( need_pg )); then want+=("$(pg_package)"); [[ ${want[-1]} ]] || want[-1]=postgresql; fi

    # Debian's postinst scripts would start system-wide rabbitmq/postgres
    # daemons (on 5672/5432, rabbit's epmd on 0.0.0.0:4369) that we don't
    # want; a policy-rc.d exiting 101 forbids that for the duration.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e $policy ]]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
        made_policy=1
    fi
    say "installing ${want[*]} (apt)"
    local ok=0
    as_root apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null && ok=1
    if (( ! ok )); then
        say "install failed; retrying after apt-get update"
        as_root apt-get update -qq
        as_root apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null && ok=1
    fi
    (( made_policy )) && as_root rm -f "$policy"
    (( ok )) || die "apt-get install ${want[*]} failed"
}

# ---------------------------------------------------------------------------
# state: ports etc. chosen at the first start, reused afterwards

# shellcheck disable=SC1090
load_state() { [[ -f $STATE ]] && . "$STATE"; }

new_state() {
    pick_port AMQP_PORT; pick_port AMQPS_PORT; pick_port MGMT_PORT; pick_port DIST_PORT
    pick_port EPMD_PORT; pick_port PG_PORT
    RABBIT_NODE="imgidx-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')@localhost"
    PG_ROOT=$(pg_root_dir)
    cat >"$STATE" <<EOF
# written by scripts/services.sh start; ports of this DIR's private servers
AMQP_PORT=$AMQP_PORT
AMQPS_PORT=$AMQPS_PORT
MGMT_PORT=$MGMT_PORT
DIST_PORT=$DIST_PORT
EPMD_PORT=$EPMD_PORT
PG_PORT=$PG_PORT
RABBIT_NODE=$RABBIT_NODE
PG_ROOT=$PG_ROOT
EOF
}

# ---------------------------------------------------------------------------
# RabbitMQ

rabbit_env() {
    local r=$DIR/rabbitmq
    # Our own (empty) env file, so /etc/rabbitmq/rabbitmq-env.conf can't
    # override anything set here.
    export RABBITMQ_CONF_ENV_FILE=$r/rabbitmq-env.conf
    export RABBITMQ_NODENAME=$RABBIT_NODE
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT=$AMQP_PORT
    export RABBITMQ_DIST_PORT=$DIST_PORT
    export RABBITMQ_CONFIG_FILE=$r/rabbitmq.conf
    export RABBITMQ_ENABLED_PLUGINS_FILE=$r/enabled_plugins
    export RABBITMQ_MNESIA_BASE=$r/mnesia
    export RABBITMQ_LOG_BASE=$r/log
    export RABBITMQ_PID_FILE=$r/rabbit.pid
    # A private epmd on its own port, loopback only, and the Erlang
    # distribution listener on loopback too (it defaults to 0.0.0.0).
    export ERL_EPMD_PORT=$EPMD_PORT
    export ERL_EPMD_ADDRESS=127.0.0.1
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    # The Erlang cookie is created in $HOME; the CLI tools must see the same one.
    export HOME=$r/home
}

rabbit_pid() {
    local f=$DIR/rabbitmq/rabbit.pid p
    [[ -s $f ]] && p=$(<"$f") && kill -0 "$p" 2>/dev/null && echo "$p"
}

rabbit_ready() {
    port_open "$AMQP_PORT" &&
        curl -fsS -o /dev/null -m 5 -u guest:guest "http://127.0.0.1:$MGMT_PORT/api/overview" 2>/dev/null
}

rabbit_start() {
    local r=$DIR/rabbitmq
    local pid; pid=$(rabbit_pid) || true
    if [[ -n $pid ]]; then
        say "RabbitMQ already running on 127.0.0.1:$AMQP_PORT"
        wait_for "$START_TIMEOUT" "$pid" "$r/server.out" RabbitMQ rabbit_ready
        return 0
    fi
    mkdir -p "$r/home" "$r/log" "$r/mnesia"
    : >"$r/rabbitmq-env.conf"
    test_tls
    cat >"$r/rabbitmq.conf" <<EOF
# generated by scripts/services.sh
listeners.tcp.1 = 127.0.0.1:$AMQP_PORT
listeners.ssl.1 = 127.0.0.1:$AMQPS_PORT
ssl_options.cacertfile = $DIR/tls/ca.pem
ssl_options.certfile = $DIR/tls/server.pem
ssl_options.keyfile = $DIR/tls/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
management.tcp.ip = 127.0.0.1
management.tcp.port = $MGMT_PORT
# The default 50MB free-disk alarm would block publishers (tests hang) on
# a nearly full CI disk; a test broker stores next to nothing.
disk_free_limit.absolute = 10MB
EOF
    # Run in a subshell so the rabbit/Erlang env vars don't leak into this script.
    (
        rabbit_env
        # Writes enabled_plugins without contacting a node.
        "$RABBIT_BIN/rabbitmq-plugins" enable --offline rabbitmq_management >"$r/plugins.out" 2>&1 \
            || { cat "$r/plugins.out" >&2; die "rabbitmq-plugins enable failed"; }
        say "starting RabbitMQ on 127.0.0.1:$AMQP_PORT (amqps $AMQPS_PORT, management 127.0.0.1:$MGMT_PORT)"
        # Debian's /usr/sbin/rabbitmq-server wrapper re-execs as the rabbitmq
        # user with `cd /var/lib/rabbitmq` and the system cookie; calling the
        # real script directly runs the node as the current user (root is
        # fine) with all state under DIR. setsid + redirects: the server must
        # not hold the caller's terminal or stdout pipe (CI would hang).
        rm -f "$RABBITMQ_PID_FILE"
        setsid "$RABBIT_BIN/rabbitmq-server" >"$r/server.out" 2>&1 </dev/null &
        echo $! >"$r/launcher.pid"
    )
    # The launcher (the rabbitmq-server script, parent of the Erlang VM)
    # lives as long as the node: if it exits before the node is ready, the
    # start failed and wait_for shows the log.
    wait_for "$START_TIMEOUT" "$(<"$r/launcher.pid")" "$r/server.out" RabbitMQ rabbit_ready
    say "RabbitMQ ready (node $RABBIT_NODE)"
}

rabbit_stop() {
    local pid; pid=$(rabbit_pid) || true
    if [[ -n $pid ]]; then
        say "stopping RabbitMQ (pid $pid)"
        # `rabbitmqctl stop PIDFILE` shuts the node down cleanly and waits
        # for the OS process to exit; fall back to signals if it hangs.
        ( rabbit_env; timeout 60 "$RABBIT_BIN/rabbitmqctl" stop "$RABBITMQ_PID_FILE" >/dev/null 2>&1 ) || true
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    # The node started its own epmd (on our private port); stop it too.
    if port_open "$EPMD_PORT"; then
        ( rabbit_env; epmd -kill >/dev/null 2>&1 ) || true
    fi
    rm -f "$DIR/rabbitmq/rabbit.pid"
}

# ---------------------------------------------------------------------------
# PostgreSQL

# postgres refuses to run as root: as root we run it as the `postgres` OS user.
PG_USER=$(id -un)
if [[ $(id -u) -eq 0 ]]; then PG_USER=postgres; fi

as_pg() {
    if [[ $PG_USER == "$(id -un)" ]]; then "$@"
    else runuser -u "$PG_USER" -- "$@"; fi
}

ensure_pg_user() {
    [[ $PG_USER == postgres && $(id -u) -eq 0 ]] || return 0
    id postgres >/dev/null 2>&1 && return 0
    say "creating OS user postgres"
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin postgres
}

# DIR/pg, unless the postgres user can't reach DIR (e.g. a checkout under
# /root, mode 700): then a per-DIR directory under /tmp.
pg_root_dir() {
    ensure_pg_user
    if [[ $PG_USER == "$(id -un)" ]] || runuser -u "$PG_USER" -- test -x "$DIR" 2>/dev/null; then
        echo "$DIR/pg"
    else
        echo "${TMPDIR:-/tmp}/imgidx-pg-$(printf '%s' "$DIR" | cksum | cut -d' ' -f1)"
    fi
}

pg_ready() { "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -d postgres -U postgres; }

pg_running() { [[ -f $PG_ROOT/data/postmaster.pid ]] && as_pg "$(pg_bin)/pg_ctl" -D "$PG_ROOT/data" status >/dev/null 2>&1; }

# A throwaway CA and a server certificate for 127.0.0.1/localhost, so TLS to
# PostgreSQL (jobs.tls_ca_file) and RabbitMQ (amqps, broker.tls_ca_file) is
# tested against real servers.
test_tls() {
    local d=$DIR/tls
    [[ -f $d/server.pem && -f $d/server.key && -f $d/ca.pem ]] && return 0
    command -v openssl >/dev/null || die "openssl is needed to make the test servers' TLS certificate"
    say "making a test CA and server certificate in $d"
    mkdir -p "$d"
    (
        cd "$d"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=imgidx test CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -keyout ca.key -out ca.pem
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr
        printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
            "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >ext.cnf
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile ext.cnf -out server.pem
    ) >"$DIR/tls.log" 2>&1 || { tail -n 20 "$DIR/tls.log" >&2; die "making the test certificate failed"; }
    chmod 600 "$d/server.key" "$d/ca.key"
}

# PostgreSQL wants its key owned by its own user, mode 0600.
pg_tls() {
    test_tls
    mkdir -p "$PG_ROOT/tls"
    cp "$DIR/tls/server.pem" "$DIR/tls/server.key" "$PG_ROOT/tls/"
    chmod 600 "$PG_ROOT/tls/server.key"
    [[ $PG_USER == "$(id -un)" ]] || chown -R "$PG_USER:" "$PG_ROOT/tls"
}

pg_start() {
    local bin; bin=$(pg_bin)
    if pg_running && pg_ready; then
        say "PostgreSQL already running on 127.0.0.1:$PG_PORT"
        return 0
    fi
    ensure_pg_user
    mkdir -p "$PG_ROOT/sock"
    [[ $PG_USER == "$(id -un)" ]] || chown -R "$PG_USER:" "$PG_ROOT"
    if [[ ! -f $PG_ROOT/data/PG_VERSION ]]; then
        say "initdb $PG_ROOT/data"
        rm -rf "$PG_ROOT/data"
        # trust auth: a throwaway test server reachable only over loopback.
        as_pg "$bin/initdb" -D "$PG_ROOT/data" -U postgres --auth=trust -E UTF8 --no-locale \
            >"$PG_ROOT/initdb.log" 2>&1 \
            || { tail -n 30 "$PG_ROOT/initdb.log" >&2; die "initdb failed (log: $PG_ROOT/initdb.log)"; }
        # Durability is pointless for a test server; speed matters.
        cat >>"$PG_ROOT/data/postgresql.conf" <<EOF

# added by scripts/services.sh (test server)
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
EOF
    fi
    pg_tls
    say "starting PostgreSQL on 127.0.0.1:$PG_PORT (TLS offered, not required)"
    # -h/-p/-k on the command line: loopback TCP only, socket under PG_ROOT
    # (not /var/run/postgresql, which may not exist or be someone else's).
    as_pg "$bin/pg_ctl" -D "$PG_ROOT/data" -l "$PG_ROOT/postgres.log" -w -t "$START_TIMEOUT" \
        -o "-h 127.0.0.1 -p $PG_PORT -k $PG_ROOT/sock -c ssl=on -c ssl_cert_file=$PG_ROOT/tls/server.pem -c ssl_key_file=$PG_ROOT/tls/server.key" \
        start </dev/null >/dev/null 2>&1 \
        || { tail -n 30 "$PG_ROOT/postgres.log" >&2 || true; die "PostgreSQL failed to start (log: $PG_ROOT/postgres.log)"; }
    wait_for 30 0 "$PG_ROOT/postgres.log" PostgreSQL pg_ready
    say "PostgreSQL ready"
}

pg_stop() {
    [[ -n ${PG_ROOT:-} && -d $PG_ROOT/data ]] || return 0
    if pg_running; then
        say "stopping PostgreSQL"
        as_pg "$(pg_bin)/pg_ctl" -D "$PG_ROOT/data" -m fast -w -t 60 stop >/dev/null 2>&1 \
            || as_pg "$(pg_bin)/pg_ctl" -D "$PG_ROOT/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
}

# ---------------------------------------------------------------------------

# After a stop, the recorded ports are reused if nothing else took them.
ports_still_ours() {
    if [[ -z $(rabbit_pid) ]]; then
        rabbit_stop   # clears a stale epmd of ours, if the node died uncleanly
        port_free "$AMQP_PORT" && port_free "$AMQPS_PORT" && port_free "$MGMT_PORT" && port_free "$DIST_PORT" \
            && port_free "$EPMD_PORT" || return 1
    fi
    pg_running || port_free "$PG_PORT"
}

case $CMD in
start)
    ensure_packages
    load_state || true
    if [[ -z ${AMQP_PORT:-} || -z ${AMQPS_PORT:-} ]]; then
        # No state yet, or state from before the TLS listener: stop what it started.
        [[ -n ${AMQP_PORT:-} ]] && { rabbit_stop; pg_stop; }
        new_state
    elif ! ports_still_ours; then
        say "previously used ports are taken now; choosing new ones"
        pg_stop
        new_state
    fi
    rabbit_start
    pg_start
    ;;
stop)
    if load_state; then
        rabbit_stop
        pg_stop
    else
        say "nothing to stop in $DIR"
    fi
    ;;
rabbit-start)
    ensure_packages
    # Started again on the same ports, or clients could not come back to it.
    load_state || new_state
    rabbit_start
    ;;
rabbit-stop)
    if load_state; then rabbit_stop; else say "nothing to stop in $DIR"; fi
    ;;
status)
    load_state || die "not started (no $STATE)"
    rc=0
    if [[ -n $(rabbit_pid) ]] && rabbit_ready; then echo "rabbitmq: up 127.0.0.1:$AMQP_PORT"; else echo "rabbitmq: down"; rc=1; fi
    if pg_running && pg_ready; then echo "postgres: up 127.0.0.1:$PG_PORT"; else echo "postgres: down"; rc=1; fi
    exit $rc
    ;;
env)
    load_state || die "not started (no $STATE); run: $0 start $DIR"
    echo "export IMGIDX_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f"
    echo "export IMGIDX_TEST_RABBIT_MGMT_URL=http://127.0.0.1:$MGMT_PORT"
    echo "export IMGIDX_TEST_PG_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres"
    echo "export IMGIDX_TEST_AMQPS_URL=amqps://guest:guest@127.0.0.1:$AMQPS_PORT/%2f"
    echo "export IMGIDX_TEST_TLS_CA_FILE=$DIR/tls/ca.pem"
    ;;
*) usage ;;
esac
