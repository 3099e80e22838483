"""`git mlx migrate`: rewrite history so that large files become pointers (`import`), git-lfs
pointers become git-mlx pointers (`from-lfs`), or pointers become plain files again
(`export`). How it works, the backup refs and how to undo: docs/migrate.md.

The rewrite reads objects with pygit2 and writes new ones into git's object database through
libgit2 (no pack code here): commits are visited parents first; a tree is rewritten entry by
entry and remembered by (tree id, path), so a subtree shared by many commits costs one visit; a
commit whose tree and parents did not change keeps its id. Commit and tag objects are
rewritten as raw text, so everything but their tree/parent/object lines stays byte for byte
(authors, dates, encodings, messages); their signatures are dropped, since they no longer
match. Blob contents stream: large blobs come out of `git cat-file --batch` into
`Store.add_stream`, and exported content goes from the store to a temp file that
`git hash-object -w` reads. Refs move only at the end, in one `git update-ref --stdin`
transaction that also creates the backup refs; an error before that changes no ref.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pygit2
from pygit2.enums import ObjectType, SortMode

from gitext.errors import MlxError, ObjectError, ObjectMissing, RemoteError, UsageError
from gitext.formats.pointer import MAX_POINTER_SIZE, Pointer, try_parse
from gitext.git.attributes import path_matcher, with_tracked, without_tracked
from gitext.git.install import hooks_dir, install_repo_hooks
from gitext.git.lfs import object_path, objects_dir, parse_pointer, remove_lfs_setup
from gitext.git.lfsconfig import DOWNLOAD
from gitext.git.run import git_config_get, run_git
from gitext.git.scan import open_repo
from gitext.log import inform, trace, warn
from gitext.progress import Progress, format_bytes, plural
from gitext.repo.context import Context
from gitext.repo.lfsclient import lfs_endpoint, open_lfs_client
from gitext.repo.worktree import hydrate
from gitext.storage.lfsapi import Action, LfsClient, ObjectActions

BACKUP_PREFIX = "refs/mlx-migrate-backup"
TREE_MODE = b"40000"
FILE_MODES = (b"100644", b"100755")
ATTRIBUTES = b".gitattributes"
_SIGNATURE_HEADERS = (b"gpgsig", b"gpgsig-sha256", b"mergetag")
_TAG_SIGNATURE = re.compile(rb"\n-----BEGIN (PGP|SSH) SIGNATURE-----\n.*\Z", re.S)
_LFS_ATTR = re.compile(r"(?<=\s)(filter|diff|merge)=lfs(?=\s|$)", re.M)


@dataclass
class Options:
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    everything: bool = False
    dry_run: bool = False
    keep_missing: bool = False  # from-lfs: leave a pointer whose LFS object is absent as it is
    remote: str | None = None  # from-lfs: the git remote whose LFS server has absent objects


@dataclass
class Result:
    commits: int = 0  # commits visited
    rewritten: int = 0  # commits that got a new id
    files: dict[str, int] = field(default_factory=dict)  # path -> versions converted
    bytes: int = 0  # content bytes of the converted versions
    refs: list[tuple[str, str, str]] = field(default_factory=list)  # (ref, old, new)
    backup: str = ""  # the backup ref prefix of this run
    notes: list[str] = field(default_factory=list)


def object_id(kind: str, data: bytes) -> pygit2.Oid:
    """The id git gives an object, without writing it (dry runs)."""
    return pygit2.Oid(raw=hashlib.sha1(b"%s %d\0" % (kind.encode(), len(data)) + data).digest())


class BlobStream:
    """Large blobs read through one `git cat-file --batch`, a block at a time."""

    def __init__(self, git_dir: Path) -> None:
        self._proc = subprocess.Popen(["git", "--git-dir", str(git_dir), "cat-file", "--batch"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._in: IO[bytes] = self._proc.stdin
        self._out: IO[bytes] = self._proc.stdout

    def feed(self, oid: pygit2.Oid, consume: Callable[[Callable[[int], bytes], int], object]) -> None:
        """Call `consume(read, size)` with a reader of exactly the blob's bytes."""
        self._in.write(f"{oid}\n".encode())
        self._in.flush()
        header = self._out.readline().split()
        if len(header) != 3 or header[1] != b"blob":
            raise MlxError(f"git cat-file could not read blob {oid}: {b' '.join(header).decode()}")
        left = int(header[2])

        def read(n: int) -> bytes:
            nonlocal left
            data = self._out.read(min(n, left)) if left else b""
            left -= len(data)
            return data

        consume(read, int(header[2]))
        while read(1 << 20):
            pass
        self._out.read(1)  # the LF after the content

    def close(self) -> None:
        """Stop git (closing its output too: after an error it may be blocked writing)."""
        self._in.close()
        self._out.close()
        self._proc.wait()


