# tests/integration/brokerlib.sh: sourced after lib.sh by the tests that
# need RabbitMQ (t_dist, t_dclone, t_dbackup, t_hostile_*).  Starts scripts/broker on
# 127.0.0.1 if it is not running (and stops it at exit), sets HAUL_BROKER,
# and gives worker helpers.  A test sets QUEUES (the queue prefix its
# cleanup deletes) and, for the worker helpers, the array B (--broker URL
# --job NAME).
PROBE=${DIST_PROBE:-$(dirname "$HAUL")/tests/dist_probe}
[ -x "$PROBE" ] || { echo "Bail out! $PROBE not built (make all)"; exit 1; }

broker_started=0
if ! "$ROOT/scripts/broker" status >/dev/null 2>&1; then
    "$ROOT/scripts/broker" start >"$SCRATCH/broker.out" 2>&1 ||
        { cat "$SCRATCH/broker.out"; echo "Bail out! could not start the broker"; exit 1; }
    broker_started=1
fi
eval "$("$ROOT/scripts/broker" env)"
case "$HAUL_BROKER" in amqp://*@127.0.0.1:*) ;; *) echo "Bail out! broker $HAUL_BROKER is not loopback"; exit 1 ;; esac
QUEUES=""
# Every distributed command of the test signs with this key (HAUL_KEY_FILE is
# --key-file's default), and workers serve only the test's own roots.
(umask 077; openssl rand -hex 32 >"$SCRATCH/dist.key") ||
    { echo "Bail out! could not make a key file"; exit 1; }
export HAUL_KEY_FILE=$SCRATCH/dist.key
ALLOW=(--allow "$SCRATCH" --allow "s3://$BUCKET")

WORKERS=()
# start_worker NAME [ENV=VALUE...] [-- HAUL-OPTIONS...]: `haul worker` in the
# background (2 threads, -v, serving $SCRATCH and s3://$BUCKET: ALLOW), its log
# in $SCRATCH/NAME.log, its pid in $PID_NAME
start_worker() {
    local name=$1 envs=() extra=()
    shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
    [ "${1:-}" = -- ] && { shift; extra=("$@"); }
    env "${envs[@]}" "$HAUL" worker "${B[@]}" "${ALLOW[@]}" --threads 2 --name "$name" -v "${extra[@]}" \
        >"$SCRATCH/$name.log" 2>&1 &
    WORKERS+=($!)
    eval "PID_$name=$!"
}
# Polls until `haul ctl status` lists N workers (at most 20 s).
wait_workers() {
    local want=$1 i got
    for i in $(seq 40); do
        got=$("$HAUL" ctl "${B[@]}" status --wait-ms 500 2>/dev/null | grep -c '^worker ')
        [ "$got" -ge "$want" ] && return 0
    done
    echo "#   only $got workers answered (wanted $want)"
    return 1
}
_broker_cleanup() {
    local p
    for p in "${WORKERS[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    [ -n "$QUEUES" ] && "$PROBE" --prefix "$QUEUES" delete >/dev/null 2>&1
    [ "$broker_started" = 1 ] && "$ROOT/scripts/broker" stop >/dev/null 2>&1
    _cleanup
}
trap _broker_cleanup EXIT
