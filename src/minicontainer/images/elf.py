"""Read ELF headers and find the shared libraries a program needs, like ld.so.

This is the seed exercise "copy bash and the libraries ``ldd`` lists" done
without ``ldd``: ldd(1) works by *running* the program's dynamic loader,
which is exactly what a tool assembling a root filesystem should not do with
files it does not trust. Instead we read the headers ourselves:

- ``PT_INTERP`` names the dynamic loader the kernel starts (elf(5));
- ``PT_DYNAMIC`` holds ``DT_NEEDED`` (libraries by soname), ``DT_SONAME``,
  ``DT_RPATH`` / ``DT_RUNPATH`` (extra search directories, may use
  ``$ORIGIN``);
- the search order is the one ld.so(8) documents: DT_RPATH (only when there
  is no DT_RUNPATH), DT_RUNPATH, then the cache built from
  /etc/ld.so.conf (ldconfig(8)), then the default directories.

Two parts: :func:`parse_elf` is pure (bytes in, :class:`ElfInfo` out) and
handles ELF32/ELF64 in both byte orders; :class:`LibraryResolver` applies
the search rules to files under a root directory (``/`` normally, a temp
tree in tests).

Deliberately not emulated: ``LD_LIBRARY_PATH`` and ``LD_PRELOAD`` (the image
must work without the builder's environment), ``$LIB``/``$PLATFORM`` in
rpaths (entries using them are skipped), and the ``glibc-hwcaps``
subdirectories (an optimised copy there always has a baseline twin in the
directory itself, which is the one we copy).
"""

from __future__ import annotations

import glob
import mmap
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from minicontainer.errors import ImageError

# elf(5) constants.
ELFMAG = b"\x7fELF"
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2
ET_EXEC, ET_DYN = 2, 3
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
PN_XNUM = 0xFFFF  # e_phnum overflow: the real count is in section header 0's sh_info
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME, DT_RPATH, DT_RUNPATH = 0, 1, 5, 10, 14, 15, 29

EM_386, EM_MIPS, EM_PPC, EM_PPC64, EM_S390, EM_ARM = 3, 8, 20, 21, 22, 40
EM_X86_64, EM_AARCH64, EM_RISCV, EM_LOONGARCH = 62, 183, 243, 258

# A sanity cap: real programs have a few dozen program headers and dynamic
# entries; a corrupt header claiming millions must not make us loop.
_MAX_ENTRIES = 65536
# The kernel gives up after 40 symlinks in one lookup (path_resolution(7)).
_MAX_SYMLINKS = 40


class ElfFormatError(ImageError):
    """A file that is not a (well-formed) ELF object."""


@dataclass(frozen=True)
class ElfInfo:
    """What the loader needs to know about one ELF file."""

    bits: int  # 32 or 64 (EI_CLASS)
    big_endian: bool  # EI_DATA
    machine: int  # e_machine, e.g. EM_X86_64
    type: int  # e_type: ET_EXEC, ET_DYN (libraries and PIE programs), ...
    interp: str | None = None  # PT_INTERP: the dynamic loader's path
    needed: tuple[str, ...] = ()  # DT_NEEDED, in order
    soname: str | None = None  # DT_SONAME
    rpath: tuple[str, ...] = ()  # DT_RPATH, split on ':'
    runpath: tuple[str, ...] = ()  # DT_RUNPATH, split on ':'
    dynamic: bool = False  # has a PT_DYNAMIC segment (static-pie has one too)

    @property
    def is_static(self) -> bool:
        """True when the kernel can run it without any loader or library."""
        return self.interp is None and not self.needed

    def compatible(self, other: ElfInfo) -> bool:
        """Could ld.so load ``other`` into this process? (class, byte order, machine)"""
        return (self.bits, self.big_endian, self.machine) == (other.bits, other.big_endian, other.machine)


# -- the pure parser ---------------------------------------------------------


