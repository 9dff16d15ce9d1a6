"""images/elf.py: the ELF parser and the ld.so-style resolver.

Real host binaries are parsed and their resolution is cross-checked against
``ldd`` (used here only, as an oracle); synthetic ELF files cover the
formats this host does not have (ELF32, big-endian) and the search rules
(DT_RPATH, DT_RUNPATH, $ORIGIN, ld.so.conf includes).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from minicontainer.errors import ImageError
from minicontainer.images import elf
from minicontainer.images.elf import (
    EM_386,
    EM_PPC,
    EM_X86_64,
    ET_DYN,
    ET_EXEC,
    ElfFormatError,
    LibraryResolver,
    default_dirs,
    parse_elf,
    parse_ld_so_conf,
    read_elf,
    walk_path,
)

pytestmark = pytest.mark.unit


# -- a tiny ELF writer for synthetic test files -------------------------------

PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
VADDR = 0x400000  # non-zero, so DT_STRTAB really has to be translated


def make_elf(
    bits: int = 64,
    big: bool = False,
    machine: int = EM_X86_64,
    etype: int = ET_DYN,
    interp: str | None = None,
    needed: tuple[str, ...] = (),
    soname: str | None = None,
    rpath: str | None = None,
    runpath: str | None = None,
    dynamic: bool = True,
) -> bytes:
    """An ELF file with just the headers elf.py reads, laid out by the book (elf(5))."""
    e = ">" if big else "<"
    a = "Q" if bits == 64 else "I"
    ehsize = 64 if bits == 64 else 52
    phentsize = 56 if bits == 64 else 32
    dynsize = 16 if bits == 64 else 8

    strtab = b"\0"
    def add(s: str) -> int:
        nonlocal strtab
        off = len(strtab)
        strtab += s.encode() + b"\0"
        return off
    dyn: list[tuple[int, int]] = [(elf.DT_NEEDED, add(n)) for n in needed]
    if soname:
        dyn.append((elf.DT_SONAME, add(soname)))
    if rpath is not None:
        dyn.append((elf.DT_RPATH, add(rpath)))
    if runpath is not None:
        dyn.append((elf.DT_RUNPATH, add(runpath)))

    nph = 1 + (interp is not None) + dynamic
    off = ehsize + nph * phentsize
    interp_off, interp_b = off, (interp.encode() + b"\0") if interp else b""
    off += len(interp_b)
    strtab_off = off
    off += len(strtab)
    off = (off + 7) // 8 * 8
    dyn_off = off
    dyn.append((elf.DT_STRTAB, VADDR + strtab_off))
    dyn.append((elf.DT_STRSZ, len(strtab)))
    dyn.append((elf.DT_NULL, 0))
    dyn_b = b"".join(struct.pack(f"{e}qQ" if bits == 64 else f"{e}iI", t, v) for t, v in dyn) if dynamic else b""
    total = dyn_off + len(dyn_b)

    def ph(p_type: int, p_off: int, size: int, vaddr: int) -> bytes:
        if bits == 64:
            return struct.pack(f"{e}IIQQQQQQ", p_type, 4, p_off, vaddr, vaddr, size, size, 8)
        return struct.pack(f"{e}IIIIIIII", p_type, p_off, vaddr, vaddr, size, size, 4, 4)

    phdrs = ph(PT_LOAD, 0, total, VADDR)
    if interp is not None:
        phdrs += ph(PT_INTERP, interp_off, len(interp_b), VADDR + interp_off)
    if dynamic:
        phdrs += ph(PT_DYNAMIC, dyn_off, len(dyn_b), VADDR + dyn_off)
    ident = b"\x7fELF" + bytes([2 if bits == 64 else 1, 2 if big else 1, 1]) + b"\0" * 9
    ehdr = ident + struct.pack(
        f"{e}HHI{a}{a}{a}IHHHHHH", etype, machine, 1, 0, ehsize, 0, 0, ehsize, phentsize, nph, 0, 0, 0
    )
    body = ehdr + phdrs + interp_b + strtab
    body += b"\0" * (dyn_off - len(body))
    return body + dyn_b


# -- the parser on synthetic files ---------------------------------------------


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("big", [False, True])
def test_parse_all_four_layouts(bits, big):
    data = make_elf(
        bits, big, machine=EM_PPC, etype=ET_EXEC, interp="/lib/ld.so.1", needed=("libfoo.so.1", "libc.so.6"),
        soname="prog", rpath="/opt/a:$ORIGIN/../lib", runpath="/opt/r",
    )
    info = parse_elf(data)
    assert (info.bits, info.big_endian, info.machine, info.type) == (bits, big, EM_PPC, ET_EXEC)
    assert info.interp == "/lib/ld.so.1"
    assert info.needed == ("libfoo.so.1", "libc.so.6")
    assert info.soname == "prog"
    assert info.rpath == ("/opt/a", "$ORIGIN/../lib")
    assert info.runpath == ("/opt/r",)
    assert not info.is_static


def test_static_program_has_no_interp_and_no_needed():
    info = parse_elf(make_elf(dynamic=False, etype=ET_EXEC))
    assert info.is_static and not info.dynamic and info.interp is None and info.needed == ()
    # static-pie: a dynamic section but nothing to load
    pie = parse_elf(make_elf(etype=ET_DYN))
    assert pie.is_static and pie.dynamic


def test_compatible_compares_class_byte_order_and_machine():
    a = parse_elf(make_elf(64, False, EM_X86_64))
    assert a.compatible(parse_elf(make_elf(64, False, EM_X86_64)))
    assert not a.compatible(parse_elf(make_elf(32, False, EM_X86_64)))  # x32
    assert not a.compatible(parse_elf(make_elf(32, False, EM_386)))
    assert not a.compatible(parse_elf(make_elf(64, True, EM_X86_64)))


@pytest.mark.parametrize(
    "data, why",
    [
        (b"", "magic"),
        (b"\x7fELF", "magic"),
        (b"#!/bin/sh\necho hi\n" * 4, "magic"),
        (b"\x7fELF\x03\x01" + b"\0" * 60, "EI_CLASS"),
        (b"\x7fELF\x02\x03" + b"\0" * 60, "EI_DATA"),
        (b"\x7fELF\x02\x01" + b"\0" * 20, "outside"),
    ],
)
def test_garbage_is_refused_with_a_clear_error(data, why):
    with pytest.raises(ElfFormatError, match=why):
        parse_elf(data, "x")


def test_truncated_and_corrupted_files_raise_only_elf_errors():
    """Every truncation and 2000 random corruptions: ElfFormatError or a result, nothing else."""
    good = make_elf(64, False, interp="/lib64/ld.so", needed=("liba.so", "libb.so"), runpath="/x")
    for n in range(len(good)):
        try:
            parse_elf(good[:n])
        except ElfFormatError:
            pass
    rng = random.Random(1234)
    for _ in range(2000):
        buf = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            buf[rng.randrange(4, len(buf))] = rng.randrange(256)
        try:
            parse_elf(bytes(buf))
        except ElfFormatError:
            pass


def test_strtab_outside_any_load_segment_is_refused():
    data = bytearray(make_elf(needed=("liba.so",)))
    info_ok = parse_elf(bytes(data))
    assert info_ok.needed == ("liba.so",)
    # Move the only PT_LOAD far away: DT_STRTAB can no longer be mapped to the file.
    ph0 = 64
    struct.pack_into("<Q", data, ph0 + 16, 0x900000)  # p_vaddr
    with pytest.raises(ElfFormatError, match="DT_STRTAB"):
        parse_elf(bytes(data))


def test_read_elf_on_empty_and_missing_files(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(ElfFormatError):
        read_elf(tmp_path / "empty")
    with pytest.raises(ElfFormatError, match="cannot read"):
        read_elf(tmp_path / "missing")
    assert not elf.is_elf(tmp_path / "empty")


# -- real host binaries, cross-checked with ldd --------------------------------


def _ldd(path: str) -> tuple[str | None, set[str]]:
    """(loader, library paths) from ldd(1), which runs the loader: an oracle only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    out = subprocess.run(["ldd", path], capture_output=True, text=True, env=env, check=True).stdout
    loader, libs = None, set()
    for line in out.splitlines():
        line = line.strip()
        m = re.match(r"(\S+) => (/\S+) \(0x", line)
        if m:
            libs.add(m.group(2))
            continue
        m = re.match(r"(/\S+) \(0x", line)
        if m:
            loader = m.group(1)
    return loader, libs


