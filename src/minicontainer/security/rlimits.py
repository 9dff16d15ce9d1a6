"""``--ulimit NAME=SOFT[:HARD]``: resource limits for the container's process.

Limits are per process and inherited across fork and execve
(getrlimit(2)), so setting them in the runtime's child just before exec is
all that is needed. Raising a hard limit needs CAP_SYS_RESOURCE, so they
are applied before capabilities are dropped; ``nofile`` can never exceed
/proc/sys/fs/nr_open.
"""

from __future__ import annotations

import resource
from collections import namedtuple

from minicontainer.errors import UsageError

INFINITY = resource.RLIM_INFINITY  # -1 in Python

# Docker's names (they come from ulimit(1)/prlimit(1)) -> RLIMIT_* numbers.
ULIMIT_NAMES: dict[str, int] = {
    "as": resource.RLIMIT_AS,
    "core": resource.RLIMIT_CORE,
    "cpu": resource.RLIMIT_CPU,
    "data": resource.RLIMIT_DATA,
    "fsize": resource.RLIMIT_FSIZE,
    "locks": getattr(resource, "RLIMIT_LOCKS", 10),  # not exposed by every Python build
    "memlock": resource.RLIMIT_MEMLOCK,
    "msgqueue": resource.RLIMIT_MSGQUEUE,
    "nice": resource.RLIMIT_NICE,
    "nofile": resource.RLIMIT_NOFILE,
    "nproc": resource.RLIMIT_NPROC,
    "rss": resource.RLIMIT_RSS,
    "rtprio": resource.RLIMIT_RTPRIO,
    "rttime": resource.RLIMIT_RTTIME,
    "sigpending": resource.RLIMIT_SIGPENDING,
    "stack": resource.RLIMIT_STACK,
}


# One limit: Docker's name, soft and hard values (``INFINITY`` = unlimited).
# collections.namedtuple, not typing.NamedTuple: the same class, without
# typing's import and metaclass (~2.5 ms of every run, issue 15).
Ulimit = namedtuple("Ulimit", "name soft hard")


def _value(text: str, spec: str) -> int:
    t = text.strip().lower()
    if t in ("-1", "unlimited", "infinity"):
        return INFINITY
    if not t.isdigit():
        raise UsageError(
            f"invalid --ulimit {spec!r}: {text!r} is not a number",
            "use NAME=SOFT[:HARD] with whole numbers, or -1 / unlimited",
        )
    return int(t)


def _order(v: int) -> float:
    return float("inf") if v == INFINITY else v


def parse_ulimit(spec: str) -> Ulimit:
    """``nofile=1024:2048`` -> Ulimit('nofile', 1024, 2048). Pure."""
    name, sep, values = (spec or "").partition("=")
    name = name.strip().lower()
    if not sep or not name or not values.strip():
        raise UsageError(f"invalid --ulimit {spec!r}", "use NAME=SOFT[:HARD], e.g. --ulimit nofile=1024:2048")
    if name not in ULIMIT_NAMES:
        raise UsageError(
            f"invalid --ulimit {spec!r}: unknown limit {name!r}",
            "known limits: " + ", ".join(sorted(ULIMIT_NAMES)),
        )
    soft_s, colon, hard_s = values.partition(":")
    soft = _value(soft_s, spec)
    hard = _value(hard_s, spec) if colon else soft
    # Python spells RLIM_INFINITY as -1; it is the largest value to the kernel.
    if _order(soft) > _order(hard):
        raise UsageError(
            f"invalid --ulimit {spec!r}: the soft limit is larger than the hard limit",
            "the soft limit must be at most the hard limit (setrlimit(2))",
        )
    return Ulimit(name, soft, hard)
