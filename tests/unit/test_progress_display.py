"""Progress on a terminal: build --progress tty|plain (images/buildprogress.py) and image debootstrap's bar."""

from __future__ import annotations

import io

import pytest

from minicontainer.images import buildprogress as BP

pytestmark = pytest.mark.unit


class Tty(io.StringIO):
    def isatty(self):
        return True


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def events(p, clock=None):
    """A build of four steps: FROM, a cached RUN, a RUN that runs, a COPY."""
    def tick(s):
        if clock:
            clock.t += s

    p.start(1, 4, "FROM mini"); p.step_end(1)
    p.start(2, 4, "RUN make deps"); p.cached(2); p.step_end(2)
    p.start(3, 4, "RUN make"); p.running(3)
    p.out.write("compiling...\n")  # the command's own output
    tick(1.25); p.done(3, 1.25); p.step_end(3)
    p.start(4, 4, "COPY app /app"); tick(0.5); p.step_end(4)
    p.wrote(5, "ab" * 32, "app:1")
    p.close()


def test_plain_is_buildkits_lines():
    out = io.StringIO()
    events(BP.PlainProgress(out))
    assert out.getvalue() == ("#1 [1/4] FROM mini\n#2 [2/4] RUN make deps\n#2 CACHED\n#3 [3/4] RUN make\n"
                              "compiling...\n#3 DONE 1.2s\n#4 [4/4] COPY app /app\n"
                              f"#5 writing image sha256:{'ab' * 32} named app:1\n")


def test_tty_redraws_one_status_line_below_the_finished_steps():
    out, clock = io.StringIO(), Clock()
    p = BP.TtyProgress(out, clock=clock)
    events(p, clock)
    text = out.getvalue()
    # what stays on screen: each \r\033[K erases the line drawn so far
    screen = []
    for line in text.split("\n"):
        screen.append(line.split(BP.STATUS_CLEAR)[-1])
    assert screen == ["=> [1/4] FROM mini  0.0s", "=> CACHED [2/4] RUN make deps", "=> [3/4] RUN make",
                      "compiling...", "=> DONE [3/4] 1.2s", "=> [4/4] COPY app /app  0.5s",
                      "=> writing image sha256:abababababab named app:1",
                      "[+] Building 1.8s (4/4) FINISHED", ""]
    assert "[+] Building 0.0s (1/4)  => [2/4] RUN make deps" in text  # the redrawn status, mid-build


def test_a_failed_tty_build_ends_its_status_line():
    out = io.StringIO()
    p = BP.TtyProgress(out, clock=Clock())
    p.start(1, 2, "FROM nothing")
    p.close()
    assert out.getvalue().endswith("(0/2)  => [1/2] FROM nothing\n")


def test_auto_is_tty_on_a_terminal_only():
    assert isinstance(BP.make_progress("auto", Tty()), BP.TtyProgress)
    assert isinstance(BP.make_progress("auto", io.StringIO()), BP.PlainProgress)
    assert isinstance(BP.make_progress("tty", io.StringIO()), BP.TtyProgress)
    assert isinstance(BP.make_progress("plain", Tty()), BP.PlainProgress)


DEBOOTSTRAP_LOG = """\
I: Retrieving InRelease
I: Checking Release signature
I: Retrieving Packages
I: Resolving dependencies of required packages...
I: Retrieving adduser 3.134
I: Validating adduser 3.134
I: Retrieving apt 2.6.1
I: Retrieving base-files 12.4
I: Retrieving bash 5.2.15-2
W: Cannot check Release signature; keyring file not available
I: Extracting adduser...
I: Extracting apt...
I: Installing core packages...
I: Unpacking required packages...
I: Unpacking adduser...
I: Unpacking apt...
I: Configuring required packages...
I: Configuring adduser...
I: Configuring apt...
I: Configuring base-files...
I: Configuring bash...
I: Base system installed successfully.
"""


def test_debootstrap_bar_counts_packages_through_the_phases():
    from minicontainer.commands.image import _DebootstrapProgress

    out = Tty()
    bar = _DebootstrapProgress(out)
    shown = []
    for line in DEBOOTSTRAP_LOG.splitlines(keepends=True):
        bar.write(line)
        shown.append((bar.fraction(), bar.text()))
    bar.close()
    assert bar.counts == [4, 2, 2, 4]
    assert shown[2] == (None, "Retrieving Packages  (0 packages so far)")
    assert shown[8][1] == "retrieving bash  (4 packages so far)"
    # extracting 2 of 4: a quarter for retrieving, half of the extracting quarter
    assert shown[11][0] == pytest.approx((1 + 2 / 4) / 4) and shown[11][1].endswith("extracting apt")
    assert shown[-2][0] == 1.0 and shown[-1][1].endswith("Base system installed successfully")
    fracs = [f for f, _ in shown if f is not None]
    assert fracs == sorted(fracs)  # never goes back
    text = out.getvalue()
    # the warning is kept, on a line of its own above the bar; the I: lines are only the bar
    assert "\r\033[KW: Cannot check Release signature; keyring file not available\n" in text
    assert "I: " not in text and text.endswith("\r\033[K")
