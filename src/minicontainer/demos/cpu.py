"""demo cpu: a busy loop under --cpus 0.05, measured."""

from __future__ import annotations

import re

from minicontainer.demos import Demo, Step, contains


def _near_limit(out):
    m = re.search(r"cpu: average ([0-9.]+)% of one CPU", out.text)
    if not m:
        return "the report has no CPU average"
    # 5% is the quota per 100 ms period; a sample can catch a period's burst,
    # the average over 3 s cannot be far above it.
    return None if float(m.group(1)) <= 10 else f"the average ({m.group(1)}%) is far above the 5% limit"


def steps(ctx):
    return [
        Step(
            shows="yes > /dev/null, a busy loop that would take a whole CPU, for 3 s under --cpus 0.05",
            command="minicontainer run --rm --cpus 0.05 --report $T/cpu.json mini sh -c 'yes > /dev/null & sleep 3; kill $!'"
                    "; echo \"exit status $?\"",
            notice="nothing on screen, and exit status 0: the limit does not kill, it only makes the loop wait "
                   "(the shell stops it after 3 s)",
            check=contains("exit status 0"),
        ),
        Step(
            shows="the measured CPU beside the limit",
            command=f"minicontainer report $T/cpu.json --html {ctx.out}/cpu.html | grep -E '^(ran |cpu:|charts:)'",
            notice="the average stays at about 5% of one CPU, the limit; 'throttled' is the time the scheduler held "
                   "the cgroup back, in about 30 periods of 100 ms",
            check=lambda out: contains("limit 5% (--cpus 0.05)", "throttled", "charts:")(out) or _near_limit(out),
        ),
    ]


DEMO = Demo(
    name="cpu",
    title="a CPU limit: CFS bandwidth control",
    intro="""
        --cpus 0.05 gives the container's cgroup 5 ms of CPU time in every 100 ms period (cpu.max on cgroup v2,
        cpu.cfs_quota_us and cpu.cfs_period_us on v1). A program that wants more simply waits for the next period.
        The run is sampled with --report, and the report shows the measured CPU beside the limit.
    """,
    steps=steps,
)
