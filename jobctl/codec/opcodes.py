"""What a row's pickle may make the C unpickler do, checked before it runs.

The C unpickler (CPython before 3.15) keeps its memo in an array that it grows to twice the
index a PUT or LONG_BINPUT names, and zero-fills: an 8-byte row writing at index 2**28 costs
4 GiB and 11 seconds before anything else happens. It also takes a counted argument's length
on trust. So before a row is decoded, its opcodes are read the way the unpickler will read
them, and a row is refused when

- it is larger than MAX_PICKLE_BYTES (16 MiB),
- it has more than MAX_OPERATIONS opcodes (each can make an object: a 4 MiB row of EMPTY_SET
  opcodes is 4 million sets, 900 MB),
- a memo index is not below both the row's length and MAX_OPERATIONS (a legitimate index
  counts the objects memoized before it, so it is less than either), or
- a counted argument is longer than what is left of the row.

Reading the opcodes with pickletools costs 130-180 us a row, five times the decoding. Most of it
is done here by one regular expression instead: it matches the opcodes the unpickler reads, in
runs of up to 4,096, at C speed (about 8 us for a typical protocol 5 row). Why that is exact:
every alternative of the pattern starts with its own opcode bytes and then consumes exactly the
argument the unpickler reads for that opcode -- fixed-size, up to a newline (two lines for
GLOBAL and INST), or a length below 256 followed by that many bytes, where the length byte
selects the one alternative of that length. So there is exactly one way for the pattern to match
from a position where an opcode starts, and it ends where the unpickler's next opcode starts.
The pattern leaves out the opcodes this module must look at -- STOP, FRAME, a counted argument
of 256 bytes or more, and PUT and LONG_BINPUT except with small indices (below 100,000 and
65,536: a memo array of at most 1.6 MB) -- and the loop below reads each of those, checks it, and
carries on after it. The unpickler stops at the first STOP, and so does the check.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING

from jobctl.errors import UnreadableState

if TYPE_CHECKING:
    from collections.abc import Callable

MAX_PICKLE_BYTES = 16 << 20  # a row larger than this is not decoded at all
MAX_OPERATIONS = 1 << 19  # opcodes in a row: 524,288 (at most about 120 MB of objects)

_STOP, _PUT, _LONG_BINPUT, _FRAME = 0x2E, 0x70, 0x72, 0x95
_COUNTED4_SIGNED = {0x58: False, 0x42: False, 0x54: True, 0x8B: True}  # BINUNICODE BINBYTES BINSTRING LONG4
_COUNTED8 = frozenset({0x8D, 0x8E, 0x96})  # BINUNICODE8 BINBYTES8 BYTEARRAY8
_RUN_LENGTH = 4096  # opcodes one match of the pattern reads at most

_matchers: tuple[Callable, Callable] | None = None
# Compiling the pattern takes 120-160 ms, more than `health` or `show` spends on everything
# else: the first rows a process checks are read opcode by opcode in Python instead (about
# 60 us a row), and the pattern is compiled once a process has checked this many.
_COMPILE_AFTER = 64
_checked = 0
_table: dict[int, tuple[str, int]] | None = None


# Opcodes by how often APScheduler's rows use them: the pattern tries them in this order.
_COMMON = b"\x94h\x8cK(pqMb}a)sN\x81guI]XR\x93V\x88ctd\x86\x89l\x85\x87\x8fJGC\x8a\x80"


def _build() -> tuple[Callable, Callable]:
    """(match a run of opcodes, list one entry per opcode of a run), from pickletools' table."""
    import pickletools

    widths = {pickletools.TAKEN_FROM_ARGUMENT1: 1, pickletools.TAKEN_FROM_ARGUMENT4: 4,
              pickletools.TAKEN_FROM_ARGUMENT4U: 4, pickletools.TAKEN_FROM_ARGUMENT8U: 8}

    def short(width: int) -> bytes:
        """A little-endian length below 256 in `width` bytes, then that many bytes."""
        zeros = b"\\x00" * (width - 1)
        return b"(?:" + b"|".join(b"\\x%02x%s(?s:.{%d})" % (n, zeros, n) for n in range(256)) + b")"

    noarg: list[int] = []
    argument: dict[int, bytes] = {}  # opcode -> the pattern of its argument
    for op in pickletools.opcodes:
        code = ord(op.code)
        if code in (_STOP, _PUT, _LONG_BINPUT, _FRAME):
            continue  # read by the loop in check()
        if op.arg is None:
            noarg.append(code)
        elif op.name in ("GLOBAL", "INST"):  # two lines: module and name
            argument[code] = b"[^\\n]*\\n[^\\n]*\\n"
        elif op.arg.n >= 0:
            argument[code] = b"(?s:.{%d})" % op.arg.n
        elif op.arg.n == pickletools.UP_TO_NEWLINE:
            argument[code] = b"[^\\n]*\\n"
        elif op.arg.n in widths:
            argument[code] = short(widths[op.arg.n])
        # an opcode of another kind is left out: check() refuses it
    order = sorted(argument, key=lambda code: (_COMMON.find(bytes([code])) % 256, code))
    opcode = [b"\\x%02x" % code + argument[code] for code in order]
    opcode += [b"r(?s:..)\\x00\\x00", b"p[0-9]{1,5}\\n"]  # LONG_BINPUT below 65,536, PUT below 100,000
    noargs = b"[" + b"".join(b"\\x%02x" % code for code in noarg) + b"]"
    run = b"(?:%s+|%s)" % (noargs, b"|".join(opcode))  # opcodes without arguments in a row, or one with its argument
    possessive = b"+" if sys.version_info >= (3, 11) else b""  # no backtracking state to keep
    runs = re.compile(b"%s{0,%d}%s" % (run, _RUN_LENGTH, possessive))
    one = re.compile(b"()(?:%s|%s)" % (noargs, b"|".join(opcode)))  # one opcode a match; findall lists b""
    return runs.match, one.findall


