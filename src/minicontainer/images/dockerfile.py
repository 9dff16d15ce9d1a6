"""A Dockerfile, parsed into instructions. Pure: no file is read here but the text.

The format is docker's ("Dockerfile reference"): one instruction per line,
``\\`` at the end of a line continues it, ``#`` starts a comment line; an
instruction's arguments are in *exec form* (a JSON array of strings) or
*shell form* (text handed to the SHELL, ``/bin/sh -c`` by default). Every
error names the line it is on: ``Dockerfile:7: ...``.

Variables (``$NAME``, ``${NAME}``, ``${NAME:-default}``, ``${NAME:+alt}``)
are replaced by :func:`expand` in the instructions that take them (not in
RUN, CMD and ENTRYPOINT: their shell does that, at run time).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from minicontainer.errors import UsageError

KNOWN = ("FROM", "RUN", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER", "CMD", "ENTRYPOINT", "EXPOSE", "LABEL",
         "VOLUME", "STOPSIGNAL", "SHELL")
_EXPANDED = ("FROM", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER", "EXPOSE", "LABEL", "VOLUME", "STOPSIGNAL")
_FLAG = re.compile(r"--([a-z-]+)=(\S*)\s*")


class DockerfileError(UsageError):
    """A Dockerfile that cannot be built; the message names file and line."""

    exit_code = 1


@dataclass(frozen=True)
class Instruction:
    line: int  # where it starts
    keyword: str  # upper case
    args: str  # the text after the keyword and its --flags
    flags: tuple[tuple[str, str], ...] = ()  # --from=..., --chown=...
    exec_form: tuple[str, ...] | None = None  # a JSON array, if the arguments were one
    text: str = ""  # the instruction as written (one line), for history and the cache

    def flag(self, name: str) -> str | None:
        return dict(self.flags).get(name)


def parse(text: str, filename: str = "Dockerfile") -> list[Instruction]:
    out = []
    for line, logical in _logical_lines(text):
        word, _, rest = logical.strip().partition(" ")
        keyword = word.upper()
        if keyword not in KNOWN:
            raise DockerfileError(f"{filename}:{line}: unknown instruction {word!r}", f"known: {', '.join(KNOWN)}")
        rest = rest.strip()
        flags = []
        while keyword in ("COPY", "ADD", "FROM", "RUN") and (m := _FLAG.match(rest)):
            flags.append((m.group(1), m.group(2)))
            rest = rest[m.end():]
        allowed = {"COPY": {"from", "chown", "chmod"}, "ADD": {"chown", "chmod"}, "FROM": {"platform"},
                   "RUN": {"network"}}.get(keyword, set())
        for name, _ in flags:
            if name not in allowed:
                raise DockerfileError(f"{filename}:{line}: {keyword} has no flag --{name}",
                                      f"{keyword} takes {', '.join('--' + a for a in sorted(allowed)) or 'no flags'}")
        exec_form = None
        if rest.startswith("["):
            try:
                value = json.loads(rest)
            except ValueError:
                value = None  # docker: not JSON, so it is shell form
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                exec_form = tuple(value)
        if not rest and keyword not in ("CMD", "ENTRYPOINT"):
            raise DockerfileError(f"{filename}:{line}: {keyword} needs arguments", "see the Dockerfile reference")
        out.append(Instruction(line, keyword, rest, tuple(flags), exec_form, f"{keyword} {logical.strip()[len(word):].strip()}"))
    if not out or out[0].keyword not in ("FROM", "ARG") or not any(i.keyword == "FROM" for i in out):
        raise DockerfileError(f"{filename}: the first instruction must be FROM (or ARG before FROM)",
                              "start with e.g. 'FROM mini' or 'FROM scratch'")
    return out


def _logical_lines(text: str):
    """(first line number, text) of each instruction: continuations joined, comments dropped."""
    start, parts = 0, []
    for n, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not parts and (not stripped or stripped.startswith("#")):
            continue
        if parts and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not parts:
            start = n
        if stripped.endswith("\\"):
            parts.append(stripped[:-1])
            continue
        parts.append(stripped)
        yield start, " ".join(p for p in parts if p)
        parts = []
    if parts:
        yield start, " ".join(parts)


_VAR = re.compile(r"\\\$|\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:[-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def expand(text: str, variables: dict[str, str]) -> str:
    """Replace $NAME, ${NAME}, ${NAME:-default}, ${NAME:+alt}; ``\\$`` is a dollar."""

    def sub(m: re.Match) -> str:
        if m.group(0) == "\\$":
            return "$"
        name = m.group(1) or m.group(4)
        value = variables.get(name, "")
        if m.group(2) == ":-":
            return value or m.group(3)
        if m.group(2) == ":+":
            return m.group(3) if value else ""
        return value

    return _VAR.sub(sub, text)


def needs_expansion(keyword: str) -> bool:
    return keyword in _EXPANDED


def words(text: str) -> list[str]:
    """Shell-form arguments of COPY, EXPOSE, VOLUME ...: split on blanks, quotes honoured."""
    import shlex

    try:
        return shlex.split(text)
    except ValueError as e:
        raise DockerfileError(f"bad quoting: {e}") from None


def key_values(text: str, keyword: str) -> list[tuple[str, str]]:
    """ENV/LABEL/ARG arguments: ``K=V K2="v 2"``, or the old ``K V`` form of ENV/LABEL."""
    items = words(text)
    if items and "=" not in items[0] and keyword in ("ENV", "LABEL"):
        key, _, value = text.strip().partition(" ")
        return [(key, value.strip())]
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not key or (not sep and keyword != "ARG"):
            raise DockerfileError(f"{keyword} wants KEY=VALUE, not {item!r}")
        out.append((key, value if sep else None))
    return out
