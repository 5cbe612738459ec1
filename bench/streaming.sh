#!/usr/bin/env bash
# bench/streaming.sh: haul's streaming-transfer benchmark against aws cli and
# rclone, on a null S3 endpoint (nginx: the clients' own ceiling) and on a real
# Ceph RGW (end to end).  One command, no arguments: bench/streaming.sh
# It builds haul, makes its data, starts its own servers, measures, checks
# every result, writes bench/results/streaming-DATE.md (and .jsonl, the raw
# runs), prints the report and stops and removes everything it started.
# Methodology and how to read the tables: bench/README.md.
#
# Environment (defaults in brackets):
#   BENCH_RUNS_NULL [3], BENCH_RUNS_RGW [2]  runs of every measurement (the
#                              median is shown); RGW runs are slow, 2 keep the
#                              whole benchmark near 15 minutes on 2 cores
#   BENCH_SERVERS ["null rgw"] which servers, in this order
#   BENCH_DIR [/tmp/haul-bench] scratch dir (data, nginx, RGW); removed at the end
#   BENCH_NULL_PORT [7590]     the null endpoint's port on 127.0.0.1
#   BENCH_S3_PORT [7490], BENCH_S3_MON_PORT [6799]  our own RGW instance
#   BENCH_HAUL_TUNED [-j 16]   haul's second, tuned configuration
#   BENCH_BIG_MIB [2048], BENCH_STREAM_MIB [1024]   object sizes (smaller: a quick try)
#   BENCH_RSS_MIB ["1024 4096"] sizes of the peak-RSS uploads (null endpoint)
#   BENCH_KEEP=1               keep BENCH_DIR (data and logs) for inspection
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
RUNS_NULL=${BENCH_RUNS_NULL:-3}
RUNS_RGW=${BENCH_RUNS_RGW:-2}
SERVERS=${BENCH_SERVERS:-null rgw}
WORK=${BENCH_DIR:-/tmp/haul-bench}
NULL_PORT=${BENCH_NULL_PORT:-7590}
S3_PORT=${BENCH_S3_PORT:-7490}
S3_MON_PORT=${BENCH_S3_MON_PORT:-6799}
read -r -a TUNED <<<"${BENCH_HAUL_TUNED:--j 16}"
BIG_MIB=${BENCH_BIG_MIB:-2048}
STREAM_MIB=${BENCH_STREAM_MIB:-1024}
RSS_MIB=${BENCH_RSS_MIB:-1024 4096}
BIG=$((BIG_MIB * 1048576))
STREAM=$((STREAM_MIB * 1048576))
BENCH=$REPO/bench
BUCKET=bench
START=$SECONDS

