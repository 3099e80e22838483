"""Chunk codecs: how a chunk's bytes become a chunk object and back (docs/store.md, "Chunk
objects").

A chunk object is either a plain zstd frame of the chunk's bytes (format 1, every store before
0.4), or a *coded* chunk: a zstd skippable frame holding a small header, then one zstd frame of
the chunk's bytes transformed by the codec the header names:

    GROUPED  the bytes of each float split into planes (byte 0 of every element, then byte 1,
             ...; the size % width tail raw): the exponent bytes of nearby weights are alike, so
             zstd finds them, where interleaved with the noisy mantissa bytes it does not
    DELTA    each element minus the same element of a base chunk (the same tensor in the
             previous version of the file), as integers, zigzag-encoded, then grouped: a
             fine-tune moves every weight a little, so the differences are small numbers,
             zeros in every plane but the lowest

The chunk's name is the sha256 of its original bytes whatever the codec, so deduplication and
verification do not depend on how a chunk is stored. A reader meets a codec it does not know as
UnsupportedObject (upgrade), never as a damaged object.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Callable
from dataclasses import dataclass

import zstandard

from gitext.errors import UnsupportedObject
from gitext.formats.manifest import MAX_CHUNK_LIMIT
from gitext.storage.chunker import native

SKIPPABLE_MAGIC = 0x184D2A5B   # one of zstd's sixteen skippable-frame magics
PLAIN, GROUPED, DELTA = 0, 1, 2
VERSION = 1
WIDTHS = (2, 4)                # bf16/fp16 and fp32 elements
_HEAD = struct.Struct("<II3sBBBBQ")  # magic, payload length, b"mlx", version, codec, width, depth, size
_HEAD_LEN = _HEAD.size                # 24
_BASE_LEN = 32                        # a delta's base id, raw
HEADER_MAX = _HEAD_LEN + _BASE_LEN    # what a reader needs to see to know a chunk's codec


@dataclass(frozen=True)
class Coded:
    """The header of a coded chunk: what follows it is one zstd frame of the transformed bytes."""

    codec: int
    width: int
    depth: int      # 0, or 1 + the base's depth for a delta
    size: int       # the original chunk's size
    base: str       # the base chunk's id (a delta), else ""
    length: int     # bytes of the header frame (the zstd frame starts here)


class Malformed(ValueError):
    """The bytes are not a chunk object this reader can parse (a damaged object)."""


def header(head: bytes) -> Coded | None:
    """The coded-chunk header at the start of `head` (at least HEADER_MAX bytes, or the whole
    object), None for a plain zstd frame. Malformed for a header that does not parse,
    UnsupportedObject for a version or codec newer than this reader."""
    if len(head) < 4 or int.from_bytes(head[:4], "little") != SKIPPABLE_MAGIC:
        return None
    if len(head) < _HEAD_LEN:
        raise Malformed("truncated chunk header")
    _, length, tag, version, codec, width, depth, size = _HEAD.unpack_from(head)
    if tag != b"mlx":
        raise Malformed("a skippable frame that is not a git-mlx chunk header")
    if version != VERSION or codec not in (GROUPED, DELTA):
        raise UnsupportedObject(
            f"chunk written by a newer git-mlx (chunk format {version}, codec {codec})",
            hint="upgrade git-mlx to read it")
    want = _HEAD_LEN - 8 + (_BASE_LEN if codec == DELTA else 0)
    if length != want or width not in WIDTHS or size > MAX_CHUNK_LIMIT \
            or (codec == DELTA) != (depth > 0):
        raise Malformed("inconsistent chunk header")
    base = ""
    if codec == DELTA:
        if len(head) < _HEAD_LEN + _BASE_LEN:
            raise Malformed("truncated chunk header")
        base = head[_HEAD_LEN:_HEAD_LEN + _BASE_LEN].hex()
    return Coded(codec, width, depth, size, base, 8 + length)


def split(raw: bytes) -> tuple[Coded | None, bytes]:
    """A chunk object (or its first bytes) as its header (None for a plain frame) and the zstd
    frame after it; Malformed or UnsupportedObject as `header`."""
    coded = header(raw[:HEADER_MAX])
    return coded, raw if coded is None else raw[coded.length:]


def content_size(head: bytes) -> int:
    """The original size a chunk object declares (its header, or its zstd frame header);
    Malformed or UnsupportedObject as `header`, Malformed for a frame header that does not
    parse."""
    coded = header(head)
    if coded is not None:
        return coded.size
    try:
        size = zstandard.get_frame_parameters(head).content_size
    except zstandard.ZstdError as exc:
        raise Malformed(str(exc)) from None
    if size > MAX_CHUNK_LIMIT:  # also "unknown" (2**64 - 1)
        raise Malformed("no content size, or too large")
    return int(size)


def base_of(head: bytes) -> str:
    """The id of the chunk a delta needs to be read ("" for any other chunk)."""
    coded = header(head)
    return coded.base if coded is not None else ""


_NATIVE = native()
if _NATIVE is not None and not hasattr(_NATIVE, "group"):  # an extension built before codecs
    _NATIVE = None


def group(data: bytes | memoryview, width: int) -> bytes:
    """Byte planes: byte k of every whole element, for k in 0..width-1, then the tail."""
    if _NATIVE is not None:
        return bytes(_NATIVE.group(data, width))
    return _group_py(data, width)


def ungroup(data: bytes, width: int) -> bytes:
    """The inverse of `group`."""
    if _NATIVE is not None:
        return bytes(_NATIVE.ungroup(data, width))
    return _ungroup_py(data, width)


def delta(data: bytes | memoryview, base: bytes | memoryview, width: int) -> bytes:
    """Each whole element of `data` within `base`'s length, as a little-endian unsigned
    integer of `width` bytes, minus `base`'s (mod 2**(8*width)), zigzag-encoded (0, -1, 1,
    -2, ... become 0, 1, 2, 3, ...); the bytes after the last whole common element XOR the
    base where it has them, and the rest as they are."""
    if _NATIVE is not None:
        return bytes(_NATIVE.delta_encode(data, base, width))
    return _delta_py(data, base, width, inverse=False)


def undelta(coded: bytes | memoryview, base: bytes | memoryview, width: int) -> bytes:
    """The inverse of `delta`."""
    if _NATIVE is not None:
        return bytes(_NATIVE.delta_decode(coded, base, width))
    return _delta_py(coded, base, width, inverse=True)


def _group_py(data: bytes | memoryview, width: int) -> bytes:
    view = memoryview(data).cast("B")
    whole = len(view) - len(view) % width
    body = view[:whole]
    return b"".join([body[k::width].tobytes() for k in range(width)] + [view[whole:].tobytes()])


def _ungroup_py(data: bytes, width: int) -> bytes:
    whole = len(data) - len(data) % width
    count = whole // width
    out = bytearray(len(data))
    for k in range(width):
        out[k:whole:width] = data[k * count:(k + 1) * count]
    out[whole:] = data[whole:]
    return bytes(out)


def _delta_py(data: bytes | memoryview, base: bytes | memoryview, width: int,
              inverse: bool) -> bytes:
    n = min(len(data), len(base))
    whole = n - n % width
    code = "I" if width == 4 else "H"
    mask = (1 << (8 * width)) - 1
    sign = 1 << (8 * width - 1)
    xs, ys = array(code, bytes(data[:whole])), array(code, bytes(base[:whole]))
    if sys.byteorder == "big":
        xs.byteswap()
        ys.byteswap()
    if inverse:
        out = array(code, [(((z >> 1) ^ (mask if z & 1 else 0)) + y) & mask
                           for z, y in zip(xs, ys, strict=True)])
    else:
        out = array(code, [(((d << 1) & mask) ^ (mask if d & sign else 0))
                           for d in ((x - y) & mask for x, y in zip(xs, ys, strict=True))])
    if sys.byteorder == "big":
        out.byteswap()
    tail = bytes(a ^ b for a, b in zip(bytes(data[whole:n]), bytes(base[whole:n]), strict=True))
    return out.tobytes() + tail + bytes(data[n:])


def _head(codec: int, width: int, depth: int, size: int, base: str = "") -> bytes:
    payload_len = _HEAD_LEN - 8 + (_BASE_LEN if codec == DELTA else 0)
    return _HEAD.pack(SKIPPABLE_MAGIC, payload_len, b"mlx", VERSION, codec, width, depth,
                      size) + (bytes.fromhex(base) if codec == DELTA else b"")


@dataclass(frozen=True)
class Base:
    """What a delta is taken against: the base chunk's id, original bytes and chain depth."""

    id: str
    data: bytes
    depth: int