class Conversion:
    """What one kind of migration does to blobs and to `.gitattributes` files."""

    adds_root_attributes = False

    def __init__(self, repo: pygit2.Repository, ctx: Context, options: Options) -> None:
        self.repo, self.ctx, self.options = repo, ctx, options
        self.odb = repo.odb
        self.matches = path_matcher(options.include or ["*"], options.exclude)
        self.blobs: dict[pygit2.Oid, pygit2.Oid | None] = {}  # old blob -> new (None: kept)
        self.commit = ""  # the commit being rewritten (for error messages)
        self.unwritten: dict[pygit2.Oid, bytes] = {}
        self.result = Result()

    def write(self, kind: ObjectType, data: bytes) -> pygit2.Oid:
        if not self.options.dry_run:
            return self.odb.write(kind, data)
        oid = object_id({ObjectType.BLOB: "blob", ObjectType.TREE: "tree",
                         ObjectType.COMMIT: "commit", ObjectType.TAG: "tag"}[kind], data)
        self.unwritten[oid] = data  # a dry run writes nothing, but reads back what it made
        return oid

    def read(self, oid: pygit2.Oid) -> bytes:
        data = self.unwritten.get(oid)
        return self.odb.read(oid)[1] if data is None else data

    def small(self, oid: pygit2.Oid, limit: int) -> bytes | None:
        """The blob's bytes if it is under `limit` bytes (the header is read first)."""
        kind, size = self.odb.read_header(oid)
        return self.odb.read(oid)[1] if kind == ObjectType.BLOB and size < limit else None

    def blob(self, path: str, oid: pygit2.Oid) -> tuple[pygit2.Oid, bool]:
        """(new blob id, whether the path is one this migration is about)."""
        if not self.matches(path):
            return oid, False
        if oid not in self.blobs:
            self.blobs[oid] = self.convert(path, oid)
        new = self.blobs[oid]
        if new is None:
            return oid, True
        self.result.files[path] = self.result.files.get(path, 0) + 1
        return new, True

    def convert(self, path: str, oid: pygit2.Oid) -> pygit2.Oid | None:
        raise NotImplementedError

    def attributes(self, oid: pygit2.Oid, root: bool) -> pygit2.Oid | None:
        """The new id of a `.gitattributes` blob (None: drop the file)."""
        return oid

    def root_attributes(self, data: bytes) -> bytes:
        return data

    def close(self) -> None:
        pass

    def _rewrite_text(self, oid: pygit2.Oid, edit: Callable[[str], str]) -> pygit2.Oid | None:
        """A text blob after `edit`; None when the edit emptied it (export: a `.gitattributes`
        that only tracked files goes away, so import + export restores the original commits)."""
        data = self.small(oid, 1 << 20)
        if data is None:
            return oid
        text = data.decode("utf-8", "surrogateescape")
        new = edit(text)
        if new == text:
            return oid
        return self.write(ObjectType.BLOB, new.encode("utf-8", "surrogateescape")) if new else None