say() { printf '[%4ds] %s\n' $((SECONDS - START)) "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

# ---- servers we start, and the cleanup that stops exactly them ----------------
NULL_DIR=$WORK/null
S3_DIR=$WORK/s3
s3_env() { env HAUL_S3_DIR="$S3_DIR" HAUL_S3_PORT="$S3_PORT" HAUL_S3_MON_PORT="$S3_MON_PORT" HAUL_S3_STORE=bluestore "$@"; }
RGW_STARTED=0
NULL_STARTED=0

cleanup() {
    local rc=$?
    set +e
    if [ "$NULL_STARTED" = 1 ]; then
        "$BENCH/null-s3/nullctl" stop "$NULL_DIR"
        NULL_STARTED=0
    fi
    if [ "$RGW_STARTED" = 1 ]; then
        s3_env "$REPO/scripts/s3-server" stop
        RGW_STARTED=0
    fi
    if [ "${BENCH_KEEP:-0}" != 1 ] && [ -f "$WORK/.haul-bench" ]; then
        rm -rf "$WORK"
    fi
    exit $rc
}

# ---- preflight -------------------------------------------------------------------
for t in aws rclone curl python3 cmp; do
    command -v "$t" >/dev/null || die "$t is not installed (scripts/install-deps)"
done
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || die "nginx is not installed (scripts/install-deps)"
if [ -e "$WORK" ]; then
    [ -f "$WORK/.haul-bench" ] || die "$WORK exists and is not ours; set BENCH_DIR"
    die "$WORK exists: another benchmark is running, or remove it (rm -rf $WORK)"
fi
mkdir -p "$WORK"/{data,www/$BUCKET,dl,state}
: >"$WORK/.haul-bench"
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building haul (make -j2)"
make -j2 >"$WORK/make.log" 2>&1 || {
    tail -20 "$WORK/make.log" >&2
    die "make failed"
}
# A private copy: others working in this tree may rebuild build/haul meanwhile.
cp build/haul "$WORK/haul"
HAUL=$WORK/haul

DATE=$(date +%F)
mkdir -p "$BENCH/results"
OUT=$BENCH/results/streaming-$DATE
[ -e "$OUT.md" ] && OUT=$BENCH/results/streaming-$(date +%F-%H%M%S)
RAW=$OUT.jsonl
: >"$RAW"

# ---- data --------------------------------------------------------------------------
# Incompressible bytes: the AES-CTR keystream of zeros (as random as
# /dev/urandom for every tool here, ten times faster to make).
gen() { # FILE MIB
    if command -v openssl >/dev/null; then
        head -c "$(($2 * 1048576))" /dev/zero |
            openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:haul-bench-$1" >"$1"
    else
        head -c "$(($2 * 1048576))" /dev/urandom >"$1"
    fi
    [ "$(stat -c %s "$1")" = "$(($2 * 1048576))" ] || die "could not make $1"
}
SRC_BIG=$WORK/data/big
SRC_STREAM=$WORK/data/stream
say "making the data: $BIG_MIB MiB file, $STREAM_MIB MiB stream source"
gen "$SRC_BIG" "$BIG_MIB"
gen "$SRC_STREAM" "$STREAM_MIB"
ETAG_CACHE=$WORK/etag-cache.json

# ---- one measurement -------------------------------------------------------------
# Globals set per server: SRV, ENDPOINT, SERVER_PIDS, RCLONE_REMOTE, RCLONE_UP
# (extra rclone upload flags), GET_KEY (the object the downloads read).

# measure STDIN_FILE|- -- COMMAND...: runs COMMAND under bench/measure.py
# (stdin from STDIN_FILE through cat, or none), leaves its JSON line in
# $WORK/m.json, its output in $WORK/cmd.out and cmd.err; returns its status.
measure() {
    local stdin=$1
    shift 2
    rm -f "$WORK/m.json"
    if [ "$stdin" != - ]; then
        cat "$stdin" | python3 "$BENCH/measure.py" --server-pids "$SERVER_PIDS" --out "$WORK/m.json" -- "$@" \
            >"$WORK/cmd.out" 2>"$WORK/cmd.err"
    else
        python3 "$BENCH/measure.py" --server-pids "$SERVER_PIDS" --out "$WORK/m.json" -- "$@" \
            </dev/null >"$WORK/cmd.out" 2>"$WORK/cmd.err"
    fi
}

# The command of TOOL for OP, in the array CMD; STDIN the file piped in or -.
# KEY is the object uploaded to; downloads read GET_KEY into $WORK/dl/out.
build_cmd() { # TOOL OP KEY
    local tool=$1 op=$2 key=$3 hflags=()
    [ "$tool" = haul-tuned ] && hflags=("${TUNED[@]}")
    STDIN=-
    case $tool:$op in
    haul:put | haul-tuned:put)
        CMD=("$HAUL" put -q "${hflags[@]}" --state-dir "$WORK/state" --endpoint-url "$ENDPOINT" "$SRC_BIG" "s3://$BUCKET/$key") ;;
    haul:get | haul-tuned:get)
        CMD=("$HAUL" get -q "${hflags[@]}" --endpoint-url "$ENDPOINT" "s3://$BUCKET/$GET_KEY" "$WORK/dl/out") ;;
    haul:stdin | haul-tuned:stdin)
        CMD=("$HAUL" put -q "${hflags[@]}" --endpoint-url "$ENDPOINT" - "s3://$BUCKET/$key")
        STDIN=$SRC_STREAM ;;
    aws:put) CMD=(aws s3 cp --only-show-errors --endpoint-url "$ENDPOINT" "$SRC_BIG" "s3://$BUCKET/$key") ;;
    aws:get) CMD=(aws s3 cp --only-show-errors --endpoint-url "$ENDPOINT" "s3://$BUCKET/$GET_KEY" "$WORK/dl/out") ;;
    aws:stdin)
        CMD=(aws s3 cp --only-show-errors --endpoint-url "$ENDPOINT" - "s3://$BUCKET/$key")
        STDIN=$SRC_STREAM ;;
    # rclone's s3 backend (aws-sdk-go) fails on AWS_CA_BUNDLE ("unable to load
    # custom CA bundle, HTTPClient's transport unsupported type"): unset for it.
    rclone:put) CMD=(env -u AWS_CA_BUNDLE rclone copyto -q "${RCLONE_UP[@]}" "$SRC_BIG" "$RCLONE_REMOTE:$BUCKET/$key") ;;
    rclone:get) CMD=(env -u AWS_CA_BUNDLE rclone copyto -q "$RCLONE_REMOTE:$BUCKET/$GET_KEY" "$WORK/dl/out") ;;
    rclone:stdin)
        CMD=(env -u AWS_CA_BUNDLE rclone rcat -q "$RCLONE_REMOTE:$BUCKET/$key")
        STDIN=$SRC_STREAM ;;
    # the wire ceiling: unsigned, to the null endpoint's discarding location
    curl:put) CMD=(curl -sS -f -H "Expect:" -T "$SRC_BIG" -o /dev/null -w "%{size_upload}\n" "$ENDPOINT/.discard/$BUCKET/$key") ;;
    curl:get) CMD=(curl -sS -f -o /dev/null "$ENDPOINT/$BUCKET/$GET_KEY") ;;
    cp:get) CMD=(cp "$SRC_BIG" "$WORK/dl/out") ;;
    *) die "no command for $tool $op" ;;
    esac
}

