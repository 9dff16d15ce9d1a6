"""What ``build --progress plain|tty`` prints as the build goes (BuildKit's two styles).

The builder reports these events: a step starts, a RUN step's command
starts, a step was taken from the cache, a RUN step finished, a step ended,
the image was written.

- ``plain`` (a pipe, a CI log): one line per event, BuildKit's plain
  output: ``#3 [3/5] RUN make``, ``#3 CACHED``, ``#3 DONE 1.2s``.
- ``tty`` (a terminal): a status line at the bottom, redrawn in place,
  ``[+] Building 3.4s (3/5)``, above it one finished line per step,
  ``=> [2/5] COPY app /app  0.0s`` or ``=> CACHED [3/5] RUN make``; a RUN
  step that runs gets its line before its command starts, so what the
  command writes comes right below it, and ``=> DONE [3/5] 1.2s`` after. The status line ends as ``[+] Building 4.1s (5/5)
  FINISHED``.

``auto`` is tty when the output is a terminal, as BuildKit's.
"""

from __future__ import annotations

import time
from typing import TextIO

STATUS_CLEAR = "\r\033[K"  # back to the line's start, erase it (console_codes(4))


class PlainProgress:
    def __init__(self, out: TextIO):
        self.out = out

    def _line(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def start(self, n: int, total: int, text: str) -> None:
        self._line(f"#{n} [{n}/{total}] {text}")

    def running(self, n: int) -> None:
        """A RUN step's command starts: its output follows the step's line."""

    def cached(self, n: int) -> None:
        self._line(f"#{n} CACHED")

    def done(self, n: int, seconds: float) -> None:
        self._line(f"#{n} DONE {seconds:.1f}s")

    def step_end(self, n: int) -> None:
        """The step is over (whatever it was): nothing to say in plain output."""

    def wrote(self, n: int, image_id: str, tag: str) -> None:
        self._line(f"#{n} writing image sha256:{image_id} named {tag}")

    def close(self) -> None:
        """The build ended (or failed): nothing left on screen to tidy."""


class TtyProgress:
    def __init__(self, out: TextIO, clock=time.monotonic):
        self.out = out
        self.clock = clock
        self.began = clock()
        self.total = 0
        self.finished = 0
        self._step: tuple[int, str, float, bool] | None = None  # n, text, started, cached
        self._header_printed = False

    def _status(self, final: bool = False) -> None:
        took = self.clock() - self.began
        tail = " FINISHED" if final else (f"  => {self._step[1][:60]}" if self._step else "")
        self.out.write(f"{STATUS_CLEAR}[+] Building {took:.1f}s ({self.finished}/{self.total}){tail}")
        if final:
            self.out.write("\n")
        self.out.flush()

    def _above(self, line: str) -> None:
        """A finished line above the status line, which is then drawn again."""
        self.out.write(f"{STATUS_CLEAR}{line}\n")
        self._status()

    def start(self, n: int, total: int, text: str) -> None:
        self.total = total
        self._step = (n, f"[{n}/{total}] {text}", self.clock(), False)
        self._header_printed = False
        self._status()

    def running(self, n: int) -> None:
        # What the command writes goes to the terminal directly: give it its
        # own lines below a header (the status line comes back after it).
        if self._step:
            self.out.write(f"{STATUS_CLEAR}=> {self._step[1]}\n")
            self.out.flush()
            self._header_printed = True

    def cached(self, n: int) -> None:
        if self._step:
            self._step = (*self._step[:3], True)

    def done(self, n: int, seconds: float) -> None:
        """A RUN step's time; its line is written by step_end."""

    def step_end(self, n: int) -> None:
        if not self._step:
            return
        _, text, started, cached = self._step
        self.finished += 1
        if cached:
            line = f"=> CACHED {text}"
        elif self._header_printed:
            line = f"=> DONE {text.split(']', 1)[0]}] {self.clock() - started:.1f}s"
        else:
            line = f"=> {text}  {self.clock() - started:.1f}s"
        self._step = None
        self._above(line)

    def wrote(self, n: int, image_id: str, tag: str) -> None:
        self._above(f"=> writing image sha256:{image_id[:12]} named {tag}")
        self._status(final=True)
        self.total = -1  # closed

    def close(self) -> None:
        if self.total != -1:
            # a failed build: end the status line so the error starts a line of its own
            self.out.write("\n")
            self.out.flush()


def make_progress(style: str, out: TextIO):
    """``plain``, ``tty``, or ``auto`` (tty when ``out`` is a terminal)."""
    if style == "auto":
        try:
            style = "tty" if out.isatty() else "plain"
        except (AttributeError, ValueError):
            style = "plain"
    return TtyProgress(out) if style == "tty" else PlainProgress(out)
