"""``exec``: run one more process inside a running container.

The new process gets exactly what the container's own PID 1 got, read from
the persisted spec (config.json): its namespaces (joined with setns(2) on
PID 1's /proc/PID/ns files), its cgroup, its root, its capabilities, seccomp
filter, no_new_privs, rlimits and user, and its environment; ``exec``'s
flags may change the user, the working directory, the environment and the
privileges, as ``docker exec`` allows. The steps are planned
(plan.build_exec_plan) and carried out by the same interpreter as a run, so
``exec --explain`` shows each setns.
"""

from __future__ import annotations

import os
import sys

from minicontainer.container import plan as P
from minicontainer.container import steps as S
from minicontainer.container.config import load_spec
from minicontainer.container.state import StateStore, pid_alive
from minicontainer.errors import ContainerError
from minicontainer.records import replace  # not dataclasses' (records.py, issue 15)


def _security(spec, user: str | None, privileged: bool):
    from minicontainer.security import SecurityConfig, security_steps

    config = spec.security if spec.security is not None else SecurityConfig()
    if user is not None:
        config = replace(config, user=user)
    if privileged:
        config = replace(config, privileged=True, seccomp="unconfined", seccomp_profile=None)
    return security_steps(config)


def _cgroup_joins(st) -> list:
    """The container's cgroup, joined by the new process before it runs anything."""
    if os.geteuid() != 0:
        return []
    from minicontainer.cgroups import manager_of

    manager = manager_of(st.id, st.cgroup or None)
    if not manager.exists():
        return []
    return [S.CgroupStep(write=w) for w in manager.plan() if w.stage == "join"], manager


def exec_in(ref: str, argv: tuple[str, ...], *, env=(), workdir: str | None = None, user: str | None = None,
            tty: bool = False, interactive: bool = False, privileged: bool = False, detach: bool = False,
            explain: bool = False, out=None, started=None) -> int:
    store = StateStore()
    st = store.get(ref)
    if st.status != "running" or not pid_alive(st.pid, st.pid_start):
        hint = f"start it first: minicontainer start {ref}" if st.status != "created" else f"minicontainer start {ref}"
        raise ContainerError(f"container {ref} is not running ({st.status})", hint)
    from minicontainer.commands.pause import paused

    if paused(st):
        raise ContainerError(f"container {ref} is paused", f"unpause it first: minicontainer unpause {ref}")
    spec = load_spec(store.containers / st.id)
    namespaces = tuple(ns for ns in ("user", "cgroup", "ipc", "uts", "net", "pid", "mnt")
                       if ns in st.namespaces and _not_ours(ns, st.namespaces[ns]))
    joins = _cgroup_joins(st)
    cgroup_steps, manager = joins if joins else ([], None)
    environment = dict(spec.environment(st.hostname))
    if tty:
        environment.setdefault("TERM", os.environ.get("TERM", "xterm"))
    environment.update(env)
    plan = P.build_exec_plan(
        spec, pid=st.pid, pid_start=st.pid_start, namespaces=namespaces, argv=argv,
        env=tuple(environment.items()), workdir=workdir or spec.cwd(), tty=tty, cgroup_steps=cgroup_steps,
        security=_security(spec, user, privileged), detached=detach,
    )
    plan.legend = {"ID": st.id, "PID1": str(st.pid)}
    from minicontainer.container.process import Container, Hooks
    from minicontainer.syscalls.linux import Linux

    out = out if out is not None else sys.stderr

    def explain_step(i, step):
        text = "\n".join(S.render_step(i, step, plan.legend)) + "\n"
        os.write(out.fileno() if hasattr(out, "fileno") else 2, text.encode())

    if explain:
        print("\n".join(plan.header()), file=out)
    container = Container(plan, Linux(), tty=tty, interactive=interactive,
                          hooks=Hooks(explain=explain_step if explain else None), cgroup=manager)
    container.start()
    if started is not None:
        started(container)  # minicontainer-runc exec: --pid-file, --console-socket
    if detach:
        return 0
    try:
        return container.wait()
    finally:
        container.ensure_dead()


def _not_ours(ns: str, inode: int) -> bool:
    """Join only what the container does not share with us (--pid host ...)."""
    try:
        return os.stat(f"/proc/self/ns/{ns}").st_ino != inode
    except OSError:
        return True
