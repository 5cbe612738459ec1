#!/usr/bin/env python3
"""bench/measure.py: run one command and report what it cost.

Usage: measure.py [--server-pids PID,...] [--out FILE] -- COMMAND [ARG...]

Runs COMMAND (stdin, stdout and stderr are inherited, so `cat f | measure.py
-- haul put - ...` measures haul only, not cat) and appends one JSON line to
FILE (default: stdout) with:
  wall_s       wall-clock seconds from start to exit
  user_s sys_s CPU seconds of COMMAND and every descendant it waited for
               (os.wait4 rusage: what GNU time reports as %U and %S)
  maxrss_kib   peak resident set size of the largest process in that tree:
               VmHWM from /proc, polled every 10 ms for COMMAND and its
               descendants (ru_maxrss, kept as ru_maxrss_kib, is not used:
               the kernel charges a child the RSS of the Python process it
               was forked from, about 14 MiB, when it execs)
  rc           exit status (negative: killed by that signal)
  server_cpu_s CPU seconds the --server-pids processes (and their threads)
               used meanwhile, from /proc/PID/stat: the server's share
  machine_busy_s  non-idle CPU seconds of the whole machine meanwhile
               (/proc/stat); busy minus client minus server is other load
               on the machine, printed so a disturbed run is visible
The exit status is COMMAND's.
"""
import json
import os
import subprocess
import sys
import threading
import time

TICK = os.sysconf("SC_CLK_TCK")


def machine_busy():
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    v = [int(x) for x in fields]
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    return (sum(v[:8]) - idle) / TICK  # guest time is already in user


def proc_cpu(pid):
    """utime+stime of pid and its reaped children, in seconds; 0 if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return 0.0
    rest = s[s.rindex(")") + 2:].split()
    return (int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])) / TICK


def server_cpu(pids):
    return sum(proc_cpu(p) for p in pids)


def tree_pids(pid):
    """pid and its descendants, from /proc/PID/task/*/children."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def hwm_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakRss(threading.Thread):
    """Polls the peak RSS of a process tree until stopped."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, threading.Event()

    def run(self):
        while not self.done.is_set():
            for p in tree_pids(self.pid):
                self.peak = max(self.peak, hwm_kib(p))
            self.done.wait(0.01)


def main(argv):
    pids, out = [], None
    while argv and argv[0] != "--":
        if argv[0] == "--server-pids" and len(argv) > 1:
            pids = [int(p) for p in argv[1].split(",") if p.strip()]
            argv = argv[2:]
        elif argv[0] == "--out" and len(argv) > 1:
            out, argv = argv[1], argv[2:]
        else:
            sys.exit(f"measure.py: unknown option {argv[0]} (see the header)")
    if len(argv) < 2:
        sys.exit("usage: measure.py [--server-pids PID,...] [--out FILE] -- COMMAND [ARG...]")
    cmd = argv[1:]
    busy0, srv0 = machine_busy(), server_cpu(pids)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    peak = PeakRss(proc.pid)
    peak.start()
    # Wait without reaping, so the last poll still sees the process.
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    for p in tree_pids(proc.pid):
        peak.peak = max(peak.peak, hwm_kib(p))
    peak.done.set()
    peak.join()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    busy1, srv1 = machine_busy(), server_cpu(pids)
    rc = os.waitstatus_to_exitcode(status)
    rec = {
        "wall_s": round(wall, 4),
        "user_s": round(ru.ru_utime, 4),
        "sys_s": round(ru.ru_stime, 4),
        "maxrss_kib": peak.peak or ru.ru_maxrss,
        "ru_maxrss_kib": ru.ru_maxrss,
        "rc": rc,
        "server_cpu_s": round(srv1 - srv0, 2),
        "machine_busy_s": round(busy1 - busy0, 2),
    }
    line = json.dumps(rec)
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")
    else:
        print(line)
    proc.returncode = rc  # already reaped by wait4
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
