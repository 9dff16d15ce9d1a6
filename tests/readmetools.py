"""The README tutorial's commands as data, so a test can run each as typed.

Every ```console block in the "Tutorial" section is preceded by a marker line:

    <!-- tutorial: run -->                 run it on every host
    <!-- tutorial: run on cgroup v1 -->    run it where the cgroup controllers are v1 (v2 likewise)
    <!-- tutorial: not run: REASON -->     say why not (docker, the network, the host's own cgroups)

In a block, a line starting ``# `` is a command (the root prompt); the lines
after it, up to the next command, are the output shown for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = re.compile(r"^<!-- tutorial: (run(?: on cgroup (v1|v2))?|not run: .+) -->$")


@dataclass
class Command:
    line: int  # in README.md
    text: str
    shown: list[str] = field(default_factory=list)


@dataclass
class Block:
    line: int
    marker: str  # the marker's text, or "" when there is none
    cgroup: str | None = None  # "v1" / "v2": only on such a host
    commands: list[Command] = field(default_factory=list)

    @property
    def runs(self) -> bool:
        return self.marker.startswith("run")


def tutorial_blocks(text: str | None = None) -> list[Block]:
    lines = (README.read_text() if text is None else text).splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("## Tutorial"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    blocks: list[Block] = []
    i = start
    while i < end:
        if lines[i].strip() == "```console":
            prev = next((lines[j].strip() for j in range(i - 1, start, -1) if lines[j].strip()), "")
            m = MARKER.match(prev)
            block = Block(line=i + 1, marker=m.group(1) if m else "", cgroup=m.group(2) if m else None)
            i += 1
            while i < end and lines[i].strip() != "```":
                if lines[i].startswith("# "):
                    block.commands.append(Command(i + 1, lines[i][2:]))
                elif block.commands:
                    block.commands[-1].shown.append(lines[i])
                i += 1
            blocks.append(block)
        i += 1
    return blocks


_STEP_NUMBER = re.compile(r"^\s*\d+\.\s")
_HEX_ID = re.compile(r"\b[0-9a-f]{12,}\b")


def normalize(line: str) -> str:
    """One line as compared: no --explain step number, spaces collapsed."""
    return " ".join(_STEP_NUMBER.sub("", line).split())


def checked_lines(shown: list[str]) -> list[str]:
    """The lines of shown output a run must print too: not the elided ones
    ('...') nor the ones holding a container's random id."""
    return [normalize(ln) for ln in shown if normalize(ln) and "..." not in ln and not _HEX_ID.search(ln)]


DEFAULT_HOME = "/var/lib/minicontainer"  # what README's output shows; a test's store is elsewhere


def run_block(block: Block, workdir: Path, home: Path, timeout: float = 120) -> list[str]:
    """Run the block's commands in order with ``bash -c``, as typed, in
    ``workdir`` with ``minicontainer`` on PATH (this checkout's) and its store
    at ``home``; returns what went wrong, one sentence each ([] when every
    command ran and printed every checked line shown for it)."""
    import os
    import shutil
    import subprocess

    from minicontainer.demos import shim_dir

    shim = shim_dir()
    env = dict(os.environ, PATH=shim + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
               MINICONTAINER_HOME=str(home), MINICONTAINER_ROOT=str(home) + "-run")
    problems: list[str] = []
    try:
        for cmd in block.commands:
            proc = subprocess.run(["bash", "-c", cmd.text], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
            out = proc.stdout.replace(str(home), DEFAULT_HOME)
            where = f"README.md:{cmd.line} `{cmd.text}`"
            # 125: minicontainer refused it; 126/127: not executable / not found (in the image, or on the host)
            if proc.returncode in (125, 126, 127) or "syntax error" in out:
                problems.append(f"{where} failed (exit {proc.returncode}): {out.strip()[-500:]}")
                continue
            got = {normalize(line) for line in out.splitlines()}
            text = "\n".join(got)
            for want in checked_lines(cmd.shown):
                if want not in got and want not in text:
                    problems.append(f"{where} did not print {want!r}; it printed: {out.strip()[-800:]}")
                    break
    finally:
        shutil.rmtree(shim, ignore_errors=True)
    return problems
