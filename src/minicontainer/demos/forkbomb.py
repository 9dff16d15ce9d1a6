"""demo forkbomb: the seed's fork bomb in bash, contained by --pids-limit 20."""

from __future__ import annotations

from minicontainer.demos import Demo, Step, all_of, contains, lacks

# A function called ":" that pipes itself into itself in the background, then
# a call of it: every call makes two more processes, forever. Busybox's ash
# cannot even parse it; mini has the host's bash for it.
BOMB = ":(){ :|:& };:"


def _at_limit(out):
    for line in out.lines:
        if "demo-forkbomb" in line:
            return None if line.split()[-3:] == ["20", "/", "20"] else f"its PIDS column is not '20 / 20': {line}"
    return "stats did not list demo-forkbomb"


def steps(ctx):
    return [
        Step(
            shows="the fork bomb under --pids-limit 20; after 2 s the container's own shell says it still runs",
            command=f"minicontainer run --rm --pids-limit 20 mini bash -c 'mkfifo /tmp/w; exec 3<>/tmp/w; {BOMB}; "
                    "read -t 2 -u 3; echo \"the container still answers\"' 2>&1 | uniq -c",
            notice="fork() fails with EAGAIN ('Resource temporarily unavailable') once the cgroup holds 20 "
                   "processes; minicontainer reads pids.events and says the limit was hit; the shell still answers. "
                   "It waits with bash's own read on a fifo, not with sleep: after the bomb, starting any program "
                   "needs a fork the limit may refuse",
            check=all_of(contains("Resource temporarily unavailable", "pids limit 20 reached",
                                  "the container still answers"), lacks("syntax error")),
        ),
        Step(
            shows="a bomb left running, watched from the host until it sits at its limit, then killed",
            command=f"minicontainer run --rm --name demo-forkbomb --pids-limit 20 mini bash -c '{BOMB}; sleep 60' "
                    ">/dev/null 2>&1 & until minicontainer stats --no-stream demo-forkbomb > $T/stats 2>&1 && "
                    "grep -q ' 20 / 20$' $T/stats; do kill -0 $! 2>/dev/null || break; sleep 0.5; done; "
                    "cat $T/stats; minicontainer kill demo-forkbomb; wait",
            notice="PIDS 20 / 20: the bomb is pinned at its limit while the host runs stats as usual; "
                   "kill ends the container's PID 1, and with it everything left in its cgroup",
            check=_at_limit,
        ),
    ]


DEMO = Demo(
    name="forkbomb",
    title="a fork bomb, contained by the pids controller",
    intro="""
        The seed's fork bomb :(){ :|:& };: doubles its processes until the machine can start no more. In a
        container with --pids-limit 20 the pids cgroup refuses the 21st fork: the bomb stalls inside its
        cgroup and the host never notices.
    """,
    steps=steps,
    in_mini=("/bin/bash",),
    needs=(("bash", "mini copies the host's bash: apt-get install bash"),),
    containers=("demo-forkbomb",),
)
