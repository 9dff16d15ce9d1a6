"""`minicontainer diff` and `export` for real, and layers.py against the kernel.

The kernel is the oracle: we mount an overlay in a private mount namespace
(``unshare -m``: the mount dies with that namespace, the host's mount table
never sees it), change files through it, list what the kernel shows, and
compare with what layers.py computes from the bare upper and lower
directories. Whiteouts (char devices 0:0) and trusted.* xattrs need root,
which is why these cases are here and not in the unit tier.
"""

from __future__ import annotations

import io
import json
import os
import pty
import struct
import subprocess
import tarfile
from pathlib import Path

import pytest

from helpers import mc
from minicontainer import layers as L
from minicontainer.errors import ContainerError

pytestmark = pytest.mark.root


# -- layers.py against a real overlay mount ------------------------------------------


def make_lower(root: Path) -> Path:
    low = root / "lower"
    files = {
        "etc/passwd": "root:x:0:0::/root:/bin/sh\n",
        "etc/hostname": "box\n",
        "etc/group": "root:x:0:\n",
        "data/a": "a",
        "data/sub/b": "b",
        "skel/.profile": "PS1=x",
        "skel/old": "old",
        "bin/busybox": "ELF",
        "usr/bin/tool": "tool",
        "usr/lib/libc.so": "libc",
        "home/user/.rc": "rc",
    }
    for rel, text in files.items():
        (low / rel).parent.mkdir(parents=True, exist_ok=True)
        (low / rel).write_text(text)
    os.chmod(low / "bin/busybox", 0o755)
    os.link(low / "bin/busybox", low / "bin/ls")
    os.symlink("busybox", low / "bin/sh")
    os.symlink("/usr/lib", low / "lib")
    (low / "var/log").mkdir(parents=True)
    (low / "tmp").mkdir()
    os.chmod(low / "tmp", 0o1777)
    os.chown(low / "home/user", 1000, 1000)
    os.chown(low / "home/user/.rc", 1000, 1000)
    return low


def through_overlay(root: Path, script: str, options: str = "") -> list[tuple]:
    """Mount lower+upper on merged in a private mount namespace, run
    ``script`` in merged, and return what the kernel shows there."""
    for d in ("upper", "work", "merged"):
        (root / d).mkdir(exist_ok=True)
    opts = f"lowerdir={root}/lower,upperdir={root}/upper,workdir={root}/work{options}"
    listing = r"find . -mindepth 1 -printf '%P\t%y\t%m\t%U\t%G\t%s\t%l\n'"
    cmd = f"set -e\nmount -t overlay overlay -o {opts} {root}/merged\ncd {root}/merged\n{script}\n{listing}"
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", cmd],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    return sorted(kernel_row(line.split("\t")) for line in proc.stdout.splitlines())


def kernel_row(f: list[str]) -> tuple:
    path, kind, mode, uid, gid, size, link = f
    return ("/" + path, kind, int(mode, 8), int(uid), int(gid), None if kind == "d" else int(size), link)


def our_rows(lay: L.Layers) -> list[tuple]:
    kinds = {0o040000: "d", 0o100000: "f", 0o120000: "l", 0o020000: "c", 0o010000: "p"}
    rows = []
    for e in L.walk_merged(lay):
        kind = kinds[e.st.st_mode & 0o170000]
        link = e.readlink() if kind == "l" else ""
        size = None if kind == "d" else e.st.st_size
        rows.append((e.path, kind, e.st.st_mode & 0o7777, e.st.st_uid, e.st.st_gid, size, link))
    return sorted(rows)


SCRIPT = """
echo more >> etc/passwd
rm etc/hostname
mv etc/group etc/group2
rm -rf data
rm -rf skel; mkdir skel; echo n > skel/new
mkdir -p opt/app; echo y > opt/app/run; ln opt/app/run opt/app/run2
ln -s /etc/passwd link
mkfifo pipe
touch bin/busybox
chmod 4755 usr/bin/tool
chmod 700 var
echo me > home/user/.rc
"""

