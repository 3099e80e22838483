"""Refresh the stat data of index entries for files git-mlx wrote itself.

When git-mlx hydrates a file directly (docs/hydration.md), the index still holds the stat data
of the pointer file git wrote a moment earlier, so the next `git status` would send the whole
file through the clean filter to find it unchanged. Recording the new file's stat data in its
index entry, exactly as `git update-index --refresh` would after hashing it, makes that status
free. git has no plumbing that records stat data without hashing the file (through the filter),
and libgit2 (pygit2) does not expose the stat fields, so this module edits them in place.

It is deliberately narrow: it parses the index (gitformat-index(5), versions 2, 3 and 4, SHA-1
or SHA-256), overwrites the ten 32-bit stat fields of entries whose path, stage (0) and blob id
are what the caller expects, and rewrites the trailing checksum. Entry lengths, order, flags and
every extension stay byte for byte as they were. It takes git's lock (`index.lock`, O_EXCL) and
gives up, changing nothing, when the lock is held, the index is split (`link` extension), or
anything does not parse: the cost of giving up is only that git re-checks those files once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

_HEADER = struct.Struct(">4sII")
_STAT = struct.Struct(">10I")  # ctime s, ns; mtime s, ns; dev; ino; mode; uid; gid; size
_STAT_MODE = 6  # index of `mode` in _STAT
_STAT_SIZE = 9
_FLAGS = struct.Struct(">H")
_EXTENDED = 0x4000
_STAGE_MASK = 0x3000
_NAME_MASK = 0x0FFF
_HASH_SIZES = {20: hashlib.sha1, 32: hashlib.sha256}


class IndexFormatError(ValueError):
    """The file is not an index this module understands."""


@dataclass(frozen=True)
class Entry:
    path: bytes
    stage: int
    oid: bytes  # raw, 20 or 32 bytes
    mode: int
    size: int  # the file size git last recorded (32 bits; 0 means "unknown, compare content")
    stat_offset: int  # where the entry (its 40 bytes of stat data) starts in the file


def _decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    """git's offset varint (varint.c): the value and the position after it."""
    if pos >= len(data):
        raise IndexFormatError("truncated varint")
    byte = data[pos]
    pos += 1
    value = byte & 0x7F
    while byte & 0x80:
        if pos >= len(data):
            raise IndexFormatError("truncated varint")
        byte = data[pos]
        pos += 1
        value = ((value + 1) << 7) | (byte & 0x7F)
    return value, pos


def _entries(data: bytes, hash_size: int) -> tuple[list[Entry], int]:
    """All entries, and the offset where the extensions start."""
    if len(data) < _HEADER.size + hash_size:
        raise IndexFormatError("too short")
    signature, version, count = _HEADER.unpack_from(data, 0)
    if signature != b"DIRC":
        raise IndexFormatError("no DIRC signature")
    if version not in (2, 3, 4):
        raise IndexFormatError(f"index version {version} is not supported")
    end = len(data) - hash_size
    pos = _HEADER.size
    fixed = _STAT.size + hash_size + _FLAGS.size
    entries: list[Entry] = []
    previous = b""
    for _ in range(count):
        start = pos
        if pos + fixed > end:
            raise IndexFormatError("truncated entry")
        fields = _STAT.unpack_from(data, pos)
        oid = data[pos + _STAT.size : pos + _STAT.size + hash_size]
        (flags,) = _FLAGS.unpack_from(data, pos + _STAT.size + hash_size)
        pos += fixed
        if flags & _EXTENDED:
            if version < 3:
                raise IndexFormatError("extended flag in a version 2 index")
            pos += 2
        if version == 4:
            strip, pos = _decode_varint(data, pos)
            if strip > len(previous):
                raise IndexFormatError("path prefix longer than the previous path")
            nul = data.find(b"\0", pos, end)
            if nul < 0:
                raise IndexFormatError("unterminated path")
            path = previous[: len(previous) - strip] + data[pos:nul]
            pos = nul + 1
        else:
            nul = data.find(b"\0", pos, end)
            if nul < 0:
                raise IndexFormatError("unterminated path")
            path = data[pos:nul]
            name_len = flags & _NAME_MASK
            if name_len != _NAME_MASK and name_len != len(path):
                raise IndexFormatError("path length does not match its flags")
            # Entries are NUL-padded to a multiple of 8 bytes, with at least one NUL.
            pos = start + ((pos - start + len(path) + 8) & ~7)
            if pos > end or data[nul:pos].strip(b"\0"):
                raise IndexFormatError("bad entry padding")
        previous = path
        entries.append(Entry(path, (flags & _STAGE_MASK) >> 12, oid, fields[_STAT_MODE],
                             fields[_STAT_SIZE], start))
    return entries, pos


