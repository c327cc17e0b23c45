#!/usr/bin/env bash
# A 3-server NATS JetStream cluster on 127.0.0.1, for the cluster tests, the demo and measurements
# (the servers that `driftwood serve --cluster` nodes join). Everything it makes lives in DIR:
# DIR/sI.conf, DIR/sI.log, DIR/sI.pid and DIR/sI/ (the server's JetStream store), I = 0..2, and
# DIR/urls (the client URLs, comma-separated).
#
#   tools/nats-cluster.sh start DIR [BASE_PORT]  start the servers; return once JetStream is ready
#                                                (a meta leader that sees both other servers current,
#                                                so an R3 stream can be created); print the URLs.
#                                                Ports: BASE_PORT..+2 client, +3..+5 cluster routes,
#                                                +6..+8 monitoring; free ones picked when absent.
#   tools/nats-cluster.sh stop DIR               SIGTERM every server still running (SIGKILL after 10 s)
#   tools/nats-cluster.sh kill DIR I             SIGKILL server I (0..2), wait for it to be gone
#   tools/nats-cluster.sh urls DIR               print the client URLs: nats://127.0.0.1:P,...
#
# NATS_SERVER names the binary (default: nats-server on PATH, else /usr/sbin/nats-server).
# NATS_CLUSTER_AUTH=USER:PASSWORD makes the servers require that user (clients, not routes); the
# URLs printed then carry it (nats://USER:PASSWORD@127.0.0.1:P).
set -euo pipefail

usage() {
    sed -n '/^#   tools/s/^#   //p' "$0" >&2
    exit 2
}

nats_server_binary() {
    if [[ -n "${NATS_SERVER:-}" ]]; then echo "$NATS_SERVER"; return; fi
    if command -v nats-server >/dev/null 2>&1; then command -v nats-server; return; fi
    if [[ -x /usr/sbin/nats-server ]]; then echo /usr/sbin/nats-server; return; fi
    echo "nats-cluster.sh: nats-server not found (Debian: apt-get install nats-server; or set NATS_SERVER)" >&2
    exit 1
}

# Nine ports that nothing listens on now: 3 client, 3 cluster, 3 monitoring (the kernel picks them).
free_ports() {
    python3 - <<'PY'
import socket
socks = []
for _ in range(9):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# True while process $1 runs (a zombie, killed but not yet reaped by its new parent, does not count).
# shellcheck source=tools/processes.sh
source "$(dirname "$0")/processes.sh"

# Waits (up to 30 s) until JetStream is ready on the servers of DIR: one of them is the meta leader
# and sees both others current (so a stream of 3 replicas can be placed now), and each answers
# /healthz "ok" (in contact with the meta leader). Fails at once if a server exits.
wait_ready() {
    python3 - "$1" <<'PY'
import json, os, sys, time, urllib.request

d = sys.argv[1]

def get(url):
    try:
        return json.load(urllib.request.urlopen(url, timeout=1))
    except Exception:
        return {}

def running(i):
    try:
        pid = int(open(f"{d}/s{i}.pid").read())
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, ValueError):
        return False

monitors = [open(f"{d}/s{i}.monitor").read().strip() for i in range(3)]
deadline = time.time() + 30
last = ""
while time.time() < deadline:
    for i in range(3):
        if not running(i):
            sys.exit(f"nats-cluster.sh: server {i} exited; its log:\n" + open(f"{d}/s{i}.log").read())
    leader_ready = False
    for i, m in enumerate(monitors):
        meta = get(m + "/jsz").get("meta_cluster") or {}
        current = [r for r in meta.get("replicas") or [] if r.get("current") and not r.get("offline")]
        if meta.get("leader") == f"s{i}" and len(current) == 2:
            leader_ready = True
        last = f"s{i}: {meta}"
    health = [get(m + "/healthz").get("status") for m in monitors]
    if leader_ready and health == ["ok"] * 3:
        sys.exit(0)
    last += f"; healthz {health}"
    time.sleep(0.05)
sys.exit("nats-cluster.sh: JetStream not ready after 30 s (" + last + ")")
PY
}

