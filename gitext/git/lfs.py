"""What `git mlx migrate from-lfs` needs to know about a git-lfs repository.

- The git-lfs pointer (git-lfs's docs/spec.md): `key value` lines, `version` first, the rest
  sorted, at least `oid sha256:<64 hex>` and `size <n>`; `ext-N-name` lines name clean/smudge
  extensions. git-lfs reads pointers leniently (surrounding white space is ignored), so this
  parser does too; what it returns is exactly what git-lfs would look up.
- Where git-lfs keeps content: `<git common dir>/lfs/objects/<aa>/<bb>/<oid>`, or under
  `lfs.storage` when that is set.
- Which hooks and config `git lfs install --local` leaves behind, so they can be removed
  without touching anything else (git-mlx's own hooks, a user's hooks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from gitext.fsutil import is_hex_id
from gitext.git.run import run_git

MAX_LFS_POINTER_SIZE = 1024
VERSIONS = ("https://git-lfs.github.com/spec/v1", "https://hawser.github.com/spec/v1")
LFS_HOOKS = ("pre-push", "post-checkout", "post-commit", "post-merge")
_KEY_RE = re.compile(r"[a-z0-9.-]+")
_SIZE_RE = re.compile(r"0|[1-9][0-9]{0,18}")


@dataclass(frozen=True)
class LfsPointer:
    oid: str
    size: int
    extensions: tuple[str, ...] = ()  # the `ext-...` lines' values, in order

    def encode(self) -> bytes:
        """The canonical form git-lfs writes (for tests and for round trips)."""
        lines = [f"version {VERSIONS[0]}"]
        lines += [f"ext-{i}-{ext}" for i, ext in enumerate(self.extensions)]
        lines += [f"oid sha256:{self.oid}", f"size {self.size}"]
        return ("\n".join(lines) + "\n").encode("ascii")


def parse_pointer(data: bytes) -> LfsPointer | None:
    """The git-lfs pointer in `data`, or None when `data` is not one."""
    if len(data) >= MAX_LFS_POINTER_SIZE or b"git-lfs" not in data and b"hawser" not in data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = text.strip().split("\n")
    if not lines or lines[0].strip() not in {f"version {v}" for v in VERSIONS}:
        return None
    fields: dict[str, str] = {}
    extensions: list[str] = []
    for line in lines[1:]:
        key, sep, value = line.strip().partition(" ")
        if not sep or not _KEY_RE.fullmatch(key) or key in fields or key == "version":
            return None
        fields[key] = value
        if key.startswith("ext-"):
            extensions.append(key[4:] + (f" {value}" if value else ""))
    oid, size = fields.get("oid", ""), fields.get("size", "")
    if not oid.startswith("sha256:") or not is_hex_id(oid[7:]) or not _SIZE_RE.fullmatch(size):
        return None
    return LfsPointer(oid[7:], int(size), tuple(extensions))


def objects_dir(common_dir: Path) -> Path:
    """Where git-lfs keeps this repository's content (`lfs.storage` relocates it)."""
    proc = run_git(["config", "--get", "lfs.storage"], git_dir=common_dir, text=True)
    configured = proc.stdout.strip()
    base = (common_dir / configured) if configured else common_dir / "lfs"
    return base / "objects"


def object_path(objects: Path, oid: str) -> Path:
    return objects / oid[0:2] / oid[2:4] / oid


def is_lfs_hook(path: Path) -> bool:
    """True for a hook file exactly as `git lfs install` writes it (and nothing added)."""
    try:
        if path.stat().st_size > 2048:
            return False
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("#!"):
        return False
    body = lines[1:]
    return bool(body) and all(
        line.startswith("command -v git-lfs ") or re.fullmatch(r'git lfs [a-z-]+ "\$@"', line)
        for line in body
    )


def remove_lfs_setup(git_dir: Path, hooks: Path) -> list[str]:
    """Delete git-lfs's hooks (also when git-mlx chained them) and the repository's
    `[filter "lfs"]` config: what `git lfs uninstall --local` does. Returns what was done."""
    done = []
    for name in LFS_HOOKS:
        for candidate in (hooks / name, hooks / f"{name}.mlx-chained"):
            if is_lfs_hook(candidate):
                candidate.unlink()
                done.append(f"removed git-lfs's hook {candidate}")
    proc = run_git(["config", "--local", "--remove-section", "filter.lfs"], git_dir=git_dir)
    if proc.returncode == 0:
        done.append("removed the [filter \"lfs\"] section from .git/config")
    return done
