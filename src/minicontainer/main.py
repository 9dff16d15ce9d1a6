"""The ``minicontainer`` entry point: one place that turns errors into one
line, and the choice of parser.

``run`` is the start path, and click costs 30-50 ms to import here (it pulls
in inspect, typing, enum, datetime, uuid): more than the rest of a run's
setup. So a ``run`` whose flags are all plain (commands/fastparse.py) is
parsed without click and goes straight to commands/runspec.py; anything
else (another command, --help, a flag click would refuse, tab completion)
goes through click (cli.py), which gives its own answers and error messages.
Both paths end in the same ``run_container``, with the same values.

Errors: library code raises ``minicontainer.errors.MiniError``; :func:`main`
prints it as one line ``minicontainer: error: ... (hint: ...)`` and exits with
its code. A command that goes on past failures (``rm a b c``) raises them
together as one ``errors.Failures``: one line each, the exit code of the
last. A Python traceback appears only with ``--debug``.
"""

from __future__ import annotations

import gc
import os
import sys

from minicontainer.errors import MiniError

debug = os.environ.get("MINICONTAINER_DEBUG") == "1"  # set by --debug too (here, or cli.py's group option)


def entry() -> None:
    """The console script ``minicontainer`` (pyproject.toml): :func:`main`, left
    the way :func:`leave` leaves."""
    leave(main)


def leave(command) -> None:
    """Run a console script's ``command()`` and end the process without the
    interpreter's teardown. Both console scripts (and ``python -m minicontainer``)
    start here; :func:`main` itself only raises SystemExit, so it can be called
    in-process (the tests).

    Two costs of CPython that no command needs (issue 15; measured on ``run --rm
    -m 32m --pids-limit 16 mini /bin/true``, ~100 ms here):

    - The teardown at exit frees the ~13,000 objects of ~140 modules one module
      at a time, with garbage collections in between: 12-17 ms after a run.
      ``os._exit`` skips it. What it would do that matters is done here: stdout
      and stderr are flushed. Nothing else is left to it: files are closed by
      their with-blocks (a container log's writer flushes every write), the
      network-namespace thread is joined at once, every other thread is a
      daemon, and no atexit handler is registered (tests/unit/test_entry.py,
      tests/root/test_run_imports.py).
    - The cyclic garbage collector ran ~23 times during a start (~3.5 ms): the
      imports and the plan allocate objects that all live to the end. Its
      first threshold goes from 700 allocations to 50,000, so it runs rarely, not
      never: a foreground container's hours-long wait still collects cycles.
    """
    gc.set_threshold(50_000)  # see above; threshold1 and threshold2 stay 10, 10
    try:
        code = command()
    except SystemExit as e:
        code = e.code
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("text"), as Python does: the text, status 1
        print(code, file=sys.stderr)
        code = 1
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except BrokenPipeError:
        code = 141  # the reader left before the last output (`... | head -1`), as main() does
    except OSError:
        code = code or 1
    os._exit(code & 0xFF)


def main(argv=None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = _fast_run(args)
        if code is None:
            from minicontainer.cli import cli

            code = cli.main(args=args, prog_name="minicontainer", standalone_mode=False)
    except MiniError as e:
        if debug:
            raise
        for line in e.lines():
            _print_error(line)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        # Ctrl-C outside a container's run (which forwards it to the container):
        # one line of ours, not a traceback; 128 + SIGINT.
        _print_interrupted()
        sys.exit(130)
    except BrokenPipeError:
        # `minicontainer ps | head -1`: the reader left; not an error worth a traceback.
        try:
            sys.stdout = None
        finally:
            os._exit(141)
    except ImportError as e:
        # A layer that cannot be loaded (security, cgroups ...) stops the
        # command: nothing ever runs with less isolation than asked (fail closed).
        if debug:
            raise
        _print_error(f"part of minicontainer cannot be loaded, so nothing was started: {e} "
                     "(hint: reinstall it with ./scripts/setup, or run with --debug)")
        sys.exit(125)
    except Exception as e:  # noqa: BLE001 - the one place that catches everything
        click = sys.modules.get("click")  # only the click path can raise its exceptions
        if click is not None and isinstance(e, click.exceptions.Abort):
            _print_interrupted()  # click's Ctrl-C at a prompt: ours, not its bare "Aborted."
            sys.exit(130)
        if click is not None and isinstance(e, click.ClickException):
            # Bad flags: one line, docker's exit code for its own errors.
            if isinstance(e, click.UsageError) and e.ctx is not None:
                _print_error(f"{e.format_message()} (see '{e.ctx.command_path} --help')")
            else:
                _print_error(e.format_message())
            sys.exit(125)
        if debug:
            raise
        _print_error(f"internal error: {type(e).__name__}: {e} (hint: run again with --debug and report it)")
        sys.exit(125)
    sys.exit(code if isinstance(code, int) else 0)


def _fast_run(args: list[str]) -> int | None:
    """``--version``, ``[--debug ...] run FLAGS IMAGE [COMMAND...]`` when the
    lean parser takes every flag, and a plain ``image import FILE NAME
    [--force]`` (commands/image_import.py), without click; None hands the
    command line to click."""
    global debug
    if any(k.startswith("_MINICONTAINER_COMPLETE") for k in os.environ):
        return None  # tab completion is click's
    if args == ["--version"]:  # what click's version_option prints (cli.py), without importing click
        from minicontainer import __version__

        print(f"minicontainer, version {__version__}", flush=True)
        return 0
    lead = 0
    while lead < len(args) and args[lead] == "--debug":
        lead += 1
    if args[lead:lead + 2] == ["image", "import"]:
        from minicontainer.commands.fastparse import parse_image_import

        plain = parse_image_import(args[lead + 2:])
        if plain is None:
            return None
        debug = debug or lead > 0
        from minicontainer.commands.image_import import import_tarball

        return import_tarball(*plain)
    if args[lead:lead + 1] != ["run"]:
        return None
    from minicontainer.commands.fastparse import parse_run

    parsed = parse_run(args[lead + 1:])
    if parsed is None:
        return None
    debug = debug or lead > 0
    from minicontainer.commands.runspec import run_container

    image, command, run_opts, opts = parsed
    return run_container(image, command, opts, **run_opts)


def _print_interrupted() -> None:
    try:
        print("minicontainer: interrupted", file=sys.stderr, flush=True)
    except OSError:
        pass


def _print_error(message: str) -> None:
    try:
        print(f"minicontainer: error: {message}", file=sys.stderr, flush=True)
    except OSError:
        pass
