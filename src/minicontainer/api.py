"""The Python API, for notebooks and scripts: ``minicontainer.run`` and ``minicontainer.plan``.

    >>> import minicontainer
    >>> r = minicontainer.run("mini", ["sh", "-c", "tail /dev/zero"], memory="64m")
    >>> r.exit_code, r.reason                       # (137, 'oom-kill')
    >>> r.report["samples"][-1]["memory_peak"]       # what the cgroup counted, every 0.1 s
    >>> for step in minicontainer.plan("mini", ["true"], pids_limit=20).steps: print(step.what())

There is no second implementation. The keyword arguments are the ``run``
command's options by their Python names (``memory``, ``pids_limit``,
``cpus``, ``env=[...]``, ``volume=[...]``, ``read_only=True``...), turned into
its flags and parsed by that very click command, then by the same
``spec_from_options`` (commands/runspec.py): a bad value raises the same
``UsageError`` the CLI prints, before anything is created.

``plan()`` stops there and asks the runtime for the plan (``--dry-run``'s
steps, as the step dataclasses of container/steps.py). ``run()`` runs the
CLI itself in a child process, ``python -m minicontainer run --report ...``:
the runtime installs signal handlers (possible only in a main thread),
forks, and hands its own stdout to the container, none of which belongs in
a notebook's kernel process. The report file it writes becomes ``.report``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from minicontainer.errors import MiniError, UsageError

# Options of `run` that make no sense here: the API decides them itself.
_NOT_HERE = {"report_path": "the result's .report is the report", "dry_run": "use minicontainer.plan()",
             "explain": "use minicontainer.plan() to read the steps", "tty": "there is no terminal to give"}


@dataclass
class Result:
    """How one run ended."""

    exit_code: int
    output: str  # the container's stdout
    stderr: str  # its stderr, and minicontainer's own lines ("killed by the OOM killer: ...")
    reason: str  # "exit", "signal", "oom-kill", "pids-limit"
    report: dict | None  # run --report's data: samples, limits, namespaces, exit, cleanup

    def __repr__(self) -> str:
        return f"Result(exit_code={self.exit_code}, reason={self.reason!r}, output={self.output[:60]!r})"


def _flags(options: dict) -> list[str]:
    """Python keyword arguments -> the run command's flags, checked against its options."""
    from minicontainer.commands.run import run as command

    params = {p.name: p for p in command.params if p.param_type_name == "option"}
    flags: list[str] = []
    for key, value in options.items():
        if key in _NOT_HERE:
            raise UsageError(f"{key}= is not an argument of minicontainer.run/plan", _NOT_HERE[key])
        p = params.get(key)
        if p is None:
            raise UsageError(f"unknown argument {key}=",
                             "use the run command's options by their Python names: " + ", ".join(sorted(params)))
        flag = max(p.opts, key=len)  # the long form
        if p.is_flag:
            if value:
                flags.append(flag)
        elif p.multiple:
            items = [value] if isinstance(value, str) else list(value)
            for item in items:
                flags.append(f"{flag}={item}")
        elif value is not None:
            flags.append(f"{flag}={value}")
    return flags


def _argv(image: str, argv, options: dict) -> list[str]:
    if isinstance(argv, str):
        raise UsageError("argv must be a list of strings, e.g. ['sh', '-c', 'echo hi']",
                         "a string would be one program name; wrap it: ['sh', '-c', TEXT]")
    argv = list(argv)
    return [*_flags(options), image, *(["--"] if argv else []), *argv]


def _spec(args: list[str]):
    """Parse ``args`` with the run command itself, then build the spec as it does."""
    import click

    from minicontainer.commands.run import run as command
    from minicontainer.commands.runspec import spec_from_options

    try:
        ctx = command.make_context("run", list(args))
    except click.ClickException as e:
        raise UsageError(e.format_message()) from None
    params = dict(ctx.params)
    return spec_from_options(params.pop("image"), params.pop("command"), params), params


def plan(image: str, argv=(), **options):
    """The plan a run would carry out, as data: ``.steps`` (step dataclasses, each with
    ``what()``, ``why()`` and ``shell()``), ``.render()`` (the --dry-run text). Needs no root."""
    from minicontainer.container.runtime import Runner

    spec, params = _spec(_argv(image, argv, options))
    plan_, _, _, _ = Runner(spec, userns=params.get("userns", False)).make_plan(dry_run=True)
    return plan_


def run(image: str, argv=(), *, input: str | None = None, timeout: float | None = None, **options) -> Result:
    """Run ``argv`` in a new container from ``image``; wait; return a Result.

    ``options`` are the run command's (``memory="64m"``, ``pids_limit=20``,
    ``cpus=0.5``, ``env=["A=1"]``...); ``remove`` defaults to True here.
    ``input`` is passed as stdin (implies ``interactive``). Errors of
    minicontainer itself (a missing image, a refused flag) raise MiniError.
    """
    options.setdefault("remove", True)
    if input is not None:
        options["interactive"] = True
    args = _argv(image, argv, options)
    _spec(args)  # bad input raises here, as the CLI would refuse it
    with tempfile.TemporaryDirectory(prefix="minicontainer-api-") as tmp:
        path = os.path.join(tmp, "report.json")
        proc = subprocess.Popen([sys.executable, "-m", "minicontainer", "run", "--report", path, *args],
                                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()  # the runtime forwards it, and kills after its grace period
            out, err = proc.communicate()
        report = None
        if os.path.exists(path):
            from minicontainer import report as R

            report = R.load(path)
    if report is None:
        # it never started: minicontainer's own error, one line
        lines = [line for line in err.splitlines() if line.startswith("minicontainer: error: ")]
        message = lines[-1].removeprefix("minicontainer: error: ") if lines else err.strip() or "the run failed"
        message, _, hint = message.partition(" (hint: ")
        raise MiniError(message, hint.removesuffix(")") or None, exit_code=proc.returncode)
    return Result(exit_code=proc.returncode, output=out, stderr=err, reason=report["exit"]["reason"], report=report)