EXPECTED = [
    "C /bin",
    "C /bin/busybox",
    "D /data",
    "C /etc",
    "D /etc/group",
    "A /etc/group2",
    "D /etc/hostname",
    "C /etc/passwd",
    "C /home",
    "C /home/user",
    "C /home/user/.rc",
    "A /link",
    "A /opt",
    "A /opt/app",
    "A /opt/app/run",
    "A /opt/app/run2",
    "A /pipe",
    "C /skel",
    "D /skel/.profile",
    "A /skel/new",
    "D /skel/old",
    "C /usr",
    "C /usr/bin",
    "C /usr/bin/tool",
    "C /var",
]


def test_merged_view_and_diff_match_the_kernel(tmp_path):
    make_lower(tmp_path)
    kernel = through_overlay(tmp_path, SCRIPT)
    lay = L.Layers("overlay", lower=str(tmp_path / "lower"), upper=str(tmp_path / "upper"))
    # the upper dir really holds whiteouts and an opaque directory
    assert L.is_whiteout(os.lstat(tmp_path / "upper/etc/hostname"))
    assert os.getxattr(tmp_path / "upper/skel", "trusted.overlay.opaque") == b"y"
    assert our_rows(lay) == kernel
    assert [str(c) for c in L.diff(lay)] == EXPECTED


