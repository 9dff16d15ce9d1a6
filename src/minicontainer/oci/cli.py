"""``minicontainer-runc``: runc's command line, as engines call it.

podman (through conmon), containerd's runc shim (so docker and Kubernetes)
and CRI-O run a container by calling an OCI runtime binary several times:
``create --bundle B --pid-file P ID``, ``start ID``, ``state ID``, ``kill ID
15``, ``delete --force ID`` ... This entry point speaks that command line.
It has its own small parser, not click: its flags are fixed by runc, and an
engine starts it many times per container, so it imports only what the one
command needs (``python -X importtime -m minicontainer.oci.cli state X``).

Errors: one line on stderr (what runc prints), and with ``--log FILE`` a line
in runc's logrus format, text or json (``--log-format``): containerd's shim
reads the last error from that file. ``--debug``, or ``MINICONTAINER_LOG=FILE``,
records every call with its argv and the bundle's config.json, so a learner
can read exactly what an engine asked for.
"""

from __future__ import annotations

import json
import os
import sys
import time

VERSION = "0.1.0"
SPEC_VERSION = "1.2.0"
PROG = "minicontainer-runc"

# Each command: its flags -> (option name, takes a value, repeatable).
_CREATE = {"--bundle": "bundle", "-b": "bundle", "--pid-file": "pid_file", "--console-socket": "console_socket",
           "--preserve-fds": "preserve_fds", "--no-pivot": None, "--no-new-keyring": None}
COMMANDS: dict[str, dict[str, str | None]] = {
    "create": _CREATE,
    "run": {**_CREATE, "--detach": None, "-d": None, "--keep": None, "--no-subreaper": None},
    "start": {},
    "state": {},
    "kill": {"--all": None, "-a": None},
    "delete": {"--force": None, "-f": None},
    "list": {"--format": "format", "-f": "format", "--quiet": None, "-q": None},
    "ps": {"--format": "format", "-f": "format"},
    "pause": {},
    "resume": {},
    "exec": {"--process": "process", "-p": "process", "--detach": None, "-d": None, "--pid-file": "pid_file",
             "--tty": None, "-t": None, "--console-socket": "console_socket", "--cwd": "cwd", "--env": "env*",
             "-e": "env*", "--user": "user", "-u": "user", "--no-new-privs": None, "--preserve-fds": "preserve_fds",
             "--process-label": "process_label", "--apparmor": "apparmor", "--additional-gids": "gids*",
             "-g": "gids*", "--cap": "cap*", "-c": "cap*", "--ignore-paused": None, "--cgroup": "cgroup"},
    "update": {"--resources": "resources", "-r": "resources"},
    "events": {"--stats": None, "--interval": "interval"},
    "features": {},
    "spec": {"--bundle": "bundle", "-b": "bundle", "--rootless": None},
}
GLOBAL = {"--root": "root", "--log": "log", "--log-format": "log_format", "--debug": None,
          "--systemd-cgroup": None, "--rootless": "rootless", "--criu": "criu", "--help": None, "-h": None,
          "--version": None, "-v": None}
# Flags runc has whose value we do not use: accepted, and said so in the debug log.
_IGNORED = {"--no-pivot", "--no-new-keyring", "--keep", "--no-subreaper", "--criu", "--ignore-paused"}


class ArgvError(Exception):
    """A bad command line: one line, exit 1 (runc's usage errors)."""


def _split(token: str) -> tuple[str, str | None]:
    # runc's flag parser takes -flag and --flag, with "=value" or a separate value
    name, eq, value = token.partition("=")
    if not name.startswith("--") and len(name) > 2:
        name = "-" + name
    return name, (value if eq else None)


def parse_flags(argv: list[str], table: dict, where: str) -> tuple[dict, list[str]]:
    """Flags (as ``table`` lists them) and the positional arguments. A flag
    the table does not know is an error naming it: a newer engine's option
    must not be silently ignored."""
    opts: dict = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            rest.extend(argv[i + 1:])
            break
        if not token.startswith("-") or token == "-":
            rest.append(token)
            if where != "global" and where not in ("exec", "ps", "kill"):
                i += 1
                continue
            rest.extend(argv[i + 1:])  # global: the command starts; exec: the command to run; ps: ps's own options
            break
        name, value = _split(token)
        if name not in table:
            raise ArgvError(f"flag provided but not defined: {token} ({where})")
        dest = table[name]
        if dest is None:
            if value not in (None, "true", "false"):
                raise ArgvError(f"flag {name} takes no value")
            opts[name.lstrip("-")] = value != "false"
        else:
            if value is None:
                i += 1
                if i >= len(argv):
                    raise ArgvError(f"flag needs an argument: {name}")
                value = argv[i]
            if dest.endswith("*"):
                opts.setdefault(dest[:-1], []).append(value)
            else:
                opts[dest] = value
        i += 1
    return opts, rest


