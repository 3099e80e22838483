"""Differential, stateful test: git-mlx against a plain-git twin (docs/differential.md).

Two "sides" live in one scratch directory, each a bare `origin.git` with two clones `A` and `B`:

- `mlx`:   git-mlx installed for its own HOME, `*.bin` and `data/**` tracked, direct hydration
           from 64 KiB (GIT_MLX_DIRECT_MIN_SIZE) so the large-file path runs on small data;
- `plain`: another HOME with no filter configured. Both commit the *same* .gitattributes
           (`filter=mlx` naming an undefined driver is no filter at all to git), so the file
           compares like any other.

A seeded random walk picks operations (file edits, git commands, git-mlx maintenance, races)
from the plain side's state, runs each on the plain side and then on the mlx side, and after
every step compares the clone it touched: every work-tree entry (bytes, type, symlink target,
exec bit, directories), `git status --porcelain`, the index (paths, modes, stages; a blob that
differs must be a pointer to the plain side's blob), the exit status of every git command,
the current branch and first-parent history (by subject), the branch list and the stash count.
Any difference stops the walk with a replay file: the ops so far, as JSON, that `--replay`
runs again and `--minimize` shrinks.

Operations that hit a bug of issue 12 that is being fixed elsewhere are behind a flag per
item (KNOWN); the CI test turns on the ones whose fix is merged.

Run `python3 -m tests.difftwin --help` from the repository root.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    from mlxtest import ROOT, python_shim_dir
    from serverctl import GiftlessServer
except ImportError:  # run as `python3 -m tests.difftwin`
    from tests.mlxtest import ROOT, python_shim_dir
    from tests.serverctl import GiftlessServer

# Each flag gates the operations that hit one known, being-fixed item of issue 12. With a flag
# off the walk never generates (and a replay skips) those operations.
KNOWN: dict[str, str] = {
    "concurrent-hydration": "item 1: a write racing the hydration of a large file is overwritten",
    "racy-same-size": "item 2: a same-size edit with the mtime restored right after hydration is hidden",
    "remote-gc": "item 3: `gc --remote` then a push trusting stale remote-tracking refs",
    "gc-races-add": "item 4: `git mlx gc` concurrent with `git add` frees reused chunks",
    "pointer-lookalike": "item 5: a plain file whose bytes are a pointer gets hydrated",
    "symlink-tracked": "item 6: a symlink at a tracked path (large file -> symlink in a rebase/cherry-pick)",
    "rebase-stat": "item 7: rebase / pull --rebase leaves hydrated files ' M'",
    "rebase-exec": "item 8: `rebase -x CMD` runs CMD on pointer text",
    "non-utf8-names": "item 9: non-UTF-8 file names",
    "corrupt-mlx-yaml": "item 13: a corrupt (untracked) .mlx.yaml breaks checkout half-way",
    "large-merge-conflict": "item 14: conflicting merges of a tracked file (no merge driver)",
}

TRACK_PATTERNS = ("*.bin", "data/**")
XOR_TABLE = bytes(b ^ 0x5A for b in range(256))
DIRECT_MIN_SIZE = 64 * 1024
SCRUB_PREFIXES = ("GIT_", "XDG_CONFIG_HOME", "SSH_AUTH_SOCK")

# Paths the walk writes. Overlapping names (swap / swap/f.bin) make file <-> directory changes.
PLAIN_NAMES = ["a.txt", "b.txt", "notes.md", "sub/c.txt", "sub/deep/e.txt", "swap", "with space.txt"]
TRACKED_NAMES = ["m1.bin", "m2.bin", "big.bin", "sub/w.bin", "data/x.csv", "data/y", "data/deep/z.txt",
                 "swap/f.bin", "with space.bin"]
NON_UTF8_NAMES = ["p-\udce9.bin", "q-\udcff.txt"]  # os.fsdecode(b"p-\xe9.bin") ...


def is_tracked(path: str) -> bool:
    """Whether `path` matches the mlx side's track patterns (`*.bin`, `data/**`)."""
    return path.rsplit("/", 1)[-1].endswith(".bin") or path.startswith("data/")


class Divergence(AssertionError):
    """The two sides differ; `kind` groups failures for minimisation."""

    def __init__(self, kind: str, details: str) -> None:
        super().__init__(f"[{kind}] {details}")
        self.kind = kind
        self.details = details


@dataclass
class Config:
    """What a walk may do; saved in every replay file."""

    seed: int = 0
    steps: int = 200
    flags: list[str] = field(default_factory=list)
    max_size: int = 20 * 2**20
    large_every: int = 40  # about one write in N is "large" (1 MiB .. max_size)
    renames: bool = False  # git's rename detection (off: it compares pointer text, see docs)
    timeout: float = 600
    # Where the mlx side stores: "local" (zero-config, beside origin.git) or "lfs" (a giftless
    # Git LFS server on loopback, named by lfs.url in the side's global git config: the lfs
    # kind's zero-config, with its directory ref on origin.git)
    storage: str = "local"

    def on(self, flag: str) -> bool:
        return flag in self.flags


# ---------------------------------------------------------------------------- content


def make_bytes(seed: int, size: int, binary: bool) -> bytes:
    """Deterministic content: random bytes (with a NUL, so git calls it binary) or text lines."""
    rng = random.Random(seed)
    if binary:
        data = rng.randbytes(size)
        return (b"\0" + data[1:]) if size else b""
    words = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]
    out = bytearray()
    n = 0
    while len(out) < size:
        out += f"line {n} {rng.choice(words)} {rng.randrange(1000)}\n".encode()
        n += 1
    return bytes(out[:size])


def pick_size(rng: random.Random, cfg: Config, tracked: bool) -> int:
    r = rng.random()
    if not tracked:
        return rng.choice([0, rng.randrange(1, 200), rng.randrange(200, 4000)])
    if r < 0.04:
        return 0
    if r < 1 / cfg.large_every:
        return rng.randrange(min(2**20, cfg.max_size), cfg.max_size + 1)
    if r < 0.30:
        return rng.randrange(DIRECT_MIN_SIZE - 100, min(2**20, cfg.max_size) + 1)  # direct
    if r < 0.45:
        return rng.randrange(4096, DIRECT_MIN_SIZE)
    return rng.randrange(1, 4096)


def parse_pointer(data: bytes) -> tuple[str, int] | None:
    m = re.fullmatch(rb"version git-mlx/1\noid sha256:([0-9a-f]{64})\nsize (0|[1-9][0-9]*)\n", data)
    return (m.group(1).decode(), int(m.group(2))) if m else None


# ---------------------------------------------------------------------------- sides


@dataclass
class Result:
    cmd: list[str]
    rc: int
    stdout: bytes
    stderr: bytes


class Side:
    """One of the twins: origin.git and its clones A and B, with its own HOME and env."""

    def __init__(self, name: str, root: Path, env: dict[str, str], log: list[str], timeout: float) -> None:
        self.name = name
        self.root = root
        self.env = env
        self.origin = root / "origin.git"
        self.log = log
        self.timeout = timeout
        self.sha_cache: dict[str, tuple[int, str]] = {}  # blob id -> (size, sha256)
        self.ptr_cache: dict[str, tuple[str, int] | None] = {}  # blob id -> parsed pointer
        self.file_cache: dict[tuple[int, ...], str] = {}  # stat key -> sha256

    def clone(self, name: str) -> Path:
        return self.root / name

    def run(self, cmd: Sequence[str], cwd: Path, *, input: bytes | None = None,
            extra_env: dict[str, str] | None = None, quiet: bool = False) -> Result:
        env = dict(self.env)
        if extra_env:
            env.update(extra_env)
        try:
            proc = subprocess.run(list(cmd), cwd=cwd, env=env, input=input, capture_output=True,
                                  timeout=self.timeout)
            res = Result(list(cmd), proc.returncode, proc.stdout, proc.stderr)
        except subprocess.TimeoutExpired as exc:
            res = Result(list(cmd), -999, exc.stdout or b"", (exc.stderr or b"") + b"\n[harness: timed out]")
        if not quiet:
            err = res.stderr.decode(errors="replace").strip()
            short = (err[:600] + " ...") if len(err) > 600 else err
            self.log.append(f"  {self.name}:{cwd.name}$ {' '.join(map(_show, cmd))} -> {res.rc}"
                            + (f"\n      {short}".replace("\n", "\n      ") if short else ""))
        return res

    def git(self, clone: str, *args: str, input: bytes | None = None, quiet: bool = False,
            extra_env: dict[str, str] | None = None) -> Result:
        return self.run(["git", *args], self.clone(clone), input=input, quiet=quiet, extra_env=extra_env)

    def must(self, clone: str, *args: str) -> bytes:
        res = self.git(clone, *args, quiet=True)
        if res.rc != 0:
            raise RuntimeError(f"{self.name}:{clone}: git {' '.join(args)} failed ({res.rc}): "
                               f"{res.stderr.decode(errors='replace')}")
        return res.stdout


