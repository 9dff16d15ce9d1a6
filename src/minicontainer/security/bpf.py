"""A tiny assembler for classic BPF, the language of seccomp filters.

A seccomp filter is a program the kernel runs on every system call
(seccomp(2), "Filter programs"). It reads a ``struct seccomp_data``::

    offset 0   int   nr                   the system call number
    offset 4   u32   arch                 AUDIT_ARCH_* of the calling convention
    offset 8   u64   instruction_pointer
    offset 16  u64   args[6]              the raw register values

and must end in ``ret`` with a verdict (allow, errno, kill...). Classic BPF
has one 32-bit accumulator, loads of 32-bit words at fixed offsets,
forward-only jumps whose two 8-bit offsets say how many instructions to
skip when the test is true (``jt``) or false (``jf``), and at most 4096
instructions. Forward-only means every program terminates, which is why
the kernel can run it safely.

A 64-bit argument is two words: on the little-endian machines we support
(x86_64, aarch64) the low half is at ``16 + 8*i`` and the high half at
``20 + 8*i``.

This module only encodes instructions and resolves labels to jump offsets;
what the program says is decided in seccomp.py.
"""

from __future__ import annotations

import struct
from minicontainer.records import dataclass, field  # dataclasses without exec (records.py, issue 15)

# Instruction classes and fields (linux/bpf_common.h).
BPF_LD, BPF_ALU, BPF_JMP, BPF_RET = 0x00, 0x04, 0x05, 0x06
BPF_W, BPF_ABS, BPF_K = 0x00, 0x20, 0x00
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET = 0x00, 0x10, 0x20, 0x30, 0x40
BPF_AND = 0x50

LD_ABS = BPF_LD | BPF_W | BPF_ABS  # A = data[k] (32-bit)
JEQ = BPF_JMP | BPF_JEQ | BPF_K  # A == k ?
JGT = BPF_JMP | BPF_JGT | BPF_K  # A >  k ? (unsigned)
JGE = BPF_JMP | BPF_JGE | BPF_K  # A >= k ? (unsigned)
JSET = BPF_JMP | BPF_JSET | BPF_K  # A & k != 0 ?
AND = BPF_ALU | BPF_AND | BPF_K  # A &= k
RET = BPF_RET | BPF_K  # return k

BPF_MAXINSNS = 4096  # the kernel refuses longer programs (EINVAL)

# struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; } in host byte order.
_INSN = struct.Struct("=HBBI")
INSN_SIZE = _INSN.size

# seccomp_data offsets.
OFF_NR = 0
OFF_ARCH = 4


def arg_lo(i: int) -> int:
    """Offset of the low 32 bits of argument ``i`` (little-endian)."""
    return 16 + 8 * i


def arg_hi(i: int) -> int:
    return 20 + 8 * i


class BpfError(ValueError):
    """The program cannot be encoded (too long, a jump too far)."""


@dataclass(eq=False)
class Label:
    """A position in the program, placed with :meth:`Assembler.place`."""

    name: str = ""
    index: int | None = None


@dataclass
class Insn:
    code: int
    k: int = 0
    jt: object = 0  # Label or relative int
    jf: object = 0


@dataclass
class Assembler:
    insns: list[Insn] = field(default_factory=list)

    # -- emitting ------------------------------------------------------------
    def ld(self, offset: int) -> None:
        self.insns.append(Insn(LD_ABS, offset))

    def and_(self, mask: int) -> None:
        self.insns.append(Insn(AND, mask & 0xFFFFFFFF))

    def jump(self, code: int, k: int, jt: "Label | int" = 0, jf: "Label | int" = 0) -> None:
        self.insns.append(Insn(code, k & 0xFFFFFFFF, jt, jf))

    def ret(self, value: int) -> None:
        self.insns.append(Insn(RET, value & 0xFFFFFFFF))

    def place(self, label: Label) -> None:
        if label.index is not None:
            raise BpfError(f"label {label.name!r} placed twice")
        label.index = len(self.insns)

    # -- output --------------------------------------------------------------
    def resolve(self) -> list[tuple[int, int, int, int]]:
        """(code, jt, jf, k) tuples with labels turned into 8-bit skips."""
        if len(self.insns) > BPF_MAXINSNS:
            raise BpfError(f"the filter has {len(self.insns)} instructions; the kernel accepts at most {BPF_MAXINSNS}")
        out = []
        for i, ins in enumerate(self.insns):
            out.append((ins.code, self._offset(i, ins.jt), self._offset(i, ins.jf), ins.k))
        return out

    def _offset(self, i: int, target: "Label | int") -> int:
        if isinstance(target, Label):
            if target.index is None:
                raise BpfError(f"label {target.name!r} was never placed")
            off = target.index - (i + 1)
        else:
            off = target
        if not 0 <= off <= 255:
            raise BpfError(f"jump at instruction {i} spans {off} instructions; classic BPF allows 0..255")
        return off

    def assemble(self) -> bytes:
        return b"".join(_INSN.pack(code, jt, jf, k) for code, jt, jf, k in self.resolve())


def disassemble(program: bytes) -> list[tuple[int, int, int, int]]:
    """bytes -> (code, jt, jf, k) tuples (tests and --explain use it)."""
    if len(program) % INSN_SIZE:
        raise BpfError("a BPF program is a whole number of 8-byte instructions")
    return [_INSN.unpack_from(program, off) for off in range(0, len(program), INSN_SIZE)]


_NAMES = {LD_ABS: "ld", JEQ: "jeq", JGT: "jgt", JGE: "jge", JSET: "jset", AND: "and", RET: "ret"}


def format_program(program: bytes) -> list[str]:
    """A human-readable listing, one line per instruction."""
    lines = []
    for i, (code, jt, jf, k) in enumerate(disassemble(program)):
        op = _NAMES.get(code, f"op{code:#x}")
        if op == "ld":
            lines.append(f"{i:4}: ld   [{k}]")
        elif op in ("ret", "and"):
            lines.append(f"{i:4}: {op:4} #{k:#x}")
        else:
            lines.append(f"{i:4}: {op:4} #{k:#x}, true->{i + 1 + jt}, false->{i + 1 + jf}")
    return lines