def _host_programs() -> list[str]:
    cands = ["/bin/ls", "/bin/bash", "/bin/ps", "/bin/mount", "/bin/grep", "/usr/bin/ssh", "/usr/bin/git",
             os.path.realpath(sys.executable)]
    return [p for p in cands if os.path.isfile(p) and elf.is_elf(p) and not read_elf(p).is_static]


needs_ldd = pytest.mark.skipif(shutil.which("ldd") is None, reason="ldd (libc-bin) is not installed")


@needs_ldd
@pytest.mark.parametrize("prog", _host_programs())
def test_resolution_matches_ldd(prog):
    loader, ldd_libs = _ldd(prog)
    res = LibraryResolver().resolve(prog)
    assert res.interp == loader == read_elf(prog).interp
    assert set(res.libraries) == ldd_libs - {loader}
    # ldd may name the loader under its search path too; the same file either way
    assert {os.path.realpath(p) for p in res.libraries} | {os.path.realpath(loader)} == {
        os.path.realpath(p) for p in ldd_libs | {loader}
    }


@needs_ldd
def test_ls_and_bash_headers():
    ls = read_elf("/bin/ls")
    assert ls.interp and "libc.so.6" in ls.needed and not ls.is_static
    assert ls.bits == struct.calcsize("P") * 8
    assert ls.big_endian == (sys.byteorder == "big")
    if os.path.exists("/bin/bash"):
        bash = read_elf("/bin/bash")
        loader, libs = _ldd("/bin/bash")
        assert {os.path.basename(p) for p in libs} >= set(bash.needed)


