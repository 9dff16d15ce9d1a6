"""system df's sums and docker's sizes; system prune -a of images and the build cache."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from click.testing import CliRunner

from minicontainer.commands import system as SY

pytestmark = pytest.mark.unit


def invoke(*args, input=None):
    from minicontainer.cli import cli

    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


@pytest.mark.parametrize("n, shown", [(0, "0B"), (212, "212B"), (999, "999B"), (1000, "1kB"), (16_430_000, "16.43MB"),
                                      (1_234_567, "1.235MB"), (5_705_728, "5.706MB"), (2 * 10**9, "2GB")])
def test_sizes_are_dockers(n, shown):
    assert SY.docker_size(n) == shown


def _import(tmp_path, name, data: bytes):
    tar = tmp_path / f"{name}.tar"
    with tarfile.open(tar, "w") as tf:
        info = tarfile.TarInfo("f")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    assert invoke("image", "import", str(tar), name).exit_code == 0


@pytest.fixture
def store(mc_dirs, tmp_path):
    from minicontainer.container.state import ContainerState, StateStore
    from minicontainer.images.store import ImageStore
    from minicontainer.volumes import VolumeStore

    home, _ = mc_dirs
    _import(tmp_path, "used", b"a" * 10000)
    _import(tmp_path, "idle", b"b" * 20000)
    used = ImageStore().get("used")
    StateStore().reserve(ContainerState(id="c" * 64, name="old", image="used", image_id=used.id, status="exited"))
    volumes = VolumeStore()
    volumes.create("v1")
    with open(f"{volumes.path('v1')}/data", "wb") as f:
        f.write(b"x" * 5000)
    (home / "build-cache.json").write_text(json.dumps({"k1": "sha256:" + "0" * 64}))  # its layer is gone
    return home


def test_df_counts_active_and_reclaimable(store):
    from minicontainer.images.store import ImageStore

    rows = {r.type: r for r in SY.disk_usage_rows()}
    sizes = {img.name: int(img.meta["size"]) for img in ImageStore().list()}
    images = rows["Images"]
    assert (images.total, images.active) == (2, 1)
    assert images.size == sizes["used"] + sizes["idle"] and images.reclaimable == sizes["idle"]
    assert (rows["Containers"].total, rows["Containers"].active) == (1, 0)
    vols = rows["Local Volumes"]
    assert (vols.total, vols.active) == (1, 0) and vols.size >= 5000 and vols.reclaimable == vols.size
    assert (rows["Build Cache"].total, rows["Build Cache"].size) == (1, 0)

    table = invoke("system", "df").output.splitlines()
    assert table[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert table[1].split()[:3] == ["Images", "2", "1"] and table[1].endswith("%)")
    assert table[3].startswith("Local Volumes ")
    assert invoke("system", "df", "--format", "{{.Type}}={{.TotalCount}}").output.split() == [
        "Images=2", "Containers=1", "Local", "Volumes=1", "Build", "Cache=1"]
    assert json.loads(invoke("system", "df", "--format", "json").output)[0] == {
        "type": "Images", "total": 2, "active": 1, "size": images.size, "reclaimable": images.reclaimable}


def test_prune_asks_first_and_lists_what_it_will_remove(store):
    r = invoke("system", "prune", "-a", "--volumes", input="n\n")
    assert r.exit_code == 1  # click's Abort: cli.main turns it into 130 and one line
    assert r.output.startswith("WARNING! This will remove:\n  - all stopped containers\n")
    assert "  - all volumes not used by at least one container\n" in r.output
    assert "  - all images without at least one container associated to them\n  - all build cache\n" in r.output
    assert (store / "volumes" / "v1").exists() and (store / "build-cache.json").exists()
    plain = invoke("system", "prune", input="n\n").output
    assert "  - all dangling images\n  - all dangling build cache\n" in plain and "volumes" not in plain


def test_prune_all_keeps_what_a_container_uses(store, monkeypatch):
    from minicontainer.commands import system
    from minicontainer.images.store import ImageStore

    # the containers step is the root tier's (it removes real layers and cgroups)
    monkeypatch.setattr(system, "_prune_containers", lambda freed: None)
    out = invoke("system", "prune", "-a", "-f", "--volumes").output
    assert [i.name for i in ImageStore().list()] == ["used"]  # the exited container still stands on it
    assert "Deleted Images:\nuntagged: idle\ndeleted: sha256:" in out
    assert "Deleted Volumes:\nv1\n" in out and not (store / "volumes" / "v1").exists()
    assert "Deleted Build Cache: 1 entry" in out and not (store / "build-cache.json").exists()
    assert out.rstrip().splitlines()[-1].startswith("Total reclaimed space: ")
    again = invoke("system", "prune", "-a", "-f").output
    assert again == "Total reclaimed space: 0B\n"


@pytest.mark.parametrize("how", ["named", "bind inside"])
def test_a_volume_a_container_uses_is_in_use_and_kept(store, monkeypatch, how):
    from minicontainer.commands import system
    from minicontainer.container.config import save_spec
    from minicontainer.container.spec import build_spec
    from minicontainer.container.state import ContainerState, StateStore
    from minicontainer.volumes import VolumeStore

    # the one notion of "in use" (VolumeStore.users): the container's saved spec names it or binds a path in it
    volume = "v1:/v" if how == "named" else f"{VolumeStore().path('v1')}:/v"
    StateStore().reserve(ContainerState(id="d" * 64, name="user", image="used", status="exited"))
    save_spec(StateStore().containers / ("d" * 64), build_spec("used", volumes=[volume]))
    # a name that only appears somewhere in a container's state is no use of it
    StateStore().reserve(ContainerState(id="e" * 64, name="v2", image="used", status="exited",
                                        command=["sh", "-c", "ls /v2"], hostname="v2"))
    VolumeStore().create("v2")
    rows = {r.type: r for r in system.disk_usage_rows()}
    assert (rows["Local Volumes"].total, rows["Local Volumes"].active) == (2, 1)
    monkeypatch.setattr(system, "_prune_containers", lambda freed: None)
    out = invoke("system", "prune", "-f", "--volumes").output
    assert "Deleted Volumes:\nv2\n" in out
    assert VolumeStore().names() == ["v1"]


def test_prune_removes_networks_no_container_uses(mc_dirs, monkeypatch):
    from minicontainer.commands import system
    from minicontainer.network.store import NetworkStore
    from minicontainer.syscalls.linux import Linux

    deleted = []
    monkeypatch.setattr(Linux, "net_delete_link", lambda self, name: deleted.append(name) or True)
    monkeypatch.setattr(system, "_prune_containers", lambda freed: None)
    net = NetworkStore().define("app", subnet="10.89.0.0/24")
    out = invoke("system", "prune", "-f").output
    assert out.startswith("Deleted Networks:\napp\n\n") and deleted == [net.bridge]
    assert NetworkStore().names() == []
