"""One container's life, the run pipeline, in the order it happens:

    spec.py         flags (or a config) -> a frozen, validated ContainerSpec
    plan.py         the spec -> the ordered steps (pure), made of ...
    steps.py        ... the one step vocabulary, in four phases
    interpreter.py  carries out every step of every phase through syscalls/
    process.py      the pipes between runtime and child; waiting, the pty
    runtime.py      the order of a whole run, and the cleanup
    state.py        state.json of each container
    rootfs.py, hostcheck.py, userns.py: where the root comes from, checks of
    the host, and rootless mode's user namespace

The layers it asks for steps live beside it: security/, cgroups/, images/;
the kernel is reached only through syscalls/.
"""
