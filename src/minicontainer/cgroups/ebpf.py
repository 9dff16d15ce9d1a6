"""A tiny assembler for eBPF: just the instructions a device filter needs.

cgroup v2 has no ``devices.allow`` file. Which device nodes a cgroup's
processes may open or create is decided by a program of type
``BPF_PROG_TYPE_CGROUP_DEVICE`` that the kernel runs on every such access
(the cgroup-v2 docs, "Device controller"; devices.py writes the program).

eBPF is not the classic BPF of seccomp filters (security/bpf.py): it has
eleven 64-bit registers instead of one accumulator, and each instruction
is eight bytes (linux/bpf.h, ``struct bpf_insn``)::

    u8  code      class | operation | source (K: the immediate, X: a register)
    u8  regs      dst_reg in the low 4 bits, src_reg in the high 4 (little-endian)
    s16 off       a jump distance in instructions, or a memory offset
    s32 imm       the immediate

At entry ``r1`` points to the program's context, here
``struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }``;
the program leaves its verdict in ``r0`` and ends with ``exit``. A jump
skips ``off`` instructions after the next one, so ``off`` is counted from
the instruction that follows the jump. The "w" registers are the low 32
bits of the "r" registers: an ALU32 operation zero-extends its result.

This module encodes instructions and resolves labels to jump offsets, and
prints a program back in the kernel verifier's notation (``disassemble``),
which is what --explain and the tests show.
"""

from __future__ import annotations

import struct
import sys
from minicontainer.records import dataclass, field  # dataclasses without exec (records.py, issue 15)

# Instruction classes, sizes, modes, operations (linux/bpf_common.h, linux/bpf.h).
BPF_LDX, BPF_ALU, BPF_JMP = 0x01, 0x04, 0x05
BPF_W, BPF_MEM = 0x00, 0x60
BPF_K, BPF_X = 0x00, 0x08
BPF_AND, BPF_RSH, BPF_MOV = 0x50, 0x70, 0xB0
BPF_JEQ, BPF_JNE, BPF_EXIT = 0x10, 0x50, 0x90

LDX_MEM_W = BPF_LDX | BPF_MEM | BPF_W  # 0x61  dst = *(u32 *)(src + off)
AND32_K = BPF_ALU | BPF_AND | BPF_K  # 0x54    w_dst &= imm
RSH32_K = BPF_ALU | BPF_RSH | BPF_K  # 0x74    w_dst >>= imm
MOV32_K = BPF_ALU | BPF_MOV | BPF_K  # 0xb4    w_dst = imm
MOV32_X = BPF_ALU | BPF_MOV | BPF_X  # 0xbc    w_dst = w_src
JEQ_K = BPF_JMP | BPF_JEQ | BPF_K  # 0x15      if dst == imm goto +off
JNE_K = BPF_JMP | BPF_JNE | BPF_K  # 0x55      if dst != imm goto +off
JNE_X = BPF_JMP | BPF_JNE | BPF_X  # 0x5d      if dst != src goto +off
EXIT = BPF_JMP | BPF_EXIT  # 0x95              return r0

BPF_MAXINSNS = 4096  # what an unprivileged loader may use; plenty for a device list

_LITTLE = sys.byteorder == "little"
_INSN = struct.Struct("<BBhi" if _LITTLE else ">BBhi")
INSN_SIZE = _INSN.size  # 8

R0, R1, R2, R3, R4, R5 = range(6)


class EbpfError(ValueError):
    """The program cannot be encoded (a bad register, a jump too far, too long)."""


class Label:
    """A jump target, placed once; compared by identity, as each is its own
    place in the program (a plain class: a dataclass with eq=False is made
    by dataclasses itself, ~9 ms of every run's imports)."""

    def __init__(self, name: str = "", index: int | None = None):
        self.name, self.index = name, index

    def __repr__(self):
        return f"Label(name={self.name!r}, index={self.index!r})"


@dataclass
class Insn:
    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    target: Label | None = None  # for jumps: resolved into ``off``


def _reg(r: int) -> int:
    if not 0 <= r <= 10:
        raise EbpfError(f"no register r{r} (eBPF has r0..r10)")
    return r


def _imm(v: int) -> int:
    if not -(1 << 31) <= v < (1 << 32):
        raise EbpfError(f"immediate {v} does not fit in 32 bits")
    return v - (1 << 32) if v >= (1 << 31) else v  # stored as s32


