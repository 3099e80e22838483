"""Every failure git-mlx reports, and the exit code each maps to.

This module imports nothing from the package, so any module may raise these.

    MlxError                      base: a message a user can act on (what failed, what to do)
    ├── UsageError                bad arguments or configuration            exit 2
    ├── NotARepository            not inside a git work tree                exit 2
    ├── InvalidPointer            bytes that should be a pointer are not    exit 1
    ├── ObjectError               a stored object is missing or bad         exit 1
    │   ├── ObjectMissing         not in the cache / on the remote
    │   ├── CorruptObject         present but fails its hash check
    │   └── UnsupportedObject     written by a newer git-mlx (upgrade to read it)
    ├── RemoteError               a remote could not be reached or written  exit 3
    │   ├── RemoteRefused         it answered no: credentials, host key, permissions
    │   └── RemoteUnsupported     a URL scheme this version cannot use
    ├── ProtocolError             git spoke something the filter protocol does not allow
    ├── LocalWriteError           a disk is full, read-only or not ours to write     exit 1
    └── TransferFailed            some objects did not move (details listed) exit 3

`cli.main` is the only place that turns these into exit codes (and the only `sys.exit`).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_REMOTE = 3
EXIT_INTERRUPTED = 130


class MlxError(Exception):
    """An error whose message is for the user: it says what failed and what to do."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\nhint: {self.hint}"
        return self.message


class UsageError(MlxError):
    exit_code = EXIT_USAGE


class Interrupted(MlxError):
    """Ctrl-C (or SIGTERM) stopped a command that says what it left undone."""

    exit_code = EXIT_INTERRUPTED


class NotARepository(MlxError):
    exit_code = EXIT_USAGE


class InvalidPointer(MlxError):
    """Bytes that claim to be (or must be) a git-mlx pointer but are not canonical."""


class ObjectError(MlxError):
    """A content-addressed object is missing or damaged."""

    def __init__(self, message: str, oid: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.oid = oid


class ObjectMissing(ObjectError):
    pass


class CorruptObject(ObjectError):
    pass


class UnsupportedObject(ObjectError):
    """An object written by a newer git-mlx (a format or codec this one does not know): not
    damaged, so never moved aside; upgrading reads it."""


class RemoteError(MlxError):
    exit_code = EXIT_REMOTE


class RemoteRefused(RemoteError):
    """The remote answered and said no (bad credentials, an unknown or changed host key,
    permission denied): trying again cannot help, so transfers stop at once."""


class RemoteUnsupported(RemoteError):
    exit_code = EXIT_USAGE


class ProtocolError(MlxError):
    pass


class TransferFailed(MlxError):
    """Some objects did not move; `failures` maps object id -> why (`str()` of it is the
    reason; a transfer's carries its kind too)."""

    exit_code = EXIT_REMOTE

    def __init__(self, message: str, failures: Mapping[str, object], hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.failures = failures


class LocalWriteError(MlxError):
    """A local write failed for a reason the user fixes outside git-mlx: the disk is full,
    read-only, or the directory is not the user's to write (made by `explain_os_error`)."""

    def __init__(self, message: str, hint: str | None = None, path: str = "") -> None:
        super().__init__(message, hint)
        self.path = path


# Directories git-mlx writes to, with what a user calls them and the setting that moves them:
# registered by whoever learns them (the Context for the cache and local remotes), read by
# `explain_os_error` so that "disk full" names the setting to change. Longest prefix wins.
_PLACES: dict[str, tuple[str, str | None]] = {}

_FULL = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY = (errno.EROFS,)
_DENIED = (errno.EACCES, errno.EPERM)


def name_place(directory: os.PathLike[str] | str, what: str, setting: str | None = None) -> None:
    """Remember that `directory` is `what` (\"the cache\"), moved by `setting` (or None)."""
    _PLACES[os.path.abspath(os.fspath(directory))] = (what, setting)


def _place_of(path: str) -> tuple[str, str, str | None] | None:
    best: tuple[str, str, str | None] | None = None
    for root, (what, setting) in _PLACES.items():
        if (path == root or path.startswith(root.rstrip(os.sep) + os.sep)) and (
                best is None or len(root) > len(best[0])):
            best = (root, what, setting)
    return best


def explain_os_error(exc: BaseException) -> LocalWriteError | None:
    """The user's message for a full disk, a read-only file system or a permission error
    (naming the path, the place and the setting that moves it); None for any other error."""
    if isinstance(exc, LocalWriteError):
        return exc
    if not isinstance(exc, OSError) or exc.errno not in (*_FULL, *_READ_ONLY, *_DENIED):
        return None
    path = os.path.abspath(os.fsdecode(exc.filename)) if exc.filename is not None else ""
    found = _place_of(path) if path else None
    root, what, setting = found if found else ("", "", None)
    place = f"{what} ({root})" if found else ""
    writing = f"writing {path}" if path else "writing"
    elsewhere = (f"; or set {setting} to a directory on another disk" if setting else "")
    if exc.errno in _FULL:
        gc = " (`git mlx gc` frees cached files a remote has)" if what == "the cache" else ""
        where = f"the device holding {place}" if place else "the device"
        return LocalWriteError(f"no space left on {where} while {writing}",
                               f"free some space there{gc}{elsewhere}", path)
    if exc.errno in _READ_ONLY:
        where = f"{place} is on a read-only file system" if place else "read-only file system"
        return LocalWriteError(f"{where}: cannot write {path or 'there'}",
                               "remount it read-write" + (f", or set {setting} to a writable "
                                                          "directory" if setting else ""), path)
    parent = os.path.dirname(path) if path else "the directory"
    return LocalWriteError(f"permission denied {writing}" + (f" in {place}" if place else ""),
                           f"check who owns {parent} and its mode" + (
                               f", or set {setting} to a directory you can write" if setting
                               else ""), path)
