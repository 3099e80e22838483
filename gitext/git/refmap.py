"""A map of names to small byte strings kept on a git ref, moved with git fetch and push.

    read_map(git_dir, commit)                  -> {name: bytes}: the commit's tree, flattened
    write_map(git_dir, base, added, message)   -> a new commit: base's tree plus `added`
    remote_ref(git_dir, remote, ref)           -> the remote's commit for `ref`, or None
    fetch_ref / push_ref / set_ref             one ref, never anything else

The map is the tree of the ref's commit: each name a path (`a/b/c`), its value the blob at that
path. A new version is a commit whose parent is the version it was made from, so a push of it
is a fast-forward and two writers who raced find out (push_ref returns False for the loser,
who merges and tries again). The `lfs` remote keeps its key directory this way
(gitext/repo/lfsremote.py, docs/remotes.md); nothing here knows what the values mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from gitext.errors import RemoteError, RemoteRefused
from gitext.git.run import git_reason, run_git
from gitext.log import trace

# Settings that keep a fetch or push of one ref from doing anything else: no auto gc or
# maintenance, no submodules, no tags, no FETCH_HEAD, no hooks (a nested push would run the
# pre-push hook, ours or git-lfs's, again).
_QUIET = ["-c", "gc.auto=0", "-c", "maintenance.auto=false"]


def read_map(git_dir: Path, commit: str) -> dict[str, bytes]:
    """Every path of `commit`'s tree and the bytes of its blob."""
    import pygit2

    repo = pygit2.Repository(str(git_dir))
    out: dict[str, bytes] = {}

    def walk(tree: pygit2.Tree, prefix: str) -> None:
        for entry in tree:
            obj = repo[entry.id]
            if isinstance(obj, pygit2.Tree):
                walk(obj, f"{prefix}{entry.name}/")
            elif isinstance(obj, pygit2.Blob):
                out[f"{prefix}{entry.name}"] = obj.data

    head = repo[commit].peel(pygit2.Commit)
    walk(head.tree, "")
    return out


def write_map(git_dir: Path, base: str | None, added: Mapping[str, bytes], message: str) -> str:
    """A new commit (not on any ref yet) whose tree is `base`'s plus `added` (a name already
    in `base` keeps base's value: values are written once), parent `base`."""
    import pygit2

    repo = pygit2.Repository(str(git_dir))
    index = pygit2.Index()
    parents = []
    if base is not None:
        commit = repo[base].peel(pygit2.Commit)
        index.read_tree(commit.tree)
        parents.append(commit.id)
    for name, data in sorted(added.items()):
        if name in index:
            continue
        index.add(pygit2.IndexEntry(name, repo.create_blob(data), pygit2.enums.FileMode.BLOB))
    tree = index.write_tree(repo)
    who = pygit2.Signature("git-mlx", "git-mlx@localhost")
    return str(repo.create_commit(None, who, who, message, tree, parents))


def _fail(what: str, remote: str, stderr: str) -> RemoteError:
    reason = git_reason(stderr) or "no message"
    cls = RemoteRefused if any(w in reason.lower() for w in ("denied", "401", "403", "authentic")) \
        else RemoteError
    return cls(f"{what} on git remote {remote} failed: {reason}",
               hint="check that the git remote is reachable (`git ls-remote " + remote + "`)")


def remote_ref(git_dir: Path, remote: str, ref: str) -> str | None:
    """The commit `ref` names on `remote` (a remote's name or URL), None if it has no such
    ref; RemoteError if the remote cannot be asked."""
    proc = run_git([*_QUIET, "ls-remote", "--exit-code", remote, ref], git_dir=git_dir, text=True)
    if proc.returncode == 2:
        return None
    if proc.returncode != 0:
        raise _fail(f"reading {ref}", remote, proc.stderr)
    for line in proc.stdout.splitlines():
        sha, _, name = line.partition("\t")
        if name == ref:
            return sha
    return None


def local_ref(git_dir: Path, ref: str) -> str | None:
    proc = run_git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], git_dir=git_dir,
                   text=True)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def set_ref(git_dir: Path, ref: str, commit: str) -> None:
    run_git(["update-ref", ref, commit], git_dir=git_dir, check=True)


def fetch_ref(git_dir: Path, remote: str, ref: str, into: str) -> None:
    """Fetch `ref` of `remote` into the local ref `into` (forced: it mirrors the remote)."""
    proc = run_git([*_QUIET, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                    "--no-recurse-submodules", "--no-auto-gc", remote, f"+{ref}:{into}"],
                   git_dir=git_dir, text=True)
    if proc.returncode != 0:
        raise _fail(f"fetching {ref}", remote, proc.stderr)


def push_ref(git_dir: Path, remote: str, commit: str, ref: str) -> bool:
    """Push `commit` to `ref` on `remote` as a fast-forward; False if the remote moved on
    meanwhile (fetch, merge, push again), RemoteError if it refused or cannot be reached."""
    proc = run_git([*_QUIET, "push", "--no-verify", "--porcelain", "--quiet", remote,
                    f"{commit}:{ref}"], git_dir=git_dir, text=True)
    if proc.returncode == 0:
        return True
    status = [line for line in proc.stdout.splitlines() if line.startswith("!")]
    text = " ".join(status)
    if "[rejected]" in text and ("non-fast-forward" in text or "fetch first" in text
                                 or "stale info" in text):
        trace(f"refmap: {ref} on {remote} moved meanwhile; merging")
        return False
    if status:
        why = status[0].split("\t")[-1]
        said = [line[len("remote:"):].strip() for line in proc.stderr.splitlines()
                if line.startswith("remote:") and line[len("remote:"):].strip()]
        if said:
            why += f"; the host said: {' '.join(said)[:300]}"
        raise RemoteError(f"git remote {remote} refused the ref {ref}: {why}",
                          hint="git-mlx lists its objects on the LFS server in that ref of the "
                               "git remote; a host that refuses refs outside refs/heads and "
                               "refs/tags cannot hold the list: add an mlx remote of another "
                               "kind instead (git mlx remote add -d NAME URL)")
    raise _fail(f"pushing {ref}", remote, proc.stderr)
