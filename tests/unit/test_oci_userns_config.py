"""An OCI bundle's user namespace (linux.namespaces "user" + linux.uidMappings/
gidMappings): converted to an explicit IdMapping on the spec, checked as the
kernel would, and planned as root's --userns is (runc's order), with the
bundle's root used as it is (no shifted copy, no idmapped mount)."""

from __future__ import annotations

import copy

import pytest

from minicontainer.container import steps as S
from minicontainer.container.config import decode, encode
from minicontainer.container.userns import IdRange
from minicontainer.errors import UsageError
from minicontainer.oci.config import convert
from minicontainer.oci.features import default_spec

pytestmark = pytest.mark.unit

RANGE = [{"containerID": 0, "hostID": 200000, "size": 65536}]


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "rootfs").mkdir()
    return tmp_path


def _doc(uids=RANGE, gids=RANGE):
    doc = copy.deepcopy(default_spec())
    doc["linux"]["namespaces"].append({"type": "user"})
    if uids is not None:
        doc["linux"]["uidMappings"] = copy.deepcopy(uids)
    if gids is not None:
        doc["linux"]["gidMappings"] = copy.deepcopy(gids)
    return doc


def _refused(bundle, doc, *words):
    with pytest.raises(UsageError) as e:
        convert(doc, bundle=str(bundle), name="c1")
    assert e.value.message.startswith("config.json: ")
    for w in words:
        assert w in e.value.message, e.value.message


def test_mappings_become_the_specs_id_mapping(bundle):
    doc = _doc(uids=[{"containerID": 1000, "hostID": 300000, "size": 10}, {"containerID": 0, "hostID": 200000,
                                                                            "size": 1000}])
    spec = convert(doc, bundle=str(bundle), name="c1").spec
    m = spec.id_mapping
    # sorted by containerID: uid 0 inside is the first line
    assert m.uids == (IdRange(0, 200000, 1000), IdRange(1000, 300000, 10))
    assert m.gids == (IdRange(0, 200000, 65536),)
    assert m.writer == "remap" and m.source == "config.json"
    assert "user" not in spec.namespaces  # not one the child unshares with the others: UnshareUser makes it
    # persisted with the spec (container/config.py's codec): exec and delete read it back
    assert decode(encode(spec)).id_mapping == m


def test_no_user_namespace_means_no_mapping(bundle):
    assert convert(default_spec(), bundle=str(bundle), name="c1").spec.id_mapping is None


@pytest.mark.parametrize("doc, words", [
    (_doc(uids=None), ("linux.uidMappings", "is missing")),
    (_doc(gids=None), ("linux.gidMappings", "is missing")),
    (_doc(uids=[{"containerID": 0, "hostID": 200000, "size": 0}]), ("linux.uidMappings[0].size", "greater than zero")),
    (_doc(uids=[{"containerID": 0, "hostID": "200000", "size": 1}]), ("linux.uidMappings[0].hostID",)),
    (_doc(gids=[{"containerID": -1, "hostID": 1, "size": 1}]), ("linux.gidMappings[0].containerID",)),
    (_doc(uids=[{"containerID": 0, "hostID": True, "size": 1}]), ("linux.uidMappings[0].hostID",)),
    (_doc(uids=[{"containerID": 0, "hostID": 1, "size": None}]), ("linux.uidMappings[0].size",)),
    (_doc(uids=["0 200000 1"]), ("linux.uidMappings[0]", "object")),
    (_doc(uids=[{"containerID": 0, "hostID": 200000, "size": 10}, {"containerID": 5, "hostID": 300000, "size": 10}]),
     ("linux.uidMappings", "overlap", "containerID")),
    (_doc(gids=[{"containerID": 0, "hostID": 200000, "size": 10}, {"containerID": 10, "hostID": 200005, "size": 10}]),
     ("linux.gidMappings", "overlap", "hostID")),
    (_doc(uids=[{"containerID": 0, "hostID": 4294967000, "size": 65536}]), ("linux.uidMappings[0]", "last id")),
    (_doc(uids=[{"containerID": 1, "hostID": 200000, "size": 10}]), ("linux.uidMappings", "containerID 0")),
])
def test_bad_mappings_are_refused_by_name(bundle, doc, words):
    _refused(bundle, doc, *words)


def test_mappings_without_a_user_namespace_are_refused(bundle):
    for key in ("uidMappings", "gidMappings"):
        doc = copy.deepcopy(default_spec())
        doc["linux"][key] = RANGE
        _refused(bundle, doc, f"linux.{key}", "needs a user namespace")


def test_joining_a_user_namespace_by_path_is_refused(bundle):
    doc = _doc()
    doc["linux"]["namespaces"][-1]["path"] = "/proc/1/ns/user"
    _refused(bundle, doc, "linux.namespaces[", ".path", "existing user namespace is not supported")


def test_the_process_user_must_be_mapped(bundle):
    doc = _doc(uids=[{"containerID": 0, "hostID": 200000, "size": 10}])
    doc["process"]["user"] = {"uid": 1000, "gid": 0}
    doc["process"]["capabilities"] = {}  # (a non-root user gets none)
    _refused(bundle, doc, "process.user.uid", "1000", "linux.uidMappings")
    doc = _doc(gids=[{"containerID": 0, "hostID": 200000, "size": 10}])
    doc["process"]["user"] = {"uid": 0, "gid": 0, "additionalGids": [5, 50]}
    _refused(bundle, doc, "process.user", "gid 50", "linux.gidMappings")


def test_idmapped_mounts_stay_refused(bundle):
    doc = _doc()
    doc["mounts"].append({"destination": "/x", "type": "bind", "source": str(bundle), "options": ["rbind"],
                          "uidMappings": RANGE, "gidMappings": RANGE})
    _refused(bundle, doc, "mounts[", "uidMappings (idmapped mounts) are not supported")


