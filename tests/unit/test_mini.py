"""images/mini.py: building the ``mini`` root filesystem, without running anything in it.

(tests/root/test_mini_image.py chroots into the result to prove it works.)
These need no root: files are created with the test's own uid.
"""

from __future__ import annotations

import filecmp
import os
import re
import stat
from pathlib import Path

import pytest

from minicontainer.errors import ImageError, MiniError
from minicontainer.images import mini
from minicontainer.images.elf import LibraryResolver, read_elf, walk_path
from minicontainer.images.store import ImageStore

pytestmark = pytest.mark.unit

BUSYBOX = mini.find_static_busybox()
needs_busybox = pytest.mark.skipif(
    BUSYBOX is None, reason="no static busybox on this host (apt-get install busybox-static)"
)


def _in_image(rootfs: Path, path: str) -> str:
    """The real file ``path`` names inside the image (symlinks resolved there)."""
    return str(rootfs) + walk_path(path, rootfs)[-1].path


def _all_entries(rootfs: Path):
    for dirpath, dirnames, filenames in os.walk(rootfs):
        for n in dirnames + filenames:
            yield Path(dirpath) / n


# -- pure parts ---------------------------------------------------------------------


def test_parse_applet_list_full_and_short():
    full = "usr/bin/[\nusr/bin/[[\nbin/sh\nsbin/ifconfig\nlinuxrc\nbin/busybox\nbin/sh\n"
    assert mini.parse_applet_list(full, full=True) == ("usr/bin/[", "usr/bin/[[", "bin/sh", "sbin/ifconfig")
    assert mini.parse_applet_list("sh\nls\n", full=False) == ("bin/sh", "bin/ls")


@pytest.mark.parametrize("bad", ["../etc/passwd", "/bin/sh", "bin/../../x", "bin//sh", "bin/./sh", "bin/s h", "bin/"])
def test_parse_applet_list_refuses_odd_paths(bad):
    with pytest.raises(ImageError, match="strange applet path"):
        mini.parse_applet_list(f"bin/ls\n{bad}\n", full=True)


def test_etc_files():
    files = mini.etc_files('busybox-static 1.35.0 "odd" $x')
    passwd = [line.split(":") for line in files["etc/passwd"].splitlines()]
    by_name = {f[0]: f for f in passwd}
    assert by_name["root"][2:4] == ["0", "0"] and by_name["root"][5] == "/root"
    assert by_name["nobody"][2:4] == ["65534", "65534"]
    assert by_name["user"][2:4] == ["1000", "1000"] and by_name["user"][5] == "/home/user"
    assert all(len(f) == 7 for f in passwd)
    groups = {line.split(":")[0]: line.split(":")[2] for line in files["etc/group"].splitlines()}
    assert groups == {"root": "0", "user": "1000", "nogroup": "65534"}
    assert files["etc/hostname"] == "mini\n"
    osr = files["etc/os-release"]
    assert 'NAME="minicontainer mini"' in osr
    # os-release(5) values are shell-quoted: quotes and $ escaped
    assert r'PRETTY_NAME="minicontainer mini (busybox-static 1.35.0 \"odd\" \$x)"' in osr


# -- host inspection ----------------------------------------------------------------


def test_find_static_busybox_rejects_dynamic_programs(tmp_path):
    dyn = tmp_path / "busybox"
    dyn.write_bytes(Path("/bin/ls").read_bytes())
    dyn.chmod(0o755)
    script = tmp_path / "mc-test-script"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert mini.find_static_busybox((str(dyn), str(script), str(tmp_path / "missing"))) is None
    if BUSYBOX:
        assert mini.find_static_busybox((str(dyn), BUSYBOX)) == BUSYBOX


def test_explicit_busybox_must_be_static():
    with pytest.raises(ImageError, match="not a statically linked"):
        mini.plan_mini(busybox="/bin/ls")


