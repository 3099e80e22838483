"""Every failure git-mlx reports, and the exit code each maps to.

This module imports nothing from the package, so any module may raise these.

    MlxError                      base: a message a user can act on (what failed, what to do)
    ├── UsageError                bad arguments or configuration            exit 2
    ├── NotARepository            not inside a git work tree                exit 2
    ├── InvalidPointer            bytes that should be a pointer are not    exit 1
    ├── ObjectError               a stored object is missing or bad         exit 1
    │   ├── ObjectMissing         not in the cache / on the remote
    │   └── CorruptObject         present but fails its hash check
    ├── RemoteError               a remote could not be reached or written  exit 3
    │   ├── RemoteRefused         it answered no: credentials, host key, permissions
    │   └── RemoteUnsupported     a URL scheme this version cannot use
    ├── ProtocolError             git spoke something the filter protocol does not allow
    └── TransferFailed            some objects did not move (details listed) exit 3

`cli.main` is the only place that turns these into exit codes (and the only `sys.exit`).
"""

from __future__ import annotations

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
