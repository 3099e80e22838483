"""A one-line progress bar on stderr, drawn only on a terminal.

stdout belongs to git in filter and hook modes, so progress never goes there; and a log file
or a CI console gets no bar at all, only the one-line summary the caller prints.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import TextIO

from gitext.log import quiet

REDRAW_INTERVAL = 0.1  # seconds: at most about 10 redraws a second


def format_bytes(n: float) -> str:
    """1536 -> "1.5 KiB"; binary units, as sizes on disk are usually read."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def plural(n: int, noun: str) -> str:
    """(1, "file") -> "1 file"; (2, "file") -> "2 files"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def format_summary(verb: str, files: int, chunks: int, nbytes: int, seconds: float,
                   where: str = "") -> str:
    """"uploaded 301 files (722 chunks, 128.0 MiB) to origin in 2.1 s, 60.9 MiB/s".

    Files are what the user has in the work tree (one pointer each); chunks are the pieces
    of them that moved (a file whose chunks the other side had moves none)."""
    where = f" {where}" if where else ""
    rate = format_bytes(nbytes / seconds) + "/s" if seconds > 0 else "-"
    return (f"{verb} {plural(files, 'file')} ({plural(chunks, 'chunk')}, {format_bytes(nbytes)})"
            f"{where} in {seconds:.1f} s, {rate}")


class Progress:
    """Counts items (`unit`: files for transfers) and bytes (thread-safe) and, on a terminal,
    redraws a one-line bar.

    `enabled=None` means "only if `stream` is a terminal and GIT_MLX_QUIET is not set". When
    disabled, `advance` only adds two numbers under a lock; nothing is formatted or written.
    """

    def __init__(self, label: str, total_objects: int, total_bytes: int,
                 stream: TextIO | None = None, enabled: bool | None = None,
                 unit: str = "file") -> None:
        self.label = label
        self.unit = unit
        self.total_objects = total_objects
        self.total_bytes = total_bytes
        self.stream: TextIO = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty()) and not quiet()
        self.enabled = enabled
        self.objects = 0
        self.nbytes = 0
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._last_draw = float("-inf")
        self._drawn = False

    def advance(self, objects: int = 1, nbytes: int = 0) -> None:
        with self._lock:
            self.objects += objects
            self.nbytes += nbytes
            if not self.enabled:
                return
            now = time.monotonic()
            finished = self.objects >= self.total_objects and objects > 0
            if finished or now - self._last_draw >= REDRAW_INTERVAL:
                self._last_draw = now
                self._draw(now)

    def grow(self, objects: int = 0, nbytes: int = 0) -> None:
        """Raise the totals when more work is discovered (downloads learn chunks late)."""
        with self._lock:
            self.total_objects += objects
            self.total_bytes += nbytes

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def line(self, now: float | None = None) -> str:
        """The bar's text: label, files done/total, bytes (of total if known), rate."""
        seconds = max((now if now is not None else time.monotonic()) - self._start, 1e-9)
        size = format_bytes(self.nbytes)
        if self.total_bytes:
            pct = min(100, 100 * self.nbytes // self.total_bytes)
            size = f"{size} / {format_bytes(self.total_bytes)} ({pct}%)"
        rate = format_bytes(self.nbytes / seconds)
        units = self.unit if self.total_objects == 1 else self.unit + "s"
        return f"{self.label}: {self.objects}/{self.total_objects} {units}, {size}, {rate}/s"

    def _draw(self, now: float) -> None:
        width = shutil.get_terminal_size((80, 24)).columns
        text = self.line(now)[: max(width - 1, 10)]
        self.stream.write("\r" + text + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Clear the bar so the caller's summary (or git's next line) starts clean."""
        with self._lock:
            if self.enabled and self._drawn:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self._drawn = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NullProgress(Progress):
    """A progress that counts nothing and draws nothing."""

    def __init__(self, label: str = "", total_objects: int = 0, total_bytes: int = 0,
                 stream: TextIO | None = None, enabled: bool | None = None,
                 unit: str = "file") -> None:
        super().__init__(label, total_objects, total_bytes, stream, enabled=False)

    def advance(self, objects: int = 1, nbytes: int = 0) -> None:
        return None

    def close(self) -> None:
        return None
