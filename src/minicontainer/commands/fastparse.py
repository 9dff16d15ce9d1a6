"""``run``'s flags read without click, for the start path.

Importing click costs 30-50 ms here, more than the rest of what ``run`` does
before the fork (measured: ``python -X importtime``). ``run``'s flags are all
plain (a switch, one string, or a repeatable string), so a few lines parse
them the way click's parser does: ``--name=x`` and ``--name x``, clusters of
short switches with the last one taking a value (``-itm32m``), ``--``, and
the first word that is not a flag being the image, after which everything
is the command (click's ``allow_interspersed_args=False``).

Whatever is not plain here returns None, and click parses the command line
instead: an unknown flag, a switch given a value, a missing value or image,
``--help``. So click's messages stay the only error messages, and this
parser only ever accepts what click accepts, with the same values
(tests/unit/test_fastparse.py checks both against click's own parse, and
that RUN_OPTIONS is exactly what commands/run.py declares).
"""

from __future__ import annotations

FLAG, ONE, MANY = "flag", "one", "many"

# (dest, kind, flag names) as commands/run.py declares them for click
RUN_OPTIONS = (
    ("interactive", FLAG, ("-i", "--interactive")),
    ("tty", FLAG, ("-t", "--tty")),
    ("remove", FLAG, ("--rm",)),
    ("name", ONE, ("--name",)),
    ("hostname", ONE, ("-h", "--hostname")),
    ("env", MANY, ("-e", "--env")),
    ("env_file", MANY, ("--env-file",)),
    ("workdir", ONE, ("-w", "--workdir")),
    ("entrypoint", ONE, ("--entrypoint",)),
    ("publish", MANY, ("-p", "--publish")),
    ("publish_all", FLAG, ("-P", "--publish-all")),
    ("pid", ONE, ("--pid",)),
    ("network", ONE, ("--network", "--net")),
    ("uts", ONE, ("--uts",)),
    ("ipc", ONE, ("--ipc",)),
    ("network_alias", MANY, ("--network-alias", "--net-alias")),
    ("ip", ONE, ("--ip",)),
    ("add_host", MANY, ("--add-host",)),
    ("dns", MANY, ("--dns",)),
    ("cgroupns", ONE, ("--cgroupns",)),
    ("use_chroot", FLAG, ("--chroot",)),
    ("read_only", FLAG, ("--read-only",)),
    ("init", FLAG, ("--init",)),
    ("restart", ONE, ("--restart",)),
    ("volume", MANY, ("-v", "--volume")),
    ("mount", MANY, ("--mount",)),
    ("tmpfs", MANY, ("--tmpfs",)),
    ("memory", ONE, ("-m", "--memory")),
    ("memory_swap", ONE, ("--memory-swap",)),
    ("memory_reservation", ONE, ("--memory-reservation",)),
    ("cpus", ONE, ("--cpus",)),
    ("cpu_shares", ONE, ("-c", "--cpu-shares")),
    ("cpuset_cpus", ONE, ("--cpuset-cpus",)),
    ("cpuset_mems", ONE, ("--cpuset-mems",)),
    ("pids_limit", ONE, ("--pids-limit",)),
    ("device_read_bps", MANY, ("--device-read-bps",)),
    ("device_write_bps", MANY, ("--device-write-bps",)),
    ("cgroup_parent", ONE, ("--cgroup-parent",)),
    ("device", MANY, ("--device",)),
    ("cap_add", MANY, ("--cap-add",)),
    ("cap_drop", MANY, ("--cap-drop",)),
    ("privileged", FLAG, ("--privileged",)),
    ("security_opt", MANY, ("--security-opt",)),
    ("ulimit", MANY, ("--ulimit",)),
    ("user", ONE, ("-u", "--user")),
    ("group_add", MANY, ("--group-add",)),
    ("userns", FLAG, ("--userns",)),
    ("detach", FLAG, ("-d", "--detach")),
    ("explain", FLAG, ("--explain",)),
    ("dry_run", FLAG, ("--dry-run",)),
    ("report_path", ONE, ("--report",)),
)
# run's own switches, which run_container takes by name; the rest is the container's spec
RUN_ONLY = ("explain", "dry_run", "userns", "detach", "report_path")

_BY_NAME = {name: (dest, kind) for dest, kind, names in RUN_OPTIONS for name in names}
_DEFAULT = {FLAG: False, ONE: None, MANY: ()}


def parse_run(argv: list[str]):
    """``run``'s arguments (after the word ``run``) as (image, command,
    run's own switches, the container's options), the values click would
    give; None when click must parse them."""
    values = {dest: _DEFAULT[kind] for dest, kind, _ in RUN_OPTIONS}
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            i += 1
            break
        if word[:1] != "-" or word == "-":
            break  # the image: every word after it is the command's
        if word.startswith("--"):
            name, eq, value = word.partition("=")
            if name not in _BY_NAME:
                return None
            dest, kind = _BY_NAME[name]
            if kind == FLAG:
                if eq:
                    return None  # click: "Option '--rm' does not take a value"
                values[dest] = True
            else:
                if not eq:
                    i += 1
                    if i == len(argv):
                        return None
                    value = argv[i]
                _store(values, dest, kind, value)
        else:
            j = 1
            while j < len(word):  # -it, -itm32m, -m 32m: switches, then one that takes the rest or the next word
                if "-" + word[j] not in _BY_NAME:
                    return None
                dest, kind = _BY_NAME["-" + word[j]]
                if kind == FLAG:
                    values[dest] = True
                    j += 1
                    continue
                value = word[j + 1:]
                if not value:
                    i += 1
                    if i == len(argv):
                        return None
                    value = argv[i]
                _store(values, dest, kind, value)
                break
        i += 1
    if i == len(argv):
        return None  # no image: click says so
    run_opts = {k: values.pop(k) for k in RUN_ONLY}
    return argv[i], tuple(argv[i + 1:]), run_opts, values


def _store(values: dict, dest: str, kind: str, value: str) -> None:
    values[dest] = values[dest] + (value,) if kind == MANY else value


def parse_image_import(argv: list[str]):
    """``image import``'s arguments (after those two words) as (file, name,
    force), when they are FILE NAME and at most a ``--force`` anywhere, as
    click reads them (commands/image.py: two arguments, one switch; ``-`` is
    stdin, an argument); None for anything else (``--help``, ``--``, another
    flag, a missing or extra word), which click parses and answers."""
    words = [w for w in argv if w != "--force"]
    if len(words) != 2 or len(argv) - len(words) > 1:
        return None  # click accepts --force twice; nobody writes it, so click may have it
    if any(w[:1] == "-" and w != "-" for w in words):
        return None
    return words[0], words[1], len(words) < len(argv)
