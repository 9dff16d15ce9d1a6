"""The one rule for the names we turn into file and directory names.

Container names, image names, image ids and cgroup directory names all end
up as a single path component (``containers/<id>``, ``refs/<name>``,
``.../minicontainer-<id>``). The rule that keeps them safe is the same for
all: a letter or digit first (so never ``.``, ``..``, a hidden file or an
option like ``-rf``), then only letters, digits and ``_.-`` (so never a
``/``, a space or a newline), and a bounded length. Only the length and the
optional docker-style ``:tag`` of image names differ.

Import-light on purpose: spec, the image store and the cgroup managers all
use it, and ``run --help`` should not load any of them.
"""

from __future__ import annotations

import functools
import re

from minicontainer.errors import UsageError


@functools.lru_cache(maxsize=None)
def _pattern(max_len: int, tag: bool) -> re.Pattern[str]:
    word = rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{max_len - 1}}}"
    # a tag may start with any allowed character: it follows a ':' in the same component
    return re.compile(word + (r"(?::[A-Za-z0-9_.-]{1,64})?" if tag else ""))


def is_name(value: object, *, max_len: int = 64, tag: bool = False) -> bool:
    """Does ``value`` follow the rule (at most ``max_len`` characters before any ``:tag``)?"""
    # fullmatch, not match with '$': '$' also matches before a final newline
    return isinstance(value, str) and _pattern(max_len, tag).fullmatch(value) is not None


def check_name(value: object, kind: str, hint: str, *, max_len: int = 64, tag: bool = False,
               used_as: str | None = None) -> str:
    """Return ``value`` if it is a valid ``kind`` of name, else raise a UsageError.

    The message reads "invalid <kind> '<value>'" (then "for <used_as>" when
    given); ``hint`` tells the user what the rule is in their terms.
    """
    if not is_name(value, max_len=max_len, tag=tag):
        where = f" for {used_as}" if used_as else ""
        raise UsageError(f"invalid {kind} {value!r}{where}", hint)
    return value  # type: ignore[return-value]  # is_name checked it is a str