@needs_ldd
def test_the_loader_itself():
    loader = read_elf("/bin/ls").interp
    info = read_elf(loader)
    assert info.interp is None and info.needed == ()
    assert info.dynamic and info.soname == os.path.basename(loader)
    assert info.compatible(read_elf("/bin/ls"))


@pytest.mark.skipif(not os.path.isfile("/bin/busybox"), reason="no /bin/busybox (install busybox-static)")
def test_static_busybox_is_static_like_ldd_says():
    info = read_elf("/bin/busybox")
    out = subprocess.run(["ldd", "/bin/busybox"], capture_output=True, text=True)
    ldd_says_static = "not a dynamic executable" in out.stdout + out.stderr or "statically linked" in out.stdout
    assert info.is_static == ldd_says_static
    if info.is_static:
        assert LibraryResolver().resolve("/bin/busybox").libraries == ()


# -- ld.so.conf and default directories ---------------------------------------


def test_ld_so_conf_includes_comments_and_types(tmp_path):
    (tmp_path / "etc/ld.so.conf.d").mkdir(parents=True)
    (tmp_path / "etc/ld.so.conf").write_text(
        "# comment\n/usr/local/lib   # trailing\n\ninclude /etc/ld.so.conf.d/*.conf\n"
        "hwcap 1 nosegneg\n/opt/old=libc6\n/usr/local/lib\ninclude rel/*.conf\ninclude /etc/ld.so.conf\n"
    )
    (tmp_path / "etc/ld.so.conf.d/b.conf").write_text("/b1\n/b2/\n")
    (tmp_path / "etc/ld.so.conf.d/a.conf").write_text("/a\n")
    (tmp_path / "etc/ld.so.conf.d/c.txt").write_text("/not-a-conf\n")
    (tmp_path / "etc/rel").mkdir()
    (tmp_path / "etc/rel/x.conf").write_text("/rel\n")
    dirs = parse_ld_so_conf("/etc/ld.so.conf", root=tmp_path)
    assert dirs == ("/usr/local/lib", "/a", "/b1", "/b2", "/opt/old", "/rel")


def test_missing_ld_so_conf_means_no_directories(tmp_path):
    assert parse_ld_so_conf("/etc/ld.so.conf", root=tmp_path) == ()


def test_default_dirs_multiarch_first():
    x64 = parse_elf(make_elf(64, False, EM_X86_64))
    assert default_dirs(x64)[:2] == ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu")
    assert default_dirs(x64)[-2:] == ("/lib", "/usr/lib")
    i386 = parse_elf(make_elf(32, False, EM_386))
    assert default_dirs(i386) == ("/lib/i386-linux-gnu", "/usr/lib/i386-linux-gnu", "/lib", "/usr/lib")


# -- the resolver's search rules on a synthetic tree ---------------------------


def _put(root: Path, path: str, data: bytes | None = None, link: str | None = None) -> None:
    p = root / path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    if link is not None:
        p.symlink_to(link)
    else:
        p.write_bytes(data)


LDSO = "/lib64/ld-test.so.2"


@pytest.fixture
def tree(tmp_path):
    r = tmp_path / "root"
    _put(r, LDSO, make_elf(soname="ld-test.so.2"))
    _put(r, "/lib/x86_64-linux-gnu/libc.so.6", make_elf(soname="libc.so.6", needed=("ld-test.so.2",)))
    return r