def encode(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One instruction, as the kernel reads it."""
    if not -(1 << 15) <= off < (1 << 15):
        raise EbpfError(f"offset {off} does not fit in 16 bits")
    regs = (_reg(src) << 4 | _reg(dst)) if _LITTLE else (_reg(dst) << 4 | _reg(src))
    return _INSN.pack(code, regs, off, _imm(imm))


@dataclass
class Assembler:
    insns: list[Insn] = field(default_factory=list)

    def _add(self, insn: Insn) -> None:
        _reg(insn.dst), _reg(insn.src), _imm(insn.imm)  # refused where it is written, not at the end
        self.insns.append(insn)

    def label(self, name: str = "") -> Label:
        return Label(name)

    def place(self, label: Label) -> None:
        if label.index is not None:
            raise EbpfError(f"label {label.name or '?'} placed twice")
        label.index = len(self.insns)

    # -- the instructions ---------------------------------------------------------
    def ldx_w(self, dst: int, src: int, off: int) -> None:
        """dst = *(u32 *)(src + off)"""
        self._add(Insn(LDX_MEM_W, dst, src, off))

    def and32(self, dst: int, imm: int) -> None:
        self._add(Insn(AND32_K, dst, imm=imm))

    def rsh32(self, dst: int, imm: int) -> None:
        self._add(Insn(RSH32_K, dst, imm=imm))

    def mov32(self, dst: int, imm: int) -> None:
        self._add(Insn(MOV32_K, dst, imm=imm))

    def mov32_reg(self, dst: int, src: int) -> None:
        self._add(Insn(MOV32_X, dst, src))

    def jeq(self, dst: int, imm: int, target: Label) -> None:
        self._add(Insn(JEQ_K, dst, imm=imm, target=target))

    def jne(self, dst: int, imm: int, target: Label) -> None:
        self._add(Insn(JNE_K, dst, imm=imm, target=target))

    def jne_reg(self, dst: int, src: int, target: Label) -> None:
        self._add(Insn(JNE_X, dst, src, target=target))

    def exit(self) -> None:
        self._add(Insn(EXIT))

    # -- output ------------------------------------------------------------------
    def assemble(self) -> bytes:
        if not self.insns:
            raise EbpfError("an empty program")
        if len(self.insns) > BPF_MAXINSNS:
            raise EbpfError(f"{len(self.insns)} instructions: more than {BPF_MAXINSNS}")
        if self.insns[-1].code != EXIT:
            raise EbpfError("a program must end with exit (the verifier refuses to fall off the end)")
        out = []
        for i, insn in enumerate(self.insns):
            off = insn.off
            if insn.target is not None:
                if insn.target.index is None:
                    raise EbpfError(f"jump to label {insn.target.name or '?'}, which was never placed")
                off = insn.target.index - (i + 1)
                if off < 0:
                    raise EbpfError("a backward jump (a device filter needs none)")
            out.append(encode(insn.code, insn.dst, insn.src, off, insn.imm))
        return b"".join(out)


def decode(program: bytes) -> list[tuple[int, int, int, int, int]]:
    """(code, dst, src, off, imm) for each instruction."""
    if len(program) % INSN_SIZE:
        raise EbpfError(f"{len(program)} bytes is not a whole number of {INSN_SIZE}-byte instructions")
    out = []
    for i in range(0, len(program), INSN_SIZE):
        code, regs, off, imm = _INSN.unpack_from(program, i)
        dst, src = (regs & 0xF, regs >> 4) if _LITTLE else (regs >> 4, regs & 0xF)
        out.append((code, dst, src, off, imm))
    return out


def disassemble(program: bytes) -> list[str]:
    """The program in the notation of the kernel verifier's log (and bpftool)."""
    lines = []
    for i, (code, dst, src, off, imm) in enumerate(decode(program)):
        if code == LDX_MEM_W:
            text = f"r{dst} = *(u32 *)(r{src} {'-' if off < 0 else '+'} {abs(off)})"
        elif code == AND32_K:
            text = f"w{dst} &= {imm & 0xFFFFFFFF:#x}"
        elif code == RSH32_K:
            text = f"w{dst} >>= {imm}"
        elif code == MOV32_K:
            text = f"w{dst} = {imm}"
        elif code == MOV32_X:
            text = f"w{dst} = w{src}"
        elif code in (JEQ_K, JNE_K):
            op = "==" if code == JEQ_K else "!="
            text = f"if r{dst} {op} {imm:#x} goto pc+{off}"
        elif code == JNE_X:
            text = f"if r{dst} != r{src} goto pc+{off}"
        elif code == EXIT:
            text = "exit"
        else:
            text = f"(code {code:#04x})"
        lines.append(f"{i:3}: {text}")
    return lines
