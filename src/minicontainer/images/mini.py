"""The built-in image ``mini``: a tiny root filesystem made from the host's own files.

Nothing is downloaded. Two ways to fill it, tried in this order:

1. **A static busybox** (Debian's ``busybox-static``): one self-contained
   binary copied to ``/bin/busybox``, plus a symlink for every applet at the
   path busybox itself reports (``busybox --list-full``), ``/bin/sh``
   included. Busybox looks at ``argv[0]`` to know which tool to be.
2. **Host binaries**: a shell and common tools copied with every shared
   library they need and the dynamic loader, found by reading their ELF
   headers (elf.py) the way ld.so(8) would: the seed exercise "copy bash and
   what ``ldd`` lists", done without running anything.

Either way the image gets the few files programs expect (``/etc/passwd``,
``/etc/group``, ``/etc/hostname``...) and empty mountpoints ``/proc /sys
/dev /tmp`` for the runtime.

Building is split like the rest of minicontainer: :func:`plan_mini` looks at
the host and returns a :class:`MiniPlan` (plain data: what would be copied),
:func:`write_mini` carries it out. Every write into the new tree goes through
directory fds with ``O_NOFOLLOW`` (safepath.py): the tree holds symlinks such
as ``/usr/lib64/ld-linux-x86-64.so.2 -> /lib/...`` whose absolute targets
name *host* files when followed from outside, so a naive
``open(rootfs + path, "w")`` could overwrite the host's loader.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from minicontainer.errors import ImageError, wrap_oserror
from minicontainer.images.elf import ElfFormatError, LibraryResolver, is_elf, read_elf, walk_path
from minicontainer.images.store import Image, ImageStore, Populated
from minicontainer.safepath import DIR_NOFOLLOW, O_PATH, open_beneath, open_dir_strict

NAME = "mini"

# Sentinel for populate_mini(busybox=...): look for a static busybox on the host.
AUTO = "<auto>"

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox", "/sbin/busybox", "/usr/sbin/busybox")

# The tools of the host-binaries fallback (issue 2), plus true/false so that
# /etc/passwd's nobody has a real /bin/false. sh must exist; the others are
# copied when the host has them.
HOST_TOOLS = (
    "sh", "ls", "cat", "echo", "ps", "mount", "umount", "hostname", "id", "sleep", "env", "grep", "head", "tail",
    "wc", "yes", "tr", "dd", "kill", "touch", "mkdir", "rm", "chmod", "stat", "seq", "chroot", "timeout",
    "true", "false",
)
# /bin first: on a merged-/usr host /bin is a symlink to usr/bin, and copying
# "/bin/sh" recreates that symlink in the image, so /bin/sh exists there too.
HOST_TOOL_DIRS = ("/bin", "/sbin", "/usr/bin", "/usr/sbin")

# glibc before 2.34 loads getpwnam's "files" backend with dlopen(), so it is
# in no DT_NEEDED; without it `id` prints numbers instead of names.
DLOPENED_LIBRARIES = ("libnss_files.so.2",)

# Busybox's own description of itself starts "BusyBox v1.35.0 (Debian ...)".
_BUSYBOX_VERSION_RE = re.compile(r"BusyBox v(\S+)")
# An applet install path from --list-full: relative, plain components.
_APPLET_PATH_RE = re.compile(r"^(?:[A-Za-z0-9_.+\[\]-]+/)*[A-Za-z0-9_.+\[\]-]+$")


@dataclass(frozen=True)
class MiniPlan:
    """What :func:`write_mini` will put in the image, decided by looking at the host."""

    kind: str  # "busybox" or "host"
    description: str  # "busybox-static 1.35.0" / "host binaries + 12 libraries"
    busybox: str | None = None  # host path of the static busybox
    applets: tuple[str, ...] = ()  # relative paths to link to /bin/busybox
    tools: tuple[str, ...] = ()  # host paths of the copied programs
    interp: str | None = None  # the dynamic loader (PT_INTERP)
    libraries: tuple[str, ...] = ()  # host paths, as ld.so finds them
    missing_tools: tuple[str, ...] = ()  # HOST_TOOLS the host does not have

    @property
    def shell(self) -> str:
        """The image's default command: bash when it is copied in (the seed
        types ``bash`` everywhere, and its fork bomb needs it), else /bin/sh."""
        if "bin/bash" in self.applets or any(os.path.basename(t) == "bash" for t in self.tools):
            return "/bin/bash"
        return "/bin/sh"

    @property
    def host_files(self) -> tuple[str, ...]:
        """Every host path to recreate in the image (with its symlinks)."""
        return self.tools + ((self.interp,) if self.interp else ()) + self.libraries


# -- looking at the host -----------------------------------------------------


def is_static_elf(path: str) -> bool:
    """True if ``path`` is an ELF program needing no loader and no library."""
    try:
        return read_elf(path).is_static
    except ElfFormatError:
        return False


def find_static_busybox(candidates: tuple[str, ...] = BUSYBOX_CANDIDATES) -> str | None:
    """The first candidate that is an executable, statically linked busybox.

    A dynamically linked busybox (Debian's plain ``busybox`` package) is not
    taken: copying it would need its libraries, and then the host-binaries
    path does the same job with more familiar tools.
    """
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK) and is_static_elf(path):
            return path
    return None


def _run_busybox(path: str, *args: str) -> subprocess.CompletedProcess:
    # The host's own binary, run with an empty environment and no stdin.
    try:
        return subprocess.run([path, *args], stdin=subprocess.DEVNULL, capture_output=True, env={}, timeout=30)
    except OSError as e:
        raise wrap_oserror("running", e, path) from None
    except subprocess.TimeoutExpired:
        raise ImageError(f"{path} {' '.join(args)} did not finish in 30 s") from None


def busybox_version(path: str) -> str | None:
    out = _run_busybox(path, "--help")
    m = _BUSYBOX_VERSION_RE.search((out.stdout + out.stderr).decode("utf-8", "replace"))
    return m.group(1) if m else None


def parse_applet_list(text: str, *, full: bool) -> tuple[str, ...]:
    """Applet install paths from ``busybox --list-full`` (or names from ``--list``).

    Pure. ``--list`` gives bare names, which go to ``bin/``. Anything that is
    not a plain relative path is refused rather than trusted.
    """
    out: dict[str, None] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        rel = line if full else f"bin/{line}"
        parts = rel.split("/")
        if not _APPLET_PATH_RE.match(rel) or any(p in (".", "..") for p in parts):
            raise ImageError(f"busybox reported a strange applet path {line!r}", "is this really busybox?")
        # linuxrc is busybox's entry point for an initrd; a container never uses it.
        if rel not in ("bin/busybox", "linuxrc"):
            out[rel] = None
    return tuple(out)


def busybox_applets(path: str) -> tuple[str, ...]:
    """Ask busybox where each applet belongs (``--list-full``; ``--list`` if unsupported)."""
    out = _run_busybox(path, "--list-full")
    if out.returncode == 0 and out.stdout.strip():
        return parse_applet_list(out.stdout.decode("utf-8", "replace"), full=True)
    out = _run_busybox(path, "--list")
    if out.returncode == 0 and out.stdout.strip():
        return parse_applet_list(out.stdout.decode("utf-8", "replace"), full=False)
    raise ImageError(f"{path} --list-full and --list both failed", "is this a busybox built without applet lists?")


def plan_busybox(path: str) -> MiniPlan:
    if not is_static_elf(path):
        raise ImageError(
            f"{path} is not a statically linked ELF program",
            "install busybox-static, or let mini use host binaries (prefer_busybox=False)",
        )
    applets = busybox_applets(path)
    if "bin/sh" not in applets:
        raise ImageError(f"{path} has no sh applet", "a container image needs /bin/sh")
    version = busybox_version(path)
    desc = f"busybox-static {version}" if version else "busybox-static"
    bash = plan_host_bash()
    return MiniPlan(kind="busybox", description=desc, busybox=path, applets=applets,
                    tools=bash.tools, interp=bash.interp, libraries=bash.libraries)


def plan_host_bash(tool_dirs: tuple[str, ...] = HOST_TOOL_DIRS) -> MiniPlan:
    """The host's bash with its loader and libraries, to sit beside busybox as
    /bin/bash: the seed types ``bash`` everywhere, and busybox's ash cannot
    even parse its fork bomb ``:(){ :|:& };:``. Nothing when the host has none."""
    if find_host_tool("bash", tool_dirs) is None:
        return MiniPlan(kind="host", description="")
    try:
        return plan_host_binaries(("bash",), tool_dirs=tool_dirs)
    except ImageError:
        return MiniPlan(kind="host", description="")


def find_host_tool(name: str, dirs: tuple[str, ...] = HOST_TOOL_DIRS) -> str | None:
    for d in dirs:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def _shebang_interpreter(path: str) -> str | None:
    """For a script tool, the absolute interpreter path on its ``#!`` line."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    if words and words[0].startswith(b"/"):
        return words[0].decode("utf-8", "surrogateescape")
    return None


def plan_host_binaries(
    tools: tuple[str, ...] = HOST_TOOLS,
    *,
    resolver: LibraryResolver | None = None,
    tool_dirs: tuple[str, ...] = HOST_TOOL_DIRS,
) -> MiniPlan:
    """Find ``tools`` on the host and resolve every library they need."""
    resolver = resolver or LibraryResolver()
    found: dict[str, None] = {}
    missing: list[str] = []
    for name in tools:
        path = find_host_tool(name, tool_dirs)
        wanted = [path] if path else []
        # A script tool needs its interpreter, which needs its libraries.
        interp = _shebang_interpreter(path) if path else None
        if interp:
            wanted.append(interp)
        try:
            if not wanted or not all(os.path.isfile(p) for p in wanted):
                raise ImageError(f"{name}: not found on the host")
            resolver.resolve(*(p for p in wanted if is_elf(p)))
        except ImageError as e:
            # sh is the one tool mini cannot do without; a missing or broken
            # optional tool is left out (and listed in the plan).
            if name == "sh":
                raise ImageError(f"cannot copy the host's shell: {e.message}", "install dash or bash") from None
            missing.append(name)
            continue
        found.update(dict.fromkeys(wanted))
    programs = tuple(found)
    res = resolver.resolve(*(p for p in programs if is_elf(p)), dlopen=DLOPENED_LIBRARIES)
    libraries = res.libraries
    return MiniPlan(
        kind="host",
        description=f"host binaries + {len(libraries)} libraries",
        tools=programs,
        interp=res.interp,
        libraries=tuple(libraries),
        missing_tools=tuple(missing),
    )


def plan_mini(*, busybox: str | None = AUTO, prefer_busybox: bool = True) -> MiniPlan:
    """Decide how to build mini on this host (reads the host, writes nothing).

    ``busybox``: AUTO looks for a static busybox (falling back to host
    binaries if there is none), a path insists on that busybox, None means
    host binaries. ``prefer_busybox=False`` always uses host binaries.
    """
    if prefer_busybox and busybox is not None:
        path = find_static_busybox() if busybox == AUTO else busybox
        if path is not None:
            return plan_busybox(path)
    return plan_host_binaries()


# -- writing the tree ---------------------------------------------------------


class _Tree:
    """Writes into a new root directory, never following a symlink in it."""

    def __init__(self, rootfs: Path):
        try:
            self.fd = os.open(rootfs, DIR_NOFOLLOW)
        except OSError as e:
            raise wrap_oserror("opening the new image root", e, str(rootfs)) from None
        self.rootfs = rootfs

    def close(self) -> None:
        os.close(self.fd)

    def _parent(self, path: str) -> tuple[int, str]:
        """(fd of the parent directory, created as needed; last component)."""
        parent, name = os.path.split(path.strip("/"))
        if not name:
            raise ImageError(f"invalid path {path!r} for the image")
        return open_beneath(self.fd, parent, O_PATH | os.O_DIRECTORY, create_dirs=True, mode=0o755), name

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        pfd, name = self._parent(path)
        try:
            fd, _ = open_dir_strict(pfd, name, mkdir_mode=0o700)
            try:
                os.fchmod(fd, mode)  # explicit: mkdir's mode is masked by the umask, 1777 needs the sticky bit
            finally:
                os.close(fd)
        except OSError as e:
            raise wrap_oserror("creating directory", e, self._shown(path)) from None
        finally:
            os.close(pfd)

    def symlink(self, path: str, target: str) -> None:
        pfd, name = self._parent(path)
        try:
            os.symlink(target, name, dir_fd=pfd)
        except FileExistsError:
            # Two host paths may share a link (/lib64 -> usr/lib64): fine if equal.
            try:
                same = os.readlink(name, dir_fd=pfd) == target
            except OSError:
                same = False
            if not same:
                raise ImageError(f"{self._shown(path)} already exists and is not a link to {target}") from None
        except OSError as e:
            raise wrap_oserror("creating symlink", e, self._shown(path)) from None
        finally:
            os.close(pfd)

    def write(self, path: str, data: bytes | int, mode: int = 0o644) -> None:
        """Create ``path`` with ``data`` (bytes, or an fd to copy from)."""
        pfd, name = self._parent(path)
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=pfd)
            try:
                if isinstance(data, int):
                    with open(data, "rb", closefd=False) as src, open(fd, "wb", closefd=False) as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                else:
                    os.write(fd, data)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
        except OSError as e:
            raise wrap_oserror("writing", e, self._shown(path)) from None
        finally:
            os.close(pfd)

    def chown(self, path: str, uid: int, gid: int) -> None:
        pfd, name = self._parent(path)
        try:
            os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
        except OSError as e:
            raise wrap_oserror("chown", e, self._shown(path)) from None
        finally:
            os.close(pfd)

    def copy_host_file(self, host_path: str, path: str) -> None:
        """Copy the regular file ``host_path`` (symlink-free) to ``path``.

        Permission bits are kept but setuid/setgid dropped: mini runs as root
        anyway, and a setuid copy would be one more setuid-root binary on
        the host (reliability case A10).
        """
        try:
            src = os.open(host_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise wrap_oserror("reading", e, host_path) from None
        try:
            st = os.fstat(src)
            if not stat.S_ISREG(st.st_mode):
                raise ImageError(f"{host_path} is not a regular file")
            self.write(path, src, st.st_mode & 0o777)
        finally:
            os.close(src)

    def install_host_path(self, host_path: str, done: set[str]) -> None:
        """Recreate ``host_path`` in the tree: its symlinks, then the real file."""
        for step in walk_path(host_path):
            if step.path in done:
                continue
            if step.kind == "symlink":
                self.symlink(step.path, step.target)
            else:
                self.copy_host_file(step.path, step.path)
            done.add(step.path)

    def _shown(self, path: str) -> str:
        return f"{self.rootfs}/{path.strip('/')}"


def etc_files(description: str, shell: str = "/bin/sh") -> dict[str, str]:
    """The small text files of /etc (pure); ``shell`` is root's and user's login shell."""
    pretty = f"minicontainer mini ({description})".replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return {
        # passwd(5): name:password:UID:GID:GECOS:home:shell. "x" = no password here.
        "etc/passwd": (
            f"root:x:0:0:root:/root:{shell}\n"
            f"user:x:1000:1000:user:/home/user:{shell}\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
        ),
        "etc/group": "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n",
        "etc/hostname": "mini\n",
        "etc/hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        # nsswitch.conf(5): look users and hosts up in these files, nothing else.
        "etc/nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files\n",
        # os-release(5)
        "etc/os-release": (
            'NAME="minicontainer mini"\n'
            "ID=minicontainer\n"
            "VARIANT_ID=mini\n"
            f'PRETTY_NAME="{pretty}"\n'
        ),
    }


# Empty directories: the runtime mounts proc, sysfs and tmpfs on the first
# four; /tmp is sticky and world-writable like on any Unix (1777).
SKELETON_DIRS = (
    ("etc", 0o755), ("proc", 0o555), ("sys", 0o555), ("dev", 0o755), ("tmp", 0o1777),
    ("root", 0o700), ("home", 0o755), ("home/user", 0o755),
)


def write_mini(rootfs: Path, plan: MiniPlan) -> str:
    """Fill the empty directory ``rootfs`` as ``plan`` says; returns its description."""
    rootfs = Path(rootfs)
    try:
        if any(os.scandir(rootfs)):
            raise ImageError(f"{rootfs} is not empty", "mini is built into a new, empty directory")
    except OSError as e:
        raise wrap_oserror("listing", e, str(rootfs)) from None
    tree = _Tree(rootfs)
    try:
        if plan.kind == "busybox":
            # Copy the file itself, not the host's path to it: on a merged-/usr
            # host /bin/busybox is really /usr/bin/busybox.
            real = walk_path(plan.busybox)[-1].path
            tree.mkdir("bin")
            tree.copy_host_file(real, "bin/busybox")
            for applet in plan.applets:
                # Relative links (usr/bin/[ -> ../../bin/busybox) read the
                # same from inside the container and from the host.
                target = os.path.relpath("/bin/busybox", os.path.dirname("/" + applet))
                tree.symlink(applet, target)
            if plan.tools and "bin/bash" not in plan.applets:
                # bash itself at /bin/bash (the file, not the host's path: /bin
                # is a real directory here), its loader and libraries as they are on the host
                tree.copy_host_file(walk_path(plan.tools[0])[-1].path, "bin/bash")
                done: set[str] = set()
                for host_path in ((plan.interp,) if plan.interp else ()) + plan.libraries:
                    tree.install_host_path(host_path, done)
        else:
            done: set[str] = set()
            for host_path in plan.host_files:
                tree.install_host_path(host_path, done)
        for d, mode in SKELETON_DIRS:
            tree.mkdir(d, mode)
        for path, text in etc_files(plan.description, plan.shell).items():
            tree.write(path, text.encode())
        if os.geteuid() == 0:  # unprivileged builds (unit tests) keep their own uid
            tree.chown("home/user", 1000, 1000)
    finally:
        tree.close()
    try:
        walk_path("/bin/sh", root=rootfs)
    except ImageError:
        raise ImageError(f"the new image at {rootfs} has no /bin/sh", "this is a bug in mini.py") from None
    return plan.description


def populate_mini(rootfs: Path, *, busybox: str | None = AUTO, prefer_busybox: bool = True) -> str:
    """Fill the empty directory ``rootfs`` with mini; returns where it came from."""
    return write_mini(rootfs, plan_mini(busybox=busybox, prefer_busybox=prefer_busybox))


# -- the image in the store ----------------------------------------------------


def mini_config(plan: MiniPlan) -> dict:
    """mini's image config (OCI image spec, config.md): its default command."""
    return {"config": {"Cmd": [plan.shell]}}


def build_mini(store: ImageStore, *, force: bool = False) -> Image:
    """Build image ``mini`` in ``store``; with ``force``, replace an existing one.

    store.create builds into a work directory and switches the name only
    when the new tree is complete, so a failed rebuild keeps the old image.
    """
    if not force and store.exists(NAME):
        raise ImageError(f"image {NAME} already exists", "rebuild it with 'minicontainer image build-mini --force'")
    plan = plan_mini()

    def populate(rootfs: Path) -> Populated:
        write_mini(rootfs, plan)
        # No content digest: the store picks a random id. The config is what
        # a layered image keeps in config.json; a flat image keeps it in its
        # meta.json (ImageStore's Image.config), and run honours its Cmd.
        return Populated(None, meta={"config": mini_config(plan)})

    return store.create(NAME, populate, source=f"built-in: {plan.description}", force=force)


def ensure_mini(store: ImageStore) -> Image:
    """The image ``mini``, built first if the store does not have it yet.

    Two first ``run mini`` at once must not both build it: the name lock
    makes the second wait for the first's build, then it finds the image.
    """
    if store.exists(NAME):
        return store.get(NAME)  # the common case: no lock, no wait
    with store.lock(NAME):
        if store.exists(NAME):
            return store.get(NAME)
        try:
            return build_mini(store)
        except ImageError:
            # The name was set meanwhile without a build (a re-import cached
            # by 'image import ... mini' only takes the store lock): use it.
            if store.exists(NAME):
                return store.get(NAME)
            raise


__all__ = [
    "AUTO", "MiniPlan", "build_mini", "ensure_mini", "etc_files", "find_static_busybox", "mini_config", "plan_mini",
    "populate_mini", "write_mini",
]