class Log:
    """runc's --log/--log-format: logrus lines, text or json, appended."""

    def __init__(self, path: str | None, fmt: str, debug: bool):
        self.path = path
        self.fmt = fmt
        self.debugging = debug or bool(os.environ.get("MINICONTAINER_LOG"))
        self._files = []
        for p in (path, os.environ.get("MINICONTAINER_LOG")):
            if p:
                try:
                    self._files.append(open(p, "a"))
                except OSError as e:
                    print(f"{PROG}: cannot open the log {p}: {e.strerror}", file=sys.stderr)

    @property
    def to_file(self) -> bool:
        return bool(self._files)

    def _line(self, level: str, msg: str) -> str:
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
        if self.fmt == "json":
            return json.dumps({"level": level, "msg": msg, "time": now})
        return f'time="{now}" level={level} msg={json.dumps(msg)}'

    def write(self, level: str, msg: str) -> None:
        for f in self._files:
            try:
                f.write(self._line(level, msg) + "\n")
                f.flush()
            except (OSError, ValueError):
                pass

    def debug(self, msg: str) -> None:
        if self.debugging:
            self.write("debug", msg)
            if not self._files:
                print(self._line("debug", msg), file=sys.stderr)

    def warning(self, msg: str) -> None:
        self.write("warning", msg)
        print(f"{PROG}: warning: {msg}", file=sys.stderr)

    def error(self, e) -> None:
        msg = e.message if hasattr(e, "message") else str(e)
        if getattr(e, "hint", None):
            msg += f" (hint: {e.hint})"
        self.write("error", msg)
        print(msg, file=sys.stderr)

    def close(self) -> None:
        for f in self._files:
            try:
                f.close()
            except OSError:
                pass
        self._files = []


USAGE = f"""usage: {PROG} [global options] COMMAND [options] [ARGS]

An OCI runtime with runc's command line, over minicontainer's library.

commands: create, start, run, state, kill, delete, list, ps, pause, resume,
          exec, update, events, features, spec
global:   --root DIR (the state root, MINICONTAINER_ROOT), --log FILE,
          --log-format text|json, --debug, --version"""


def _one_id(rest: list[str], command: str) -> str:
    if len(rest) != 1:
        raise ArgvError(f"{command} needs exactly one container id, got {len(rest)}")
    return rest[0]


def dispatch(command: str, opts: dict, rest: list[str], log: Log) -> int:
    from minicontainer.oci import runtime as R

    if command in ("create", "run"):
        if not rest:
            raise ArgvError(f"{command} needs a container id")
        cid = _one_id(rest, command)
        bundle = opts.get("bundle") or os.getcwd()
        fds = opts.get("preserve_fds") or "0"
        if not fds.isdigit():
            raise ArgvError(f"--preserve-fds needs a number, got {fds!r}")
        kw = dict(pid_file=opts.get("pid_file"), console_socket=opts.get("console_socket"), preserve_fds=int(fds),
                  log=log)
        if command == "create":
            R.create(cid, bundle, **kw)
            return 0
        return R.run(cid, bundle, detach=bool(opts.get("detach") or opts.get("d")), **kw)
    if command == "start":
        R.start(_one_id(rest, command), log)
    elif command == "state":
        print(R.state(_one_id(rest, command)))
    elif command == "kill":
        if len(rest) not in (1, 2):
            raise ArgvError("kill needs a container id and at most one signal")
        R.kill(rest[0], rest[1] if len(rest) == 2 else "SIGTERM", bool(opts.get("all") or opts.get("a")))
    elif command == "delete":
        R.delete(_one_id(rest, command), bool(opts.get("force") or opts.get("f")), log)
    elif command == "list":
        fmt = opts.get("format", "table")
        if fmt not in ("table", "json"):
            raise ArgvError(f"invalid --format {fmt!r}: use table or json")
        print(R.list_containers(fmt, bool(opts.get("quiet") or opts.get("q"))))
    elif command == "ps":
        if not rest:
            raise ArgvError("ps needs a container id")
        fmt = opts.get("format", "table")
        if fmt not in ("table", "json"):
            raise ArgvError(f"invalid --format {fmt!r}: use table or json")
        print(R.ps(rest[0], fmt, tuple(rest[1:])))
    elif command in ("pause", "resume"):
        R.pause(_one_id(rest, command), command == "pause")
    elif command == "exec":
        return _exec(opts, rest)
    elif command == "update":
        if "resources" not in opts:
            raise ArgvError("update needs --resources FILE (a LinuxResources JSON; - for stdin)")
        R.update(_one_id(rest, command), opts["resources"])
    elif command == "events":
        cid = _one_id(rest, command)
        if opts.get("stats"):
            print(R.stats_event(cid))
        else:
            R.events(cid, R.parse_interval(opts.get("interval") or "5s"))
    elif command == "features":
        from minicontainer.oci.features import features

        print(json.dumps(features(), indent=2))
    elif command == "spec":
        from minicontainer.oci.features import write_default_spec

        if rest:
            raise ArgvError("spec takes no arguments")
        write_default_spec(opts.get("bundle") or ".")
    return 0


