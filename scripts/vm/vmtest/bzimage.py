"""Extract the uncompressed ``vmlinux`` ELF from a bzImage (``vmlinuz``).

Why: qemu can boot an ELF vmlinux directly through its PVH entry point,
which skips the kernel's self-decompression. Under TCG (no KVM) that
decompression is emulated instruction by instruction and costs seconds on
every boot; doing it once on the host makes boots much faster.

Layout, from the kernel's Documentation/arch/x86/boot.rst ("The Linux/x86
Boot Protocol"): the real-mode setup code occupies ``setup_sects + 1``
512-byte sectors; the setup header at offset 0x1f1 carries, from protocol
2.08 on, ``payload_offset`` and ``payload_length``, which locate the
compressed kernel inside the protected-mode part that follows the setup.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib

# Offsets inside the setup header (boot.rst, "THE REAL-MODE KERNEL HEADER").
_SETUP_SECTS = 0x1F1
_HEADER_MAGIC = 0x202  # "HdrS"
_VERSION = 0x206
_PAYLOAD_OFFSET = 0x248
_PAYLOAD_LENGTH = 0x24C

ELF_MAGIC = b"\x7fELF"


class BzImageError(ValueError):
    """The file is not a bzImage we can unpack."""


def _decompress(payload: bytes) -> bytes:
    """Decompress the payload according to its magic bytes."""
    if payload.startswith(b"\xfd7zXZ\x00"):
        # The xz stream is followed by the 4-byte uncompressed size the
        # kernel's own decompressor reads; a decompressor object stops at the
        # end of the stream and leaves that trailer in ``unused_data``.
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
    if payload.startswith(b"\x1f\x8b"):
        # wbits=31: a gzip header; the object stops at the stream's end.
        return zlib.decompressobj(wbits=31).decompress(payload)
    if payload.startswith(b"\x5d\x00\x00"):
        return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(payload)
    if payload.startswith(b"BZh"):
        return bz2.BZ2Decompressor().decompress(payload)
    raise BzImageError(
        f"unsupported kernel compression (payload starts with {payload[:6].hex()}); "
        "Python's standard library reads xz, gzip, lzma and bzip2 only"
    )


def extract_vmlinux(image: bytes) -> bytes:
    """Return the ELF vmlinux inside ``image`` (the contents of a vmlinuz)."""
    if len(image) < 0x250 or image[_HEADER_MAGIC:_HEADER_MAGIC + 4] != b"HdrS":
        raise BzImageError("no 'HdrS' setup header at 0x202: not an x86 bzImage")
    (version,) = struct.unpack_from("<H", image, _VERSION)
    if version < 0x0208:
        raise BzImageError(f"boot protocol {version >> 8}.{version & 0xff} predates payload_offset (2.08)")
    setup_sects = image[_SETUP_SECTS] or 4  # 0 means 4, for very old kernels
    protected_mode_start = (setup_sects + 1) * 512
    offset, length = struct.unpack_from("<II", image, _PAYLOAD_OFFSET)
    start = protected_mode_start + offset
    payload = image[start:start + length]
    if len(payload) != length:
        raise BzImageError("payload_offset/payload_length point past the end of the file")
    vmlinux = _decompress(payload)
    if not vmlinux.startswith(ELF_MAGIC):
        raise BzImageError("the decompressed payload is not an ELF file")
    return vmlinux
