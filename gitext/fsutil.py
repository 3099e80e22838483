"""Writing a file so that readers see the old bytes or the new, never part of them; and what
an object id looks like.

Layer 0: standard library only.

A file is replaced through a temp file beside it (same directory, so the rename is atomic):
`.NAME.mlx-PID.tmp`, or `.NAME.mlx-PID-N.tmp` when that name is taken (by another thread, or
left by a process that had the same PID). The temp file is locked (flock) from its creation
until it is renamed or removed: that lock, not the PID, tells hydration's stale-temp cleanup
(repo/hydrate.py) that a temp file in the work tree is in use, and lets it remove one a killed
git-mlx left. A failed write removes its temp file and leaves the target as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, TypeGuard

_HEX = re.compile(r"[0-9a-f]*")
_LONGEST_STEM = 200  # NAME_MAX is 255 bytes: room for ".", ".mlx-PID-N.tmp"


def _tmp_stem(name: str) -> str:
    """The file's name, or for a name too long to take the temp suffix within NAME_MAX (git
    writes names up to 255 bytes) a short stand-in made from its hash."""
    raw = os.fsencode(name)
    if len(raw) <= _LONGEST_STEM:
        return name
    return "long-" + hashlib.sha256(raw).hexdigest()[:32]


def create_temp(dest: Path, perms: int = 0o666) -> tuple[int, Path]:
    """A new temp file beside `dest` (.NAME.mlx-PID[-N].tmp), open for writing and locked
    (flock) until it is renamed or removed. `perms` as for os.open: the umask applies."""
    for n in range(100):
        suffix = str(os.getpid()) if n == 0 else f"{os.getpid()}-{n}"
        tmp = dest.with_name(f".{_tmp_stem(dest.name)}.mlx-{suffix}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, perms)
        except FileExistsError:
            continue  # another run's (live or stale): never ours to reuse
        # Waits only while a cleaner looks at it. No locks on this file system: cleaners
        # cannot lock it either, and keep it.
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            mine = os.path.samestat(os.lstat(tmp), os.fstat(fd))
        except OSError:
            mine = False
        if mine:
            return fd, tmp
        os.close(fd)  # a cleaner removed it before we held the lock: take another name
    raise OSError(f"no free temp file name beside {dest}")


@contextlib.contextmanager
def atomic_writer(path: Path, *, mode: int | None = None) -> Iterator[BinaryIO]:
    """A file to write that replaces `path` when the block ends without an exception; `mode`
    sets its permission bits exactly (else: new-file permissions, the umask applied). If the
    block or the rename fails, the temp file is removed and `path` is left as it was."""
    fd, tmp = create_temp(path)
    try:
        with open(fd, "wb", closefd=False) as f:
            yield f
        if mode is not None:
            os.fchmod(fd, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            if os.path.samestat(os.lstat(tmp), os.fstat(fd)):  # never someone else's
                os.unlink(tmp)
        raise
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace `path` with `data` at once (see atomic_writer)."""
    with atomic_writer(path, mode=mode) as f:
        f.write(data)


def write_all(fd: int, data: bytes | memoryview, path: Path | str) -> None:
    """Write all of `data` to `fd`; an OSError names `path` (os.write's own names no file,
    and "no space left" should say where: errors.explain_os_error)."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        if exc.filename is None:
            exc.filename = os.fspath(path)
        raise


def is_hex_id(value: object, length: int = 64) -> TypeGuard[str]:
    """True for a str of `length` lowercase hex digits: a sha256 id (object, pack, run-cache
    key) has 64, a git commit id 40 (SHA-1) or 64 (SHA-256). Formats parsed from bytes spell
    the same rule inside their own grammar (`[0-9a-f]{64}` in pointer, manifest, pack index)."""
    return isinstance(value, str) and len(value) == length and _HEX.fullmatch(value) is not None