# check_result TOOL OP KEY: prints "ok" or what is wrong.
check_result() {
    local tool=$1 op=$2 key=$3 src size out
    case $op in
    get)
        [ "$tool" = curl ] && { echo ok; return; } # to /dev/null: curl -f and the size
        if cmp -s "$WORK/dl/out" "$SRC_BIG"; then echo ok; else echo "downloaded file differs from the source"; fi
        rm -f "$WORK/dl/out"
        return ;;
    put) src=$SRC_BIG ;;
    stdin) src=$SRC_STREAM ;;
    esac
    size=$(stat -c %s "$src")
    if [ "$tool" = curl ]; then
        if [ "$(cat "$WORK/cmd.out")" = "$size" ]; then echo ok; else echo "curl sent $(cat "$WORK/cmd.out") bytes of $size"; fi
        return
    fi
    if [ "$SRV" = null ]; then
        out=$(python3 "$BENCH/benchlib.py" nulllog "$NULL_DIR/access.log" "$BUCKET/$key" "$size" 2>&1) &&
            echo ok || echo "${out##*check failed: }"
    else
        # HEAD with curl's own SigV4: independent of the tool under test
        local head etag len
        head=$(curl -sS -f -I --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
            -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
            "$ENDPOINT/$BUCKET/$key" 2>&1 | tr -d '\r') || {
            echo "HEAD failed: $head" | head -1
            return
        }
        etag=$(sed -n 's/^[Ee][Tt]ag: *//p' <<<"$head")
        len=$(sed -n 's/^[Cc]ontent-[Ll]ength: *//p' <<<"$head")
        out=$(python3 "$BENCH/benchlib.py" etag "$src" "$etag" "${len:-0}" "$ETAG_CACHE" 2>&1) &&
            echo ok || echo "${out##*check failed: }"
    fi
}

ORDER_haul=0 ORDER_haul_tuned=1 ORDER_aws=2 ORDER_rclone=3 ORDER_curl=4 ORDER_cp=5