def _show(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./~^-]+", arg) else repr(arg)


# ---------------------------------------------------------------------------- snapshots


@dataclass
class Snapshot:
    tree: dict[str, tuple[Any, ...]]
    status: bytes
    index: list[tuple[str, str, str, str]]  # (path, mode, stage, blob)
    head: str  # branch name or "(detached)"
    history: list[str]
    branches: list[str]
    remotes: list[str]
    stashes: int
    in_progress: str  # merge / rebase / cherry-pick / "" (+ "unmerged" if the index has stages)

    def files(self) -> list[str]:
        return [p for p, v in self.tree.items() if v[0] == "f"]

    def entries(self) -> list[str]:
        return [p for p, v in self.tree.items() if v[0] in "fl"]


def walk_tree(side: Side, top: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under `top` except .git: ('d',), ('l', target), ('f', exec, size, sha256)."""
    out: dict[str, tuple[Any, ...]] = {}

    def visit(directory: bytes, prefix: str) -> None:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            name = os.fsdecode(e.name)
            rel = f"{prefix}{name}"
            if rel == ".git":
                continue
            st = os.lstat(e.path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.fsdecode(os.readlink(e.path)))
            elif stat.S_ISDIR(st.st_mode):
                out[rel + "/"] = ("d",)
                visit(e.path, rel + "/")
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                digest = side.file_cache.get(key)
                if digest is None:
                    h = hashlib.sha256()
                    with open(e.path, "rb") as f:
                        while block := f.read(1 << 20):
                            h.update(block)
                    digest = side.file_cache[key] = h.hexdigest()
                out[rel] = ("f", bool(st.st_mode & 0o100), st.st_size, digest)
            else:
                out[rel] = ("?", stat.S_IFMT(st.st_mode))

    visit(os.fsencode(top), "")
    return out


def in_progress(git_dir: Path) -> str:
    for marker, name in (("rebase-merge", "rebase"), ("rebase-apply", "rebase"), ("MERGE_HEAD", "merge"),
                         ("CHERRY_PICK_HEAD", "cherry-pick"), ("REVERT_HEAD", "revert")):
        if (git_dir / marker).exists():
            return name
    return ""


def snapshot(side: Side, clone: str) -> Snapshot:
    top = side.clone(clone)
    status = side.must(clone, "status", "--porcelain")
    index = []
    for rec in side.must(clone, "ls-files", "-s", "-z").split(b"\0"):
        if rec:
            meta, path = rec.split(b"\t", 1)
            mode, blob, stage = meta.decode().split()
            index.append((os.fsdecode(path), mode, stage, blob))
    head = side.git(clone, "symbolic-ref", "-q", "--short", "HEAD", quiet=True)
    has_head = side.git(clone, "rev-parse", "-q", "--verify", "HEAD", quiet=True).rc == 0
    history = (side.must(clone, "log", "--first-parent", "--format=%s", "-n", "25").decode()
               .replace(str(side.root), "<twin>").splitlines() if has_head else [])
    refs = side.must(clone, "for-each-ref", "--format=%(refname)").decode().splitlines()
    stashes = len(side.must(clone, "stash", "list").splitlines())
    prog = in_progress(top / ".git")
    if any(stage != "0" for _, _, stage, _ in index):
        prog = (prog + " unmerged").strip()
    return Snapshot(
        tree=walk_tree(side, top),
        status=status,
        index=index,
        head=head.stdout.decode().strip() if head.rc == 0 else "(detached)",
        history=history,
        branches=[r[len("refs/heads/"):] for r in refs if r.startswith("refs/heads/")],
        remotes=[r[len("refs/remotes/"):] for r in refs if r.startswith("refs/remotes/")],
        stashes=stashes,
        in_progress=prog,
    )


def cat_blobs(side: Side, clone: str, blobs: Iterable[str]) -> dict[str, bytes]:
    ids = sorted(set(blobs))
    if not ids:
        return {}
    res = side.git(clone, "cat-file", "--batch", input="".join(f"{b}\n" for b in ids).encode(), quiet=True)
    out: dict[str, bytes] = {}
    data = res.stdout
    pos = 0
    for blob in ids:
        nl = data.index(b"\n", pos)
        header = data[pos:nl].split()
        pos = nl + 1
        if len(header) < 3:  # "<id> missing"
            continue
        size = int(header[2])
        out[blob] = data[pos:pos + size]
        pos += size + 1
    return out


def compare_index(plain: Side, mlx: Side, clone: str, p: Snapshot, m: Snapshot) -> list[str]:
    """Same paths, modes and stages; a differing blob must be a pointer to the plain blob's bytes."""
    problems = []
    # Sorted by the normalised key: parked names hold each side's own commit id, which can
    # order them differently in the index.
    pidx = sorted(p.index, key=lambda e: (norm_path(e[0]), e[2]))
    midx = sorted(m.index, key=lambda e: (norm_path(e[0]), e[2]))
    pk = [(norm_path(path), mode, stage) for path, mode, stage, _ in pidx]
    mk = [(norm_path(path), mode, stage) for path, mode, stage, _ in midx]
    if pk != mk:
        problems.append("index entries differ:\n" + _diff_lines([" ".join(x) for x in pk],
                                                               [" ".join(x) for x in mk]))
        return problems
    pairs = [(pe[0], pe[3], me[3]) for pe, me in zip(pidx, midx, strict=True)
             if pe[3] != me[3] and pe[1] != "160000"]
    need_p = [b for _, b, _ in pairs if b not in plain.sha_cache]
    need_m = [b for _, _, b in pairs if b not in mlx.ptr_cache]
    if need_m:
        sizes = mlx.git(clone, "cat-file", "--batch-check", input="".join(f"{b}\n" for b in need_m).encode(),
                        quiet=True).stdout.decode().splitlines()
        small = [line.split()[0] for line in sizes if len(line.split()) == 3 and int(line.split()[2]) < 1024]
        for b in need_m:
            mlx.ptr_cache[b] = None
        for b, data in cat_blobs(mlx, clone, small).items():
            mlx.ptr_cache[b] = parse_pointer(data)
    for b, data in cat_blobs(plain, clone, need_p).items():
        plain.sha_cache[b] = (len(data), hashlib.sha256(data).hexdigest())
    for path, pb, mb in pairs:
        ptr = mlx.ptr_cache.get(mb)
        want = plain.sha_cache.get(pb)
        if ptr is None or want is None or (ptr[1], ptr[0]) != want:
            if ptr is None and _same_but_markers(plain, mlx, clone, pb, mb):
                continue
            problems.append(f"index blob of {path!r}: plain {pb} {want}, mlx {mb} pointer {ptr}")
    return problems


def _same_but_markers(plain: Side, mlx: Side, clone: str, pb: str, mb: str) -> bool:
    """A conflict stage's blob can hold conflict markers naming commits (the virtual base of a
    criss-cross merge): the same bytes but for those ids."""
    pdata = cat_blobs(plain, clone, [pb]).get(pb)
    mdata = cat_blobs(mlx, clone, [mb]).get(mb)
    return pdata is not None and mdata is not None \
        and _blank_markers(pdata, plain.root) == _blank_markers(mdata, mlx.root)


def _diff_lines(a: list[str], b: list[str]) -> str:
    import difflib

    return "\n".join(difflib.unified_diff(a, b, "plain", "mlx", lineterm="", n=1))


MARKER_RE = re.compile(rb"^(<{7,}|\|{7,}|>{7,}) .*$", re.MULTILINE)  # 8+ in nested conflicts
HEX_RE = re.compile(rb"\b[0-9a-f]{7,64}\b")


def _normalized(path: Path, root: Path) -> bytes:
    """File bytes with commit ids and the twin's own path blanked on conflict-marker lines
    (`>>>>>>> 1a2b3c4 (s12)`: the two sides' commits have different ids)."""
    return _blank_markers(path.read_bytes(), root)


def _blank_markers(data: bytes, root: Path) -> bytes:
    twin = os.fsencode(root)
    return MARKER_RE.sub(lambda m: HEX_RE.sub(b"<id>", m.group(0).replace(twin, b"<twin>")), data)


# git parks a file it cannot place in a conflict as `PATH~<commit id> (subject)` (or `PATH~<id>`);
# the two sides' commit ids differ, so paths compare with the id blanked.
LEFTOVER_RE = re.compile(r"~[0-9a-f]{7,64}(?= \(|/|$)")
LEFTOVER_BYTES_RE = re.compile(rb"~[0-9a-f]{7,64}(?= \(|/|\"|$)", re.MULTILINE)


# A parked file's name: `PATH~<commit id or branch name>[ (subject)]`.
PARKED_RE = re.compile(r"~[^/~]+$")


def norm_path(path: str) -> str:
    return LEFTOVER_RE.sub("~<id>", path)


def _norm_tree(tree: dict[str, tuple[Any, ...]]) -> dict[str, tuple[str, tuple[Any, ...]]]:
    return {norm_path(k): (k, v) for k, v in tree.items()}


def _parked_pointer(plain: tuple[Any, ...], mlx_file: Path) -> bool:
    """By design (docs/differential.md): a tracked file git parks in a conflict as `PATH~<rev>`
    gets a name outside the track patterns, so git writes its blob with no filter: on the mlx
    side the pointer to exactly the plain side's bytes (git-lfs does the same)."""
    from gitext.formats.pointer import try_parse

    if plain[0] != "f" or not mlx_file.is_file() or mlx_file.stat().st_size >= 1024:
        return False
    pointer = try_parse(mlx_file.read_bytes())
    return pointer is not None and (pointer.size, pointer.oid) == (plain[2], plain[3])


def tree_differences(plain: Side, mlx: Side, clone: str, p: Snapshot, m: Snapshot) -> list[str]:
    """Lines naming each work-tree entry that differs, up to commit ids in conflict markers
    and in parked files' names."""
    pt, mt = _norm_tree(p.tree), _norm_tree(m.tree)
    out = []
    for key in sorted(pt.keys() | mt.keys()):
        if key not in pt or key not in mt:
            prel, pv = pt.get(key, (key, ("absent",)))
            mrel, mv = mt.get(key, (key, ("absent",)))
        else:
            (prel, pv), (mrel, mv) = pt[key], mt[key]
            if pv == mv:
                continue
            if (pv[0] == mv[0] == "f" and pv[1] == mv[1]
                    and _normalized(plain.clone(clone) / prel, plain.root)
                    == _normalized(mlx.clone(clone) / mrel, mlx.root)):
                continue
            if PARKED_RE.search(prel) and _parked_pointer(pv, mlx.clone(clone) / mrel):
                continue
        out.append(f"{key!r}: plain {' '.join(map(str, pv))} | mlx {' '.join(map(str, mv))}")
    return out


def compare(plain: Side, mlx: Side, clone: str) -> Snapshot:
    p = snapshot(plain, clone)
    m = snapshot(mlx, clone)
    differ = tree_differences(plain, mlx, clone, p, m)
    if differ:
        raise Divergence("worktree", f"clone {clone}: work trees differ (type, exec, size, sha256)\n"
                         + "\n".join(differ))
    # (sorted for the same reason as the index entries)
    pstatus = b"".join(sorted(LEFTOVER_BYTES_RE.sub(b"~<id>", p.status).splitlines(True)))
    mstatus = b"".join(sorted(LEFTOVER_BYTES_RE.sub(b"~<id>", m.status).splitlines(True)))
    if pstatus != mstatus:
        raise Divergence("status", f"clone {clone}: git status --porcelain differs\n"
                         + _diff_lines(pstatus.decode(errors="replace").splitlines(),
                                       mstatus.decode(errors="replace").splitlines()))
    problems = compare_index(plain, mlx, clone, p, m)
    if problems:
        raise Divergence("index", f"clone {clone}: " + "\n".join(problems))
    for attr in ("head", "history", "branches", "remotes", "stashes", "in_progress"):
        if getattr(p, attr) != getattr(m, attr):
            raise Divergence("refs", f"clone {clone}: {attr} differs: plain {getattr(p, attr)!r}, "
                             f"mlx {getattr(m, attr)!r}")
    return p


# ---------------------------------------------------------------------------- file-system helpers


def clear_for(top: Path, rel: str) -> None:
    """Make room for a file at `rel`: remove a file or symlink in the way of a parent directory,
    and whatever is at `rel` itself."""
    parts = rel.split("/")
    cur = top
    for part in parts[:-1]:
        cur = cur / part
        if cur.is_symlink() or (cur.exists() and not cur.is_dir()):
            cur.unlink()
        if not cur.exists():
            cur.mkdir()
    remove(top / rel)


def remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def write_file(path: Path, data: bytes, exec_bit: bool | None = None) -> None:
    with open(path, "wb") as f:
        f.write(data)
    if exec_bit is not None:
        mode = path.stat().st_mode
        path.chmod((mode | 0o111) if exec_bit else (mode & ~0o111))


# ---------------------------------------------------------------------------- the twin


SKIP = "skip"


class Twin:
    """Both sides, the ops, and the comparison after each op."""

    def __init__(self, cfg: Config, workdir: Path) -> None:
        self.cfg = cfg
        self.workdir = workdir
        self.log: list[str] = []
        self.giftless: GiftlessServer | None = None
        # commit dates step by one second from 30 days ago: the same on both sides (history
        # orders the same), and never in the future, where reflog entries would look recent to gc
        self.base_time = int(time.time()) - 30 * 86400
        self.step_no = 0
        self.last: dict[str, Snapshot] = {}
        bindir = python_shim_dir(workdir / "shim")
        base = {k: v for k, v in os.environ.items() if not k.startswith(SCRUB_PREFIXES)}
        base.update({
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "Twin", "GIT_AUTHOR_EMAIL": "twin@example.com",
            "GIT_COMMITTER_NAME": "Twin", "GIT_COMMITTER_EMAIL": "twin@example.com",
            "GIT_TERMINAL_PROMPT": "0", "GIT_EDITOR": "true", "GIT_MERGE_AUTOEDIT": "no",
            "LC_ALL": "C", "LANG": "C",
        })
        sides = {}
        for name in ("plain", "mlx"):
            root = workdir / name
            home = workdir / f"home-{name}"
            root.mkdir(parents=True)
            home.mkdir(parents=True)
            env = dict(base, HOME=str(home))
            renames = "true" if cfg.renames else "false"
            (home / ".gitconfig").write_text(
                "[init]\n\tdefaultBranch = main\n[protocol \"file\"]\n\tallow = always\n"
                "[advice]\n\tdetachedHead = false\n\tskippedCherryPicks = false\n"
                f"[diff]\n\trenames = {renames}\n[merge]\n\trenames = {renames}\n"
                "[status]\n\trenames = " + renames + "\n"
                "[pull]\n\trebase = false\n[gc]\n\tauto = 0\n[maintenance]\n\tauto = false\n"
            )
            if name == "mlx" and cfg.storage == "lfs":
                self.giftless = GiftlessServer(workdir / "giftless").start()
                with open(home / ".gitconfig", "a") as f:
                    f.write(f"[lfs]\n\turl = {self.giftless.endpoint('twin/repo')}\n")
            if name == "mlx":
                env["PATH"] = f"{bindir}{os.pathsep}{os.environ['PATH']}"
                env["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
                env["GIT_MLX_DIRECT_MIN_SIZE"] = str(DIRECT_MIN_SIZE)
            sides[name] = Side(name, root, env, self.log, cfg.timeout)
        self.plain = sides["plain"]
        self.mlx = sides["mlx"]
        self._setup()

    @property
    def sides(self) -> tuple[Side, Side]:
        return (self.plain, self.mlx)

    def _setup(self) -> None:
        res = self.mlx.run(["git", "mlx", "install"], self.mlx.root.parent / "home-mlx")
        if res.rc:
            raise RuntimeError(f"git mlx install failed: {res.stderr.decode(errors='replace')}")
        for side in self.sides:
            side.run(["git", "init", "-q", "--bare", str(side.origin)], side.root)
            side.run(["git", "init", "-q", "A"], side.root)
            side.must("A", "remote", "add", "origin", str(side.origin))
        res = self.mlx.run(["git", "mlx", "track", *TRACK_PATTERNS], self.mlx.clone("A"))
        if res.rc:
            raise RuntimeError(f"git mlx track failed: {res.stderr.decode(errors='replace')}")
        attrs = (self.mlx.clone("A") / ".gitattributes").read_bytes()
        (self.plain.clone("A") / ".gitattributes").write_bytes(attrs)
        for side in self.sides:
            (side.clone("A") / "README.txt").write_text("twin\n")
            side.must("A", "add", "-A")
            side.must("A", "commit", "-q", "-m", "init")
            side.must("A", "push", "-q", "-u", "origin", "main")
            side.run(["git", "clone", "-q", str(side.origin), "B"], side.root)
        for clone in ("A", "B"):
            self.last[clone] = compare(self.plain, self.mlx, clone)

    # -- running one op on both sides

    def env_for_step(self) -> dict[str, str]:
        date = f"{self.base_time + self.step_no} +0000"
        return {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}

    def both_git(self, clone: str, *args: str) -> tuple[Result, Result]:
        """`git ARGS` on plain then on mlx; their exit statuses must agree."""
        env = self.env_for_step()
        rp = self.plain.git(clone, *args, extra_env=env)
        rm = self.mlx.git(clone, *args, extra_env=env)
        self.check_rc(rp, rm)
        return rp, rm

    def drop_parked(self, clone: str) -> None:
        """Delete, on both sides, the files git parked as `PATH~<rev>` in a conflict. On the mlx
        side such a file holds pointer text by design (docs/differential.md); once committed or
        edited, that difference would spread to every later step and hide real findings."""
        for side in self.sides:
            top = side.clone(clone)
            for root, dirs, files in os.walk(top):
                dirs[:] = [d for d in dirs if not (root == str(top) and d == ".git")]
                for name in files:
                    if PARKED_RE.search(name):
                        os.unlink(os.path.join(root, name))

    def check_rc(self, rp: Result, rm: Result) -> None:
        if rp.rc != rm.rc:
            raise Divergence("exit", f"`git {' '.join(rp.cmd[1:])}` exited {rp.rc} on plain, {rm.rc} on mlx\n"
                             f"plain stderr: {rp.stderr.decode(errors='replace')[-1500:]}\n"
                             f"mlx stderr: {rm.stderr.decode(errors='replace')[-1500:]}")

    def apply(self, op: dict[str, Any]) -> str:
        """Run one op on both sides and compare the clones it touched. Returns "ok" or SKIP."""
        self.step_no += 1
        self.log.append(f"step {self.step_no}: {json.dumps(op)}")
        need = OP_FLAGS.get(op["op"])
        if need and not self.cfg.on(need):
            return SKIP
        fn: Callable[[Twin, dict[str, Any]], str | None] = OPS[op["op"]]
        outcome = fn(self, op) or "ok"
        touched = op.get("touch") or [op.get("clone", "A")]
        for clone in touched:
            self.last[clone] = compare(self.plain, self.mlx, clone)
        return outcome

    # -- helpers for ops

    def paths(self, side: Side, clone: str) -> Path:
        return side.clone(clone)

    def scratch_plain(self, clone: str) -> Path:
        """A copy of the plain clone, to try an op there first (predict conflicts)."""
        dest = self.workdir / "scratch"
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(self.plain.clone(clone), dest, symlinks=True)
        return dest

    def unmerged_tracked(self, repo: Path) -> list[str]:
        res = self.plain.run(["git", "ls-files", "-u", "-z"], repo, quiet=True)
        paths = {os.fsdecode(rec.split(b"\t", 1)[1]) for rec in res.stdout.split(b"\0") if rec}
        return sorted(p for p in paths if is_tracked(p))

    def would_conflict_on_tracked(self, clone: str, args: Sequence[str]) -> bool:
        """Run `git ARGS` on a copy of the plain clone: does it leave a tracked path unmerged?"""
        scratch = self.scratch_plain(clone)
        self.plain.run(["git", *args], scratch, extra_env=self.env_for_step(), quiet=True)
        # a rebase stops at the first conflict; later steps might conflict too: continue them
        for _ in range(50):
            if self.unmerged_tracked(scratch):
                return True
            prog = in_progress(scratch / ".git")
            if prog not in ("rebase", "cherry-pick"):
                break
            self.plain.run(["git", "add", "-A"], scratch, quiet=True)
            cont = self.plain.run(["git", prog, "--continue"], scratch, extra_env=self.env_for_step(),
                                  quiet=True)
            if cont.rc != 0 and not self.unmerged_tracked(scratch) and in_progress(scratch / ".git") == prog:
                self.plain.run(["git", prog, "--skip"], scratch, quiet=True)
        return False

    def gate_conflicts(self, clone: str, args: Sequence[str]) -> bool:
        """True if the op must be skipped: it would conflict on a tracked file and item 14 is off."""
        if self.cfg.on("large-merge-conflict"):
            return False
        return self.would_conflict_on_tracked(clone, args)


# ---------------------------------------------------------------------------- operations

OpFn = Callable[["Twin", dict[str, Any]], "str | None"]
OPS: dict[str, OpFn] = {}
OP_FLAGS: dict[str, str] = {}


def op(name: str, flag: str | None = None) -> Callable[[OpFn], OpFn]:
    def register(fn: OpFn) -> OpFn:
        OPS[name] = fn
        if flag:
            OP_FLAGS[name] = flag
        return fn
    return register


def _flag_for_path(path: str) -> str | None:
    if any(ord(c) >= 0xDC80 and ord(c) <= 0xDCFF for c in path):
        return "non-utf8-names"
    return None


def _path_allowed(t: Twin, *paths: str) -> bool:
    for p in paths:
        flag = _flag_for_path(p)
        if flag and not t.cfg.on(flag):
            return False
    return True


@op("write")
def op_write(t: Twin, o: dict[str, Any]) -> str | None:
    if not _path_allowed(t, o["path"]):
        return SKIP
    data = make_bytes(o["seed"], o["size"], o.get("binary", is_tracked(o["path"])))
    for side in t.sides:
        top = side.clone(o["clone"])
        clear_for(top, o["path"])
        write_file(top / o["path"], data, o.get("exec"))
    return None


@op("edit")
def op_edit(t: Twin, o: dict[str, Any]) -> str | None:
    """Change an existing regular file in place: same size, append, or truncate.

    A tracked file's edit changes every byte (XOR), unless `renames`: git's rename detection
    pairs a deleted and an added file by content similarity, and the mlx side's blobs are
    pointers, which are never similar; a small edit plus a rename would make the sides differ
    by design, not by a bug (docs/differential.md)."""
    target = t.plain.clone(o["clone"]) / o["path"]
    if target.is_symlink() or not target.is_file():
        return SKIP
    if o.get("restore_mtime") and not t.cfg.on("racy-same-size"):
        return SKIP
    size = target.stat().st_size
    tracked = is_tracked(o["path"])
    how = o["how"]
    if how == "same" and size == 0:
        how = "append"
    for side in t.sides:
        path = side.clone(o["clone"]) / o["path"]
        before = os.lstat(path)
        r = random.Random(o["seed"])
        with open(path, "r+b") as f:
            if tracked and not t.cfg.renames:
                data = f.read().translate(XOR_TABLE)
                if how == "append":
                    data += make_bytes(r.randrange(10**9), r.randrange(1, 5000), True)
                elif how == "truncate":
                    data = data[:r.randrange(0, size + 1)]
                f.seek(0)
                f.write(data)
                f.truncate(len(data))
            elif how == "same":
                n = r.randrange(1, min(size, 4096) + 1)
                off = r.randrange(0, size - n + 1)
                f.seek(off)
                old = f.read(n)
                new = bytes((b + 1 + r.randrange(255)) % 256 for b in old) if tracked else \
                    make_bytes(r.randrange(10**9), n, False)
                if new == old:
                    new = bytes((b + 1) % 256 for b in old)
                f.seek(off)
                f.write(new)
            elif how == "append":
                f.seek(0, 2)
                f.write(make_bytes(r.randrange(10**9), r.randrange(1, 5000), tracked))
            else:  # truncate
                f.truncate(r.randrange(0, size + 1))
        if o.get("restore_mtime"):
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    return None


@op("delete")
def op_delete(t: Twin, o: dict[str, Any]) -> str | None:
    for side in t.sides:
        remove(side.clone(o["clone"]) / o["path"])
    return None


@op("rename")
def op_rename(t: Twin, o: dict[str, Any]) -> str | None:
    src, dst = o["src"], o["dst"]
    if not _path_allowed(t, dst) or src == dst or dst.startswith(src + "/") or src.startswith(dst + "/"):
        return SKIP
    psrc = t.plain.clone(o["clone"]) / src
    if not (psrc.is_symlink() or psrc.exists()):
        return SKIP
    if psrc.is_symlink() and is_tracked(dst) and not t.cfg.on("symlink-tracked"):
        return SKIP
    if not psrc.is_symlink() and is_tracked(src) != is_tracked(dst) and not t.cfg.renames:
        return SKIP  # the blob changes between content and pointer: rename detection differs (docs)
    for side in t.sides:
        top = side.clone(o["clone"])
        clear_for(top, dst)
        os.rename(top / src, top / dst)
    return None


@op("wait")
def op_wait(t: Twin, o: dict[str, Any]) -> str | None:
    """Let the clock pass a second boundary: files stop being "racily clean" to git."""
    time.sleep(o["seconds"])
    return None


@op("copy")
def op_copy(t: Twin, o: dict[str, Any]) -> str | None:
    """Copy a regular file's bytes to another path (duplicate datasets and checkpoints)."""
    src, dst = o["src"], o["dst"]
    psrc = t.plain.clone(o["clone"]) / src
    if (not _path_allowed(t, dst) or src == dst or psrc.is_symlink() or not psrc.is_file()
            or dst.startswith(src + "/") or src.startswith(dst + "/")):
        return SKIP
    if is_tracked(src) != is_tracked(dst) and not t.cfg.renames:
        return SKIP  # a copy then a delete is a rename across the track boundary (docs)
    for side in t.sides:
        top = side.clone(o["clone"])
        data = (top / src).read_bytes()
        clear_for(top, dst)
        write_file(top / dst, data)
    return None


@op("chmod")
def op_chmod(t: Twin, o: dict[str, Any]) -> str | None:
    target = t.plain.clone(o["clone"]) / o["path"]
    if target.is_symlink() or not target.is_file():
        return SKIP
    for side in t.sides:
        path = side.clone(o["clone"]) / o["path"]
        path.chmod(path.stat().st_mode ^ 0o111)
    return None


@op("symlink")
def op_symlink(t: Twin, o: dict[str, Any]) -> str | None:
    if is_tracked(o["path"]) and not t.cfg.on("symlink-tracked"):
        return SKIP
    for side in t.sides:
        top = side.clone(o["clone"])
        clear_for(top, o["path"])
        os.symlink(o["target"], top / o["path"])
    return None


@op("git")
def op_git(t: Twin, o: dict[str, Any]) -> str | None:
    """A git command with no conflict risk (add, commit, checkout, switch, reset, stash push, ...)."""
    t.both_git(o["clone"], *o["args"])
    return None


@op("merging")
def op_merging(t: Twin, o: dict[str, Any]) -> str | None:
    """merge / cherry-pick / stash pop / pull: skipped when it would conflict on a tracked file
    (item 14), or for rebases while item 7 is open."""
    args = o["args"]
    if ("--rebase" in args or args[0] == "rebase") and not t.cfg.on("rebase-stat"):
        return SKIP
    if t.gate_conflicts(o["clone"], args):
        return SKIP
    t.both_git(o["clone"], *args)
    t.drop_parked(o["clone"])
    return None


@op("resolve")
def op_resolve(t: Twin, o: dict[str, Any]) -> str | None:
    """Settle a stopped merge / rebase / cherry-pick / stash pop: write every unmerged path
    (or delete it), add everything, continue; or abort."""
    clone = o["clone"]
    prog = in_progress(t.plain.clone(clone) / ".git")
    if o["how"] == "abort":
        if prog in ("merge", "rebase", "cherry-pick", "revert"):
            t.both_git(clone, prog, "--abort")
        else:
            t.both_git(clone, "reset", "-q", "--hard")
        return None
    unmerged = []
    for side in t.sides:
        res = side.git(clone, "ls-files", "-u", "-z", quiet=True)
        paths = {os.fsdecode(rec.split(b"\t", 1)[1]) for rec in res.stdout.split(b"\0") if rec}
        unmerged.append(sorted(paths, key=norm_path))
    rng = random.Random(o["seed"])
    for ppath, mpath in zip(*unmerged, strict=True):
        tracked = is_tracked(ppath)
        if rng.random() < 0.2:
            for side, path in ((t.plain, ppath), (t.mlx, mpath)):
                remove(side.clone(clone) / path)
        else:
            data = make_bytes(rng.randrange(10**9), pick_size(rng, t.cfg, tracked), tracked)
            for side, path in ((t.plain, ppath), (t.mlx, mpath)):
                clear_for(side.clone(clone), path)
                write_file(side.clone(clone) / path, data)
    t.both_git(clone, "add", "-A")
    if prog == "merge":
        t.both_git(clone, "commit", "-q", "--no-edit")
    elif prog in ("rebase", "cherry-pick"):
        if t.gate_conflicts(clone, [prog, "--continue"]):
            t.both_git(clone, prog, "--abort")
        else:
            t.both_git(clone, prog, "--continue")
            t.drop_parked(clone)
    return None


@op("push")
def op_push(t: Twin, o: dict[str, Any]) -> str | None:
    t.both_git(o["clone"], "push", "-q", *(["--force"] if o.get("force") else []), "origin",
               f"{o['src']}:refs/heads/{o['dst']}")
    return None


@op("reclone")
def op_reclone(t: Twin, o: dict[str, Any]) -> str | None:
    for side in t.sides:
        shutil.rmtree(side.clone(o["clone"]))
    env = t.env_for_step()
    rp = t.plain.run(["git", "clone", "-q", str(t.plain.origin), o["clone"]], t.plain.root, extra_env=env)
    rm = t.mlx.run(["git", "clone", "-q", str(t.mlx.origin), o["clone"]], t.mlx.root, extra_env=env)
    t.check_rc(rp, rm)
    return None


@op("mlx")
def op_mlx(t: Twin, o: dict[str, Any]) -> str | None:
    """A git-mlx command on the mlx side only (gc, fetch + fsck); plain git has nothing to do."""
    if o["args"][:2] == ["gc", "--remote"] and (not t.cfg.on("remote-gc") or t.cfg.storage == "lfs"):
        return SKIP  # (an lfs remote refuses gc by design: the LFS API has no delete)
    res = t.mlx.run(["git", "mlx", *o["args"]], t.mlx.clone(o["clone"]), extra_env=t.env_for_step())
    if res.rc not in o.get("ok_rc", [0]):
        raise Divergence("mlx-command", f"`git mlx {' '.join(o['args'])}` exited {res.rc}\n"
                         f"{res.stdout.decode(errors='replace')[-2000:]}\n"
                         f"{res.stderr.decode(errors='replace')[-2000:]}")
    return " ".join(o["args"][:1] + (["--remote"] if "--remote" in o["args"] else []) + [f"exit {res.rc}"])


@op("verify")
def op_verify(t: Twin, o: dict[str, Any]) -> str | None:
    """Nothing lost: after `git mlx fetch --all`, every pointer of every ref is in the cache."""
    clone = o["clone"]
    fetch = t.mlx.run(["git", "mlx", "fetch", "--all"], t.mlx.clone(clone))
    fsck = t.mlx.run(["git", "mlx", "fsck", "--all", "--pointers"], t.mlx.clone(clone))
    if fetch.rc != 0 or fsck.rc != 0:
        raise Divergence("lost", f"clone {clone}: content of a committed file is neither cached nor on "
                         f"the remote\nfetch --all -> {fetch.rc}: "
                         f"{fetch.stderr.decode(errors='replace')[-2000:]}"
                         f"\nfsck --all -> {fsck.rc}: {fsck.stdout.decode(errors='replace')[-2000:]}"
                         f"{fsck.stderr.decode(errors='replace')[-1000:]}")
    return None


@op("racy-checkout", flag="racy-same-size")
def op_racy_checkout(t: Twin, o: dict[str, Any]) -> str | None:
    """checkout REV, then at once a same-size write of PATH with its mtime put back (item 2).
    Plain git always sees it: either the ctime second changed or the file is racily clean."""
    clone, path = o["clone"], o["path"]
    env = t.env_for_step()
    results = []
    for side in t.sides:
        res = side.git(clone, "checkout", "-q", o["rev"], extra_env=env)
        results.append(res)
        target = side.clone(clone) / path
        if res.rc == 0 and not target.is_symlink() and target.is_file() and target.stat().st_size:
            before = os.lstat(target)
            write_file(target, target.read_bytes().translate(XOR_TABLE))
            os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    t.check_rc(results[0], results[1])
    return None


@op("concurrent-checkout", flag="concurrent-hydration")
def op_concurrent_checkout(t: Twin, o: dict[str, Any]) -> str | None:
    """checkout REV while another process writes PATH (item 1). On the mlx side the writer
    waits for hydration's temp file beside PATH, then writes in place or by rename; on the
    plain side it writes after the checkout. Either way the writer's bytes must survive."""
    clone, path = o["clone"], o["path"]
    data = make_bytes(o["seed"], o["size"], True)
    env = t.env_for_step()
    rp = t.plain.git(clone, "checkout", "-q", o["rev"], extra_env=env)
    ptarget = t.plain.clone(clone) / path
    if rp.rc == 0 and ptarget.parent.is_dir() and not ptarget.is_symlink():
        clear_for(t.plain.clone(clone), path)
        write_file(ptarget, data)
    mtarget = t.mlx.clone(clone) / path
    stop = threading.Event()
    wrote = threading.Event()
    prefix = f".{mtarget.name}.mlx-"

    def writer() -> None:
        while not stop.is_set():
            try:
                names = os.listdir(mtarget.parent)
            except OSError:
                names = []
            if any(n.startswith(prefix) and n.endswith(".tmp") for n in names):
                _user_write(mtarget, data, o["how"])
                wrote.set()
                return
            time.sleep(0)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    rm = t.mlx.git(clone, "checkout", "-q", o["rev"], extra_env=env)
    stop.set()
    thread.join()
    if rm.rc == 0 and not wrote.is_set() and mtarget.parent.is_dir() and not mtarget.is_symlink():
        clear_for(t.mlx.clone(clone), path)
        write_file(mtarget, data)
    t.log.append(f"  (writer raced the hydration: {wrote.is_set()})")
    t.check_rc(rp, rm)
    return "raced" if wrote.is_set() else None


def _user_write(path: Path, data: bytes, how: str) -> None:
    if how == "rename":
        tmp = path.with_name(f"{path.name}.user-tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    else:
        write_file(path, data)


@op("lookalike", flag="pointer-lookalike")
def op_lookalike(t: Twin, o: dict[str, Any]) -> str | None:
    """Write a real pointer's bytes (of a tracked file at HEAD) into an untracked-pattern path."""
    res = t.mlx.git(o["clone"], "cat-file", "blob", f"HEAD:{o['source']}", quiet=True)
    if res.rc != 0 or parse_pointer(res.stdout) is None or is_tracked(o["path"]):
        return SKIP
    for side in t.sides:
        clear_for(side.clone(o["clone"]), o["path"])
        write_file(side.clone(o["clone"]) / o["path"], res.stdout)
    return None


@op("rebase-exec", flag="rebase-exec")
def op_rebase_exec(t: Twin, o: dict[str, Any]) -> str | None:
    """`git rebase -x CMD UPSTREAM` where CMD logs the sha256 of every work-tree file."""
    if t.gate_conflicts(o["clone"], ["rebase", o["rev"]]):
        return SKIP
    logs = []
    for side in t.sides:
        log = side.root / "exec.log"
        if log.exists():
            log.unlink()
        cmd = (f"find . -path ./.git -prune -o -type f -print0 | LC_ALL=C sort -z | "
               f"xargs -0 -r sha256sum >> {log}; echo -- >> {log}")
        res = side.git(o["clone"], "rebase", "-x", cmd, o["rev"], extra_env=t.env_for_step())
        logs.append((res, log.read_text(errors="surrogateescape") if log.exists() else ""))
    t.check_rc(logs[0][0], logs[1][0])
    plain, mlx = (_exec_log(text) for _, text in logs)
    if plain != mlx:
        raise Divergence("exec", "rebase -x saw different files\n" + _diff_lines(plain, mlx))
    return None


def _exec_log(text: str) -> list[str]:
    """The lines `sha256  ./PATH` of each step (steps end with `--`), with the commit ids in
    the names of files git parked in a conflict blanked (each side has its own ids, found by
    seed 1401) and each step's lines sorted by the blanked name."""
    steps: list[list[str]] = [[]]
    for line in text.splitlines():
        if line == "--":
            steps.append([])
        else:
            steps[-1].append(norm_path(line))
    return [line for step in steps for line in [*sorted(step), "--"]][:-1]


@op("gc-add", flag="gc-races-add")
def op_gc_add(t: Twin, o: dict[str, Any]) -> str | None:
    """`git add -A` on both sides while, on the mlx side, `git mlx gc` frees everything it may
    (item 4). With `seed`/`size`, PATH first gets the bytes an earlier write with that seed gave
    it, one byte changed: a new file that reuses the old version's cached chunks."""
    clone = o["clone"]
    if "seed" in o:
        data = bytearray(make_bytes(o["seed"], o["size"], True))
        if data:
            data[len(data) // 2] ^= 0xFF
        for side in t.sides:
            clear_for(side.clone(clone), o["path"])
            write_file(side.clone(clone) / o["path"], bytes(data))
    rp = t.plain.git(clone, "add", "-A", extra_env=t.env_for_step())
    gc = subprocess.Popen(["git", "mlx", "gc", "--grace", "0", "--keep-recent", "0", "--only-pushed"],
                          cwd=t.mlx.clone(clone), env=dict(t.mlx.env, **t.env_for_step()),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    rm = t.mlx.git(clone, "add", "-A", extra_env=t.env_for_step())
    out, _ = gc.communicate(timeout=t.cfg.timeout)
    t.check_rc(rp, rm)
    t.log.append(f"  mlx: concurrent gc -> {gc.returncode} {out.decode(errors='replace')[-300:]}")
    fsck = t.mlx.run(["git", "mlx", "fsck", "--pointers"], t.mlx.clone(clone))
    lacking = [line for line in fsck.stdout.decode(errors="replace").splitlines() if " lacks " in line]
    if lacking:
        raise Divergence("lost", "after gc raced add, a manifest lacks chunks:\n" + "\n".join(lacking[:20]))
    return None


@op("corrupt-yaml", flag="corrupt-mlx-yaml")
def op_corrupt_yaml(t: Twin, o: dict[str, Any]) -> str | None:
    """`git checkout REV` with a corrupt untracked .mlx.yaml (item 13). git-mlx may refuse (then
    nothing may have changed: the sides are compared with the plain side not checked out) or
    go on with safe defaults (then it must match plain git's checkout)."""
    for side in t.sides:
        write_file(side.clone(o["clone"]) / ".mlx.yaml", b"remotes: [unclosed\n  : : -\n")
    env = t.env_for_step()
    clone = o["clone"]
    before = t.mlx.git(clone, "rev-parse", "HEAD", quiet=True).stdout
    rm = t.mlx.git(clone, "checkout", "-q", o["rev"], extra_env=env)
    outcome = "refused"
    if rm.rc == 0:
        t.check_rc(t.plain.git(clone, "checkout", "-q", o["rev"], extra_env=env), rm)
        outcome = "ok"
    elif t.mlx.git(clone, "rev-parse", "HEAD", quiet=True).stdout != before:
        # The checkout went through with no remote (docs/hydration.md, "Settings that cannot
        # be read"): files whose content was not cached stay pointers, named, and the hook
        # exits 1. Once the file is fixed, `git mlx pull` must bring plain git's checkout.
        t.plain.git(clone, "checkout", "-q", o["rev"], extra_env=env)
        outcome = "pointers"
    for side in t.sides:
        remove(side.clone(clone) / ".mlx.yaml")
    if outcome == "pointers":
        t.mlx.git(clone, "mlx", "pull", extra_env=env)
    return outcome


# ---------------------------------------------------------------------------- the generator


def large_changes(t: Twin, clone: str, rev: str) -> list[str]:
    """Tracked files a checkout of `rev` would write by direct hydration (plain side's view)."""
    diff = t.plain.git(clone, "diff", "--name-only", "-z", "HEAD", rev, quiet=True)
    if diff.rc != 0:
        return []
    changed = {os.fsdecode(p) for p in diff.stdout.split(b"\0") if p}
    tree = t.plain.git(clone, "ls-tree", "-r", "-l", "-z", rev, quiet=True)
    out = []
    for rec in tree.stdout.split(b"\0"):
        if not rec:
            continue
        meta, path = rec.split(b"\t", 1)
        mode, _, _, size = meta.split()
        name = os.fsdecode(path)
        regular = mode in (b"100644", b"100755")
        if name in changed and regular and is_tracked(name) and int(size) >= DIRECT_MIN_SIZE:
            out.append(name)
    return sorted(out)


class Generator:
    """Picks the next op from the plain side's state (the sides are equal by then)."""

    def __init__(self, cfg: Config, rng: random.Random) -> None:
        self.cfg = cfg
        self.rng = rng
        self.n_branch = 0
        self.names = PLAIN_NAMES + TRACKED_NAMES + (NON_UTF8_NAMES if cfg.on("non-utf8-names") else [])
        self.large_writes: list[tuple[str, int, int]] = []  # (path, seed, size) of large tracked writes

    def weights(self) -> list[tuple[str, float]]:
        w = [("write", 16), ("edit", 9), ("delete", 4), ("rename", 3), ("copy", 2), ("chmod", 2),
             ("symlink", 2),
             ("add", 8), ("commit", 7), ("snap", 7), ("checkout", 5), ("restore", 2), ("switch", 3),
             ("reset", 3), ("stash", 3), ("stash-pop", 3), ("merge", 4), ("cherry-pick", 3),
             ("rebase", 2), ("push", 4), ("pull", 4), ("fetch", 1), ("reclone", 0.7), ("gc", 1.5),
             ("verify", 0.7), ("mlx-pull", 0.7), ("wait", 0.5)]
        extra = {"racy-same-size": ("racy-checkout", 2), "concurrent-hydration": ("concurrent-checkout", 2),
                 "pointer-lookalike": ("lookalike", 3), "rebase-exec": ("rebase-exec", 1),
                 "gc-races-add": ("gc-add", 1), "corrupt-mlx-yaml": ("corrupt-yaml", 2),
                 "remote-gc": ("gc-remote", 1)}
        w += [extra[f] for f in self.cfg.flags if f in extra]
        return w

    def revs(self, s: Snapshot, depth: int) -> list[str]:
        revs = list(s.branches) + [f"origin/{r.split('/', 1)[1]}" for r in s.remotes
                                   if r.startswith("origin/") and r != "origin/HEAD"]
        revs += [f"HEAD~{k}" for k in range(1, min(depth, 4))]
        revs += [f"{b}~1" for b in s.branches]
        return revs

    def next(self, t: Twin) -> dict[str, Any]:
        rng = self.rng
        clone = "A" if rng.random() < 0.65 else "B"
        s = t.last[clone]
        seed = rng.randrange(2**31)
        if s.in_progress:
            return {"op": "resolve", "clone": clone, "how": rng.choice(["abort", "resolve", "resolve"]),
                    "seed": seed}
        depth = len(s.history)
        revs = self.revs(s, depth)
        names, weights = zip(*self.weights(), strict=True)
        kind = rng.choices(names, weights)[0]
        # the track lines stay put; files git parked in a conflict have side-specific names
        entries = [e for e in s.entries() if e != ".gitattributes" and not LEFTOVER_RE.search(e)]
        files = [f for f in entries if s.tree[f][0] == "f"]
        tracked_files = [f for f in files if is_tracked(f)]
        if kind == "write":
            path = rng.choice(self.names)
            o: dict[str, Any] = {"op": "write", "clone": clone, "path": path, "seed": seed,
                                 "size": pick_size(rng, self.cfg, is_tracked(path))}
            if is_tracked(path) and o["size"] >= DIRECT_MIN_SIZE:
                self.large_writes = (self.large_writes + [(path, seed, o["size"])])[-20:]
            if rng.random() < 0.1:
                o["exec"] = True
            if not is_tracked(path) and rng.random() < 0.1:
                o["binary"] = True
            return o
        if kind == "edit" and files:
            how = rng.choice(["same", "same", "append", "truncate"])
            o = {"op": "edit", "clone": clone, "path": rng.choice(files), "how": how, "seed": seed}
            if how == "same" and self.cfg.on("racy-same-size") and rng.random() < 0.5:
                o["restore_mtime"] = True
            return o
        if kind == "delete" and entries:
            dirs = [e.rstrip("/") for e in s.tree if e.endswith("/")]
            return {"op": "delete", "clone": clone, "path": rng.choice(entries + dirs)}
        if kind == "rename" and entries:
            return {"op": "rename", "clone": clone, "src": rng.choice(entries), "dst": rng.choice(self.names)}
        if kind == "copy" and files:
            return {"op": "copy", "clone": clone, "src": rng.choice(files), "dst": rng.choice(self.names)}
        if kind == "chmod" and files:
            return {"op": "chmod", "clone": clone, "path": rng.choice(files)}
        if kind == "symlink":
            pool = [n for n in self.names if self.cfg.on("symlink-tracked") or not is_tracked(n)]
            targets = (tracked_files if tracked_files and rng.random() < 0.5 else entries) or ["gone"]
            target = rng.choice(targets + ["missing-target", "../outside"])
            return {"op": "symlink", "clone": clone, "path": rng.choice(pool), "target": target}
        if kind == "add":
            how = rng.choice(["-A", "-A", "-u", "path"])
            args = ["add", "-A"] if how == "-A" else ["add", "-u"] if how == "-u" else \
                ["add", "--", rng.choice(entries or ["."])]
            return {"op": "git", "clone": clone, "args": args}
        if kind == "commit":
            all_ = ["-a"] if rng.random() < 0.3 else []
            return {"op": "git", "clone": clone, "args": ["commit", "-q", *all_, "-m", f"c{t.step_no + 1}"]}
        if kind == "snap":
            return {"op": "snapshot", "clone": clone, "msg": f"s{t.step_no + 1}"}
        if kind == "checkout" and revs:
            rev = rng.choice(revs)
            args = ["checkout", "-q", *(["-f"] if rng.random() < 0.1 else []),
                    *(["--detach"] if rev in s.branches and rng.random() < 0.2 else []), rev]
            return {"op": "git", "clone": clone, "args": args}
        if kind == "restore" and entries:
            src = rng.choice(["HEAD"] + revs)
            return {"op": "git", "clone": clone, "args": ["checkout", "-q", src, "--", rng.choice(entries)]}
        if kind == "switch":
            self.n_branch += 1
            return {"op": "git", "clone": clone, "args": ["switch", "-q", "-c", f"b{clone}{self.n_branch}"]}
        if kind == "reset" and revs:
            mode = rng.choice(["--hard", "--hard", "--mixed", "--soft"])
            return {"op": "git", "clone": clone, "args": ["reset", "-q", mode, rng.choice(["HEAD"] + revs)]}
        if kind == "stash":
            return {"op": "git", "clone": clone, "args": ["stash", "push", "-q",
                                                          *(["-u"] if rng.random() < 0.4 else [])]}
        if kind == "stash-pop" and s.stashes:
            return {"op": "merging", "clone": clone, "args": ["stash", "pop", "-q"]}
        if kind == "merge" and revs:
            return {"op": "merging", "clone": clone,
                    "args": ["merge", "-q", "--no-edit", *(["--no-ff"] if rng.random() < 0.3 else []),
                             rng.choice(revs)]}
        if kind == "cherry-pick" and revs:
            rev = rng.choice(revs)
            if rng.random() < 0.4:
                rev = f"{rev}~2..{rev}"
            return {"op": "merging", "clone": clone, "args": ["cherry-pick", rev]}
        if kind == "rebase" and revs:
            return {"op": "merging", "clone": clone, "args": ["rebase", "-q", rng.choice(revs)]}
        if kind == "push" and s.branches:
            src = s.head if s.head != "(detached)" else "HEAD"
            dst = s.head if s.head != "(detached)" else rng.choice(s.branches)
            return {"op": "push", "clone": clone, "src": src, "dst": dst, "force": rng.random() < 0.2}
        if kind == "pull":
            upstream = [r.split("/", 1)[1] for r in s.remotes
                        if r.startswith("origin/") and r != "origin/HEAD"]
            branch = s.head if s.head in upstream and rng.random() < 0.7 else rng.choice(upstream or ["main"])
            mode = "--rebase" if rng.random() < 0.3 else "--no-rebase"
            return {"op": "merging", "clone": clone, "args": ["pull", "-q", mode, "origin", branch]}
        if kind == "fetch":
            return {"op": "git", "clone": clone, "args": ["fetch", "-q", "--prune", "origin"]}
        if kind == "reclone":
            return {"op": "reclone", "clone": "B"}
        if kind == "gc":
            extra = rng.choice([[], ["--only-pushed"]])
            return {"op": "mlx", "clone": clone, "args": ["gc", "--grace", "0", "--keep-recent", "0", *extra]}
        if kind == "gc-remote":
            return {"op": "mlx", "clone": clone, "args": ["gc", "--remote", "origin", "--grace", "0",
                                                          "--keep-recent", "0"], "ok_rc": [0, 2]}
        if kind == "wait":
            return {"op": "wait", "seconds": 1.1}
        if kind == "mlx-pull":
            return {"op": "mlx", "clone": clone, "args": ["pull"]}
        if kind == "verify":
            return {"op": "verify", "clone": clone}
        if kind == "racy-checkout" and revs:
            rev = rng.choice(revs)
            hydrated = large_changes(t, clone, rev)
            if hydrated:
                return {"op": "racy-checkout", "clone": clone, "rev": rev, "path": rng.choice(hydrated)}
        if kind == "concurrent-checkout" and revs:
            rev = rng.choice(revs)
            hydrated = large_changes(t, clone, rev)
            if hydrated:
                size = rng.randrange(DIRECT_MIN_SIZE, max(DIRECT_MIN_SIZE + 1, self.cfg.max_size // 4))
                return {"op": "concurrent-checkout", "clone": clone, "rev": rev, "path": rng.choice(hydrated),
                        "seed": seed, "size": size, "how": rng.choice(["inplace", "rename"])}
        if kind == "lookalike" and tracked_files:
            return {"op": "lookalike", "clone": clone, "source": rng.choice(tracked_files),
                    "path": rng.choice([n for n in PLAIN_NAMES if "/" not in n])}
        if kind == "rebase-exec" and revs:
            return {"op": "rebase-exec", "clone": clone, "rev": rng.choice(revs)}
        if kind == "gc-add":
            o = {"op": "gc-add", "clone": clone}
            if self.large_writes:
                path, old_seed, size = rng.choice(self.large_writes)
                o.update(path=path, seed=old_seed, size=size)
            return o
        if kind == "corrupt-yaml" and revs:
            return {"op": "corrupt-yaml", "clone": clone, "rev": rng.choice(revs)}
        return {"op": "snapshot", "clone": clone, "msg": f"s{t.step_no + 1}"}


@op("snapshot")
def op_snapshot(t: Twin, o: dict[str, Any]) -> str | None:
    """`git add -A && git commit`: the everyday step, so history grows."""
    t.both_git(o["clone"], "add", "-A")
    t.both_git(o["clone"], "commit", "-q", "-m", o["msg"])
    return None


# ---------------------------------------------------------------------------- walking, replay, minimising


@dataclass
class RunResult:
    ops: list[dict[str, Any]]
    failure: Divergence | None
    failed_step: int | None
    log_tail: list[str]
    stats: dict[str, int]
    seconds: float


def _fresh_twin(cfg: Config, keep: Path | None) -> tuple[Twin, Path]:
    workdir = Path(tempfile.mkdtemp(prefix="difftwin-", dir=keep))
    return Twin(cfg, workdir), workdir


def run_walk(cfg: Config, ops: list[dict[str, Any]] | None = None, *, keep: Path | None = None,
             budget: float | None = None, progress: bool = False) -> RunResult:
    """Generate (ops None) or replay `ops`; stop at the first divergence."""
    start = time.monotonic()
    twin, workdir = _fresh_twin(cfg, keep)
    gen = Generator(cfg, random.Random(cfg.seed))
    done: list[dict[str, Any]] = []
    stats: dict[str, int] = {}
    failure: Divergence | None = None
    failed_step = None
    try:
        total = len(ops) if ops is not None else cfg.steps
        for i in range(total):
            if budget is not None and time.monotonic() - start > budget:
                break
            o = ops[i] if ops is not None else gen.next(twin)
            done.append(o)
            mark = len(twin.log)
            try:
                outcome = twin.apply(o)
            except Divergence as exc:
                failure, failed_step = exc, i
                break
            except Exception as exc:  # noqa: BLE001 - a harness crash is reported like a divergence
                failure, failed_step = Divergence("harness", f"{exc!r}\n{traceback.format_exc()}"), i
                break
            key = o["op"] if outcome == "ok" else f"{o['op']} ({outcome})"
            stats[key] = stats.get(key, 0) + 1
            del twin.log[:max(0, mark - 400)]  # keep the last few steps' commands
            if progress and (i + 1) % 50 == 0:
                print(f"[seed {cfg.seed}] {i + 1} steps, {time.monotonic() - start:.0f}s", file=sys.stderr,
                      flush=True)
    finally:
        if twin.giftless is not None:
            twin.giftless.stop()
        if keep is None or failure is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return RunResult(done, failure, failed_step, twin.log[-200:], stats, time.monotonic() - start)


def save_replay(path: Path, cfg: Config, res: RunResult) -> None:
    data = {
        "config": cfg.__dict__,
        "failure": {"kind": res.failure.kind, "details": res.failure.details} if res.failure else None,
        "ops": res.ops,
    }
    path.write_text(json.dumps(data, indent=1, ensure_ascii=True) + "\n")


def load_replay(path: Path) -> tuple[Config, list[dict[str, Any]], str | None]:
    data = json.loads(path.read_text())
    cfg = Config(**data["config"])
    fail = data.get("failure")
    return cfg, data["ops"], (fail or {}).get("kind")


def signature(res: RunResult) -> tuple[str, str]:
    """What makes two failures "the same" for minimising: the kind and the failing op."""
    assert res.failure is not None
    return (res.failure.kind, res.ops[-1]["op"])


def minimize(cfg: Config, ops: list[dict[str, Any]], sig: tuple[str, str], *, budget: float = 600,
             tries: int = 1) -> list[dict[str, Any]]:
    """Delta debugging (ddmin, complement only): drop chunks of ops while the same failure
    (kind and failing op) still happens; a timing-dependent one is tried `tries` times."""
    start = time.monotonic()

    def fails(candidate: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        for _ in range(tries):
            res = run_walk(cfg, candidate)
            if res.failure is not None and signature(res) == sig:
                return res.ops  # cut after the failing step
        return None

    current = ops
    n = 2
    while len(current) >= 2 and time.monotonic() - start < budget:
        chunk = max(1, len(current) // n)
        reduced = False
        for lo in range(0, len(current), chunk):
            if time.monotonic() - start > budget:
                break
            candidate = current[:lo] + current[lo + chunk:]
            got = fails(candidate)
            if got is not None:
                current = got
                n = max(n - 1, 2)
                reduced = True
                print(f"  minimize: {len(current)} ops", file=sys.stderr, flush=True)
                break
        if not reduced:
            if chunk == 1:
                break
            n = min(len(current), n * 2)
    return current


def parse_flags(text: str) -> list[str]:
    if text in ("", "none"):
        return []
    if text == "all":
        return sorted(KNOWN)
    flags = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in flags if f not in KNOWN]
    if unknown:
        raise SystemExit(f"unknown flag(s) {unknown}; known: {', '.join(sorted(KNOWN))}")
    return flags


def shrink_and_save(cfg: Config, res: RunResult, out: Path, minutes: float, tries: int) -> None:
    """Minimise a failure, check the result once more, and write its replay file."""
    assert res.failure is not None
    small = minimize(cfg, res.ops, signature(res), budget=minutes * 60, tries=tries)
    final = run_walk(cfg, small)
    again = final.failure is not None and signature(final) == signature(res)
    path = out / f"difftwin-min-{cfg.seed}-{res.failure.kind}.json"
    save_replay(path, cfg, final if again else RunResult(small, res.failure, None, [], {}, 0))
    print(f"minimal replay: {len(small)} ops, reproduced on the check run: {again}: {path}")
    for o in small:
        print(f"  {json.dumps(o)}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m tests.difftwin", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, action="append", help="seed (repeatable; default: one random)")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--minutes", type=float, default=None, help="stop each seed after this long")
    ap.add_argument("--flags", default="none",
                    help="known-bug operations to enable: none, all, or a comma list of: " + ", ".join(KNOWN))
    ap.add_argument("--max-size", type=int, default=20 * 2**20, help="largest file written (bytes)")
    ap.add_argument("--renames", action="store_true",
                    help="also edits and renames that make git's rename detection differ by design (docs)")
    ap.add_argument("--storage", choices=("local", "lfs"), default="local",
                    help="where the mlx side stores: beside origin.git, or a giftless LFS server")
    ap.add_argument("--replay", type=Path, help="run the ops of a replay file")
    ap.add_argument("--minimize", action="store_true", help="shrink a failure (with --replay, or a new one)")
    ap.add_argument("--minimize-minutes", type=float, default=15)
    ap.add_argument("--tries", type=int, default=1, help="runs per minimisation candidate (flaky failures)")
    ap.add_argument("--out", type=Path, default=Path("."), help="where replay files go")
    ap.add_argument("--keep", type=Path, default=None, help="keep a failing twin's directories under here")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.replay:
        cfg, ops, _ = load_replay(args.replay)
        if args.flags != "none":
            cfg.flags = parse_flags(args.flags)
        res = run_walk(cfg, ops, keep=args.keep)
        report(cfg, res)
        if res.failure and args.minimize:
            shrink_and_save(cfg, res, args.out, args.minimize_minutes, args.tries)
        return 1 if res.failure else 0
    seeds = args.seed or [random.randrange(2**31)]
    failed = 0
    for seed in seeds:
        cfg = Config(seed=seed, steps=args.steps, flags=parse_flags(args.flags), max_size=args.max_size,
                     renames=args.renames, storage=args.storage)
        res = run_walk(cfg, keep=args.keep, budget=args.minutes * 60 if args.minutes else None, progress=True)
        report(cfg, res)
        if res.failure:
            failed += 1
            path = args.out / f"difftwin-{seed}-{res.failure.kind}.json"
            save_replay(path, cfg, res)
            print(f"replay: python3 -m tests.difftwin --replay {path}")
            if args.minimize:
                shrink_and_save(cfg, res, args.out, args.minimize_minutes, args.tries)
    return 1 if failed else 0


def report(cfg: Config, res: RunResult) -> None:
    steps = len(res.ops)
    print(f"seed {cfg.seed}: {steps} steps in {res.seconds:.0f}s, flags {cfg.flags or 'none'}")
    print("  ops: " + ", ".join(f"{k} {v}" for k, v in sorted(res.stats.items())))
    if res.failure:
        print(f"DIVERGENCE at step {res.failed_step} ({res.ops[-1]}):\n{res.failure}")
        print("last commands:\n" + "\n".join(res.log_tail[-40:]))


if __name__ == "__main__":
    sys.exit(main())
