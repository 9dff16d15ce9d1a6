"""build --progress tty|plain through the real CLI (a RUN step on 'mini', offline)."""

from __future__ import annotations

import pytest

from helpers import mc

pytestmark = pytest.mark.root


def test_build_progress_tty_and_plain(tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("a\n")
    (ctx / "Dockerfile").write_text("FROM mini\nCOPY a.txt /a.txt\nRUN echo made-by-run > /b.txt\n")
    try:
        tty = mc("build", "--progress", "tty", "-t", "progress:1", str(ctx), check=0, timeout=120).stdout
        # (text mode turns the status line's \r into a line break: every redraw is a line here)
        screen = [line.replace("\033[K", "") for line in tty.splitlines()]
        assert "=> [1/3] FROM mini  " in "\n".join(screen)
        assert "=> [3/3] RUN echo made-by-run > /b.txt" in screen
        assert any(line.startswith("=> DONE [3/3] ") for line in screen)
        assert any(line.startswith("[+] Building ") and line.endswith("(3/3) FINISHED") for line in screen)
        again = mc("build", "--progress", "tty", "-t", "progress:1", str(ctx), check=0, timeout=120).stdout
        assert "\033[K=> CACHED [3/3] RUN echo made-by-run > /b.txt\n" in again
        assert "\033[K=> CACHED [2/3] COPY a.txt /a.txt\n" in again
        # auto in a pipe is plain: BuildKit's lines, no escape codes
        plain = mc("build", "-t", "progress:1", str(ctx), check=0, timeout=120).stdout
        assert "\033" not in plain and "#3 [3/3] RUN echo made-by-run > /b.txt\n#3 CACHED\n" in plain
        assert mc("run", "--rm", "progress:1", "cat", "/b.txt", check=0).stdout == "made-by-run\n"
    finally:
        mc("image", "rm", "progress:1")
        mc("image", "prune")