def parse_elf(data, name: str = "<bytes>") -> ElfInfo:
    """Parse the headers of an ELF file held in ``data`` (bytes, mmap...).

    Raises :class:`ElfFormatError` for anything that is not a consistent ELF
    file; it never reads outside ``data``.
    """
    size = len(data)

    def bad(why: str) -> ElfFormatError:
        return ElfFormatError(f"{name}: not a valid ELF file ({why})")

    def read(offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > size:
            raise bad(f"{length} bytes at offset {offset} lie outside the {size}-byte file")
        return bytes(data[offset : offset + length])

    if size < 16 or read(0, 4) != ELFMAG:
        raise bad("no ELF magic number")
    ei_class, ei_data = data[4], data[5]
    if ei_class not in (ELFCLASS32, ELFCLASS64):
        raise bad(f"unknown EI_CLASS {ei_class}")
    if ei_data not in (ELFDATA2LSB, ELFDATA2MSB):
        raise bad(f"unknown EI_DATA {ei_data}")
    bits = 64 if ei_class == ELFCLASS64 else 32
    big = ei_data == ELFDATA2MSB
    end = ">" if big else "<"
    addr = "Q" if bits == 64 else "I"  # Elf64_Addr/Off vs Elf32_Addr/Off

    # Elf{32,64}_Ehdr after e_ident[16].
    ehdr = struct.Struct(f"{end}HHI{addr}{addr}{addr}IHHHHHH")
    (e_type, e_machine, _version, _entry, e_phoff, e_shoff, _flags, _ehsize, e_phentsize, e_phnum, e_shentsize,
     _shnum, _shstrndx) = ehdr.unpack(read(16, ehdr.size))

    if bits == 64:  # Elf64_Phdr: p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align
        phdr = struct.Struct(f"{end}IIQQQQQQ")
        def unpack_ph(raw: bytes) -> tuple[int, int, int, int]:
            p_type, _fl, p_offset, p_vaddr, _pa, p_filesz, _ms, _al = phdr.unpack(raw)
            return p_type, p_offset, p_vaddr, p_filesz
    else:  # Elf32_Phdr: p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_flags, p_align
        phdr = struct.Struct(f"{end}IIIIIIII")
        def unpack_ph(raw: bytes) -> tuple[int, int, int, int]:
            p_type, p_offset, p_vaddr, _pa, p_filesz, _ms, _fl, _al = phdr.unpack(raw)
            return p_type, p_offset, p_vaddr, p_filesz

    if e_phnum == PN_XNUM and e_shoff:
        # elf(5): with more than 0xfffe headers the count lives in the first
        # section header's sh_info (offset 44 in Elf64_Shdr, 28 in Elf32_Shdr).
        sh_info_at = e_shoff + (44 if bits == 64 else 28)
        (e_phnum,) = struct.unpack(f"{end}I", read(sh_info_at, 4))
    if e_phnum and e_phentsize < phdr.size:
        raise bad(f"program header entries of {e_phentsize} bytes are too small")
    if e_phnum > _MAX_ENTRIES:
        raise bad(f"{e_phnum} program headers")

    interp = None
    dynamic_seg = None
    loads: list[tuple[int, int, int]] = []  # (vaddr, filesz, offset) of PT_LOAD segments
    for i in range(e_phnum):
        p_type, p_offset, p_vaddr, p_filesz = unpack_ph(read(e_phoff + i * e_phentsize, phdr.size))
        if p_type == PT_INTERP:
            interp = read(p_offset, p_filesz).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        elif p_type == PT_DYNAMIC:
            dynamic_seg = (p_offset, p_filesz)
        elif p_type == PT_LOAD:
            loads.append((p_vaddr, p_filesz, p_offset))

    info = dict(bits=bits, big_endian=big, machine=e_machine, type=e_type, interp=interp)
    if dynamic_seg is None:
        return ElfInfo(**info)

    # Elf{32,64}_Dyn: a signed tag and a value/address of the word size.
    dyn = struct.Struct(f"{end}qQ" if bits == 64 else f"{end}iI")
    off, length = dynamic_seg
    entries: list[tuple[int, int]] = []
    for i in range(min(length // dyn.size, _MAX_ENTRIES)):
        tag, val = dyn.unpack(read(off + i * dyn.size, dyn.size))
        if tag == DT_NULL:
            break
        entries.append((tag, val))

    strtab_addr = next((v for t, v in entries if t == DT_STRTAB), None)
    strsz = next((v for t, v in entries if t == DT_STRSZ), None)
    wants_strings = any(t in (DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH) for t, _ in entries)
    if strtab_addr is None or strsz is None:
        if wants_strings:
            raise bad("dynamic section has names but no DT_STRTAB/DT_STRSZ")
        return ElfInfo(**info, dynamic=True)

    # DT_STRTAB is a virtual address; the PT_LOAD segment containing it maps
    # it back to a file offset (elf(5), "Program header").
    for vaddr, filesz, offset in loads:
        if vaddr <= strtab_addr < vaddr + filesz:
            strtab_off = strtab_addr - vaddr + offset
            break
    else:
        raise bad(f"DT_STRTAB address {strtab_addr:#x} is in no loadable segment")
    strtab = read(strtab_off, min(strsz, size - strtab_off))

    def string(index: int) -> str:
        if index >= len(strtab):
            raise bad(f"string index {index} beyond the {len(strtab)}-byte string table")
        return strtab[index:].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")

    def paths(tag: int) -> tuple[str, ...]:
        return tuple(p for t, v in entries if t == tag for p in string(v).split(":") if p)

    return ElfInfo(
        **info,
        needed=tuple(string(v) for t, v in entries if t == DT_NEEDED),
        soname=next((string(v) for t, v in entries if t == DT_SONAME), None),
        rpath=paths(DT_RPATH),
        runpath=paths(DT_RUNPATH),
        dynamic=True,
    )


def read_elf(path: str | Path) -> ElfInfo:
    """Parse the ELF file at ``path`` (mapped, not read: libraries can be large)."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size < 16:
                raise ElfFormatError(f"{path}: not a valid ELF file (too short)")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                return parse_elf(m, str(path))
    except OSError as e:
        raise ElfFormatError(f"{path}: cannot read: {e.strerror}") from None


def is_elf(path: str | Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == ELFMAG
    except OSError:
        return False


# -- where ld.so looks -------------------------------------------------------


def multiarch_triplets(info: ElfInfo) -> tuple[str, ...]:
    """Debian/Ubuntu multiarch directory names for this machine (may be several)."""
    m, b, be = info.machine, info.bits, info.big_endian
    if m == EM_X86_64:
        return ("x86_64-linux-gnu",) if b == 64 else ("x86_64-linux-gnux32",)
    if m == EM_386:
        return ("i386-linux-gnu",)
    if m == EM_AARCH64:
        return ("aarch64_be-linux-gnu",) if be else ("aarch64-linux-gnu",)
    if m == EM_ARM:
        return ("arm-linux-gnueabihf", "arm-linux-gnueabi")
    if m == EM_PPC64:
        return ("powerpc64-linux-gnu",) if be else ("powerpc64le-linux-gnu",)
    if m == EM_PPC:
        return ("powerpc-linux-gnu",)
    if m == EM_S390:
        return ("s390x-linux-gnu",) if b == 64 else ("s390-linux-gnu",)
    if m == EM_RISCV:
        return ("riscv64-linux-gnu",) if b == 64 else ()
    if m == EM_LOONGARCH:
        return ("loongarch64-linux-gnu",)
    if m == EM_MIPS:
        if b == 64:
            return ("mips64-linux-gnuabi64",) if be else ("mips64el-linux-gnuabi64",)
        return ("mips-linux-gnu",) if be else ("mipsel-linux-gnu",)
    return ()


def default_dirs(info: ElfInfo) -> tuple[str, ...]:
    """glibc's built-in "system search path" (``ld.so --help`` prints it).

    Debian builds glibc with the multiarch directories first; Fedora-style
    64-bit systems use /lib64 and /usr/lib64. Listing both is safe because
    a library of the wrong class or machine is skipped, as ld.so skips it.
    """
    dirs = []
    for t in multiarch_triplets(info):
        dirs += [f"/lib/{t}", f"/usr/lib/{t}"]
    if info.bits == 64:
        dirs += ["/lib64", "/usr/lib64"]
    dirs += ["/lib", "/usr/lib"]
    return tuple(dirs)


def parse_ld_so_conf(conf: str = "/etc/ld.so.conf", *, root: str | Path = "/") -> tuple[str, ...]:
    """The directories /etc/ld.so.conf lists, ``include`` globs expanded in place.

    ldconfig(8) builds /etc/ld.so.cache from these, in this order; ld.so
    consults that cache before its default directories. Format: one
    directory per line, ``#`` comments, ``include PATTERN`` (sorted glob;
    a relative pattern is relative to the including file's directory),
    ``hwcap`` lines (obsolete, ignored), and an optional ``=TYPE`` suffix.
    Paths are absolute in the host's view; ``root`` is prefixed to read them.
    """
    root = Path(root)
    out: list[str] = []
    seen_files: set[str] = set()

    def under_root(p: str) -> str:
        return str(root / p.lstrip("/"))

    def parse(conf_path: str, depth: int) -> None:
        if depth > 10 or conf_path in seen_files:  # include loops
            return
        seen_files.add(conf_path)
        try:
            text = Path(under_root(conf_path)).read_text(errors="replace")
        except OSError:
            return  # a missing ld.so.conf just means "no extra directories"
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            fields = line.split()
            if fields[0] == "include":
                for pattern in fields[1:]:
                    if not pattern.startswith("/"):
                        pattern = os.path.join(os.path.dirname(conf_path), pattern)
                    for match in sorted(glob.glob(under_root(pattern))):
                        parse("/" + os.path.relpath(match, root), depth + 1)
            elif fields[0] == "hwcap":
                continue
            else:
                d = line.split("=", 1)[0].rstrip("/") or "/"
                if d.startswith("/") and d not in out:
                    out.append(d)

    parse(conf, 0)
    return tuple(out)


def musl_dirs(info: ElfInfo, *, root: str | Path = "/") -> tuple[str, ...]:
    """musl's loader reads /etc/ld-musl-<arch>.path instead of ld.so.conf."""
    arch = os.path.basename(info.interp or "")[len("ld-musl-"):].split(".so")[0]
    try:
        text = (Path(root) / f"etc/ld-musl-{arch}.path").read_text()
        dirs = [d for d in text.replace("\n", ":").split(":") if d.strip()]
        if dirs:
            return tuple(d.strip() for d in dirs)
    except OSError:
        pass
    return ("/lib", "/usr/local/lib", "/usr/lib")


# -- resolving ---------------------------------------------------------------


@dataclass(frozen=True)
class Resolution:
    """Everything one or more programs need at run time, as host paths.

    ``libraries`` holds each library once, in the order ld.so would load them
    (breadth-first), as the path it is found under (often a soname symlink);
    the loader itself is ``interp`` and never in ``libraries``.
    """

    programs: tuple[str, ...]
    interp: str | None
    libraries: tuple[str, ...]


class LibraryResolver:
    """Find the libraries of programs under ``root`` the way ld.so(8) would."""

    def __init__(self, root: str | Path = "/", *, ld_so_conf: str = "/etc/ld.so.conf"):
        self.root = Path(root)
        self._conf_dirs = parse_ld_so_conf(ld_so_conf, root=self.root)
        self._cache: dict[str, ElfInfo | None] = {}

    def info(self, path: str) -> ElfInfo | None:
        """ElfInfo of ``path`` (in-root), or None if it is missing or not ELF.

        Symlinks are followed with :func:`walk_path`, so an absolute link in
        a tree under another root stays in that tree.
        """
        if path not in self._cache:
            try:
                real = walk_path(path, self.root)[-1].path
                self._cache[path] = read_elf(str(self.root / real.lstrip("/")))
            except ImageError:  # ElfFormatError included
                self._cache[path] = None
        return self._cache[path]

    def search_dirs(self, exe: ElfInfo) -> tuple[str, ...]:
        """The cache-and-defaults part of the search, for this program's kind."""
        if exe.interp and os.path.basename(exe.interp).startswith("ld-musl-"):
            return musl_dirs(exe, root=self.root)
        dirs = list(self._conf_dirs)
        dirs += [d for d in default_dirs(exe) if d not in dirs]
        return tuple(dirs)

    def _origin(self, path: str, is_program: bool) -> str:
        # ld.so(8): $ORIGIN is the directory of the object. For the program
        # glibc takes it from /proc/self/exe, i.e. after symlinks; for a
        # library, from the path it was found under.
        if is_program:
            try:
                return os.path.dirname(walk_path(path, self.root)[-1].path)
            except ImageError:
                return os.path.dirname(path)
        return os.path.dirname(path)

    @staticmethod
    def _expand(entry: str, origin: str) -> str | None:
        for token in ("$ORIGIN", "${ORIGIN}"):
            entry = entry.replace(token, origin)
        if "$" in entry:  # $LIB, $PLATFORM: not emulated (see module doc)
            return None
        return entry if entry.startswith("/") else None

    def resolve(self, *programs: str, dlopen: tuple[str, ...] = ()) -> Resolution:
        """Resolve ``programs`` (in-root absolute paths) and all they need.

        ``dlopen`` names libraries the programs load at run time with
        dlopen(3) (no DT_NEEDED names them); each is added, with what it
        needs, if the search finds it, and silently left out if not.

        Each program is resolved on its own, as each is its own process; the
        result is the union. Raises ImageError naming the library and who
        needs it when one cannot be found (ld.so's "cannot open shared
        object file").
        """
        interp: str | None = None
        libraries: dict[str, None] = {}  # an ordered set
        for prog in programs:
            prog_interp, libs = self._resolve_one(prog, dlopen)
            if prog_interp and interp and prog_interp != interp:
                raise ImageError(
                    f"{prog} uses the dynamic loader {prog_interp}, the others {interp}",
                    "resolve programs with different loaders separately",
                )
            interp = interp or prog_interp
            libraries.update(dict.fromkeys(libs))
        return Resolution(tuple(programs), interp, tuple(libraries))

    def _resolve_one(self, prog: str, dlopen: tuple[str, ...] = ()) -> tuple[str | None, list[str]]:
        exe = self.info(prog)
        if exe is None:
            raise ElfFormatError(f"{prog}: missing or not an ELF file")
        # name -> path of objects already loaded: ld.so reuses a loaded object
        # whose name or DT_SONAME matches instead of searching again (this is
        # how libc's DT_NEEDED on the loader is satisfied).
        loaded: dict[str, str] = {}
        if exe.interp:
            li = self.info(exe.interp)
            if li is None:
                raise ImageError(f"the dynamic loader {exe.interp} of {prog} is missing or not an ELF file")
            loaded[os.path.basename(exe.interp)] = exe.interp
            if li.soname:
                loaded[li.soname] = exe.interp
        libraries: list[str] = []
        # Breadth-first, ld.so's load order. Each item carries the DT_RPATHs
        # of its chain of loaders: ld.so(8) searches the requesting object's
        # DT_RPATH, then its loader's, up to the program, but only when the
        # requesting object has no DT_RUNPATH; an object with a DT_RUNPATH
        # has its DT_RPATH ignored, and a DT_RUNPATH applies to that object's
        # own DT_NEEDED entries only.
        queue: list[tuple[str, ElfInfo, tuple[str, ...]]] = [(prog, exe, ())]

        def load(name: str, found: str, rpath: tuple[str, ...]) -> None:
            fi = self.info(found)
            loaded[name] = found
            if fi.soname:
                loaded.setdefault(fi.soname, found)
            if found != exe.interp:
                libraries.append(found)
                queue.append((found, fi, rpath))

        def drain() -> None:
            while queue:
                obj, oi, inherited = queue.pop(0)
                origin = self._origin(obj, is_program=obj == prog)
                runpath = self._expand_all(oi.runpath, origin)
                rpath = () if oi.runpath else self._expand_all(oi.rpath, origin) + inherited
                for name in oi.needed:
                    if name in loaded:
                        continue
                    found = self._find(name, exe, rpath, runpath)
                    if found is None:
                        raise ImageError(
                            f"cannot find library {name} needed by {obj}",
                            "is the program broken on the host too? run it there to check",
                        )
                    load(name, found, rpath)

        drain()
        for name in dlopen:
            if name not in loaded and exe.dynamic:
                found = self._find(name, exe, (), ())
                if found is not None:
                    load(name, found, ())
                    drain()
        return exe.interp, libraries

    def _expand_all(self, entries: tuple[str, ...], origin: str) -> tuple[str, ...]:
        return tuple(d for d in (self._expand(e, origin) for e in entries) if d)

    def _find(self, name: str, exe: ElfInfo, rpath: tuple[str, ...], runpath: tuple[str, ...]) -> str | None:
        if "/" in name:  # ld.so(8): a name with a slash is used as a path
            return name if self._usable(name, exe) else None
        dirs = list(rpath) + list(runpath) + list(self.search_dirs(exe))
        for d in dirs:
            candidate = os.path.join(d, name)
            if self._usable(candidate, exe):
                return candidate
        return None

    def _usable(self, path: str, exe: ElfInfo) -> bool:
        i = self.info(path)
        return i is not None and exe.compatible(i)


# -- walking host paths ------------------------------------------------------


@dataclass(frozen=True)
class PathStep:
    """One step of resolving a path: a symlink met on the way, or the end."""

    path: str  # absolute, in-root, with no symlink in its parent directories
    kind: str  # "symlink" or "file" (the final regular file)
    target: str | None = None  # the symlink's text, for kind == "symlink"


def walk_path(path: str, root: str | Path = "/") -> tuple[PathStep, ...]:
    """Resolve ``path`` one component at a time, recording every symlink.

    path_resolution(7) done by hand so the image can get the same symlinks
    (``/lib64 -> usr/lib64``, ``libz.so.1 -> libz.so.1.2.13``): each step's
    ``path`` has only real directories above it, so recreating the steps in
    order rebuilds every name the host has. Absolute targets restart at
    ``root``. Raises ImageError for loops, dangling links and non-files.
    """
    root = Path(root)
    pending = [c for c in path.split("/") if c]
    cur = "/"
    steps: list[PathStep] = []
    hops = 0
    while pending:
        name = pending.pop(0)
        if name == ".":
            continue
        if name == "..":
            cur = os.path.dirname(cur)
            continue
        p = os.path.join(cur, name)
        try:
            st = os.lstat(root / p.lstrip("/"))
        except OSError as e:
            raise ImageError(f"cannot resolve {path}: {p}: {e.strerror}") from None
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > _MAX_SYMLINKS:
                raise ImageError(f"cannot resolve {path}: too many levels of symbolic links")
            target = os.readlink(root / p.lstrip("/"))
            steps.append(PathStep(p, "symlink", target))
            if target.startswith("/"):
                cur = "/"
            pending[:0] = [c for c in target.split("/") if c]
        elif stat.S_ISDIR(st.st_mode):
            cur = p
        elif pending:
            raise ImageError(f"cannot resolve {path}: {p} is not a directory")
        elif stat.S_ISREG(st.st_mode):
            steps.append(PathStep(p, "file"))
        else:
            raise ImageError(f"cannot resolve {path}: {p} is not a regular file")
    if not steps or steps[-1].kind != "file":
        raise ImageError(f"{path} is a directory, not a file")
    return tuple(steps)
