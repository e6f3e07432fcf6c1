#!/usr/bin/env bash
# scripts/services.sh — local test services for Seamline: a throwaway PostgreSQL cluster, a real
# single-node OpenSearch 2.19 server and a real single-node Kafka 4.4 broker (KRaft), all bound to
# 127.0.0.1 only, all state under one directory.
#
#   scripts/services.sh up [SERVICE...]      start them (idempotent; builds/installs what is missing),
#                               wait until healthy, then print the export lines:  eval "$(scripts/services.sh up)"
#   scripts/services.sh env     print the export lines without starting anything
#   scripts/services.sh status [SERVICE...]  one line per service
#   scripts/services.sh down [SERVICE...]    stop them (idempotent)
#   SERVICE: postgres, opensearch, kafka, debezium (default: all)
#
# Prints (stdout; all progress goes to stderr):
#   export SEAMLINE_PG_DSN='postgresql://seamline@127.0.0.1:25432/seamline'
#   export SEAMLINE_OPENSEARCH_URL='http://127.0.0.1:29200'
#   export SEAMLINE_KAFKA_BOOTSTRAP='127.0.0.1:29092'
#   export SEAMLINE_CDC_TOPIC_PREFIX='seamline.cdc'     (tables of schema cdc stream to seamline.cdc.<table>)
#
# Inputs (environment):
#   SEAMLINE_SERVICES_DIR  state dir (default <repo>/.services): pg/ (cluster, log), opensearch/ (data, logs, pid)
#   SEAMLINE_PG_PORT       Postgres port (default 25432). Every default port here and in k8s.sh lies below
#                          32768, outside Linux's ephemeral range, so an outgoing connection's local port
#                          can never hold one of them when a service starts
#   SEAMLINE_OS_PORT       OpenSearch HTTP port (default 29200); transport port is SEAMLINE_OS_PORT+100
#   SEAMLINE_PG_LOCALE     cluster locale (default en_US.UTF-8; generated with locale-gen if missing —
#                          tests need a non-C collation, C.UTF-8 is only a last-resort fallback)
#   SEAMLINE_KAFKA_PORT    Kafka broker port (default 29092); the KRaft controller listens on SEAMLINE_KAFKA_PORT+1
#   SEAMLINE_CDC_SCHEMA    the Postgres schema Debezium captures (default cdc)
#   SEAMLINE_JAVA          java binary for OpenSearch, Kafka and Debezium (default: java, must be 17+)
#
# Postgres: Debian's postgresql package (apt-get installed if no initdb), run as the postgres user,
# trust auth, superuser role "seamline" owning database "seamline", fsync/full_page_writes off (throwaway),
# wal_level=logical (CDC: Debezium and replication-slot freshness need it).
# OpenSearch: services/opensearch (Maven: org.opensearch:opensearch + netty4, analysis-common, mapper-extras, reindex
# modules, run in-process by SeamlineOpenSearch.java), no security plugin, heap -Xms512m -Xmx1g.
# Kafka: services/kafka (Maven: org.apache.kafka:kafka_2.13 + kafka-tools 4.4.0 + log4j-slf4j-impl, jars
# copied to target/lib), one KRaft node acting as broker and controller, PLAINTEXT, replication factor 1
# for the internal topics, no topic auto-creation, heap -Xms256m -Xmx768m.
# Debezium: services/debezium (Maven: io.debezium:debezium-embedded + debezium-connector-postgres 3.6.1,
# run by SeamlineDebezium.java): every table of schema SEAMLINE_CDC_SCHEMA (default cdc) streams through
# slot and publication seamline_cdc (pgoutput, decimal.handling.mode=string, JSON without schemas) to
# topics seamline.<schema>.<table>, created on first use; offsets in .services/debezium/offsets.dat.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${SEAMLINE_SERVICES_DIR:-$REPO/.services}"
PG_PORT="${SEAMLINE_PG_PORT:-25432}"
OS_PORT="${SEAMLINE_OS_PORT:-29200}"
OS_TPORT="$((OS_PORT + 100))"
PG_LOCALE="${SEAMLINE_PG_LOCALE:-en_US.UTF-8}"
JAVA="${SEAMLINE_JAVA:-java}"
PG_WAIT=60     # seconds
OS_WAIT=180    # seconds
OS_SRC="$REPO/services/opensearch"
OS_MAIN="dev.seamline.services.SeamlineOpenSearch"
KAFKA_PORT="${SEAMLINE_KAFKA_PORT:-29092}"
KAFKA_CPORT="$((KAFKA_PORT + 1))"
KAFKA_WAIT=90  # seconds
KAFKA_SRC="$REPO/services/kafka"
KAFKA_MAIN="kafka.Kafka"
KAFKA_BOOTSTRAP="127.0.0.1:${KAFKA_PORT}"
DBZ_SRC="$REPO/services/debezium"
DBZ_MAIN="dev.seamline.services.SeamlineDebezium"
DBZ_WAIT=120  # seconds
CDC_SCHEMA="${SEAMLINE_CDC_SCHEMA:-cdc}"
CDC_SLOT="seamline_cdc"     # the replication slot and the publication
DBZ_HEARTBEAT_TABLE="seamline_heartbeat"  # in the captured schema: keeps the idle slot advancing
DBZ_HEARTBEAT_MS=10000
CDC_PREFIX="seamline"       # topics: seamline.<schema>.<table>

