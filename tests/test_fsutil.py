"""gitext/fsutil.py: atomic replacement of a file."""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

import pytest

from gitext.fsutil import atomic_writer, create_temp, is_hex_id, write_all, write_atomic


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_bytes(b"old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temp(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_writer(target) as f:
        f.write(b"half")
        raise RuntimeError("stop")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_a_failed_rename_removes_the_temp(tmp_path: Path) -> None:
    target = tmp_path / "dir"
    target.mkdir()
    (target / "x").write_bytes(b"")
    with pytest.raises(OSError):
        write_atomic(target, b"data")  # a non-empty directory cannot be replaced by a file
    assert sorted(os.listdir(tmp_path)) == ["dir"]


def test_mode_is_exact(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "hook", b"#!/bin/sh\n", mode=0o755)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "hook").stat().st_mode) == 0o755


def test_temp_names_follow_hydration_convention_and_are_locked(tmp_path: Path) -> None:
    """.NAME.mlx-PID[-N].tmp, locked while in use: what hydration's stale-temp cleanup
    recognises and leaves alone; a second temp for the same file takes the next name."""
    target = tmp_path / "model.bin"
    fd1, tmp1 = create_temp(target)
    fd2, tmp2 = create_temp(target)
    try:
        assert tmp1.name == f".model.bin.mlx-{os.getpid()}.tmp"
        assert tmp2.name == f".model.bin.mlx-{os.getpid()}-1.tmp"
        probe = os.open(tmp1, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(probe)
    finally:
        os.close(fd1)
        os.close(fd2)


def test_a_long_name_gets_a_short_temp_name(tmp_path: Path) -> None:
    target = tmp_path / ("x" * 250)
    write_atomic(target, b"data")
    assert target.read_bytes() == b"data"


@pytest.mark.parametrize("value, length, ok", [
    ("ab" * 32, 64, True),
    ("0123456789abcdef" * 2 + "0" * 8, 40, True),
    ("AB" * 32, 64, False),     # lowercase only
    ("ab" * 32, 40, False),     # the length asked for
    ("ab" * 32 + "\n", 64, False),
    ("g" * 64, 64, False),
    (b"ab" * 32, 64, False),    # a str, not bytes
    (None, 64, False),
])
def test_is_hex_id(value: object, length: int, ok: bool) -> None:
    assert is_hex_id(value, length) is ok


def test_explain_os_error_names_path_place_and_setting(tmp_path: Path) -> None:
    """Permission errors cannot be provoked as root (CI): the message is checked directly."""
    import errno as errno_mod

    from gitext.errors import LocalWriteError, explain_os_error, name_place

    cache = tmp_path / "team-cache"
    name_place(cache, "the cache", "cache.dir (in .git/mlx/config.yaml)")
    name_place(cache / "sub", "a nested place", None)  # the longest prefix wins
    denied = explain_os_error(PermissionError(errno_mod.EACCES, "Permission denied",
                                              str(cache / "tmp" / "x")))
    assert isinstance(denied, LocalWriteError)
    assert denied.message == f"permission denied writing {cache / 'tmp' / 'x'} in the cache ({cache})"
    assert denied.hint == (f"check who owns {cache / 'tmp'} and its mode, or set cache.dir "
                           "(in .git/mlx/config.yaml) to a directory you can write")
    nested = explain_os_error(OSError(errno_mod.EROFS, "Read-only", str(cache / "sub" / "y")))
    assert nested is not None and nested.message.startswith(f"a nested place ({cache / 'sub'})")
    elsewhere = explain_os_error(OSError(errno_mod.ENOSPC, "No space", str(tmp_path / "w" / "f")))
    assert elsewhere is not None
    assert elsewhere.message == f"no space left on the device while writing {tmp_path / 'w' / 'f'}"
    assert elsewhere.hint == "free some space there"
    assert explain_os_error(OSError(errno_mod.ENOENT, "gone", "x")) is None
    assert explain_os_error(ValueError("x")) is None
    # write_all names the file os.write does not
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(OSError) as info:
            write_all(fd, b"x" * 10, tmp_path / "named")
    finally:
        os.close(fd)
    assert info.value.filename == str(tmp_path / "named")