def _extensions(data: bytes, pos: int, hash_size: int) -> list[bytes]:
    end = len(data) - hash_size
    names = []
    while pos < end:
        if pos + 8 > end:
            raise IndexFormatError("truncated extension header")
        name = data[pos : pos + 4]
        (size,) = struct.unpack_from(">I", data, pos + 4)
        pos += 8 + size
        if pos > end:
            raise IndexFormatError("truncated extension")
        names.append(name)
    return names


def parse(data: bytes) -> tuple[list[Entry], int, list[bytes]]:
    """Entries, the hash size (20 or 32) and the extensions' names.

    Checks the trailing checksum (or its absence, all zeros, as index.skipHash writes) and that
    entries and extensions fill the file exactly."""
    last_error: IndexFormatError | None = None
    unchecked: list[tuple[list[Entry], int, list[bytes]]] = []  # parses behind a zero trailer
    for hash_size, algorithm in _HASH_SIZES.items():
        if len(data) < hash_size:
            continue
        trailer = data[-hash_size:]
        skipped = trailer == bytes(hash_size)  # index.skipHash: no checksum to tell the size
        if not skipped and algorithm(data[:-hash_size]).digest() != trailer:
            continue
        try:
            entries, pos = _entries(data, hash_size)
            names = _extensions(data, pos, hash_size)
        except IndexFormatError as exc:
            last_error = exc
            continue
        if not skipped:
            return entries, hash_size, names
        unchecked.append((entries, hash_size, names))
    if len(unchecked) == 1:
        return unchecked[0]
    if unchecked:  # (found by fuzzing) guessing could patch the wrong bytes: let git read it
        raise IndexFormatError("no checksum, and the entries read as both SHA-1 and SHA-256")
    raise last_error or IndexFormatError("checksum mismatch")


def index_path(git_dir: Path, work_tree: Path | None) -> Path:
    """The index git uses: GIT_INDEX_FILE (relative: from the work tree, else the current
    directory), else <git dir>/index."""
    env = os.environ.get("GIT_INDEX_FILE")
    if env:
        path = Path(env)
        return path if path.is_absolute() else (work_tree or Path.cwd()) / path
    return git_dir / "index"


def read(index_path: Path) -> tuple[list[Entry], int] | None:
    """The entries of an index file and its hash size, or None if this module cannot read it
    (missing, split, damaged, unknown version): callers then ask git or libgit2 instead."""
    try:
        entries, hash_size, extensions = parse(index_path.read_bytes())
    except (OSError, IndexFormatError):
        return None
    if b"link" in extensions:
        return None
    return entries, hash_size


def blob_id(data: bytes, hash_size: int) -> bytes:
    """The raw git object id of a blob holding `data` (SHA-1 or SHA-256 by `hash_size`)."""
    return _HASH_SIZES[hash_size](b"blob %d\0" % len(data) + data).digest()


def _stat_fields(st: os.stat_result, mode: int) -> bytes:
    mask = 0xFFFFFFFF
    return _STAT.pack(
        int(st.st_ctime) & mask, st.st_ctime_ns % 1_000_000_000,
        int(st.st_mtime) & mask, st.st_mtime_ns % 1_000_000_000,
        st.st_dev & mask, st.st_ino & mask, mode,
        st.st_uid & mask, st.st_gid & mask, st.st_size & mask,
    )


def unchanged(now: os.stat_result, then: os.stat_result) -> bool:
    """The same file, untouched: same inode, type and mode, size, mtime and ctime to the
    nanosecond (any write, rename over it or chmod changes one of them)."""
    return (now.st_ino, now.st_dev, now.st_mode, now.st_size, now.st_mtime_ns, now.st_ctime_ns) \
        == (then.st_ino, then.st_dev, then.st_mode, then.st_size, then.st_mtime_ns, then.st_ctime_ns)


_NS = 1_000_000_000
_ATTEMPTS = 8
_MAX_WAIT = 3.0  # seconds for the clock to pass a file's ctime; beyond, git compares content


