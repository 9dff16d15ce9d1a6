"""``image import FILE NAME [--force]`` without click: what the command does
once its arguments are read, for both parsers (main.py's lean one,
commands/fastparse.py, and click's in commands/image.py).

An import of a root filesystem is a one-off, but the bench compares it with
``tar -xf`` (issue 15): click and what it imports cost ~38 ms of a 200 MB
import here (median of 7 alternating runs, 417 -> 379 ms, tar 239), so a
plain command line skips it, as a plain ``run`` does (main.py).
"""

from __future__ import annotations

import sys
import time

from minicontainer.units import format_size


def import_tarball(file: str, name: str, force: bool) -> int:
    from minicontainer.errors import MiniError
    from minicontainer.images import importer
    from minicontainer.images.store import ImageStore

    progress = Progress(importer.tarball_size(file))
    try:
        outcome = importer.import_tarball(ImageStore(), file, name, force=force, progress=progress)
    except MiniError as e:
        e.exit_code = 1  # docker's code for an image command's errors, as click's image group gives (ExitOneGroup)
        raise
    finally:
        progress.close()
    notices(outcome)
    done(outcome)
    return 0


def notices(outcome) -> None:
    """What an import left out, on stderr."""
    if outcome.skipped_special:
        print(f"note: skipped {outcome.skipped_special} device node(s)/FIFO(s); /dev is a fresh tmpfs at run time",
              file=sys.stderr)
    if getattr(outcome, "skipped_mounts", 0):
        print(f"note: skipped {outcome.skipped_mounts} mount point(s) of other filesystems", file=sys.stderr)


def done(outcome) -> None:
    """The new image's name and short id: the one line on stdout."""
    img = outcome.image
    how = ""
    if outcome.from_cache:
        how = " (already imported: shares the stored copy)"
    elif outcome.shared:
        how = " (same content as a stored image: shares it)"
    print(f"{img.name} {img.short_id}{how}", flush=True)


class Progress:
    """A one-line progress display on stderr: bytes, total if known, speed.
    Only on a terminal (a log file would fill with carriage returns)."""

    def __init__(self, total: int | None, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self.total = total
        self.done = 0
        self.start = time.monotonic()
        self._last = 0.0

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self._last >= 0.1:
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        speed = self.done / max(now - self.start, 1e-6)
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            text = f"[{bar:<30}] {format_size(self.done)} / {format_size(self.total)}  {frac:4.0%}"
        else:
            text = f"{format_size(self.done)}"
        self.stream.write(f"\r{text}  {format_size(int(speed))}/s\033[K")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._last:
            self.stream.write("\r\033[K")
            self.stream.flush()
