"""Root tier: ``minicontainer build`` through the real CLI, offline, on 'mini'.

The seed's Node example shape (FROM, WORKDIR, COPY, RUN, CMD), a
multi-stage build whose image holds only the artefact, the layer cache
(a second build is all CACHED; changing one copied file rebuilds from that
step on), and errors that name the Dockerfile's line and leave no image.
"""

from __future__ import annotations

import pytest

from helpers import mc
from minicontainer.images.store import ImageStore

pytestmark = pytest.mark.root

NODE_LIKE = """\
FROM mini
ARG GREETING=hello
WORKDIR /app
COPY package.json ./
RUN echo "$GREETING: $(cat package.json)" > installed.txt && ls /sys/class/net > net.txt
COPY src/ ./src/
RUN cat src/index.js > bundle.js
CMD ["/bin/sh", "-c", "cat installed.txt bundle.js net.txt; pwd; ls -a src"]
"""


@pytest.fixture
def context(tmp_path):
    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "package.json").write_text('{"name": "app"}')
    (ctx / "src/index.js").write_text("console.log(1)\n")
    (ctx / "src/debug.log").write_text("noise\n")
    (ctx / ".dockerignore").write_text("**/*.log\n")
    (ctx / "Dockerfile").write_text(NODE_LIKE)
    return ctx


@pytest.fixture
def built():
    tags = []
    yield tags
    for tag in tags:
        mc("image", "rm", tag)
    mc("image", "prune")  # the cached layers no image has any more


def _build(built, ctx, tag, *extra, check=0):
    built.append(tag)
    return mc("build", "-t", tag, *extra, str(ctx), check=check, timeout=120)


def _steps(out: str) -> dict[int, str]:
    """Step number -> "CACHED" | "DONE" | "" (not a layer step)."""
    steps: dict[int, str] = {}
    for line in out.splitlines():
        n, _, rest = line.partition(" ")
        if n.startswith("#") and n[1:].isdigit():
            steps.setdefault(int(n[1:]), "")
            if rest in ("CACHED",) or rest.startswith("DONE"):
                steps[int(n[1:])] = rest.split()[0]
    return steps


def test_the_node_example_builds_offline_and_runs(built, context):
    out = _build(built, context, "b-node", "--build-arg", "GREETING=hi").stdout
    assert "writing image sha256:" in out
    run = mc("run", "--rm", "b-node", check=0).stdout
    # the ARG reached RUN, RUN had no network but lo, the .log was ignored
    assert run == 'hi: {"name": "app"}\nconsole.log(1)\nlo\n/app\n.\n..\nindex.js\n'
    history = mc("image", "history", "b-node", check=0).stdout
    assert "RUN cat src/index.js > bundle.js" in history


def test_a_second_build_is_cached_and_a_changed_file_rebuilds_from_its_step(built, context):
    first = _steps(_build(built, context, "b-cache").stdout)
    assert [first[n] for n in (4, 5, 6, 7)] == ["", "DONE", "", "DONE"]  # COPY prints no DONE, RUN does
    again = _steps(_build(built, context, "b-cache").stdout)
    assert [again[n] for n in (4, 5, 6, 7)] == ["CACHED"] * 4
    (context / "src/index.js").write_text("console.log(2)\n")
    changed = _steps(_build(built, context, "b-cache").stdout)
    assert [changed[n] for n in (4, 5, 6, 7)] == ["CACHED", "CACHED", "", "DONE"]
    assert "console.log(2)" in mc("run", "--rm", "b-cache", check=0).stdout


def test_a_multi_stage_build_keeps_only_the_artefact(built, tmp_path, mc_home):
    ctx = tmp_path / "ms"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM mini AS build\n"
        "RUN mkdir /out && echo artefact > /out/app && echo junk > /junk\n"
        "FROM mini AS other\n"
        "RUN echo never > /x\n"
        "FROM scratch\n"
        "COPY --from=build /out/app /app\n"
    )
    out = _build(built, ctx, "b-ms").stdout
    assert "RUN echo never" in out  # every stage runs without --target
    image = ImageStore(mc_home).get("b-ms")
    assert len(image.stack) == 1
    assert sorted(p.name for p in image.stack[0].iterdir()) == ["app"]
    assert (image.stack[0] / "app").read_text() == "artefact\n"
    target = _build(built, ctx, "b-ms-build", "--target", "build").stdout
    assert "RUN echo never" not in target


def test_errors_name_the_line_and_leave_no_image(built, tmp_path, mc_home):
    ctx = tmp_path / "bad"
    ctx.mkdir()
    for text, message in (
        ("FROM mini\nRUN true\nFROBNICATE x\n", "Dockerfile:3: unknown instruction 'FROBNICATE'"),
        ("FROM mini\n\nRUN exit 3\n", "Dockerfile:3: RUN exit 3 failed with exit code 3"),
        ("FROM mini\nCOPY missing.txt /\n", "Dockerfile:2: "),
        ("FROM mini\nADD http://example.com/x /x\n", "Dockerfile:2: ADD of a URL: there is no network here"),
        ("FROM no-such-image\n", "Dockerfile:1: FROM: no such image"),
    ):
        (ctx / "Dockerfile").write_text(text)
        proc = _build(built, ctx, "b-bad", check=1)
        assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert not ImageStore(mc_home).exists("b-bad")