def test_host_plan_lists_tools_loader_and_libraries():
    plan = mini.plan_mini(prefer_busybox=False)
    assert plan.kind == "host"
    assert re.fullmatch(r"host binaries \+ \d+ libraries", plan.description)
    assert plan.tools[0] == "/bin/sh"
    names = {os.path.basename(t) for t in plan.tools}
    assert {"sh", "ls", "cat", "id", "grep"} <= names
    assert plan.interp == read_elf("/bin/ls").interp
    assert plan.interp not in plan.libraries
    assert len(set(plan.libraries)) == len(plan.libraries)
    assert str(len(plan.libraries)) in plan.description
    assert set(plan.missing_tools).isdisjoint(names)


def test_host_plan_skips_missing_tools_and_follows_shebangs(tmp_path):
    (tmp_path / "mc-test-script").write_text("#!/bin/sh -e\necho hi\n")
    (tmp_path / "mc-test-script").chmod(0o755)
    plan = mini.plan_host_binaries(("sh", "no-such-tool", "mc-test-script"), tool_dirs=("/bin", str(tmp_path)))
    assert plan.missing_tools == ("no-such-tool",)
    assert plan.tools == ("/bin/sh", str(tmp_path / "mc-test-script"))  # its interpreter /bin/sh is already there


def test_host_plan_needs_a_shell(tmp_path):
    with pytest.raises(ImageError, match="cannot copy the host's shell"):
        mini.plan_host_binaries(("sh", "ls"), tool_dirs=(str(tmp_path),))


def test_busybox_none_means_host_binaries():
    assert mini.plan_mini(busybox=None).kind == "host"


@needs_busybox
def test_busybox_plan():
    plan = mini.plan_mini()
    assert plan.kind == "busybox" and plan.busybox == BUSYBOX
    assert re.fullmatch(r"busybox-static \d+\.\d+\.\d+\S*", plan.description)
    assert "bin/sh" in plan.applets and "bin/busybox" not in plan.applets


# -- populate_mini: busybox ----------------------------------------------------------


def _check_skeleton(rootfs: Path, description: str) -> None:
    for d, mode in mini.SKELETON_DIRS:
        st = os.lstat(rootfs / d)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == mode, d
    for d in ("proc", "sys", "dev", "tmp"):
        assert os.listdir(rootfs / d) == []
    assert stat.S_IMODE(os.stat(rootfs / "tmp").st_mode) == 0o1777
    shell = "/bin/bash" if os.path.lexists(rootfs / "bin/bash") else "/bin/sh"  # mini's default shell
    for path, text in mini.etc_files(description, shell).items():
        assert (rootfs / path).read_text() == text
    for p in _all_entries(rootfs):
        st = os.lstat(p)
        assert not st.st_mode & (stat.S_ISUID | stat.S_ISGID), f"{p} is setuid/setgid"
        if stat.S_ISLNK(st.st_mode):
            # every link resolves to a file or a directory inside the image
            try:
                walk_path("/" + str(p.relative_to(rootfs)), rootfs)
            except ImageError as e:
                assert "is a directory" in str(e), f"{p}: {e}"


@needs_busybox
def test_populate_with_busybox(tmp_path):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    desc = mini.populate_mini(rootfs)
    assert desc.startswith("busybox-static")
    bb = rootfs / "bin/busybox"
    assert bb.is_file() and not bb.is_symlink() and os.access(bb, os.X_OK)
    assert filecmp.cmp(bb, os.path.realpath(BUSYBOX), shallow=False)
    assert read_elf(bb).is_static
    applets = mini.busybox_applets(BUSYBOX)
    assert len(applets) > 100
    for applet in applets:
        assert (rootfs / applet).is_symlink(), applet
        assert _in_image(rootfs, "/" + applet) == str(rootfs) + "/bin/busybox", applet
    assert os.readlink(rootfs / "bin/sh") == "busybox"
    assert not (rootfs / "linuxrc").exists()
    _check_skeleton(rootfs, desc)


# -- populate_mini: host binaries -------------------------------------------------------


@pytest.fixture(scope="module")
def host_image(tmp_path_factory):
    rootfs = tmp_path_factory.mktemp("mini-host") / "rootfs"
    rootfs.mkdir()
    plan = mini.plan_mini(prefer_busybox=False)
    desc = mini.write_mini(rootfs, plan)
    return rootfs, plan, desc


