"""The VM's cached assets: host packages, the kernel, vmlinux, the initramfs.

Everything lives under one cache directory (``/var/cache/minicontainer-vm``
unless ``MINICONTAINER_VM_CACHE`` says otherwise)::

    lock                                   flock(2): one setup at a time
    kernel-package                         e.g. "linux-image-6.1.0-56-amd64"
    linux-image-<ver>_<debver>_amd64.deb   as fetched by apt-get download
    <ver>/vmlinux                          the uncompressed kernel (bzimage.py)
    <ver>/initramfs-<digest>.cpio          busybox, modules, init, stage2

Each step checks whether its output exists and does nothing if so; the
initramfs name carries a digest of its inputs, so editing scripts/vm/init
or the module list rebuilds it on the next run and nothing else. Results
are written to a temporary name and renamed into place, so an interrupted
setup never leaves a half-written file that a later run would trust.

Why the *generic* Debian kernel (linux-image-<ver>-amd64): it ships 9p,
virtio and overlayfs as modules; the cloud flavour has no 9p at all.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import bzimage, kmod
from .cpio import CpioWriter

HERE = Path(__file__).resolve().parent.parent  # scripts/vm
DEFAULT_CACHE = "/var/cache/minicontainer-vm"

# Debian packages the host needs, by the file that proves each is installed.
HOST_PACKAGES = {
    "/usr/bin/qemu-system-x86_64": "qemu-system-x86",
    # static: it runs in the initramfs, which has no shared libraries
    "/bin/busybox": "busybox-static",
}

# Loaded at boot, in dependency order. The first group mounts the root;
# the rest are what the tests need: loop and a virtio disk (io.max needs a
# block device), veth/bridge/dummy/tun for network namespaces.
MODULES = [
    "virtio_pci", "9pnet_virtio", "9p", "overlay",
    "virtio_blk", "loop", "veth", "bridge", "dummy", "tun",
]


class SetupError(Exception):
    """A setup step failed; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str):
        super().__init__(f"{message} (hint: {hint})")


@dataclass(frozen=True)
class Assets:
    kernel_version: str
    vmlinux: Path
    initramfs: Path


def cache_dir() -> Path:
    return Path(os.environ.get("MINICONTAINER_VM_CACHE") or DEFAULT_CACHE)


def _run(cmd: list[str], what: str, hint: str, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise SetupError(f"{what} failed: {' / '.join(tail) or 'exit ' + str(proc.returncode)}", hint)
    return proc


class _Apt:
    """apt-get with at most one ``apt-get update`` per setup, and only if needed."""

    def __init__(self, say: Callable[[str], None]):
        self.say = say
        self.updated = False

    def update(self) -> None:
        if not self.updated:
            self.say("apt-get update")
            _run(["apt-get", "update"], "apt-get update", "check the network access to the Debian mirror")
            self.updated = True

    def install(self, packages: list[str]) -> None:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
        self.say(f"installing {' '.join(packages)}")
        if subprocess.run(cmd, capture_output=True, env=env).returncode != 0:
            self.update()
            _run(cmd, f"apt-get install {' '.join(packages)}", "run it by hand to see apt's error", env=env)


def ensure_packages(apt: _Apt) -> None:
    missing = sorted({pkg for path, pkg in HOST_PACKAGES.items() if not os.path.exists(path)})
    if missing:
        apt.install(missing)


def _kernel_package(cache: Path, apt: _Apt) -> str:
    """The generic kernel package apt offers now, remembered after the first run.

    ``linux-image-amd64`` is the metapackage that depends on the current
    ``linux-image-<abi>-amd64``; we ask apt which one that is.
    """
    remembered = cache / "kernel-package"
    if remembered.exists():
        return remembered.read_text().strip()
    for attempt in (1, 2):
        out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True).stdout
        deps = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.strip().startswith("Depends:")]
        found = [d for d in deps if d.startswith("linux-image-") and d.endswith("-amd64")]
        if found:
            _write_atomic(remembered, found[0].encode() + b"\n")
            return found[0]
        if attempt == 1:
            apt.update()
    raise SetupError("apt knows no linux-image-amd64, the Debian kernel the VM boots",
                     "vm-test needs a Debian host; on a host with a unified cgroup v2 hierarchy, "
                     "run the tier directly: .venv/bin/python -m pytest -m cgroup2 tests/")


