"""Where the floats are in a model file, and where to cut it (spec: docs/store.md, "Tensor-aware
chunking").

`detect_layout(read_at, size)` recognises a file from its first bytes and a few random-access
reads, and describes it as regions that cover the file contiguously, in order, from 0 to its
size (no region is empty):

    Region(offset, size, width, name, dtype)

`width` is the element width in bytes of a float payload worth byte-grouping (F32: 4, F16 and
BF16: 2) and 0 for everything else (headers, metadata, integers, bool, F64, quantized blocks,
compressed members, padding). Formats:

- safetensors: u64 LE header length n, n bytes of JSON (`dtype`, `shape`, `data_offsets` per
  tensor, optional `__metadata__`), then the data. The header (8 + n bytes) is the region
  `__header__`; each tensor is a region named after it. Checked: the JSON is an object of
  well-formed entries with no duplicate names, every tensor lies within the file, no two
  overlap, and a tensor of a known dtype has exactly prod(shape) * element size bytes. Bytes no
  tensor claims become width-0 regions.
- numpy `.npy`: magic `\\x93NUMPY`, version, header length (u16 in 1.0, u32 in 2.0/3.0), a
  Python-literal dict `{'descr', 'fortran_order', 'shape'}`, then the data (prod(shape) *
  itemsize bytes). `__header__`, then the array (`<f4`/`>f4`: 4, `<f2`: 2; any other descr: 0).
- `.npz` (a zip of `.npy` members) and PyTorch zip checkpoints (`torch.save`: a zip whose
  members `<archive>/data/<key>` hold raw tensor storages, stored and 64-byte aligned). Only
  STORED members can hold float regions (a deflated member is opaque bytes). For torch, the
  storage types come from `data.pkl` read as a stream of pickle opcodes (`pickletools.genops`,
  a small stack simulation of GLOBAL/memo/TUPLE/BINPERSID; nothing is ever unpickled): the
  persistent id `('storage', torch.FloatStorage, key, location, numel)` makes member
  `data/<key>` F32 if its size is numel * 4 (HalfStorage F16, BFloat16Storage BF16); anything
  unsure is width 0. Zip local headers, the pickle and the central directory are width-0 gaps.
- GGUF (v2, v3): the key/value metadata is walked to reach the tensor infos; F32, F16 and BF16
  tensors are regions (quantized tensors lie in width-0 gaps), at data start (aligned to
  `general.alignment`, default 32) + offset.

A file is recognised only if it has at least one float region: anything else is None and is
chunked as before (content-defined). Damaged, truncated or hostile input is None, never an
exception (only `read_at`'s own I/O errors propagate); a header bigger than 32 MiB is None,
so memory stays bounded.

`tensor_cuts(regions, target)` turns a layout into the pieces the store chunks separately:

    Piece(offset, size, width, key, cdc)

1. Width-0 regions of at most min(4 KiB, target) bytes in all just before a float region
   join its first piece if their size is a multiple of its width (a zip member's local
   header goes with its data, a scalar int tensor with the next tensor). Otherwise a width-0
   region is one piece; if it is larger than 4 * target the piece says `cdc=True` and the
   caller cuts it with the content-defined chunker. Consecutive width-0 regions of at most
   `target` bytes are merged up to `target`. The file's first region (its header) always
   stands alone.
2. A float region larger than 2 * target is split into n = ceil(size / target) near-equal
   pieces at element boundaries: piece k ends at floor(k * elements / n) * width (the last
   ends at the region's end).
3. A float region of more than target (up to 2 * target) bytes is one piece.
4. Consecutive float regions of at most `target` bytes and the same width are merged up to
   `target` bytes, so thousands of tiny tensors are not thousands of tiny chunks; width-0
   regions of at most 4 KiB in all between two of them (a zip local header, an .npy header,
   a scalar int tensor) join the run, if the next float region starts at a multiple of the
   width from the run's start (byte planes stay aligned).
5. Keys name a piece for delta matching across versions: `<name>#<k>` for piece k of a
   region, `<first name>+<count>#0` for a merged run of `count` regions. The same layout
   always gives the same pieces; a new version that changes only tensor values gives the same
   layout, hence the same pieces and keys, so piece i of one version is matched to piece i of
   the other by key.
"""

