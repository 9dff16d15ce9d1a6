"""Pure parsers for the values users type after resource flags.

Nothing here touches the system: each function turns a string into a number
(or a tuple of numbers) or raises :class:`~minicontainer.errors.UsageError`
with the flag's name, the bad value and an example of a good one. Checks that
need the host (does CPU 3 exist? is /dev/sda a block device?) live in
``cgroups/resources.py``, which calls these.

Sizes follow Docker (its go-units ``RAMInBytes``): a decimal number, an
optional space, an optional unit ``b k m g t p`` (any case), an optional ``i``
and an optional ``b``. Units are binary: ``64m`` and ``64MiB`` and ``64mb`` all
mean 64 * 1024 * 1024 bytes, because that is what ``docker run -m 64mb`` does.
"""

from __future__ import annotations

import re

from minicontainer.errors import UsageError

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

# The kernel stores limits in signed 64-bit counters; anything larger is
# a typo, not a wish.
INT64_MAX = 2**63 - 1

NANO = 10**9  # --cpus is kept in nano-CPUs, like Docker's NanoCPUs

_UNITS = {"": 1, "b": 1, "k": KIB, "m": MIB, "g": GIB, "t": 1024 * GIB, "p": 1024 * 1024 * GIB}

# number, optional space, optional unit letter, optional "i", optional "b"
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?) ?([kmgtp]?)(i?)(b?)$", re.IGNORECASE)

SIZE_HINT = "use a number with an optional unit b, k, m or g, e.g. 64m"


def _invalid(flag: str, text: object, hint: str) -> UsageError:
    return UsageError(f"invalid {flag} value {str(text)!r}", hint)


def parse_size(text: str, flag: str = "size") -> int:
    """``"512k"`` -> 524288, ``"1.5g"`` -> 1610612736, ``"1024"`` -> 1024.

    Fractions are allowed (Docker allows them) and rounded down to a byte.
    Negative numbers, empty strings and unknown units are refused.
    """
    s = text.strip() if isinstance(text, str) else ""
    m = _SIZE_RE.match(s)
    if not m:
        raise _invalid(flag, text, SIZE_HINT)
    number, unit, i, _b = m.groups()
    if i and not unit:  # "10ib" is not a size
        raise _invalid(flag, text, SIZE_HINT)
    if "." in number:  # "1.5g": exact decimal arithmetic (decimal is imported only then: ~2 ms of every run)
        from decimal import Decimal

        value = int(Decimal(number) * _UNITS[unit.lower()])
    else:
        value = int(number) * _UNITS[unit.lower()]
    if value > INT64_MAX:
        raise _invalid(flag, text, "the value is larger than the kernel's 64-bit limit")
    return value


def format_size(n: int) -> str:
    """83886080 -> ``"80 MiB"``; 1610612736 -> ``"1.5 GiB"``; 512 -> ``"512 B"``."""
    if n < 0:
        return f"{n} B"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    if unit == "B":
        return f"{n} B"
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{text} {unit}"


def parse_cpus(text: str, flag: str = "--cpus") -> int:
    """``"0.05"`` -> 50000000 nano-CPUs (5% of one CPU).

    Exact decimal arithmetic, so ``0.1`` is exactly 100000000, and more than
    nine decimals is refused instead of being rounded silently.
    """
    hint = "use a positive number of CPUs, e.g. 0.5 or 2"
    s = text.strip() if isinstance(text, str) else ""
    if not re.fullmatch(r"\d+(?:\.\d+)?|\.\d+", s):
        raise _invalid(flag, text, hint)
    from decimal import Decimal, InvalidOperation  # here: only --cpus needs it

    try:
        nanos = Decimal(s) * NANO
    except InvalidOperation:  # pragma: no cover - the regex already checked
        raise _invalid(flag, text, hint) from None
    if nanos != nanos.to_integral_value():
        raise _invalid(flag, text, "at most 9 decimals (nano-CPU precision)")
    if nanos <= 0:
        raise _invalid(flag, text, hint)
    return int(nanos)


