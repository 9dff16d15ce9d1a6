"""Reading /proc: what the kernel says about a process (proc(5))."""

from __future__ import annotations

import os


def proc_start_time(pid: int) -> int:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), 0 if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return 0
    # The command name (field 2) may contain spaces and ')': split after the last ')'.
    rest = data[data.rfind(b")") + 2 :].split()
    if not rest or rest[0] in (b"Z", b"X"):
        return 0  # a zombie has exited; it only waits for its parent to reap it
    return int(rest[19]) if len(rest) > 19 else 0


def zombie_exit_code(pid: int) -> int | None:
    """The exit code (as os.waitstatus_to_exitcode gives it) of ``pid`` if it
    is a zombie: field 52 of /proc/<pid>/stat (proc(5), Linux 3.5), readable
    until its parent reaps it. None if it is not (or no longer) a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2 :].split()
    if len(rest) < 50 or rest[0] != b"Z":
        return None
    return os.waitstatus_to_exitcode(int(rest[49]))
