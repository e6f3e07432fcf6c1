#!/usr/bin/env bash
# scripts/k8s.sh — a real Kubernetes control plane on 127.0.0.1 for Seamline's scale-out tests, without
# Docker: etcd, kube-apiserver, kube-controller-manager and kube-scheduler built from the Go module proxy,
# and kwok standing in for the nodes' kubelets (the tests run each pod's command themselves).
#
#   scripts/k8s.sh build   build the binaries once per machine into the cache folder (idempotent: reuses
#                          a complete cache; ~15 CPU-minutes and ~3.5 GB of Go build cache the first time)
#   scripts/k8s.sh up      build if needed, start everything (idempotent), wait until a kwok node is Ready,
#                          then print the export lines:  eval "$(scripts/k8s.sh up)"
#   scripts/k8s.sh env     print the export lines without starting anything
#   scripts/k8s.sh status  one line per component
#   scripts/k8s.sh down    stop everything (idempotent); state is kept, `up` starts afresh on a new etcd
#
# Prints (stdout; all progress goes to stderr):
#   export KUBECONFIG='<state>/kubeconfig'
#   export SEAMLINE_KUBECONFIG='<state>/kubeconfig'
#   export SEAMLINE_K8S_BIN='<cache>/bin'       (kubectl lives there)
#
# Inputs (environment):
#   SEAMLINE_SERVICES_DIR   state dir parent (default <repo>/.services); this script uses its k8s/ folder:
#                           pki/, etcd data, logs, pids, kubeconfig, kwok stage configs
#   SEAMLINE_K8S_CACHE      binary cache (default /var/cache/seamline/k8s-v1.34.4-etcd-3.6.4-kwok-0.8.0):
#                           bin/ holds the six binaries once `build` completed; src/ the wrapper module
#   SEAMLINE_K8S_PORT       kube-apiserver secure port (default 26443); etcd uses PORT+1 and PORT+2,
#                           controller-manager PORT+3, scheduler PORT+4, kwok PORT+5 (health/metrics)
#
# Security: the API server serves TLS with this folder's own CA (openssl), authenticates with static
# tokens (an admin token for tests and one per control-plane component), authorises with RBAC (Node,RBAC),
# signs service-account tokens with its own key pair. Everything binds to 127.0.0.1.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PATH="$PATH:/usr/local/go/bin"  # where Go is installed on this project's machines when not on PATH
K8S_VERSION=v1.34.4
ETCD_VERSION=v3.6.4
KWOK_VERSION=v0.8.0
CACHE="${SEAMLINE_K8S_CACHE:-/var/cache/seamline/k8s-${K8S_VERSION}-etcd-${ETCD_VERSION#v}-kwok-${KWOK_VERSION#v}}"
BIN="$CACHE/bin"
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)
STATE="${SEAMLINE_SERVICES_DIR:-$REPO/.services}/k8s"
API_PORT="${SEAMLINE_K8S_PORT:-26443}"
ETCD_CLIENT_PORT=$((API_PORT + 1))
ETCD_PEER_PORT=$((API_PORT + 2))
KCM_PORT=$((API_PORT + 3))
SCHED_PORT=$((API_PORT + 4))
KWOK_PORT=$((API_PORT + 5))
NODE_NAME="kwok-node-0"
KUBECONFIG_PATH="$STATE/kubeconfig"

log() { printf 'k8s: %s\n' "$*" >&2; }
die() { printf 'k8s: ERROR: %s\n' "$*" >&2; exit 1; }
tail_log() { # file
    if [[ -f "$1" ]]; then
        printf -- '----- last lines of %s -----\n' "$1" >&2
        tail -n 40 "$1" >&2 || true
        printf -- '-----\n' >&2
    fi
}

print_env() {
    printf "export KUBECONFIG='%s'\n" "$KUBECONFIG_PATH"
    printf "export SEAMLINE_KUBECONFIG='%s'\n" "$KUBECONFIG_PATH"
    printf "export SEAMLINE_K8S_BIN='%s'\n" "$BIN"
}

# -------------------------------------------------------------------------------------------- build

binaries_present() {
    local b
    [[ -f "$CACHE/.complete" ]] || return 1
    for b in "${BINARIES[@]}"; do [[ -x "$BIN/$b" ]] || return 1; done
}