def test_search_order_rpath_runpath_origin_and_soname_links(tree):
    # the program: in /app/bin, RPATH $ORIGIN/../lib
    _put(tree, "/app/bin/prog", make_elf(etype=ET_EXEC, interp=LDSO, needed=("liba.so.1", "libc.so.6"),
                                         rpath="$ORIGIN/../lib"))
    # liba is a SONAME symlink to the real file, and needs libb
    _put(tree, "/app/lib/liba.so.1.2", make_elf(soname="liba.so.1", needed=("libb.so.1", "libc.so.6")))
    _put(tree, "/app/lib/liba.so.1", link="liba.so.1.2")
    # libb: the program's RPATH is inherited (liba has no RUNPATH) -> /app/lib wins over the default dir
    _put(tree, "/app/lib/libb.so.1", make_elf(soname="libb.so.1", needed=("libc.so.6",)))
    _put(tree, "/lib/x86_64-linux-gnu/libb.so.1", make_elf(soname="libb.so.1"))
    res = LibraryResolver(tree).resolve("/app/bin/prog")
    assert res.interp == LDSO
    # ld.so does not normalise "..": ldd would print these same strings
    assert res.libraries == (
        "/app/bin/../lib/liba.so.1", "/lib/x86_64-linux-gnu/libc.so.6", "/app/bin/../lib/libb.so.1",
    )


def test_runpath_disables_rpath_and_is_not_inherited(tree):
    _put(tree, "/app/prog", make_elf(etype=ET_EXEC, interp=LDSO, needed=("liba.so",), rpath="/rp",
                                     runpath="/run"))
    _put(tree, "/rp/liba.so", make_elf(soname="liba.so"))  # ignored: the program has a RUNPATH
    _put(tree, "/run/liba.so", make_elf(soname="liba.so", needed=("libb.so",)))
    _put(tree, "/run/libb.so", make_elf(soname="libb.so"))  # not seen: RUNPATH does not apply to liba's needs
    _put(tree, "/usr/lib/libb.so", make_elf(soname="libb.so"))
    res = LibraryResolver(tree).resolve("/app/prog")
    assert res.libraries == ("/run/liba.so", "/usr/lib/libb.so")


def test_incompatible_libraries_are_skipped_like_ld_so_does(tree):
    _put(tree, "/app/prog", make_elf(etype=ET_EXEC, interp=LDSO, needed=("libz.so.1",)))
    _put(tree, "/lib/x86_64-linux-gnu/libz.so.1", make_elf(32, False, EM_386, soname="libz.so.1"))
    _put(tree, "/usr/lib/x86_64-linux-gnu/libz.so.1", b"not an ELF file at all, maybe a linker script")
    _put(tree, "/usr/lib64/libz.so.1", make_elf(soname="libz.so.1"))
    assert LibraryResolver(tree).resolve("/app/prog").libraries == ("/usr/lib64/libz.so.1",)


def test_ld_so_conf_dirs_come_before_default_dirs(tree):
    _put(tree, "/etc/ld.so.conf", b"/opt/first\n")
    _put(tree, "/app/prog", make_elf(etype=ET_EXEC, interp=LDSO, needed=("libq.so",)))
    _put(tree, "/opt/first/libq.so", make_elf(soname="libq.so"))
    _put(tree, "/usr/lib/libq.so", make_elf(soname="libq.so"))
    assert LibraryResolver(tree).resolve("/app/prog").libraries == ("/opt/first/libq.so",)


def test_missing_library_names_library_and_needer(tree):
    _put(tree, "/app/prog", make_elf(etype=ET_EXEC, interp=LDSO, needed=("libc.so.6", "libgone.so.3")))
    with pytest.raises(ImageError, match=r"libgone\.so\.3 needed by /app/prog"):
        LibraryResolver(tree).resolve("/app/prog")


def test_dlopen_extras_are_optional(tree):
    _put(tree, "/app/prog", make_elf(etype=ET_EXEC, interp=LDSO, needed=("libc.so.6",)))
    _put(tree, "/usr/lib/libnss_files.so.2", make_elf(soname="libnss_files.so.2", needed=("libc.so.6",)))
    res = LibraryResolver(tree).resolve("/app/prog", dlopen=("libnss_files.so.2", "libnot-there.so"))
    assert res.libraries == ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/libnss_files.so.2")


