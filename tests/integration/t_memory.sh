#!/usr/bin/env bash
# Peak memory stays within the configured buffer budget whatever the object's
# size: measured with getrusage (RUSAGE_CHILDREN) on the plain (non-sanitized)
# binary, for files, pipes and downloads.  No timing is asserted.
. "$(dirname "$0")/lib.sh"
PLAIN="$ROOT/build/haul"   # ASan's shadow memory would hide the budget

run mb "s3://$BUCKET"; ok $RC "mb"
MIB=$((1024 * 1024))
# Budget: 4 buffers x 5 MiB = 20 MiB of transfer memory, plus the fixed cost
# of the process (libcurl, OpenSSL, libxml2, connection buffers): 40 MiB.
LIMIT_KIB=$(( (20 + 40) * 1024 ))
OPTS="--part-size 5M -j 2 --num-largefile-buffers 4 -q"

peak_kib() {  # runs a shell command, prints the peak RSS of its children in KiB
    python3 - "$@" <<'PY'
import resource, subprocess, sys
subprocess.run(["bash", "-c", sys.argv[1]], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
}

for size_mib in 60 240; do
    head -c $((size_mib * MIB)) /dev/urandom > "$SCRATCH/f"
    put=$(peak_kib "'$PLAIN' put $OPTS '$SCRATCH/f' s3://$BUCKET/f$size_mib")
    ok $? "put of $size_mib MiB"
    [ "$put" -lt "$LIMIT_KIB" ]; ok $? "put of $size_mib MiB peaks at $put KiB, under $LIMIT_KIB KiB"
    pipe=$(peak_kib "cat '$SCRATCH/f' | '$PLAIN' put $OPTS - s3://$BUCKET/p$size_mib")
    [ "$pipe" -lt "$LIMIT_KIB" ]; ok $? "stdin upload of $size_mib MiB peaks at $pipe KiB, under $LIMIT_KIB KiB"
    get=$(peak_kib "'$PLAIN' get $OPTS s3://$BUCKET/f$size_mib - | sha256sum > '$SCRATCH/sum'")
    [ "$get" -lt "$LIMIT_KIB" ]; ok $? "download of $size_mib MiB to stdout peaks at $get KiB, under $LIMIT_KIB KiB"
    is "$(cut -d' ' -f1 < "$SCRATCH/sum")" "$(sha256sum < "$SCRATCH/f" | cut -d' ' -f1)" "download of $size_mib MiB intact"
    eval "put_$size_mib=$put get_$size_mib=$get"
    "$PLAIN" rm -q "s3://$BUCKET/f$size_mib"; "$PLAIN" rm -q "s3://$BUCKET/p$size_mib"
done
# Four times the data, (nearly) the same memory: not proportional to size.
[ $((put_240 - put_60)) -lt 8192 ]; ok $? "put: 240 MiB used $((put_240 - put_60)) KiB more than 60 MiB (< 8 MiB)"
[ $((get_240 - get_60)) -lt 8192 ]; ok $? "get: 240 MiB used $((get_240 - get_60)) KiB more than 60 MiB (< 8 MiB)"
done_testing