SAMPLE = 64 << 10  # a delta or planes? a chunk larger than 2 * SAMPLE asks its first SAMPLE bytes


def encode(data: memoryview, cctx: zstandard.ZstdCompressor, width: int = 0,
           base: Base | None = None) -> bytes:
    """The smallest chunk object for `data` among: a plain frame, its byte planes (width 2 or
    4), and, given a base, its differences from the base in planes. `cctx` writes content sizes and
    checksums.

    A small chunk tries them all. A large one is compressed once or twice: in planes (which
    beat a plain frame on floats: docs/store.md, "Decisions"), or as a delta if its first
    SAMPLE bytes say a delta is smaller (one tensor is alike throughout), and plain too only
    if that came out nearly incompressible.
    """
    if width not in WIDTHS:
        return cctx.compress(data)
    if len(data) <= 2 * SAMPLE:
        tried = [PLAIN, GROUPED] + ([DELTA] if base is not None else [])
        return min((_code(c, data, cctx, width, base) for c in tried), key=len)
    pick = GROUPED
    if base is not None:
        cut = SAMPLE - SAMPLE % width
        sample, sample_base = data[:cut], Base(base.id, base.data[:cut], base.depth)
        if len(_code(DELTA, sample, cctx, width, sample_base)) < len(
                _code(GROUPED, sample, cctx, width, None)):
            pick = DELTA
    best = _code(pick, data, cctx, width, base)
    if len(best) > 0.95 * len(data):  # not floats after all, or noise: a plain frame may do
        plain = cctx.compress(data)
        if len(plain) <= len(best):
            return plain
    return best