def test_loader_is_never_listed_as_a_library(tree):
    _put(tree, "/app/prog", make_elf(etype=ET_EXEC, interp=LDSO, needed=("libc.so.6",)))
    res = LibraryResolver(tree).resolve("/app/prog")
    assert LDSO not in res.libraries and res.interp == LDSO


# -- walk_path ------------------------------------------------------------------


def test_walk_path_records_every_symlink(tmp_path):
    _put(tmp_path, "/usr/lib/x/ld.so", b"loader")
    _put(tmp_path, "/lib", link="usr/lib")
    _put(tmp_path, "/usr/lib64/ld.so", link="/lib/x/ld.so")  # absolute: relative to the root
    _put(tmp_path, "/lib64", link="usr/lib64")
    steps = walk_path("/lib64/ld.so", tmp_path)
    assert [(s.path, s.kind, s.target) for s in steps] == [
        ("/lib64", "symlink", "usr/lib64"),
        ("/usr/lib64/ld.so", "symlink", "/lib/x/ld.so"),
        ("/lib", "symlink", "usr/lib"),
        ("/usr/lib/x/ld.so", "file", None),
    ]


def test_walk_path_refuses_loops_dangling_links_and_directories(tmp_path):
    _put(tmp_path, "/a", link="b")
    _put(tmp_path, "/b", link="a")
    _put(tmp_path, "/dangling", link="/nowhere")
    (tmp_path / "dir").mkdir()
    with pytest.raises(ImageError, match="too many levels"):
        walk_path("/a", tmp_path)
    with pytest.raises(ImageError, match="nowhere"):
        walk_path("/dangling", tmp_path)
    with pytest.raises(ImageError, match="directory"):
        walk_path("/dir", tmp_path)


def test_walk_path_dotdot_cannot_leave_the_root(tmp_path):
    _put(tmp_path, "/etc/f", b"inside")
    _put(tmp_path, "/up", link="../../../../etc/f")
    steps = walk_path("/up", tmp_path)
    assert steps[-1].path == "/etc/f"


@needs_ldd
@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler to build test programs")
@pytest.mark.parametrize("tags", ["--disable-new-dtags", "--enable-new-dtags"])  # DT_RPATH / DT_RUNPATH
def test_origin_paths_match_ldd_on_compiled_programs(tmp_path, tags):
    (tmp_path / "bin").mkdir()
    (tmp_path / "lib").mkdir()
    (tmp_path / "a.c").write_text("int b(void); int a(void){return b();}\n")
    (tmp_path / "b.c").write_text("int b(void){return 0;}\n")
    (tmp_path / "m.c").write_text("int a(void); int main(void){return a();}\n")
    lib = tmp_path / "lib"
    cc = ["cc", "-Wl," + tags]
    subprocess.run([*cc, "-shared", "-fPIC", "-o", lib / "libb.so.1", "-Wl,-soname,libb.so.1", tmp_path / "b.c"],
                   check=True)
    (lib / "libb.so").symlink_to("libb.so.1")
    subprocess.run([*cc, "-shared", "-fPIC", "-o", lib / "liba.so", tmp_path / "a.c", f"-L{lib}", "-lb",
                    "-Wl,-rpath,$ORIGIN"], check=True)
    prog = tmp_path / "bin/prog"
    subprocess.run([*cc, "-o", prog, tmp_path / "m.c", f"-L{lib}", "-la", "-Wl,-rpath,$ORIGIN/../lib"], check=True)
    info = read_elf(prog)
    assert (info.rpath if tags == "--disable-new-dtags" else info.runpath) == ("$ORIGIN/../lib",)
    loader, ldd_libs = _ldd(str(prog))
    res = LibraryResolver().resolve(str(prog))
    assert set(res.libraries) == ldd_libs - {loader}
    assert f"{tmp_path}/bin/../lib/liba.so" in res.libraries


def test_absolute_symlinks_stay_inside_the_root(tree):
    """/usr/lib/libq.so -> /mc-only-in-tree/...: followed inside the tree, not on the host."""
    assert not os.path.exists("/mc-only-in-tree")
    _put(tree, "/app/prog", make_elf(etype=ET_EXEC, interp=LDSO, needed=("libq.so",)))
    _put(tree, "/mc-only-in-tree/libq.so.1", make_elf(soname="libq.so"))
    _put(tree, "/usr/lib/libq.so", link="/mc-only-in-tree/libq.so.1")
    assert LibraryResolver(tree).resolve("/app/prog").libraries == ("/usr/lib/libq.so",)
