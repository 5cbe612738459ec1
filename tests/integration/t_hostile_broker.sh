#!/usr/bin/env bash
# The broker's password and the way to the broker (audit H4, issue 13 item
# 3): --broker-file refuses a file others may read and takes a 0600 one; a
# password given with --broker (holding '/', '@' and ':') is gone from
# /proc/PID/cmdline of the running worker and never printed, not even when
# RabbitMQ refuses the login; amqps:// with --broker-ca carries a
# distributed clone end to end, and a broker certificate from an unknown CA
# fails at once in one line naming the host and the reason.
#
# The TLS listener belongs to a second broker instance that this file starts
# (scripts/broker with its own dir and ports, HAUL_BROKER_TLS=1) and stops at
# exit, so the shared broker the other tests use is never touched.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/brokerlib.sh"
JOB="t-hostile-broker-$$"
QUEUES="haul.$JOB"

# The second instance: first free set of ports from a short list (TLS on
# $base, plain on $base+1), a dir of its own per set.
for base in 5691 5791 5891; do
    busy=0
    for p in $base $((base + 1)) $((base + 20000)) $((base - 1300)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && busy=1
    done
    [ "$busy" = 0 ] && break
done
TB_DIR=/tmp/haul-broker-hostile-$base
tb() {
    HAUL_BROKER_DIR=$TB_DIR HAUL_BROKER_TLS=1 HAUL_BROKER_TLS_PORT=$base HAUL_BROKER_PORT=$((base + 1)) \
        HAUL_BROKER_DIST_PORT=$((base + 20000)) HAUL_BROKER_EPMD_PORT=$((base - 1300)) \
        "$ROOT/scripts/broker" "$@"
}
_tb_cleanup() {
    local p
    for p in "${WORKERS[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    [ -n "$QUEUES" ] && "$PROBE" --url "$TB_PLAIN" --prefix "$QUEUES" delete >/dev/null 2>&1
    tb stop >/dev/null 2>&1 && rm -f "$TB_DIR.lock"
    QUEUES=""
    _broker_cleanup
}
trap _tb_cleanup EXIT
tb start >"$SCRATCH/tb.out" 2>&1 || { cat "$SCRATCH/tb.out"; echo "Bail out! could not start the TLS broker"; exit 1; }
eval "$(tb env)"
TB_PLAIN=$HAUL_BROKER TB_TLS=$HAUL_BROKER_TLS TB_CA=$HAUL_BROKER_CA
case "$TB_TLS" in amqps://guest:guest@127.0.0.1:$base/) ;; *) echo "Bail out! no TLS listener ($TB_TLS)"; exit 1 ;; esac
unset HAUL_BROKER HAUL_BROKER_TLS HAUL_BROKER_CA

# A user whose password holds '/', '@' and ':' (openssl rand -base64 gives '/').
PW='s3cr/t@pa:ss'
tb ctl add_user hostile "$PW" >/dev/null && tb ctl set_permissions -p / hostile '.*' '.*' '.*' >/dev/null ||
    { echo "Bail out! could not add the test user"; exit 1; }
HOSTILE="amqp://hostile:$PW@127.0.0.1:$((base + 1))/"
# no_secret TEXT DESCRIPTION: neither password (nor a piece of it) is in TEXT
no_secret() {
    case $1 in *s3cr*|*pa:ss*|*wr/ong*|*guest:guest*) ok 1 "$2"; echo "#   text: $1" ;; *) ok 0 "$2" ;; esac
}

# ---- --broker-file: who may read it ----
F=$SCRATCH/broker.url
printf '# the broker\nHAUL_BROKER=%s\n' "$TB_PLAIN" >"$F"
chmod 0644 "$F"
run ctl --broker-file "$F" --job "$JOB" status --wait-ms 200
is "$RC" 2 "--broker-file mode 0644: refused (usage)"
like "$ERR" "broker-file $F: mode 0644 .*chmod 600" "the refusal names the file, its mode and the fix"
chown nobody "$F"; chmod 0600 "$F"
run ctl --broker-file "$F" --job "$JOB" status --wait-ms 200
is "$RC" 2 "--broker-file owned by another user: refused"
like "$ERR" "owned by another user" "the refusal says why"
chown root "$F"
ln -s "$F" "$SCRATCH/link.url"
run ctl --broker-file "$SCRATCH/link.url" --job "$JOB" status --wait-ms 200
like "$RC:$ERR" "^2:.*symbolic link" "--broker-file through a symbolic link: refused"
run ctl --broker-file "$F" --job "$JOB" status --wait-ms 200
is "$RC" 0 "--broker-file mode 0600: works"
like "$OUT" "workers answered" "ctl status answered through it"
is "$ERR" "" "no warning with --broker-file"