def _exec(opts: dict, rest: list[str]) -> int:
    from minicontainer.oci import runtime as R

    if not rest:
        raise ArgvError("exec needs a container id")
    for name in ("process_label", "apparmor", "cgroup", "cap", "gids"):
        if opts.get(name):
            raise ArgvError(f"exec --{name.replace('_', '-')} is not supported")
    if opts.get("preserve_fds") not in (None, "0"):
        raise ArgvError("exec --preserve-fds is not supported yet")
    return R.exec_process(rest[0], process_file=opts.get("process"), argv=tuple(rest[1:]), env=tuple(opts.get("env", ())),
                          cwd=opts.get("cwd"), user=opts.get("user"), tty=bool(opts.get("tty") or opts.get("t")),
                          detach=bool(opts.get("detach") or opts.get("d")), pid_file=opts.get("pid_file"),
                          console_socket=opts.get("console_socket"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    log = Log(None, "text", False)
    try:
        gopts, rest = parse_flags(argv, GLOBAL, "global")
        fmt = gopts.get("log_format", "text")
        if fmt not in ("text", "json"):
            raise ArgvError(f"invalid --log-format {fmt!r}: use text or json")
        log = Log(gopts.get("log"), fmt, bool(gopts.get("debug")))
        if gopts.get("version") or gopts.get("v"):
            print(f"{PROG} version {VERSION}\nspec: {SPEC_VERSION}\npython: {sys.version.split()[0]}")
            return 0
        if gopts.get("help") or gopts.get("h") or not rest:
            print(USAGE)
            return 0 if rest or gopts else 1
        command, args = rest[0], rest[1:]
        if log.debugging:
            import shlex

            log.debug(f"called: {shlex.join([PROG, *argv])}")
        if gopts.get("systemd-cgroup"):
            raise ArgvError("--systemd-cgroup is not supported: minicontainer manages cgroupfs directly "
                            "(configure the engine with the cgroupfs manager)")
        if gopts.get("rootless") not in (None, "false", "auto"):
            raise ArgvError("--rootless true is not supported by minicontainer-runc")
        if command not in COMMANDS:
            raise ArgvError(f"unknown command {command!r}; commands: {', '.join(COMMANDS)}")
        opts, rest = parse_flags(args, COMMANDS[command], command)
        for name in _IGNORED:
            if opts.get(name.lstrip("-")):
                log.debug(f"{name}: accepted, no effect here")
        if gopts.get("root"):
            # runc's --root is where its state lives: ours is MINICONTAINER_ROOT,
            # so `minicontainer ps` with the same root sees these containers.
            os.environ["MINICONTAINER_ROOT"] = os.path.abspath(gopts["root"])
            # A bundle's container needs only an empty mountpoint directory of
            # ours besides its state: keep it under the same root (engines
            # clear the environment, so MINICONTAINER_HOME rarely reaches us).
            os.environ.setdefault("MINICONTAINER_HOME", os.path.join(os.path.abspath(gopts["root"]), "home"))
        return dispatch(command, opts, rest, log)
    except ArgvError as e:
        log.error(e)
        return 1
    except Exception as e:  # noqa: BLE001 - one line for the engine, a traceback only with --debug
        from minicontainer.errors import MiniError

        if log.debugging:
            import traceback

            traceback.print_exc()
        if isinstance(e, MiniError):
            log.error(e)
        elif isinstance(e, OSError):
            log.error(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
        else:
            log.error(f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)")
        return 1
    finally:
        log.close()


def entry() -> None:
    """The console script ``minicontainer-runc``: :func:`main`, ended without
    the interpreter's teardown (minicontainer/main.py's leave: ~12 ms of each
    verb an engine calls three to five times a container)."""
    from minicontainer.main import leave

    leave(main)


if __name__ == "__main__":
    entry()
