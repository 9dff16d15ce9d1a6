"""demos/__init__.py: the narrated demo runner, on small demos of plain shell commands (no root).

The real demos run in tests/root/test_demos.py and tests/cgroup1/test_demos_limits.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from minicontainer import demos
from minicontainer.demos import Demo, Output, Step, all_of, contains, exits, field_value, lacks

pytestmark = pytest.mark.unit


def _demo(steps, cleanup=(), **kw) -> Demo:
    return Demo(name="toy", title="a toy", intro="One paragraph.\n\nAnother.", steps=lambda ctx: list(steps),
                cleanup=lambda ctx: list(cleanup), root=False, **kw)


def _run(demo, **kw):
    lines: list[str] = []
    ok = demos.run_demo(demo, echo=lines.append, **kw)
    return ok, lines


def test_each_step_is_narrated_in_order_and_its_command_runs_as_typed(tmp_path):
    demo = _demo([
        Step("shows one", "echo first; echo to-stderr >&2", "notice one", contains("first", "to-stderr")),
        Step("shows two", "echo $T > " + str(tmp_path / "t"), "notice two", exits(0)),
    ])
    ok, lines = _run(demo)
    assert ok
    text = "\n".join(lines)
    order = ["== demo toy: a toy ==", "One paragraph.", "Another.", "T=", "[1/2] shows one",
             "# echo first; echo to-stderr >&2", "first", "to-stderr", "  notice: notice one", "  shown.",
             "[2/2] shows two", "  notice: notice two", "every step showed what it claims."]
    at = [text.index(piece) for piece in order]
    assert at == sorted(at), text
    # $T was the scratch directory, and it is gone afterwards
    t = (tmp_path / "t").read_text().strip()
    assert t.startswith("/") and f"T={t}" in text and not os.path.exists(t)


def test_a_step_that_does_not_show_its_claim_stops_the_demo_and_cleanup_still_runs(tmp_path):
    marker = tmp_path / "cleaned"
    demo = _demo([
        Step("claims", "echo nothing", "notice", contains("something")),
        Step("never runs", f"touch {tmp_path / 'second'}", "notice", exits(0)),
    ], cleanup=[f"touch {marker}"])
    ok, lines = _run(demo)
    assert not ok
    assert "  NOT SHOWN: the output has no 'something'" in lines
    assert not (tmp_path / "second").exists()
    assert marker.exists() and f"# touch {marker}" in lines
    assert lines[-1] == "demo toy: a step did not show what it claims."


def test_cleanup_runs_when_the_demo_is_interrupted(tmp_path):
    marker = tmp_path / "cleaned"
    demo = _demo([Step("one", "true", "n", exits(0))], cleanup=[f"touch {marker}"])

    def interrupt():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        demos.run_demo(demo, step=True, echo=lambda line: None, wait=interrupt)
    assert marker.exists()


def test_step_mode_waits_for_enter_before_each_step():
    calls = []
    demo = _demo([Step("one", "true", "n", exits(0)), Step("two", "true", "n", exits(0))])
    ok, lines = _run(demo, step=True, wait=lambda: calls.append(1))
    assert ok and len(calls) == 2
    assert lines.count("(press Enter to run it)") == 2
    # without --step nothing waits
    ok, _ = _run(demo, wait=lambda: pytest.fail("waited without --step"))
    assert ok


def test_a_command_that_outlives_its_timeout_is_stopped():
    demo = _demo([Step("slow", "sleep 30", "n", exits(0), timeout=0.5)])
    ok, lines = _run(demo)
    assert not ok
    assert "(demo: stopped after 0.5 s)" in lines


def test_the_demos_files_are_written_to_the_scratch_directory():
    demo = _demo([Step("show it", "cat $T/prog.c", "n", contains("int main"))], files={"prog.c": "int main;\n"})
    ok, lines = _run(demo)
    assert ok and "(the demo wrote $T/prog.c, 1 lines; a step shows it)" in lines


def test_minicontainer_on_the_demos_path_is_this_installation():
    demo = _demo([Step("which", "minicontainer --version", "n", contains("minicontainer, version"))])
    ok, lines = _run(demo)
    assert ok, lines


def test_a_demo_needing_root_or_a_missing_program_is_refused_before_anything_runs(tmp_path, monkeypatch):
    from minicontainer.errors import MiniError

    marker = tmp_path / "ran"
    demo = _demo([Step("x", f"touch {marker}", "n", exits(0))], needs=(("no-such-program-here", "install it"),))
    with pytest.raises(MiniError, match="needs no-such-program-here"):
        demos.run_demo(demo, echo=lambda line: None)
    rooted = _demo([Step("x", f"touch {marker}", "n", exits(0))])
    rooted.root = True
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(MiniError, match="needs root"):
        demos.run_demo(rooted, echo=lambda line: None)
    assert not marker.exists()


def test_a_demo_refuses_a_container_name_that_exists(mc_dirs, monkeypatch):
    from minicontainer.errors import MiniError

    class Store:
        def get(self, name):
            if name == "taken":
                return object()
            raise MiniError("no such container")

    monkeypatch.setattr("minicontainer.container.state.StateStore", Store)
    demos.preflight(_demo([], containers=("free",)))
    with pytest.raises(MiniError, match="named taken exists already"):
        demos.preflight(_demo([], containers=("free", "taken")))


def test_checks():
    out = Output(1, "alpha beta\nkey=value other=2\n")
    assert contains("alpha", "beta")(out) is None
    assert contains("alpha", "gamma")(out) == "the output has no 'gamma'"
    assert lacks("gamma")(out) is None and lacks("beta")(out) == "the output has 'beta'"
    assert exits(1)(out) is None and exits(0)(out) == "it exited 1, not 0"
    assert all_of(contains("alpha"), exits(0))(out) == "it exited 1, not 0"
    assert field_value(out.text, "key") == "value" and field_value(out.text, "none") is None


@pytest.mark.parametrize("name", list(demos.DEMOS))
def test_every_demo_is_registered_and_its_steps_are_narrated(name, tmp_path):
    demo = demos.load(name)
    assert demo.name == name and demo.title and demo.intro.strip()
    steps = demo.steps(demos.Context(tmp=str(tmp_path), out=str(tmp_path)))
    assert steps
    for s in steps:
        assert s.shows and s.command and s.notice
    # a step names containers only with the names the demo reserves (refused if taken: its cleanup removes them)
    for s in steps:
        for named in re.findall(r"--name (\S+)", s.command):
            assert named in demo.containers, (name, named)


def test_the_command_lists_the_demos_and_refuses_an_unknown_one():
    py = [sys.executable, "-m", "minicontainer"]
    env = dict(os.environ)
    listed = subprocess.run([*py, "demo"], capture_output=True, text=True, env=env)
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()] == list(demos.DEMOS)
    assert subprocess.run([*py, "demo", "--list"], capture_output=True, text=True, env=env).stdout == listed.stdout
    bad = subprocess.run([*py, "demo", "nope"], capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        "minicontainer: error: no demo called 'nope' (hint: list them with 'minicontainer demo --list')"]


def test_demo_names_complete():
    from minicontainer.commands.demo import _complete

    assert _complete(None, None, "c") == ["chroot", "cpu", "cgroup-v1-v2"]
    assert _complete(None, None, "") == list(demos.DEMOS)


def test_a_demo_needing_bash_in_an_older_mini_names_the_rebuild(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from minicontainer.errors import MiniError

    lower = tmp_path / "rootfs"
    (lower / "bin").mkdir(parents=True)

    class Store:
        def exists(self, name):
            return name == "mini"

        def get(self, name):
            return SimpleNamespace(stack=(lower,))

    monkeypatch.setattr("minicontainer.images.store.ImageStore", Store)
    with pytest.raises(MiniError, match="runs /bin/bash in the image mini") as e:
        demos.preflight(_demo([], in_mini=("/bin/bash",)))
    assert "build-mini --force" in e.value.hint
    (lower / "bin" / "bash").symlink_to("/usr/bin/bash")  # a link is enough: it points inside the image
    demos.preflight(_demo([], in_mini=("/bin/bash",)))
