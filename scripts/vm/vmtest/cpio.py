"""Write a "newc" (SVR4, no CRC) cpio archive: the format of an initramfs.

The kernel unpacks it into the rootfs tmpfs before running ``/init``
(Documentation/driver-api/early-userspace/buffer-format.rst). Each entry is
a 110-byte ASCII header of 13 hexadecimal fields, the NUL-terminated name,
padding to 4 bytes, the data, padding to 4 bytes; a ``TRAILER!!!`` entry
ends the archive. We write it ourselves so the image does not depend on
the host's cpio or on file ownership in the cache directory: every entry is
owned by root.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


@dataclass
class CpioWriter:
    """Accumulate entries in memory (an initramfs is a few MiB)."""

    _out: bytearray = field(default_factory=bytearray)
    _ino: int = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", nlink: int = 1) -> None:
        encoded = name.lstrip("/").encode() + b"\0"
        fields = [
            self._ino,  # c_ino
            mode,  # c_mode: file type and permissions
            0, 0,  # c_uid, c_gid: root
            nlink,
            0,  # c_mtime: 0 keeps the archive reproducible
            len(data),  # c_filesize
            0, 0, 0, 0,  # c_devmajor/minor (of the fs), c_rdevmajor/minor
            len(encoded),  # c_namesize, NUL included
            0,  # c_check: unused in "newc"
        ]
        self._ino += 1
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._out += header + encoded + _pad4(len(header) + len(encoded))
        self._out += data + _pad4(len(data))

    def directory(self, name: str, perm: int = 0o755) -> None:
        self._entry(name, stat.S_IFDIR | perm, nlink=2)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def finish(self) -> bytes:
        self._ino = 0
        self._entry("TRAILER!!!", 0)
        return bytes(self._out)