class Import(Conversion):
    """Matching blobs -> pointers (their content into the store, as `git add` would)."""

    adds_root_attributes = True

    def __init__(self, repo: pygit2.Repository, ctx: Context, options: Options) -> None:
        super().__init__(repo, ctx, options)
        self._stream: BlobStream | None = None

    def convert(self, path: str, oid: pygit2.Oid) -> pygit2.Oid | None:
        kind, size = self.odb.read_header(oid)
        if kind != ObjectType.BLOB or size == 0:
            return None  # an empty file stays empty
        if size < MAX_POINTER_SIZE and try_parse(self.odb.read(oid)[1]) is not None:
            return None  # already a pointer
        self.result.bytes += size
        if self.options.dry_run:
            return object_id("blob", b"dry-run " + oid.raw)
        if self._stream is None:
            self._stream = BlobStream(Path(self.repo.path))
        found: list[Pointer] = []
        store = self.ctx.store
        self._stream.feed(oid, lambda read, n: found.append(store.add_stream(read, size_hint=n)))
        return self.write(ObjectType.BLOB, found[0].encode())

    def root_attributes(self, data: bytes) -> bytes:
        text, _ = with_tracked(data.decode("utf-8", "surrogateescape"), list(self.options.include),
                               tuple(self.options.exclude))
        return text.encode("utf-8", "surrogateescape")

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()


class FromLfs(Conversion):
    """git-lfs pointers -> git-mlx pointers, content from git-lfs's local store (what is not
    there was downloaded into it first by `fetch_lfs_objects`)."""

    def __init__(self, repo: pygit2.Repository, ctx: Context, options: Options) -> None:
        super().__init__(repo, ctx, options)
        self.lfs_objects = objects_dir(ctx.config.repo.common_dir)
        self.on_server: set[str] = set()  # a dry run: absent here, on the LFS server
        self.server = ""  # the LFS server asked for absent objects (for messages)

    def convert(self, path: str, oid: pygit2.Oid) -> pygit2.Oid | None:
        data = self.small(oid, MAX_POINTER_SIZE)
        lfs = parse_pointer(data) if data is not None else None
        if lfs is None:
            return None
        if lfs.extensions:
            raise UsageError(f"{path} in commit {self.commit[:12]} is a git-lfs pointer with "
                             f"extensions ({', '.join(lfs.extensions)}), which git-mlx cannot "
                             "convert", hint="git lfs migrate export that path first")
        if lfs.size == 0:
            return self.write(ObjectType.BLOB, b"")
        source = object_path(self.lfs_objects, lfs.oid)
        store = self.ctx.store
        if not source.is_file() and not store.has_file(lfs.oid) and lfs.oid not in self.on_server:
            nor = f", nor on the LFS server {self.server}" if self.server else ""
            if self.options.keep_missing:
                self.result.notes.append(f"kept the git-lfs pointer of {path} (commit "
                                         f"{self.commit[:12]}): {source} is missing{nor}")
                return None
            raise ObjectMissing(
                f"the git-lfs object of {path} in commit {self.commit[:12]} is not in "
                f"{source}{nor}", oid=lfs.oid,
                hint="`git lfs fetch --all` first, or pass --keep-missing to keep such files as "
                     "git-lfs pointers")
        self.result.bytes += lfs.size
        if not self.options.dry_run and not store.has_file(lfs.oid):
            stored = store.add_file(source)
            if stored != Pointer(lfs.oid, lfs.size):
                raise MlxError(f"{source} (the git-lfs object of {path}) holds {stored.size} bytes "
                               f"hashing to {stored.oid}, not what its pointer says",
                               hint="`git lfs fsck` reports damaged git-lfs objects")
        return self.write(ObjectType.BLOB, Pointer(lfs.oid, lfs.size).encode())

    def attributes(self, oid: pygit2.Oid, root: bool) -> pygit2.Oid | None:
        return self._rewrite_text(oid, lambda text: _LFS_ATTR.sub(r"\1=mlx", text))