@pytest.fixture
def planned(bundle, monkeypatch, tmp_path):
    """The plan the runtime makes for such a bundle (Runner.make_plan, as root, no cgroup)."""
    from minicontainer.container import runtime
    from minicontainer.container.rootfs import ResolvedImage

    monkeypatch.setenv("MINICONTAINER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MINICONTAINER_ROOT", str(tmp_path / "run"))
    monkeypatch.delenv("MINICONTAINER_USERNS_REMAP", raising=False)

    def plan_of(doc):
        b = convert(doc, bundle=str(bundle), name="c1")
        image = ResolvedImage(name=b.root, image_id="bundle:" + b.root, rootfs=b.root, in_place=True)
        runner = runtime.Runner(b.spec, image=image, wait_for_start=True)
        runner.unprivileged = False  # (the unit tier may not be root)
        runner.remapped = runner.userns = b.spec.id_mapping is not None
        monkeypatch.setattr(runner, "_cgroup_steps", lambda cid: [])
        plan, _, _, rootfs = runner.make_plan(dry_run=True)
        return b, plan, rootfs

    return plan_of


def test_the_plan_writes_the_configs_maps_and_uses_the_bundle_root_as_it_is(planned):
    b, plan, rootfs = planned(_doc())
    steps = plan.steps
    write = next(s for s in steps if isinstance(s, S.WriteIdMaps))
    assert write.mapping == b.spec.id_mapping and write.mapping.uids == (IdRange(0, 200000, 65536),)
    assert "echo '0 200000 65536' > /proc/$CHILD/uid_map" in write.shell()
    assert "config.json's linux.uidMappings" in write.why()
    # runc's order: the child unshares the user namespace, the runtime writes its maps, the child becomes root
    kinds = [type(s) for s in steps]
    for a, z in [(S.UnshareUser, S.BecomeRoot), (S.BecomeRoot, S.ForkInit)]:
        assert kinds.index(a) < kinds.index(z)
    become = next(s for s in steps if isinstance(s, S.BecomeRoot))
    assert (become.uid, become.gid) == (200000, 200000)
    # the bundle's root as the engine prepared it: no shifted copy, no idmapped layers
    assert rootfs.lower == b.root and rootfs.shifts == () and not rootfs.idmapped and rootfs.remap is write.mapping
    assert not any(isinstance(s, (S.SendIdmappedLayers, S.ReceiveIdmappedLayers)) for s in steps)
    mount = next(s for s in steps if isinstance(s, S.MountRootfs))
    assert mount.mode == "bind" and mount.lower == b.root and mount.opened


def test_a_plan_without_a_user_namespace_writes_no_maps(planned):
    _, plan, rootfs = planned(copy.deepcopy(default_spec()))
    assert not any(isinstance(s, (S.WriteIdMaps, S.UnshareUser, S.BecomeRoot)) for s in plan.steps)
    assert rootfs.remap is None


def test_a_namespace_path_is_joined_before_the_user_namespace(planned):
    doc = _doc()
    doc["linux"]["namespaces"] = [ns for ns in doc["linux"]["namespaces"] if ns["type"] != "network"]
    doc["linux"]["namespaces"].append({"type": "network", "path": "/run/netns/n1"})
    _, plan, _ = planned(doc)
    steps = plan.steps
    join = next(s for s in steps if isinstance(s, S.JoinNamespace) and s.ns == "net")
    assert join.path == "/run/netns/n1"
    assert steps.index(join) < next(i for i, s in enumerate(steps) if isinstance(s, S.UnshareUser))
    assert sum(isinstance(s, S.JoinNamespace) and s.ns == "net" for s in steps) == 1
    assert not any(isinstance(s, S.LoopbackUp) for s in steps)  # lo of the engine's namespace is the engine's


class _RefusingKernel:
    """Just what WriteIdMaps uses: the child's "U", and a uid_map the kernel refuses (EINVAL)."""

    def __init__(self):
        self.written = []

    def read(self, fd, n):
        return b"U"

    def write_file(self, path, data):
        import errno

        from minicontainer.errors import SyscallError

        if path.endswith("/gid_map"):
            raise SyscallError("writing", errno.EINVAL, path)
        self.written.append((path, data))

    def write(self, fd, data):
        self.written.append((fd, data))


@pytest.mark.parametrize("source, fails_with", [("config.json", UsageError), ("", Exception)])
def test_a_map_the_kernel_refuses_fails_closed_naming_the_field(bundle, source, fails_with):
    import dataclasses
    import types

    from minicontainer.container.interpreter import Interpreter
    from minicontainer.errors import SyscallError

    mapping = convert(_doc(), bundle=str(bundle), name="c1").spec.id_mapping
    mapping = dataclasses.replace(mapping, source=source)
    sc = _RefusingKernel()
    interp = Interpreter(sc)
    interp.chan = types.SimpleNamespace(ctl=7)
    interp.child_pid = 4242
    with pytest.raises(fails_with) as e:
        interp._write_id_maps(S.WriteIdMaps(mapping=mapping))
    if source:
        assert e.value.message.startswith("config.json: linux.gidMappings: the kernel refused the map (0 200000 65536)")
        assert "Invalid argument" in e.value.message
    else:  # root's --userns: the syscall's own error, as before
        assert isinstance(e.value, SyscallError)
    assert (7, b"M") not in sc.written  # the child is never told to go on


def test_features_lists_the_user_namespace():
    from minicontainer.oci.features import features

    assert "user" in features()["linux"]["namespaces"] and "time" not in features()["linux"]["namespaces"]
