"""Find which kernel modules a module needs, without depmod.

Why: ``dpkg-deb -x`` unpacks a kernel package without running its
postinst, so there is no ``modules.dep``. Every ``.ko`` records its own
dependencies in an ELF section named ``.modinfo``: NUL-separated
``key=value`` strings, one of which is ``depends=a,b`` (see modinfo(8) and
the kernel's scripts/mod/modpost.c, which writes it). We read that section
with a few lines of ELF parsing (elf(5)) and load modules in dependency
order with busybox ``insmod``, which does not resolve dependencies itself.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path


class ModuleError(ValueError):
    """A module that cannot be found or parsed."""


def modinfo(ko: bytes) -> dict[str, list[str]]:
    """The ``.modinfo`` strings of a 64-bit little-endian ELF module."""
    if ko[:4] != b"\x7fELF" or ko[4] != 2 or ko[5] != 1:
        raise ModuleError("not a 64-bit little-endian ELF file")
    # Elf64_Ehdr: e_shoff at 0x28, e_shentsize/e_shnum/e_shstrndx at 0x3a.
    (shoff,) = struct.unpack_from("<Q", ko, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", ko, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        # Elf64_Shdr: sh_name (u32) at 0, sh_offset (u64) at 0x18, sh_size at 0x20.
        base = shoff + i * shentsize
        (name,) = struct.unpack_from("<I", ko, base)
        offset, size = struct.unpack_from("<QQ", ko, base + 0x18)
        return name, offset, size

    _, strtab_off, _ = section(shstrndx)
    for i in range(shnum):
        name_off, offset, size = section(i)
        end = ko.index(b"\0", strtab_off + name_off)
        if ko[strtab_off + name_off:end] == b".modinfo":
            info: dict[str, list[str]] = {}
            for entry in ko[offset:offset + size].split(b"\0"):
                key, sep, value = entry.partition(b"=")
                if sep:
                    info.setdefault(key.decode(), []).append(value.decode(errors="replace"))
            return info
    raise ModuleError("no .modinfo section")


def index_modules(modules_dir: Path) -> dict[str, Path]:
    """Map module names to files; the kernel treats '-' and '_' alike."""
    found: dict[str, Path] = {}
    for dirpath, _, files in os.walk(modules_dir / "kernel"):
        for f in files:
            if f.endswith(".ko"):
                found[f[:-3].replace("-", "_")] = Path(dirpath) / f
    return found


def builtin_modules(modules_dir: Path) -> set[str]:
    """Names listed in ``modules.builtin``: compiled in, nothing to load."""
    try:
        lines = (modules_dir / "modules.builtin").read_text().split()
    except FileNotFoundError:
        return set()
    return {Path(line).name.removesuffix(".ko").replace("-", "_") for line in lines}


def load_order(wanted: list[str], modules_dir: Path) -> list[Path]:
    """The module files to insmod, dependencies first, each once.

    Built-in modules are skipped: they are already part of the kernel.
    """
    index = index_modules(modules_dir)
    builtin = builtin_modules(modules_dir)
    order: list[Path] = []
    done: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        name = name.replace("-", "_")
        if name in done or name in builtin:
            return
        if name in chain:
            raise ModuleError(f"dependency cycle: {' -> '.join(chain + (name,))}")
        path = index.get(name)
        if path is None:
            raise ModuleError(f"module {name!r} is neither in {modules_dir}/kernel nor built in")
        deps = modinfo(path.read_bytes()).get("depends", [""])[0]
        for dep in filter(None, deps.split(",")):
            visit(dep, chain + (name,))
        done.add(name)
        order.append(path)

    for name in wanted:
        visit(name, ())
    return order