build() {
    if binaries_present; then
        log "binaries present in $BIN"
        return 0
    fi
    command -v go >/dev/null 2>&1 || die "build: no 'go' on PATH (Go 1.24+ is needed to build the control plane)"
    mkdir -p "$CACHE"
    exec 8>"$CACHE/.build.lock"
    flock -w 3600 8 || die "build: another build has held $CACHE/.build.lock for an hour"
    binaries_present && { log "binaries present in $BIN (built by another process)"; return 0; }
    local t0=$SECONDS src="$CACHE/src" blog="$CACHE/build.log"
    mkdir -p "$src" "$BIN"
    : >"$blog"
    log "building $K8S_VERSION control plane, etcd $ETCD_VERSION and kwok $KWOK_VERSION into $BIN (log: $blog)"
    export GOFLAGS="-buildvcs=false -modcacherw" GOTOOLCHAIN=local CGO_ENABLED=0

    # kwok installs directly: its module has no replace directives.
    if [[ ! -x "$BIN/kwok" ]]; then
        log "build: kwok $KWOK_VERSION"
        GOBIN="$BIN" nice go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" >>"$blog" 2>&1 \
            || { tail_log "$blog"; die "build: go install kwok failed"; }
    fi

    # k8s.io/kubernetes replaces its staging modules with local folders, so `go install` refuses it; a
    # wrapper module replaces each with its published v0.x version instead.
    local staging_version="v0.${K8S_VERSION#v1.}" wrap="$src/k8s"
    mkdir -p "$wrap"
    (
        cd "$wrap"
        local gomod
        gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -nE 's/^[[:space:]]*"GoMod": "(.*)",?$/\1/p')"
        [[ -f "$gomod" ]] || die "build: could not download k8s.io/kubernetes@$K8S_VERSION"
        {
            printf 'module seamline.dev/k8s-binaries\n\ngo 1.24.0\n\ngodebug default=go1.24\n\nreplace (\n'
            sed -nE '/^replace \(/,/^\)/ s#^[[:space:]]*(k8s\.io/[a-z0-9-]+) => \./staging/.*#\t\1 => \1 '"$staging_version"'#p' "$gomod"
            printf ')\n'
        } >go.mod
        cat >tools.go <<'EOF'
//go:build tools

// Package tools pins the commands this wrapper module builds (scripts/k8s.sh).
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF
        log "build: resolving modules (go get k8s.io/kubernetes@$K8S_VERSION go.etcd.io/etcd/server/v3@$ETCD_VERSION)"
        go get "k8s.io/kubernetes@$K8S_VERSION" "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >>"$blog" 2>&1 \
            || { tail_log "$blog"; die "build: go get failed"; }
        go mod tidy >>"$blog" 2>&1 || { tail_log "$blog"; die "build: go mod tidy failed"; }
        local v="k8s.io/component-base/version" minor="${K8S_VERSION#v1.}"
        minor="${minor%%.*}"
        local ldflags="-s -w -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
        log "build: etcd"
        nice go build -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3 >>"$blog" 2>&1 \
            || { tail_log "$blog"; die "build: etcd failed"; }
        local cmd
        for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
            log "build: $cmd ($((SECONDS - t0))s so far)"
            nice go build -ldflags "$ldflags" -o "$BIN/$cmd" "k8s.io/kubernetes/cmd/$cmd" >>"$blog" 2>&1 \
                || { tail_log "$blog"; die "build: $cmd failed"; }
        done
    )
    "$BIN/kube-apiserver" --version >&2
    "$BIN/etcd" --version | head -n1 >&2
    "$BIN/kwok" --version >&2 || true
    printf 'built in %ss on %s\n' "$((SECONDS - t0))" "$(date -u +%FT%TZ)" >"$CACHE/.complete"
    log "build: done in $((SECONDS - t0))s"
}

# ----------------------------------------------------------------------------------- certificates

PKI="$STATE/pki"