# run_one TOOL OP REP [KEY]: one measured run, checked and recorded.
run_one() {
    local tool=$1 op=$2 rep=$3 key=${4:-} label bytes rc=0 check order_var
    [ -n "$key" ] || key=$op-$tool
    build_cmd "$tool" "$op" "$key"
    case $op in stdin) bytes=$STREAM ;; *) bytes=$BIG ;; esac
    [ "$SRV" = null ] && : >"$NULL_DIR/access.log"
    measure "$STDIN" -- "${CMD[@]}" || rc=$?
    if [ "$rc" != 0 ] || [ ! -s "$WORK/m.json" ]; then
        check="exit status $rc: $(head -c 300 "$WORK/cmd.err" | tr '\n' ' ')"
        [ -s "$WORK/m.json" ] || echo '{"wall_s":0,"user_s":0,"sys_s":0,"maxrss_kib":0,"rc":'"$rc"',"server_cpu_s":0,"machine_busy_s":0}' >"$WORK/m.json"
        rm -f "$WORK/dl/out"
    else
        check=$(check_result "$tool" "${op%-rss}" "$key")
    fi
    order_var=ORDER_${tool//-/_}
    label=$(printf '{"server":"%s","tool":"%s","op":"%s","rep":%d,"bytes":%d,"order":%d,"key":"%s","argv":%s}' \
        "$SRV" "$(tool_name "$tool")" "$op" "$rep" "$bytes" "${!order_var}" "$key" \
        "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "${CMD[@]}")")
    say "$(python3 "$BENCH/benchlib.py" record "$RAW" "$WORK/m.json" "$label" "$check")"
    # objects on RGW are deleted at once: its space comes back at the next gc
    if [ "$SRV" = rgw ] && [ "$op" != get ]; then
        "$HAUL" rm -q --endpoint-url "$ENDPOINT" "s3://$BUCKET/$key" >/dev/null 2>&1 || true
    fi
}

tool_name() {
    case $1 in
    haul-tuned) echo "haul ${TUNED[*]}" ;;
    curl) echo "curl (wire ceiling)" ;;
    cp) echo "cp (file-write ceiling)" ;;
    *) echo "$1" ;;
    esac
}

# run_server: all tools, ops and runs on the current server, run-major so
# that a disturbance on the shared machine hits every tool alike.
run_server() {
    local rep tool op
    for rep in $(seq "$1"); do
        for op in put get stdin; do
            for tool in "${TOOLS[@]}"; do
                case $tool:$op in curl:stdin | cp:put | cp:stdin) continue ;; esac
                run_one "$tool" "$op" "$rep"
            done
        done
        if [ "$SRV" = rgw ]; then rgw_gc; fi
    done
}

rgw_gc() {
    timeout 120 radosgw-admin -c "$S3_DIR/ceph.conf" gc process --include-all >/dev/null 2>&1 || true
}

# ---- environment header ----------------------------------------------------------
fault_cost() { # microseconds per first touch of a 4 KiB page (this VM's main quirk)
    python3 - <<'EOF'
import mmap, time
n = 256 << 20
m = mmap.mmap(-1, n)
t = time.perf_counter()
for i in range(0, n, 4096):
    m[i] = 1
print(f"{(time.perf_counter() - t) / (n // 4096) * 1e6:.1f}")
EOF
}

HEADER=$WORK/header.md
{
    echo "# haul streaming benchmark, $(date '+%F %H:%M %Z')"
    echo
    echo "Command: \`bench/streaming.sh\` (servers: $SERVERS; runs: $RUNS_NULL on null, $RUNS_RGW on RGW). Method: bench/README.md."
    echo
    echo "- haul: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src include Makefile 2>/dev/null || echo ' plus uncommitted changes in src/'), built with \`make -j2\` (-O2)"
    echo "- peers: $(aws --version 2>&1 | head -1); $(rclone version 2>/dev/null | head -1); $(curl --version | head -1 | cut -d' ' -f1-3)"
    echo "- servers: $(/usr/sbin/nginx -v 2>&1 | sed 's/nginx version: //'); $(radosgw --version 2>/dev/null | cut -d' ' -f1-3)"
    echo "- machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(free -g | awk '/^Mem/{print $2}') GiB RAM, $(uname -r)"
    echo "- load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg); first touch of a fresh 4 KiB page costs $(fault_cost) µs here (a VM quirk that makes every freshly allocated buffer and every newly written file page expensive)"
    echo "- sizes: ${BIG_MIB} MiB file, ${STREAM_MIB} MiB stream; MB/s = 10^6 bytes/s; medians"
} >"$HEADER"