# ---- a password in argv and in errors ----
run ctl --broker "amqp://hostile:wr/ong@127.0.0.1:$((base + 1))/" --job "$JOB" status --wait-ms 200
is "$RC" 1 "wrong password holding '/': exit 1"
like "$ERR" "amqp://hostile:\*\*\*@127.0.0.1:$((base + 1))/: login: ACCESS_REFUSED" "RabbitMQ's refusal with the URL redacted"
no_secret "$OUT$ERR" "the wrong password is printed nowhere"
printf '%s\n' "amqp://hostile:wr/ong@127.0.0.1:$((base + 1))/" >"$SCRATCH/wrong.url"; chmod 600 "$SCRATCH/wrong.url"
run worker --broker-file "$SCRATCH/wrong.url" --job "$JOB" --allow "$SCRATCH"
like "$RC:$ERR" "^1:.*hostile:\*\*\*@.*ACCESS_REFUSED" "worker with a wrong password from --broker-file: exit 1, refusal named"
no_secret "$OUT$ERR" "...and the password is printed nowhere"

B=(--broker "$HOSTILE" --job "$JOB")
start_worker argv
pid=$PID_argv
for _ in $(seq 100); do grep -q "serving job" "$SCRATCH/argv.log" 2>/dev/null && break; sleep 0.1; done
like "$(cat "$SCRATCH/argv.log")" "serving job $JOB at amqp://hostile:\*\*\*@127.0.0.1:$((base + 1))/" \
    "a worker given the password in --broker logs in (password with '/', '@', ':') and names the URL redacted"
cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)
like "$cmdline" "worker --broker amqp://hostile:\*\*\*@127.0.0.1" "/proc/PID/cmdline of the running worker shows user:***@host"
no_secret "$cmdline $(ps -o args= -p "$pid" 2>/dev/null)" "/proc/PID/cmdline and ps no longer show the password"
is "$(grep -c 'warning: the password given with --broker' "$SCRATCH/argv.log")" 1 "one warning pointing to --broker-file"
like "$(cat "$SCRATCH/argv.log")" "--broker-file" "the warning names --broker-file"
kill "$pid"; wait "$pid" 2>/dev/null
no_secret "$(cat "$SCRATCH/argv.log")" "the worker's log never shows the password"

# ---- amqps:// ----
printf '%s\n' "$TB_TLS" >"$SCRATCH/tls.url"; chmod 600 "$SCRATCH/tls.url"
B=(--broker-file "$SCRATCH/tls.url" --broker-ca "$TB_CA" --job "$JOB")
S=$SCRATCH/src D=$SCRATCH/dst
mkdir -p "$S/a/b" "$D"
for i in $(seq 1 30); do mkfile "$S/a/f$i" $((i * 1000)); done
mkfile "$S/a/b/big" 3000000
start_worker tls
wait_workers 1
ok $? "a worker over amqps:// with --broker-ca answers ctl status (over TLS too)"
timeout 120 "$HAUL" clone "${B[@]}" "$S" "$D" >"$SCRATCH/clone.out" 2>&1
is "$?" 0 "clone over amqps:// with the CA: exit 0"
diff -r "$S" "$D" >/dev/null
ok $? "the tree arrived, byte for byte"
like "$(cat "$SCRATCH/tls.log")" "serving job $JOB at amqps://guest:\*\*\*@127.0.0.1:$base/" "the worker says it serves over amqps"
no_secret "$(cat "$SCRATCH/tls.log" "$SCRATCH/clone.out")" "no password in the worker's or the clone's output"

# Unknown CA: the system store, then another private CA.
t0=$SECONDS
run ctl --broker-file "$SCRATCH/tls.url" --job "$JOB" status --wait-ms 200
is "$RC" 1 "amqps:// without the broker's CA: exit 1"
is "$(printf '%s\n' "$ERR" | grep -c .)" 1 "...in one line"
like "$ERR" "amqps://guest:\*\*\*@127.0.0.1:$base/: TLS: the broker's certificate is not trusted: self.signed certificate in certificate chain \(give its CA with --broker-ca FILE\)" \
    "...naming the host and the reason"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj "/CN=other CA" \
    -keyout "$SCRATCH/other.key" -out "$SCRATCH/other.pem" >/dev/null 2>&1
timeout 30 "$HAUL" worker --broker-file "$SCRATCH/tls.url" --broker-ca "$SCRATCH/other.pem" --job "$JOB" --allow "$SCRATCH" \
    >"$SCRATCH/other.out" 2>&1
rc=$?
is "$rc" 1 "a worker with another CA: exit 1"
ok $((SECONDS - t0 > 20)) "...at once (not retrying)"
like "$(cat "$SCRATCH/other.out")" "^haul worker: amqps://guest:\*\*\*@127.0.0.1:$base/: TLS: the broker's certificate is not trusted" \
    "...one line naming the host and the reason"
is "$(grep -c . "$SCRATCH/other.out")" 1 "...and only that line"
run ctl --broker "amqps://guest@localhost:$base/" --broker-ca "$TB_CA" --job "$JOB" status --wait-ms 200
like "$RC:$(printf '%s\n' "$OUT" | tail -1)" "^0:.*answered" "the certificate names localhost too"
run ctl --broker-file "$SCRATCH/tls.url" --broker-no-verify --job "$JOB" status --wait-ms 200
like "$RC:$ERR" "^0:.*warning: --broker-no-verify" "--broker-no-verify connects, with a warning"
run ctl --broker-file "$F" --broker-ca "$TB_CA" --job "$JOB" status
like "$RC:$ERR" "^2:.*for amqps:// brokers" "--broker-ca with an amqp:// URL: usage error"

done_testing
