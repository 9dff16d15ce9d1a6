"""Narrated demos: ``minicontainer demo NAME``.

A demo is a short list of :class:`Step`: what the step shows, the shell
command it runs (printed as you would type it, and run exactly so, by
``bash -c`` on the host), what to notice in the output, and a check that the
output shows what the step claims. Then cleanup commands, run whatever
happened (a ``finally``), so no container, cgroup or mount is left.

Each demo lives in its own small module here (``demos/memory.py`` ...) and
is imported only when it runs. The runner (:func:`run_demo`) is the same for
all: it makes a scratch directory ``$T`` (printed first, so every command is
typeable as shown), puts a ``minicontainer`` on ``PATH`` that runs this very
installation, and with ``step=True`` waits for Enter before each step.

A demo is also a test (tests/root/test_demos.py, tests/cgroup1/test_demos_limits.py):
it runs non-interactively, and the exit status says whether every step
showed what it claims.
"""

from __future__ import annotations

import importlib
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

# name -> (module, one line shown by `minicontainer demo --list`)
DEMOS = {
    "chroot": ("minicontainer.demos.chroot", "copy bash and its libraries into a directory, chroot in; why it is no jail"),
    "namespaces": ("minicontainer.demos.namespaces", "PID 1, hostname, network and mounts inside vs outside, by inode"),
    "memory": ("minicontainer.demos.memory", "the seed's memory hog under -m 80m: OOM kill, then enough memory; a chart"),
    "cpu": ("minicontainer.demos.cpu", "yes > /dev/null under --cpus 0.05: measured CPU beside the limit"),
    "forkbomb": ("minicontainer.demos.forkbomb", "bash's fork bomb under --pids-limit 20: contained, the host answers"),
    "escape": ("minicontainer.demos.escape", "the chroot escape: works under --chroot, fails under pivot_root"),
    "overlay": ("minicontainer.demos.overlay", "two containers from one image write; diff of each; the image unchanged"),
    "nnp": ("minicontainer.demos.nnp", "a setuid-root program under no_new_privs, and without it"),
    "cgroup-v1-v2": ("minicontainer.demos.cgroups", "the same limits as cgroup v1 and v2 files, and where they are"),
}


@dataclass(frozen=True)
class Output:
    """What a step's command did: its exit status and everything it printed
    (stdout and stderr in the order they came)."""

    code: int
    text: str
    seconds: float = 0.0

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()


# A check returns None when the output shows what the step claims, else a
# sentence saying what is missing.
Check = Callable[[Output], "str | None"]


@dataclass(frozen=True)
class Step:
    shows: str  # what the step shows, one sentence
    command: str  # the shell command, as typed; $T is the demo's scratch directory
    notice: str  # what to look for in the output
    check: Check  # required: a step that claims something checks it
    # A safety net, not a goal: generous, since a busy or emulated machine
    # (the cgroup v2 VM without KVM) runs everything many times slower.
    timeout: float = 300.0


@dataclass
class Demo:
    name: str
    title: str
    intro: str
    steps: Callable[["Context"], list[Step]]
    cleanup: Callable[["Context"], list[str]] = field(default=lambda ctx: [])
    # Files the demo writes into $T before its steps (a C program to compile...), shown as written.
    files: dict[str, str] = field(default_factory=dict)
    needs: tuple[tuple[str, str], ...] = ()  # (host program, how to get it)
    in_mini: tuple[str, ...] = ()  # paths the demo runs inside the built-in image (/bin/bash)
    containers: tuple[str, ...] = ()  # names the demo creates: must not exist yet
    root: bool = True


@dataclass
class Context:
    """What a demo's steps may refer to."""

    tmp: str  # $T
    out: str  # where files for the user go (charts)
    env: dict = field(default_factory=dict)


# -- checks -----------------------------------------------------------------------------------


def contains(*needles: str) -> Check:
    def check(out: Output) -> str | None:
        missing = [n for n in needles if n not in out.text]
        return f"the output has no {missing[0]!r}" if missing else None

    return check


def lacks(*needles: str) -> Check:
    def check(out: Output) -> str | None:
        found = [n for n in needles if n in out.text]
        return f"the output has {found[0]!r}" if found else None

    return check


def exits(*codes: int) -> Check:
    def check(out: Output) -> str | None:
        return None if out.code in codes else f"it exited {out.code}, not {' or '.join(map(str, codes))}"

    return check


def all_of(*checks: Check) -> Check:
    def check(out: Output) -> str | None:
        for c in checks:
            why = c(out)
            if why:
                return why
        return None

    return check


def field_value(text: str, key: str) -> str | None:
    """The value of ``key=VALUE`` (first match) in ``text``, a demo's own output format."""
    for word in text.split():
        if word.startswith(key + "="):
            return word[len(key) + 1:]
    return None


# -- running ----------------------------------------------------------------------------------


def load(name: str) -> Demo:
    from minicontainer.errors import UsageError

    if name not in DEMOS:
        raise UsageError(f"no demo called {name!r}", "list them with 'minicontainer demo --list'")
    return importlib.import_module(DEMOS[name][0]).DEMO


def listing() -> str:
    width = max(map(len, DEMOS))
    return "\n".join(f"{n:<{width}}  {DEMOS[n][1]}" for n in DEMOS)


def _missing_in_mini(wanted) -> str:
    """The first of ``wanted`` absent from the stored mini ("" if all are
    there, or if mini is not built yet: the first run builds it with them)."""
    if not wanted:
        return ""
    from minicontainer.images.store import ImageStore

    store = ImageStore()
    if not store.exists("mini"):
        return ""
    image = store.get("mini")
    for path in wanted:
        if not any(os.path.lexists(d / path.lstrip("/")) for d in image.stack):
            return path
    return ""


