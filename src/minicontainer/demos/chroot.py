"""demo chroot: the seed's first exercise, a root filesystem by hand, and why chroot is no jail."""

from __future__ import annotations

from minicontainer.demos import Demo, Step, all_of, contains


def _same_host(out):
    pid = next((line.split("pid ")[1].split(",")[0] for line in out.lines if line.startswith("inside: pid ")), None)
    if pid is None:
        return "no 'inside: pid' line"
    if pid == "1":
        return "the chrooted shell is PID 1: that would be a PID namespace, not chroot"
    inside = next((line.rsplit(" ", 1)[1] for line in out.lines if line.startswith("inside:")), "")
    host = next((line.rsplit(" ", 1)[1] for line in out.lines if line.startswith("host:")), None)
    return None if inside == host else f"the hostnames differ ({inside!r} inside, {host!r} outside)"


def steps(ctx):
    return [
        Step(
            shows="a root filesystem by hand: bash, and each library ldd says it loads, copied into $T/jail",
            command="mkdir -p $T/jail/bin && cp /bin/bash $T/jail/bin/ && ldd /bin/bash && "
                    "for lib in $(ldd /bin/bash | grep -o '/[^ ]*'); do cp --parents \"$lib\" $T/jail; done && "
                    "cd $T/jail && find . -type f",
            notice="ldd lists the dynamic loader (ld-linux) and the libraries (libc, libtinfo); bash cannot start "
                   "without them, so each is copied to the same path under $T/jail",
            check=contains("./bin/bash", "libc.so.6", "ld-linux"),
        ),
        Step(
            shows="chroot into it: / is now $T/jail for this bash and its children",
            command="chroot $T/jail /bin/bash -c 'echo / holds: /*; ls'",
            notice="/ holds only what was copied, and ls is not found: only bash's builtins exist in here",
            check=all_of(contains("/ holds: /bin /lib", "ls: command not found")),
        ),
        Step(
            shows="but it is no jail: the same process IDs and hostname as the host",
            command="chroot $T/jail /bin/bash -c 'echo \"inside: pid $$, hostname $HOSTNAME\"'; "
                    "echo \"host: hostname $(hostname)\"",
            notice="its PID is an ordinary host PID (not 1) and the hostname is the host's: chroot changed what / "
                   "means, nothing else (no namespace: the network, users and mounts are the host's too)",
            check=_same_host,
        ),
        Step(
            shows="and root gets out: in the chroot, mount /proc and read a host file through /proc/PID/root",
            command="echo 'a file on the host only' > $T/host-only && cp /bin/busybox $T/jail/bin/ && "
                    "unshare --mount chroot $T/jail /bin/busybox sh -c "
                    "\"busybox mkdir -p /proc && busybox mount -t proc proc /proc && busybox cat /proc/\\$PPID/root$T/host-only\"",
            notice="/proc/PID/root is the root of process PID, and $PPID, the shell that started the chroot, "
                   "has the host's /: root in a chroot reads (and writes) anything on the host. (unshare --mount keeps that /proc mount off the host's table.) "
                   "Containers use pivot_root and a PID namespace instead; see 'minicontainer demo escape' for "
                   "the other way out, chroot . from a directory above the root",
            check=contains("a file on the host only"),
        ),
    ]


DEMO = Demo(
    name="chroot",
    title="a root filesystem by hand, and why chroot is not a jail",
    intro="""
        The oldest isolation: chroot(2) changes what / means for a process. A root filesystem is just a
        directory with a program and everything it needs. This demo builds one from the host's bash (the seed's
        first exercise: cp bash and what ldd lists), chroots into it, and shows what chroot does not isolate.
    """,
    steps=steps,
    needs=(("ldd", "apt-get install libc-bin"), ("chroot", "apt-get install coreutils"),
           ("unshare", "apt-get install util-linux"), ("busybox", "apt-get install busybox-static")),
)