def parse_int(text: str | int, flag: str, *, minimum: int | None = None, maximum: int | None = None,
              hint: str | None = None) -> int:
    """A plain decimal integer within [minimum, maximum]."""
    if isinstance(text, bool):
        raise _invalid(flag, text, hint or "use a whole number")
    if isinstance(text, int):
        value = text
    else:
        s = text.strip() if isinstance(text, str) else ""
        if not re.fullmatch(r"-?\d+", s):
            raise _invalid(flag, text, hint or "use a whole number")
        value = int(s)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        if hint is None:
            lo = "" if minimum is None else f" from {minimum}"
            hi = "" if maximum is None else f" up to {maximum}"
            hint = f"use a whole number{lo}{hi}"
        raise _invalid(flag, text, hint)
    return value


def parse_cpuset(text: str, flag: str = "--cpuset-cpus") -> tuple[int, ...]:
    """``"0-2,4"`` -> (0, 1, 2, 4): the list format of cpuset(7), "List format".

    The result is sorted and without duplicates.
    """
    hint = "use CPU (or memory node) numbers and ranges, e.g. 0-2,4"
    s = text.strip() if isinstance(text, str) else ""
    if not s:
        raise _invalid(flag, text, hint)
    out: set[int] = set()
    for part in s.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if not m:
            raise _invalid(flag, text, hint)
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise _invalid(flag, text, f"the range {part.strip()!r} goes backwards; write it low-high")
        if hi - lo > 65536:
            raise _invalid(flag, text, "the range is larger than any machine")
        out.update(range(lo, hi + 1))
    return tuple(sorted(out))


def format_cpuset(ids: tuple[int, ...] | list[int] | set[int] | frozenset[int]) -> str:
    """(0, 1, 2, 4) -> ``"0-2,4"``, the form the kernel prints and accepts."""
    parts: list[str] = []
    ordered = sorted(set(ids))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def split_device_rate(text: str, flag: str = "--device-read-bps") -> tuple[str, int]:
    """``"/dev/sda:1mb"`` -> ("/dev/sda", 1048576).

    Only the syntax is checked here; resources.py checks that the path is a
    block device and turns it into major:minor. The rate uses the size units
    and must be positive (a rate of 0 means "no limit" to the kernel, which
    is surely not what was meant).
    """
    hint = "use DEVICE:RATE with a device path and a rate like 1mb, e.g. /dev/sda:1mb"
    s = text.strip() if isinstance(text, str) else ""
    path, sep, rate = s.rpartition(":")
    if not sep or not path or not rate:
        raise _invalid(flag, text, hint)
    if not path.startswith("/"):
        raise _invalid(flag, text, "the device must be an absolute path like /dev/sda")
    try:
        value = parse_size(rate, flag)
    except UsageError:
        raise _invalid(flag, text, hint) from None
    if value <= 0:
        raise _invalid(flag, text, "the rate must be more than 0 bytes per second")
    return path, value


def human_duration(seconds: float) -> str:
    """A duration the way docker ps words it: "Less than a second",
    "5 seconds", "About a minute", "3 minutes", "About an hour", "2 hours",
    "3 days", "2 weeks", "4 months", "2 years"."""
    s = int(seconds)
    if seconds < 1:
        return "Less than a second"
    if s < 60:
        return "1 second" if s == 1 else f"{s} seconds"
    minutes = round(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // (24 * 7)} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // (24 * 30)} months"
    return f"{hours // (24 * 365)} years"


def ago(t: float | None, now: float | None = None) -> str:
    """``human_duration`` of the time since ``t``, with " ago" ("-" for no time)."""
    import time

    if not t:
        return "-"
    return human_duration(max(0.0, (time.time() if now is None else now) - t)) + " ago"