def test_populate_with_host_binaries(host_image):
    rootfs, plan, desc = host_image
    assert desc == plan.description
    for host_path in plan.host_files:
        # the same name works in the image and names a byte-identical copy
        inside = _in_image(rootfs, host_path)
        assert filecmp.cmp(inside, os.path.realpath(host_path), shallow=False), host_path
        assert os.stat(inside).st_mode & 0o777 == os.stat(host_path).st_mode & 0o777
    assert _in_image(rootfs, "/bin/sh")
    _check_skeleton(rootfs, desc)


def test_host_image_resolves_within_itself(host_image):
    """ld.so's rules applied inside the image find every library there."""
    rootfs, plan, _ = host_image
    res = LibraryResolver(rootfs).resolve(*plan.tools)
    assert res.interp == plan.interp
    image_libs = {_in_image(rootfs, p) for p in res.libraries}
    planned = {_in_image(rootfs, p) for p in plan.libraries}
    assert image_libs <= planned


def test_soname_symlinks_are_recreated(host_image):
    rootfs, plan, _ = host_image
    links = [p for p in plan.libraries if os.path.islink(p)]
    for lib in links:
        steps = walk_path(lib)
        last_link = [s for s in steps if s.kind == "symlink"][-1]
        assert os.readlink(str(rootfs) + last_link.path) == last_link.target


# -- refusals and the no-follow writer -----------------------------------------------------


def test_populate_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "x").write_text("old")
    with pytest.raises(ImageError, match="not empty"):
        mini.populate_mini(tmp_path, prefer_busybox=False)
    assert os.listdir(tmp_path) == ["x"]


def test_writer_never_follows_symlinks_in_the_tree(tmp_path):
    """A link like usr/lib64/ld.so -> /lib/... must never route a write to the host."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "f").write_text("host data")
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    (rootfs / "lib").symlink_to(victim)
    (rootfs / "file").symlink_to(victim / "f")
    tree = mini._Tree(rootfs)
    try:
        with pytest.raises(MiniError):
            tree.write("lib/new", b"x")
        with pytest.raises(MiniError):
            tree.write("file", b"x")
        with pytest.raises(MiniError):
            tree.mkdir("lib/sub")
        with pytest.raises(MiniError):
            tree.symlink("lib/l", "/etc/passwd")
        with pytest.raises(ImageError, match="already exists"):
            tree.symlink("file", "elsewhere")
        tree.symlink("file", str(victim / "f"))  # the same link again is fine
    finally:
        tree.close()
    assert os.listdir(victim) == ["f"] and (victim / "f").read_text() == "host data"


# -- the store: build_mini / ensure_mini ---------------------------------------------------


def test_build_then_ensure_then_force(mc_dirs):
    home, _ = mc_dirs
    store = ImageStore()
    assert store.home == home
    image = mini.ensure_mini(store)
    assert image.name == "mini"
    assert image.meta["source"].startswith("built-in: ")
    assert (image.rootfs / "etc/passwd").is_file()
    assert _in_image(image.rootfs, "/bin/sh")
    # ensure does not rebuild
    assert mini.ensure_mini(store).id == image.id
    with pytest.raises(ImageError, match="--force"):
        mini.build_mini(store)
    rebuilt = mini.build_mini(store, force=True)
    assert rebuilt.id != image.id
    assert store.get("mini").id == rebuilt.id
    assert (rebuilt.rootfs / "etc/hostname").read_text() == "mini\n"


def test_failed_rebuild_keeps_the_old_image(mc_dirs, monkeypatch):
    store = ImageStore()
    old = mini.build_mini(store)

    def broken(rootfs, plan):
        (Path(rootfs) / "half-written").write_text("x")
        raise ImageError("simulated failure while copying")

    monkeypatch.setattr(mini, "write_mini", broken)
    with pytest.raises(ImageError, match="simulated"):
        mini.build_mini(store, force=True)
    assert store.get("mini").id == old.id
    assert (old.rootfs / "etc/passwd").is_file()
    assert os.listdir(store.tmp_dir) == []  # no half-made image left behind


def test_ensure_uses_an_image_built_meanwhile(mc_dirs, monkeypatch):
    """Two first runs at once: the loser of the race takes the winner's image."""
    store = ImageStore()
    real_build = mini.build_mini

    def racing_build(s, force=False):
        real_build(s)  # the other process finishes first...
        return real_build(s)  # ...so ours finds the name taken

    monkeypatch.setattr(mini, "build_mini", racing_build)
    image = mini.ensure_mini(store)
    assert image.id == store.get("mini").id