def _kernel_deb(cache: Path, package: str, apt: _Apt) -> Path:
    debs = sorted(cache.glob(f"{package}_*_amd64.deb"))
    if debs:
        return debs[-1]
    apt.say(f"downloading {package}")
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        # apt-get download writes into the current directory. As root it
        # warns that the _apt user cannot write there; that is harmless.
        cmd = ["apt-get", "download", package]
        if subprocess.run(cmd, cwd=tmp, capture_output=True).returncode != 0:
            apt.update()
            _run(cmd, f"apt-get download {package}", "check the Debian mirror; set MINICONTAINER_VM_CACHE to a writable directory", cwd=tmp)
        (deb,) = Path(tmp).glob("*.deb")
        final = cache / deb.name
        os.replace(deb, final)
    return final


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _initramfs_inputs(busybox: Path) -> list[tuple[str, bytes]]:
    return [
        ("init", (HERE / "init").read_bytes()),
        ("stage2", (HERE / "stage2").read_bytes()),
        ("busybox", busybox.read_bytes()),
        ("modules", " ".join(MODULES).encode()),
    ]


def build_initramfs(modules_dir: Path, busybox: Path) -> bytes:
    """busybox at /bin, the two stage scripts, and the modules with their load order."""
    w = CpioWriter()
    for d in ("bin", "dev", "proc", "sys", "modules"):
        w.directory(d)
    w.file("bin/busybox", busybox.read_bytes(), 0o755)
    w.file("init", (HERE / "init").read_bytes(), 0o755)
    w.file("stage2", (HERE / "stage2").read_bytes(), 0o755)
    order = []
    for ko in kmod.load_order(MODULES, modules_dir):
        w.file(f"modules/{ko.name}", ko.read_bytes())
        order.append(ko.name)
    # loop: more devices than the default 8, tests may hold several at once
    lines = [f"{name} max_loop=16" if name == "loop.ko" else name for name in order]
    w.file("modules/load.list", ("\n".join(lines) + "\n").encode())
    return w.finish()


def ensure(say: Callable[[str], None] = lambda _msg: None) -> Assets:
    """Make sure every asset exists; print (through ``say``) what it sets up."""
    cache = cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        lock = open(cache / "lock", "w")
    except OSError as e:
        raise SetupError(f"cannot use the cache directory {cache}: {e.strerror}",
                         "run as root or set MINICONTAINER_VM_CACHE to a writable directory") from e
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        apt = _Apt(say)
        ensure_packages(apt)
        package = _kernel_package(cache, apt)
        version = package.removeprefix("linux-image-")
        kdir = cache / version
        kdir.mkdir(exist_ok=True)
        vmlinux = kdir / "vmlinux"
        busybox = Path("/bin/busybox")
        digest = hashlib.sha256()
        for name, data in _initramfs_inputs(busybox):
            digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        initramfs = kdir / f"initramfs-{digest.hexdigest()[:16]}.cpio"
        if not (vmlinux.exists() and initramfs.exists()):
            deb = _kernel_deb(cache, package, apt)
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                say(f"unpacking {deb.name}")
                _run(["dpkg-deb", "-x", str(deb), tmp], f"dpkg-deb -x {deb.name}",
                     f"the download may be corrupt: delete {deb} and retry")
                root = Path(tmp)
                if not vmlinux.exists():
                    say(f"extracting vmlinux from vmlinuz-{version}")
                    try:
                        data = bzimage.extract_vmlinux((root / "boot" / f"vmlinuz-{version}").read_bytes())
                    except (OSError, bzimage.BzImageError) as e:
                        raise SetupError(f"extracting vmlinux failed: {e}", f"delete {deb} and retry") from e
                    _write_atomic(vmlinux, data)
                if not initramfs.exists():
                    say(f"building {initramfs.name} (busybox, {len(MODULES)} modules and their dependencies)")
                    try:
                        data = build_initramfs(root / "lib" / "modules" / version, busybox)
                    except (OSError, kmod.ModuleError) as e:
                        raise SetupError(f"building the initramfs failed: {e}", f"delete {cache} and retry") from e
                    for old in kdir.glob("initramfs-*.cpio"):
                        old.unlink()
                    _write_atomic(initramfs, data)
        return Assets(version, vmlinux, initramfs)
