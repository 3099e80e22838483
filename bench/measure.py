"""Run a step's commands and measure wall time, CPU of the child tree, peak memory and bytes stored.

CPU is user+sys from os.wait4 on each child, which on Linux includes every descendant the child
waited for (git's filter process, hooks, transfer workers). Memory is reported two ways:
  tree_peak_rss  peak of the summed RSS of the child and all its descendants, sampled every
                 SAMPLE_INTERVAL s from /proc (about every 3 ms during the first 0.1 s); a command
                 too short to be sampled at all falls back to max_rss
  max_rss        the largest single-process peak (ru_maxrss) among the child and waited descendants.
                 Linux carries the forking process's high-water mark across exec into ru_maxrss, so
                 this is never below the harness's own RSS at the spawn (~25 MiB); read it as an
                 upper bound for small commands.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SAMPLE_INTERVAL = 0.025
FAST_PERIOD = 0.1
FAST_INTERVAL = 0.001
PAGE = os.sysconf("SC_PAGE_SIZE")
STDERR_TAIL = 1500


@dataclass
class Cmd:
    """One command of a step: argv, where it runs, and optionally files for stdin/stdout."""

    argv: list[str]
    cwd: Path | None = None
    stdout: Path | None = None
    stdin: Path | None = None

    def text(self) -> str:
        s = " ".join(self.argv)
        if self.stdin:
            s += f" < {self.stdin}"
        if self.stdout:
            s += f" > {self.stdout}"
        return s


@dataclass
class Measurement:
    wall: float = 0.0
    cpu_user: float = 0.0
    cpu_sys: float = 0.0
    tree_peak_rss: int = 0
    tree_peak_rss_sampled: int = 0
    max_rss: int = 0
    ok: bool = True
    returncode: int = 0
    error: str = ""
    commands: list[str] = field(default_factory=list)
    stdout_tail: str = ""

    @property
    def cpu(self) -> float:
        return self.cpu_user + self.cpu_sys

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["cpu"] = self.cpu
        return d


def _ppid_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may contain spaces and parentheses, so cut at the last ')'
        ppid = int(stat[stat.rindex(b")") + 2:].split(b" ", 2)[1])
        children.setdefault(ppid, []).append(int(name))
    return children


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss(root: int) -> int:
    """Summed resident memory (bytes) of `root` and all its descendants right now."""
    children = _ppid_map()
    total = 0
    todo = [root]
    seen = set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _rss(pid)
        todo.extend(children.get(pid, ()))
    return total


class TreeSampler(threading.Thread):
    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak = _rss(root)  # at once, in the caller's thread: a short command may be gone soon
        self._stop_event = threading.Event()

    def run(self) -> None:
        # Back to back for the first FAST_PERIOD s, so a command of a few ms still gets samples
        # once it has faulted its memory in; then every SAMPLE_INTERVAL s.
        start = time.perf_counter()
        while True:
            self.peak = max(self.peak, tree_rss(self.root))
            fast = time.perf_counter() - start < FAST_PERIOD
            if self._stop_event.wait(FAST_INTERVAL if fast else SAMPLE_INTERVAL):
                return

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


def _tail(path: Path, limit: int = STDERR_TAIL) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - limit))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""


def run_one(cmd: Cmd, env: Mapping[str, str], timeout: float, m: Measurement) -> bool:
    """Run one command, adding its costs to `m`; False (and m.error set) if it failed."""
    m.commands.append(cmd.text())
    with tempfile.TemporaryDirectory(prefix="bench-io-") as tmp:
        err_path = Path(tmp) / "stderr"
        out_path = cmd.stdout or Path(tmp) / "stdout"
        with open(err_path, "wb") as err, open(out_path, "wb") as out, \
                open(cmd.stdin or os.devnull, "rb") as inp:
            proc = subprocess.Popen(cmd.argv, cwd=cmd.cwd, env=dict(env), stdin=inp, stdout=out,
                                    stderr=err, start_new_session=True)
            sampler = TreeSampler(proc.pid)
            sampler.start()
            timer = threading.Timer(timeout, _kill_group, (proc.pid,))
            timer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            except BaseException:
                _kill_group(proc.pid)
                proc.wait()
                raise
            finally:
                timer.cancel()
                peak = sampler.stop()
            rc = os.waitstatus_to_exitcode(status)
            proc.returncode = rc
        m.cpu_user += usage.ru_utime
        m.cpu_sys += usage.ru_stime
        m.max_rss = max(m.max_rss, usage.ru_maxrss * 1024)
        m.tree_peak_rss_sampled = max(m.tree_peak_rss_sampled, peak)
        m.tree_peak_rss = m.tree_peak_rss_sampled or m.max_rss
        if cmd.stdout is None:
            m.stdout_tail = _tail(out_path, 400)
        if rc != 0:
            m.ok = False
            m.returncode = rc
            why = f"timed out after {timeout:.0f} s" if rc == -signal.SIGKILL else f"exit {rc}"
            m.error = f"`{cmd.text()}` {why}: {_tail(err_path)}"
            return False
    return True


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def settle() -> None:
    """Write back dirty pages (twice: the loop file system's writes land in its image file's page
    cache), so one step's writeback does not bill the next. Caches are kept warm, never dropped."""
    os.sync()
    os.sync()