from __future__ import annotations

import ast
import json
import os
import pickletools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gitext.formats.manifest import MAX_CHUNK_LIMIT

ReadAt = Callable[[int, int], bytes]

MAX_HEADER = 32 << 20     # largest header (JSON, pickle, central directory, GGUF metadata) read
GAP_ABSORB = 4096         # a width-0 gap this small joins a run of small float regions
HEADER = "__header__"

# Element sizes of safetensors dtypes; the float ones worth byte-grouping have a width.
_ST_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
             "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
             "F8_E8M0": 1, "C64": 8}
_WIDTHS = {"F32": 4, "F16": 2, "BF16": 2}
_TORCH_STORAGES = {"FloatStorage": ("F32", 4), "HalfStorage": ("F16", 2),
                   "BFloat16Storage": ("BF16", 2)}


@dataclass(frozen=True)
class Region:
    """Bytes [offset, offset + size) of a file: a tensor called `name` of `dtype`, grouped by
    `width` bytes (0: not a float payload worth grouping)."""

    offset: int
    size: int
    width: int
    name: str
    dtype: str


@dataclass(frozen=True)
class Piece:
    """Bytes [offset, offset + size) stored as one chunk (or, if `cdc`, chunked by content);
    `key` names it stably across versions of the file, for delta matching."""

    offset: int
    size: int
    width: int
    key: str
    cdc: bool = False


class _Bad(Exception):
    """Not a file of the format (or a damaged one): the parser's answer is None."""


def detect_layout(read_at: ReadAt, size: int, name_hint: str = "") -> list[Region] | None:
    """The regions of a file of `size` bytes read through `read_at(offset, n)`, or None if it is
    not a recognised format with at least one float payload. Never raises but for read_at's
    own errors. `name_hint` (the path) is not needed: formats are recognised by content."""
    del name_hint
    if size < 8:
        return None
    try:
        head = _read(read_at, 0, min(size, 16))
        if head.startswith(b"\x93NUMPY"):
            found = _npy(read_at, 0, size, "")
        elif head.startswith(b"PK\x03\x04"):
            found = _zip(read_at, size)
        elif head.startswith(b"GGUF"):
            found = _gguf(read_at, size)
        elif head[8:9] == b"{":
            found = _safetensors(read_at, size)
        else:
            return None
        layout = _fill(found, size)
    except _Bad:
        return None
    if not any(r.width for r in layout):
        return None
    return layout


