"""demo overlay: two containers from one image, each writing; the image unchanged."""

from __future__ import annotations

from minicontainer.demos import Demo, Step, all_of, contains, exits, lacks

A, B = "demo-overlay-a", "demo-overlay-b"


def _diffs(out):
    text = out.text
    if "---" not in text:
        return "no separator between the two diffs"
    a, b = text.split("---", 1)
    for needle, part, who in (("A /root/a.txt", a, A), ("D /etc/hostname", a, A),
                              ("A /root/b.txt", b, B), ("C /etc/passwd", b, B)):
        if needle not in part:
            return f"the diff of {who} has no {needle!r}"
    if "b.txt" in a or "a.txt" in b:
        return "one container's change shows in the other's diff"
    return None


def steps(ctx):
    return [
        Step(
            shows=f"container {A} writes a file and deletes one",
            command=f"minicontainer run --name {A} mini sh -c 'echo from a > /root/a.txt; rm /etc/hostname'",
            notice="it ran and exited; without --rm its writable layer stays, to look at",
            check=exits(0),
        ),
        Step(
            shows=f"container {B}, from the same image, writes other things",
            command=f"minicontainer run --name {B} mini sh -c 'echo from b > /root/b.txt; "
                    "echo \"extra:x:2000:2000::/:/bin/sh\" >> /etc/passwd; ls /root; cat /etc/hostname'",
            notice="it does not see a.txt, and /etc/hostname is still there for it: each container has its own "
                   "upper layer over the one read-only image",
            check=all_of(exits(0), contains("b.txt", "mini"), lacks("a.txt")),
        ),
        Step(
            shows="what each changed, from its upper layer (A added, C changed, D deleted)",
            command=f"minicontainer diff {A}; echo ---; minicontainer diff {B}",
            notice="a deletion is a whiteout in the upper layer (a 0:0 character device), a change to "
                   "/etc/passwd a whole copy of the file there (copy-up)",
            check=_diffs,
        ),
        Step(
            shows="the layers on disk: the image is the lower directory, each container has its own upper one",
            command=f"for c in {A} {B}; do minicontainer inspect --format '{{{{.Storage.UpperDir}}}}' $c; done | "
                    "while read up; do echo \"$up:\"; (cd $up && find . -mindepth 1 -printf '%y %p\\n' | sort -k2); done",
            notice="only the changes are stored per container (f file, d directory): a.txt, b.txt, a copy of "
                   "passwd, and for the deleted hostname a whiteout, c (a 0:0 character device); the image is shared",
            check=contains("f ./root/a.txt", "f ./root/b.txt", "f ./etc/passwd", "c ./etc/hostname"),
        ),
        Step(
            shows="a new container from the image: none of it happened",
            command="minicontainer run --rm mini sh -c 'ls /root; cat /etc/hostname; grep -c extra /etc/passwd'",
            notice="/root is empty, /etc/hostname is there, passwd has no 'extra' line: the image was never written",
            check=all_of(contains("mini", "0"), lacks("a.txt", "b.txt")),
        ),
    ]


DEMO = Demo(
    name="overlay",
    title="copy-on-write: overlayfs layers",
    intro="""
        Each container's / is an overlay: the image is the read-only lower layer, and the container's writes go
        to its own upper directory (a deleted file becomes a whiteout there). So any number of containers share
        one image, each starts clean, and the image itself is never modified.
    """,
    steps=steps,
    cleanup=lambda ctx: [f"minicontainer rm {A} {B}"],
    containers=(A, B),
)
