"""Read a tar stream into members, and extract it with SafeTree.

Why not ``tarfile.extractall``? A root filesystem needs things Python's
extraction filters refuse or change (reliability cases A1-A9):

- ``filter='data'`` rejects absolute symlinks (``etc/localtime ->
  /usr/share/zoneinfo/UTC``), which are normal in a rootfs: they resolve
  inside the container;
- both ``'data'`` and ``'tar'`` strip setuid/setgid bits and turn the sticky
  1777 ``/tmp`` into 0755;
- ``'fully_trusted'`` writes through symlinks the archive planted, and the
  filters have had bypasses in 3.11 patch releases (CVE-2025-4517 ...).

So this module reads the members itself and :func:`extract_tar` hands each
one to images/safetree.py, which writes it relative to directory fds and
keeps what a rootfs needs (its docstring has the writing rules). The
reading rules:

- a leading ``/`` is stripped, as GNU tar does; ``..`` is resolved
  lexically and a name that leaves the root refuses the whole archive
  (:func:`member_parts`);
- a hard link must name an earlier regular-file member (SafeTree checks it
  is still a regular file);
- device nodes and FIFOs are skipped and counted (``/dev`` is a fresh tmpfs
  at run time);
- whiteouts (``.wh.*``) are refused in a flat export, where they mean
  nothing; in an image *layer* (``layer=True``: ``image load``, ``build``)
  they are what the OCI image spec (layer.md, "Whiteouts") says, a deletion
  of a name in the layers below, and become overlayfs's own form
  (:meth:`SafeTree.make_whiteout`, :meth:`SafeTree.make_opaque`);
- configurable limits (:class:`Limits`) turn bombs into a clear error;
- of the extended attributes only file capabilities
  (``SCHILY.xattr.security.capability``, as root) are kept: without them
  ``ping`` loses cap_net_raw. Others are dropped on purpose:
  ``trusted.overlay.*`` would steer overlayfs when the image is a lower layer.

We parse the headers ourselves (:func:`parse_header`, one struct.unpack per
512-byte block) instead of iterating a ``tarfile`` object: tarfile's stream
mode keeps every member in a list (10^6 entries is a lot of memory) and
copies data through 10 KiB buffers, which made it alone cost as much as
``tar -xf``; even its header parser (``TarInfo.frombuf``) took a fifth of an
import. Here data moves in 4 MiB chunks straight from the (decompressed)
stream to ``write(2)``, and the same chunks feed the sha256 that becomes the
image id (on a second thread). See tar(5) for the format.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import zlib
from minicontainer.records import dataclass  # dataclasses without exec or inspect (records.py, issue 15)
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, NamedTuple

from minicontainer.errors import ImageError, wrap_oserror
from minicontainer.images.safetree import PATH_MAX, REFUSED_HINT, SafeTree, refused

BLOCK = 512  # tar(5): everything is in 512-byte blocks
# Big reads and writes: the cost is per syscall, not per byte. And per
# chunk the sha256 thread takes the GIL back twice (queue.get, then its loop):
# at 1 MiB, the bench's 200 MB import took a median 389 ms to extract against
# 346 ms with no hash at all; at 4 MiB, 350 ms (8 runs each, interleaved).
CHUNK = 4 << 20

# tar(5) type flags (a header's byte 156), named as tarfile names them;
# written here because importing tarfile (with shutil, bz2 and lzma) only
# for these costs ~4 ms of an import (tests/unit/test_tar_extract.py checks
# them against tarfile's).
REGTYPE, AREGTYPE, LNKTYPE, SYMTYPE, CHRTYPE = b"0", b"\0", b"1", b"2", b"3"
BLKTYPE, DIRTYPE, FIFOTYPE, CONTTYPE = b"4", b"5", b"6", b"7"
XHDTYPE, XGLTYPE, SOLARIS_XHDTYPE = b"x", b"g", b"X"  # pax: local, global, Solaris's local
GNUTYPE_LONGNAME, GNUTYPE_LONGLINK, GNUTYPE_SPARSE = b"L", b"K", b"S"

_REGULAR = (REGTYPE, AREGTYPE, CONTTYPE)
_SPECIAL = (CHRTYPE, BLKTYPE, FIFOTYPE)
_PAX_LOCAL = (XHDTYPE, SOLARIS_XHDTYPE)
_EXTENDED = (GNUTYPE_LONGNAME, GNUTYPE_LONGLINK, XGLTYPE) + _PAX_LOCAL

NAME_MAX = 255  # bytes in one path component (limits.h)


@dataclass(frozen=True)
class Limits:
    """Guards against archive bombs (reliability case A9). All configurable;
    the defaults are far above any real root filesystem."""

    max_members: int = 500_000
    max_file_bytes: int = 16 << 30
    max_total_bytes: int = 64 << 30  # of the uncompressed stream
    max_depth: int = 256  # directory levels in a member name
    max_header_bytes: int = 1 << 20  # one pax or GNU long-name header
    # Extended headers (pax, pax global, GNU long name/link) before one
    # member: a real archive has one to three. Without a bound, a small
    # crafted file could carry millions of them, each parsed and none
    # counted as a member.
    max_ext_headers: int = 16
    max_global_bytes: int = 1 << 20  # keys and values of the pax global set, all together


@dataclass(frozen=True)
class ExtractResult:
    digest: str  # "sha256:<hex>" of the whole uncompressed tar stream (a layer's diff_id)
    compression: str  # "none", "gzip", "xz", "bzip2" or "zstd"
    members: int
    bytes: int  # length of the uncompressed stream
    skipped_special: int  # device nodes and FIFOs left out
    file_bytes: int = 0  # data of the regular files: the image's size
    raw_digest: str | None = None  # "sha256:<hex>" of the bytes as read (compressed), if asked for
    whiteouts: int = 0  # .wh.* members turned into overlay whiteouts (layers only)


class Member(NamedTuple):
    """One tar member after extended headers were applied (pure data; a
    NamedTuple like Header: one is made per member, and a frozen dataclass's
    __init__ cost ~3 us more each, ~20 ms of a 6,800-member import)."""

    name: str  # as written in the archive, for messages
    parts: tuple[str, ...]  # normalised path inside the root
    type: bytes
    size: int
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    linkname: str
    caps: bytes | None = None  # file capabilities (security.capability), e.g. ping's cap_net_raw


# -- pure helpers ---------------------------------------------------------------


WHITEOUT = ".wh."  # OCI image spec, layer.md "Whiteouts": the prefix of a deletion marker
OPAQUE = ".wh..wh..opq"  # ... and the marker of an opaque directory


def member_parts(name: str, limits: Limits = Limits(), *, whiteouts: bool = False) -> tuple[str, ...]:
    """Normalise a member (or hard link target) name to path components.

    ``/`` prefixes and ``.`` go away, ``..`` pops a component (like moby's
    ``filepath.Clean``) and popping past the root refuses the archive. The
    result is the path we create, component by component, from the root fd.
    With ``whiteouts`` (a layer) the last component may be a whiteout
    (``.wh.NAME`` or ``.wh..wh..opq``); see :func:`whiteout_target`.
    """
    if "\0" in name:
        raise refused(name, "contains a NUL byte")
    # utf-8 needs at most 4 bytes a character: encode only names that may be long
    if len(name) >= PATH_MAX // 4 and len(os.fsencode(name)) >= PATH_MAX:
        raise refused(name[:60] + "...", f"is longer than PATH_MAX ({PATH_MAX} bytes)")
    comps = name.split("/")
    if "" not in comps and "." not in comps and ".." not in comps and WHITEOUT not in name:
        # The common case ("usr/bin/env"): nothing to drop, pop or refuse but
        # a long component or depth; ~1 us instead of the loop's ~5 a member.
        if len(name) > NAME_MAX // 4 and any(len(c) > NAME_MAX // 4 and len(os.fsencode(c)) > NAME_MAX
                                             for c in comps):
            raise refused(name, f"has a component longer than NAME_MAX ({NAME_MAX} bytes)")
        if len(comps) > limits.max_depth:
            raise refused(name[:60] + "...", f"is nested deeper than {limits.max_depth} directories")
        return tuple(comps)
    parts: list[str] = []
    while len(comps) > 1 and comps[-1] in ("", "."):
        comps.pop()  # "a/.wh.b/" is still the whiteout .wh.b
    for i, comp in enumerate(comps):
        if comp in ("", "."):
            continue
        if comp.startswith(WHITEOUT) and not (whiteouts and i == len(comps) - 1):
            if whiteouts:
                raise refused(name, "has a whiteout (.wh.*) as a directory: a deleted name cannot hold files")
            raise refused(
                name,
                "is an overlay whiteout (.wh.*): this is a registry image layer, not a "
                "container export; export a container with 'docker export' instead",
            )
        if comp == "..":
            if not parts:
                raise refused(name, "leaves the root directory ('..')")
            parts.pop()
            continue
        if len(comp) > NAME_MAX // 4 and len(os.fsencode(comp)) > NAME_MAX:
            raise refused(name, f"has a component longer than NAME_MAX ({NAME_MAX} bytes)")
        parts.append(comp)
    if len(parts) > limits.max_depth:
        raise refused(name[:60] + "...", f"is nested deeper than {limits.max_depth} directories")
    return tuple(parts)


def whiteout_target(parts: tuple[str, ...], member: str) -> tuple[str, ...] | None:
    """For a layer member, what its whiteout deletes: ``dir/.wh.NAME`` ->
    ``("dir", "NAME")``, ``dir/.wh..wh..opq`` -> ``("dir",)`` (the directory
    becomes opaque). None: not a whiteout. A whiteout name that could only
    mean "the parent" or "the root" (``.wh.``, ``.wh..``, ``.wh...``), or
    any other ``.wh..wh.`` marker (aufs's private ones), refuses the
    archive: a whiteout deletes one name in its own directory, nothing else."""
    if not parts or not parts[-1].startswith(WHITEOUT):
        return None
    last = parts[-1]
    if last == OPAQUE:
        return parts[:-1]
    target = last[len(WHITEOUT):]
    if target in ("", ".", "..") or target.startswith(WHITEOUT):
        raise refused(member, "is a whiteout that names no file of its directory")
    return parts[:-1] + (target,)


# tar(5), "ustar Interchange Format": the header block's fields, in order.
_HEADER = struct.Struct(
    "100s"  # 0    name
    "8s"  # 100  mode (octal)
    "8s"  # 108  uid
    "8s"  # 116  gid
    "12s"  # 124  size
    "12s"  # 136  mtime
    "8s"  # 148  checksum
    "c"  # 156  typeflag
    "100s"  # 157  linkname
    "6s"  # 257  magic: "ustar\0" (POSIX) or "ustar " (old GNU)
    "2s"  # 263  version
    "32s"  # 265  uname (we keep numeric ids, like docker)
    "32s"  # 297  gname
    "8s"  # 329  devmajor
    "8s"  # 337  devminor
    "155s"  # 345  prefix (POSIX only; old GNU keeps atime/ctime there); 12 bytes pad to 512
)
_SIGNED_BYTES = struct.Struct("148b8x356b")
_POSIX_MAGIC = b"ustar\0"
_ZERO_BLOCK = bytes(BLOCK)  # the end-of-archive marker
_GNU_TYPES = (GNUTYPE_LONGNAME, GNUTYPE_LONGLINK, GNUTYPE_SPARSE)


class BadHeader(ValueError):
    """A 512-byte block that is not a valid tar header."""


class Header(NamedTuple):
    """The fields of one header block that we use. (A NamedTuple, not a
    dataclass: thousands are made per import, and a tuple is cheapest.)"""

    name: str
    linkname: str
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int


def parse_header(block: bytes) -> Header:
    """Decode one (non-zero) 512-byte header block, checksum verified.

    Follows tar(5) and GNU tar: numbers are octal text or, when too big, base
    256; the checksum is the sum of the block's bytes with its own field
    counted as spaces (as unsigned bytes, or signed ones as some old tars
    did); a POSIX ``prefix`` is joined to the name with ``/``.
    """
    (name, mode, uid, gid, size, mtime, checksum, kind, linkname,
     magic, _version, _uname, _gname, _major, _minor, prefix) = _HEADER.unpack_from(block)
    if _PLAIN_NUMBERS.fullmatch(block, 100, 156):  # mode..checksum: octal text, the common case
        try:
            stored, mode, uid, gid, size, mtime = [int(f.split(b"\0", 1)[0] or b"0", 8)
                                                    for f in (checksum, mode, uid, gid, size, mtime)]
        except ValueError:  # "1 2": a space inside the digits
            raise BadHeader(f"invalid number in {block[100:156]!r}") from None
    else:
        stored, mode, uid, gid, size, mtime = (_number(f) for f in (checksum, mode, uid, gid, size, mtime))
    if stored != _byte_sum(block) - sum(checksum) + 8 * 0x20 and stored != sum(_SIGNED_BYTES.unpack(block)) + 8 * 0x20:
        raise BadHeader("bad checksum")
    text = _text(name)
    if kind == DIRTYPE or (kind == AREGTYPE and text.endswith("/")):
        # V7 tars mark a directory only by its trailing slash
        kind = DIRTYPE
        text = text.rstrip("/")
    if magic == _POSIX_MAGIC and prefix[0] and kind not in _GNU_TYPES:
        text = _text(prefix) + "/" + text
    return Header(text, _text(linkname) if linkname[0] else "", kind, mode, uid, gid, size, mtime)


# Octal digits, spaces and NULs only: int() may read such a field directly
# (int() alone would also take "+1", "0o7" or "1_0", which tar does not).
_PLAIN_NUMBERS = re.compile(rb"[0-7 \0]*")


def _byte_sum(block: bytes) -> int:
    """The sum of a 512-byte block's bytes, for its checksum. adler32's low
    half is 1 + the sum of the bytes modulo 65521 (RFC 1950, 8.2); a half
    block sums to at most 256 * 255 = 65280, so per half it is the exact
    sum. Two adler32 calls in C take ~0.4 us, sum(block) ~3.5 us a header."""
    view = memoryview(block)
    return (zlib.adler32(view[:256]) & 0xFFFF) + (zlib.adler32(view[256:512]) & 0xFFFF) - 2


def _text(field: bytes) -> str:
    """A NUL-terminated string field; bytes that are not UTF-8 survive as
    surrogates and are written back as the same bytes (os.fsencode)."""
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _number(field: bytes) -> int:
    """A numeric field: octal digits padded with NULs or spaces, or (GNU,
    star) base 256, big-endian after a first byte 0x80 (or 0xff: negative)."""
    lead = field[0]
    if lead == 0x80 or lead == 0xFF:
        n = int.from_bytes(field[1:], "big")
        return n - (1 << (8 * (len(field) - 1))) if lead == 0xFF else n
    digits = field.split(b"\0", 1)[0].strip()
    if digits.translate(None, b"01234567"):  # something else is left: int() would take "+1", "0o7", "1_0"
        raise BadHeader(f"invalid number {field!r}")
    return int(digits, 8) if digits else 0


def detect_compression(head: bytes) -> str:
    """The compression of a stream from its first bytes (magic numbers, see
    gzip(1), xz(1), bzip2(1)), never from a file name."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"BZh") and head[3:4].isdigit():
        return "bzip2"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    return "none"


def parse_pax(data: bytes, member: str) -> dict[str, str]:
    """Parse pax extended header records: ``"%d %s=%s\\n"`` (pax(1))."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # NUL padding after the last record
            break
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            length = 0
        end = pos + length
        if space < 0 or length <= 0 or end > len(data) or data[end - 1] != 0x0A:
            raise ImageError(f"corrupt archive: bad pax header before member {member!r}", REFUSED_HINT)
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq:
            raise ImageError(f"corrupt archive: bad pax record before member {member!r}", REFUSED_HINT)
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos = end
    return out


def _pax_mtime_ns(value: str) -> int:
    """'1700000000.5' -> ns, exactly (a float would lose the nanoseconds)."""
    sign = -1 if value.startswith("-") else 1
    sec, _, frac = value.lstrip("-").partition(".")
    return sign * (int(sec or "0") * 1_000_000_000 + int((frac + "000000000")[:9]))


# -- input: decompress, hash, read in big chunks --------------------------------


class _EndOfData(Exception):
    """The stream ended where the format needs more bytes. ``cut``: the
    compressed stream itself ended before its end marker."""

    def __init__(self, message: str, *, cut: bool = False):
        super().__init__(message)
        self.cut = cut


class _Source:
    """The raw (maybe compressed) bytes: the peeked head first, then the file;
    counts bytes for a progress callback."""

    def __init__(self, raw: BinaryIO, head: bytes, progress: Callable[[int], None] | None, sha=None):
        self._raw = raw
        self._head = head
        self._progress = progress
        self.sha = sha  # a hashlib object for the raw bytes (a layer's compressed digest), or None

    def read(self, n: int | None = -1) -> bytes:
        if self._head:  # decompressors read headers a few bytes at a time
            cut = len(self._head) if n is None or n < 0 else n
            data, self._head = self._head[:cut], self._head[cut:]
        else:
            data = self._raw.read(n if n and n > 0 else CHUNK)
        if self._progress is not None and data:
            self._progress(len(data))
        if self.sha is not None:
            self.sha.update(data)
        return data

    def readable(self) -> bool:
        return True


def _read_head(raw: BinaryIO, n: int) -> bytes:
    """Read ``n`` bytes, looping over short reads (a pipe gives what it has)."""
    out = b""
    while len(out) < n:
        try:
            data = raw.read(n - len(out))
        except OSError as e:
            raise _read_error(e) from e
        if not data:
            break
        out += data
    return out


def _read_error(e: OSError) -> ImageError:
    err = wrap_oserror("reading the archive", e)
    return ImageError(err.message, err.hint)


class _Hasher:
    """sha256 on the other CPU: hashlib releases the GIL while it hashes a
    big buffer, so a thread digests chunk n while the main thread writes
    chunk n+1 to disk (the hash was a quarter of the import's CPU time).
    The chunks are immutable ``bytes``; a small queue bounds the memory."""

    def __init__(self) -> None:
        import queue
        import threading

        self._sha = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=2)  # at most 3 chunks behind
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            self._sha.update(data)

    def update(self, data: bytes) -> None:
        self._queue.put(data)

    def close(self) -> None:
        """Stop the thread (also on errors; idempotent)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def hexdigest(self) -> str:
        self.close()
        return self._sha.hexdigest()


class _Input:
    """The uncompressed tar stream, read in big chunks, every byte hashed once."""

    def __init__(self, raw: BinaryIO, limits: Limits, progress: Callable[[int], None] | None, *,
                 hash_raw: bool = False):
        head = _read_head(raw, 6)
        self.compression = detect_compression(head)
        src = _Source(raw, head, progress, hashlib.sha256() if hash_raw else None)
        self.source = src
        # The decompressor modules are imported only when needed (start-up
        # time); each brings its own "corrupt data" exception.
        self._corrupt: tuple[type[BaseException], ...] = ()
        if self.compression == "none":
            self._decoded = src
        elif self.compression == "gzip":
            import gzip
            import zlib

            self._decoded = gzip.GzipFile(fileobj=src, mode="rb")
            self._corrupt = (zlib.error,)
        elif self.compression == "xz":
            import lzma

            self._decoded = lzma.LZMAFile(src)
            self._corrupt = (lzma.LZMAError,)
        elif self.compression == "bzip2":
            import bz2

            self._decoded = bz2.BZ2File(src)
        elif self.compression == "zstd":
            # Python 3.11 has no zstd module: the zstd(1) binary decodes
            # (Debian's zstd package), see _ZstdPipe.
            self._decoded = _ZstdPipe(src)
        else:
            raise ImageError(
                f"{self.compression}-compressed archives are not supported",
                f"decompress it first, e.g. '{self.compression} -dc FILE | minicontainer image import - NAME'",
            )
        self._limits = limits
        self._buf = memoryview(b"")
        self._pos = 0
        self.sha = _Hasher()
        self.total = 0

    def _fill(self) -> None:
        """Replace the (consumed) buffer with the next decoded chunk."""
        try:
            data = self._decoded.read(CHUNK)
        except EOFError as e:  # gzip/xz/bzip2: the stream ends before its end marker
            raise _EndOfData(f"the {self.compression} data ends early", cut=True) from e
        except OSError as e:
            if e.errno is None:  # gzip.BadGzipFile, bz2 "Invalid data stream"
                raise ImageError(f"corrupt {self.compression} data: {e}", REFUSED_HINT) from e
            raise _read_error(e) from e
        except self._corrupt as e:
            raise ImageError(f"corrupt {self.compression} data: {e}", REFUSED_HINT) from e
        if not data:
            raise _EndOfData("unexpected end of data")
        self.total += len(data)
        if self.total > self._limits.max_total_bytes:
            raise ImageError(
                f"the archive is larger than the limit ({self._limits.max_total_bytes} bytes uncompressed)",
                "is it a decompression bomb? raise Limits.max_total_bytes if it is genuine",
            )
        self.sha.update(data)
        self._buf = memoryview(data)
        self._pos = 0

    def _pieces(self, n: int) -> Iterator[memoryview]:
        """The next ``n`` bytes as views into the decoded chunks (no copy),
        refilling as they are used up; _EndOfData if the stream ends first."""
        while n:
            if self._pos >= len(self._buf):
                self._fill()
            piece = self._buf[self._pos : self._pos + n]
            self._pos += len(piece)
            n -= len(piece)
            yield piece

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes (for headers), or _EndOfData."""
        pos = self._pos
        if pos + n <= len(self._buf):  # within the chunk (almost always): no generator
            self._pos = pos + n
            return self._buf[pos : pos + n].tobytes()
        return b"".join(self._pieces(n))

    def copy_to(self, fd: int | None, n: int) -> None:
        """Move ``n`` bytes to ``fd`` (or drop them if ``fd`` is None)."""
        pos = self._pos
        if pos + n <= len(self._buf):  # within the chunk (most members, all padding): no generator
            self._pos = pos + n
            piece = self._buf[pos : pos + n]
            while fd is not None and piece:  # write(2) may take less than all
                piece = piece[os.write(fd, piece) :]
            return
        for piece in self._pieces(n):
            while fd is not None and piece:  # write(2) may take less than all
                piece = piece[os.write(fd, piece) :]

    def drain(self) -> None:
        """Read (and hash) what follows the end-of-archive blocks: the id is
        the digest of the whole stream, and a truncated gzip is noticed."""
        self._pos = len(self._buf)
        try:
            while True:
                self._fill()
                self._pos = len(self._buf)
        except _EndOfData as e:
            if e.cut:
                raise ImageError(f"truncated archive: {e}", REFUSED_HINT) from None
        if isinstance(self._decoded, _ZstdPipe):
            self._decoded.finish()
        if self.source.sha is not None:
            # the decompressor may stop at its end marker: the digest is of every byte
            while self.source.read(CHUNK):
                pass

    def close(self) -> None:
        self.sha.close()
        if isinstance(self._decoded, _ZstdPipe):
            self._decoded.close()


class _ZstdPipe:
    """``zstd -dc``: the compressed bytes go in from a thread, the tar comes
    out for the reader. A zstd that fails (corrupt or cut data) is reported
    when its output ends."""

    def __init__(self, src: _Source):
        import shutil
        import subprocess
        import threading

        exe = shutil.which("zstd")
        if exe is None:
            raise ImageError("this layer is zstd-compressed and the zstd program is missing",
                             "install it: apt-get install zstd")
        self._proc = subprocess.Popen([exe, "-dcq"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
        self._error: BaseException | None = None
        self._feeder = threading.Thread(target=self._feed, args=(src,), name="zstd-in", daemon=True)
        self._feeder.start()

    def _feed(self, src: _Source) -> None:
        try:
            while data := src.read(CHUNK):
                self._proc.stdin.write(data)
        except BrokenPipeError:
            pass  # zstd stopped reading: its exit status says why
        except BaseException as e:  # noqa: BLE001 - handed to the reading thread
            self._error = e
        finally:
            try:
                self._proc.stdin.close()
            except OSError:
                pass

    def read(self, n: int) -> bytes:
        data = self._proc.stdout.read(n)
        if not data:
            self.finish()
        return data

    def finish(self) -> None:
        self._feeder.join()
        if self._error is not None:
            raise self._error
        err = self._proc.stderr.read().decode(errors="replace").strip()
        if self._proc.wait() != 0:
            last = err.splitlines()[-1].split(" : ", 1)[-1] if err else "zstd failed"  # drop zstd's "/*stdin*\ : "
            raise ImageError(f"corrupt zstd data: {last}", REFUSED_HINT)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._feeder.join()
        for f in (self._proc.stdout, self._proc.stderr):
            f.close()


# -- reading members -------------------------------------------------------------


class _TarReader:
    """Turns the stream into :class:`Member` s (tar(5), pax(1), GNU long names)."""

    def __init__(self, inp: _Input, limits: Limits, *, whiteouts: bool = False):
        self._inp = inp
        self._limits = limits
        self._whiteouts = whiteouts
        # The pax global set without path/linkpath (which would rename every
        # member), kept as one dict and never copied per member: lookups try
        # the member's own pax first, then this.
        self._global: dict[str, str] = {}
        self._global_bytes = 0
        self._data_size = 0  # the current member's data not read yet ...
        self._data_left = 0  # ... and the same with the padding to a block
        self.last = "(start of archive)"
        self.count = 0

    def _block(self) -> bytes | None:
        """One header block, or None at the end-of-archive (zero) block."""
        try:
            buf = self._inp.read(BLOCK)
        except _EndOfData as e:
            if self.count == 0 and self._inp.total == 0 and not e.cut:
                raise ImageError("not a tar archive: the input is empty", REFUSED_HINT) from None
            raise ImageError(f"truncated archive: {e} after member {self.last!r}", REFUSED_HINT) from None
        if buf == _ZERO_BLOCK:
            return None
        return buf

    def _ext_data(self, info: Header) -> bytes:
        if info.size > self._limits.max_header_bytes:
            raise ImageError(
                f"corrupt archive: a {info.size}-byte extended header after member {self.last!r}",
                REFUSED_HINT,
            )
        try:
            data = self._inp.read(_padded(info.size))
        except _EndOfData as e:
            raise ImageError(f"truncated archive: {e} after member {self.last!r}", REFUSED_HINT) from None
        return data[: info.size]

    def next_member(self) -> Member | None:
        if self._data_left:
            self.copy_data(None)
        pax: dict[str, str] = {}
        long_name = long_link = None
        headers = 0
        while True:  # extended headers describe the member that follows them
            buf = self._block()
            if buf is None:
                if pax or long_name or long_link:
                    raise ImageError(f"corrupt archive: dangling extended header after {self.last!r}", REFUSED_HINT)
                return None
            try:
                info = parse_header(buf)
            except BadHeader as e:
                if self.count == 0 and not pax and long_name is None:
                    raise ImageError(
                        "not a tar archive (the first block is not a tar header)",
                        "give a .tar, .tar.gz, .tar.xz or .tar.bz2 file, e.g. from 'docker export'",
                    ) from None
                raise ImageError(f"corrupt archive: bad header after member {self.last!r} ({e})", REFUSED_HINT) from None
            if info.type not in _EXTENDED:
                break
            headers += 1
            if headers > self._limits.max_ext_headers:
                raise ImageError(
                    f"corrupt archive: more than {self._limits.max_ext_headers} extended headers in a row "
                    f"after member {self.last!r}",
                    "a real archive has at most a few before each member; is it an archive bomb?",
                )
            if info.type == GNUTYPE_LONGNAME:
                long_name = self._ext_data(info).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            elif info.type == GNUTYPE_LONGLINK:
                long_link = self._ext_data(info).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            elif info.type in _PAX_LOCAL:
                pax.update(parse_pax(self._ext_data(info), self.last))
            else:
                self._add_global(parse_pax(self._ext_data(info), self.last))
        return self._member(info, pax, long_name, long_link)

    def _add_global(self, records: dict[str, str]) -> None:
        for k, v in records.items():
            if k in ("path", "linkpath"):
                continue  # a global path/linkpath would rename every member: ignored
            if k.startswith("GNU.sparse."):
                raise refused(f"(global header after {self.last!r})", _SPARSE)
            old = self._global.get(k)
            self._global_bytes += len(k) + len(v) - (len(k) + len(old) if old is not None else 0)
            self._global[k] = v
        if self._global_bytes > self._limits.max_global_bytes:
            raise ImageError(
                f"corrupt archive: the pax global headers after member {self.last!r} hold more than "
                f"{self._limits.max_global_bytes} bytes",
                "a real archive has at most a few global records; is it an archive bomb?",
            )

    def _member(self, info: Header, pax: dict[str, str], long_name: str | None, long_link: str | None) -> Member:
        name = long_name if long_name is not None else info.name
        linkname = long_link if long_link is not None else info.linkname
        size, uid, gid, mtime_ns = info.size, info.uid, info.gid, info.mtime * 1_000_000_000
        glob = self._global
        if pax or glob:  # most members of a docker export have neither
            def get(key: str, default):
                return pax.get(key, glob.get(key, default))

            name = pax.get("path", name)
            linkname = pax.get("linkpath", linkname)
            try:
                size = int(get("size", size))
                uid = int(get("uid", uid))
                gid = int(get("gid", gid))
                mtime = get("mtime", None)
                if mtime is not None:
                    mtime_ns = _pax_mtime_ns(mtime)
            except ValueError:
                raise ImageError(f"corrupt archive: bad pax number for member {name!r}", REFUSED_HINT) from None
            if any(k.startswith("GNU.sparse.") for k in pax):
                raise refused(name, _SPARSE)
        if info.type == GNUTYPE_SPARSE:
            raise refused(name, _SPARSE)
        kind = info.type
        if kind == AREGTYPE and name.endswith("/"):
            kind = DIRTYPE  # old tars mark directories only by the slash
        self.count += 1
        self.last = name
        if self.count > self._limits.max_members:
            raise ImageError(
                f"the archive has more than {self._limits.max_members} members",
                "is it an archive bomb? raise Limits.max_members if it is genuine",
            )
        # ids are 32-bit and (uid_t)-1 means "leave unchanged" to chown(2)
        if size < 0 or not (0 <= uid < 2**32 - 1 and 0 <= gid < 2**32 - 1):
            raise ImageError(f"corrupt archive: bad size, uid or gid for member {name!r}", REFUSED_HINT)
        if kind in _REGULAR:
            if size > self._limits.max_file_bytes:
                raise refused(name, f"is {size} bytes, over the {self._limits.max_file_bytes}-byte limit per file")
            self._data_size, self._data_left = size, _padded(size)
        return Member(
            name=name,
            parts=member_parts(name, self._limits, whiteouts=self._whiteouts),
            type=kind,
            size=size,
            mode=info.mode & 0o7777,
            uid=uid,
            gid=gid,
            mtime_ns=mtime_ns,
            linkname=linkname,
            caps=_caps(pax, glob) if pax or glob else None,
        )

    def copy_data(self, fd: int | None) -> None:
        """The current member's data to ``fd`` (None: skip it), then its padding."""
        size, padded = self._data_size, self._data_left
        self._data_size = self._data_left = 0
        try:
            if fd is not None:
                self._inp.copy_to(fd, size)
                padded -= size
            self._inp.copy_to(None, padded)
        except _EndOfData as e:
            raise ImageError(f"truncated archive: {e} inside member {self.last!r}", REFUSED_HINT) from None


_SPARSE = "is a GNU sparse file, which is not supported (re-create the archive without --sparse)"


def _caps(pax: dict[str, str], glob: dict[str, str]) -> bytes | None:
    key = "SCHILY.xattr.security.capability"
    value = pax.get(key, glob.get(key))
    return value.encode("utf-8", "surrogateescape") if value else None  # binary, kept by surrogateescape


def _padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK


# -- the extractor -------------------------------------------------------------------


def extract_tar(
    raw: BinaryIO,
    dest: Path,
    *,
    limits: Limits = Limits(),
    same_owner: bool | None = None,
    progress: Callable[[int], None] | None = None,
    layer: bool = False,
) -> ExtractResult:
    """Unpack the tar stream ``raw`` (plain, gzip, xz, bzip2 or zstd; a pipe
    is fine: it is read once, front to back) into the empty directory ``dest``.

    Raises ImageError for anything unsafe, malformed or failing; the caller
    (ImageStore.create) then removes ``dest``. ``progress(n)`` is called with
    each number of raw bytes read. ``layer``: an image layer, whose
    whiteouts become overlay whiteouts, and whose raw (compressed) bytes are
    hashed too, for the manifest's digest; it may be empty.
    """
    inp = _Input(raw, limits, progress, hash_raw=layer)
    try:
        return _extract(inp, dest, limits, same_owner, layer)
    finally:
        inp.close()


def _extract(inp: _Input, dest: Path, limits: Limits, same_owner: bool | None, layer: bool) -> ExtractResult:
    reader = _TarReader(inp, limits, whiteouts=layer)
    skipped = file_bytes = whiteouts = 0
    with SafeTree(dest, same_owner=same_owner) as tree:
        while (m := reader.next_member()) is not None:
            try:
                deleted = whiteout_target(m.parts, m.name) if layer else None
                if deleted is not None:
                    if m.type not in _REGULAR:
                        raise refused(m.name, "is a whiteout that is not a plain file")
                    if len(deleted) < len(m.parts):
                        tree.make_opaque(deleted, m.name)
                    else:
                        tree.make_whiteout(deleted, m.name)
                    whiteouts += 1
                elif m.type in _REGULAR:
                    tree.write_file(m.parts, m.mode, m.uid, m.gid, m.mtime_ns, m.name, reader.copy_data, m.caps)
                    file_bytes += m.size
                elif m.type == DIRTYPE:
                    tree.make_dir(m.parts, m.mode, m.uid, m.gid, m.mtime_ns, m.name)
                elif m.type == SYMTYPE:
                    tree.make_symlink(m.parts, m.linkname, m.uid, m.gid, m.mtime_ns, m.name)
                elif m.type == LNKTYPE:
                    tree.make_hardlink(m.parts, member_parts(m.linkname, limits), m.name)
                elif m.type in _SPECIAL:
                    skipped += 1  # /dev is a fresh tmpfs at run time
                else:
                    raise refused(m.name, f"has an unsupported type {m.type!r}")
            except OSError as e:
                err = wrap_oserror(f"extracting {m.name!r}", e, path="")
                raise ImageError(err.message, err.hint) from e
            except (ValueError, OverflowError) as e:  # a value the kernel API cannot take
                raise ImageError(f"corrupt archive: member {m.name!r}: {e}", REFUSED_HINT) from e
        if reader.count == 0 and not layer:  # a layer may add nothing (docker build's WORKDIR /)
            raise ImageError("the archive is empty (no members)", "an image needs at least /bin/sh")
        try:
            tree.finish()
        except OSError as e:
            err = wrap_oserror("setting directory modes", e)
            raise ImageError(err.message, err.hint) from e
    inp.drain()
    return ExtractResult(
        digest="sha256:" + inp.sha.hexdigest(),
        compression=inp.compression,
        members=reader.count,
        bytes=inp.total,
        skipped_special=skipped,
        file_bytes=file_bytes,
        raw_digest="sha256:" + inp.source.sha.hexdigest() if inp.source.sha is not None else None,
        whiteouts=whiteouts,
    )

