# bench/distlib.sh: sourced by bench/dclone.sh and bench/dbackup.sh (after
# they set HAUL, HAUL_BROKER, JOB, THREADS and WORK): the broker's CPU
# time, a clock, and `haul worker` processes started and stopped.
beam_cpu() { # broker user+sys seconds
    local pid; pid=$(cat /tmp/haul-broker/pids/beam.pid 2>/dev/null) || { echo 0; return; }
    awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$pid/stat"
}
now() { date +%s.%N; }
WORKER_PIDS=()
# Signed like a real run (the key made once per bench run); the bench's workers
# serve whatever its coordinator names (the local machine's own trees).
[ -n "${HAUL_KEY_FILE:-}" ] || { (umask 077; openssl rand -hex 32 >"$WORK/dist.key"); export HAUL_KEY_FILE=$WORK/dist.key; }
# workers_start N: N workers of THREADS threads, returns once ctl status lists them
workers_start() {
    local i
    for i in $(seq 1 "$1"); do
        "$HAUL" worker --broker "$HAUL_BROKER" --job "$JOB" --allow-any --threads "$THREADS" --name "b$i" 2>"$WORK/worker-$i.log" &
        WORKER_PIDS+=($!)
    done
    for i in $(seq 100); do
        [ "$("$HAUL" ctl --broker "$HAUL_BROKER" --job "$JOB" status --wait-ms 300 | grep -c '^worker ')" -ge "$1" ] && return 0
    done
    echo "$(basename "$0"): workers did not start" >&2; exit 1
}
workers_stop() {
    "$HAUL" ctl --broker "$HAUL_BROKER" --job "$JOB" stop >/dev/null
    wait "${WORKER_PIDS[@]}"
    WORKER_PIDS=()
}
