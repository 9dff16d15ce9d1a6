"""demo memory: the seed's memory exercise under -m 80m, then with enough memory."""

from __future__ import annotations

import re

from minicontainer.demos import Demo, Step, all_of, contains, lacks

# The seed's exercise: `yes` makes an endless stream of "y\n", tr turns it
# into one line with no newline, head cuts it at 1000 MiB, and grep must
# hold the whole line in memory before it can look for "n" in it.
HOG = r"yes | tr \\n x | head -c 1048576000 | grep n"
# The same with a 100 MiB line: enough to be killed under 80 MiB, and a few
# seconds of CPU when it may finish (the 1000 MiB line takes some 40 s).
SMALL_HOG = HOG.replace("1048576000", "104857600")


def _peak_above(mib: float):
    """The report's 'memory: peak N MiB' is above ``mib``."""
    def check(out):
        m = re.search(r"memory: peak ([0-9.]+) (KiB|MiB|GiB)", out.text)
        if not m:
            return "the report has no memory peak"
        peak = float(m.group(1)) * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[m.group(2)]
        return None if peak > mib else f"the peak ({peak:.0f} MiB) is not above {mib:g} MiB"
    return check


def steps(ctx):
    return [
        Step(
            shows="the memory hog under an 80 MiB limit: the kernel's OOM killer ends it",
            command=f"minicontainer run --rm -m 80m --report $T/oom.json mini bash -c '{HOG}'; echo \"exit status $?\"",
            notice="minicontainer's line 'killed by the OOM killer' (read from the cgroup's memory events), "
                   "and exit status 137 = 128 + SIGKILL",
            check=all_of(contains("killed by the OOM killer", "exit status 137")),
        ),
        Step(
            shows="what the sampler saw: memory climbing to the limit and staying there, then the kill",
            command=f"minicontainer report $T/oom.json --html {ctx.out}/memory-oom.html",
            notice="'memory: peak 80 MiB of limit 80 MiB'; open the chart in a browser: the line flattens at the limit",
            check=contains("killed by the OOM killer", "of limit 80 MiB", "charts:"),
        ),
        Step(
            shows="with more memory it finishes: the same pipeline, its line cut at 100 MiB (still more than 80 MiB), "
                  "under -m 300m",
            command=f"minicontainer run --rm -m 300m --report $T/enough.json mini bash -c '{SMALL_HOG}'; "
                    "echo \"exit status $?\"",
            notice="no OOM kill; exit status 1 is grep's own 'no line matched' (there is no n in yxyx...). "
                   "(The full 1000 MiB line finishes too, with -m 1536m, after some 40 s of CPU: grep is slow "
                   "on one huge line.)",
            check=all_of(lacks("OOM killer"), contains("exit status 1")),
        ),
        Step(
            shows="its report: the peak it needed",
            command=f"minicontainer report $T/enough.json --html {ctx.out}/memory-enough.html",
            notice="the peak: the 100 MiB line grep held, more than the 80 MiB that killed it, under 300 MiB",
            check=all_of(contains("of limit 300 MiB", "charts:"), lacks("OOM"), _peak_above(80)),
        ),
    ]


DEMO = Demo(
    name="memory",
    title="a memory limit, and the OOM killer",
    intro="""
        The seed's exercise: a pipeline whose last program, grep, must keep a 1000 MiB line in memory.
        With -m 80m minicontainer writes the limit into the container's memory cgroup before the command
        starts; when the cgroup cannot reclaim enough, the kernel's OOM killer kills a process in it,
        and only in it. Each run is recorded with --report and charted with report --html.
    """,
    steps=steps,
    in_mini=("/bin/bash",),
    needs=(("bash", "mini copies the host's bash: apt-get install bash"),),
)