# ---- null endpoint ---------------------------------------------------------------
run_null() {
    SRV=null
    ENDPOINT=http://127.0.0.1:$NULL_PORT
    export AWS_ACCESS_KEY_ID=nullS3 AWS_SECRET_ACCESS_KEY=nullS3secret AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
    unset AWS_ENDPOINT_URL S3_ENDPOINT_URL AWS_PROFILE
    # The downloads read the source file itself (page cache); the stream key
    # of rclone rcat exists with the stream's size: rcat HEADs the object after
    # a stream upload to learn its size (--s3-no-head does not stop that).
    ln "$SRC_BIG" "$WORK/www/$BUCKET/src"
    ln "$SRC_STREAM" "$WORK/www/$BUCKET/stdin-rclone"
    GET_KEY=src
    # glibc: never give memory back (no mmap for big blocks, no trim): nginx
    # reuses its body buffers instead of faulting fresh pages for every part.
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736 \
        "$BENCH/null-s3/nullctl" start "$NULL_DIR" "$NULL_PORT" "$WORK/www"
    NULL_STARTED=1
    SERVER_PIDS=$(pgrep -P "$(cat "$NULL_DIR/nginx.pid")" | paste -sd, -)
    export RCLONE_CONFIG=/dev/null RCLONE_CONFIG_NULLS3_TYPE=s3 RCLONE_CONFIG_NULLS3_PROVIDER=Other \
        RCLONE_CONFIG_NULLS3_ENDPOINT=$ENDPOINT RCLONE_CONFIG_NULLS3_REGION=us-east-1 \
        RCLONE_CONFIG_NULLS3_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID RCLONE_CONFIG_NULLS3_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
    RCLONE_REMOTE=nulls3
    # rclone HEADs an uploaded file to check it; the null endpoint has nothing
    # to show (404): --s3-no-head (rclone then takes size and MD5 from what it
    # sent).
    RCLONE_UP=(--s3-no-head)
    say "null endpoint: warming up nginx (its body buffers) and the page cache"
    "$HAUL" put -q --no-resume -j 16 --endpoint-url "$ENDPOINT" "$SRC_BIG" "s3://$BUCKET/warmup"
    curl -sS -f -H "Expect:" -T "$SRC_BIG" -o /dev/null "$ENDPOINT/.discard/$BUCKET/warmup"
    curl -sS -f -o /dev/null "$ENDPOINT/$BUCKET/src"
    cat "$SRC_STREAM" >/dev/null
    TOOLS=(haul haul-tuned aws rclone curl cp)
    run_server "$RUNS_NULL"
    say "null endpoint: haul's peak RSS by size"
    local mib f
    for mib in $RSS_MIB; do
        f=$WORK/data/rss-$mib
        if [ "$mib" = "$BIG_MIB" ]; then ln "$SRC_BIG" "$f"; elif [ "$mib" = "$STREAM_MIB" ]; then ln "$SRC_STREAM" "$f"; else gen "$f" "$mib"; fi
        rss_one put-rss "$f" "$mib"
        rss_one stdin-rss "$f" "$mib"
        rm -f "$f"
    done
    "$BENCH/null-s3/nullctl" stop "$NULL_DIR"
    NULL_STARTED=0
}