def detect_path(path: str | os.PathLike[str]) -> list[Region] | None:
    """detect_layout of a file on disk (positional reads; OSError propagates)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        return detect_layout(lambda off, n: os.pread(fd, n, off), size, os.fspath(path))
    finally:
        os.close(fd)


# -- shared --------------------------------------------------------------------------------------
def _read(read_at: ReadAt, offset: int, n: int) -> bytes:
    data = read_at(offset, n)
    if len(data) != n:
        raise _Bad("short read")
    return data


def _fill(found: list[Region], size: int) -> list[Region]:
    """The layout: `found` sorted, checked (within the file, no overlap), empty ones dropped, and
    the bytes between them as width-0 regions named after what follows them (`__tail__` last)."""
    out: list[Region] = []
    pos = 0
    for r in sorted((r for r in found if r.size > 0), key=lambda r: r.offset):
        if r.offset < pos or r.offset + r.size > size:
            raise _Bad("overlapping or outside the file")
        if r.offset > pos:
            out.append(Region(pos, r.offset - pos, 0, f"{r.name}/pre", ""))
        out.append(r)
        pos = r.offset + r.size
    if pos < size:
        out.append(Region(pos, size - pos, 0, "__tail__", ""))
    return out


def _prod(shape: Any) -> int:
    if not isinstance(shape, (list, tuple)):
        raise _Bad("shape")
    n = 1
    for d in shape:
        if not isinstance(d, int) or isinstance(d, bool) or d < 0:
            raise _Bad("shape")
        n *= d
        if n > 1 << 62:
            raise _Bad("shape")
    return n


# -- safetensors ---------------------------------------------------------------------------------
def _safetensors(read_at: ReadAt, size: int) -> list[Region]:
    (n,) = struct.unpack("<Q", _read(read_at, 0, 8))
    if n < 2 or n > MAX_HEADER or 8 + n > size:
        raise _Bad("header length")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):
            raise _Bad("duplicate key")
        return out

    try:
        header = json.loads(_read(read_at, 8, n).decode("utf-8"), object_pairs_hook=no_duplicates)
    except (ValueError, RecursionError) as e:
        raise _Bad("not JSON") from e
    if not isinstance(header, dict):
        raise _Bad("header is not an object")
    start = 8 + n
    regions = [Region(0, start, 0, HEADER, "")]
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict):
                raise _Bad("metadata")
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("dtype"), str):
            raise _Bad("tensor entry")
        offsets = entry.get("data_offsets")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise _Bad("data_offsets")
        begin, end = offsets
        if not 0 <= begin <= end or start + end > size:
            raise _Bad("data_offsets outside the file")
        dtype = entry["dtype"]
        count = _prod(entry.get("shape"))
        if dtype in _ST_SIZES and count * _ST_SIZES[dtype] != end - begin:
            raise _Bad("tensor size")
        regions.append(Region(start + begin, end - begin, _WIDTHS.get(dtype, 0), name, dtype))
    return regions


# -- numpy ---------------------------------------------------------------------------------------
_NPY_FLOATS = {"f4": ("F32", 4), "f2": ("F16", 2), "f8": ("F64", 0)}


def _npy(read_at: ReadAt, base: int, size: int, prefix: str) -> list[Region]:
    """An .npy at `base`, `size` bytes long (a whole file, or a stored .npz member)."""
    if size < 10:
        raise _Bad("short npy")
    head = _read(read_at, base, 12 if size >= 12 else 10)
    if head[:6] != b"\x93NUMPY":
        raise _Bad("npy magic")
    major = head[6]
    if major == 1:
        (hlen,) = struct.unpack("<H", head[8:10])
        hstart = 10
    elif major in (2, 3) and len(head) >= 12:
        (hlen,) = struct.unpack("<I", head[8:12])
        hstart = 12
    else:
        raise _Bad("npy version")
    if hlen > 1 << 16 or hstart + hlen > size:
        raise _Bad("npy header length")
    text = _read(read_at, base + hstart, hlen)
    try:
        meta = ast.literal_eval(text.decode("utf-8" if major == 3 else "latin-1"))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        raise _Bad("npy header") from e
    if not isinstance(meta, dict) or set(meta) != {"descr", "fortran_order", "shape"}:
        raise _Bad("npy header keys")
    descr, shape = meta["descr"], meta["shape"]
    if not isinstance(meta["fortran_order"], bool) or not isinstance(shape, tuple):
        raise _Bad("npy header values")
    start = hstart + hlen
    name = prefix.removesuffix(".npy") if prefix else "array"
    regions = [Region(base, start, 0, f"{prefix}/{HEADER}" if prefix else HEADER, "")]
    count = _prod(shape)
    if (isinstance(descr, str) and len(descr) == 3 and descr[0] in "<>="
            and descr[1:] in _NPY_FLOATS):
        dtype, width = _NPY_FLOATS[descr[1:]]
        nbytes = count * int(descr[2])
        if start + nbytes > size:
            raise _Bad("npy data truncated")
        regions.append(Region(base + start, nbytes, width, name, dtype))
    # Any other dtype (ints, structured, objects): the rest is opaque, left to _fill.
    return regions


# -- zip: .npz and torch checkpoints -------------------------------------------------------------
@dataclass(frozen=True)
class _Member:
    name: str
    method: int
    flags: int
    csize: int
    usize: int
    data: int     # offset of the member's data in the file


def _zip_members(read_at: ReadAt, size: int) -> tuple[list[_Member], int]:
    """The members of a zip (from its central directory) and where that directory starts."""
    if size < 22:
        raise _Bad("too short for a zip")
    tail_len = min(size, 22 + 0xFFFF)
    tail = _read(read_at, size - tail_len, tail_len)
    at = tail.rfind(b"PK\x05\x06", 0, tail_len - 18)   # a whole record, its comment to the end
    while at >= 0 and at + 22 + struct.unpack("<H", tail[at + 20:at + 22])[0] != tail_len:
        at = tail.rfind(b"PK\x05\x06", 0, at + 3)
    if at < 0:
        raise _Bad("no end of central directory")
    eocd = size - tail_len + at
    _d, _dcd, _n1, count, cd_size, cd_off = struct.unpack("<HHHHII", tail[at + 4:at + 20])
    cd_end = eocd
    loc = _read(read_at, eocd - 20, 20) if eocd >= 20 + 56 else b""
    if loc[:4] == b"PK\x06\x07":  # a zip64 end record (torch writes one whatever the size)
        (z64,) = struct.unpack("<Q", loc[8:16])
        if z64 + 56 > eocd - 20:
            raise _Bad("zip64 end record")
        rec = _read(read_at, z64, 56)
        if rec[:4] != b"PK\x06\x06":
            raise _Bad("zip64 end record")
        count, cd_size, cd_off = struct.unpack("<QQQ", rec[32:56])
        cd_end = z64
    elif count == 0xFFFF or cd_size == 0xFFFFFFFF or cd_off == 0xFFFFFFFF:
        raise _Bad("zip64 end record missing")
    if cd_off + cd_size != cd_end or cd_size > MAX_HEADER or count > cd_size // 46:
        raise _Bad("central directory")
    cd = _read(read_at, cd_off, cd_size)
    members = []
    pos = 0
    for _ in range(count):
        if pos + 46 > len(cd) or cd[pos:pos + 4] != b"PK\x01\x02":
            raise _Bad("central directory entry")
        (flags, method, csize, usize, nlen, xlen, clen,
         local) = struct.unpack("<HH8xIIHHH8xI", cd[pos + 8:pos + 46])
        name_b = cd[pos + 46:pos + 46 + nlen]
        extra = cd[pos + 46 + nlen:pos + 46 + nlen + xlen]
        pos += 46 + nlen + xlen + clen
        if pos > len(cd):
            raise _Bad("central directory entry")
        usize, csize, local = _zip64_extra(extra, usize, csize, local)
        if local + 30 > cd_off:
            raise _Bad("local header offset")
        lh = _read(read_at, local, 30)
        if lh[:4] != b"PK\x03\x04":
            raise _Bad("local header")
        lnlen, lxlen = struct.unpack("<HH", lh[26:30])
        data = local + 30 + lnlen + lxlen
        if data + csize > cd_off:
            raise _Bad("member data")
        name = name_b.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
        members.append(_Member(name, method, flags, csize, usize, data))
    return members, cd_off


def _zip64_extra(extra: bytes, usize: int, csize: int, local: int) -> tuple[int, int, int]:
    """Sizes and offset, the ones saturated at 0xFFFFFFFF taken from the zip64 extra field
    (which holds them in this order, only those saturated)."""
    fields = [usize, csize, local]
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack("<HH", extra[pos:pos + 4])
        body = extra[pos + 4:pos + 4 + length]
        pos += 4 + length
        if tag == 1:
            values = [v for (v,) in struct.iter_unpack("<Q", body[:len(body) // 8 * 8])]
            for k in range(3):
                if fields[k] == 0xFFFFFFFF:
                    if not values:
                        raise _Bad("zip64 extra")
                    fields[k] = values.pop(0)
            break
    return fields[0], fields[1], fields[2]


def _plain(m: _Member) -> bool:
    """A member whose bytes in the file are its content: stored, not encrypted."""
    return m.method == 0 and not m.flags & 1 and m.csize == m.usize


def _zip(read_at: ReadAt, size: int) -> list[Region]:
    members, _cd = _zip_members(read_at, size)
    pkl = [m for m in members if m.name.endswith("data.pkl")
           and m.name.count("/") == 1 and not m.name.startswith("/")]
    if len(pkl) == 1:
        return _torch(read_at, members, pkl[0])
    regions: list[Region] = []
    for m in members:
        if m.name.endswith(".npy") and _plain(m):
            regions.extend(_npy(read_at, m.data, m.usize, m.name))
    return regions


def _torch(read_at: ReadAt, members: list[_Member], pkl: _Member) -> list[Region]:
    prefix = pkl.name[: -len("data.pkl")] + "data/"
    if not _plain(pkl) or pkl.usize > MAX_HEADER:
        raise _Bad("data.pkl")
    storages = _torch_storages(_read(read_at, pkl.data, pkl.usize))
    regions = []
    for m in members:
        key = m.name[len(prefix):] if m.name.startswith(prefix) else ""
        if not key or "/" in key or not _plain(m):
            continue
        found = storages.get(key)
        if found is None:
            continue
        dtype, width, numel = found
        if numel * width != m.usize:
            continue
        regions.append(Region(m.data, m.usize, width, m.name, dtype))
    return regions


class _Global:
    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name


_MARK = object()
_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE",
               "SHORT_BINUNICODE", "BINUNICODE8"}
_INT_OPS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"}


def _torch_storages(data: bytes) -> dict[str, tuple[str, int, int]]:
    """Storage key -> (dtype, width, numel) of every float storage the pickle's persistent ids
    name, found by simulating the pickle machine's stack over its opcodes (nothing is loaded;
    values other than strings, ints, globals and tuples are placeholders). A key named twice
    with different types is left out."""
    found: dict[str, tuple[str, int, int]] = {}
    conflicts: set[str] = set()
    stack: list[object] = []
    memo: dict[int, object] = {}

    def pop() -> object:
        if not stack:
            raise _Bad("pickle stack underflow")
        return stack.pop()

    def pop_mark() -> list[object]:
        items: list[object] = []
        while True:
            item = pop()
            if item is _MARK:
                items.reverse()
                return items
            items.append(item)

    try:
        for op, arg, _pos in pickletools.genops(data):
            name = op.name
            if name in _STRING_OPS or name in _INT_OPS:
                stack.append(arg)
            elif name == "MARK":
                stack.append(_MARK)
            elif name == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
                stack.append(_Global(module, attr))
            elif name == "STACK_GLOBAL":
                attr_name, module_name = pop(), pop()
                stack.append(_Global(str(module_name), str(attr_name)))
            elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                if not stack:
                    raise _Bad("memo of nothing")
                memo[len(memo) if name == "MEMOIZE" else int(arg or 0)] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if arg not in memo:
                    raise _Bad("memo miss")
                stack.append(memo[arg])
            elif name == "TUPLE":
                stack.append(tuple(pop_mark()))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                items = [pop() for _ in range(n)]
                stack.append(tuple(reversed(items)))
            elif name == "EMPTY_TUPLE":
                stack.append(())
            elif name == "BINPERSID":
                _storage(pop(), found, conflicts)
                stack.append(None)
            elif name in ("PROTO", "FRAME"):
                pass
            elif name == "STOP":
                break
            else:  # any other opcode: its effect on the stack, with placeholders
                before = op.stack_before
                if pickletools.markobject in before:
                    pop_mark()
                    for _ in range(before.index(pickletools.markobject)):
                        pop()
                else:
                    for _ in before:
                        pop()
                stack.extend(None for _ in op.stack_after)
    except _Bad:
        raise
    except Exception as e:  # pickletools' own errors on malformed opcodes (ValueError, ...)
        raise _Bad("pickle") from e
    for key in conflicts:
        found.pop(key, None)
    return found


def _storage(pid: object, found: dict[str, tuple[str, int, int]], conflicts: set[str]) -> None:
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
        return
    _tag, kind, key, _location, numel = pid
    if not isinstance(key, str):
        return
    dtype_width = (_TORCH_STORAGES.get(kind.name)
                   if isinstance(kind, _Global) and kind.module == "torch" else None)
    if dtype_width is None or not isinstance(numel, int) or numel < 0:
        conflicts.add(key)
        return
    entry = (dtype_width[0], dtype_width[1], numel)
    if found.setdefault(key, entry) != entry:
        conflicts.add(key)


# -- GGUF ----------------------------------------------------------------------------------------
_GGUF_FLOATS = {0: ("F32", 4), 1: ("F16", 2), 30: ("BF16", 2)}
_GGUF_SCALARS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


class _Cursor:
    """Sequential reads through read_at, in blocks, bounded to MAX_HEADER bytes in all."""

    def __init__(self, read_at: ReadAt, size: int, pos: int) -> None:
        self.read_at, self.size, self.pos = read_at, size, pos
        self.buf, self.buf_at = b"", pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > min(self.size, MAX_HEADER):
            raise _Bad("GGUF header too long or truncated")
        end = self.pos + n
        if end > self.buf_at + len(self.buf):
            want = max(n, 1 << 16)
            want = min(want, self.size - self.pos)
            self.buf, self.buf_at = _read(self.read_at, self.pos, want), self.pos
        rel = self.pos - self.buf_at
        out = self.buf[rel:rel + n]
        self.pos = end
        return out

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack("<Q", self.take(8))[0])

    def string(self) -> bytes:
        return self.take(self.u64())


def _gguf(read_at: ReadAt, size: int) -> list[Region]:
    cur = _Cursor(read_at, size, 4)
    if cur.u32() not in (2, 3):
        raise _Bad("GGUF version")
    n_tensors, n_kv = cur.u64(), cur.u64()
    if n_tensors > MAX_HEADER // 24 or n_kv > MAX_HEADER // 12:
        raise _Bad("GGUF counts")
    alignment = 32
    for _ in range(n_kv):
        key = cur.string()
        vtype = cur.u32()
        if vtype == 4 and key == b"general.alignment":
            alignment = cur.u32()
            if alignment == 0 or alignment & (alignment - 1):
                raise _Bad("GGUF alignment")
        else:
            _gguf_skip(cur, vtype, 0)
    infos = []
    for _ in range(n_tensors):
        name = cur.string().decode("utf-8", errors="replace")
        n_dims = cur.u32()
        if n_dims > 8:
            raise _Bad("GGUF dims")
        dims = [cur.u64() for _ in range(n_dims)]
        ttype, offset = cur.u32(), cur.u64()
        infos.append((name, dims, ttype, offset))
    data = -(-cur.pos // alignment) * alignment
    regions = [Region(0, min(data, size), 0, HEADER, "")]
    for name, dims, ttype, offset in infos:
        if ttype in _GGUF_FLOATS:
            dtype, width = _GGUF_FLOATS[ttype]
            nbytes = _prod(dims) * width
            if data + offset + nbytes > size:
                raise _Bad("GGUF tensor outside the file")
            regions.append(Region(data + offset, nbytes, width, name, dtype))
    return regions


def _gguf_skip(cur: _Cursor, vtype: int, depth: int) -> None:
    if vtype in _GGUF_SCALARS:
        cur.take(_GGUF_SCALARS[vtype])
    elif vtype == 8:
        cur.string()
    elif vtype == 9 and depth < 4:
        itype, count = cur.u32(), cur.u64()
        if itype in _GGUF_SCALARS:
            cur.take(count * _GGUF_SCALARS[itype])
        else:
            if count > MAX_HEADER // 8:
                raise _Bad("GGUF array")
            for _ in range(count):
                _gguf_skip(cur, itype, depth + 1)
    else:
        raise _Bad("GGUF value type")


# -- cuts ----------------------------------------------------------------------------------------
def tensor_cuts(regions: list[Region], target: int = 1 << 20) -> list[Piece]:
    """The pieces of a layout, by the rules of this module's docstring; they cover the regions
    contiguously, in order. ValueError unless 64 <= target <= MAX_CHUNK_LIMIT / 4 (a piece that
    is not `cdc` is then at most 4 * target bytes)."""
    if not 64 <= target <= MAX_CHUNK_LIMIT // 4:
        raise ValueError(f"tensor_cuts target must be in 64..{MAX_CHUNK_LIMIT // 4}, got {target}")
    pieces: list[Piece] = []
    i = 0
    while i < len(regions):
        r = regions[i]
        start = r.offset
        if r.width == 0:
            k, gap = _gaps(regions, i, min(GAP_ABSORB, target))
            if not (i > 0 and k < len(regions) and regions[k].width and gap % regions[k].width == 0):
                i = _opaque(regions, i, target, pieces)
                continue
            i, r = k, regions[k]   # small opaque bytes lead the float region after them
        lead = r.offset - start
        if r.size > 2 * target:
            split = _split(r, target)
            split[0] = Piece(start, lead + split[0].size, r.width, split[0].key)
            pieces.extend(split)
            i += 1
        elif r.size > target:
            pieces.append(Piece(start, lead + r.size, r.width, f"{r.name}#0"))
            i += 1
        else:
            j, total, count = i + 1, lead + r.size, 1
            while j < len(regions):
                k, gap = _gaps(regions, j, GAP_ABSORB)
                if k == len(regions):
                    break
                nxt = regions[k]
                if (nxt.width != r.width or nxt.size > target
                        or (nxt.offset - r.offset) % r.width
                        or total + gap + nxt.size > target):
                    break
                total += gap + nxt.size
                count += 1
                j = k + 1
            pieces.append(Piece(start, total, r.width, _run_key(r.name, count)))
            i = j
    return pieces


def _gaps(regions: list[Region], i: int, limit: int) -> tuple[int, int]:
    """The first region from i on that is not among width-0 regions of `limit` bytes in all,
    and those regions' size."""
    k, gap = i, 0
    while k < len(regions) and regions[k].width == 0 and gap + regions[k].size <= limit:
        gap += regions[k].size
        k += 1
    return k, gap


def _opaque(regions: list[Region], i: int, target: int, pieces: list[Piece]) -> int:
    """The piece of width-0 region i (with the small ones after it, unless it is the file's
    first); where the next piece starts."""
    r = regions[i]
    if r.size > 4 * target:
        pieces.append(Piece(r.offset, r.size, 0, f"{r.name}#0", cdc=True))
        return i + 1
    j, total = i + 1, r.size
    if i > 0 and r.size <= target:
        while j < len(regions) and regions[j].width == 0 and total + regions[j].size <= target:
            total += regions[j].size
            j += 1
    pieces.append(Piece(r.offset, total, 0, _run_key(r.name, j - i)))
    return j


def _run_key(name: str, count: int) -> str:
    return f"{name}#0" if count == 1 else f"{name}+{count}#0"


def _split(r: Region, target: int) -> list[Piece]:
    elements = r.size // r.width
    n = max(1, min(-(-r.size // target), elements))
    ends = [k * elements // n * r.width for k in range(1, n)] + [r.size]
    pieces, start = [], 0
    for k, end in enumerate(ends):
        pieces.append(Piece(r.offset + start, end - start, r.width, f"{r.name}#{k}"))
        start = end
    return pieces