def check(data: bytes) -> None:
    """Refuse (UnreadableState) a pickle that would make the C unpickler allocate or work far
    beyond its size; see the module's docstring."""
    global _matchers
    size = len(data)
    if size > MAX_PICKLE_BYTES:
        raise UnreadableState(f"job state is {size:,} bytes, larger than the {MAX_PICKLE_BYTES:,} jobctl decodes")
    count = size > MAX_OPERATIONS  # a smaller row cannot have more opcodes than bytes
    memo_limit = min(size, MAX_OPERATIONS)
    if _matchers is None:
        global _checked
        _checked += 1
        if _checked <= _COMPILE_AFTER:
            _walk(data, size, memo_limit)
            return
        _matchers = _build()
    run, listed = _matchers
    operations = 0
    pos = 0
    while True:
        end = run(data, pos).end()
        if count and end > pos:
            operations += len(listed(data, pos, end))
            if operations > MAX_OPERATIONS:
                raise UnreadableState(f"job state has more than {MAX_OPERATIONS:,} pickle operations")
        ran, pos = end > pos, end
        if pos >= size:
            raise UnreadableState("cannot decode job state: pickle data was truncated")
        op = data[pos]
        operations += 1
        if op == _STOP:
            return  # where the unpickler stops
        if op == _FRAME:
            length, pos = int.from_bytes(data[pos + 1 : pos + 9], "little"), pos + 9
            if length > size - pos:
                raise UnreadableState("cannot decode job state: pickle data was truncated")
        elif op in _COUNTED4_SIGNED or op in _COUNTED8:
            width = 8 if op in _COUNTED8 else 4
            length = int.from_bytes(data[pos + 1 : pos + 1 + width], "little", signed=_COUNTED4_SIGNED.get(op, False))
            pos += 1 + width
            if length < 0 or length > size - pos:
                raise UnreadableState("cannot decode job state: pickle data was truncated")
            pos += length
        elif op == _LONG_BINPUT:
            _memo_index(int.from_bytes(data[pos + 1 : pos + 5], "little"), memo_limit)
            pos += 5
        elif op == _PUT:
            newline = data.find(b"\n", pos + 1)
            if newline < 0:
                raise UnreadableState("cannot decode job state: pickle data was truncated")
            try:
                index = int(data[pos + 1 : newline])  # as the unpickler reads it (PyLong_FromString)
            except ValueError:
                raise UnreadableState("cannot decode job state: malformed PUT") from None
            _memo_index(index, memo_limit)
            pos = newline + 1
        elif ran:
            operations -= 1
            continue  # a run also stops after _RUN_LENGTH opcodes: match on from here
        else:
            raise UnreadableState(f"cannot decode job state: unexpected opcode {bytes([op])!r} at byte {pos}")
        if count and operations > MAX_OPERATIONS:
            raise UnreadableState(f"job state has more than {MAX_OPERATIONS:,} pickle operations")