class LfsNeeds(Conversion):
    """A pass that changes nothing: the git-lfs objects FromLfs will need that are neither in
    git-lfs's store nor in the cache (oid -> size), in the order the rewrite meets them."""

    def __init__(self, repo: pygit2.Repository, ctx: Context, options: Options,
                 lfs_objects: Path) -> None:
        super().__init__(repo, ctx, options)
        self.lfs_objects = lfs_objects
        self.absent: dict[str, int] = {}

    def convert(self, path: str, oid: pygit2.Oid) -> pygit2.Oid | None:
        data = self.small(oid, MAX_POINTER_SIZE)
        lfs = parse_pointer(data) if data is not None else None
        if lfs is not None and lfs.size and not lfs.extensions and lfs.oid not in self.absent \
                and not object_path(self.lfs_objects, lfs.oid).is_file() \
                and not self.ctx.store.has_file(lfs.oid):
            self.absent[lfs.oid] = lfs.size
        return None


class Export(Conversion):
    """Pointers -> plain blobs of their content (from the store)."""

    def convert(self, path: str, oid: pygit2.Oid) -> pygit2.Oid | None:
        data = self.small(oid, MAX_POINTER_SIZE)
        pointer = try_parse(data) if data is not None else None
        if pointer is None:
            return None
        store = self.ctx.store
        if pointer.size and not store.has_file(pointer.oid):
            raise ObjectMissing(f"the content of {path} in commit {self.commit[:12]} "
                                f"({pointer.oid[:12]}) is not in the cache", oid=pointer.oid,
                                hint="download everything first: git mlx fetch --all")
        self.result.bytes += pointer.size
        if self.options.dry_run:
            return object_id("blob", b"dry-run " + oid.raw)
        tmp = self.ctx.config.repo.common_dir / f"mlx-export-{os.getpid()}.tmp"
        try:
            with open(tmp, "wb") as f:
                try:
                    store.write_content(pointer.oid, f)
                except ObjectError as exc:
                    raise type(exc)(f"the content of {path} in commit {self.commit[:12]} cannot "
                                    f"be read from the cache: {exc.message}", oid=exc.oid,
                                    hint=exc.hint) from exc
            out = run_git(["hash-object", "-w", "--no-filters", str(tmp)], git_dir=self.repo.path)
            if out.returncode:
                raise MlxError(f"git hash-object failed for {path}: {out.stderr.decode().strip()}")
            return pygit2.Oid(hex=out.stdout.decode().strip())
        finally:
            tmp.unlink(missing_ok=True)

    def attributes(self, oid: pygit2.Oid, root: bool) -> pygit2.Oid | None:
        patterns = list(self.options.include) or None
        keep = list(self.options.exclude) if root else []

        def rewrite(text: str) -> str:
            text = without_tracked(text, patterns)[0]
            # Excluded files stay pointers, so they stay tracked: one line per --exclude.
            return with_tracked(text, keep)[0] if keep else text
        return self._rewrite_text(oid, rewrite)


KINDS: dict[str, type[Conversion]] = {"import": Import, "from-lfs": FromLfs, "export": Export}


# -- raw objects -----------------------------------------------------------------------------
def parse_tree(data: bytes, hash_size: int = 20) -> list[tuple[bytes, bytes, bytes]]:
    """(mode, name, raw id) of each entry of a raw tree object, in order."""
    entries, pos = [], 0
    while pos < len(data):
        space = data.index(b" ", pos)
        nul = data.index(b"\0", space)
        entries.append((data[pos:space], data[space + 1:nul], data[nul + 1:nul + 1 + hash_size]))
        pos = nul + 1 + hash_size
    return entries


def encode_tree(entries: Iterable[tuple[bytes, bytes, bytes]]) -> bytes:
    return b"".join(b"%s %s\0%s" % entry for entry in entries)


def _sort_key(entry: tuple[bytes, bytes, bytes]) -> bytes:
    return entry[1] + b"/" if entry[0] == TREE_MODE else entry[1]


def rewrite_commit(data: bytes, tree: pygit2.Oid, parents: Sequence[pygit2.Oid]) -> bytes:
    """A raw commit with a new tree and parents and no signature; all else byte for byte."""
    head, sep, message = data.partition(b"\n\n")
    lines = [f"tree {tree}".encode(), *(f"parent {p}".encode() for p in parents)]
    skipping = False
    for line in head.split(b"\n"):
        if line.startswith(b" "):
            if not skipping:
                lines.append(line)
            continue
        key = line.split(b" ", 1)[0]
        skipping = key in _SIGNATURE_HEADERS
        if not skipping and key not in (b"tree", b"parent"):
            lines.append(line)
    return b"\n".join(lines) + sep + message


