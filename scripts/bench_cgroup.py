#!/usr/bin/env python3
"""scripts/bench runs this (as root): the cost of moving a new process into
a cgroup, the step every worker start takes (sandbox step 3'). 20 times
each, a forked child writes `0` (itself) into a fresh group's
`cgroup.procs`, and on v1 into its `tasks` (the worker's way there: one
thread, so no host-wide lock); prints `cgroup_move_ms=<median>
cgroup_tasks_move_ms=<median or -> favordynmods=<yes|no>` (whether a
cgroup mount carries the option that makes `cgroup.procs` moves cheap;
docs/sandbox.md)."""
import os
import statistics
import struct
import time

V2_ROOT = "/sys/fs/cgroup"
V1_MEMORY = "/sys/fs/cgroup/memory"


def move_ms(path):
    """A forked child joins the group by writing `0` to `path`; the time of
    that write, in ms, measured in the child."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        t0 = time.perf_counter()
        with open(path, "w") as f:
            f.write("0")
        os.write(w, struct.pack("d", (time.perf_counter() - t0) * 1e3))
        os._exit(0)
    os.close(w)
    ms = struct.unpack("d", os.read(r, 8))[0]
    os.close(r)
    os.waitpid(pid, 0)
    return ms


def median_of(path):
    times = []
    for _ in range(20):
        # Apart, as worker starts are: back-to-back moves share one grace period.
        time.sleep(0.05)
        times.append(move_ms(path))
    return statistics.median(times)


def main():
    v2 = os.path.exists(os.path.join(V2_ROOT, "cgroup.controllers"))
    group = os.path.join(V2_ROOT if v2 else V1_MEMORY, f"bulkhead-bench-move-{os.getpid()}")
    os.mkdir(group)
    try:
        procs = median_of(os.path.join(group, "cgroup.procs"))
        tasks = "-" if v2 else f"{median_of(os.path.join(group, 'tasks')):.2f}"
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
    print(f"cgroup_move_ms={procs:.2f} cgroup_tasks_move_ms={tasks} favordynmods={'yes' if fast else 'no'}")


if __name__ == "__main__":
    main()
