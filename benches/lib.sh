# Shared pieces of the benchmark scripts (sourced, not run): installing Debian packages,
# the processes a script started (stopped by PID on exit, never by name), CPU time and memory
# of a process tree, SIPp's stat files, a tiny HTTP GET. Loopback only.
# shellcheck shell=bash

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

APT_UPDATED=0
# apt_install PACKAGE...: install Debian packages (one `apt-get update` per script run).
apt_install() {
    if [ "$APT_UPDATED" = 0 ]; then
        as_root apt-get update
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

# Processes this script started; `bench_cleanup` (the EXIT trap) stops exactly these.
PIDS=()
bench_cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}

# stop_pid PID: TERM, up to 10 s, then KILL.
stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# descendants PID: every process below PID (Kamailio forks its workers).
descendants() {
    local kid
    for kid in $(ps -o pid= --ppid "$1" 2>/dev/null || true); do
        echo "$kid"
        descendants "$kid"
    done
}

# tree_ticks PID...: utime+stime (clock ticks) of the processes and all their descendants
# (a process's /proc/PID/stat already sums its threads).
tree_ticks() {
    local total=0 root pid t
    for root in "$@"; do
        for pid in "$root" $(descendants "$root"); do
            if t=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}'); then
                total=$((total + ${t:-0}))
            fi
        done
    done
    echo "$total"
}

# tree_pss_mb PID...: proportional set size (MB) of the process trees: shared memory
# (Kamailio's shm) counted once over all the processes that map it.
tree_pss_mb() {
    local total=0 root pid kb
    for root in "$@"; do
        for pid in "$root" $(descendants "$root"); do
            kb=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || true)
            total=$((total + ${kb:-0}))
        done
    done
    echo $((total / 1024))
}

# stat_field FILE COLUMN: value of COLUMN in the last row of SIPp stat file FILE (0 if none).
stat_field() {
    [ -s "$1" ] || { echo 0; return; }
    awk -F';' -v col="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
        NF > 1 && c { v = $c } END { print (v == "" ? 0 : v) }' "$1"
}

# http_get HOST PORT PATH: minimal HTTP GET over bash's /dev/tcp (no curl needed).
http_get() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" "$3" "$1" >&3 && cat <&3' \
        http_get "$1" "$2" "$3"
}

# wait_udp IP PORT PID: until something listens on IP:PORT/udp (10 s), while PID lives.
wait_udp() {
    for _ in $(seq 100); do
        ss -lunH 2>/dev/null | awk '{print $4}' | grep -qx "$1:$2" && return 0
        kill -0 "$3" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