def rewrite_tag(data: bytes, target: pygit2.Oid) -> bytes:
    """A raw annotated tag pointing at `target`, without its (now wrong) signature."""
    head, sep, message = data.partition(b"\n\n")
    lines = [f"object {target}".encode() if line.startswith(b"object ") else line
             for line in head.split(b"\n")]
    return b"\n".join(lines) + sep + _TAG_SIGNATURE.sub(b"\n", message)


class Rewriter:
    def __init__(self, repo: pygit2.Repository, conversion: Conversion) -> None:
        self.repo, self.conv = repo, conversion
        self.odb = repo.odb
        self.hash_size = len(repo.head.peel(pygit2.Commit).id.raw)
        self.trees: dict[tuple[bytes, str], tuple[bytes, bool]] = {}
        self.roots: dict[bytes, bytes] = {}
        self.commits: dict[pygit2.Oid, pygit2.Oid] = {}

    def tree(self, raw: bytes, prefix: str) -> tuple[bytes, bool]:
        """(new raw id, whether a path the migration is about is in it) of a (sub)tree."""
        key = (raw, prefix)
        if key in self.trees:
            return self.trees[key]
        entries = parse_tree(self.conv.read(pygit2.Oid(raw=raw)), self.hash_size)
        new_entries, touched = [], False
        for mode, name, child in entries:
            path = prefix + name.decode("utf-8", "surrogateescape")
            new, hit = child, False
            if mode == TREE_MODE:
                new, hit = self.tree(child, path + "/")
            elif mode in FILE_MODES and name == ATTRIBUTES:
                attrs = self.conv.attributes(pygit2.Oid(raw=child), not prefix)
                if attrs is None:
                    continue
                new = attrs.raw
            elif mode in FILE_MODES:
                new_oid, hit = self.conv.blob(path, pygit2.Oid(raw=child))
                new = new_oid.raw
            touched = touched or hit
            new_entries.append((mode, name, new))
        result = raw
        if new_entries != entries:
            result = self.conv.write(ObjectType.TREE, encode_tree(new_entries)).raw
        self.trees[key] = (result, touched)
        return result, touched

    def with_root_attributes(self, raw: bytes) -> bytes:
        """The root tree with the track lines in its `.gitattributes`."""
        if raw in self.roots:
            return self.roots[raw]
        entries = parse_tree(self.conv.read(pygit2.Oid(raw=raw)), self.hash_size)
        where = next((i for i, e in enumerate(entries)
                      if e[1] == ATTRIBUTES and e[0] in FILE_MODES), None)
        old = self.conv.read(pygit2.Oid(raw=entries[where][2])) if where is not None else b""
        data = self.conv.root_attributes(old)
        result = raw
        if where is None or data != old:
            blob = self.conv.write(ObjectType.BLOB, data).raw
            if where is None:
                entries.append((b"100644", ATTRIBUTES, blob))
                entries.sort(key=_sort_key)
            else:
                entries[where] = (entries[where][0], ATTRIBUTES, blob)
            result = self.conv.write(ObjectType.TREE, encode_tree(entries)).raw
        self.roots[raw] = result
        return result

    def run(self, tips: Sequence[pygit2.Oid]) -> None:
        walker = self.repo.walk(tips[0], SortMode.TOPOLOGICAL | SortMode.REVERSE)
        for tip in tips[1:]:
            walker.push(tip)
        for commit in walker:
            self.conv.result.commits += 1
            self.conv.commit = str(commit.id)
            parents = [self.commits.get(p, p) for p in commit.parent_ids]
            moved = parents != list(commit.parent_ids)
            tree, touched = self.tree(commit.tree_id.raw, "")
            if self.conv.adds_root_attributes and (touched or moved):
                tree = self.with_root_attributes(tree)
            if tree == commit.tree_id.raw and not moved:
                continue
            raw = self.odb.read(commit.id)[1]
            data = rewrite_commit(raw, pygit2.Oid(raw=tree), parents)
            self.commits[commit.id] = self.conv.write(ObjectType.COMMIT, data)
            self.conv.result.rewritten += 1

    def target(self, oid: pygit2.Oid) -> pygit2.Oid:
        """What a ref to `oid` (a commit, an annotated tag, anything else) should now name."""
        if oid in self.commits:
            return self.commits[oid]
        kind, data = self.odb.read(oid) if oid not in self.conv.unwritten else (0, b"")
        if kind != ObjectType.TAG:
            return oid
        match = re.match(rb"object ([0-9a-f]+)\n", data)
        if match is None:
            return oid
        inner = pygit2.Oid(hex=match.group(1).decode())
        new = self.target(inner)
        return oid if new == inner else self.conv.write(ObjectType.TAG, rewrite_tag(data, new))


