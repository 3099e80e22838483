"""Remembers which pointer a work-tree file cleans to, keyed by its stat data, so that git
re-checking a file git-mlx just wrote (a "racily clean" entry after checkout) does not pay for
chunking and compressing it again.

An entry is (path, size, mtime_ns, ctime_ns, inode) -> oid. A hit is only a hint: clean still
hashes the bytes git sends and uses the hint only when they hash to the remembered oid.
Stored in <common dir>/mlx/statcache.db (sqlite: concurrent readers and writers are safe).

The path is stored as a BLOB of git's own bytes (`path_key`), not as TEXT: a git path need not
be UTF-8, and sqlite refuses a str holding the surrogates that stand for such bytes. (Rows an
older version stored as TEXT never match a BLOB key: they only cost a re-hash, once.)
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from gitext.formats.pointer import Pointer

if TYPE_CHECKING:
    import sqlite3

Key = tuple[int, int, int, int]


def stat_key(st: os.stat_result) -> Key:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def path_key(path: str) -> bytes:
    """The row key for a path: its bytes as git has them (str paths carry non-UTF-8 bytes as
    surrogates, see pktline.read_text)."""
    return path.encode("utf-8", "surrogateescape")


class StatCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            import sqlite3  # here, not at import: the filter process starts without it

            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            # synchronous=OFF first: a lost entry only costs a re-hash, and switching a new
            # database to WAL otherwise waits for an fsync (0.3 s right after a 256 MiB clone).
            db.execute("PRAGMA synchronous=OFF")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS entries (path TEXT PRIMARY KEY, size INTEGER,"
                       " mtime INTEGER, ctime INTEGER, ino INTEGER, oid TEXT)")
            self._db = db
        return self._db

    def lookup(self, path: str, st: os.stat_result) -> Pointer | None:
        try:
            row = self._conn().execute(
                "SELECT size, mtime, ctime, ino, oid FROM entries WHERE path = ?", (path_key(path),)
            ).fetchone()
        except _db_errors():
            return None
        if row is None or tuple(row[:4]) != stat_key(st):
            return None
        return Pointer(row[4], row[0])

    def record(self, items: Iterable[tuple[str, os.stat_result, str]]) -> None:
        rows = [(path_key(path), *stat_key(st), oid) for path, st, oid in items]
        if not rows:
            return
        try:
            db = self._conn()
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)", rows)
            db.execute("COMMIT")
        except _db_errors():
            return  # a cache: failing to remember is never an error

    def forget(self, path: str) -> None:
        try:
            self._conn().execute("DELETE FROM entries WHERE path = ?", (path_key(path),))
        except _db_errors():
            return

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _db_errors() -> type[Exception]:
    import sqlite3

    return sqlite3.Error
