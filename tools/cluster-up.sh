#!/usr/bin/env bash
# A Driftwood cluster on this machine, for the demo and for trying it: 3 NATS JetStream servers
# (tools/nats-cluster.sh, in DIR/nats) and 3 `driftwood serve --cluster` nodes n1, n2, n3, each on a
# free port with its own store DIR/nodeI, its log DIR/nI.log (stdout and stderr: the cluster-event
# lines are there), its pid in DIR/nI.pid and its URL in DIR/nI.url.
#
#   tools/cluster-up.sh DIR [SERVE-ARGS...]  start it all; print one line "nI http://127.0.0.1:PORT" a node
#                                            (SERVE-ARGS go to every node: --keys FILE, --model DIR, ...)
#   tools/cluster-up.sh stop DIR             stop the nodes (SIGTERM: they hibernate their actors), then NATS
#   tools/cluster-up.sh kill DIR nI          SIGKILL node nI (its actors fail over to the others)
#
# BUILD names the build folder (default build); DRIFTWOOD the binary (default $BUILD/bin/driftwood).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
driftwood=${DRIFTWOOD:-$root/${BUILD:-build}/bin/driftwood}
nodes=(n1 n2 n3)

usage() {
    sed -n '/^#   tools/s/^#   //p' "$0" >&2
    exit 2
}

# shellcheck source=tools/processes.sh
source "$root/tools/processes.sh"

# Waits until the node's log says where it listens; prints the URL. Fails when it exits first or after 60 s.
wait_listening() {
    local log=$1 pid=$2 deadline=$((SECONDS + 60)) port
    while ((SECONDS <= deadline)); do
        port=$(grep -aoE 'listening on http://127\.0\.0\.1:[0-9]+' "$log" | tail -1 | sed 's/.*://') || true
        if [[ -n "$port" ]]; then
            echo "http://127.0.0.1:$port"
            return 0
        fi
        alive "$pid" || break
        sleep 0.05
    done
    return 1
}

stop_nodes() {
    local dir=$1 n
    local -a files=()
    for n in "${nodes[@]}"; do files+=("$dir/$n.pid"); done
    stop_pid_files 20 "${files[@]}"
}

stop_all() {
    stop_nodes "$1"
    "$root/tools/nats-cluster.sh" stop "$1/nats"
}

start() {
    local dir=$1
    shift
    [[ -x "$driftwood" ]] || { echo "cluster-up.sh: no $driftwood (build it first: make)" >&2; exit 1; }
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    local urls n pid url
    urls=$("$root/tools/nats-cluster.sh" start "$dir/nats")
    for n in "${nodes[@]}"; do
        mkdir -p "$dir/node${n#n}"
        : >"$dir/$n.log"
        "$driftwood" serve --cluster "$urls" --node "$n" --store "$dir/node${n#n}" --listen 127.0.0.1:0 "$@" \
            >>"$dir/$n.log" 2>&1 </dev/null &
        echo $! >"$dir/$n.pid"
    done
    for n in "${nodes[@]}"; do
        pid=$(cat "$dir/$n.pid")
        if ! url=$(wait_listening "$dir/$n.log" "$pid"); then
            echo "cluster-up.sh: node $n did not start; its log ($dir/$n.log):" >&2
            tail -n 30 "$dir/$n.log" >&2
            stop_all "$dir"
            exit 1
        fi
        echo "$url" >"$dir/$n.url"
        echo "$n $url"
    done
}

case "${1:-}" in
stop) [[ $# -eq 2 ]] || usage; stop_all "$2" ;;
kill)
    [[ $# -eq 3 && -f "$2/$3.pid" ]] || usage
    pid=$(cat "$2/$3.pid")
    kill -KILL "$pid" 2>/dev/null || true
    while alive "$pid"; do sleep 0.02; done
    rm -f "$2/$3.pid"
    ;;
"" | -*) usage ;;
*) start "$@" ;;
esac