# -- the command -------------------------------------------------------------------------------
def _refs(repo: pygit2.Repository, everything: bool) -> list[str]:
    """The refs to rewrite: the current branch (or a detached HEAD), or with `everything`
    every local branch and tag (and a detached HEAD)."""
    if repo.head_is_unborn:
        raise UsageError("nothing to migrate: this branch has no commits yet")
    names = ["HEAD"] if repo.head_is_detached else [repo.head.name]
    if everything:
        names += sorted(n for n in repo.references
                        if n.startswith(("refs/heads/", "refs/tags/")) and n not in names)
    return names


def check_clean(work_tree: Path, git_dir: Path) -> None:
    """Refuse to rewrite under a work tree with changes or an operation in progress."""
    for name in ("MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD", "rebase-merge", "rebase-apply"):
        if (git_dir / name).exists():
            raise UsageError(f"a merge, rebase or cherry-pick is in progress ({name})",
                             hint="finish or abort it first")
    proc = run_git(["status", "--porcelain", "--untracked-files=no"], work_tree)
    if proc.returncode:
        raise MlxError(f"git status failed: {proc.stderr.decode(errors='replace').strip()}")
    if proc.stdout.strip():
        changed = proc.stdout.decode(errors="replace").splitlines()
        raise UsageError(
            f"the work tree has uncommitted changes ({len(changed)} path(s), e.g. "
            f"{changed[0][3:]}); migrate rewrites history and would lose them",
            hint="commit or stash them first",
        )


def migrate(ctx: Context, kind: str, options: Options) -> Result:
    """Rewrite the chosen refs; afterwards the work tree holds the new HEAD, hydrated."""

    paths = ctx.config.repo
    repo = open_repo(paths.git_dir)
    names = _refs(repo, options.everything)
    if len(repo.head.peel(pygit2.Commit).id.raw) != 20:
        raise UsageError("migrate supports SHA-1 repositories only")
    if paths.work_tree is not None and not options.dry_run:
        check_clean(paths.work_tree, paths.git_dir)
        if kind != "export" and git_config_get("filter.mlx.process", paths.work_tree) is None:
            raise UsageError("git-mlx's filter is not configured here, so the migrated files "
                             "could not be checked out", hint="git mlx install (or --local)")
    conversion = KINDS[kind](repo, ctx, options)
    rewriter = Rewriter(repo, conversion)
    olds: dict[str, pygit2.Oid] = {}
    for name in names:
        ref = repo.head if name == "HEAD" else repo.references[name]
        if isinstance(ref.target, pygit2.Oid):  # a symbolic ref moves with what it names
            olds[name] = ref.target
    tips = []
    for oid in olds.values():
        try:
            tips.append(repo[oid].peel(pygit2.Commit).id)
        except (ValueError, pygit2.GitError):
            continue  # a tag of a tree or blob: nothing to walk
    if isinstance(conversion, FromLfs) and tips:
        fetch_lfs_objects(ctx, repo, tips, conversion)
    try:
        rewriter.run(tips)
        result = conversion.result
        for name, old in olds.items():
            new = rewriter.target(old)
            if new != old:
                result.refs.append((name, str(old), str(new)))
    finally:
        conversion.close()
    if options.dry_run or not result.refs:
        return result
    result.backup = _backup_name(repo, time.strftime('%Y%m%dT%H%M%S', time.gmtime()))
    _update_refs(paths.git_dir, result)
    if paths.work_tree is not None and any(name in ("HEAD", repo.head.name)
                                           for name, _, _ in result.refs):
        _refresh_work_tree(paths.work_tree)
    if kind == "from-lfs":
        result.notes += _drop_lfs(ctx)
    return result