def _patch(data: bytes, entries: list[Entry], hash_size: int,
           updates: Mapping[bytes, tuple[Collection[bytes], os.stat_result | None]],
           ) -> tuple[bytearray, set[bytes]]:
    """`data` with the stat data of the matching stage-0 entries replaced (or smudged: size 0,
    for a None stat), its checksum rewritten; and the paths patched."""
    patched = bytearray(data)
    done: set[bytes] = set()
    for entry in entries:
        want = updates.get(entry.path)
        if want is None or entry.stage != 0 or entry.oid not in want[0]:
            continue
        if want[1] is None:  # git's own "racily clean" smudge: size 0 makes it compare content
            size_at = entry.stat_offset + 4 * _STAT_SIZE
            patched[size_at : size_at + 4] = bytes(4)
        else:
            patched[entry.stat_offset : entry.stat_offset + _STAT.size] = _stat_fields(
                want[1], entry.mode
            )
        done.add(entry.path)
    if done and bytes(data[-hash_size:]) != bytes(hash_size):
        body = memoryview(patched)[:-hash_size]
        patched[-hash_size:] = _HASH_SIZES[hash_size](body).digest()
        body.release()
    return patched, done


def refresh(index_path: Path,
            updates: Mapping[bytes, tuple[Collection[bytes], os.stat_result | None]],
            work_tree: Path | None = None) -> set[bytes]:
    """Record new stat data for stage-0 entries: path -> (the raw blob ids it may have, stat).

    A None stat smudges the entry instead (size 0: git compares the file's content next time).
    Returns the paths whose entries were updated. An entry whose blob id is not the expected
    one (the index moved on) is left alone. Never raises for a busy or unusual index: it
    returns an empty set and git re-checks those files itself.

    With `work_tree` (docs/hydration.md, "Never hiding an edit"), two guards make the recorded
    stat data as trustworthy as git's own:
    - the new index is committed only in a later second than every recorded file's ctime
      (waiting for the clock when needed): git compares ctime in whole seconds, so an edit
      after the commit, even one that puts the size and mtime back, changes the ctime git sees;
    - right before the commit, each file is compared with its stat data (lstat, to the
      nanosecond): a file that changed since it was written is smudged, never recorded as clean.
    """
    if not updates:
        return set()
    if work_tree is not None:  # wait before taking the lock, not while holding it
        latest = _latest_second(st for _, st in updates.values())
        time.sleep(min(max(latest + 1 - time.time(), 0), _MAX_WAIT))
    lock = index_path.with_name(index_path.name + ".lock")
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError:
        return set()  # git (or another git-mlx) holds the index: let git re-check later
    committed = False
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                data = index_path.read_bytes()
                entries, hash_size, extensions = parse(data)
                if b"link" in extensions:
                    return set()  # split index: entries live in two files
            except (OSError, IndexFormatError):
                return set()
            wanted = dict(updates)
            deadline = time.monotonic() + _MAX_WAIT
            for _ in range(_ATTEMPTS):
                patched, done = _patch(data, entries, hash_size, wanted)
                if not done:
                    return set()
                out.seek(0)
                out.truncate()
                out.write(patched)
                out.flush()
                if work_tree is None:
                    break
                recorded = {path: st for path in done if (st := wanted[path][1]) is not None}
                index_second = os.fstat(out.fileno()).st_mtime_ns // _NS
                latest = _latest_second(recorded.values())
                if latest >= index_second:
                    if time.monotonic() >= deadline:  # a clock that will not move (odd fs)
                        wanted.update((path, (wanted[path][0], None)) for path in recorded)
                    else:
                        time.sleep(max(latest + 1 - time.time(), 0) + 0.005)
                    continue  # rewrite: the lock file's mtime becomes the index's timestamp
                moved = [path for path, st in recorded.items() if not _still(work_tree, path, st)]
                if not moved:
                    break
                wanted.update((path, (wanted[path][0], None)) for path in moved)
            else:
                return set()
        with contextlib.suppress(OSError):
            os.chmod(lock, os.stat(index_path).st_mode & 0o7777)
        os.replace(lock, index_path)
        committed = True
        return done
    finally:
        if not committed:
            with contextlib.suppress(OSError):
                os.unlink(lock)


def _latest_second(stats: Iterable[os.stat_result | None]) -> int:
    """The latest second any of these files was changed in (ctime, or a later mtime)."""
    return max((max(st.st_ctime_ns, st.st_mtime_ns) // _NS for st in stats if st is not None),
               default=-1)


def _still(work_tree: Path, path: bytes, st: os.stat_result) -> bool:
    try:
        return unchanged(os.lstat(os.path.join(os.fsencode(work_tree), path)), st)
    except OSError:
        return False
