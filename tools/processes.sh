# Shell functions for the scripts that start and stop background processes by pid file
# (tools/nats-cluster.sh, tools/cluster-up.sh); sourced, not run.

alive() { # process $1 runs (a zombie does not count)
    kill -0 "$1" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]
}

# stop_pid_files SECONDS FILE...: SIGTERM the process of each pid file that exists (then removes
# the file), waits for all of them, and SIGKILLs those still running after SECONDS.
stop_pid_files() {
    local grace=$1 file pid
    shift
    local -a pids=()
    for file in "$@"; do
        [[ -f "$file" ]] || continue
        pid=$(cat "$file")
        if alive "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
        rm -f "$file"
    done
    local deadline=$((SECONDS + grace))
    for pid in "${pids[@]}"; do
        while alive "$pid"; do
            if ((SECONDS > deadline)); then kill -KILL "$pid" 2>/dev/null || true; fi
            sleep 0.05
        done
    done
}