rss_one() { # OP FILE MIB
    local key=$1-$3 bytes check rc=0
    if [ "$1" = put-rss ]; then
        CMD=("$HAUL" put -q --state-dir "$WORK/state" --endpoint-url "$ENDPOINT" "$2" "s3://$BUCKET/$key")
        STDIN=-
    else
        CMD=("$HAUL" put -q --endpoint-url "$ENDPOINT" - "s3://$BUCKET/$key")
        STDIN=$2
    fi
    bytes=$(stat -c %s "$2")
    : >"$NULL_DIR/access.log"
    measure "$STDIN" -- "${CMD[@]}" || rc=$?
    if [ "$rc" = 0 ]; then
        check=$(python3 "$BENCH/benchlib.py" nulllog "$NULL_DIR/access.log" "$BUCKET/$key" "$bytes" 2>&1) &&
            check=ok || check=${check##*check failed: }
    else
        check="exit status $rc: $(head -c 300 "$WORK/cmd.err" | tr '\n' ' ')"
        echo '{"wall_s":1,"user_s":0,"sys_s":0,"maxrss_kib":0,"rc":'"$rc"',"server_cpu_s":0,"machine_busy_s":0}' >"$WORK/m.json"
    fi
    say "$(python3 "$BENCH/benchlib.py" record "$RAW" "$WORK/m.json" \
        "$(printf '{"server":"null","tool":"haul","op":"%s","rep":1,"bytes":%d,"order":0,"key":"%s"}' "$1" "$bytes" "$key")" "$check")"
}

# ---- Ceph RGW ----------------------------------------------------------------------
run_rgw() {
    SRV=rgw
    say "RGW: starting our own instance (bluestore) on port $S3_PORT, dir $S3_DIR"
    RGW_STARTED=1
    s3_env "$REPO/scripts/s3-server" start
    eval "$(s3_env "$REPO/scripts/s3-server" env)"
    ENDPOINT=$AWS_ENDPOINT_URL
    unset AWS_ENDPOINT_URL
    SERVER_PIDS=$(cat "$S3_DIR"/pids/*.pid | paste -sd, -)
    export RCLONE_CONFIG=/dev/null RCLONE_CONFIG_RGW_TYPE=s3 RCLONE_CONFIG_RGW_PROVIDER=Ceph \
        RCLONE_CONFIG_RGW_ENDPOINT=$ENDPOINT RCLONE_CONFIG_RGW_REGION=us-east-1 \
        RCLONE_CONFIG_RGW_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID RCLONE_CONFIG_RGW_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
    RCLONE_REMOTE=rgw
    RCLONE_UP=()
    "$HAUL" mb -q --endpoint-url "$ENDPOINT" "s3://$BUCKET"
    # The object every tool downloads, uploaded once by haul (8 MiB parts) and
    # checked like every upload.
    GET_KEY=src
    say "RGW: uploading the download source (also the warm-up)"
    "$HAUL" put -q --no-resume --endpoint-url "$ENDPOINT" "$SRC_BIG" "s3://$BUCKET/$GET_KEY"
    local c
    c=$(check_result haul put "$GET_KEY")
    [ "$c" = ok ] || die "the download source on RGW failed its check: $c"
    TOOLS=(haul haul-tuned aws rclone)
    run_server "$RUNS_RGW"
    "$HAUL" rm -q --endpoint-url "$ENDPOINT" "s3://$BUCKET/$GET_KEY" >/dev/null 2>&1 || true
    s3_env "$REPO/scripts/s3-server" stop
    RGW_STARTED=0
}

for s in $SERVERS; do
    case $s in
    null) run_null ;;
    rgw) run_rgw ;;
    *) die "unknown server $s (null or rgw)" ;;
    esac
done

say "writing $OUT.md"
echo "- total benchmark time: $((SECONDS - START)) s; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$HEADER"
report_rc=0
python3 "$BENCH/benchlib.py" report "$RAW" "$OUT.md" "$HEADER" || report_rc=$?
cat "$OUT.md"
echo
echo "report: $OUT.md   raw runs: $RAW" >&2
[ "$report_rc" = 0 ] || die "some runs failed their checks (see 'Failed runs')"