def _opcode_table() -> dict[int, tuple[str, int]]:
    """Each opcode's argument, from pickletools' table: ("fixed", n), ("line", 1 or 2 lines),
    or ("counted", width in bytes, negative when the length is signed)."""
    import pickletools

    widths = {pickletools.TAKEN_FROM_ARGUMENT1: 1, pickletools.TAKEN_FROM_ARGUMENT4: -4,
              pickletools.TAKEN_FROM_ARGUMENT4U: 4, pickletools.TAKEN_FROM_ARGUMENT8U: 8}
    table: dict[int, tuple[str, int]] = {}
    for op in pickletools.opcodes:
        code = ord(op.code)
        if op.arg is None:
            table[code] = ("fixed", 0)
        elif op.name in ("GLOBAL", "INST"):
            table[code] = ("line", 2)
        elif op.arg.n >= 0:
            table[code] = ("fixed", op.arg.n)
        elif op.arg.n == pickletools.UP_TO_NEWLINE:
            table[code] = ("line", 1)
        elif op.arg.n in widths:
            table[code] = ("counted", widths[op.arg.n])
    table[_FRAME] = ("fixed", 8)  # its length is checked, and the frame's opcodes read on
    return table


def _walk(data: bytes, size: int, memo_limit: int) -> None:
    """check(), one opcode at a time in Python: the same refusals, without the pattern."""
    global _table
    if _table is None:
        _table = _opcode_table()
    table = _table
    count = size > MAX_OPERATIONS
    pos = operations = 0
    while True:
        if pos >= size:
            raise UnreadableState("cannot decode job state: pickle data was truncated")
        op = data[pos]
        operations += 1
        if count and operations > MAX_OPERATIONS:
            raise UnreadableState(f"job state has more than {MAX_OPERATIONS:,} pickle operations")
        if op == _STOP:
            return
        kind = table.get(op)
        if kind is None:
            raise UnreadableState(f"cannot decode job state: unexpected opcode {bytes([op])!r} at byte {pos}")
        how, n = kind
        start, pos = pos, pos + 1
        if how == "fixed":
            if op == _FRAME and int.from_bytes(data[pos : pos + 8], "little") > size - pos - 8:
                raise UnreadableState("cannot decode job state: pickle data was truncated")
            if op == _LONG_BINPUT:
                _memo_index(int.from_bytes(data[pos : pos + 4], "little"), memo_limit)
            pos += n
        elif how == "line":
            for _ in range(n):
                newline = data.find(b"\n", pos)
                if newline < 0:
                    raise UnreadableState("cannot decode job state: pickle data was truncated")
                if op == _PUT:
                    try:
                        index = int(data[pos:newline])
                    except ValueError:
                        raise UnreadableState("cannot decode job state: malformed PUT") from None
                    _memo_index(index, memo_limit)
                pos = newline + 1
        else:
            width = abs(n)
            length = int.from_bytes(data[pos : pos + width], "little", signed=n < 0)
            pos += width
            if length < 0 or length > size - pos:
                raise UnreadableState("cannot decode job state: pickle data was truncated")
            pos += length
        if pos > size:
            raise UnreadableState(f"cannot decode job state: pickle data was truncated after the opcode at byte {start}")


def _memo_index(index: int, limit: int) -> None:
    if not 0 <= index < limit:
        raise UnreadableState(f"its pickle writes the memo at index {index:,}, past what the row could hold "
                              "(a crafted pickle?)")