# -- the host's bash beside busybox ---------------------------------------------------------

HOST_BASH = mini.find_host_tool("bash")


@needs_busybox
@pytest.mark.skipif(HOST_BASH is None, reason="this host has no bash to copy into mini")
def test_busybox_mini_gets_the_hosts_bash_with_its_libraries(tmp_path):
    plan = mini.plan_mini()
    assert plan.kind == "busybox" and plan.tools == (HOST_BASH,) and plan.interp and plan.libraries
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    mini.write_mini(rootfs, plan)
    bash = rootfs / "bin" / "bash"
    assert bash.is_file() and not bash.is_symlink()  # a real /bin stays a directory: busybox's applets live there
    assert filecmp.cmp(bash, os.path.realpath(HOST_BASH), shallow=False)
    for host_path in (plan.interp, *plan.libraries):
        assert filecmp.cmp(_in_image(rootfs, host_path), os.path.realpath(host_path), shallow=False), host_path
    assert os.readlink(rootfs / "bin" / "sh") == "busybox"  # sh stays busybox's ash


def test_no_host_bash_means_busybox_alone(tmp_path):
    assert mini.plan_host_bash(tool_dirs=(str(tmp_path),)).tools == ()


# -- the default shell: bash when mini has it (issue 14) ---------------------------------------


def test_the_plan_shell_is_bash_only_when_bash_is_copied():
    assert mini.MiniPlan(kind="busybox", description="", applets=("bin/sh",), tools=("/usr/bin/bash",)).shell == "/bin/bash"
    assert mini.MiniPlan(kind="busybox", description="", applets=("bin/sh", "bin/bash")).shell == "/bin/bash"
    assert mini.MiniPlan(kind="busybox", description="", applets=("bin/sh",)).shell == "/bin/sh"
    assert mini.MiniPlan(kind="host", description="", tools=("/bin/sh", "/bin/ls")).shell == "/bin/sh"


def test_etc_files_give_the_login_shell():
    passwd = mini.etc_files("x", "/bin/bash")["etc/passwd"].splitlines()
    shells = {line.split(":")[0]: line.split(":")[6] for line in passwd}
    assert shells == {"root": "/bin/bash", "user": "/bin/bash", "nobody": "/bin/false"}
    assert "root:x:0:0:root:/root:/bin/sh" in mini.etc_files("x")["etc/passwd"]


def test_the_built_image_config_names_its_shell_and_run_uses_it(mc_dirs):
    from minicontainer.container.spec import build_spec
    from minicontainer.images.config import parse_config

    image = mini.ensure_mini(ImageStore())
    cmd = image.config()["config"]["Cmd"]
    has_bash = os.path.lexists(image.rootfs / "bin/bash")
    assert cmd == (["/bin/bash"] if has_bash else ["/bin/sh"])
    # run's rule: no command given -> the image's Cmd; a command given wins
    spec = build_spec("mini").with_image(parse_config(image.config()))
    assert spec.argv() == tuple(cmd)
    assert build_spec("mini", ["true"]).with_image(parse_config(image.config())).argv() == ("true",)
    assert f"root:/root:{cmd[0]}" in (image.rootfs / "etc/passwd").read_text()


def test_image_save_keeps_minis_default_shell(mc_dirs):
    from minicontainer.images.archive import image_config_doc

    store = ImageStore()
    image = mini.ensure_mini(store)
    doc = image_config_doc(store, image)
    assert doc["config"]["Cmd"] == image.config()["config"]["Cmd"]
    assert doc["config"]["Env"][0].startswith("PATH=")  # the made-up parts of a flat image's config stay