pki() { # a CA, the API server's serving certificate, the service-account key pair, tokens
    mkdir -p "$PKI"
    chmod 700 "$PKI"
    command -v openssl >/dev/null 2>&1 || die "pki: openssl not found (apt-get install openssl)"
    if [[ ! -f "$PKI/ca.crt" ]]; then
        log "pki: creating a CA, the API server certificate and the service-account keys in $PKI"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=seamline-test-ca" \
            -keyout "$PKI/ca.key" -out "$PKI/ca.crt" >/dev/null 2>&1 || die "pki: openssl could not create the CA"
        rm -f "$PKI/apiserver.crt"
    fi
    if [[ ! -f "$PKI/apiserver.crt" ]]; then
        cat >"$PKI/apiserver.ext" <<EOF
subjectAltName = IP:127.0.0.1, IP:10.96.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage = serverAuth
EOF
        openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
            -keyout "$PKI/apiserver.key" -out "$PKI/apiserver.csr" >/dev/null 2>&1
        openssl x509 -req -in "$PKI/apiserver.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
            -days 3650 -extfile "$PKI/apiserver.ext" -out "$PKI/apiserver.crt" >/dev/null 2>&1 \
            || die "pki: openssl could not sign the API server certificate"
    fi
    if [[ ! -f "$PKI/sa.key" ]]; then
        openssl genrsa -out "$PKI/sa.key" 2048 >/dev/null 2>&1
        openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" >/dev/null 2>&1
    fi
    if [[ ! -f "$PKI/tokens.csv" ]]; then
        # token,user,uid,"groups": the tests' admin, and one identity per component (RBAC's bootstrap
        # roles bind system:kube-controller-manager and system:kube-scheduler)
        {
            printf '%s,seamline-admin,seamline-admin,"system:masters"\n' "$(openssl rand -hex 24)"
            printf '%s,system:kube-controller-manager,kcm,""\n' "$(openssl rand -hex 24)"
            printf '%s,system:kube-scheduler,scheduler,""\n' "$(openssl rand -hex 24)"
            printf '%s,kwok-controller,kwok,"system:masters"\n' "$(openssl rand -hex 24)"
        } >"$PKI/tokens.csv"
        chmod 600 "$PKI/tokens.csv"
    fi
}

token_of() { awk -F, -v u="$1" '$2 == u { print $1 }' "$PKI/tokens.csv"; }

write_kubeconfig() { # file user
    local token
    token="$(token_of "$2")"
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: seamline-test
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $2
  user:
    token: $token
contexts:
- name: seamline-test
  context: {cluster: seamline-test, user: $2}
current-context: seamline-test
EOF
    chmod 600 "$1"
}

# ----------------------------------------------------------------------------------- kwok stages

write_kwok_config() {
    # Written for this project (the Stage API of kwok.x-k8s.io/v1alpha1): nodes become Ready and keep
    # a heartbeat; a pod that landed gets an IP and running containers; pods leave when deleted.
    # Pods complete only when the test harness (the stand-in kubelet) patches their status from the
    # exit code of the process it ran, or, for pods labelled seamline.dev/kwok-complete=true, here.
    cat >"$STATE/kwok.yaml" <<'EOF'
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-initialise
spec:
  resourceRef: {apiGroup: v1, kind: Node}
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: NotIn
      values: ["True"]
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      {{ range NodeConditions }}
      - type: {{ .type | Quote }}
        status: {{ .status | Quote }}
        reason: {{ .reason | Quote }}
        message: {{ .message | Quote }}
        lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $now | Quote }}
      {{ end }}
      addresses:
      - {type: InternalIP, address: {{ NodeIP | Quote }}}
      - {type: Hostname, address: {{ NodeName | Quote }}}
      allocatable: {cpu: "256", memory: 1Ti, pods: "500"}
      capacity: {cpu: "256", memory: 1Ti, pods: "500"}
      nodeInfo:
        architecture: amd64
        operatingSystem: linux
        kubeletVersion: {{ printf "kwok-%s" Version | Quote }}
        containerRuntimeVersion: {{ printf "kwok-%s" Version | Quote }}
      phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-heartbeat