def run_step(cmds: Sequence[Cmd], env: Mapping[str, str], timeout: float = 3600) -> Measurement:
    """Run the commands in order (stopping at the first failure) as one measured step."""
    settle()
    m = Measurement()
    start = time.perf_counter()
    for cmd in cmds:
        if not run_one(cmd, env, timeout, m):
            break
    m.wall = time.perf_counter() - start
    return m


@dataclass
class DirSize:
    apparent: int = 0
    disk: int = 0
    files: int = 0

    def to_json(self) -> dict[str, int]:
        return asdict(self)


def dir_size(path: Path) -> DirSize:
    """Apparent size (sum of st_size) and disk usage (st_blocks*512, each inode once) of a tree."""
    size = DirSize()
    seen: set[tuple[int, int]] = set()
    if not path.exists():
        return size
    todo = [path]
    while todo:
        with os.scandir(todo.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    todo.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    size.apparent += st.st_size
                    size.files += 1
                    if (st.st_dev, st.st_ino) not in seen:
                        seen.add((st.st_dev, st.st_ino))
                        size.disk += st.st_blocks * 512
    return size


def median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    if n == 0:
        return 0.0
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _pkt(data: bytes) -> bytes:
    return b"%04x" % (len(data) + 4) + data


def _read_until_flush(stream: Any) -> list[bytes]:
    lines: list[bytes] = []
    while True:
        head = stream.read(4)
        if len(head) != 4:
            raise EOFError("filter process closed its output during the handshake")
        n = int(head, 16)
        if n == 0:
            return lines
        lines.append(stream.read(n - 4))


def filter_handshake(argv: list[str], cwd: Path, env: Mapping[str, str],
                     timeout: float) -> tuple[float, Measurement]:
    """Start a long-running filter process, do git's pkt-line handshake, close stdin, wait.

    Returns (seconds from spawn to the end of the capability exchange, the whole run's Measurement).
    """
    m = Measurement(commands=[" ".join(argv) + "  (pkt-line handshake, then EOF)"])
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=dict(env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=err, start_new_session=True)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        timer = threading.Timer(timeout, _kill_group, (proc.pid,))
        timer.start()
        handshake = 0.0
        assert proc.stdin is not None and proc.stdout is not None
        try:
            try:
                proc.stdin.write(_pkt(b"git-filter-client\n") + _pkt(b"version=2\n") + b"0000")
                proc.stdin.flush()
                welcome = _read_until_flush(proc.stdout)
                if welcome[:1] != [b"git-filter-server\n"] or b"version=2\n" not in welcome:
                    raise EOFError(f"unexpected welcome {welcome!r}")
                proc.stdin.write(_pkt(b"capability=clean\n") + _pkt(b"capability=smudge\n")
                                 + _pkt(b"capability=delay\n") + b"0000")
                proc.stdin.flush()
                caps = _read_until_flush(proc.stdout)
                handshake = time.perf_counter() - start
                if not caps:
                    raise EOFError("no capabilities announced")
            except (EOFError, ValueError, OSError) as e:
                m.ok = False
                m.error = f"handshake failed: {e}"
            proc.stdin.close()
            proc.stdout.read()
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            _kill_group(proc.pid)
            proc.wait()
            raise
        finally:
            timer.cancel()
            peak = sampler.stop()
        m.wall = time.perf_counter() - start
        proc.stdout.close()
        rc = os.waitstatus_to_exitcode(status)
        proc.returncode = rc
        m.cpu_user, m.cpu_sys = usage.ru_utime, usage.ru_stime
        m.max_rss = usage.ru_maxrss * 1024
        m.tree_peak_rss_sampled = peak
        m.tree_peak_rss = peak or m.max_rss
        if rc != 0 and m.ok:
            m.ok = False
            m.returncode = rc
            err.seek(0)
            m.error = f"exit {rc}: {err.read()[-STDERR_TAIL:].decode(errors='replace').strip()}"
    return handshake, m
