#!/usr/bin/env python3
"""scripts/bench runs this (as root): the cost of one move of a process into
a cgroup, the step every worker start takes (sandbox step 3'). Writes the
pid of a sleeping child into a fresh group's cgroup.procs, 20 times, and
prints `cgroup_move_ms=<median> favordynmods=<yes|no>` (whether a cgroup
mount carries the option that makes moves cheap; docs/sandbox.md)."""
import os
import statistics
import subprocess
import time

V2_ROOT = "/sys/fs/cgroup"
V1_MEMORY = "/sys/fs/cgroup/memory"


def main():
    base = V2_ROOT if os.path.exists(os.path.join(V2_ROOT, "cgroup.controllers")) else V1_MEMORY
    group = os.path.join(base, f"bulkhead-bench-move-{os.getpid()}")
    os.mkdir(group)
    times = []
    try:
        for _ in range(20):
            child = subprocess.Popen(["sleep", "5"])
            time.sleep(0.02)
            t0 = time.perf_counter()
            with open(os.path.join(group, "cgroup.procs"), "w") as f:
                f.write(str(child.pid))
            times.append((time.perf_counter() - t0) * 1e3)
            child.kill()
            child.wait()
    finally:
        for _ in range(50):
            try:
                os.rmdir(group)
                break
            except OSError:
                time.sleep(0.02)
    with open("/proc/mounts") as f:
        fast = any(
            l.split()[2] in ("cgroup", "cgroup2") and "favordynmods" in l.split()[3].split(",")
            for l in f
            if len(l.split()) > 3
        )
    print(f"cgroup_move_ms={statistics.median(times):.2f} favordynmods={'yes' if fast else 'no'}")


if __name__ == "__main__":
    main()