spec:
  resourceRef: {apiGroup: v1, kind: Node}
  selector:
    matchExpressions:
    - key: '.status.phase'
      operator: In
      values: [Running]
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: In
      values: ["True"]
  delay: {durationMilliseconds: 10000, jitterDurationMilliseconds: 5000}
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      {{ range NodeConditions }}
      - type: {{ .type | Quote }}
        status: {{ .status | Quote }}
        reason: {{ .reason | Quote }}
        message: {{ .message | Quote }}
        lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $now | Quote }}
      {{ end }}
  immediateNextStage: true
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-ready
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: '.metadata.deletionTimestamp', operator: DoesNotExist}
    - {key: '.status.podIP', operator: DoesNotExist}
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: ContainersReady, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: Ready, status: "True", lastTransitionTime: {{ $now | Quote }}}
      containerStatuses:
      {{ range .spec.containers }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        ready: true
        started: true
        restartCount: 0
        state: {running: {startedAt: {{ $now | Quote }}}}
      {{ end }}
      hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
      podIP: {{ PodIPWith .spec.nodeName false ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
      phase: Running
      startTime: {{ $now | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-complete
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchLabels:
      seamline.dev/kwok-complete: "true"
    matchExpressions:
    - {key: '.metadata.deletionTimestamp', operator: DoesNotExist}
    - {key: '.status.phase', operator: In, values: [Running]}
  next:
    statusTemplate: |
      {{ $now := Now }}
      containerStatuses:
      {{ range .spec.containers }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        ready: false
        started: false
        restartCount: 0
        state: {terminated: {exitCode: 0, reason: Completed, startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}}
      {{ end }}
      phase: Succeeded
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-delete
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: '.metadata.deletionTimestamp', operator: Exists}
  next:
    finalizers: {empty: true}
    delete: true
EOF
}

# ------------------------------------------------------------------------------------------ processes

pid_of() { # component -> pid, if our process runs
    local f="$STATE/$1.pid" pid
    [[ -f "$f" ]] || return 1
    pid="$(cat "$f" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "^$BIN/$1 " || return 1
    printf '%s' "$pid"
}

start() { # component args...
    local name="$1"
    shift
    setsid nohup "$BIN/$name" "$@" </dev/null >"$STATE/$name.log" 2>&1 9>&- &
    echo $! >"$STATE/$name.pid"
}

wait_until() { # seconds command...
    local secs="$1" t0=$SECONDS
    shift
    while ((SECONDS - t0 < secs)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    return 1
}

kubectl_admin() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

api_ready() {
    curl -fsS --max-time 3 --cacert "$PKI/ca.crt" -H "Authorization: Bearer $(token_of seamline-admin)" \
        "https://127.0.0.1:$API_PORT/readyz" 2>/dev/null | grep -qx ok
}
etcd_healthy() { curl -fsS --max-time 3 "http://127.0.0.1:$ETCD_CLIENT_PORT/health" | grep -q '"health":"true"'; }
healthz() { curl -fsSk --max-time 3 "https://127.0.0.1:$1/healthz" | grep -qx ok; }
node_ready() {
    [[ "$(kubectl_admin get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

check_port_free() { # port component
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
        die "$2: port 127.0.0.1:$1 is already taken by another process (set SEAMLINE_K8S_PORT to move the whole set)"
    fi
    # When SEAMLINE_K8S_PORT lies in the ephemeral range, a connection (not a listener) may hold the
    # port as its local end and bind then fails (TIME-WAIT does not). Such connections are short-lived.
    local waited=0
    while command -v ss >/dev/null && [[ -n "$(ss -Htan exclude time-wait "( sport = :$1 )" 2>/dev/null)" ]]; do
        ((waited < 30)) || die "$2: port 127.0.0.1:$1 is held by a connection for 30s (set SEAMLINE_K8S_PORT to move the whole set)"
        sleep 1; waited=$((waited + 1))
    done
}

fail_with_log() { # component message
    tail_log "$STATE/$1.log"
    die "$1: $2 (log: $STATE/$1.log)"
}

up() {
    build
    mkdir -p "$STATE"
    pki
    write_kubeconfig "$KUBECONFIG_PATH" seamline-admin
    write_kubeconfig "$STATE/kcm.kubeconfig" system:kube-controller-manager
    write_kubeconfig "$STATE/scheduler.kubeconfig" system:kube-scheduler
    write_kubeconfig "$STATE/kwok.kubeconfig" kwok-controller
    write_kwok_config
    local t0=$SECONDS

    if ! pid_of etcd >/dev/null; then
        check_port_free "$ETCD_CLIENT_PORT" etcd
        check_port_free "$ETCD_PEER_PORT" etcd
        start etcd --name seamline --data-dir "$STATE/etcd" \
            --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
            --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
            --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
            --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
            --initial-cluster "seamline=http://127.0.0.1:$ETCD_PEER_PORT" \
            --unsafe-no-fsync --quota-backend-bytes 2147483648 --log-level warn
    fi
    wait_until 60 etcd_healthy || fail_with_log etcd "not healthy within 60s"

    if ! pid_of kube-apiserver >/dev/null; then
        check_port_free "$API_PORT" kube-apiserver
        start kube-apiserver \
            --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
            --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
            --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
            --client-ca-file "$PKI/ca.crt" --token-auth-file "$PKI/tokens.csv" --anonymous-auth=false \
            --authorization-mode Node,RBAC \
            --enable-admission-plugins NodeRestriction,PodTolerationRestriction \
            --service-account-issuer https://kubernetes.default.svc.cluster.local \
            --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
            --api-audiences https://kubernetes.default.svc.cluster.local \
            --service-cluster-ip-range 10.96.0.0/16 --endpoint-reconciler-type none \
            --allow-privileged=false --profiling=false
    fi
    wait_until 90 api_ready || fail_with_log kube-apiserver "not ready within 90s"

    if ! pid_of kube-controller-manager >/dev/null; then
        check_port_free "$KCM_PORT" kube-controller-manager
        start kube-controller-manager --kubeconfig "$STATE/kcm.kubeconfig" \
            --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false \
            --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
            --use-service-account-credentials --profiling=false
    fi
    if ! pid_of kube-scheduler >/dev/null; then
        check_port_free "$SCHED_PORT" kube-scheduler
        start kube-scheduler --kubeconfig "$STATE/scheduler.kubeconfig" \
            --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --leader-elect=false --profiling=false
    fi
    wait_until 60 healthz "$KCM_PORT" || fail_with_log kube-controller-manager "not healthy within 60s"
    wait_until 60 healthz "$SCHED_PORT" || fail_with_log kube-scheduler "not healthy within 60s"

    # The node kwok plays: annotated for kwok to manage it, tainted so that only pods that tolerate
    # fake nodes land there (test namespaces grant the toleration by default: PodTolerationRestriction).
    kubectl_admin apply -f - >/dev/null <<EOF || die "could not create node $NODE_NAME"
apiVersion: v1
kind: Node
metadata:
  name: $NODE_NAME
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: $NODE_NAME
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
spec:
  taints:
  - {key: kwok.x-k8s.io/node, value: fake, effect: NoSchedule}
EOF
    if ! pid_of kwok >/dev/null; then
        check_port_free "$KWOK_PORT" kwok
        start kwok --kubeconfig "$STATE/kwok.kubeconfig" --config "$STATE/kwok.yaml" \
            --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
            --cidr 10.0.0.0/16 --node-ip 127.0.0.1 --server-address "127.0.0.1:$KWOK_PORT"
    fi
    wait_until 60 node_ready || fail_with_log kwok "node $NODE_NAME not Ready within 60s"
    log "control plane up in $((SECONDS - t0))s: https://127.0.0.1:$API_PORT, node $NODE_NAME Ready"
}

COMPONENTS=(kwok kube-scheduler kube-controller-manager kube-apiserver etcd)

down() {
    local c pid i
    for c in "${COMPONENTS[@]}"; do
        if ! pid="$(pid_of "$c")"; then
            rm -f "$STATE/$c.pid"
            continue
        fi
        log "$c: stopping (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 60; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$c: pid $pid ignored SIGTERM for 30s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$STATE/$c.pid"
    done
    log "stopped"
}

status() {
    local c pid
    if binaries_present; then
        printf '%-24s %s (%s)\n' binaries "$BIN" "$(cat "$CACHE/.complete")"
    else
        printf '%-24s missing (%s): scripts/k8s.sh build\n' binaries "$BIN"
    fi
    for c in etcd kube-apiserver kube-controller-manager kube-scheduler kwok; do
        if pid="$(pid_of "$c")"; then
            printf '%-24s up    pid %s  log %s\n' "$c" "$pid" "$STATE/$c.log"
        else
            printf '%-24s down\n' "$c"
        fi
    done
    if pid_of kube-apiserver >/dev/null && api_ready; then
        printf '%-24s %s\n' "node $NODE_NAME" "$(node_ready && echo Ready || echo 'not Ready')"
    fi
}

with_lock() { # fd 9; every long-running child is started with 9>&- so it does not inherit the lock
    mkdir -p "$STATE"
    exec 9>"$STATE/.lock"
    flock -w 600 9 || die "another k8s.sh has held $STATE/.lock for 10 minutes"
}

# ------------------------------------------------------------------------------------------- main

cmd="${1:-}"
case "$cmd" in
    build)
        build
        ;;
    up)
        with_lock
        up
        print_env
        ;;
    env)
        print_env
        ;;
    down)
        with_lock
        down
        ;;
    status)
        status
        ;;
    *)
        echo "usage: $0 {build|up|down|env|status}" >&2
        exit 2
        ;;
esac