start() {
    local dir=$1 base=${2:-}
    local bin ports
    bin=$(nats_server_binary)
    [[ -x "$bin" ]] || { echo "nats-cluster.sh: $bin is not an executable nats-server" >&2; exit 1; }
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    for i in 0 1 2; do
        if [[ -f "$dir/s$i.pid" ]] && alive "$(cat "$dir/s$i.pid")"; then
            echo "nats-cluster.sh: server $i of $dir is already running (pid $(cat "$dir/s$i.pid"))" >&2
            exit 1
        fi
    done
    if [[ -n "$base" ]]; then
        ports=$(seq "$base" $((base + 8)) | tr '\n' ' ')
    else
        ports=$(free_ports)
    fi
    local -a p
    read -r -a p <<<"$ports"
    local routes="" urls="" auth="" userinfo=""
    if [[ -n "${NATS_CLUSTER_AUTH:-}" ]]; then
        [[ "$NATS_CLUSTER_AUTH" =~ ^[A-Za-z0-9_-]+:[A-Za-z0-9_-]+$ ]] ||
            { echo "nats-cluster.sh: NATS_CLUSTER_AUTH must be USER:PASSWORD (letters, digits, _ and -)" >&2; exit 2; }
        auth="authorization { user: ${NATS_CLUSTER_AUTH%%:*}, password: ${NATS_CLUSTER_AUTH#*:} }"
        userinfo="$NATS_CLUSTER_AUTH@"
    fi
    for i in 0 1 2; do
        routes+="${routes:+, }nats-route://127.0.0.1:${p[$((3 + i))]}"
        urls+="${urls:+,}nats://${userinfo}127.0.0.1:${p[$i]}"
    done
    for i in 0 1 2; do
        mkdir -p "$dir/s$i"
        cat >"$dir/s$i.conf" <<EOF
# written by tools/nats-cluster.sh
server_name: s$i
listen: 127.0.0.1:${p[$i]}
http: 127.0.0.1:${p[$((6 + i))]}
max_payload: 8MB
$auth
jetstream {
    store_dir: "$dir/s$i"
}
cluster {
    name: driftwood
    listen: 127.0.0.1:${p[$((3 + i))]}
    routes: [$routes]
}
EOF
        : >"$dir/s$i.log"
        "$bin" -c "$dir/s$i.conf" >>"$dir/s$i.log" 2>&1 </dev/null &
        echo $! >"$dir/s$i.pid"
        echo "http://127.0.0.1:${p[$((6 + i))]}" >"$dir/s$i.monitor"
    done
    echo "$urls" >"$dir/urls"
    if ! wait_ready "$dir"; then
        tail -n 20 "$dir"/s?.log >&2
        stop "$dir"
        exit 1
    fi
    echo "$urls"
}

stop() {
    local dir=$1
    stop_pid_files 10 "$dir"/s0.pid "$dir"/s1.pid "$dir"/s2.pid
}

kill_one() {
    local dir=$1 i=$2 pid
    [[ "$i" =~ ^[012]$ ]] || usage
    [[ -f "$dir/s$i.pid" ]] || { echo "nats-cluster.sh: no server $i in $dir" >&2; exit 1; }
    pid=$(cat "$dir/s$i.pid")
    kill -KILL "$pid" 2>/dev/null || true
    while alive "$pid"; do sleep 0.02; done
    rm -f "$dir/s$i.pid"
}

case "${1:-}" in
start) [[ $# -ge 2 && $# -le 3 ]] || usage; start "$2" "${3:-}" ;;
stop) [[ $# -eq 2 ]] || usage; stop "$2" ;;
kill) [[ $# -eq 3 ]] || usage; kill_one "$2" "$3" ;;
urls) [[ $# -eq 2 && -f "$2/urls" ]] || usage; cat "$2/urls" ;;
*) usage ;;
esac