def _code(codec: int, data: memoryview, cctx: zstandard.ZstdCompressor, width: int,
          base: Base | None) -> bytes:
    if codec == PLAIN:
        return cctx.compress(data)
    size = len(data)
    if codec == GROUPED or base is None:
        return _head(GROUPED, width, 0, size) + cctx.compress(group(data, width))
    return _head(DELTA, width, base.depth + 1, size, base.id) + cctx.compress(
        group(delta(data, base.data, width), width))


def decode(raw: bytes, dctx: zstandard.ZstdDecompressor,
           load_base: Callable[[str], bytes]) -> bytes:
    """A chunk object's original bytes, not hashed (the caller checks them against the name).

    `load_base(id)` returns a delta's base's original bytes (verified: the caller's choice).
    Malformed for bytes that do not decode, UnsupportedObject for a newer format; zstd's frame
    checksum, when present, is verified by the decompression.
    """
    coded, frame = split(raw)
    try:
        declared = zstandard.get_frame_parameters(frame).content_size
        if declared > MAX_CHUNK_LIMIT:
            raise Malformed("no content size, or too large")
        body: bytes = dctx.decompress(frame, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise Malformed(str(exc)) from None
    if len(body) != declared:
        raise Malformed("content size mismatch")
    if coded is None:
        return body
    if len(body) != coded.size:
        raise Malformed("the header and the frame disagree on the size")
    planes = ungroup(body, coded.width)
    if coded.codec == GROUPED:
        return planes
    return undelta(planes, load_base(coded.base), coded.width)


def has_checksum(raw: bytes) -> bool:
    """Whether the zstd frame of a chunk object carries zstd's content checksum."""
    try:
        return bool(zstandard.get_frame_parameters(split(raw)[1]).has_checksum)
    except (Malformed, UnsupportedObject, zstandard.ZstdError):
        return False
