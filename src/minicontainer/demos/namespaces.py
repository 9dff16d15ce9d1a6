"""demo namespaces: what a container sees of the kernel's resources, beside the host."""

from __future__ import annotations

from minicontainer.demos import Demo, Step, all_of, contains

NAMESPACES = ("pid", "uts", "net", "mnt", "ipc", "cgroup")


def _all_new(out):
    seen: dict[str, dict[str, str]] = {}
    for line in out.lines:
        words = line.split()
        if len(words) == 2 and "=" in words[1]:
            side, _, inode = words[1].partition("=")
            seen.setdefault(words[0], {})[side] = inode
    for ns in NAMESPACES:
        pair = seen.get(ns, {})
        if "host" not in pair or "container" not in pair:
            return f"no host and container inode for {ns}"
        if pair["host"] == pair["container"]:
            return f"the {ns} namespace is the host's ({pair['host']})"
    return None


def _line_after(prefix):
    def value(out):
        return next((line[len(prefix):].strip() for line in out.lines if line.startswith(prefix)), None)
    return value


def _hostnames(out):
    host, inside = _line_after("host:")(out), _line_after("container:")(out)
    if inside != "demo":
        return f"the container's hostname is {inside!r}, not 'demo'"
    return None if host and host != inside else "the host's hostname changed too"


def _only_lo(out):
    inside = _line_after("container:")(out)
    return None if inside == "lo" else f"the container has {inside!r}, not just lo"


def steps(ctx):
    loop = "for ns in " + " ".join(NAMESPACES) + "; do echo \"$ns {side}=$(readlink /proc/self/ns/$ns)\"; done"
    return [
        Step(
            shows="each namespace is a kernel object with an inode number: the host's, then a container's",
            command=loop.format(side="host") + "; minicontainer run --rm mini sh -c '"
                    + loop.format(side="container").replace("'", "") + "'",
            notice="every pair differs: the container got a new namespace of each type "
                   "(the user namespace is the one it shares, unless --userns)",
            check=_all_new,
        ),
        Step(
            shows="PID namespace: the container's command is PID 1 and sees only its own processes",
            command="minicontainer run --rm mini sh -c 'echo \"my pid: $$\"; ps'",
            notice="$$ is 1, and ps (which reads the container's own /proc) lists only sh and ps",
            check=all_of(contains("my pid: 1")),
        ),
        Step(
            shows="UTS namespace: a hostname of its own",
            command="echo \"host: $(hostname)\"; minicontainer run --rm --hostname demo mini sh -c "
                    "'echo \"container: $(hostname)\"'; echo \"host: $(hostname)\"",
            notice="the container's sethostname changed only its own copy; the host's is the same after",
            check=_hostnames,
        ),
        Step(
            shows="network namespace: its own interfaces, only loopback",
            command="echo \"host: $(ls /sys/class/net | xargs)\"; minicontainer run --rm mini sh -c "
                    "'echo \"container: $(ls /sys/class/net | xargs)\"'",
            notice="no eth0, no route out: --network none is the default (bridge networks add a veth pair)",
            check=_only_lo,
        ),
        Step(
            shows="mount namespace: its own mount table, the image as an overlay at /",
            command="echo \"host: / is $(findmnt -no FSTYPE /), $(wc -l < /proc/self/mountinfo) mounts\"; "
                    "minicontainer run --rm mini sh -c 'awk \"{print \\$2, \\$3}\" /proc/self/mounts'",
            notice="/ is the image's overlay; fresh proc, sysfs, tmpfs and devpts; the container's own cgroups, "
                   "read-only; and over /proc/keys, /proc/acpi ... masks that hide the host's kernel details. "
                   "None of the host's own mounts are there, and none of these show on the host",
            check=contains("/ overlay", "/proc proc", "/dev/pts devpts"),
        ),
    ]


DEMO = Demo(
    name="namespaces",
    title="namespaces: the container's own copy of kernel resources",
    intro="""
        A namespace gives the processes in it their own copy of one kernel resource (namespaces(7)).
        minicontainer makes six for each container: mount, PID, UTS, IPC, network and cgroup. Each has an
        inode number in /proc/PID/ns/; two processes share a namespace exactly when the numbers match.
    """,
    steps=steps,
)
