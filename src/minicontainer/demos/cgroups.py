"""demo cgroup-v1-v2: the same limits in cgroup v1 and v2 files, and where they are on this host."""

from __future__ import annotations

from minicontainer.demos import Demo, Step, all_of, contains

LIMITS = "-m 80m --cpus 0.5 --pids-limit 20"

# The knobs this demo sets, v2 file = value, v1 file = value (README, "cgroup v2 and v1").
FILE_MAP = """flag            cgroup v2 (one tree)                  cgroup v1 (one tree per controller)
-m 80m          memory/.../memory.max = 83886080      memory/.../memory.limit_in_bytes = 83886080
                memory.swap.max = 83886080 (swap)     memory.memsw.limit_in_bytes = 167772160 (memory + swap)
--cpus 0.5      cpu.max = 50000 100000                cpu/.../cpu.cfs_quota_us = 50000
                                                      cpu/.../cpu.cfs_period_us = 100000
--pids-limit 20 pids.max = 20                         pids/.../pids.max = 20
the container   cgroup.procs (once, in one tree)      cgroup.procs in every hierarchy
"""


def _no_limit_controllers(out):
    listed = out.text.partition("[")[2].partition("]")[0].split()
    taken = sorted({"memory", "cpu", "pids"} & set(listed))
    return f"the v2 tree has {', '.join(taken)} too" if taken else None


def _host():
    from minicontainer.cgroups.detect import detect

    return detect()


def steps(ctx):
    host = _host()
    v1 = host.mode in ("v1", "hybrid")
    steps = [
        Step(
            shows="the cgroup filesystems this host has mounted",
            command="findmnt -n -t cgroup,cgroup2 -o TARGET,FSTYPE",
            notice=("one cgroup (v1) hierarchy per controller group under /sys/fs/cgroup/<controller>"
                    + (f", and a cgroup2 tree at {host.v2_mount}: a 'hybrid' host" if host.v2_mount else "")
                    if v1 else "one cgroup2 tree for every controller: a unified (v2) host"),
            check=contains("cgroup" if v1 else "cgroup2"),
        ),
    ]
    if host.mode == "hybrid" and host.v2_mount:
        steps.append(Step(
            shows="the v2 tree here lacks the controllers the limits need: they are bound to the v1 hierarchies",
            command=f"echo \"controllers in {host.v2_mount}: [$(cat {host.v2_mount}/cgroup.controllers)]\"",
            notice="no memory, cpu or pids: a controller is attached to one version at a time, so on this host "
                   "those limits go to v1 files, and the v2 tree only groups processes (systemd uses it so)",
            check=_no_limit_controllers,
        ))
    steps += [
        Step(
            shows="what minicontainer writes for the limits, each file with its name in the other version",
            command=f"minicontainer run --rm --explain {LIMITS} mini true 2>&1 | "
                    "grep -E '\\[runtime\\] echo .*/(memory|cpu|pids)\\.' | sed 's|/sys/fs/cgroup/.*/\\$ID/||'",
            notice=("the v1 files, one hierarchy each, and beside each the v2 file it would be on a unified host"
                    if v1 else "the v2 files in the container's one cgroup, and beside each its v1 name"),
            check=(contains("memory.limit_in_bytes", "other cgroup version: memory.max", "cpu.cfs_quota_us",
                            "cpu.max", "pids.max") if v1 else
                   contains("memory.max", "memory.limit_in_bytes", "cpu.max", "cpu.cfs_quota_us", "pids.max")),
        ),
        Step(
            shows="the map of the same knobs in both versions",
            command="cat $T/cgroup-files.txt",
            notice="same limits, different files and units: v2's cpu.max holds quota and period in one file, "
                   "v1's memsw limit counts memory + swap where v2's swap.max counts swap alone",
            check=contains("memory.max", "memory.limit_in_bytes"),
        ),
        Step(
            shows="the limits read back inside a container, from its own cgroup at /sys/fs/cgroup",
            command=(f"minicontainer run --rm {LIMITS} mini sh -c 'cd /sys/fs/cgroup; "
                     + ("cat memory/memory.limit_in_bytes cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us pids/pids.max'"
                        if v1 else "cat memory.max cpu.max pids.max'")),
            notice="the values the kernel enforces; the container sees them (read-only) where programs look",
            check=(all_of(contains("83886080", "50000", "100000", "20")) if v1
                   else contains("83886080", "50000 100000", "20")),
        ),
    ]
    return steps


DEMO = Demo(
    name="cgroup-v1-v2",
    title="cgroup v1 and v2: the same limits, different files",
    intro="""
        cgroups limit what namespaces only hide. v1 has one tree per controller (memory, cpu, pids ...), each
        with its own files; v2 has one tree for all, with new file names and sometimes new meanings.
        minicontainer tells them apart from /proc/self/mountinfo and writes the same -m, --cpus and
        --pids-limit into whichever the host has.
    """,
    steps=steps,
    files={"cgroup-files.txt": FILE_MAP},
    needs=(("findmnt", "apt-get install util-linux"),),
)