def preflight(demo: Demo) -> None:
    """Refuse before anything runs: not root, a program missing, a name taken."""
    from minicontainer.errors import MiniError

    if demo.root and os.geteuid() != 0:
        raise MiniError(f"demo {demo.name} needs root (namespaces, mounts and cgroups)",
                        f"run it as root: sudo minicontainer demo {demo.name}", exit_code=1)
    for prog, how in demo.needs:
        if shutil.which(prog) is None:
            raise MiniError(f"demo {demo.name} needs {prog}, which is not installed", how, exit_code=1)
    missing = _missing_in_mini(demo.in_mini)
    if missing:
        # an image store made before mini carried the host's bash keeps that older mini
        raise MiniError(f"demo {demo.name} runs {missing} in the image mini, which this store's mini lacks",
                        "rebuild it: minicontainer image build-mini --force", exit_code=1)
    if demo.containers:
        from minicontainer.container.state import StateStore

        store = StateStore()
        for name in demo.containers:
            try:
                store.get(name)
            except MiniError:
                continue
            # Its cleanup removes these names: never someone else's container.
            raise MiniError(f"a container named {name} exists already (from an earlier demo?)",
                            f"remove it first: minicontainer rm -f {name}", exit_code=1)


def shim_dir() -> str:
    """A directory holding a ``minicontainer`` that runs this installation,
    to put first on PATH: the commands read as typed and run this code."""
    d = tempfile.mkdtemp(prefix="mc-demo-bin-")
    path = os.path.join(d, "minicontainer")
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m minicontainer \"$@\"\n")
    os.chmod(path, 0o755)
    os.chmod(d, 0o755)
    return d


def run_command(command: str, env: dict, timeout: float, echo: Callable[[str], None]) -> Output:
    """``bash -c COMMAND``, its output echoed as it comes and kept; on timeout
    its whole process group is killed (a container dies with its runtime)."""
    start = time.monotonic()
    proc = subprocess.Popen(["bash", "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    chunks: list[bytes] = []
    pending = b""
    deadline = start + timeout
    timed_out = False
    fd = proc.stdout.fileno()
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if not ready:
                continue
            data = os.read(fd, 65536)
            if not data:
                break
            chunks.append(data)
            pending += data
            *done, pending = pending.split(b"\n")
            for line in done:
                echo(line.decode("utf-8", "replace"))
    except BaseException:  # Ctrl-C: the command is in its own session and did not get it
        _stop(proc)
        raise
    if timed_out:
        _stop(proc)
    proc.stdout.close()
    code = proc.wait()
    if pending:
        echo(pending.decode("utf-8", "replace"))
    text = b"".join(chunks).decode("utf-8", "replace")
    if timed_out:
        text += f"\n(demo: stopped after {timeout:g} s)"
        echo(f"(demo: stopped after {timeout:g} s)")
        code = -signal.SIGKILL
    return Output(code, text, time.monotonic() - start)


def _stop(proc: subprocess.Popen) -> None:
    """Stop a step's command as Ctrl-C twice would: minicontainer passes the
    first SIGINT to the container and kills it on the second, then removes
    its cgroup and mounts. SIGKILL only if that does not end it."""
    for _ in range(2):
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            return
        time.sleep(0.3)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def run_demo(demo: Demo, *, step: bool = False, out_dir: str | None = None,
             echo: Callable[[str], None] = print, wait: Callable[[], None] = input) -> bool:
    """Run ``demo``, narrated; True if every step showed what it claims.

    Stops at the first step that does not (the next ones build on it), then
    cleans up either way.
    """
    preflight(demo)
    tmp = tempfile.mkdtemp(prefix=f"mc-demo-{demo.name}-")
    os.chmod(tmp, 0o755)  # a container's non-root user reads what is shared from here
    shim = shim_dir()
    ctx = Context(tmp=tmp, out=os.path.abspath(out_dir or os.getcwd()))
    env = dict(os.environ, T=tmp, PATH=shim + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"))
    ctx.env = env
    ok = True
    echo(f"== demo {demo.name}: {demo.title} ==")
    for para in demo.intro.strip().split("\n\n"):
        echo(" ".join(para.split()))
    echo("")
    echo(f"T={tmp}    # a scratch directory for this demo, removed at the end")
    try:
        for rel, text in demo.files.items():
            with open(os.path.join(tmp, rel), "w") as f:
                f.write(text)
            echo(f"(the demo wrote $T/{rel}, {len(text.splitlines())} lines; a step shows it)")
        steps = demo.steps(ctx)
        for i, s in enumerate(steps, 1):
            echo("")
            echo(f"[{i}/{len(steps)}] {s.shows}")
            if step:
                echo("(press Enter to run it)")
                try:
                    wait()
                except EOFError:
                    pass
            echo(f"# {s.command}")
            out = run_command(s.command, env, s.timeout, echo)
            echo(f"  notice: {s.notice}")
            why = s.check(out)
            if why:
                echo(f"  NOT SHOWN: {why}")
                ok = False
                break
            echo("  shown.")
    finally:
        cleanup = demo.cleanup(ctx)
        echo("")
        echo("cleanup:" if cleanup else "cleanup: the scratch directory")
        for command in cleanup:
            echo(f"# {command}")
            run_command(command, env, 300, echo)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(shim, ignore_errors=True)
    echo("")
    echo(f"demo {demo.name}: " + ("every step showed what it claims." if ok else "a step did not show what it claims."))
    return ok