# -- from-lfs: what git-lfs's store lacks, from its LFS server -------------------------------
DOWNLOAD_THREADS = 4


def fetch_lfs_objects(ctx: Context, repo: pygit2.Repository, tips: Sequence[pygit2.Oid],
                      conversion: FromLfs) -> None:
    """Download the git-lfs objects the rewrite of `tips` needs and neither git-lfs's store
    nor the cache has, from the LFS server of the git remote `--remote` names (default:
    origin, else the only one), into git-lfs's store (as `git lfs fetch` would). A dry run
    only asks which the server has. No LFS server (a local remote, no remote): nothing is
    asked, the rewrite finds them missing as before. A server that cannot be reached or
    refuses us stops here, before anything is rewritten (--keep-missing: a warning, and the
    rewrite keeps those pointers). Objects the server lacks are left to the rewrite's
    missing-object error (or --keep-missing)."""
    options = conversion.options
    needs = LfsNeeds(repo, ctx, options, conversion.lfs_objects)
    Rewriter(repo, needs).run(tips)
    absent = needs.absent
    if not absent:
        return
    paths = ctx.config.repo
    cwd = paths.work_tree or paths.git_dir
    what = f"{plural(len(absent), 'git-lfs object')} ({format_bytes(sum(absent.values()))})"
    endpoint = lfs_endpoint(cwd, options.remote, DOWNLOAD)
    if endpoint is None:
        if options.remote is not None:
            raise UsageError(f"{what} this migration needs are not in {conversion.lfs_objects}, "
                             f"and git remote {options.remote} has no LFS server to fetch them "
                             "from (a local path?)",
                             hint="`git lfs fetch --all` first, or pass --keep-missing to keep "
                                  "such files as git-lfs pointers")
        trace(f"migrate: {what} absent, and no git remote with an LFS server to ask")
        return
    server = conversion.server = endpoint.url
    try:
        client = open_lfs_client(cwd, options.remote, DOWNLOAD)
        server = conversion.server = client.endpoint
        try:
            if options.dry_run:
                conversion.on_server = client.exists(absent.items())
                if conversion.on_server:
                    conversion.result.notes.append(
                        f"would download {plural(len(conversion.on_server), 'git-lfs object')} "
                        f"({format_bytes(sum(absent[o] for o in conversion.on_server))}) "
                        f"from {server}")
                return
            count, nbytes = _download(client, absent, conversion.lfs_objects)
        finally:
            client.close()
    except RemoteError as exc:
        message = (f"{what} this migration needs are not in {conversion.lfs_objects}, and "
                   f"the LFS server {server} could not provide them: {exc.message}")
        if options.keep_missing:
            warn(f"{message}; --keep-missing: their files stay git-lfs pointers")
            return
        raise type(exc)(message, hint="`git lfs fetch --all` first (or fix access to the "
                                      "server), or pass --keep-missing to keep such files as "
                                      "git-lfs pointers") from None
    if count:
        inform(f"downloaded {plural(count, 'git-lfs object')} ({format_bytes(nbytes)}) "
               f"from {server}")