def test_exported_tar_matches_the_kernel_view(tmp_path):
    make_lower(tmp_path)
    kernel = through_overlay(tmp_path, SCRIPT)
    lay = L.Layers("overlay", lower=str(tmp_path / "lower"), upper=str(tmp_path / "upper"))
    buf = io.BytesIO()
    L.write_tar(lay, buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        members = {"/" + m.name.rstrip("/"): m for m in tar.getmembers()}
        assert sorted(members) == [row[0] for row in kernel]
        assert tar.extractfile("etc/passwd").read() == b"root:x:0:0::/root:/bin/sh\nmore\n"
    assert members["/opt/app/run2"].islnk() and members["/opt/app/run2"].linkname == "opt/app/run"
    assert members["/usr/bin/tool"].mode == 0o4755
    assert members["/pipe"].isfifo()
    assert members["/home/user/.rc"].uid == 1000
    # touch broke the lower hard link (bin/ls stays the lower file)
    assert members["/bin/ls"].isreg() and members["/bin/busybox"].isreg()


def test_renamed_directory_with_redirect_dir_matches_the_kernel(tmp_path):
    make_lower(tmp_path)
    kernel = through_overlay(tmp_path, "mv data moved; mv skel etc/skel2", ",redirect_dir=on")
    assert os.getxattr(tmp_path / "upper/moved", "trusted.overlay.redirect") == b"data"
    assert os.getxattr(tmp_path / "upper/etc/skel2", "trusted.overlay.redirect") == b"/skel"
    lay = L.Layers("overlay", lower=str(tmp_path / "lower"), upper=str(tmp_path / "upper"))
    assert our_rows(lay) == kernel
    assert [str(c) for c in L.diff(lay)] == [
        "D /data",
        "C /etc",
        "A /etc/skel2",
        "A /etc/skel2/.profile",
        "A /etc/skel2/old",
        "A /moved",
        "A /moved/a",
        "A /moved/sub",
        "A /moved/sub/b",
        "D /skel",
    ]


def test_metacopy_layers_are_refused_clearly(tmp_path):
    make_lower(tmp_path)
    through_overlay(tmp_path, "chmod 600 etc/passwd", ",redirect_dir=on,metacopy=on")
    assert os.getxattr(tmp_path / "upper/etc/passwd", "trusted.overlay.metacopy") is not None
    lay = L.Layers("overlay", lower=str(tmp_path / "lower"), upper=str(tmp_path / "upper"))
    with pytest.raises(ContainerError, match="metacopy"):
        L.diff(lay)


def test_file_capabilities_are_exported_and_survive_import(tmp_path):
    from minicontainer.images import tarread

    make_lower(tmp_path)
    up = tmp_path / "upper"
    (up / "bin").mkdir(parents=True)
    ping = up / "bin/ping"
    ping.write_text("ELF")
    # capabilities(7) vfs_cap_data, revision 2 with the effective bit:
    # permitted = CAP_NET_RAW (13), what `setcap cap_net_raw+ep` writes.
    caps = struct.pack("<5I", 0x02000000 | 1, 1 << 13, 0, 0, 0)
    os.setxattr(ping, "security.capability", caps)
    lay = L.Layers("overlay", lower=str(tmp_path / "lower"), upper=str(up))
    buf = io.BytesIO()
    L.write_tar(lay, buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        member = tar.getmember("bin/ping")
        assert member.pax_headers["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape") == caps
        assert "SCHILY.xattr.security.capability" not in tar.getmember("bin/busybox").pax_headers
    buf.seek(0)
    out = tmp_path / "imported"
    out.mkdir()
    tarread.extract_tar(buf, out)
    assert os.getxattr(out / "bin/ping", "security.capability") == caps


def test_whiteouts_in_a_fake_upper_and_never_a_host_file(tmp_path):
    """A whiteout over a lower symlink to a host directory, and an upper
    symlink to a host file: neither the link's target nor the host file is read."""
    make_lower(tmp_path)
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    up = tmp_path / "upper"
    up.mkdir()
    os.mknod(up / "lib", 0o020000, os.makedev(0, 0))  # rm /lib
    os.symlink(str(secret), up / "notes")
    lay = L.Layers("overlay", lower=str(tmp_path / "lower"), upper=str(up))
    assert [str(c) for c in L.diff(lay)] == ["D /lib", "A /notes"]
    buf = io.BytesIO()
    L.write_tar(lay, buf)
    assert b"host secret" not in buf.getvalue()
    buf.seek(0)
    names = tarfile.open(fileobj=buf).getnames()
    assert "lib" not in names and "notes" in names


# -- the commands, on real containers -------------------------------------------------


@pytest.fixture
def containers():
    """Names of containers the test made; removed (layers too) afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        mc("rm", "-f", name)


CHANGES = (
    "echo hi > /root/new; rm /etc/hostname; echo extra >> /etc/passwd; "
    "mkdir -p /home/user/d; touch /home/user/d/f; rm -rf /sbin; mkdir /srv"
)


def test_diff_of_an_exited_container(containers):
    containers.append("chg")
    mc("run", "--name", "chg", "mini", "sh", "-c", CHANGES, check=0)
    out = mc("diff", "chg", check=0).stdout.splitlines()
    assert out == [
        "C /etc",
        "D /etc/hostname",
        "C /etc/passwd",
        "C /home",
        "C /home/user",
        "A /home/user/d",
        "A /home/user/d/f",
        "C /root",
        "A /root/new",
        "D /sbin",
        "A /srv",
    ]


def test_export_has_the_changes_and_round_trips_through_import(containers, tmp_path):
    containers.append("exp")
    mc("run", "--name", "exp", "mini", "sh", "-c", CHANGES, check=0)
    tar_path = tmp_path / "exp.tar"
    mc("export", "exp", str(tar_path), check=0)
    assert oct(os.stat(tar_path).st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []
    with tarfile.open(tar_path) as tar:
        names = set(tar.getnames())
        assert tar.extractfile("root/new").read() == b"hi\n"
        assert tar.extractfile("etc/passwd").read().endswith(b"extra\n")
        tmp = tar.getmember("tmp")
        assert tmp.mode == 0o1777
    assert {"root/new", "home/user/d/f", "srv", "bin/sh", "etc/passwd"} <= names
    assert "etc/hostname" not in names and not any(n == "sbin" or n.startswith("sbin/") for n in names)

    # The same through a pipe
    proc = subprocess.run(
        [*mc_argv(), "export", "exp", "-"], capture_output=True, timeout=60, env=dict(os.environ)
    )
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        assert set(tar.getnames()) == names

    image = "exp-roundtrip"
    try:
        imp = mc("image", "import", str(tar_path), image)
        if imp.returncode != 0 and "No such command" in imp.stderr:
            pytest.skip("image import is not available")
        assert imp.returncode == 0, imp.stderr
        out = mc("run", "--rm", image, "sh", "-c", "cat /root/new; ls /etc; ls -d /sbin || true", check=0).stdout
        assert out.splitlines()[0] == "hi"
        assert "hostname" not in out and "passwd" in out
        assert "/sbin" not in out.replace("No such file", "")
    finally:
        mc("image", "rm", image)


def mc_argv() -> list[str]:
    import sys

    return [sys.executable, "-m", "minicontainer"]


def test_diff_and_export_of_a_running_container(containers):
    containers.append("live")
    proc = subprocess.Popen(
        [*mc_argv(), "run", "--name", "live", "mini", "sh", "-c", "echo x > /root/live; echo ready; sleep 60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert mc("diff", "live", check=0).stdout.splitlines() == ["C /root", "A /root/live"]
        out = subprocess.run([*mc_argv(), "export", "live", "-"], capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "root/live" in tarfile.open(fileobj=io.BytesIO(out.stdout)).getnames()
    finally:
        mc("rm", "-f", "live")
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


def test_read_only_container_has_an_empty_diff_and_exports_its_image(containers, mc_home, tmp_path):
    containers.append("ro")
    mc("run", "--read-only", "--name", "ro", "mini", "true", check=0)
    assert mc("diff", "ro", check=0).stdout == ""
    mc("export", "ro", str(tmp_path / "ro.tar"), check=0)
    from minicontainer.images.store import ImageStore

    rootfs = ImageStore(mc_home).get("mini").rootfs
    expected = sorted(str(p.relative_to(rootfs)) for p in rootfs.rglob("*"))
    with tarfile.open(tmp_path / "ro.tar") as tar:
        assert sorted(n.rstrip("/") for n in tar.getnames()) == expected


def test_unknown_container_is_one_line_error():
    for cmd in (["diff", "nope"], ["export", "nope", "/tmp/nope.tar"]):
        proc = mc(*cmd)
        assert proc.returncode == 125
        assert proc.stderr.count("\n") == 1
        assert "no such container: nope" in proc.stderr
    assert not os.path.exists("/tmp/nope.tar")


def test_unwritable_or_unsafe_output_is_a_clear_error(containers, mc_home, tmp_path):
    containers.append("out")
    mc("run", "--name", "out", "mini", "true", check=0)
    bad = mc("export", "out", str(tmp_path / "no/such/dir/x.tar"))
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1
    assert "no/such/dir/x.tar" in bad.stderr and "Traceback" not in bad.stderr
    isdir = mc("export", "out", str(tmp_path))
    assert isdir.returncode != 0 and "is a directory" in isdir.stderr
    states = json.loads(mc("ps", "-a", "--format", "json", check=0).stdout)
    layer = Path(next(s["layer_dir"] for s in states if s["name"] == "out"))
    inside = mc("export", "out", str(layer / "upper" / "x.tar"))
    assert inside.returncode != 0 and "inside the container's layers" in inside.stderr
    assert not (layer / "upper" / "x.tar").exists()


def test_export_refuses_to_write_to_a_terminal(containers):
    containers.append("tty")
    mc("run", "--name", "tty", "mini", "true", check=0)
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [*mc_argv(), "export", "tty", "-"], stdout=slave, stderr=subprocess.PIPE, text=True, timeout=60
        )
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 125
    assert "terminal" in proc.stderr


def test_diff_without_overlayfs_compares_the_copy(tmp_path, mc_home):
    """The runtime's fallback layout (a private copy), without running one."""
    from minicontainer.images.store import ImageStore

    rootfs = ImageStore(mc_home).get("mini").rootfs
    layer = tmp_path / "layer"
    layer.mkdir()
    subprocess.run(["cp", "-a", str(rootfs), str(layer / "copy")], check=True)  # owners too
    (layer / "copy/etc/hostname").unlink()
    (layer / "copy/root/new").write_text("n")
    os.utime(layer / "copy/etc", ns=(os.stat(rootfs / "etc").st_atime_ns, os.stat(rootfs / "etc").st_mtime_ns))
    lay = L.container_layers(str(layer), str(rootfs))
    assert lay.kind == "copy"
    assert [str(c) for c in L.diff(lay)] == ["C /etc", "D /etc/hostname", "C /root", "A /root/new"]