PG_DSN="postgresql://seamline@127.0.0.1:${PG_PORT}/seamline"
OS_URL="http://127.0.0.1:${OS_PORT}"

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: ERROR: %s\n' "$*" >&2; exit 1; }
tail_log() { # file
    if [[ -f "$1" ]]; then
        printf -- '----- last lines of %s -----\n' "$1" >&2
        tail -n 40 "$1" >&2 || true
        printf -- '-----\n' >&2
    fi
}

print_env() {
    printf "export SEAMLINE_PG_DSN='%s'\n" "$PG_DSN"
    printf "export SEAMLINE_OPENSEARCH_URL='%s'\n" "$OS_URL"
    printf "export SEAMLINE_KAFKA_BOOTSTRAP='%s'\n" "$KAFKA_BOOTSTRAP"
    printf "export SEAMLINE_CDC_TOPIC_PREFIX='%s.%s'\n" "$CDC_PREFIX" "$CDC_SCHEMA"
}

port_open() { # port -> 0 if something accepts TCP connections on 127.0.0.1:port
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

as_pg() { runuser -u postgres -- "$@"; }

apt_install() {
    log "apt-get install -y $*"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# ----------------------------------------------------------------------------------------- postgres

PG_DIR="$STATE/pg"          # may be a symlink to a dir the postgres user can reach (see pg_prepare_dir)
PG_BIN=""

pg_find_bin() {
    local d
    PG_BIN=""
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then PG_BIN="$d"; return 0; fi
    done
    return 1
}

pg_real_dir() { readlink -f "$PG_DIR" 2>/dev/null || printf '%s' "$PG_DIR"; }

pg_pid() { # pid of our postmaster, if running
    local data pid
    data="$(pg_real_dir)/data"
    [[ -f "$data/postmaster.pid" ]] || return 1
    pid="$(head -n1 "$data/postmaster.pid" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    grep -q postgres "/proc/$pid/comm" 2>/dev/null || return 1
    printf '%s' "$pid"
}

PG_ADMIN_DSN="postgresql://seamline@127.0.0.1:${PG_PORT}/postgres"
pg_alive() { # server answers queries (database seamline may not exist yet)
    psql "$PG_ADMIN_DSN" -XtAqc 'select 1' >/dev/null 2>&1
}
pg_healthy() {
    psql "$PG_DSN" -XtAqc 'select 1' >/dev/null 2>&1
}

pg_ensure_locale() {
    local want="$PG_LOCALE" norm
    norm="$(printf '%s' "$want" | tr 'A-Z' 'a-z' | sed 's/utf-8/utf8/')"
    if locale -a 2>/dev/null | tr 'A-Z' 'a-z' | grep -qx "$norm"; then return 0; fi
    log "locale $want not generated; generating it"
    if ! command -v locale-gen >/dev/null 2>&1 || [[ ! -d /usr/share/i18n/locales ]]; then
        apt_install locales || true
    fi
    if command -v locale-gen >/dev/null 2>&1; then
        local charset="${want#*.}"
        if ! grep -qE "^[[:space:]]*${want//./\\.}[[:space:]]" /etc/locale.gen 2>/dev/null; then
            if grep -qE "^#[[:space:]]*${want//./\\.}[[:space:]]" /etc/locale.gen 2>/dev/null; then
                sed -i -E "s/^#[[:space:]]*(${want//./\\.}[[:space:]].*)$/\1/" /etc/locale.gen
            else
                printf '%s %s\n' "$want" "$charset" >>/etc/locale.gen
            fi
        fi
        locale-gen >&2 || true
    fi
    if locale -a 2>/dev/null | tr 'A-Z' 'a-z' | grep -qx "$norm"; then return 0; fi
    log "WARNING: could not generate $want; falling back to C.UTF-8 (tests needing a non-C collation may fail)"
    PG_LOCALE="C.UTF-8"
}

pg_prepare_dir() {
    # The postgres user must be able to reach the cluster directory. If the state dir is under a
    # directory it cannot traverse (e.g. /root), keep the cluster in /var/tmp and link it from the state dir.
    mkdir -p "$STATE"
    if [[ -L "$PG_DIR" || -d "$PG_DIR" ]]; then
        mkdir -p "$(pg_real_dir)"
    elif as_pg test -x "$STATE"; then
        mkdir -p "$PG_DIR"
    else
        local alt
        alt="/var/tmp/seamline-pg-$(printf '%s' "$STATE" | sha1sum | cut -c1-12)"
        log "postgres user cannot reach $STATE; keeping the cluster in $alt"
        mkdir -p "$alt"
        ln -s "$alt" "$PG_DIR"
    fi
    chown postgres:postgres "$(pg_real_dir)"
    chmod 700 "$(pg_real_dir)"
}

pg_init() {
    local dir data
    dir="$(pg_real_dir)"
    data="$dir/data"
    [[ -f "$data/PG_VERSION" ]] && return 0
    pg_ensure_locale
    log "initdb (locale $PG_LOCALE) in $data"
    rm -rf "$data"
    as_pg "$PG_BIN/initdb" -D "$data" --username=seamline --auth=trust --encoding=UTF8 \
        --locale="$PG_LOCALE" >"$dir/initdb.log" 2>&1 || { tail_log "$dir/initdb.log"; die "postgres: initdb failed"; }
    mkdir -p "$dir/run" && chown postgres:postgres "$dir/run"
    cat >>"$data/postgresql.conf" <<EOF

# ---- seamline throwaway test cluster (scripts/services.sh) ----
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/run'
max_connections = 100
shared_buffers = 512MB
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
log_min_messages = warning
EOF
    cat >"$data/pg_hba.conf" <<'EOF'
# seamline throwaway test cluster: trust, loopback and local socket only
local   all   all                 trust
host    all   all   127.0.0.1/32  trust
EOF
}

pg_up() {
    if ! pg_find_bin; then
        apt_install postgresql
        pg_find_bin || die "postgres: no initdb found under /usr/lib/postgresql/*/bin even after apt-get install postgresql"
    fi
    pg_prepare_dir
    pg_init
    local dir data pid
    dir="$(pg_real_dir)"
    data="$dir/data"
    if pid="$(pg_pid)"; then
        if pg_alive; then
            log "postgres: already up (pid $pid, port $PG_PORT)"
            pg_ensure_db
            return 0
        fi
        log "postgres: running (pid $pid) but not answering on port $PG_PORT; restarting it"
        as_pg "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t 30 stop >&2 || true
    fi
    if port_open "$PG_PORT"; then
        die "postgres: port 127.0.0.1:$PG_PORT is already taken by another process (set SEAMLINE_PG_PORT to use another port)"
    fi
    log "postgres: starting $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"
    if ! as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$dir/postgres.log" -o "-p $PG_PORT -c wal_level=logical -c max_replication_slots=20 -c max_wal_senders=20" -w -t "$PG_WAIT" start >/dev/null 2>&1 9>&-; then
        tail_log "$dir/postgres.log"
        die "postgres: did not start within ${PG_WAIT}s on 127.0.0.1:$PG_PORT (log: $dir/postgres.log)"
    fi
    local i
    for ((i = 0; i < PG_WAIT; i++)); do
        pg_alive && break
        sleep 1
    done
    pg_alive || { tail_log "$dir/postgres.log"; die "postgres: started but not answering queries on 127.0.0.1:$PG_PORT"; }
    pg_ensure_db
    pg_healthy || { tail_log "$dir/postgres.log"; die "postgres: database seamline not reachable at $PG_DSN"; }
    log "postgres: up (pid $(pg_pid || echo '?'), port $PG_PORT, lc_collate $(psql "$PG_DSN" -XtAc 'show lc_collate'))"
}

pg_ensure_db() {
    if [[ "$(psql "$PG_ADMIN_DSN" -XtAqc "select 1 from pg_database where datname = 'seamline'")" != "1" ]]; then
        log "postgres: creating database seamline"
        psql "$PG_ADMIN_DSN" -XqAc "create database seamline owner seamline" >&2
    fi
}

pg_down() {
    local pid
    if ! pid="$(pg_pid)"; then
        log "postgres: not running"
        return 0
    fi
    pg_find_bin || die "postgres: running (pid $pid) but no pg_ctl found"
    log "postgres: stopping (pid $pid)"
    as_pg "$PG_BIN/pg_ctl" -D "$(pg_real_dir)/data" -m fast -w -t 60 stop >/dev/null 2>&1 \
        || { kill -TERM "$pid" 2>/dev/null || true; }
    local i
    for ((i = 0; i < 60; i++)); do
        kill -0 "$pid" 2>/dev/null || { log "postgres: stopped"; return 0; }
        sleep 1
    done
    die "postgres: pid $pid did not stop within 60s"
}

pg_status() {
    local pid
    if pid="$(pg_pid)"; then
        if pg_healthy; then
            printf 'postgres    up    pid %s  %s  server %s  lc_collate %s  data %s\n' "$pid" "$PG_DSN" \
                "$(psql "$PG_DSN" -XtAc 'show server_version')" "$(psql "$PG_DSN" -XtAc 'show lc_collate')" "$(pg_real_dir)/data"
        else
            printf 'postgres    unhealthy  pid %s running but not answering at %s\n' "$pid" "$PG_DSN"
        fi
    else
        printf 'postgres    down  (%s)\n' "$PG_DSN"
    fi
}

# --------------------------------------------------------------------------------------- opensearch

OS_DIR="$STATE/opensearch"
OS_PIDFILE="$OS_DIR/opensearch.pid"
OS_STDOUT="$OS_DIR/stdout.log"
OS_LOG="$OS_DIR/logs/opensearch.log"

os_pid() {
    local pid
    [[ -f "$OS_PIDFILE" ]] || return 1
    pid="$(cat "$OS_PIDFILE" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$OS_MAIN" || return 1
    printf '%s' "$pid"
}

os_health() { # prints the cluster status (green/yellow/red) of OUR cluster, fails otherwise
    local body
    body="$(curl -fsS --max-time 5 "$OS_URL/_cluster/health" 2>/dev/null)" || return 1
    [[ "$body" == *'"cluster_name":"seamline-test"'* ]] || return 1
    sed -E 's/.*"status":"([a-z]+)".*/\1/' <<<"$body"
}

os_healthy() {
    local s
    s="$(os_health)" || return 1
    [[ "$s" == green || "$s" == yellow ]]
}

os_build() {
    local jar="$OS_SRC/target/seamline-opensearch-0.1.0.jar"
    if [[ -f "$jar" && -d "$OS_SRC/target/lib" ]] \
        && [[ -z "$(find "$OS_SRC/pom.xml" "$OS_SRC/src" -newer "$jar" -type f 2>/dev/null | head -n1)" ]]; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || apt_install maven
    log "opensearch: building services/opensearch (mvn -q -B package; first time downloads ~50 MB to ~/.m2)"
    local t0=$SECONDS
    if ! (cd "$OS_SRC" && mvn -q -B package >"$STATE/opensearch-build.log" 2>&1); then
        tail_log "$STATE/opensearch-build.log"
        die "opensearch: maven build failed (log: $STATE/opensearch-build.log)"
    fi
    log "opensearch: built in $((SECONDS - t0))s"
}

os_check_java() {
    command -v "$JAVA" >/dev/null 2>&1 || die "opensearch: no java found (set SEAMLINE_JAVA to a Java 17+ binary)"
    local v
    v="$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -nE 's/^ *java\.specification\.version = ([0-9]+).*/\1/p')" || true
    [[ -n "$v" ]] || die "opensearch: '$JAVA -version' failed: $("$JAVA" -version 2>&1 | head -n3 | tr '\n' ' ')"
    [[ "$v" -ge 17 ]] || die "opensearch: $JAVA is Java $v; OpenSearch 2.19 here needs Java 17+ (set SEAMLINE_JAVA)"
}

os_write_config() {
    mkdir -p "$OS_DIR/home/config" "$OS_DIR/data" "$OS_DIR/logs" "$OS_DIR/tmp"
    cat >"$OS_DIR/log4j2.properties" <<EOF
# written by scripts/services.sh
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = $OS_LOG
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d{ISO8601}][%-5p][%-25c{1.}] %marker%m%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.deprecation.name = org.opensearch.deprecation
logger.deprecation.level = error
EOF
}

os_up() {
    local pid
    if pid="$(os_pid)"; then
        if os_healthy; then
            log "opensearch: already up (pid $pid, port $OS_PORT)"
            return 0
        fi
        # running: either still starting, or on another port. Give a starting node a chance first.
        log "opensearch: running (pid $pid) but not healthy on port $OS_PORT yet; waiting"
        if ! os_wait "$pid" 60 quiet; then
            log "opensearch: restarting pid $pid"
            os_down
        else
            return 0
        fi
    fi
    if port_open "$OS_PORT"; then
        die "opensearch: port 127.0.0.1:$OS_PORT is already taken by another process (set SEAMLINE_OS_PORT to use another port)"
    fi
    if port_open "$OS_TPORT"; then
        die "opensearch: transport port 127.0.0.1:$OS_TPORT (SEAMLINE_OS_PORT+100) is already taken by another process"
    fi
    os_check_java
    os_build
    os_write_config
    : >"$OS_STDOUT"
    log "opensearch: starting on 127.0.0.1:$OS_PORT"
    local cp="$OS_SRC/target/seamline-opensearch-0.1.0.jar:$OS_SRC/target/lib/*"
    # Flags follow OpenSearch 2.19's distribution jvm.options where they matter in-process.
    setsid nohup "$JAVA" \
        -Xms512m -Xmx1g -XX:+UseG1GC -XX:-OmitStackTraceInFastThrow \
        -Dfile.encoding=UTF-8 -Djava.locale.providers=SPI,COMPAT -Djna.nosys=true \
        -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true -Dio.netty.recycler.maxCapacityPerThread=0 \
        -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true -Dlog4j2.formatMsgNoLookups=true \
        -Dlog4j.configurationFile="$OS_DIR/log4j2.properties" \
        -Djava.io.tmpdir="$OS_DIR/tmp" \
        -Dopensearch.path.home="$OS_DIR/home" -Dopensearch.path.conf="$OS_DIR/home/config" \
        -Dseamline.os.home="$OS_DIR/home" -Dseamline.os.data="$OS_DIR/data" -Dseamline.os.logs="$OS_DIR/logs" \
        -Dseamline.os.port="$OS_PORT" -Dseamline.os.transport.port="$OS_TPORT" \
        -cp "$cp" "$OS_MAIN" </dev/null >"$OS_STDOUT" 2>&1 9>&- &
    echo $! >"$OS_PIDFILE"
    os_wait "$!" "$OS_WAIT" || {
        tail_log "$OS_STDOUT"
        tail_log "$OS_LOG"
        die "opensearch: not healthy within ${OS_WAIT}s on $OS_URL (logs: $OS_LOG, $OS_STDOUT)"
    }
}

os_wait() { # pid seconds [quiet]
    local pid="$1" secs="$2" t0=$SECONDS
    while ((SECONDS - t0 < secs)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            [[ "${3:-}" == quiet ]] && return 1
            tail_log "$OS_STDOUT"
            tail_log "$OS_LOG"
            die "opensearch: process $pid exited during startup (logs: $OS_LOG, $OS_STDOUT)"
        fi
        if os_healthy; then
            log "opensearch: up (pid $pid, $OS_URL, status $(os_health), $((SECONDS - t0))s)"
            return 0
        fi
        sleep 1
    done
    return 1
}

os_down() {
    local pid
    if ! pid="$(os_pid)"; then
        log "opensearch: not running"
        rm -f "$OS_PIDFILE"
        return 0
    fi
    log "opensearch: stopping (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 60; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$OS_PIDFILE"
            log "opensearch: stopped"
            return 0
        fi
        sleep 0.5
    done
    log "opensearch: pid $pid ignored SIGTERM for 30s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 1
    rm -f "$OS_PIDFILE"
}

os_status() {
    local pid s ver
    if pid="$(os_pid)"; then
        if s="$(os_health)"; then
            ver="$(curl -fsS --max-time 5 "$OS_URL/" 2>/dev/null | sed -nE 's/.*"number" *: *"([^"]+)".*/\1/p' | head -n1)" || true
            printf 'opensearch  up    pid %s  %s  version %s  cluster seamline-test  status %s  data %s\n' \
                "$pid" "$OS_URL" "${ver:-?}" "$s" "$OS_DIR/data"
        else
            printf 'opensearch  unhealthy  pid %s running but %s does not answer as seamline-test\n' "$pid" "$OS_URL"
        fi
    else
        printf 'opensearch  down  (%s)\n' "$OS_URL"
    fi
}

# -------------------------------------------------------------------------------------------- kafka

KAFKA_DIR="$STATE/kafka"
KAFKA_PIDFILE="$KAFKA_DIR/kafka.pid"
KAFKA_STDOUT="$KAFKA_DIR/stdout.log"
KAFKA_LOG="$KAFKA_DIR/server.log"

kafka_pid() {
    local pid
    [[ -f "$KAFKA_PIDFILE" ]] || return 1
    pid="$(cat "$KAFKA_PIDFILE" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$KAFKA_MAIN $KAFKA_DIR/server.properties" || return 1
    printf '%s' "$pid"
}

kafka_cp() { printf '%s' "$KAFKA_SRC/target/lib/*"; }

kafka_java() { # runs a Kafka class (StorageTool, ConsumerPerformance, ...) with our logging config
    "$JAVA" -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" -cp "$(kafka_cp)" "$@"
}

kafka_healthy() { # the listener accepts connections and this run's log says the server started
    port_open "$KAFKA_PORT" || return 1
    grep -q "Kafka Server started" "$KAFKA_LOG" 2>/dev/null
}

kafka_build() {
    local stamp="$KAFKA_SRC/target/lib/.complete"
    if [[ -f "$stamp" && ! "$KAFKA_SRC/pom.xml" -nt "$stamp" ]]; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || apt_install maven
    log "kafka: fetching the broker's jars (mvn dependency:copy-dependencies; first time downloads ~55 MB to ~/.m2)"
    local t0=$SECONDS
    rm -rf "$KAFKA_SRC/target/lib"
    if ! (cd "$KAFKA_SRC" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory=target/lib >"$STATE/kafka-build.log" 2>&1); then
        tail_log "$STATE/kafka-build.log"
        die "kafka: maven failed (log: $STATE/kafka-build.log)"
    fi
    touch "$stamp"
    log "kafka: jars ready in $((SECONDS - t0))s"
}

kafka_write_config() {
    mkdir -p "$KAFKA_DIR/data" "$KAFKA_DIR/tmp"
    cat >"$KAFKA_DIR/log4j2.properties" <<EOF
# written by scripts/services.sh
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = $KAFKA_LOG
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d{ISO8601}] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.state.name = state.change.logger
logger.state.level = warn
EOF
    cat >"$KAFKA_DIR/server.properties" <<EOF
# written by scripts/services.sh: one KRaft node, broker and controller, loopback only
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CPORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
EOF
}

kafka_format() { # once per state dir: a cluster id, then StorageTool format
    [[ -f "$KAFKA_DIR/data/meta.properties" ]] && return 0
    local id
    id="$(kafka_java kafka.tools.StorageTool random-uuid 2>>"$KAFKA_STDOUT")" || die "kafka: StorageTool random-uuid failed"
    log "kafka: formatting $KAFKA_DIR/data (cluster id $id)"
    kafka_java kafka.tools.StorageTool format -t "$id" -c "$KAFKA_DIR/server.properties" >>"$KAFKA_STDOUT" 2>&1 \
        || { tail_log "$KAFKA_STDOUT"; die "kafka: StorageTool format failed"; }
}

kafka_up() {
    local pid
    if pid="$(kafka_pid)"; then
        if kafka_healthy; then
            log "kafka: already up (pid $pid, $KAFKA_BOOTSTRAP)"
            return 0
        fi
        log "kafka: running (pid $pid) but not answering on $KAFKA_BOOTSTRAP yet; waiting"
        if kafka_wait "$pid" 60 quiet; then return 0; fi
        log "kafka: restarting pid $pid"
        kafka_down
    fi
    if port_open "$KAFKA_PORT"; then
        die "kafka: port 127.0.0.1:$KAFKA_PORT is already taken by another process (set SEAMLINE_KAFKA_PORT to use another port)"
    fi
    if port_open "$KAFKA_CPORT"; then
        die "kafka: controller port 127.0.0.1:$KAFKA_CPORT (SEAMLINE_KAFKA_PORT+1) is already taken by another process"
    fi
    os_check_java
    kafka_build
    kafka_write_config
    : >"$KAFKA_STDOUT"
    kafka_format
    : >"$KAFKA_LOG"
    log "kafka: starting on $KAFKA_BOOTSTRAP (controller 127.0.0.1:$KAFKA_CPORT)"
    setsid nohup "$JAVA" -Xms256m -Xmx768m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Djava.io.tmpdir="$KAFKA_DIR/tmp" -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" \
        -cp "$(kafka_cp)" "$KAFKA_MAIN" "$KAFKA_DIR/server.properties" </dev/null >>"$KAFKA_STDOUT" 2>&1 9>&- &
    echo $! >"$KAFKA_PIDFILE"
    kafka_wait "$!" "$KAFKA_WAIT" || {
        tail_log "$KAFKA_STDOUT"
        tail_log "$KAFKA_LOG"
        die "kafka: not up within ${KAFKA_WAIT}s on $KAFKA_BOOTSTRAP (logs: $KAFKA_LOG, $KAFKA_STDOUT)"
    }
}

kafka_wait() { # pid seconds [quiet]
    local pid="$1" secs="$2" t0=$SECONDS
    while ((SECONDS - t0 < secs)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            [[ "${3:-}" == quiet ]] && return 1
            tail_log "$KAFKA_STDOUT"
            tail_log "$KAFKA_LOG"
            die "kafka: process $pid exited during startup (logs: $KAFKA_LOG, $KAFKA_STDOUT)"
        fi
        if kafka_healthy; then
            log "kafka: up (pid $pid, $KAFKA_BOOTSTRAP, $((SECONDS - t0))s)"
            return 0
        fi
        sleep 0.5
    done
    return 1
}

kafka_down() {
    local pid
    if ! pid="$(kafka_pid)"; then
        log "kafka: not running"
        rm -f "$KAFKA_PIDFILE"
        return 0
    fi
    log "kafka: stopping (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 120; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$KAFKA_PIDFILE"
            log "kafka: stopped"
            return 0
        fi
        sleep 0.5
    done
    log "kafka: pid $pid ignored SIGTERM for 60s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 1
    rm -f "$KAFKA_PIDFILE"
}

kafka_status() {
    local pid ver
    if pid="$(kafka_pid)"; then
        if kafka_healthy; then
            ver="$(sed -nE 's/.*Kafka version: ([^ ]+).*/\1/p' "$KAFKA_LOG" | tail -n1)" || true
            printf 'kafka       up    pid %s  %s  version %s  data %s\n' "$pid" "$KAFKA_BOOTSTRAP" "${ver:-?}" "$KAFKA_DIR/data"
        else
            printf 'kafka       unhealthy  pid %s running but %s does not answer\n' "$pid" "$KAFKA_BOOTSTRAP"
        fi
    else
        printf 'kafka       down  (%s)\n' "$KAFKA_BOOTSTRAP"
    fi
}

# ----------------------------------------------------------------------------------------- debezium

DBZ_DIR="$STATE/debezium"
DBZ_PIDFILE="$DBZ_DIR/debezium.pid"
DBZ_STDOUT="$DBZ_DIR/stdout.log"
DBZ_LOG="$DBZ_DIR/debezium.log"

dbz_pid() {
    local pid
    [[ -f "$DBZ_PIDFILE" ]] || return 1
    pid="$(cat "$DBZ_PIDFILE" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$DBZ_MAIN $DBZ_DIR/engine.properties" || return 1
    printf '%s' "$pid"
}

dbz_healthy() { # the engine holds its replication slot
    [[ "$(psql "$PG_DSN" -XtAqc "select active from pg_replication_slots where slot_name = '$CDC_SLOT'" 2>/dev/null)" == t ]]
}

dbz_build() {
    local jar="$DBZ_SRC/target/seamline-debezium-0.1.0.jar"
    if [[ -f "$jar" && -d "$DBZ_SRC/target/lib" ]] \
        && [[ -z "$(find "$DBZ_SRC/pom.xml" "$DBZ_SRC/src" -newer "$jar" -type f 2>/dev/null | head -n1)" ]]; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || apt_install maven
    log "debezium: building services/debezium (mvn -q -B package; first time downloads ~40 MB to ~/.m2)"
    local t0=$SECONDS
    rm -rf "$DBZ_SRC/target/lib"
    if ! (cd "$DBZ_SRC" && mvn -q -B package >"$STATE/debezium-build.log" 2>&1); then
        tail_log "$STATE/debezium-build.log"
        die "debezium: maven build failed (log: $STATE/debezium-build.log)"
    fi
    log "debezium: built in $((SECONDS - t0))s"
}

dbz_prepare_pg() { # the captured schema and its publication (new tables in the schema are captured too)
    psql "$PG_DSN" -XqAc "create schema if not exists $CDC_SCHEMA" >&2
    if [[ "$(psql "$PG_DSN" -XtAqc "select 1 from pg_publication where pubname = '$CDC_SLOT'")" != 1 ]]; then
        psql "$PG_DSN" -XqAc "create publication $CDC_SLOT for tables in schema $CDC_SCHEMA" >&2
    fi
    # the heartbeat's table: while the captured tables are idle the slot sees no change of its own and
    # never confirms a newer LSN, so Postgres would keep every WAL segment written since (bench loads
    # elsewhere filled a disk that way); Debezium's heartbeat writes here, and its change moves the slot
    psql "$PG_DSN" -XqAc "create table if not exists $CDC_SCHEMA.$DBZ_HEARTBEAT_TABLE (id int primary key, ts timestamptz not null)" >&2
}

dbz_write_config() {
    mkdir -p "$DBZ_DIR"
    cat >"$DBZ_DIR/log4j2.properties" <<EOF
# written by scripts/services.sh
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = $DBZ_LOG
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d{ISO8601}] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
EOF
    cat >"$DBZ_DIR/engine.properties" <<EOF
# written by scripts/services.sh: Debezium's Postgres connector (pgoutput) -> Kafka
seamline.kafka.bootstrap=$KAFKA_BOOTSTRAP
seamline.topic.partitions=1
name=seamline-cdc
connector.class=io.debezium.connector.postgresql.PostgresConnector
offset.storage=org.apache.kafka.connect.storage.FileOffsetBackingStore
offset.storage.file.filename=$DBZ_DIR/offsets.dat
offset.flush.interval.ms=1000
database.hostname=127.0.0.1
database.port=$PG_PORT
database.user=seamline
database.dbname=seamline
topic.prefix=$CDC_PREFIX
plugin.name=pgoutput
slot.name=$CDC_SLOT
publication.name=$CDC_SLOT
publication.autocreate.mode=disabled
schema.include.list=$CDC_SCHEMA
decimal.handling.mode=string
heartbeat.interval.ms=$DBZ_HEARTBEAT_MS
heartbeat.action.query=insert into $CDC_SCHEMA.$DBZ_HEARTBEAT_TABLE values (1, now()) on conflict (id) do update set ts = excluded.ts
key.converter.schemas.enable=false
value.converter.schemas.enable=false
EOF
}

dbz_up() {
    local pid
    if pid="$(dbz_pid)"; then
        log "debezium: already up (pid $pid, slot $CDC_SLOT)"
        return 0
    fi
    pg_alive || die "debezium: postgres is not up on 127.0.0.1:$PG_PORT (scripts/services.sh up postgres)"
    kafka_healthy || die "debezium: kafka is not up on $KAFKA_BOOTSTRAP (scripts/services.sh up kafka)"
    [[ "$(psql "$PG_DSN" -XtAqc 'show wal_level')" == logical ]] || die "debezium: postgres runs with wal_level=$(psql "$PG_DSN" -XtAqc 'show wal_level'), CDC needs logical (restart it: scripts/services.sh down postgres; up postgres)"
    os_check_java
    dbz_build
    dbz_prepare_pg
    dbz_write_config
    : >"$DBZ_STDOUT"
    log "debezium: starting (schema $CDC_SCHEMA -> topics $CDC_PREFIX.$CDC_SCHEMA.<table> on $KAFKA_BOOTSTRAP)"
    setsid nohup "$JAVA" -Xms64m -Xmx384m -XX:+UseSerialGC -Dlog4j2.configurationFile="$DBZ_DIR/log4j2.properties" \
        -cp "$DBZ_SRC/target/seamline-debezium-0.1.0.jar:$DBZ_SRC/target/lib/*" \
        "$DBZ_MAIN" "$DBZ_DIR/engine.properties" </dev/null >>"$DBZ_STDOUT" 2>&1 9>&- &
    echo $! >"$DBZ_PIDFILE"
    local t0=$SECONDS
    while ((SECONDS - t0 < DBZ_WAIT)); do
        if ! kill -0 "$!" 2>/dev/null; then
            tail_log "$DBZ_STDOUT"
            tail_log "$DBZ_LOG"
            die "debezium: process exited during startup (logs: $DBZ_LOG, $DBZ_STDOUT)"
        fi
        if dbz_healthy; then
            log "debezium: up (pid $!, slot $CDC_SLOT active, $((SECONDS - t0))s)"
            return 0
        fi
        sleep 1
    done
    tail_log "$DBZ_LOG"
    die "debezium: slot $CDC_SLOT not active within ${DBZ_WAIT}s (logs: $DBZ_LOG, $DBZ_STDOUT)"
}

dbz_down() {
    local pid
    if ! pid="$(dbz_pid)"; then
        log "debezium: not running"
        rm -f "$DBZ_PIDFILE"
        return 0
    fi
    log "debezium: stopping (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 60; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$DBZ_PIDFILE"
            log "debezium: stopped"
            return 0
        fi
        sleep 0.5
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$DBZ_PIDFILE"
}

dbz_status() {
    local pid
    if pid="$(dbz_pid)"; then
        if dbz_healthy; then
            printf 'debezium    up    pid %s  slot %s active  schema %s -> topics %s.%s.<table>\n' "$pid" "$CDC_SLOT" \
                "$CDC_SCHEMA" "$CDC_PREFIX" "$CDC_SCHEMA"
        else
            printf 'debezium    unhealthy  pid %s running but slot %s is not active\n' "$pid" "$CDC_SLOT"
        fi
    else
        printf 'debezium    down  (slot %s)\n' "$CDC_SLOT"
    fi
}

# ------------------------------------------------------------------------------------------- main

with_lock() { # fd 9; every long-running child is started with 9>&- so it does not inherit the lock
    mkdir -p "$STATE"
    exec 9>"$STATE/.lock"
    flock -w 300 9 || die "another services.sh has held $STATE/.lock for 5 minutes"
}

cmd="${1:-}"
shift || true
ALL_SERVICES=(postgres opensearch kafka debezium)
SELECTED=("$@")
((${#SELECTED[@]})) || SELECTED=("${ALL_SERVICES[@]}")
for s in "${SELECTED[@]}"; do
    [[ " ${ALL_SERVICES[*]} " == *" $s "* ]] || { echo "services: unknown service '$s' (known: ${ALL_SERVICES[*]})" >&2; exit 2; }
done
selected() { [[ " ${SELECTED[*]} " == *" $1 "* ]]; }

case "$cmd" in
    up)
        with_lock
        t0=$SECONDS
        if selected postgres; then pg_up; fi
        if selected opensearch; then os_up; fi
        if selected kafka; then kafka_up; fi
        if selected debezium; then dbz_up; fi
        log "services up: ${SELECTED[*]} ($((SECONDS - t0))s)"
        print_env
        ;;
    env)
        print_env
        ;;
    down)
        with_lock
        if selected debezium; then dbz_down; fi
        if selected kafka; then kafka_down; fi
        if selected opensearch; then os_down; fi
        if selected postgres; then pg_down; fi
        ;;
    status)
        if selected postgres; then pg_status; fi
        if selected opensearch; then os_status; fi
        if selected kafka; then kafka_status; fi
        if selected debezium; then dbz_status; fi
        ;;
    *)
        echo "usage: $0 {up|down|env|status} [postgres|opensearch|kafka|debezium ...]" >&2
        exit 2
        ;;
esac