def _download(client: LfsClient, absent: dict[str, int], objects: Path) -> tuple[int, int]:
    """Download what the server has of `absent` into git-lfs's store `objects` (each through a
    temporary file in its tmp dir, renamed when complete and checked), a few at a time.
    Returns (objects, bytes) downloaded; objects the server lacks are left out."""
    jobs = []
    for oid, result in client.batch("download", absent.items()).items():
        if isinstance(result, ObjectActions):
            if "download" in result.actions:
                jobs.append((oid, absent[oid], result.actions["download"]))
        elif result.code not in (404, 410):
            raise result.error(client.endpoint)
    if not jobs:
        return 0, 0
    tmp_dir = objects.parent / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    total = sum(size for _, size, _ in jobs)
    with Progress("downloading git-lfs objects", len(jobs), total, unit="object") as progress:
        def one(oid: str, size: int, action: Action) -> None:
            tmp = tmp_dir / f"{oid}-{uuid.uuid4().hex[:8]}.mlx-migrate"
            try:
                client.download_to(oid, size, tmp, action)
            except ObjectMissing as exc:  # listed by the batch, gone when fetched
                trace(f"migrate: {exc.message}")
                return
            dest = object_path(objects, oid)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)
            progress.advance(1, size)

        with ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
            futures = [pool.submit(one, *job) for job in jobs]
            wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:
                future.cancel()  # after a failure, what has not started does not start
        for future in futures:
            error = None if future.cancelled() else future.exception()
            if error is not None:
                raise error
    return progress.objects, progress.nbytes


def _backup_name(repo: pygit2.Repository, stamp: str) -> str:
    """A backup prefix no earlier run used: two migrations in the same second (an import then
    its export, in a script) would otherwise collide and fail the second one."""
    taken = {name for name in repo.references if name.startswith(BACKUP_PREFIX + "/")}
    base = f"{BACKUP_PREFIX}/{stamp}"
    name, n = base, 1
    while any(ref == name or ref.startswith(name + "/") for ref in taken):
        n += 1
        name = f"{base}-{n}"
    return name


def _update_refs(git_dir: Path, result: Result) -> None:
    """Move every ref and create its backup in one transaction (all or nothing)."""
    lines = ["start"]
    detached = None
    for name, old, new in result.refs:
        if name == "HEAD":
            detached = (old, new)
            lines.append(f"create {result.backup}/HEAD {old}")
            continue
        lines.append(f"create {result.backup}/{name} {old}")
        lines.append(f"update {name} {new} {old}")
    lines += ["prepare", "commit", ""]
    _git_dir_cmd(git_dir, ["update-ref", "--stdin", "-m", "git mlx migrate"], "\n".join(lines))
    if detached is not None:
        _git_dir_cmd(git_dir, ["update-ref", "--no-deref", "-m", "git mlx migrate", "HEAD",
                               detached[1], detached[0]])


def _git_dir_cmd(git_dir: Path, args: list[str], stdin: str | None = None) -> None:
    proc = run_git(args, git_dir=git_dir, input=stdin, text=True)
    if proc.returncode:
        raise MlxError(f"git {args[0]} failed: {proc.stderr.strip()}")


def _refresh_work_tree(work_tree: Path) -> None:
    """Check the new HEAD out (the work tree was clean), then write the large files git-mlx
    writes itself (what the post-checkout hook would do)."""

    proc = run_git(["reset", "--hard", "-q", "HEAD"], work_tree, text=True)
    if proc.returncode:
        raise MlxError(f"history was rewritten, but updating the work tree failed: "
                       f"{proc.stderr.strip()}", hint="run `git reset --hard` to retry")
    failed = hydrate(Context.discover(work_tree), quick=True)
    if failed:
        warn(f"{len(failed)} file(s) left as pointers; `git mlx pull` retries")


def _drop_lfs(ctx: Context) -> list[str]:
    """git-lfs's hooks and filter config, now unused; git-mlx's hooks in their place."""

    paths = ctx.config.repo
    hooks = hooks_dir(paths.git_dir, paths.work_tree)
    notes = remove_lfs_setup(paths.common_dir, hooks)
    if notes and paths.work_tree is not None:
        notes += [line for line in install_repo_hooks(paths.git_dir, paths.work_tree)
                  if line.startswith(("warning", "Hooks not installed", "    "))]
    notes.append(f"git-lfs's objects stay in {objects_dir(paths.common_dir).parent} until you "
                 "delete them (the backup refs still point at git-lfs pointers)")
    return notes
